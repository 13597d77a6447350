//! Token introspection (RFC 7662): against the development server, and against a stub for
//! every bad answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
use smart_auth::testing::TestIssuer;
use smart_auth::{
    Introspection, IntrospectionAuth, IntrospectionMode, ManualClock, SmartAuthBuilder,
    SmartAuthLayer,
};

use crate::support::{App, app_with_layer, serve};

const FHIR: &str = "https://fhir.example.test/r4";

async fn token_from(server: &DevAuthServer, client: &str, secret: &str, scope: &str) -> String {
    let response = reqwest::Client::new()
        .post(server.token_endpoint())
        .basic_auth(client, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope={}",
            scope.replace('/', "%2F").replace(' ', "+")
        ))
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    body["access_token"].as_str().expect("a token").to_owned()
}

async fn app_for(
    issuer: &str,
    clock: &ManualClock,
    configure: impl FnOnce(SmartAuthBuilder) -> SmartAuthBuilder,
) -> App {
    let layer = configure(
        SmartAuthLayer::builder(issuer)
            .audience(FHIR)
            .clock(clock.clone()),
    )
    .build()
    .unwrap();
    app_with_layer(TestIssuer::start().await, clock.clone(), layer).await
}

async fn dev_server(clock: &ManualClock, opaque: bool) -> DevAuthServer {
    let mut builder = DevAuthServer::builder(FHIR).clock(clock.clone());
    if opaque {
        builder = builder.opaque_tokens();
    }
    let server = builder.start().await.unwrap();
    server.register(ClientRegistration::client_secret_basic(
        "app",
        "app-secret",
        ["system/*.rs"],
    ));
    server.register(ClientRegistration::client_secret_basic(
        "resource-server",
        "rs-secret",
        ["system/*.rs"],
    ));
    server
}

#[tokio::test]
async fn opaque_tokens_through_the_dev_server() {
    let clock = ManualClock::new();
    let server = dev_server(&clock, true).await;
    // The endpoint is discovered from the issuer's smart-configuration.
    let app = app_for(server.url(), &clock, |b| {
        b.introspection(
            Introspection::new(IntrospectionAuth::basic("resource-server", "rs-secret"))
                .cache_ttl(Duration::ZERO),
        )
    })
    .await;
    let token = token_from(&server, "app", "app-secret", "system/Patient.rs").await;
    let answer = app.get_with_token(&token).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["client_id"], "app");
    assert_eq!(answer.body["scopes"], json!(["system/Patient.rs"]));
    assert_eq!(answer.body["iss"], server.url());
    // Revoked: refused.
    assert!(server.revoke(&token));
    app.assert_invalid_token(&token, "the access token is not active")
        .await;
    // Expired: refused.
    let fresh = token_from(&server, "app", "app-secret", "system/Patient.rs").await;
    assert_eq!(app.get_with_token(&fresh).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(301));
    app.assert_invalid_token(&fresh, "the access token is not active")
        .await;
    // Unknown.
    app.assert_invalid_token("not-a-real-token", "the access token is not active")
        .await;
}

#[tokio::test]
async fn static_bearer_authentication() {
    let clock = ManualClock::new();
    let server = dev_server(&clock, true).await;
    let own = token_from(&server, "resource-server", "rs-secret", "system/Patient.rs").await;
    let endpoint = server.introspection_endpoint();
    let app = app_for(server.url(), &clock, |b| {
        b.introspection(Introspection::new(IntrospectionAuth::bearer(own)).endpoint(endpoint))
    })
    .await;
    let token = token_from(&server, "app", "app-secret", "system/Patient.rs").await;
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    // Wrong credentials: the endpoint refuses us, which is an outage for the layer (503).
    let app = app_for(server.url(), &clock, |b| {
        b.introspection(Introspection::new(IntrospectionAuth::basic(
            "resource-server",
            "wrong",
        )))
    })
    .await;
    assert_eq!(
        app.get_with_token(&token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn jwt_then_introspection_catches_revoked_jwts() {
    let clock = ManualClock::new();
    let server = dev_server(&clock, false).await;
    let app = app_for(server.url(), &clock, |b| {
        b.introspection(
            Introspection::new(IntrospectionAuth::basic("resource-server", "rs-secret"))
                .mode(IntrospectionMode::AfterJwt)
                .cache_ttl(Duration::ZERO),
        )
    })
    .await;
    let token = token_from(&server, "app", "app-secret", "system/Patient.rs").await;
    assert_eq!(token.matches('.').count(), 2, "a JWT");
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    server.revoke(&token);
    app.assert_invalid_token(&token, "the access token is not active")
        .await;
    // A forged JWT never reaches introspection: local validation refuses it first.
    app.assert_invalid_token(&format!("{token}x"), "the access token is malformed")
        .await;
}

/// A scripted introspection endpoint.
#[derive(Clone, Default)]
struct Stub {
    calls: Arc<AtomicUsize>,
    answer: Arc<Mutex<StubAnswer>>,
    last_form: Arc<Mutex<String>>,
    last_authorization: Arc<Mutex<String>>,
}

#[derive(Clone)]
enum StubAnswer {
    Json(Value),
    Raw(&'static str, String),
    Status(u16),
    Delay(Duration, Value),
    Huge(usize),
}

impl Default for StubAnswer {
    fn default() -> Self {
        Self::Status(500)
    }
}

async fn stub_handler(
    State(stub): State<Stub>,
    headers: http::HeaderMap,
    body: String,
) -> Response {
    stub.calls.fetch_add(1, Ordering::SeqCst);
    *stub.last_form.lock().unwrap() = body;
    *stub.last_authorization.lock().unwrap() = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let answer = stub.answer.lock().unwrap().clone();
    match answer {
        StubAnswer::Json(value) => axum::Json(value).into_response(),
        StubAnswer::Raw(content_type, body) => {
            ([("content-type", content_type)], body).into_response()
        }
        StubAnswer::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
        StubAnswer::Delay(delay, value) => {
            tokio::time::sleep(delay).await;
            axum::Json(value).into_response()
        }
        StubAnswer::Huge(size) => {
            ([("content-type", "application/json")], " ".repeat(size)).into_response()
        }
    }
}

struct StubSetup {
    stub: Stub,
    issuer: String,
    clock: ManualClock,
    _server: tokio::task::JoinHandle<()>,
}

async fn stub() -> StubSetup {
    let stub = Stub::default();
    let router = Router::new()
        .route("/introspect", post(stub_handler))
        .with_state(stub.clone());
    let (url, server) = serve(router).await;
    StubSetup {
        stub,
        issuer: url,
        clock: ManualClock::new(),
        _server: server,
    }
}

impl StubSetup {
    fn answer(&self, answer: StubAnswer) {
        *self.stub.answer.lock().unwrap() = answer;
    }

    fn calls(&self) -> usize {
        self.stub.calls.load(Ordering::SeqCst)
    }

    async fn app(&self, configure: impl FnOnce(Introspection) -> Introspection) -> App {
        let endpoint = format!("{}/introspect", self.issuer);
        let settings = configure(
            Introspection::new(IntrospectionAuth::basic("rs id", "s3cret:x")).endpoint(endpoint),
        );
        app_for(&self.issuer, &self.clock, |b| {
            b.introspection(settings)
                .fetch_timeout(Duration::from_millis(500))
        })
        .await
    }

    fn active(&self, extra: Value) -> Value {
        let mut body = json!({
            "active": true, "client_id": "c1", "scope": "system/Patient.rs",
            "exp": smart_auth_now(&self.clock) + 300, "iss": self.issuer, "aud": FHIR,
        });
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value.clone();
            }
        }
        body
    }
}

fn smart_auth_now(clock: &ManualClock) -> i64 {
    use smart_auth::Clock as _;
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn request_shape_and_claims() {
    let setup = stub().await;
    setup.answer(StubAnswer::Json(setup.active(
        json!({"patient": "p1", "fhirUser": "Practitioner/2", "tenant": "t"}),
    )));
    let app = setup.app(|i| i).await;
    let answer = app.get_with_token("opaque+token/=").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["client_id"], "c1");
    assert_eq!(answer.body["patient"], "p1");
    assert_eq!(
        *setup.stub.last_form.lock().unwrap(),
        "token=opaque%2Btoken%2F%3D&token_type_hint=access_token"
    );
    assert_eq!(
        *setup.stub.last_authorization.lock().unwrap(),
        "Basic cnMraWQ6czNjcmV0JTNBeA==",
        "form-encoded id and secret"
    );
}

#[tokio::test]
async fn bad_answers_get_exact_refusals() {
    let setup = stub().await;
    let now = smart_auth_now(&setup.clock);
    let inactive = "the access token is not active";
    let rows: Vec<(Value, u16, &str)> = vec![
        (json!({"active": false}), 401, inactive),
        (setup.active(json!({"active": "true"})), 401, inactive),
        (setup.active(json!({"active": 1})), 401, inactive),
        (setup.active(json!({"active": null})), 401, inactive),
        (setup.active(json!({"exp": null})), 401, inactive),
        (setup.active(json!({"exp": now - 1})), 401, inactive),
        (setup.active(json!({"exp": "9999999999"})), 401, inactive),
        (
            setup.active(json!({"iss": "https://other.example"})),
            401,
            "the token is from another issuer",
        ),
        (
            setup.active(json!({"aud": "https://other.example/fhir"})),
            401,
            "the token is for another audience",
        ),
        (
            setup.active(json!({"scope": 5})),
            401,
            "the token has a missing or invalid claim",
        ),
    ];
    for (body, status, description) in rows {
        let app = setup.app(|i| i).await;
        setup.answer(StubAnswer::Json(body.clone()));
        let answer = app.get_with_token("t").await;
        assert_eq!(answer.status.as_u16(), status, "{body}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(app.invalid_token_challenge(description).as_str()),
            "{body}"
        );
    }
    // Without iss and aud in the answer: the configured issuer is assumed, aud is not required.
    let app = setup.app(|i| i).await;
    setup.answer(StubAnswer::Json(
        setup.active(json!({"iss": null, "aud": null})),
    ));
    assert_eq!(app.get_with_token("t").await.status, StatusCode::OK);
}

#[tokio::test]
async fn broken_endpoints_are_503_never_active() {
    let setup = stub().await;
    let cases = [
        StubAnswer::Raw("text/html", "<html>login</html>".into()),
        StubAnswer::Raw("application/json", "[true]".into()),
        StubAnswer::Status(500),
        StubAnswer::Status(401),
        StubAnswer::Huge(10 * 1024 * 1024),
        StubAnswer::Delay(Duration::from_secs(3600), json!({"active": true})),
    ];
    for case in cases {
        let app = setup.app(|i| i).await;
        setup.answer(case);
        let started = Instant::now();
        let answer = app.get_with_token("t").await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.challenge, None);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[tokio::test]
async fn a_down_endpoint_is_not_hammered() {
    let setup = stub().await;
    setup.answer(StubAnswer::Status(503));
    let app = setup.app(|i| i).await;
    for i in 0..20 {
        assert_eq!(
            app.get_with_token(&format!("token-{i}")).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(setup.calls(), 1, "one call, then the cooldown answers");
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    setup.clock.advance(Duration::from_secs(11));
    assert_eq!(app.get_with_token("token-x").await.status, StatusCode::OK);
    assert_eq!(setup.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_and_shared() {
    let setup = stub().await;
    setup.answer(StubAnswer::Delay(
        Duration::from_millis(200),
        setup.active(json!({})),
    ));
    let app = setup.app(|i| i).await;
    // Concurrent first lookups of one token share one call.
    let answers = join_all((0..50).map(|_| app.get_with_token("shared"))).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(setup.calls(), 1);
    // 1,000 requests with the same token inside the TTL: still one call.
    for batch in 0..20 {
        let answers = join_all((0..50).map(|_| app.get_with_token("shared"))).await;
        assert!(
            answers.iter().all(|a| a.status == StatusCode::OK),
            "batch {batch}"
        );
    }
    assert_eq!(setup.calls(), 1);
    // A cached answer is not used past the token's exp.
    setup.clock.advance(Duration::from_secs(301));
    app.assert_invalid_token("shared", "the access token is not active")
        .await;
    // Inactive answers are cached too.
    setup.answer(StubAnswer::Json(json!({"active": false})));
    for _ in 0..10 {
        assert_eq!(
            app.get_with_token("revoked").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(setup.calls(), 2);
}

#[tokio::test]
async fn non_jwt_mode_introspects_only_opaque_tokens() {
    let setup = stub().await;
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    let issuer = TestIssuer::builder()
        .clock(setup.clock.clone())
        .audience(FHIR)
        .start()
        .await;
    let endpoint = format!("{}/introspect", setup.issuer);
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(FHIR)
        .clock(setup.clock.clone())
        .introspection(
            Introspection::new(IntrospectionAuth::bearer("rs-token"))
                .endpoint(endpoint)
                .mode(IntrospectionMode::NonJwtTokens),
        )
        .build()
        .unwrap();
    let app = app_with_layer(issuer, setup.clock.clone(), layer).await;
    assert_eq!(
        app.get_with_token(&app.issuer.token().sign()).await.status,
        StatusCode::OK
    );
    assert_eq!(setup.calls(), 0, "JWTs are validated locally");
    assert_eq!(
        app.get_with_token("opaque-token").await.status,
        StatusCode::UNAUTHORIZED,
        "the stub names another issuer"
    );
    assert_eq!(setup.calls(), 1);
    assert_eq!(
        *setup.stub.last_authorization.lock().unwrap(),
        "Bearer rs-token"
    );
}

#[tokio::test]
async fn backend_service_client_authentication() {
    use smart_auth::client::BackendServiceClient;
    let clock = ManualClock::new();
    let server = dev_server(&clock, true).await;
    let client = BackendServiceClient::builder("http://127.0.0.1:9/fhir")
        .token_endpoint(server.token_endpoint())
        .client_id("resource-server")
        .client_secret_basic("rs-secret")
        .scope("system/Patient.rs")
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = app_for(server.url(), &clock, |b| {
        b.introspection(
            Introspection::new(IntrospectionAuth::Client(client)).cache_ttl(Duration::ZERO),
        )
    })
    .await;
    let token = token_from(&server, "app", "app-secret", "system/Patient.rs").await;
    let requests_before = server.token_requests();
    for _ in 0..3 {
        assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    }
    assert_eq!(
        server.token_requests(),
        requests_before + 1,
        "the layer's own token is obtained once and reused"
    );
}
