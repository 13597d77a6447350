//! The development authorization server: token endpoint, registration, introspection.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
use smart_auth::testing::{TestIssuer, TokenBuilder};
use smart_auth::{ManualClock, SigningAlgorithm, SmartAuthLayer};

use crate::support::app_with_layer;

pub(crate) const FHIR: &str = "https://fhir.example.test/r4";
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A development server, plus a `TestIssuer` used only as the client's key holder: its JWK
/// Set is the client's registered key set and it signs the client's assertions.
pub(crate) struct Setup {
    pub(crate) server: DevAuthServer,
    pub(crate) keys: TestIssuer,
    pub(crate) clock: ManualClock,
    pub(crate) http: reqwest::Client,
}

pub(crate) async fn setup() -> Setup {
    let clock = ManualClock::new();
    let server = DevAuthServer::builder(FHIR)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let keys = TestIssuer::builder().clock(clock.clone()).start().await;
    server.register(
        ClientRegistration::private_key_jwt(
            "backend",
            keys.jwks(),
            ["system/*.rs", "system/Observation.c"],
        )
        .unwrap(),
    );
    server.register(ClientRegistration::client_secret_basic(
        "basic-client",
        "p@ss word:1",
        ["system/Patient.rs"],
    ));
    Setup {
        server,
        keys,
        clock,
        http: crate::support::loopback_client(),
    }
}

impl Setup {
    /// A valid client assertion for `backend`.
    pub(crate) fn assertion(&self) -> TokenBuilder<'_> {
        self.keys
            .token()
            .alg(SigningAlgorithm::RS384)
            .header("typ", "JWT")
            .claim("iss", "backend")
            .claim("sub", "backend")
            .claim("aud", self.server.token_endpoint())
            .without("client_id")
            .without("scope")
            .expires_in_secs(240)
    }

    pub(crate) async fn post_form(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .http
            .post(self.server.token_endpoint())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((id, secret)) = basic {
            let credentials = STANDARD.encode(format!("{}:{}", urlencode(id), urlencode(secret)));
            request = request.header("authorization", format!("Basic {credentials}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
        (status, headers, body)
    }

    pub(crate) async fn with_assertion(
        &self,
        assertion: &str,
        scope: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.post_form(
            &[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion),
            ],
            None,
        )
        .await
    }
}

pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn private_key_jwt_with_rs384_and_es384_gives_tokens_the_layer_accepts() {
    let setup = setup().await;
    for alg in [SigningAlgorithm::RS384, SigningAlgorithm::ES384] {
        let assertion = setup.assertion().alg(alg).sign();
        let (status, headers, body) = setup
            .with_assertion(&assertion, "system/Patient.rs system/Observation.rs")
            .await;
        assert_eq!(status, StatusCode::OK, "{alg}: {body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["pragma"], "no-cache");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["scope"], "system/Patient.rs system/Observation.rs");
        // Exactly these members: no `refresh_token` (SMART Backend Services: SHOULD NOT be
        // issued; RFC 6749 section 4.4.3), no `id_token`.
        let mut members: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(
            members,
            ["access_token", "expires_in", "scope", "token_type"],
            "{alg}"
        );

        // The resource server accepts it, discovering the server's keys from its URL.
        let layer = SmartAuthLayer::builder(setup.server.url())
            .audience(FHIR)
            .clock(setup.clock.clone())
            .token_type(smart_auth::TokenTypePolicy::Rfc9068)
            .build()
            .unwrap();
        let app = app_with_layer(TestIssuer::start().await, setup.clock.clone(), layer).await;
        let answer = app
            .get_with_token(body["access_token"].as_str().unwrap())
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["client_id"], "backend");
        assert_eq!(answer.body["sub"], "backend");
        assert_eq!(
            answer.body["scopes"],
            json!(["system/Patient.rs", "system/Observation.rs"])
        );
    }
}

#[tokio::test]
async fn client_secret_basic() {
    let setup = setup().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "system/Patient.read"),
    ];
    let (status, _, body) = setup
        .post_form(&form, Some(("basic-client", "p@ss word:1")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "system/Patient.read");
    let (status, headers, body) = setup
        .post_form(&form, Some(("basic-client", "wrong")))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
    assert!(!body.to_string().contains("wrong"), "no secret echoed");
    let (status, _, body) = setup.post_form(&form, Some(("nobody", "x"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    // A scope string is bounded (each token keeps its scope): 8 KiB, 256 scope tokens.
    let long = format!("system/Patient.rs?a={}", "x".repeat(8 * 1024));
    let many = vec!["system/Patient.rs"; 257].join(" ");
    for scope in [long.as_str(), many.as_str()] {
        let form = [("grant_type", "client_credentials"), ("scope", scope)];
        let (status, _, body) = setup
            .post_form(&form, Some(("basic-client", "p@ss word:1")))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_scope")),
            "{} bytes",
            scope.len()
        );
    }
    // A client registered with an empty secret is authenticated by no secret, not even
    // the empty one.
    setup
        .server
        .register(ClientRegistration::client_secret_basic(
            "no-secret",
            "",
            ["system/Patient.rs"],
        ));
    for secret in ["", " ", "x"] {
        let (status, _, body) = setup.post_form(&form, Some(("no-secret", secret))).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "{secret:?}"
        );
    }
}

#[tokio::test]
async fn request_errors() {
    let setup = setup().await;
    let assertion = setup.assertion().sign();
    type Row<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let rows: Vec<Row<'_>> = vec![
        (
            vec![
                ("grant_type", "authorization_code"),
                ("scope", "system/Patient.rs"),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("scope", "system/Patient.rs"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
                ("client_assertion_type", "urn:other"),
                ("client_assertion", &assertion),
            ],
            400,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
                ("client_assertion", &assertion),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
            400,
            "invalid_request",
        ),
    ];
    for (form, status, error) in rows {
        let (got_status, headers, body) = setup.post_form(&form, None).await;
        assert_eq!(
            (got_status.as_u16(), body["error"].as_str()),
            (status, Some(error)),
            "{form:?}"
        );
        assert_eq!(headers["content-type"], "application/json");
        assert!(body["error_description"].is_string());
    }
    // Basic plus an assertion: two methods.
    let (status, _, body) = setup
        .post_form(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
            Some(("basic-client", "p@ss word:1")),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test]
async fn assertion_rules() {
    let setup = setup().await;
    let kid = setup.keys.jwks()["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_keys = TestIssuer::start().await;
    let rows: Vec<(String, &str)> = vec![
        (
            setup.assertion().expires_in_secs(600).sign(),
            "exp 10 minutes ahead",
        ),
        (setup.assertion().expires_in_secs(-10).sign(), "expired"),
        (
            setup
                .assertion()
                .claim("aud", "https://other.example/token")
                .sign(),
            "wrong aud",
        ),
        (
            setup.assertion().claim("sub", "someone-else").sign(),
            "iss != sub",
        ),
        (
            setup
                .assertion()
                .claim("iss", "unknown")
                .claim("sub", "unknown")
                .sign(),
            "names no key registered",
        ),
        (setup.assertion().kid("no-such-kid").sign(), "unknown kid"),
        (
            setup
                .assertion()
                .kid(&kid)
                .alg(SigningAlgorithm::ES384)
                .sign(),
            "kid of another key family",
        ),
        (setup.assertion().without("jti").sign(), "no jti"),
        (
            setup
                .assertion()
                .header("jku", "https://evil.example/jwks")
                .sign(),
            "jku not registered",
        ),
        (
            other_keys
                .token()
                .alg(SigningAlgorithm::RS384)
                .claim("iss", "backend")
                .claim("sub", "backend")
                .claim("aud", setup.server.token_endpoint())
                .kid(&kid)
                .sign(),
            "signed by another key",
        ),
        ("not.a.jwt".to_owned(), "garbage"),
    ];
    for (assertion, case) in rows {
        let (status, _, body) = setup.with_assertion(&assertion, "system/Patient.rs").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_client")),
            "{case}: {body}"
        );
    }
}

#[tokio::test]
async fn replayed_assertion_is_refused() {
    let setup = setup().await;
    let assertion = setup.assertion().claim("jti", "once").sign();
    assert_eq!(
        setup
            .with_assertion(&assertion, "system/Patient.rs")
            .await
            .0,
        StatusCode::OK
    );
    let (status, _, body) = setup.with_assertion(&assertion, "system/Patient.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client"))
    );
    // Another assertion with the same jti, still inside the first one's lifetime.
    let again = setup
        .assertion()
        .claim("jti", "once")
        .expires_in_secs(100)
        .sign();
    assert_eq!(
        setup.with_assertion(&again, "system/Patient.rs").await.0,
        StatusCode::BAD_REQUEST
    );
}

/// An assertion used once stays used when the clock is set back after its id was
/// dropped: a later request at a later time purged it, and a replay with the clock back
/// inside the assertion's lifetime is refused all the same.
#[tokio::test]
async fn a_clock_set_back_does_not_reopen_a_used_assertion() {
    let setup = setup().await;
    let used = setup.assertion().claim("jti", "once").sign();
    assert_eq!(
        setup.with_assertion(&used, "system/Patient.rs").await.0,
        StatusCode::OK
    );
    // Past its lifetime and the leeway, another assertion makes the server drop its id.
    setup.clock.advance(Duration::from_secs(600));
    let later = setup.assertion().claim("jti", "later").sign();
    assert_eq!(
        setup.with_assertion(&later, "system/Patient.rs").await.0,
        StatusCode::OK
    );
    setup.clock.rewind(Duration::from_secs(600));
    let (status, _, body) = setup.with_assertion(&used, "system/Patient.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client"))
    );
}

#[tokio::test]
async fn scopes_are_granted_within_the_registration() {
    let setup = setup().await;
    let (status, _, body) = setup
        .with_assertion(
            &setup.assertion().sign(),
            "system/Patient.rs system/Patient.cud system/Observation.c",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], "system/Patient.rs system/Observation.c");
    let (status, _, body) = setup
        .with_assertion(
            &setup.assertion().sign(),
            "system/Patient.cud user/Patient.rs",
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
}

#[tokio::test]
async fn jwks_uri_registration_and_concurrent_requests() {
    let setup = setup().await;
    setup
        .server
        .register(ClientRegistration::private_key_jwt_uri(
            "by-url",
            setup.keys.jwks_uri(),
            ["system/*.rs"],
        ));
    let assertions: Vec<String> = (0..20)
        .map(|_| {
            setup
                .assertion()
                .claim("iss", "by-url")
                .claim("sub", "by-url")
                .alg(SigningAlgorithm::ES384)
                .sign()
        })
        .collect();
    let answers = join_all(
        assertions
            .iter()
            .map(|a| setup.with_assertion(a, "system/Patient.rs")),
    )
    .await;
    assert!(
        answers
            .iter()
            .all(|(status, _, _)| *status == StatusCode::OK),
        "{:?}",
        answers.iter().map(|a| &a.2).collect::<Vec<_>>()
    );
    let tokens: std::collections::HashSet<_> = answers
        .iter()
        .map(|(_, _, body)| body["access_token"].to_string())
        .collect();
    assert_eq!(tokens.len(), 20);
    // jku naming the registered URL is accepted.
    let with_jku = setup
        .assertion()
        .claim("iss", "by-url")
        .claim("sub", "by-url")
        .header("jku", setup.keys.jwks_uri())
        .sign();
    assert_eq!(
        setup.with_assertion(&with_jku, "system/Patient.rs").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn dynamic_registration() {
    let setup = setup().await;
    let url = format!("{}/register", setup.server.url());
    let response = setup.http.post(&url).json(&json!({"jwks": setup.keys.jwks(), "scope": "system/*.rs", "token_endpoint_auth_method": "private_key_jwt"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let registered: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let client_id = registered["client_id"].as_str().unwrap();
    let assertion = setup
        .assertion()
        .claim("iss", client_id)
        .claim("sub", client_id)
        .sign();
    assert_eq!(
        setup
            .with_assertion(&assertion, "system/Encounter.rs")
            .await
            .0,
        StatusCode::OK
    );

    let response = setup.http.post(&url).json(&json!({"scope": "system/Patient.rs", "token_endpoint_auth_method": "client_secret_basic"})).send().await.unwrap();
    let registered: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let (id, secret) = (
        registered["client_id"].as_str().unwrap(),
        registered["client_secret"].as_str().unwrap(),
    );
    let (status, _, _) = setup
        .post_form(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
            ],
            Some((id, secret)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    for bad in [
        json!({"scope": "x", "jwks_uri": "http://evil.example/jwks"}),
        json!({"jwks": {"keys": []}, "scope": "x"}),
        json!({"jwks": setup.keys.jwks()}),
        json!([1]),
    ] {
        let response = setup.http.post(&url).json(&bad).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn introspection_and_revocation() {
    let setup = setup().await;
    let (_, _, body) = setup
        .with_assertion(&setup.assertion().sign(), "system/Patient.rs")
        .await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let introspect = |token: String, auth: Option<(&'static str, &'static str)>| {
        let http = setup.http.clone();
        let url = setup.server.introspection_endpoint();
        async move {
            let mut request = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={token}"));
            if let Some((id, secret)) = auth {
                request = request.basic_auth(id, Some(secret));
            }
            let response = request.send().await.unwrap();
            (
                response.status(),
                serde_json::from_slice::<Value>(&response.bytes().await.unwrap())
                    .unwrap_or(Value::Null),
            )
        }
    };
    // A client registered in code introspects only its own tokens by default.
    assert_eq!(
        introspect(token.clone(), Some(("basic-client", "p@ss word:1"))).await,
        (StatusCode::OK, json!({"active": false}))
    );
    // A resource server registered as one introspects any client's token.
    setup.server.register(
        ClientRegistration::client_secret_basic("fhir-api", "fhir-api-secret", ["system/*.rs"])
            .allow_introspecting_any_token(),
    );
    let basic = Some(("fhir-api", "fhir-api-secret"));
    let (status, active) = introspect(token.clone(), basic).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            active["active"].as_bool(),
            active["client_id"].as_str(),
            active["scope"].as_str()
        ),
        (Some(true), Some("backend"), Some("system/Patient.rs"))
    );
    assert!(active["exp"].is_i64());
    // Unauthenticated callers are refused.
    assert_eq!(
        introspect(token.clone(), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A bearer token of this server may introspect.
    let response = setup
        .http
        .post(setup.server.introspection_endpoint())
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A bearer caller whose token is none of this server's: 401 as RFC 6750 section 3
    // says (RFC 7662 section 2.3), `invalid_token`, the Basic challenge beside it.
    let response = setup
        .http
        .post(setup.server.introspection_endpoint())
        .bearer_auth("forged-caller")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"smart-auth development server\", error=\"invalid_token\", \
         Basic realm=\"smart-auth development server\""
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    // A bearer credential that is no `b64token` is malformed: 400 `invalid_request`
    // (RFC 6750 section 3.1), not a token to look up.
    for malformed in ["Bearer a b", "Bearer a,b", "Bearer \"x\""] {
        let response = setup
            .http
            .post(setup.server.introspection_endpoint())
            .header("authorization", malformed)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{malformed}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"smart-auth development server\", error=\"invalid_request\", \
             Basic realm=\"smart-auth development server\"",
            "{malformed}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{malformed}");
    }
    // Unknown, revoked and expired tokens are inactive, with nothing else said.
    assert_eq!(
        introspect("forged".into(), basic).await.1,
        json!({"active": false})
    );
    // A client revokes its own token.
    let (_, _, second) = setup
        .post_form(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
            ],
            Some(("basic-client", "p@ss word:1")),
        )
        .await;
    let second = second["access_token"].as_str().unwrap().to_owned();
    let revoke = setup
        .http
        .post(format!("{}/revoke", setup.server.url()))
        .basic_auth("basic-client", Some("p@ss word:1"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={second}"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::OK);
    assert_eq!(introspect(second, basic).await.1, json!({"active": false}));
    setup.clock.advance(Duration::from_secs(301));
    assert_eq!(introspect(token, basic).await.1, json!({"active": false}));
}

#[tokio::test]
async fn discovery_documents_and_opaque_tokens() {
    let server = DevAuthServer::builder(FHIR)
        .opaque_tokens()
        .start()
        .await
        .unwrap();
    let configuration = server.configuration();
    assert_eq!(configuration.token_endpoint(), server.token_endpoint());
    let served: Value = serde_json::from_slice(
        &reqwest::get(format!("{}/.well-known/smart-configuration", server.url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        served["introspection_endpoint"],
        server.introspection_endpoint()
    );
    // SMART states `issuer` only with `sso-openid-connect`, which this server does not
    // list; its OpenID metadata names the issuer.
    assert_eq!(served.get("issuer"), None);
    assert_eq!(configuration.issuer(), None);
    let openid: Value = reqwest::get(format!("{}/.well-known/openid-configuration", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openid["issuer"], server.url());
    assert!(
        served["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("client-confidential-asymmetric"))
    );
    server.register(ClientRegistration::client_secret_basic(
        "c",
        "s",
        ["system/*.rs"],
    ));
    let response = crate::support::loopback_client()
        .post(server.token_endpoint())
        .basic_auth("c", Some("s"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=system%2FPatient.rs")
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.matches('.').count(), 0, "opaque, not a JWT");
    let refused = DevAuthServer::builder(FHIR)
        .bind(([0, 0, 0, 0], 0).into())
        .start()
        .await
        .expect_err("loopback only");
    assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        refused.to_string(),
        "the development server binds loopback addresses only"
    );
}

/// The OpenID (RFC 8414) metadata is made from the SMART configuration: every member they
/// share is equal, every list naming `private_key_jwt` comes with its algorithms (RFC 8414
/// section 2), introspection and revocation state their client authentication, and no
/// response type is claimed by a server without an authorization endpoint.
#[tokio::test]
async fn openid_metadata_agrees_with_the_smart_configuration() {
    let server = DevAuthServer::builder(FHIR).start().await.unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("{}/.well-known/{path}", server.url());
        let request = client.get(url).header("origin", "https://app.example");
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], "application/json");
            // Discovery is readable from any origin (SMART App Launch, CORS).
            assert_eq!(response.headers()["access-control-allow-origin"], "*");
            response.json::<Value>().await.unwrap()
        }
    };
    let smart = get("smart-configuration").await;
    let openid = get("openid-configuration").await;
    // RFC 8414's own path serves the same document.
    assert_eq!(get("oauth-authorization-server").await, openid);
    let (smart, openid) = (smart.as_object().unwrap(), openid.as_object().unwrap());

    let methods = json!(["private_key_jwt", "client_secret_basic"]);
    let algorithms = &smart["token_endpoint_auth_signing_alg_values_supported"];
    let listed: Vec<&str> = algorithms
        .as_array()
        .unwrap()
        .iter()
        .map(|alg| alg.as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"RS384") && listed.contains(&"ES384"),
        "{listed:?}"
    );
    for document in [smart, openid] {
        for endpoint in [
            "token_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
        ] {
            let methods_member = format!("{endpoint}_auth_methods_supported");
            let algorithms_member = format!("{endpoint}_auth_signing_alg_values_supported");
            assert_eq!(document[&methods_member], methods, "{methods_member}");
            assert_eq!(
                &document[&algorithms_member], algorithms,
                "{algorithms_member}"
            );
        }
        assert_eq!(document.get("response_types_supported"), None);
        assert_eq!(
            document["grant_types_supported"],
            json!(["client_credentials"])
        );
    }
    // Every SMART member but SMART's own is in the OpenID metadata, with the same value.
    for (name, value) in smart {
        match name.as_str() {
            "capabilities" | "code_challenge_methods_supported" => {
                assert_eq!(openid.get(name), None, "{name}");
            }
            _ => assert_eq!(openid.get(name), Some(value), "{name}"),
        }
    }
    // What only the OpenID metadata states.
    let mut only_openid: Vec<&str> = openid
        .keys()
        .filter(|name| !smart.contains_key(*name))
        .map(String::as_str)
        .collect();
    only_openid.sort_unstable();
    assert_eq!(
        only_openid,
        [
            "id_token_signing_alg_values_supported",
            "issuer",
            "subject_types_supported"
        ]
    );
    assert_eq!(openid["issuer"], server.url());
    // The document the server hands out in code is the one it serves.
    assert_eq!(
        serde_json::to_value(server.configuration()).unwrap(),
        Value::Object(smart.clone())
    );
}

/// A token for the client `c` (secret `s`, registered in code) by HTTP Basic.
async fn basic_token(server: &DevAuthServer) -> (StatusCode, Value) {
    server.register(ClientRegistration::client_secret_basic(
        "c",
        "s",
        ["system/*.rs"],
    ));
    let response = crate::support::loopback_client()
        .post(server.token_endpoint())
        .basic_auth("c", Some("s"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=system%2FPatient.rs")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The claims of a compact JWS, unverified.
fn jwt_claims(token: &str) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = token.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The token lifetime is 1 s to 24 h and the clock leeway at most 10 minutes: `start`
/// refuses anything else with `InvalidInput` (a lifetime near `u64::MAX` seconds used to
/// overflow `iat + lifetime`), and the bounds themselves are accepted.
#[tokio::test]
async fn token_lifetime_and_clock_leeway_are_bounded_at_start() {
    use smart_auth::dev_server::{MAX_CLOCK_LEEWAY, MAX_TOKEN_LIFETIME};
    assert_eq!(MAX_TOKEN_LIFETIME, Duration::from_secs(86_400));
    assert_eq!(MAX_CLOCK_LEEWAY, Duration::from_secs(600));
    for lifetime in [
        Duration::ZERO,
        Duration::from_millis(999),
        MAX_TOKEN_LIFETIME + Duration::from_secs(1),
        Duration::from_secs(u64::try_from(i64::MAX).unwrap()),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ] {
        let error = DevAuthServer::builder(FHIR)
            .token_lifetime(lifetime)
            .start()
            .await
            .unwrap_err();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::InvalidInput,
            "{lifetime:?}"
        );
        assert_eq!(
            error.to_string(),
            "token_lifetime must be at least 1 s and at most 24 hours"
        );
    }
    for leeway in [
        MAX_CLOCK_LEEWAY + Duration::from_secs(1),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ] {
        let error = DevAuthServer::builder(FHIR)
            .clock_leeway(leeway)
            .start()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{leeway:?}");
        assert_eq!(error.to_string(), "clock_leeway must be at most 10 minutes");
    }
    // The bounds: tokens live exactly the configured whole seconds.
    for (lifetime, seconds) in [
        (Duration::from_secs(1), 1),
        (Duration::from_millis(1_500), 1),
        (MAX_TOKEN_LIFETIME, 86_400),
    ] {
        let server = DevAuthServer::builder(FHIR)
            .token_lifetime(lifetime)
            .clock_leeway(MAX_CLOCK_LEEWAY)
            .start()
            .await
            .unwrap();
        let (status, body) = basic_token(&server).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["expires_in"], seconds);
        let claims = jwt_claims(body["access_token"].as_str().unwrap());
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            seconds
        );
    }
}

/// A clock this far ahead, where `now + lifetime` no longer fits in an `i64`.
#[derive(Debug)]
struct EndOfTime;

impl smart_auth::Clock for EndOfTime {
    fn now(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(i64::MAX).unwrap() - 10)
    }
}

/// When the expiry cannot be written the token endpoint answers 500 `server_error` and
/// issues nothing, instead of panicking (debug) or writing a negative `exp` (release);
/// the server goes on answering.
#[tokio::test]
async fn a_clock_at_the_end_of_time_gives_a_server_error_not_an_overflow() {
    let server = DevAuthServer::builder(FHIR)
        .clock(EndOfTime)
        .opaque_tokens()
        .start()
        .await
        .unwrap();
    let (status, body) = basic_token(&server).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "server_error");
    assert_eq!(body.get("access_token"), None);
    assert_eq!(server.stored_tokens(), 0);
    let server = DevAuthServer::builder(FHIR)
        .clock(EndOfTime)
        .start()
        .await
        .unwrap();
    let (status, body) = basic_token(&server).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error"))
    );
    // Registration at the same instant saturates its expiry and still works.
    let response = crate::support::loopback_client()
        .post(format!("{}/register", server.url()))
        .json(&json!({"scope": "system/Patient.rs", "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        reqwest::get(format!("{}/.well-known/smart-configuration", server.url()))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// The other duration settings (`client_lifetime`, `jwks_cache_ttl`) saturate instead of
/// overflowing: the largest values start a server whose registration and token
/// endpoints work, and whose registrations expire at the largest time there is.
#[tokio::test]
async fn the_largest_client_lifetime_and_key_set_ttl_saturate() {
    let setup = setup().await;
    let server = DevAuthServer::builder(FHIR)
        .client_lifetime(Duration::MAX)
        .jwks_cache_ttl(Duration::MAX)
        .start()
        .await
        .unwrap();
    let register = |body: Value| {
        crate::support::loopback_client()
            .post(format!("{}/register", server.url()))
            .json(&body)
            .send()
    };
    let response = register(
        json!({"scope": "system/Patient.rs", "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let registered: Value = response.json().await.unwrap();
    assert_eq!(registered["client_secret_expires_at"], i64::MAX);
    let token = crate::support::loopback_client()
        .post(server.token_endpoint())
        .basic_auth(
            registered["client_id"].as_str().unwrap(),
            registered["client_secret"].as_str(),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=system%2FPatient.rs")
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    // A key set fetched from a client's jwks_uri is cached until the end of time.
    let response =
        register(json!({"scope": "system/Patient.rs", "jwks_uri": setup.keys.jwks_uri()}))
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let client_id = response.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        let assertion = setup
            .keys
            .token()
            .alg(SigningAlgorithm::ES384)
            .header("typ", "JWT")
            .claim("iss", client_id.as_str())
            .claim("sub", client_id.as_str())
            .claim("aud", server.token_endpoint())
            .without("client_id")
            .without("scope")
            .expires_in_secs(240)
            .sign();
        let response = crate::support::loopback_client()
            .post(server.token_endpoint())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&scope=system%2FPatient.rs\
                 &client_assertion_type={}&client_assertion={assertion}",
                urlencode(ASSERTION_TYPE)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(setup.keys.jwks_fetches(), 1);
}

/// Slow clients cannot hold the development server's connections: headers not finished
/// within the header read timeout (10 s) lose the connection without an answer, and a body
/// not finished within the request time limit (30 s) gets 408 and a closed connection.
/// Time is paused and advanced by tokio while every task waits, so nothing here waits for
/// real, and each cut-off comes at exactly its limit on tokio's clock; each read is bounded
/// so that a server without the limits fails the test instead of hanging.
#[tokio::test(start_paused = true)]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = DevAuthServer::builder("https://fhir.example.test/r4")
        .start()
        .await
        .unwrap();
    let address = server.url().trim_start_matches("http://").to_owned();
    // What the server sent until it closed the connection, and when it closed it.
    let read_all = |mut stream: tokio::net::TcpStream, started: tokio::time::Instant| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(3600), stream.read_to_end(&mut answer))
            .await
            .expect("the server closed the connection")
            .unwrap();
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    };
    // Headers that never end: the connection is closed at 10 s, with nothing sent.
    let started = tokio::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!("POST /token HTTP/1.1\r\nHost: {address}\r\nContent-Type: applic");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, after) = read_all(stream, started).await;
    assert_eq!(answer, "", "no answer to headers that never end");
    assert_eq!(
        after,
        Duration::from_secs(10),
        "cut off at the header read timeout"
    );
    // A body that never ends: 408 at 30 s, and the connection closed.
    let started = tokio::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, after) = read_all(stream, started).await;
    assert_eq!(
        after,
        Duration::from_secs(30),
        "cut off at the request time limit"
    );
    // The answer without its `Date` line (the host's wall clock).
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect();
    assert_eq!(
        head,
        [
            "HTTP/1.1 408 Request Timeout",
            "content-type: application/json",
            "cache-control: no-store",
            "pragma: no-cache",
            "connection: close",
            "content-length: 86",
        ],
        "{answer}"
    );
    assert_eq!(
        body,
        r#"{"error":"invalid_request","error_description":"the request was not received in time"}"#
    );
    // The server still answers.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request =
        format!("GET /jwks.json HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (answer, _) = read_all(stream, tokio::time::Instant::now()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
