//! Keys given directly (`StaticKeys`): tokens verify with no discovery and no key fetch,
//! an unknown `kid` is refused at once, and a PEM key verifies what its private key signed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA384,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::testing::TestIssuer;
use smart_auth::{
    Clock as _, ConfigError, ManualClock, SigningAlgorithm, SmartAuthLayer, StaticKeys,
    TokenVerifier,
};

use crate::support::{App, app_with_layer, issuer};

/// An issuer URL `http://127.0.0.1:<port>` whose port stays bound while the test runs
/// (no other test's server can take it), counting the connections made to it and closing
/// each at once: any request to it fails, and the tests assert that none was made.
struct Unreachable {
    url: String,
    connections: Arc<AtomicUsize>,
    listener: tokio::task::JoinHandle<()>,
}

impl Unreachable {
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let listener = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self {
            url,
            connections,
            listener,
        }
    }

    fn assert_never_contacted(&self) {
        assert_eq!(self.connections.load(Ordering::SeqCst), 0, "{}", self.url);
    }
}

impl Drop for Unreachable {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The issuer's JWK Set as static keys.
fn keys_of(issuer: &TestIssuer) -> StaticKeys {
    StaticKeys::from_jwks_json(&issuer.jwks().to_string()).expect("the issuer's JWK Set")
}

/// Nothing was asked of the issuer: no discovery document, no key set.
fn assert_no_fetch(issuer: &TestIssuer) {
    assert_eq!(issuer.smart_configuration_fetches(), 0);
    assert_eq!(issuer.openid_configuration_fetches(), 0);
    assert_eq!(issuer.jwks_fetches(), 0);
}

#[tokio::test]
async fn static_jwks_verify_every_algorithm_with_an_unreachable_issuer() {
    let clock = ManualClock::new();
    let signer = issuer(&clock).await;
    let closed = Unreachable::bind().await;
    let unreachable = closed.url.clone();
    let layer = SmartAuthLayer::builder(&unreachable)
        .audience(signer.audience())
        .clock(clock.clone())
        .static_keys(keys_of(&signer))
        .build()
        .unwrap();
    let app = app_with_layer(signer, clock, layer).await;
    for alg in SigningAlgorithm::DEFAULT {
        let token = app
            .issuer
            .token()
            .alg(*alg)
            .claim("iss", unreachable.as_str())
            .sign();
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg}: {answer:?}");
        assert_eq!(answer.body["iss"], unreachable.as_str());
    }
    // An unknown kid is refused at once, as after a fetch that did not bring it.
    let unknown = app
        .issuer
        .token()
        .kid("not-configured")
        .claim("iss", unreachable.as_str())
        .sign();
    app.assert_invalid_token(&unknown, "the token's signing key is not known")
        .await;
    // The issuer is still checked: the signer's own URL is not the configured issuer.
    let other_issuer = app.issuer.token().sign();
    app.assert_invalid_token(&other_issuer, "the token is from another issuer")
        .await;
    assert_no_fetch(&app.issuer);
    closed.assert_never_contacted();
}

/// The issuer serves discovery and keys on loopback, and the layer names it, but has
/// static keys: it never asks, not even for a `kid` the issuer publishes after a rotation.
#[tokio::test]
async fn static_keys_never_fetch_even_when_the_issuer_serves_keys() {
    let clock = ManualClock::new();
    let signer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(signer.url())
        .audience(signer.audience())
        .clock(clock.clone())
        .static_keys(keys_of(&signer))
        .build()
        .unwrap();
    let app: App = app_with_layer(signer, clock, layer).await;
    app.layer.warm_up().await.expect("nothing to warm up");
    let verifier = app.layer.issuers().iter().next().unwrap();
    let status = verifier.key_cache_status();
    assert_eq!(
        status.keys,
        app.issuer.jwks()["keys"].as_array().unwrap().len()
    );
    assert!(status.keys > 0);
    assert_eq!(status.fetched_at, None);
    assert_eq!(status.fresh_until, None);
    assert!(!status.fetching);
    assert_eq!(status.last_failure, None);

    let token = app.issuer.token().sign();
    for _ in 0..3 {
        assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    }
    // The token cache works with static keys (a token is kept from its second use).
    assert_eq!(verifier.cached_tokens(), 1);

    for round in 0..3 {
        let unknown = app.issuer.token().kid(format!("unknown-{round}")).sign();
        app.assert_invalid_token(&unknown, "the token's signing key is not known")
            .await;
    }
    // Long after a fetched set would have expired (TTL, max stale), the keys still serve.
    app.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let later = app.issuer.token().sign();
    assert_eq!(app.get_with_token(&later).await.status, StatusCode::OK);
    // The issuer rotates: its new keys are never fetched.
    app.issuer.rotate_keys();
    let rotated = app.issuer.token().sign();
    app.assert_invalid_token(&rotated, "the token's signing key is not known")
        .await;
    assert_no_fetch(&app.issuer);
}

/// PEM armour (64-character lines) around DER.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The DER of the one block of a PEM text.
fn pem_der(text: &str) -> Vec<u8> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

/// A compact JWS of `header` and `claims`, the signature made by `sign`.
fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn claims(issuer: &str, audience: &str, clock: &ManualClock) -> Value {
    let now = clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    json!({
        "iss": issuer, "aud": audience, "sub": "pem-client", "client_id": "pem-client",
        "iat": now, "exp": now + 300, "scope": "system/*.rs",
    })
}

fn es384(pair: &EcdsaKeyPair, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "ES384", "kid": kid, "typ": "at+jwt"});
    jws(&header, claims, |input| {
        pair.sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    })
}

fn rsa(pair: &RsaKeyPair, alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "kid": kid, "typ": "at+jwt"});
    jws(&header, claims, |input| {
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA384,
            &SystemRandom::new(),
            input,
            &mut signature,
        )
        .unwrap();
        signature
    })
}

/// The fixture keys of tests/it/keys, a P-384 and an RSA 2048 private key (PKCS#8), with
/// their public keys as PEM: SubjectPublicKeyInfo for P-384, PKCS#1 for RSA (`openssl rsa
/// -RSAPublicKey_out`).
struct FixtureKeys {
    p384: EcdsaKeyPair,
    rsa: RsaKeyPair,
    p384_public: String,
    rsa_public: String,
}

/// A fresh P-384 key pair, configured nowhere.
fn another_p384_key() -> EcdsaKeyPair {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap()
}

/// An app whose layer has only `keys` for an issuer at a loopback port that answers
/// nothing (nothing to fetch from), the claims of a valid token for it, and that port.
async fn app_with_static_keys(keys: StaticKeys) -> (App, Value, Unreachable) {
    let clock = ManualClock::new();
    let app_issuer = issuer(&clock).await;
    let closed = Unreachable::bind().await;
    let unreachable = closed.url.clone();
    let layer = SmartAuthLayer::builder(&unreachable)
        .audience(app_issuer.audience())
        .clock(clock.clone())
        .static_keys(keys)
        .build()
        .unwrap();
    let app = app_with_layer(app_issuer, clock, layer).await;
    let claims = claims(&unreachable, app.issuer.audience(), &app.clock);
    (app, claims, closed)
}

fn fixture_keys() -> FixtureKeys {
    let p384 = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P384_SHA384_FIXED_SIGNING,
        &pem_der(include_str!("keys/p384.pkcs8.pem")),
    )
    .unwrap();
    let rsa = RsaKeyPair::from_pkcs8(&pem_der(include_str!("keys/rsa.pkcs8.pem"))).unwrap();
    let p384_public = pem("PUBLIC KEY", p384.public_key().as_der().unwrap().as_ref());
    let rsa_public = pem("RSA PUBLIC KEY", rsa.public_key().as_ref());
    FixtureKeys {
        p384,
        rsa,
        p384_public,
        rsa_public,
    }
}

#[tokio::test]
async fn pem_keys_verify_what_their_private_keys_signed() {
    let FixtureKeys {
        p384,
        rsa: rsa_pair,
        p384_public,
        rsa_public,
    } = fixture_keys();

    let keys = StaticKeys::from_pem(&p384_public, SigningAlgorithm::ES384, Some("ec-1"))
        .unwrap()
        .and_pem(&rsa_public, SigningAlgorithm::RS384, Some("rsa-1"))
        .unwrap();
    let (app, claims, closed) = app_with_static_keys(keys).await;

    let answer = app.get_with_token(&es384(&p384, "ec-1", &claims)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["client_id"], "pem-client");
    let answer = app
        .get_with_token(&rsa(&rsa_pair, "RS384", "rsa-1", &claims))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    // Signed by another P-384 key under the configured kid: a bad signature.
    let other = another_p384_key();
    app.assert_invalid_token(
        &es384(&other, "ec-1", &claims),
        "the token's signature is not valid",
    )
    .await;
    // Under a kid of its own: not a configured key.
    app.assert_invalid_token(
        &es384(&other, "ec-2", &claims),
        "the token's signing key is not known",
    )
    .await;
    // The RSA key was given for RS384 only.
    app.assert_invalid_token(
        &rsa(&rsa_pair, "RS512", "rsa-1", &claims),
        "the token's signing algorithm is not accepted",
    )
    .await;
    assert_no_fetch(&app.issuer);
    closed.assert_never_contacted();
}

/// A PEM key configured without a `kid` serves tokens whatever `kid` they carry (every
/// real issuer sends one), as a verifier with one configured key does; its algorithm still
/// binds it, and a key configured under a `kid` keeps its name.
#[tokio::test]
async fn a_pem_key_without_a_kid_serves_any_kid() {
    let FixtureKeys {
        p384,
        rsa: rsa_pair,
        p384_public,
        rsa_public,
    } = fixture_keys();
    let keys = StaticKeys::from_pem(&p384_public, SigningAlgorithm::ES384, None)
        .unwrap()
        .and_pem(&rsa_public, SigningAlgorithm::RS384, Some("rsa-1"))
        .unwrap();
    let (app, claims, closed) = app_with_static_keys(keys).await;
    for kid in ["2024-rotation", "ec-1", ""] {
        let answer = app.get_with_token(&es384(&p384, kid, &claims)).await;
        assert_eq!(answer.status, StatusCode::OK, "{kid}: {answer:?}");
    }
    // Another key under any kid: a bad signature, never accepted.
    let other = another_p384_key();
    app.assert_invalid_token(
        &es384(&other, "2024-rotation", &claims),
        "the token's signature is not valid",
    )
    .await;
    // The named RSA key: under its kid only, for its algorithm only; an unknown kid with an
    // RSA algorithm finds no key without a kid of that family.
    let answer = app
        .get_with_token(&rsa(&rsa_pair, "RS384", "rsa-1", &claims))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    app.assert_invalid_token(
        &rsa(&rsa_pair, "RS384", "rsa-2", &claims),
        "the token's signing key is not known",
    )
    .await;
    assert_no_fetch(&app.issuer);
    closed.assert_never_contacted();
}

#[tokio::test]
async fn static_keys_with_a_jwks_uri_is_a_build_error() {
    let signer = TestIssuer::start().await;
    let builder = || {
        SmartAuthLayer::builder(signer.url())
            .audience(signer.audience())
            .static_keys(keys_of(&signer))
            .jwks_uri(signer.jwks_uri())
    };
    assert_eq!(
        builder().build().unwrap_err(),
        ConfigError::ConflictingKeySource
    );
    assert_eq!(
        TokenVerifier::builder(signer.url())
            .static_keys(keys_of(&signer))
            .jwks_uri(signer.jwks_uri())
            .build()
            .unwrap_err(),
        ConfigError::ConflictingKeySource
    );
    // The order of the two settings does not matter.
    let reversed = SmartAuthLayer::builder(signer.url())
        .jwks_uri(signer.jwks_uri())
        .static_keys(keys_of(&signer))
        .build();
    assert_eq!(reversed.unwrap_err(), ConfigError::ConflictingKeySource);
    assert_eq!(
        ConfigError::ConflictingKeySource.to_string(),
        "static keys and a jwks_uri are both configured: choose one"
    );
    assert_no_fetch(&signer);
}

/// One `kid` on keys the token's `alg` tells apart (an RSA and an EC key) is a usable set,
/// as SMART's key resolution (by `kid` and `kty`) reads it; one `kid` on two keys that
/// could verify the same algorithm is refused, since a token of that algorithm could use
/// neither.
#[tokio::test]
async fn a_shared_kid_is_refused_only_where_the_alg_cannot_choose() {
    let signer = TestIssuer::start().await;
    let rsa = signer.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kty"] == "RSA")
        .unwrap()
        .clone();
    let under = |mut key: Value| {
        key["kid"] = json!("shared");
        key
    };
    let rsa_and_ec = json!({"keys": [under(rsa), under(crate::support::p256_jwk(&signer))]});
    assert!(StaticKeys::from_jwks_json(&rsa_and_ec.to_string()).is_ok());
    let other = TestIssuer::start().await;
    let two_ec = json!({"keys": [
        under(crate::support::p256_jwk(&signer)),
        under(crate::support::p256_jwk(&other)),
    ]});
    assert_eq!(
        StaticKeys::from_jwks_json(&two_ec.to_string()).unwrap_err(),
        smart_auth::ConfigError::InvalidStaticKeys {
            reason: "two different keys of the JWK Set have the same kid"
        }
    );
}

/// Static keys none of which verifies an accepted algorithm would refuse every token as
/// invalid: `build` says so instead (an RS256-only key with ES384 and RS384 accepted, an
/// Ed25519 key without EdDSA).
#[test]
fn static_keys_that_verify_no_accepted_algorithm_are_a_build_error() {
    let FixtureKeys {
        rsa_public,
        p384_public,
        ..
    } = fixture_keys();
    let expected = ConfigError::InvalidStaticKeys {
        reason: "no key verifies any of the accepted algorithms",
    };
    let build = |keys: StaticKeys, algorithms: &[SigningAlgorithm]| {
        TokenVerifier::builder("https://auth.example.org")
            .audience("https://fhir.example.org/r4")
            .static_keys(keys)
            .algorithms(algorithms.iter().copied())
            .build()
            .map(|_| ())
    };
    let rs256 = || StaticKeys::from_pem(&rsa_public, SigningAlgorithm::RS256, Some("r")).unwrap();
    let es384 = || StaticKeys::from_pem(&p384_public, SigningAlgorithm::ES384, Some("e")).unwrap();
    let ed25519 = || {
        StaticKeys::from_jwks_json(
            r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "d",
                "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"}]}"#,
        )
        .unwrap()
    };
    use SigningAlgorithm::{ES384, EdDSA, RS256, RS384};
    assert_eq!(build(rs256(), &[ES384, RS384]).unwrap_err(), expected);
    assert_eq!(build(es384(), &[RS256]).unwrap_err(), expected);
    assert_eq!(build(ed25519(), &[RS256, ES384]).unwrap_err(), expected);
    assert!(build(rs256(), &[ES384, RS256]).is_ok());
    assert!(build(ed25519(), &[EdDSA]).is_ok());
    assert!(build(es384(), &[ES384]).is_ok());
}
