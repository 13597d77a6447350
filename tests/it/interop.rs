//! Interop with a real third-party authorization server: panva's `oidc-provider` (a
//! certified OpenID provider), from the npm registry, started on loopback with our
//! configuration (interop/oidc-provider/server.mjs).
//!
//! Our client obtains `client_credentials` tokens from it with `private_key_jwt` (RS384
//! and ES384) and with `client_secret_basic`; our layer, discovering the provider's keys
//! from its issuer URL, accepts them, and refuses a token for another audience, a tampered
//! one and an expired one.
//!
//! Node and npm are required: the test fails, loudly, without them. It installs the npm
//! dependencies itself when they are missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::client::{BackendServiceClient, ClientKey};
use smart_auth::testing::TestIssuer;
use smart_auth::{ManualClock, SigningAlgorithm, SmartAuthLayer};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::app_with_layer;

const FHIR: &str = "https://fhir.example.test/r4";
const BASIC_SECRET: &str = "interop-secret-that-is-long-enough-for-anyone";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join("oidc-provider")
}

fn run(command: &str, args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(command)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "the interop test needs `{command}` on PATH (Node.js 20 or later with npm): {error}"
            )
        })
}

/// Installs the pinned npm dependencies when they are missing.
fn ensure_installed(dir: &Path) {
    let node = run("node", &["--version"], dir);
    assert!(node.status.success(), "`node --version` failed");
    if dir
        .join("node_modules")
        .join("oidc-provider")
        .join("package.json")
        .exists()
    {
        return;
    }
    let install = run("npm", &["ci", "--no-audit", "--no-fund"], dir);
    assert!(
        install.status.success(),
        "`npm ci` in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&install.stderr)
    );
}

struct OidcProvider {
    issuer: String,
    _child: tokio::process::Child,
}

async fn start_provider(config: &Value) -> OidcProvider {
    let dir = provider_dir();
    ensure_installed(&dir);
    let mut child = tokio::process::Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .env("INTEROP_CONFIG", config.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("oidc-provider announced itself within 60 s")
        .expect("reading its output")
        .expect("a line with the issuer");
    let announced: Value = serde_json::from_str(&line).expect("a JSON line");
    OidcProvider {
        issuer: announced["issuer"].as_str().expect("issuer").to_owned(),
        _child: child,
    }
}

#[tokio::test]
async fn oidc_provider_tokens_work_end_to_end() {
    let rs384 = ClientKey::generate(SigningAlgorithm::RS384, "interop-rs384").unwrap();
    let es384 = ClientKey::generate(SigningAlgorithm::ES384, "interop-es384").unwrap();
    let provider = start_provider(&json!({
        "resource": FHIR,
        "resource_scopes": "system/Patient.rs system/Observation.rs",
        "clients": [
            {"client_id": "jwt-rs384", "jwks": rs384.public_jwks(), "scope": "system/Patient.rs system/Observation.rs"},
            {"client_id": "jwt-es384", "jwks": es384.public_jwks(), "scope": "system/Patient.rs"},
            {"client_id": "basic-client", "client_secret": BASIC_SECRET, "scope": "system/Observation.rs"},
        ],
    }))
    .await;
    let token_endpoint = format!("{}/token", provider.issuer);
    let client = |id: &str| {
        BackendServiceClient::builder(FHIR)
            .token_endpoint(&token_endpoint)
            .client_id(id)
            .resource(FHIR)
    };
    let rs384_token = client("jwt-rs384")
        .private_key_jwt(rs384)
        .scopes(["system/Patient.rs", "system/Observation.rs"])
        .build()
        .unwrap()
        .access_token()
        .await
        .expect("private_key_jwt RS384");
    let es384_token = client("jwt-es384")
        .private_key_jwt(es384)
        .scope("system/Patient.rs")
        .build()
        .unwrap()
        .access_token()
        .await
        .expect("private_key_jwt ES384");
    let basic_token = client("basic-client")
        .client_secret_basic(BASIC_SECRET)
        .scope("system/Observation.rs")
        .build()
        .unwrap()
        .access_token()
        .await
        .expect("client_secret_basic");

    // Our layer, knowing only the issuer URL, accepts all three.
    let clock = ManualClock::new();
    let layer = SmartAuthLayer::builder(&provider.issuer)
        .audience(FHIR)
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = app_with_layer(TestIssuer::start().await, clock.clone(), layer).await;
    for (token, client_id, scopes) in [
        (
            &rs384_token,
            "jwt-rs384",
            json!(["system/Patient.rs", "system/Observation.rs"]),
        ),
        (&es384_token, "jwt-es384", json!(["system/Patient.rs"])),
        (
            &basic_token,
            "basic-client",
            json!(["system/Observation.rs"]),
        ),
    ] {
        let answer = app.get_with_token(token.access_token()).await;
        assert_eq!(answer.status, StatusCode::OK, "{client_id}: {answer:?}");
        assert_eq!(answer.body["client_id"], client_id);
        assert_eq!(answer.body["iss"], provider.issuer);
        assert_eq!(answer.body["aud"], json!([FHIR]));
        assert_eq!(answer.body["scopes"], scopes);
    }

    // A layer for another API refuses them.
    let other = SmartAuthLayer::builder(&provider.issuer)
        .audience("https://other.example/fhir")
        .realm(FHIR)
        .clock(clock.clone())
        .build()
        .unwrap();
    let other_app = app_with_layer(TestIssuer::start().await, clock.clone(), other).await;
    other_app
        .assert_invalid_token(
            rs384_token.access_token(),
            "the token is for another audience",
        )
        .await;

    // A tampered token is refused.
    let token = rs384_token.access_token();
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let (header, payload) = signing_input.split_once('.').unwrap();
    let mut claims: Value = serde_json::from_slice(&base64_decode(payload)).unwrap();
    claims["scope"] = json!("system/*.cruds");
    let tampered = format!(
        "{header}.{}.{signature}",
        base64_encode(claims.to_string().as_bytes())
    );
    app.assert_invalid_token(&tampered, "the token's signature is not valid")
        .await;

    // An expired one too (the provider's tokens live 300 s; the layer's clock moves 10 min).
    clock.advance(Duration::from_secs(600));
    app.assert_invalid_token(token, "the access token has expired")
        .await;
}

fn base64_decode(segment: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
