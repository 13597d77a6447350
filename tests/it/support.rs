//! The protected test app and helpers.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::testing::TestIssuer;
use smart_auth::{ManualClock, SmartAuthBuilder, SmartAuthLayer, SmartClaims};

/// A FHIR-style app behind `SmartAuthLayer`, served on 127.0.0.1.
pub struct App {
    pub url: String,
    pub issuer: TestIssuer,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub layer: SmartAuthLayer,
    /// Requests that have entered the protected routes (counted in front of the layer).
    pub entered: tokio::sync::watch::Sender<usize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What the handler saw.
pub async fn echo_claims(claims: SmartClaims) -> Json<Value> {
    Json(json!({
        "iss": claims.iss(),
        "sub": claims.sub(),
        "client_id": claims.client_id(),
        "aud": claims.aud(),
        "exp": claims.exp(),
        "iat": claims.iat(),
        "jti": claims.jti(),
        "scopes": claims.scopes(),
        "patient": claims.patient(),
        "encounter": claims.encounter(),
        "fhirUser": claims.fhir_user(),
        "tenant": claims.tenant(),
        "fhirContext": claims.fhir_context().iter().map(|c| json!({
            "reference": c.reference(), "canonical": c.canonical(), "type": c.resource_type(), "role": c.role(),
        })).collect::<Vec<_>>(),
        "custom": claims.claim("custom"),
    }))
}

async fn optional_claims(claims: Option<SmartClaims>) -> Json<Value> {
    Json(
        json!({ "client_id": claims.as_ref().and_then(|c| c.client_id().map(str::to_owned)), "anonymous": claims.is_none() }),
    )
}

/// An HTTP client for the tests' loopback servers: never through a proxy the machine's
/// environment names (`HTTP_PROXY`, `ALL_PROXY`), which reqwest would otherwise use for
/// `127.0.0.1` too.
pub fn loopback_client() -> reqwest::Client {
    loopback_client_builder().build().unwrap()
}

/// [`loopback_client`]'s builder, for tests that set more.
pub fn loopback_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy()
}

/// The P-256 key `issuer` publishes, as its JWK (to publish under another issuer's `kid`).
pub fn p256_jwk(issuer: &TestIssuer) -> Value {
    jwk_on_curve(issuer, "P-256")
}

/// The key `issuer` publishes on the curve `crv` (`P-256`, `Ed25519`, ...), as its JWK.
pub fn jwk_on_curve(issuer: &TestIssuer, crv: &str) -> Value {
    issuer.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["crv"] == crv)
        .unwrap()
        .clone()
}

pub async fn serve(router: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, server)
}

/// An issuer with a manual clock shared with the layer.
pub async fn issuer(clock: &ManualClock) -> TestIssuer {
    TestIssuer::builder().clock(clock.clone()).start().await
}

/// Starts the app with a fresh issuer; `configure` adjusts the layer.
pub async fn app(configure: impl FnOnce(SmartAuthBuilder) -> SmartAuthBuilder) -> App {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    app_with(issuer, clock, configure).await
}

pub async fn app_with(
    issuer: TestIssuer,
    clock: ManualClock,
    configure: impl FnOnce(SmartAuthBuilder) -> SmartAuthBuilder,
) -> App {
    let builder = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock.clone());
    let layer = configure(builder)
        .build()
        .expect("valid test configuration");
    app_with_layer(issuer, clock, layer).await
}

pub async fn app_with_layer(issuer: TestIssuer, clock: ManualClock, layer: SmartAuthLayer) -> App {
    let entered = tokio::sync::watch::Sender::new(0);
    let counter = entered.clone();
    let protected = Router::new()
        .route("/fhir/Patient/{id}", get(echo_claims))
        .route("/fhir/optional", get(optional_claims))
        .route(
            "/fhir/metadata",
            get(|| async { Json(json!({"resourceType": "CapabilityStatement"})) }),
        )
        .layer(layer.clone())
        // Outermost: counts a request before the layer sees it. The count and the layer's
        // first poll happen in the same poll of the request's task, so once a request is
        // counted it has run inside the layer up to its first wait.
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                counter.send_modify(|n| *n += 1);
                next.run(request)
            },
        ));
    let unprotected = Router::new().route("/unprotected", get(echo_claims));
    let (url, server) = serve(protected.merge(unprotected)).await;
    let http = loopback_client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    App {
        url,
        issuer,
        clock,
        http,
        layer,
        entered,
        server,
    }
}

/// A response reduced to what the tests assert on.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub challenge: Option<String>,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn issue_code(&self) -> &str {
        self.body["issue"][0]["code"].as_str().unwrap_or("")
    }
}

impl App {
    /// Waits (30 s at most) until `requests` requests have entered the protected routes
    /// since the app started.
    pub async fn wait_entered(&self, requests: usize) {
        let mut entered = self.entered.subscribe();
        tokio::time::timeout(
            Duration::from_secs(30),
            entered.wait_for(|n| *n >= requests),
        )
        .await
        .unwrap_or_else(|_| panic!("{requests} requests did not arrive"))
        .unwrap();
    }

    pub fn patient_url(&self) -> String {
        format!("{}/fhir/Patient/1", self.url)
    }

    pub async fn get_with_token(&self, token: &str) -> Answer {
        self.send(
            self.http
                .get(self.patient_url())
                .header("authorization", format!("Bearer {token}")),
        )
        .await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request");
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let challenge = header("www-authenticate");
        let content_type = header("content-type");
        let retry_after = header("retry-after");
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            challenge,
            content_type,
            retry_after,
            body,
        }
    }

    /// The exact challenge the layer sends for an invalid token.
    pub fn invalid_token_challenge(&self, description: &str) -> String {
        format!(
            "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{description}\"",
            self.issuer.audience()
        )
    }

    pub async fn assert_invalid_token(&self, token: &str, description: &str) {
        let answer = self.get_with_token(token).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{description}: {answer:?}"
        );
        assert_eq!(
            answer.challenge.as_deref(),
            Some(self.invalid_token_challenge(description).as_str())
        );
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/fhir+json; charset=utf-8")
        );
        assert_eq!(answer.body["resourceType"], "OperationOutcome");
    }
}

/// The exact challenge for a valid token on a request that scope enforcement cannot read
/// one way only (400 `invalid_request`), with the layer's `realm`.
pub fn malformed_request_challenge(realm: &str) -> String {
    format!(
        "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"the request \
         cannot be read as one FHIR interaction\""
    )
}

/// Asserts a 503's `Retry-After` in a cooldown that runs on tokio's clock while real time
/// runs too: `expected` whole seconds (the cooldown, less what `advance_monotonic` moved
/// it on), less the whole seconds of real time that have passed since `since`, an instant
/// taken before the request that started the cooldown. The value is the time left rounded
/// up, so with less than a second of real time passed it is exactly `expected`, and a
/// stalled runner cannot fail the test.
#[track_caller]
pub fn assert_retry_after(
    retry_after: Option<&str>,
    expected: u64,
    since: std::time::Instant,
    context: &str,
) {
    let passed = since.elapsed().as_secs();
    let actual: u64 = retry_after
        .unwrap_or_else(|| panic!("{context}: no Retry-After"))
        .parse()
        .unwrap_or_else(|_| panic!("{context}: Retry-After {retry_after:?}"));
    let least = expected.saturating_sub(passed).max(1);
    assert!(
        (least..=expected).contains(&actual),
        "{context}: Retry-After {actual}, expected {expected} less at most {passed} s passed"
    );
}
