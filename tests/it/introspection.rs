//! Token introspection (RFC 7662): against the development server, and against a stub for
//! every bad answer.

use std::collections::HashMap;
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
use tokio::sync::watch;

use crate::support::{App, app_with_layer, assert_retry_after, serve};
use crate::wall_clock::advance_monotonic;

const FHIR: &str = "https://fhir.example.test/r4";

async fn token_from(server: &DevAuthServer, client: &str, secret: &str, scope: &str) -> String {
    let response = crate::support::loopback_client()
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
    server.register(
        ClientRegistration::client_secret_basic("resource-server", "rs-secret", ["system/*.rs"])
            .allow_introspecting_any_token(),
    );
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
    // No token found active yet: the token alone is refused for the failure cooldown.
    assert_unavailable(&seen(&app, &token).await, None, "refused credentials");
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
#[derive(Clone)]
struct Stub {
    calls: Arc<AtomicUsize>,
    answer: Arc<Mutex<StubAnswer>>,
    /// Answers for particular tokens, before `answer`.
    by_token: Arc<Mutex<HashMap<String, StubAnswer>>>,
    last_form: Arc<Mutex<String>>,
    last_authorization: Arc<Mutex<String>>,
    /// Calls in flight now (for `Gated` answers), and the most seen at once.
    in_flight: watch::Sender<usize>,
    max_in_flight: Arc<AtomicUsize>,
    /// Whether `Gated` answers may go.
    gate: watch::Sender<bool>,
}

impl Default for Stub {
    fn default() -> Self {
        Self {
            calls: Arc::default(),
            answer: Arc::default(),
            by_token: Arc::default(),
            last_form: Arc::default(),
            last_authorization: Arc::default(),
            in_flight: watch::Sender::new(0),
            max_in_flight: Arc::default(),
            gate: watch::Sender::new(false),
        }
    }
}

#[derive(Clone)]
enum StubAnswer {
    Json(Value),
    Raw(&'static str, String),
    Status(u16),
    Delay(Duration, Value),
    Huge(usize),
    /// This JSON once the gate opens; the call counts as in flight until then.
    Gated(Value),
    /// This status once the gate opens; in flight until then.
    GatedStatus(u16),
    /// A redirect with this status back to the introspection endpoint itself.
    Redirect(u16),
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
    let token = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .unwrap_or_default()
        .to_owned();
    *stub.last_form.lock().unwrap() = body;
    *stub.last_authorization.lock().unwrap() = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let for_token = stub.by_token.lock().unwrap().get(&token).cloned();
    let answer = for_token.unwrap_or_else(|| stub.answer.lock().unwrap().clone());
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
        StubAnswer::Gated(value) => {
            stub.in_flight.send_modify(|n| *n += 1);
            stub.max_in_flight
                .fetch_max(*stub.in_flight.borrow(), Ordering::SeqCst);
            let mut gate = stub.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
            stub.in_flight.send_modify(|n| *n -= 1);
            axum::Json(value).into_response()
        }
        StubAnswer::Redirect(status) => (
            StatusCode::from_u16(status).unwrap(),
            [("location", "/introspect")],
        )
            .into_response(),
        StubAnswer::GatedStatus(status) => {
            stub.in_flight.send_modify(|n| *n += 1);
            let mut gate = stub.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
            stub.in_flight.send_modify(|n| *n -= 1);
            StatusCode::from_u16(status).unwrap().into_response()
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

    /// The answer for one token.
    fn answer_for(&self, token: &str, answer: StubAnswer) {
        self.stub
            .by_token
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    fn calls(&self) -> usize {
        self.stub.calls.load(Ordering::SeqCst)
    }

    async fn app(&self, configure: impl FnOnce(Introspection) -> Introspection) -> App {
        self.app_with_timeout(Duration::from_secs(5), configure)
            .await
    }

    /// An app (default settings) whose endpoint has found the token `good` active: the
    /// token asked about again when the endpoint later fails on another one.
    async fn app_after_an_active_token(&self) -> App {
        self.answer(StubAnswer::Json(self.active(json!({}))));
        let app = self.app(|i| i).await;
        assert_eq!(seen(&app, "good").await.status, 200);
        app
    }

    async fn app_with_timeout(
        &self,
        fetch_timeout: Duration,
        configure: impl FnOnce(Introspection) -> Introspection,
    ) -> App {
        let endpoint = format!("{}/introspect", self.issuer);
        let settings = configure(
            Introspection::new(IntrospectionAuth::basic("rs id", "s3cret:x")).endpoint(endpoint),
        );
        app_for(&self.issuer, &self.clock, |b| {
            b.introspection(settings).fetch_timeout(fetch_timeout)
        })
        .await
    }

    /// Waits until `calls` gated calls are at the endpoint.
    async fn wait_in_flight(&self, calls: usize) {
        let mut in_flight = self.stub.in_flight.subscribe();
        in_flight.wait_for(|n| *n >= calls).await.unwrap();
    }

    fn open_gate(&self) {
        self.stub.gate.send_replace(true);
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

/// With any audience accepted, an answer that does not say the token is an access token
/// must still name an audience: one with neither proves nothing about the token's kind
/// (oidc-provider answers so for a refresh token).
#[tokio::test]
async fn untyped_answers_name_an_audience_even_when_any_is_accepted() {
    let setup = stub().await;
    let endpoint = format!("{}/introspect", setup.issuer);
    let layer = SmartAuthLayer::builder(&setup.issuer)
        .insecure_accept_any_audience()
        .clock(setup.clock.clone())
        .introspection(Introspection::new(IntrospectionAuth::bearer("rs")).endpoint(endpoint))
        .build()
        .unwrap();
    let app = app_with_layer(TestIssuer::start().await, setup.clock.clone(), layer).await;
    for (token, changes, status) in [
        ("t1", json!({"aud": null}), StatusCode::UNAUTHORIZED),
        ("t2", json!({"aud": []}), StatusCode::UNAUTHORIZED),
        ("t3", json!({"aud": "elsewhere"}), StatusCode::OK),
        (
            "t4",
            json!({"aud": null, "token_type": "Bearer"}),
            StatusCode::OK,
        ),
    ] {
        setup.answer_for(token, StubAnswer::Json(setup.active(changes.clone())));
        let answer = app.get_with_token(token).await;
        assert_eq!(answer.status, status, "{changes}");
    }
}

/// Clients accepted without an audience bind introspection answers as they bind JWTs:
/// an answer without `aud` must name a listed client (and say it is an access token); one
/// with `aud` is judged by it.
#[tokio::test]
async fn answers_without_audience_need_a_listed_client() {
    let setup = stub().await;
    let endpoint = format!("{}/introspect", setup.issuer);
    let settings =
        Introspection::new(IntrospectionAuth::basic("rs id", "s3cret:x")).endpoint(endpoint);
    let app = app_for(&setup.issuer, &setup.clock, |b| {
        b.introspection(settings)
            .accept_missing_audience_for_clients(["c1"])
    })
    .await;
    let rows = [
        (json!({"aud": null, "token_type": "Bearer"}), StatusCode::OK),
        // An answer that says neither the token's kind nor its audience (a refresh token's
        // with oidc-provider) is refused although its client is listed.
        (json!({"aud": null}), StatusCode::UNAUTHORIZED),
        (json!({"aud": []}), StatusCode::UNAUTHORIZED),
        (
            json!({"aud": null, "client_id": "c9"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            json!({"aud": null, "client_id": null}),
            StatusCode::UNAUTHORIZED,
        ),
        (json!({"aud": [], "token_type": "Bearer"}), StatusCode::OK),
        (
            json!({"aud": [], "client_id": "c9"}),
            StatusCode::UNAUTHORIZED,
        ),
        (json!({"client_id": "c9"}), StatusCode::OK),
        (json!({"aud": "elsewhere"}), StatusCode::UNAUTHORIZED),
    ];
    for (index, (changes, status)) in rows.into_iter().enumerate() {
        let token = format!("token-{index}");
        setup.answer_for(&token, StubAnswer::Json(setup.active(changes.clone())));
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, status, "{changes}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                answer.challenge.as_deref(),
                Some(
                    app.invalid_token_challenge("the token is for another audience")
                        .as_str()
                ),
                "{changes}"
            );
        }
    }
}

#[tokio::test]
async fn bad_answers_get_exact_refusals() {
    let setup = stub().await;
    let now = smart_auth_now(&setup.clock);
    let inactive = "the access token is not active";
    let rows: Vec<(Value, u16, &str)> = vec![
        (json!({"active": false}), 401, inactive),
        (setup.active(json!({"exp": null})), 401, inactive),
        (setup.active(json!({"exp": now - 1})), 401, inactive),
        (
            setup.active(json!({"exp": "9999999999"})),
            401,
            "the token has a missing or invalid claim",
        ),
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
        // An empty audience list names no accepted audience.
        (
            setup.active(json!({"aud": []})),
            401,
            "the token is for another audience",
        ),
        (
            setup.active(json!({"aud": 5})),
            401,
            "the token has a missing or invalid claim",
        ),
        (
            setup.active(json!({"scope": ["system/Patient.rs", 1]})),
            401,
            "the token has a missing or invalid claim",
        ),
        // Ory Hydra answers for a refresh token without `token_type`: `token_use` tells.
        (
            setup.active(json!({"token_use": "refresh_token"})),
            401,
            "the token type is not accepted",
        ),
        // ForgeRock AM's `tokenName`, OpenIddict's `token_usage`.
        (
            setup.active(json!({"tokenName": "id_token"})),
            401,
            "the token type is not accepted",
        ),
        (
            setup.active(json!({"token_usage": "refresh_token"})),
            401,
            "the token type is not accepted",
        ),
        (
            setup.active(json!({"nbf": "0"})),
            401,
            "the token has a missing or invalid claim",
        ),
        (
            setup.active(json!({"token_type": "refresh_token"})),
            401,
            "the token type is not accepted",
        ),
        (
            setup.active(json!({"token_type": "urn:ietf:params:oauth:token-type:id_token"})),
            401,
            "the token type is not accepted",
        ),
        // Keycloak answers for a refresh token with its payload `typ`.
        (
            setup.active(json!({"typ": "Refresh"})),
            401,
            "the token type is not accepted",
        ),
        (
            setup.active(json!({"events": {}})),
            401,
            "the token type is not accepted",
        ),
        // A sender-constrained token (RFC 9449 section 7.2, RFC 8705 section 3) is no
        // Bearer token, whatever its answer says.
        (
            setup.active(json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})),
            401,
            "the token is bound to a key and cannot be used as a Bearer token",
        ),
        (
            setup.active(
                json!({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}),
            ),
            401,
            "the token is bound to a key and cannot be used as a Bearer token",
        ),
        // Times in the answer are checked as a JWT's are: not yet valid, issued in the
        // future (beyond the leeway).
        (
            setup.active(json!({"nbf": smart_auth_now(&setup.clock) + 3600})),
            401,
            "the access token is not yet valid",
        ),
        (
            setup.active(json!({"iat": smart_auth_now(&setup.clock) + 3600})),
            401,
            "the access token is not yet valid",
        ),
        // An answer past its `exp` is read as inactive.
        (
            setup.active(json!({"exp": smart_auth_now(&setup.clock) - 3600})),
            401,
            "the access token is not active",
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
    // Without iss and aud in the answer: the configured issuer is assumed, and aud is not
    // required of an answer whose `token_type` says it is an access token.
    for token_type in ["Bearer", "bearer", "access_token"] {
        let app = setup.app(|i| i).await;
        setup.answer(StubAnswer::Json(
            setup.active(json!({"iss": null, "aud": null, "token_type": token_type})),
        ));
        assert_eq!(
            app.get_with_token("t").await.status,
            StatusCode::OK,
            "{token_type}"
        );
    }
    // An answer that says neither what the token is nor whom it is for proves nothing
    // about its kind: panva's oidc-provider answers so for a refresh token (and Medplum),
    // which is never meant for a resource server (RFC 6749 section 1.5).
    for (token, changes) in [
        ("r1", json!({"aud": null})),
        ("r2", json!({"iss": null, "aud": null})),
        ("r3", json!({"aud": null, "token_type": null, "sub": "c1"})),
    ] {
        let app = setup.app(|i| i).await;
        setup.answer(StubAnswer::Json(setup.active(changes)));
        app.assert_invalid_token(token, "the token is for another audience")
            .await;
    }
    // One that names this API is taken without `token_type`.
    let app = setup.app(|i| i).await;
    setup.answer(StubAnswer::Json(setup.active(json!({"token_type": null}))));
    assert_eq!(app.get_with_token("t").await.status, StatusCode::OK);
    // `insecure_accept_untyped_answers`: SMART's own example shape (neither `token_type`
    // nor `aud`) passes; an answer naming another audience is still refused, and with
    // `require_audience` one without `aud` too.
    let app = setup
        .app(Introspection::insecure_accept_untyped_answers)
        .await;
    let untyped = setup.active(json!({"aud": null, "token_type": null}));
    setup.answer(StubAnswer::Json(untyped.clone()));
    assert_eq!(app.get_with_token("u1").await.status, StatusCode::OK);
    setup.answer(StubAnswer::Json(
        setup.active(json!({"aud": "https://other.example", "token_type": null})),
    ));
    app.assert_invalid_token("u2", "the token is for another audience")
        .await;
    let app = setup
        .app(|i| i.insecure_accept_untyped_answers().require_audience())
        .await;
    setup.answer(StubAnswer::Json(untyped));
    app.assert_invalid_token("u3", "the token is for another audience")
        .await;
    // With `require_audience`, an answer without `aud` (absent or null) is refused; one
    // that names the audience passes.
    let app = setup.app(Introspection::require_audience).await;
    // (A token each: answers are cached by token.)
    for (token, changes) in [("t1", json!({"aud": null})), ("t2", json!({"aud": []}))] {
        setup.answer(StubAnswer::Json(setup.active(changes)));
        app.assert_invalid_token(token, "the token is for another audience")
            .await;
    }
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    assert_eq!(app.get_with_token("t3").await.status, StatusCode::OK);
    // Real servers' shapes: `scope` as a list of strings (Gluu, UAA, Spring's
    // `check_token`), Hydra's `token_use` of an access token.
    for (changes, scopes) in [
        (
            json!({"scope": ["system/Patient.rs", "launch"]}),
            json!(["system/Patient.rs", "launch"]),
        ),
        (
            json!({"token_use": "access_token"}),
            json!(["system/Patient.rs"]),
        ),
    ] {
        let app = setup.app(|i| i).await;
        setup.answer(StubAnswer::Json(setup.active(changes.clone())));
        let answer = app.get_with_token("t").await;
        assert_eq!(answer.status, StatusCode::OK, "{changes}");
        assert_eq!(answer.body["scopes"], scopes, "{changes}");
    }
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
    for (row, case) in cases.into_iter().enumerate() {
        let app = setup.app(|i| i).await;
        // A timed-out token's 503 is kept from when the 5 s fetch timeout ends (no check:
        // no token found active is known to check with).
        let timeout = matches!(case, StubAnswer::Delay(..)).then_some(Duration::from_secs(5));
        setup.answer(case);
        // Answered at all: a stub delaying an hour outlasts the test client's 30 s. No
        // token found active yet: the token alone is refused for the failure cooldown.
        assert_unavailable(&seen(&app, "t").await, timeout, &format!("row {row}"));
    }
}

/// An injected HTTP client that follows redirects (reqwest's default policy) never sends
/// the token and the credentials again to a 307/308 target: the endpoint sees one call,
/// and the redirect is an outage (503), not an answer.
#[tokio::test]
async fn injected_client_that_follows_redirects_never_replays_the_token() {
    let setup = stub().await;
    for status in [307, 308] {
        let following = crate::support::loopback_client_builder().build().unwrap();
        let endpoint = format!("{}/introspect", setup.issuer);
        let settings =
            Introspection::new(IntrospectionAuth::basic("rs id", "s3cret:x")).endpoint(endpoint);
        let app = app_for(&setup.issuer, &setup.clock, |b| {
            b.introspection(settings).http_client(following)
        })
        .await;
        setup.answer(StubAnswer::Redirect(status));
        let calls = setup.calls();
        assert_unavailable(&seen(&app, "t").await, None, &status.to_string());
        assert_eq!(
            setup.calls(),
            calls + 1,
            "{status}: the form was sent again"
        );
    }
}

// The cooldown is six hours here, so however slowly a loaded runner answers the 20
// requests, real time cannot end it: only `advance_monotonic` does.
#[tokio::test]
async fn a_down_endpoint_is_not_hammered() {
    const COOLDOWN: Duration = Duration::from_secs(6 * 3600);
    let setup = stub().await;
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    let app = setup.app(|i| i.failure_cooldown(COOLDOWN)).await;
    assert_eq!(seen(&app, "good").await.status, 200);
    setup.answer(StubAnswer::Status(503));
    let failed = Instant::now();
    for i in 0..20 {
        let answer = seen(&app, &format!("token-{i}")).await;
        assert_unavailable_after(&answer, COOLDOWN.as_secs(), failed, &format!("token-{i}"));
    }
    assert_eq!(
        setup.calls(),
        3,
        "one call and its check, then the cooldown answers"
    );
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    advance_monotonic(COOLDOWN + Duration::from_secs(1)).await;
    assert_eq!(app.get_with_token("token-x").await.status, StatusCode::OK);
    assert_eq!(setup.calls(), 4);
}

/// The verdict on a failure is recorded even when the request that met it is dropped
/// (its client gone, an outer timeout shorter than the call and its check): the failure
/// cooldown starts, and the next token gets 503 without a call. Time is paused and moved
/// by tokio while every task waits, so the endpoint's hour-long delay costs nothing.
#[tokio::test(start_paused = true)]
async fn a_dropped_request_still_records_the_outage() {
    let setup = stub().await;
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    let app = setup.app(|i| i).await;
    assert_eq!(seen(&app, "good").await.status, 200);
    setup.answer(StubAnswer::Delay(
        Duration::from_secs(3600),
        json!({"active": true}),
    ));
    // Dropped at 7 s: its call timed out at 5 s, and the check of "good" runs until 10 s.
    let dropped = tokio::time::timeout(Duration::from_secs(7), seen(&app, "dropped")).await;
    assert!(dropped.is_err(), "answered before it was dropped");
    assert_eq!(setup.calls(), 3, "good, dropped, and the check of good");
    // The check ends at 10 s with no request waiting for it; its verdict stands.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let answer = seen(&app, "next").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(setup.calls(), 3, "the cooldown answers, without a call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_and_shared() {
    let setup = stub().await;
    // The call is held until every lookup waits in the layer.
    setup.answer(StubAnswer::Gated(setup.active(json!({}))));
    let app = setup.app(|i| i).await;
    // Concurrent first lookups of one token share one call.
    let requests = join_all((0..50).map(|_| app.get_with_token("shared")));
    let release = async {
        app.wait_entered(50).await;
        setup.wait_in_flight(1).await;
        assert_eq!(setup.calls(), 1);
        setup.open_gate();
    };
    let (answers, ()) = tokio::join!(requests, release);
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

/// The claims handed to each request carrying one token are its cached answer itself,
/// never a copy per request: a large answer (an authorization server that copies user
/// attributes into it) would otherwise take its size again for each request in flight.
#[tokio::test]
async fn cached_answers_are_shared_not_copied() {
    let setup = stub().await;
    let large = "x".repeat(64 * 1024);
    setup.answer(StubAnswer::Json(setup.active(json!({ "org": large }))));
    let app = setup.app(|i| i).await;
    let verifier = app.layer.issuers().iter().next().unwrap();
    let first = verifier.verify("shared").await.unwrap();
    let second = verifier.verify("shared").await.unwrap();
    assert_eq!(setup.calls(), 1);
    assert_eq!(second.claim("org"), Some(&json!(large)));
    assert!(std::ptr::eq(first.all_claims(), second.all_claims()));
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
    // Dotted opaque tokens (PASETO) are introspected too: a JWT's first segment is a JSON
    // object, which starts with `e` in base64url. A three-segment token that does start so
    // is a JWT, checked here (and refused: it is no valid one).
    let calls = setup.calls();
    app.get_with_token("v4.local.c29tZS1ieXRlcw").await;
    assert_eq!(setup.calls(), calls + 1, "PASETO introspected");
    app.get_with_token("eyJh.eyJi.c2ln").await;
    assert_eq!(setup.calls(), calls + 1, "JWT-shaped token checked locally");
}

/// With several issuers, a token that is no JWT goes to the issuer that introspects opaque
/// tokens, whatever its dots: PASETO's `v4.local.…` and `a.b.c` are split into three
/// segments as a JWT is, and were refused as malformed before any introspection.
#[tokio::test]
async fn several_issuers_introspect_dotted_opaque_tokens() {
    use smart_auth::TokenVerifier;
    let setup = stub().await;
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    for mode in [IntrospectionMode::NonJwtTokens, IntrospectionMode::Only] {
        let jwt_issuer = TestIssuer::builder()
            .clock(setup.clock.clone())
            .audience(FHIR)
            .start()
            .await;
        let layer = SmartAuthLayer::builder(jwt_issuer.url())
            .audience(FHIR)
            .clock(setup.clock.clone())
            .issuer(
                TokenVerifier::builder(setup.issuer.clone())
                    .audience(FHIR)
                    .clock(setup.clock.clone())
                    .introspection(
                        Introspection::new(IntrospectionAuth::bearer("rs-token"))
                            .endpoint(format!("{}/introspect", setup.issuer))
                            .mode(mode),
                    ),
            )
            .build()
            .unwrap();
        let app = app_with_layer(jwt_issuer, setup.clock.clone(), layer).await;
        for token in [
            "v4.local.c29tZS1ieXRlcw",
            "abc.def.ghi",
            "a.b",
            "opaque-token",
        ] {
            let calls = setup.calls();
            assert_eq!(
                app.get_with_token(token).await.status,
                StatusCode::OK,
                "{mode:?} {token}"
            );
            assert_eq!(setup.calls(), calls + 1, "{mode:?} {token} introspected");
        }
        // A JWT still goes to the issuer it names, checked locally.
        let calls = setup.calls();
        assert_eq!(
            app.get_with_token(&app.issuer.token().sign()).await.status,
            StatusCode::OK
        );
        assert_eq!(
            setup.calls(),
            calls,
            "{mode:?}: the JWT is not introspected"
        );
    }
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

#[tokio::test]
async fn answers_with_duplicate_members_are_refused() {
    let setup = stub().await;
    let exp = smart_auth_now(&setup.clock) + 300;
    let issuer = setup.issuer.clone();
    // Each would be an active token for a reader that keeps the last value.
    let rows = [
        format!(r#"{{"active":false,"active":true,"exp":{exp},"scope":"system/Patient.rs"}}"#),
        format!(
            r#"{{"active":true,"exp":{exp},"scope":"system/Patient.rs","scope":"system/*.cruds"}}"#
        ),
        format!(r#"{{"active":true,"exp":{exp},"aud":"https://other.example","aud":"{FHIR}"}}"#),
        format!(r#"{{"active":true,"exp":{exp},"iss":"https://evil.example","iss":"{issuer}"}}"#),
        format!(r#"{{"active":true,"exp":0,"\u0065xp":{exp}}}"#),
        format!(
            r#"{{"active":true,"exp":{exp},"fhirContext":[{{"reference":"Patient/1","reference":"Patient/2"}}]}}"#
        ),
    ];
    for body in rows {
        let app = setup.app(|i| i).await;
        setup.answer(StubAnswer::Raw("application/json", body.clone()));
        app.assert_invalid_token("t", "the access token is not active")
            .await;
        // A refusal about one token, not an outage: the next token is asked about.
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        assert_eq!(
            app.get_with_token("other").await.status,
            StatusCode::OK,
            "{body}"
        );
    }
}

/// What the tests of failures assert on, headers included.
#[derive(Debug)]
struct Seen {
    /// Taken before the request was sent.
    sent: Instant,
    status: u16,
    challenge: Option<String>,
    retry_after: Option<String>,
    issue_code: String,
}

async fn seen(app: &App, token: &str) -> Seen {
    let sent = Instant::now();
    let response = app
        .http
        .get(app.patient_url())
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let challenge = header("www-authenticate");
    let retry_after = header("retry-after");
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    Seen {
        sent,
        status,
        challenge,
        retry_after,
        issue_code: body["issue"][0]["code"].as_str().unwrap_or("").to_owned(),
    }
}

/// 503 with `Retry-After` what is left of the default failure cooldown (10 s) that this
/// very request started: once a fetch timeout (`timeout`) has passed, when that is how it
/// fails.
#[track_caller]
fn assert_unavailable(seen: &Seen, timeout: Option<Duration>, context: &str) {
    let since = seen.sent + timeout.unwrap_or_default();
    assert_unavailable_after(seen, 10, since, context);
}

/// 503 with `Retry-After` what is left of a cooldown of `expected` seconds that began
/// after `since` (see `assert_retry_after`).
#[track_caller]
fn assert_unavailable_after(seen: &Seen, expected: u64, since: Instant, context: &str) {
    assert_eq!(seen.status, 503, "{context}: {seen:?}");
    assert_eq!(seen.challenge, None, "{context}");
    assert_retry_after(seen.retry_after.as_deref(), expected, since, context);
    assert_eq!(seen.issue_code, "transient", "{context}");
}

/// 503 with this `Retry-After`, one that does not count down.
#[track_caller]
fn assert_unavailable_for(seen: &Seen, retry_after: &str, context: &str) {
    assert_eq!(seen.status, 503, "{context}: {seen:?}");
    assert_eq!(seen.challenge, None, "{context}");
    assert_eq!(seen.retry_after.as_deref(), Some(retry_after), "{context}");
    assert_eq!(seen.issue_code, "transient", "{context}");
}

fn assert_inactive(app: &App, seen: &Seen, context: &str) {
    assert_eq!(seen.status, 401, "{context}: {seen:?}");
    assert_eq!(
        seen.challenge.as_deref(),
        Some(
            app.invalid_token_challenge("the access token is not active")
                .as_str()
        ),
        "{context}"
    );
    assert_eq!(seen.retry_after, None, "{context}");
}

/// Some servers answer 400 (or 409, 410, 413, 422) for a token they do not know, such as a
/// JWT from elsewhere. That refuses the one token; it must not let one client turn every
/// other client's request into 503.
#[tokio::test]
async fn a_4xx_about_one_token_refuses_that_token_only() {
    for status in [400, 409, 410, 413, 422] {
        let setup = stub().await;
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        setup.answer_for("unknown-to-the-server", StubAnswer::Status(status));
        let app = setup.app(|i| i).await;
        let context = format!("HTTP {status}");
        assert_inactive(&app, &seen(&app, "unknown-to-the-server").await, &context);
        assert_eq!(seen(&app, "good").await.status, 200, "{context}");
        assert_eq!(setup.calls(), 2, "{context}: no cooldown started");
        // The refusal is cached like an inactive answer.
        assert_inactive(&app, &seen(&app, "unknown-to-the-server").await, &context);
        assert_eq!(setup.calls(), 2, "{context}");
    }
}

/// RFC 7662 section 2.3: 401 (and 403) mean the endpoint refuses the resource server's
/// own credentials. No token can be checked then: 503 for all; for the failure cooldown
/// once the endpoint also fails on a token it found active before, else each token alone
/// (a firewall in front of the endpoint answers 403 too, for the tokens it blocks).
#[tokio::test]
async fn refused_credentials_are_an_outage_for_every_token() {
    for status in [401, 403] {
        let setup = stub().await;
        let app = setup.app_after_an_active_token().await;
        let context = format!("HTTP {status}");
        setup.answer(StubAnswer::Status(status));
        let first = seen(&app, "first").await;
        assert_unavailable(&first, None, &context);
        assert_unavailable_after(&seen(&app, "second").await, 10, first.sent, &context);
        assert_eq!(
            setup.calls(),
            3,
            "{context}: the check, then the cooldown answers"
        );
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        advance_monotonic(Duration::from_secs(10)).await;
        assert_eq!(seen(&app, "second").await.status, 200, "{context}");
        assert_eq!(setup.calls(), 4, "{context}");
        // Without a token found active before: each token alone.
        let setup = stub().await;
        setup.answer(StubAnswer::Status(status));
        let app = setup.app(|i| i).await;
        assert_unavailable(&seen(&app, "first").await, None, &context);
        assert_unavailable(&seen(&app, "second").await, None, &context);
        assert_eq!(setup.calls(), 2, "{context}: no cooldown");
    }
}

/// A failure on one token (a firewall in front of the endpoint blocking a token that looks
/// like an attack, a server bug) is no outage when the endpoint still finds active the last
/// token it found active: 503 for that token, kept like a refusal (no further calls for
/// it), no cooldown. Before, one such token every 10 s gave every uncached token 503.
#[tokio::test]
async fn a_failure_on_one_token_is_no_outage_while_others_are_answered() {
    let cases = [
        StubAnswer::Status(403),
        StubAnswer::Status(401),
        StubAnswer::Status(404),
        StubAnswer::Status(500),
        StubAnswer::Status(503),
        StubAnswer::Raw("text/html", "<html>Request blocked</html>".into()),
        StubAnswer::Raw("application/json", r#"{"error":"blocked"}"#.into()),
        StubAnswer::Huge(10 * 1024 * 1024),
        StubAnswer::Redirect(302),
    ];
    let hostile = "../../../../etc/passwd";
    for (row, case) in cases.into_iter().enumerate() {
        let setup = stub().await;
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        // The stub reads the form as sent.
        setup.answer_for("..%2F..%2F..%2F..%2Fetc%2Fpasswd", case);
        let app = setup.app(|i| i).await;
        let context = format!("row {row}");
        assert_eq!(seen(&app, "good").await.status, 200, "{context}");
        assert_eq!(setup.calls(), 1, "{context}");
        // The hostile token, then the last active one asked about again.
        let refused = seen(&app, hostile).await;
        assert_unavailable(&refused, None, &context);
        assert_eq!(setup.calls(), 3, "{context}");
        // No cooldown: a new token is asked about at once; the hostile one is answered
        // from the cache.
        assert_eq!(seen(&app, "other").await.status, 200, "{context}");
        assert_eq!(setup.calls(), 4, "{context}");
        // Kept: what is left of the 10 s since it was refused.
        assert_unavailable_after(&seen(&app, hostile).await, 10, refused.sent, &context);
        assert_eq!(setup.calls(), 4, "{context}");
        // A second blocked token within the second: no new check.
        setup.answer_for("second%2Fblocked", StubAnswer::Status(403));
        assert_unavailable(&seen(&app, "second/blocked").await, None, &context);
        assert_eq!(setup.calls(), 5, "{context}");
    }
}

/// A token found active and revoked since (by the client holding it: RFC 7009, or a
/// newer token replacing it) is answered `{"active": false}` when the endpoint is checked
/// with it: a well-formed answer, so the endpoint is well and a blocked token gets 503
/// alone. Counted as an outage, a client could revoke its own token and then hold every
/// uncached token at 503 with one blocked token per cooldown. The revoked token is no
/// longer used for checks.
#[tokio::test]
async fn a_revoked_reference_token_is_no_outage() {
    let setup = stub().await;
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    let app = setup.app(|i| i).await;
    assert_eq!(seen(&app, "mine").await.status, 200);
    assert_eq!(setup.calls(), 1);
    setup.answer_for("mine", StubAnswer::Json(json!({"active": false})));
    setup.answer_for("blocked", StubAnswer::Status(403));
    assert_unavailable(&seen(&app, "blocked").await, None, "blocked");
    assert_eq!(setup.calls(), 3, "the blocked token, then the check");
    // What the check learnt holds for the revoked token at once, from the cache: its
    // earlier active answer is gone.
    assert_inactive(&app, &seen(&app, "mine").await, "revoked");
    assert_eq!(setup.calls(), 3, "answered from the cache");
    // No cooldown: a new token is asked about at once.
    assert_eq!(seen(&app, "other").await.status, 200);
    assert_eq!(setup.calls(), 4);
    // The revoked token is never asked about again: the next blocked token (after the
    // second in which the check's answer stands) is checked with the newest active one.
    advance_monotonic(Duration::from_secs(2)).await;
    setup.answer_for("blocked-2", StubAnswer::Status(403));
    assert_unavailable(&seen(&app, "blocked-2").await, None, "second");
    assert_eq!(setup.calls(), 6, "the blocked token, then the check");
    assert!(
        setup
            .stub
            .last_form
            .lock()
            .unwrap()
            .starts_with("token=other&"),
        "checked with the newest active token"
    );
}

/// A check the endpoint throttles (429) proves no outage: the endpoint answers, if
/// slowly. Counted as one, a flood of tokens that makes it throttle, then one token it
/// refuses, would hold every uncached token at 503 for the cooldown.
#[tokio::test]
async fn a_throttled_check_is_no_outage() {
    let setup = stub().await;
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    let app = setup.app(|i| i).await;
    assert_eq!(seen(&app, "mine").await.status, 200);
    setup.answer_for("mine", StubAnswer::Status(429));
    setup.answer_for("blocked", StubAnswer::Status(403));
    assert_unavailable(&seen(&app, "blocked").await, None, "blocked");
    assert_eq!(setup.calls(), 3, "the blocked token, then the check");
    // No cooldown: a new token is asked about at once.
    assert_eq!(seen(&app, "other").await.status, 200);
    assert_eq!(setup.calls(), 4);
}

/// The check needs a token the endpoint found active: anyone can make it answer
/// "inactive" (garbage tokens, a gateway's 400), so such answers prove nothing.
#[tokio::test]
async fn only_an_active_answer_shows_the_endpoint_well() {
    let setup = stub().await;
    setup.answer(StubAnswer::Status(500));
    setup.answer_for("garbage-1", StubAnswer::Json(json!({"active": false})));
    setup.answer_for("garbage-2", StubAnswer::Status(400));
    let app = setup.app(|i| i).await;
    assert_eq!(seen(&app, "garbage-1").await.status, 401);
    assert_eq!(seen(&app, "garbage-2").await.status, 401);
    assert_eq!(setup.calls(), 2);
    // No token found active to check the endpoint with: not proven down, so no cooldown
    // (one token must not put every client in it); each failing token gets 503 alone,
    // kept for the cooldown's length.
    let real = seen(&app, "real").await;
    assert_unavailable(&real, None, "no active token known");
    assert_eq!(setup.calls(), 3, "no check without an active token");
    assert_unavailable_after(&seen(&app, "real").await, 10, real.sent, "kept");
    assert_eq!(setup.calls(), 3, "kept, not asked again");
    assert_unavailable(&seen(&app, "real-2").await, None, "no cooldown");
    assert_eq!(setup.calls(), 4, "another token is asked about");
}

/// When the endpoint no longer finds the last active token active either, it is an
/// outage: the cooldown starts. Transport failures are outages without asking again.
#[tokio::test]
async fn a_failure_on_every_token_is_an_outage() {
    for status in [500, 403] {
        let setup = stub().await;
        let app = setup.app_after_an_active_token().await;
        let context = format!("HTTP {status}");
        setup.answer(StubAnswer::Status(status));
        let new = seen(&app, "new").await;
        assert_unavailable(&new, None, &context);
        assert_eq!(setup.calls(), 3, "{context}: the new token and the check");
        assert_unavailable_after(&seen(&app, "newer").await, 10, new.sent, &context);
        assert_eq!(setup.calls(), 3, "{context}: the cooldown answers");
    }
    // No answer in time for one token (an intrusion prevention system dropping what it
    // blocks): the last active token is asked about too, and answered, so no outage.
    let setup = stub().await;
    let app = setup.app_after_an_active_token().await;
    setup.answer_for(
        "slow",
        StubAnswer::Delay(Duration::from_secs(3600), json!({"active": true})),
    );
    let slow = seen(&app, "slow").await;
    assert_unavailable(&slow, Some(Duration::from_secs(5)), "timeout");
    assert_eq!(setup.calls(), 3, "the slow token, then the check");
    assert_eq!(seen(&app, "other").await.status, 200, "no cooldown");
    assert_eq!(setup.calls(), 4);
}

/// 429 and 408 are about this call, not the token and not a lasting outage: 503 for this
/// request, nothing cached, no cooldown.
#[tokio::test]
async fn throttling_is_a_503_for_that_request_only() {
    for status in [408, 429] {
        let setup = stub().await;
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        setup.answer_for("throttled", StubAnswer::Status(status));
        let app = setup.app(|i| i).await;
        let context = format!("HTTP {status}");
        // This request only: ask again in a second.
        assert_unavailable_for(&seen(&app, "throttled").await, "1", &context);
        assert_eq!(seen(&app, "good").await.status, 200, "{context}");
        assert_unavailable_for(&seen(&app, "throttled").await, "1", &context);
        assert_eq!(setup.calls(), 3, "{context}: asked again, not cached");
    }
}

#[tokio::test]
async fn outages_start_the_cooldown_with_retry_after() {
    let cases = [
        StubAnswer::Status(500),
        StubAnswer::Status(502),
        StubAnswer::Status(503),
        StubAnswer::Raw("text/html", "<html>login</html>".into()),
        StubAnswer::Raw("application/json", "[true]".into()),
        StubAnswer::Raw("application/json", "{\"active\":true".into()),
        // RFC 7662 section 2.2: no boolean `active`, no answer about any token.
        StubAnswer::Raw("application/json", "{}".into()),
        StubAnswer::Raw(
            "application/json",
            r#"{"active":"true","exp":9999999999}"#.into(),
        ),
        StubAnswer::Raw(
            "application/json",
            r#"{"active":1,"exp":9999999999}"#.into(),
        ),
        StubAnswer::Raw("application/json", r#"{"active":null}"#.into()),
        // The endpoint's address or the request's form: the same for every token.
        StubAnswer::Status(404),
        StubAnswer::Status(405),
        StubAnswer::Status(406),
        StubAnswer::Status(411),
        StubAnswer::Status(415),
        StubAnswer::Huge(10 * 1024 * 1024),
        StubAnswer::Delay(Duration::from_secs(3600), json!({"active": true})),
    ];
    for (row, case) in cases.into_iter().enumerate() {
        let setup = stub().await;
        let app = setup.app_after_an_active_token().await;
        // A timeout's cooldown starts when the check, asked about the last active token,
        // has timed out too: two 5 s fetch timeouts after the request.
        let timeout = matches!(case, StubAnswer::Delay(..)).then_some(Duration::from_secs(10));
        setup.answer(case);
        let context = format!("row {row}");
        let first = seen(&app, "first").await;
        assert_unavailable(&first, timeout, &context);
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        let since = first.sent + timeout.unwrap_or_default();
        assert_unavailable_after(&seen(&app, "second").await, 10, since, &context);
        assert_eq!(
            setup.calls(),
            3,
            "{context}: the token, the check, the cooldown"
        );
    }
}

/// An endpoint reached over a raw connection that it closes, for one token or for all,
/// after reading the query: how a firewall in front of it may drop a token it blocks.
struct ClosingEndpoint {
    url: String,
    calls: Arc<AtomicUsize>,
    /// The tokens whose queries get the connection closed, no answer; `None`: all.
    closed_for: Arc<Mutex<Option<Vec<String>>>>,
    server: tokio::task::JoinHandle<()>,
}

impl ClosingEndpoint {
    async fn start(active: Value) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let closed_for = Arc::new(Mutex::new(Some(Vec::new())));
        let (counted, closing) = (calls.clone(), closed_for.clone());
        let body = active.to_string();
        let server = tokio::spawn(async move {
            'connections: loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let mut request = Vec::new();
                let mut chunk = [0; 4096];
                // The whole query: the head, then Content-Length bytes of form.
                let form = loop {
                    let read = stream.read(&mut chunk).await.unwrap_or(0);
                    if read == 0 {
                        continue 'connections;
                    }
                    request.extend_from_slice(&chunk[..read]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let Some((head, form)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = head
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().unwrap())
                        })
                        .unwrap();
                    if form.len() >= length {
                        break form.to_owned();
                    }
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let token = form
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("token="))
                    .unwrap();
                let closed = closing
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_none_or(|tokens| tokens.iter().any(|closed| closed == token));
                if !closed {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                }
            }
        });
        Self {
            url,
            calls,
            closed_for,
            server,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn app(&self, clock: &ManualClock) -> App {
        let endpoint = format!("{}/introspect", self.url);
        let settings =
            Introspection::new(IntrospectionAuth::basic("rs id", "s3cret:x")).endpoint(endpoint);
        app_for(&self.url, clock, |b| b.introspection(settings)).await
    }
}

/// A connection closed without an answer may be a firewall's answer to one token (after
/// it read the query), so it is checked like any failure on one token: an outage only
/// when the last active token fails too. A connection never made cannot be about the
/// token: an outage at once.
#[tokio::test]
async fn a_closed_connection_is_checked_like_any_failure_on_one_token() {
    let clock = ManualClock::new();
    // Without `iss`, the answer is about the configured issuer (the endpoint's address).
    let active = json!({"active": true, "client_id": "c1", "scope": "system/Patient.rs",
                        "exp": smart_auth_now(&clock) + 300, "aud": FHIR});
    let endpoint = ClosingEndpoint::start(active).await;
    let app = endpoint.app(&clock).await;
    assert_eq!(seen(&app, "good").await.status, 200);
    assert_eq!(endpoint.calls(), 1);
    // One token's query closed: the check finds the endpoint well, so the token alone
    // gets 503 (kept), and others are asked about at once.
    *endpoint.closed_for.lock().unwrap() = Some(vec!["blocked".to_owned()]);
    let blocked = seen(&app, "blocked").await;
    assert_unavailable(&blocked, None, "one token closed");
    assert_eq!(endpoint.calls(), 3, "the blocked token, then the check");
    assert_eq!(seen(&app, "other").await.status, 200, "no cooldown");
    assert_eq!(endpoint.calls(), 4);
    assert_unavailable_after(&seen(&app, "blocked").await, 10, blocked.sent, "kept");
    assert_eq!(endpoint.calls(), 4);
    // Every query closed: the check fails too, and the cooldown starts.
    *endpoint.closed_for.lock().unwrap() = None;
    advance_monotonic(Duration::from_secs(2)).await;
    let first = seen(&app, "first").await;
    assert_unavailable(&first, None, "all closed");
    assert_eq!(endpoint.calls(), 6, "the token, then the check");
    assert_unavailable_after(&seen(&app, "second").await, 10, first.sent, "cooldown");
    assert_eq!(endpoint.calls(), 6, "the cooldown answers");
    // Nothing listening any more: no query could be sent, so no check either (its
    // outcome could be no other), and the cooldown starts again once it has ended.
    endpoint.server.abort();
    let _ = endpoint.server.await;
    advance_monotonic(Duration::from_secs(10)).await;
    let refused = seen(&app, "third").await;
    assert_unavailable(&refused, None, "not listening");
    assert_unavailable_after(&seen(&app, "fourth").await, 10, refused.sent, "cooldown");
}

/// N calls at most in flight, whatever the number of distinct tokens: the rest wait for a
/// free call, and all are answered once the endpoint answers.
#[tokio::test]
async fn distinct_tokens_never_exceed_the_call_limit() {
    const LIMIT: usize = 3;
    const TOKENS: usize = LIMIT + 5;
    let setup = stub().await;
    setup.answer(StubAnswer::Gated(setup.active(json!({}))));
    let app = setup
        .app_with_timeout(Duration::from_secs(30), |i| {
            i.max_concurrent_calls(LIMIT)
                .max_queue_wait(Duration::from_secs(30))
        })
        .await;
    let tokens: Vec<String> = (0..TOKENS).map(|i| format!("distinct-{i}")).collect();
    let requests = join_all(tokens.iter().map(|token| seen(&app, token)));
    let release = async {
        setup.wait_in_flight(LIMIT).await;
        // Every other request has reached the layer, and waits there for a call.
        app.wait_entered(TOKENS).await;
        assert_eq!(*setup.stub.in_flight.borrow(), LIMIT);
        assert_eq!(setup.calls(), LIMIT, "the others wait in the layer");
        setup.open_gate();
    };
    let (answers, ()) = tokio::join!(requests, release);
    for answer in &answers {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert_eq!(setup.calls(), TOKENS);
    assert_eq!(setup.stub.max_in_flight.load(Ordering::SeqCst), LIMIT);
}

/// With every call busy and no queue wait, an uncached token gets 503 with `Retry-After`
/// at once, without calling, and without starting the failure cooldown.
#[tokio::test]
async fn a_full_call_limit_answers_503_at_once() {
    let setup = stub().await;
    setup.answer(StubAnswer::Gated(setup.active(json!({}))));
    let app = setup
        .app_with_timeout(Duration::from_secs(30), |i| {
            i.max_concurrent_calls(2).max_queue_wait(Duration::ZERO)
        })
        .await;
    let held = join_all(["held-1", "held-2"].map(|token| seen(&app, token)));
    let extra = async {
        setup.wait_in_flight(2).await;
        for i in 0..5 {
            let answer =
                tokio::time::timeout(Duration::from_secs(20), seen(&app, &format!("extra-{i}")))
                    .await
                    .expect("answered without waiting for a call");
            // No queue wait: a slot may be free at once; the least `Retry-After` is 1 s.
            assert_unavailable_for(&answer, "1", "extra");
        }
        assert_eq!(setup.calls(), 2);
        setup.open_gate();
    };
    let (held, ()) = tokio::join!(held, extra);
    assert!(held.iter().all(|answer| answer.status == 200), "{held:?}");
    // No cooldown: the next token is asked about at once.
    assert_eq!(seen(&app, "extra-0").await.status, 200);
    assert_eq!(setup.calls(), 3);
}

/// Lookups that queued for a call slot while the endpoint was failing do not call it once
/// it is found down: the failure cooldown starts before the failed call frees its slot,
/// and a lookup that gets a slot checks it again. So at most `max_concurrent_calls` calls
/// meet an outage, and no queued lookup waits for a second slow call (found by the soak
/// benchmark: with 256 connections, ~100 calls per outage and 2 s answers while slow).
#[tokio::test]
async fn lookups_queued_during_an_outage_do_not_call() {
    for status in [500, 503, 401] {
        let setup = stub().await;
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        let app = setup
            .app_with_timeout(Duration::from_secs(30), |i| {
                i.max_concurrent_calls(1)
                    .max_queue_wait(Duration::from_secs(30))
            })
            .await;
        // A token found active, asked about again when the endpoint fails.
        assert_eq!(seen(&app, "good").await.status, 200);
        setup.answer(StubAnswer::GatedStatus(status));
        let held = seen(&app, "held");
        let queued = async {
            setup.wait_in_flight(1).await;
            let tokens: Vec<String> = (0..3).map(|i| format!("queued-{i}")).collect();
            let queued = join_all(tokens.iter().map(|token| seen(&app, token)));
            let release = async {
                // The queued lookups (after "good" and "held") have reached the layer, and
                // wait there for the slot.
                app.wait_entered(2 + tokens.len()).await;
                assert_eq!(setup.calls(), 2, "{status}: the others wait for the slot");
                // The failure, and so the cooldown, comes after the gate opens.
                let opened = Instant::now();
                setup.open_gate();
                opened
            };
            tokio::join!(queued, release)
        };
        let (held, (queued, opened)) = tokio::join!(held, queued);
        let context = format!("endpoint answering {status}");
        assert_unavailable_after(&held, 10, opened, &context);
        for answer in &queued {
            assert_unavailable_after(answer, 10, opened, &context);
        }
        assert_eq!(
            setup.calls(),
            3,
            "{context}: the held call and its check, no call inside the cooldown"
        );
    }
}

/// While a failure is judged (the endpoint asked again about the last active token), a
/// lookup that gets another call slot waits for the verdict instead of calling: an outage
/// meets the calls already in flight and one check, not a check per failed call (found by
/// the introspection soak: 566 calls in the failing phases, bound 512).
#[tokio::test]
async fn lookups_wait_for_a_failure_being_judged() {
    for status in [500, 401] {
        let setup = stub().await;
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        let app = setup
            .app_with_timeout(Duration::from_secs(30), |i| {
                i.max_concurrent_calls(2)
                    .max_queue_wait(Duration::from_secs(30))
            })
            .await;
        assert_eq!(seen(&app, "good").await.status, 200);
        setup.answer(StubAnswer::Status(status));
        // The check about "good" is held until the gate opens.
        setup.answer_for("good", StubAnswer::GatedStatus(status));
        let failed = seen(&app, "failed");
        let during = async {
            setup.wait_in_flight(1).await;
            assert_eq!(setup.calls(), 3, "{status}: good, failed and the check");
            let during = seen(&app, "during");
            let release = async {
                // "good", "failed" and "during" have reached the layer.
                app.wait_entered(3).await;
                assert_eq!(
                    setup.calls(),
                    3,
                    "{status}: the free slot waits for the verdict"
                );
                // The verdict, and so the cooldown, comes after the gate opens.
                let opened = Instant::now();
                setup.open_gate();
                opened
            };
            tokio::join!(during, release)
        };
        let (failed, (during, opened)) = tokio::join!(failed, during);
        let context = format!("endpoint answering {status}");
        assert_unavailable_after(&failed, 10, opened, &context);
        assert_unavailable_after(&during, 10, opened, &context);
        assert_eq!(setup.calls(), 3, "{context}: no call inside the cooldown");
    }
}

/// A queued lookup waits at most `max_queue_wait`.
#[tokio::test]
async fn the_queue_wait_is_bounded() {
    let setup = stub().await;
    setup.answer(StubAnswer::Gated(setup.active(json!({}))));
    let app = setup
        .app_with_timeout(Duration::from_secs(30), |i| {
            i.max_concurrent_calls(1)
                .max_queue_wait(Duration::from_millis(100))
        })
        .await;
    let held = seen(&app, "held");
    let extra = async {
        setup.wait_in_flight(1).await;
        // Answered while the held call still holds the only slot: the wait is bounded.
        let answer = seen(&app, "queued").await;
        // The queue wait (100 ms) rounded up to whole seconds.
        assert_unavailable_for(&answer, "1", "queued");
        setup.open_gate();
    };
    let (held, ()) = tokio::join!(held, extra);
    assert_eq!(held.status, 200);
    assert_eq!(setup.calls(), 1);
}

/// A lookup dropped while it waits for a call slot (its request given up on) leaves
/// nothing behind: no call is made for it later. (Calls run as tasks of their own once
/// they hold a slot, so that their verdict counts; waiting for one stays in the request.)
/// With one slot, a later lookup queues behind anything left waiting: the count of calls
/// when it is answered tells.
#[tokio::test]
async fn dropped_lookups_leave_no_call_queued() {
    let setup = stub().await;
    setup.answer(StubAnswer::Gated(setup.active(json!({}))));
    let verifier = smart_auth::TokenVerifier::builder(setup.issuer.clone())
        .audience(FHIR)
        .clock(setup.clock.clone())
        .introspection(
            Introspection::new(IntrospectionAuth::bearer("rs-token"))
                .endpoint(format!("{}/introspect", setup.issuer))
                .mode(IntrospectionMode::Only)
                .max_concurrent_calls(1)
                .max_queue_wait(Duration::from_secs(30)),
        )
        .build()
        .unwrap();
    let held = tokio::spawn({
        let verifier = verifier.clone();
        async move { verifier.verify("held").await }
    });
    setup.wait_in_flight(1).await;
    // Tokio's clock is paused here so that each queued lookup runs until it waits for
    // the slot, and is dropped then (the timeout ends when every task waits).
    tokio::time::pause();
    for index in 0..5 {
        let token = format!("queued-{index}");
        let queued = verifier.verify(&token);
        let waited = tokio::time::timeout(Duration::from_millis(50), queued).await;
        assert!(waited.is_err(), "answered while the slot was held");
    }
    tokio::time::resume();
    setup.open_gate();
    assert!(held.await.unwrap().is_ok());
    assert!(verifier.verify("after").await.is_ok());
    assert_eq!(
        setup.calls(),
        2,
        "held and after: none for the dropped lookups"
    );
}

/// Concurrent lookups of one token share one call, and so one call slot.
#[tokio::test]
async fn identical_tokens_share_one_call() {
    let setup = stub().await;
    setup.answer(StubAnswer::Gated(setup.active(json!({}))));
    let app = setup
        .app_with_timeout(Duration::from_secs(30), |i| {
            i.max_concurrent_calls(1)
                .max_queue_wait(Duration::from_secs(30))
        })
        .await;
    let requests = join_all((0..20).map(|_| seen(&app, "same")));
    let release = async {
        setup.wait_in_flight(1).await;
        // Every lookup has reached the layer, and waits there for the one call.
        app.wait_entered(20).await;
        assert_eq!(setup.calls(), 1);
        setup.open_gate();
    };
    let (answers, ()) = tokio::join!(requests, release);
    assert!(answers.iter().all(|answer| answer.status == 200));
    assert_eq!(setup.calls(), 1);
}

const HOURS: Duration = Duration::from_secs(5 * 3600);

/// The failure cooldown runs on the monotonic clock: a wall clock set back does not
/// stretch it, one set forward does not end it early. It is six hours here, so the real
/// time a loaded runner takes between steps cannot end it early either.
#[tokio::test]
async fn the_failure_cooldown_ignores_wall_clock_steps() {
    const COOLDOWN: u64 = 6 * 3600;
    let setup = stub().await;
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    let app = setup
        .app(|i| i.failure_cooldown(Duration::from_secs(COOLDOWN)))
        .await;
    assert_eq!(seen(&app, "good").await.status, 200);
    setup.answer(StubAnswer::Status(503));
    // `Retry-After` counts down the configured cooldown, on the monotonic clock too.
    let first = seen(&app, "first").await;
    assert_unavailable_after(&first, COOLDOWN, first.sent, "down");
    setup.clock.rewind(HOURS);
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    advance_monotonic(Duration::from_secs(COOLDOWN - 3600)).await;
    let left = seen(&app, "second").await;
    assert_unavailable_after(&left, 3600, first.sent, "5 h after a step back");
    setup.clock.advance(HOURS + Duration::from_secs(COOLDOWN));
    setup.answer(StubAnswer::Json(setup.active(json!({}))));
    let left = seen(&app, "second").await;
    assert_unavailable_after(&left, 3600, first.sent, "after a step forward");
    assert_eq!(setup.calls(), 3, "no call inside the cooldown");
    advance_monotonic(Duration::from_secs(3600)).await;
    assert_eq!(seen(&app, "second").await.status, 200);
    assert_eq!(setup.calls(), 4);
}

/// Cached answers live for their TTL on the monotonic clock: a wall clock set back keeps
/// neither an active answer nor a refusal past it, and one set forward (short of the
/// token's `exp`) does not drop them early. The TTLs are hours here, so the real time a
/// loaded runner takes between steps cannot end them early either.
#[tokio::test]
async fn cached_answers_ignore_wall_clock_steps() {
    const HOUR: Duration = Duration::from_secs(3600);
    let setup = stub().await;
    setup.answer(StubAnswer::Json(
        setup.active(json!({"exp": smart_auth_now(&setup.clock) + 20 * 3600})),
    ));
    setup.answer_for("revoked", StubAnswer::Json(json!({"active": false})));
    let app = setup
        .app(|i| i.cache_ttl(6 * HOUR).inactive_cache_ttl(2 * HOUR))
        .await;
    assert_eq!(seen(&app, "active").await.status, 200);
    assert_inactive(&app, &seen(&app, "revoked").await, "revoked");
    assert_eq!(setup.calls(), 2);
    // Forward past both TTLs: both still cached.
    setup.clock.advance(7 * HOUR);
    assert_eq!(seen(&app, "active").await.status, 200);
    assert_inactive(&app, &seen(&app, "revoked").await, "revoked");
    assert_eq!(setup.calls(), 2, "a wall jump expires nothing");
    // Back: the refusal (2 h) and the active answer (6 h) still end on time.
    setup.clock.rewind(HOURS + 7 * HOUR);
    advance_monotonic(HOUR).await;
    assert_inactive(&app, &seen(&app, "revoked").await, "revoked");
    assert_eq!(setup.calls(), 2);
    advance_monotonic(HOUR).await;
    assert_inactive(&app, &seen(&app, "revoked").await, "revoked");
    assert_eq!(
        setup.calls(),
        3,
        "the refusal was asked about again after 2 h"
    );
    advance_monotonic(3 * HOUR).await;
    assert_eq!(seen(&app, "active").await.status, 200);
    assert_eq!(setup.calls(), 3, "5 h: the active answer is still cached");
    advance_monotonic(HOUR).await;
    assert_eq!(seen(&app, "active").await.status, 200);
    assert_eq!(setup.calls(), 4, "6 h: asked again");
}

/// Settings that cannot be run safely are refused when the layer is built: introspection
/// without an audience (an answer has no `typ`, so a token minted for another resource
/// server could not be told apart), a bearer credential that cannot be sent, and durations
/// past one day (their deadlines could overflow the clock).
#[test]
fn unsafe_introspection_settings_are_refused_at_build() {
    use smart_auth::ConfigError;

    let build = |configure: fn(SmartAuthBuilder) -> SmartAuthBuilder, settings: Introspection| {
        configure(SmartAuthLayer::builder("https://as.example.test"))
            .introspection(settings.endpoint("https://as.example.test/introspect"))
            .build()
            .map(|_| ())
    };
    let basic = || Introspection::new(IntrospectionAuth::basic("rs", "secret"));
    let no_audience = |b: SmartAuthBuilder| b;
    let with_base = |b: SmartAuthBuilder| b.fhir_base(FHIR);
    let with_audience = |b: SmartAuthBuilder| b.audience(FHIR);
    let any_audience = |b: SmartAuthBuilder| b.insecure_accept_any_audience();

    assert_eq!(
        build(no_audience, basic()),
        Err(ConfigError::IntrospectionWithoutAudience)
    );
    for mode in [IntrospectionMode::Only, IntrospectionMode::NonJwtTokens] {
        assert_eq!(
            build(no_audience, basic().mode(mode)),
            Err(ConfigError::IntrospectionWithoutAudience),
            "{mode:?}"
        );
    }
    // Clients accepted without an audience are no audience: an answer without `aud`
    // would pass whatever its client.
    let clients_only = |b: SmartAuthBuilder| b.accept_missing_audience_for_clients(["app-1"]);
    assert_eq!(
        build(clients_only, basic()),
        Err(ConfigError::IntrospectionWithoutAudience)
    );
    assert_eq!(build(with_base, basic()), Ok(()));
    assert_eq!(build(with_audience, basic()), Ok(()));
    assert_eq!(build(any_audience, basic()), Ok(()));

    for token in ["tok\n", "", "a b", "tok\"", "t\u{e9}k", "==", "tok\0"] {
        assert_eq!(
            build(
                with_base,
                Introspection::new(IntrospectionAuth::bearer(token))
            ),
            Err(ConfigError::InvalidIntrospectionCredentials),
            "{token:?}"
        );
    }
    assert_eq!(
        build(
            with_base,
            Introspection::new(IntrospectionAuth::bearer("rs.token-1~+/="))
        ),
        Ok(())
    );

    let day = Duration::from_secs(24 * 60 * 60);
    type Setter = fn(Introspection, Duration) -> Introspection;
    // The longest each may be: a day, and a minute for a lookup's wait for a call slot.
    let too_long: [(Setter, &str, Duration); 4] = [
        (Introspection::cache_ttl, "cache_ttl", day),
        (Introspection::inactive_cache_ttl, "inactive_cache_ttl", day),
        (Introspection::failure_cooldown, "failure_cooldown", day),
        (
            Introspection::max_queue_wait,
            "max_queue_wait",
            Duration::from_secs(60),
        ),
    ];
    for (set, field, longest) in too_long {
        for duration in [longest + Duration::from_nanos(1), Duration::MAX] {
            assert_eq!(
                build(with_base, set(basic(), duration)),
                Err(ConfigError::InvalidLimit { field }),
                "{field} {duration:?}"
            );
        }
        assert_eq!(build(with_base, set(basic(), longest)), Ok(()), "{field}");
    }
}

/// The endpoint is found in the first metadata document that names it as an absolute URL:
/// a SMART configuration naming a relative one, `null` or a number says nowhere, and the
/// OpenID Connect document after it is read.
#[tokio::test]
async fn discovery_skips_a_document_naming_no_absolute_introspection_endpoint() {
    for named in [json!("/introspect"), Value::Null, json!(5), json!("")] {
        let stub = Stub::default();
        let own_url =
            |headers: &http::HeaderMap| format!("http://{}", headers["host"].to_str().unwrap());
        let smart = json!({"introspection_endpoint": named.clone()});
        let router = Router::new()
            .route("/introspect", post(stub_handler))
            .route(
                "/.well-known/smart-configuration",
                axum::routing::get(move || async move { axum::Json(smart) }),
            )
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move |headers: http::HeaderMap| async move {
                    let url = own_url(&headers);
                    axum::Json(json!({
                        "issuer": url,
                        "introspection_endpoint": format!("{url}/introspect"),
                    }))
                }),
            )
            .with_state(stub.clone());
        let (url, server) = serve(router).await;
        let setup = StubSetup {
            stub,
            issuer: url,
            clock: ManualClock::new(),
            _server: server,
        };
        setup.answer(StubAnswer::Json(setup.active(json!({}))));
        let settings = Introspection::new(IntrospectionAuth::basic("rs id", "s3cret:x"));
        let app = app_for(&setup.issuer, &setup.clock, |b| b.introspection(settings)).await;
        assert_eq!(seen(&app, "t").await.status, 200, "{named}");
        assert_eq!(setup.calls(), 1, "{named}");
    }
}

/// When the endpoint must be discovered and the issuer's metadata never answers, one
/// discovery runs and its failure starts the failure cooldown: lookups of other tokens that
/// waited for it give up at once (503) instead of each trying again after the last (one
/// fetch timeout each, in a row).
#[tokio::test]
async fn a_failed_discovery_is_not_tried_again_by_each_waiting_lookup() {
    // An issuer that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let clock = ManualClock::new();
    let app = app_for(&issuer, &clock, |b| {
        b.introspection(Introspection::new(IntrospectionAuth::basic("rs", "secret")))
            .fetch_timeout(Duration::from_secs(1))
    })
    .await;
    let tokens: Vec<String> = (0..6).map(|i| format!("opaque-{i}")).collect();
    // The discovery fails once its 1 s fetch timeout has passed, starting the failure
    // cooldown (10 s) that every waiting lookup is answered with.
    let failed = Instant::now() + Duration::from_secs(1);
    let answers = join_all(tokens.iter().map(|token| seen(&app, token))).await;
    for (token, answer) in tokens.iter().zip(&answers) {
        assert_unavailable_after(answer, 10, failed, token);
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one discovery for every waiting lookup"
    );
    silent.abort();
}

/// While the endpoint is being discovered, lookups of distinct tokens that are dropped
/// (their clients gone) leave no task each behind: one discovery task runs for all of them,
/// however many came and went. Each lookup here is polled until it waits for the discovery,
/// then dropped; the runtime's count of live tasks tells what stayed.
#[tokio::test]
async fn dropped_lookups_share_one_discovery_task() {
    use tokio::io::AsyncReadExt as _;
    // An issuer that reads the discovery request, says so, and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let (request_read, mut request_seen) = watch::channel(false);
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buffer = [0; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => head.extend_from_slice(&buffer[..read]),
                }
            }
            request_read.send_replace(true);
            held.push(socket);
        }
    });
    let verifier = smart_auth::TokenVerifier::builder(issuer)
        .audience(FHIR)
        .fetch_timeout(Duration::from_secs(60))
        .introspection(
            Introspection::new(IntrospectionAuth::basic("rs", "secret"))
                .mode(IntrospectionMode::Only),
        )
        .build()
        .unwrap();
    let poll_then_drop = |token: String| {
        let verifier = verifier.clone();
        async move {
            let lookup = verifier.verify(&token);
            let mut lookup = std::pin::pin!(lookup);
            for _ in 0..3 {
                assert!(futures_util::poll!(lookup.as_mut()).is_pending());
                tokio::task::yield_now().await;
            }
        }
    };
    poll_then_drop("first".to_owned()).await;
    request_seen.wait_for(|read| *read).await.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    for index in 0..20 {
        poll_then_drop(format!("opaque-{index}")).await;
    }
    assert_eq!(
        metrics.num_alive_tasks(),
        before,
        "the first lookup's discovery serves the others; nothing stays for them"
    );
    silent.abort();
}
