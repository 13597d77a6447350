//! The backend-service client against a stub FHIR server and token endpoint on 127.0.0.1:
//! real HTTP, real keys, signatures checked with the client's public JWK.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use smart_auth::client::{
    BackendServiceClient, BackendServiceClientBuilder, ClientError, ClientKey, KeyError,
};
use smart_auth::{ManualClock, SigningAlgorithm};

const CLIENT_ID: &str = "backend-app";
const SCOPE: &str = "system/Patient.rs system/Observation.rs";

/// What the stub token endpoint answers.
#[derive(Clone)]
enum Reply {
    /// `{"access_token": "token-<n>", "token_type": "Bearer", "expires_in": 300, scope}`.
    Token,
    /// This status and body (as JSON when it parses, else as text).
    Fixed(u16, String),
    /// A redirect with this status to the real token endpoint.
    Redirect(u16),
    /// This status with this `Retry-After` and an empty body.
    Throttled(u16, &'static str),
}

/// A token request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    form: Vec<(String, String)>,
    body_length: usize,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.form.iter().map(|(key, _)| key.as_str()).collect();
        names.sort_unstable();
        names
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

#[derive(Clone)]
struct StubState {
    base: String,
    token_calls: Arc<AtomicUsize>,
    /// The token calls seen so far, for tests that wait for a call to arrive.
    token_calls_seen: Arc<tokio::sync::watch::Sender<usize>>,
    discovery_calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<Reply>>,
    delay: Arc<Mutex<Duration>>,
    /// Whether token answers may go (open unless a test closes it): a token call that
    /// arrives while it is closed waits for it.
    gate: Arc<tokio::sync::watch::Sender<bool>>,
    configuration: Arc<Mutex<Option<Value>>>,
    /// The `Date` of fixed answers, when set (else the server's own, the wall clock).
    date: Arc<Mutex<Option<String>>>,
}

/// A FHIR server with a SMART configuration at `/fhir`, a token endpoint at `/token` and
/// an echo of the `Authorization` header at `/fhir/Patient/1`.
struct Stub {
    state: StubState,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn discovery(State(state): State<StubState>) -> Response {
    state.discovery_calls.fetch_add(1, Ordering::SeqCst);
    let configured = state.configuration.lock().unwrap().clone();
    let document = configured.unwrap_or_else(|| {
        json!({
            "token_endpoint": format!("{}/token", state.base),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        })
    });
    if document.is_null() {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.to_string(),
    )
        .into_response()
}

async fn token(State(state): State<StubState>, headers: HeaderMap, body: Bytes) -> Response {
    let calls = state.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    state.token_calls_seen.send_replace(calls);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let seen = Seen {
        headers,
        form,
        body_length: body.len(),
    };
    state.seen.lock().unwrap().push(seen.clone());
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut gate = state.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let reply = state.reply.lock().unwrap().clone();
    match reply {
        Reply::Token => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            json!({
                "access_token": format!("token-{calls}"),
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": seen.field("scope"),
            })
            .to_string(),
        )
            .into_response(),
        Reply::Fixed(status, body) => {
            let content_type = if serde_json::from_str::<Value>(&body).is_ok() {
                "application/json"
            } else {
                "text/html"
            };
            let mut response = (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response();
            if let Some(date) = state.date.lock().unwrap().clone() {
                response
                    .headers_mut()
                    .insert(header::DATE, date.parse().unwrap());
            }
            response
        }
        Reply::Throttled(status, retry_after) => (
            StatusCode::from_u16(status).unwrap(),
            [(header::RETRY_AFTER, retry_after)],
        )
            .into_response(),
        Reply::Redirect(status) => (
            StatusCode::from_u16(status).unwrap(),
            [(header::LOCATION, format!("{}/token", state.base))],
        )
            .into_response(),
    }
}

async fn echo_authorization(headers: HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

impl Stub {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = StubState {
            base: format!("http://{}", listener.local_addr().unwrap()),
            token_calls: Arc::default(),
            token_calls_seen: Arc::new(tokio::sync::watch::Sender::new(0)),
            discovery_calls: Arc::default(),
            seen: Arc::default(),
            reply: Arc::new(Mutex::new(Reply::Token)),
            delay: Arc::default(),
            gate: Arc::new(tokio::sync::watch::Sender::new(true)),
            configuration: Arc::default(),
            date: Arc::default(),
        };
        let router = Router::new()
            .route("/fhir/.well-known/smart-configuration", get(discovery))
            .route("/token", post(token))
            .route("/fhir/Patient/1", get(echo_authorization))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { state, server }
    }

    fn fhir_base(&self) -> String {
        format!("{}/fhir", self.state.base)
    }

    fn token_endpoint(&self) -> String {
        format!("{}/token", self.state.base)
    }

    fn token_calls(&self) -> usize {
        self.state.token_calls.load(Ordering::SeqCst)
    }

    /// Waits until the stub has seen `calls` token calls.
    async fn wait_for_token_calls(&self, calls: usize) {
        let mut seen = self.state.token_calls_seen.subscribe();
        seen.wait_for(|n| *n >= calls).await.unwrap();
    }

    fn reply(&self, reply: Reply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    fn fixed(&self, status: u16, body: impl Into<String>) {
        self.reply(Reply::Fixed(status, body.into()));
    }

    fn delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Holds token answers until [`open_gate`](Self::open_gate).
    fn close_gate(&self) {
        self.state.gate.send_replace(false);
    }

    fn open_gate(&self) {
        self.state.gate.send_replace(true);
    }

    fn configuration(&self, document: Value) {
        *self.state.configuration.lock().unwrap() = Some(document);
    }

    fn last_seen(&self) -> Seen {
        self.state
            .seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a token request")
    }

    /// A `client_secret_basic` client on `clock`, its token endpoint configured or
    /// discovered.
    fn basic_client(&self, clock: &ManualClock, configured_endpoint: bool) -> BackendServiceClient {
        let mut builder = self.client().client_secret_basic("s").clock(clock.clone());
        if configured_endpoint {
            builder = builder.token_endpoint(self.token_endpoint());
        }
        builder.build().unwrap()
    }

    /// The client assertion of the last token request.
    fn last_assertion(&self) -> String {
        self.last_seen()
            .field("client_assertion")
            .expect("a client assertion")
            .to_owned()
    }

    fn client(&self) -> BackendServiceClientBuilder {
        BackendServiceClient::builder(self.fhir_base())
            .client_id(CLIENT_ID)
            .scope(SCOPE)
    }
}

fn jwt_part(jwt: &str, index: usize) -> Value {
    let segment = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// Checks the assertion's signature with `public_jwk` and its audience, issuer and
/// subject; returns its claims.
fn verify_assertion(jwt: &str, public_jwk: &Value, alg: Algorithm, audience: &str) -> Value {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(public_jwk.clone()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.sub = Some(CLIENT_ID.to_owned());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    // The clock may be a manual one; exp is checked against it by the caller.
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .expect("assertion verifies with the client's public key")
        .claims
}

/// A private_key_jwt token request with discovery, checked field by field.
async fn private_key_jwt_flow(alg: SigningAlgorithm, jwt_alg: Algorithm) {
    let stub = Stub::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    let key = ClientKey::generate(alg, format!("{}-key", alg.name())).unwrap();
    let client = stub
        .client()
        .private_key_jwt(key.clone())
        .clock(clock.clone())
        .build()
        .unwrap();

    assert_eq!(
        client.token_endpoint().await.unwrap(),
        stub.token_endpoint()
    );
    let token = client.access_token().await.unwrap();
    assert_eq!(token.access_token(), "token-1");
    assert_eq!(token.token_type(), "Bearer");
    assert_eq!(token.expires_at(), 1_700_000_300);
    assert_eq!(token.scope(), SCOPE);

    let seen = stub.last_seen();
    assert_eq!(
        seen.names(),
        [
            "client_assertion",
            "client_assertion_type",
            "grant_type",
            "scope"
        ]
    );
    assert_eq!(seen.field("grant_type"), Some("client_credentials"));
    assert_eq!(seen.field("scope"), Some(SCOPE));
    assert_eq!(
        seen.field("client_assertion_type"),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(seen.header("authorization"), None);

    let jwt = seen.field("client_assertion").unwrap();
    assert_eq!(
        jwt_part(jwt, 0),
        json!({"alg": alg.name(), "kid": key.kid(), "typ": "JWT"})
    );
    let claims = verify_assertion(jwt, &key.public_jwk(), jwt_alg, &stub.token_endpoint());
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert_eq!(URL_SAFE_NO_PAD.decode(&jti).unwrap().len(), 16);
    assert_eq!(
        claims,
        json!({
            "iss": CLIENT_ID,
            "sub": CLIENT_ID,
            "aud": stub.token_endpoint(),
            "iat": 1_700_000_000,
            "exp": 1_700_000_240,
            "jti": jti,
        })
    );
}

#[tokio::test]
async fn private_key_jwt_rs384_after_discovery() {
    private_key_jwt_flow(SigningAlgorithm::RS384, Algorithm::RS384).await;
}

#[tokio::test]
async fn private_key_jwt_es384_after_discovery() {
    private_key_jwt_flow(SigningAlgorithm::ES384, Algorithm::ES384).await;
}

/// `assertion_audience` replaces the token endpoint URL as the assertion's `aud`, and a key
/// that names its certificate sends `x5t#S256` (base64url SHA-256 of the DER bytes) in the
/// header; the stub token endpoint reads both from the assertion it receives.
#[tokio::test]
async fn assertion_audience_and_certificate_thumbprint() {
    let stub = Stub::start().await;
    let issuer = "https://login.example.test/tenant/v2.0";
    // Stands for a certificate's DER bytes: SHA-256("abc") is a published test vector.
    let certificate_der = b"abc";
    let key = ClientKey::generate(SigningAlgorithm::RS256, "cert-key")
        .unwrap()
        .with_certificate_thumbprint(certificate_der);
    let client = stub
        .client()
        .private_key_jwt(key.clone())
        .token_endpoint(stub.token_endpoint())
        .assertion_audience(issuer)
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    let jwt = stub.last_assertion();
    assert_eq!(
        jwt_part(&jwt, 0),
        json!({
            "alg": "RS256",
            "kid": "cert-key",
            "typ": "JWT",
            "x5t#S256": "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
        })
    );
    let claims = verify_assertion(&jwt, &key.public_jwk(), Algorithm::RS256, issuer);
    assert_eq!(claims["aud"], issuer);
    // The token request still goes to the configured token endpoint.
    assert_eq!(
        client.token_endpoint().await.unwrap(),
        stub.token_endpoint()
    );
    assert_eq!(stub.token_calls(), 1);
}

#[tokio::test]
async fn client_secret_basic_sends_form_encoded_credentials() {
    let stub = Stub::start().await;
    let secret = "p@ss:w/rd+ é";
    let client = stub
        .client()
        .client_id("app one")
        .client_secret_basic(secret)
        .token_endpoint(stub.token_endpoint())
        .build()
        .unwrap();
    let token = client.access_token().await.unwrap();
    assert_eq!(token.access_token(), "token-1");
    assert_eq!(
        stub.state.discovery_calls.load(Ordering::SeqCst),
        0,
        "a configured token endpoint skips discovery"
    );

    let seen = stub.last_seen();
    assert_eq!(seen.names(), ["grant_type", "scope"]);
    assert_eq!(seen.field("grant_type"), Some("client_credentials"));
    assert_eq!(seen.field("scope"), Some(SCOPE));
    let basic = seen
        .header("authorization")
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    let credentials = String::from_utf8(STANDARD.decode(basic).unwrap()).unwrap();
    assert_eq!(credentials, "app+one:p%40ss%3Aw%2Frd%2B+%C3%A9");
    let decode = |text: &str| -> String {
        url::form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    };
    let (id, password) = credentials.split_once(':').unwrap();
    assert_eq!(
        (decode(id), decode(password)),
        ("app one".to_owned(), secret.to_owned())
    );
    assert!(!format!("{client:?}").contains("p@ss"));

    // RFC 3986 unreserved characters (and `*`) stay as they are: servers that do not
    // form-decode Basic credentials read Microsoft Entra ID secrets (with `~`) right.
    let client = stub
        .client()
        .client_id("id")
        .client_secret_basic("x~y")
        .token_endpoint(stub.token_endpoint())
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    let basic = stub.last_seen().header("authorization").unwrap().to_owned();
    let credentials = STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(credentials).unwrap(), "id:x~y");
}

#[tokio::test]
async fn token_is_reused_until_the_refresh_margin_then_replaced() {
    let stub = Stub::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    let client = stub
        .client()
        .client_secret_basic("s")
        .refresh_margin(Duration::from_secs(30))
        .clock(clock.clone())
        .build()
        .unwrap();

    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-1"
    );
    // Expires at +300; replaced from +270 on.
    clock.advance(Duration::from_secs(269));
    let same = client.clone();
    assert_eq!(same.access_token().await.unwrap().access_token(), "token-1");
    assert_eq!(stub.token_calls(), 1);

    clock.advance(Duration::from_secs(1));
    let fresh = client.access_token().await.unwrap();
    assert_eq!(fresh.access_token(), "token-2");
    assert_eq!(fresh.expires_at(), 1_700_000_270 + 300);
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-2"
    );
    assert_eq!(stub.token_calls(), 2);

    client.clear_cached_token();
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-3"
    );
}

#[tokio::test]
async fn short_lived_tokens_are_reused_for_half_their_lifetime() {
    let stub = Stub::start().await;
    stub.fixed(
        200,
        json!({"access_token": "short", "token_type": "bearer", "expires_in": 20}).to_string(),
    );
    let clock = ManualClock::at_unix(1_700_000_000);
    let client = stub.basic_client(&clock, false);
    let token = client.access_token().await.unwrap();
    // No scope in the answer: the requested one is assumed.
    assert_eq!(token.scope(), SCOPE);
    clock.advance(Duration::from_secs(9));
    client.access_token().await.unwrap();
    assert_eq!(stub.token_calls(), 1);
    clock.advance(Duration::from_secs(1));
    client.access_token().await.unwrap();
    assert_eq!(stub.token_calls(), 2);
}

/// `expires_in` as a string of digits (Microsoft Entra ID's v1 endpoint) is a lifetime;
/// without `expires_in`, a JWT access token's own `exp` is, else 300 s.
#[tokio::test]
async fn token_lifetimes_from_a_string_the_token_or_the_default() {
    let stub = Stub::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    let client = stub.basic_client(&clock, true);
    // The server's clock reads what the client's does (1,700,000,000 is this `Date`).
    *stub.state.date.lock().unwrap() = Some("Tue, 14 Nov 2023 22:13:20 GMT".to_owned());
    let jwt = |claims: Value| {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let rows = [
        (
            json!({"access_token": "entra", "token_type": "Bearer", "expires_in": "3599"}),
            1_700_003_599,
        ),
        (
            json!({"access_token": jwt(json!({"exp": 1_700_000_120, "sub": "x"})), "token_type": "Bearer"}),
            1_700_000_120,
        ),
        (
            json!({"access_token": "opaque", "token_type": "Bearer"}),
            1_700_000_300,
        ),
    ];
    for (body, expires_at) in rows {
        stub.fixed(200, body.to_string());
        client.clear_cached_token();
        let token = client.access_token().await.unwrap();
        assert_eq!(token.expires_at(), expires_at, "{body}");
        assert_eq!(token.access_token(), body["access_token"].as_str().unwrap());
    }
    assert_eq!(stub.token_calls(), 3);
}

/// `callers` tasks that each ask `client` for a token, and a future that ends (30 s at
/// most) once every one of them waits inside `access_token`: each counts itself in the
/// same poll that first polls `access_token`, which runs until its first wait.
fn concurrent_callers(
    client: &BackendServiceClient,
    callers: usize,
) -> (
    Vec<tokio::task::JoinHandle<Result<smart_auth::client::AccessToken, ClientError>>>,
    impl std::future::Future<Output = ()>,
) {
    let (entered, mut counted) = tokio::sync::watch::channel(0usize);
    let entered = Arc::new(entered);
    let tasks = (0..callers)
        .map(|_| {
            let client = client.clone();
            let entered = Arc::clone(&entered);
            tokio::spawn(async move {
                entered.send_modify(|n| *n += 1);
                client.access_token().await
            })
        })
        .collect();
    let waiting = async move {
        tokio::time::timeout(Duration::from_secs(30), counted.wait_for(|n| *n >= callers))
            .await
            .expect("every caller asked for a token")
            .unwrap();
    };
    (tasks, waiting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_callers_make_one_token_request() {
    let stub = Stub::start().await;
    // The token answer is held until every caller waits in the client.
    stub.close_gate();
    let key = ClientKey::generate(SigningAlgorithm::ES384, "k1").unwrap();
    let client = stub.client().private_key_jwt(key).build().unwrap();
    let (tasks, waiting) = concurrent_callers(&client, 20);
    waiting.await;
    stub.wait_for_token_calls(1).await;
    assert_eq!(stub.token_calls(), 1);
    stub.open_gate();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().access_token(), "token-1");
    }
    assert_eq!(stub.token_calls(), 1);
    assert_eq!(stub.state.discovery_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_waiting_on_a_failed_request_share_its_error() {
    let stub = Stub::start().await;
    // The answer is held until every caller waits in the client.
    stub.close_gate();
    stub.fixed(
        400,
        json!({"error": "invalid_scope", "error_description": "not allowed"}).to_string(),
    );
    let clock = ManualClock::new();
    let client = stub.basic_client(&clock, true);
    let (tasks, waiting) = concurrent_callers(&client, 10);
    waiting.await;
    stub.wait_for_token_calls(1).await;
    assert_eq!(stub.token_calls(), 1);
    stub.open_gate();
    for task in tasks {
        let error = task.await.unwrap().unwrap_err();
        assert_eq!(error.oauth_error(), Some("invalid_scope"));
    }
    assert_eq!(stub.token_calls(), 1);
    // Calls within the backoff (1 s after one failure) get the same error without a
    // request; a later call tries again.
    stub.reply(Reply::Token);
    assert_eq!(
        client.access_token().await.unwrap_err().oauth_error(),
        Some("invalid_scope")
    );
    assert_eq!(stub.token_calls(), 1);
    clock.advance(Duration::from_secs(1));
    assert!(client.access_token().await.is_ok());
    assert_eq!(stub.token_calls(), 2);
}

/// A server that quotes the client's secret in its error (echoing what it was sent) does
/// not put the secret in the client's errors, which get logged: its words are withheld.
#[tokio::test]
async fn errors_never_quote_the_client_secret() {
    let stub = Stub::start().await;
    let secret = "p@ss:word+1 quoted back";
    let form_encoded = "p%40ss%3Aword%2B1+quoted+back";
    let client = stub
        .client()
        .client_secret_basic(secret)
        .token_endpoint(stub.token_endpoint())
        .build()
        .unwrap();
    // As sent: form-encoded (RFC 6749 section 2.3.1), then base64.
    let basic = format!("{CLIENT_ID}:{form_encoded}");
    let basic = base64::engine::general_purpose::STANDARD.encode(basic);
    let long = "x".repeat(250);
    for (error, description, kept_code) in [
        ("invalid_client", format!("wrong secret {secret}"), true),
        (
            "invalid_client",
            format!("secret {form_encoded} as seen"),
            true,
        ),
        ("invalid_client", format!("header was Basic {basic}"), true),
        // Quoted past the length kept of a description: still withheld.
        ("invalid_client", format!("{long} {secret}"), true),
        (secret, "a code made of it".to_owned(), false),
    ] {
        stub.fixed(
            401,
            json!({"error": error, "error_description": description}).to_string(),
        );
        client.clear_cached_token();
        let failure = tokio::time::timeout(Duration::from_secs(30), client.request_token_verbose())
            .await
            .unwrap()
            .unwrap_err();
        let shown = format!("{failure} {failure:?}");
        for quoted in [secret, form_encoded, &basic, "p@ss", "p%40ss"] {
            assert!(!shown.contains(quoted), "{shown}");
        }
        let ClientError::OAuth {
            status,
            error: code,
            description,
        } = failure
        else {
            panic!("{failure:?}")
        };
        assert_eq!(status, 401);
        assert_eq!(code == "invalid_client", kept_code, "{code}");
        assert_eq!(
            description.as_deref(),
            Some("<withheld: the server's text quoted this client's credentials>")
        );
    }
    // Quoted as a JSON encoder may write it (System.Text.Json escapes `+`): still found.
    stub.fixed(
        401,
        r#"{"error":"invalid_client","error_description":"wrong secret p@ss:word\u002B1 quoted back"}"#,
    );
    client.clear_cached_token();
    let failure = client.request_token_verbose().await.unwrap_err();
    assert!(
        !format!("{failure} {failure:?}").contains("p@ss"),
        "{failure:?}"
    );
    // The server's words are kept when they quote nothing (the basic client's secret,
    // "s", is shorter than anything looked for).
    stub.fixed(
        401,
        json!({"error": "invalid_client", "error_description": "unknown client"}).to_string(),
    );
    let failure = stub
        .basic_client(&ManualClock::new(), true)
        .access_token()
        .await
        .unwrap_err();
    assert_eq!(
        failure,
        ClientError::OAuth {
            status: 401,
            error: "invalid_client".to_owned(),
            description: Some("unknown client".to_owned()),
        }
    );
}

/// The server's `error` and `error_description` reach messages and logs as printable ASCII
/// only (RFC 6749 section 5.2 allows no other): control characters, Unicode line and
/// paragraph separators, bidirectional overrides, zero-width and other characters beyond
/// ASCII each become `?`, so none can forge a log line or reorder what a reader sees.
#[tokio::test]
async fn the_servers_error_text_is_printable_ascii() {
    let stub = Stub::start().await;
    let client = stub.basic_client(&ManualClock::new(), true);
    let hostile = "ok\u{2028}INFO\u{2029}x\r\n\u{7}\u{85}\u{202e}gnp\u{2066}\u{200b}\u{feff}\u{0}é";
    let shown = "ok?INFO?x?????gnp?????";
    for (error, description) in [
        (hostile, Some("fine".to_owned())),
        ("invalid_client", Some(hostile.to_owned())),
    ] {
        stub.fixed(
            400,
            json!({"error": error, "error_description": description}).to_string(),
        );
        client.clear_cached_token();
        let failure = client.request_token_verbose().await.unwrap_err();
        let ClientError::OAuth {
            error: code,
            description,
            ..
        } = &failure
        else {
            panic!("{failure:?}")
        };
        let texts = [code.as_str(), description.as_deref().unwrap_or_default()];
        assert!(texts.contains(&shown), "{failure:?}");
        assert!(
            texts
                .iter()
                .all(|text| text.chars().all(|c| matches!(c, ' '..='~'))),
            "{failure:?}"
        );
        assert!(format!("{failure}").is_ascii(), "{failure}");
    }
}

/// A clock that panics once, on its first reading after it is armed: a hook with a bug.
#[derive(Debug, Clone, Default)]
struct PanicsOnceArmed {
    clock: ManualClock,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl smart_auth::Clock for PanicsOnceArmed {
    fn now(&self) -> std::time::SystemTime {
        assert!(
            !self.armed.swap(false, Ordering::SeqCst),
            "a clock with a bug"
        );
        smart_auth::Clock::now(&self.clock)
    }
}

/// A token request that panics (here its clock, as it notes the failed answer) counts as
/// a failed one, with the refresh lock still held: a caller queued behind it gets the
/// failure and backs off, instead of asking the endpoint again at once.
#[tokio::test]
async fn a_panicking_token_request_counts_as_a_failure() {
    let stub = Stub::start().await;
    stub.close_gate();
    stub.fixed(500, "");
    let clock = PanicsOnceArmed::default();
    let client = stub
        .client()
        .client_secret_basic("s")
        .token_endpoint(stub.token_endpoint())
        .clock(clock.clone())
        .build()
        .unwrap();
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.access_token().await }
    });
    stub.wait_for_token_calls(1).await;
    // The next reading is the one that notes the request's failure.
    clock.armed.store(true, Ordering::SeqCst);
    let queued = tokio::spawn({
        let client = client.clone();
        async move { client.access_token().await }
    });
    // The second caller runs until it waits for the refresh lock (one thread: it runs
    // when this test yields, while the first request waits at the gate).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    stub.open_gate();
    assert!(first.await.unwrap().is_err());
    assert!(queued.await.unwrap().is_err());
    assert_eq!(stub.token_calls(), 1, "the queued caller backs off");
}

/// A token request whose caller is dropped midway (a request given up on, an outer
/// timeout) still counts: its failure starts the backoff, and the next caller gets that
/// failure instead of asking the failing endpoint again at once.
#[tokio::test]
async fn a_dropped_caller_still_records_the_failure() {
    let stub = Stub::start().await;
    stub.close_gate();
    stub.fixed(500, "");
    let clock = ManualClock::new();
    let client = stub.basic_client(&clock, true);
    let caller = tokio::spawn({
        let client = client.clone();
        async move { client.access_token().await }
    });
    stub.wait_for_token_calls(1).await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    stub.open_gate();
    assert_eq!(
        client.access_token().await.unwrap_err(),
        ClientError::UnexpectedStatus { status: 500 }
    );
    assert_eq!(stub.token_calls(), 1, "the backoff answers");
}

/// A clock set back after a token was cached cannot tell how much of the token's life is
/// left (its expiry was fixed by the clock before the step, and would outlast the
/// server's by the step): it is replaced, and while replacing fails it is not handed out.
#[tokio::test]
async fn a_clock_set_back_replaces_the_cached_token() {
    let stub = Stub::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    let client = stub.basic_client(&clock, false);
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-1"
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-1"
    );
    // Set back an hour: by the stepped clock the token would last another 3,890 s.
    clock.rewind(Duration::from_secs(3600));
    let replaced = client.access_token().await.unwrap();
    assert_eq!(replaced.access_token(), "token-2");
    assert_eq!(replaced.expires_at(), 1_700_000_010 - 3600 + 300);
    assert_eq!(stub.token_calls(), 2);
    // Set back again, with the token endpoint failing: the error, not the old token.
    clock.rewind(Duration::from_secs(60));
    stub.fixed(503, "");
    assert_eq!(
        client.access_token().await.unwrap_err(),
        ClientError::UnexpectedStatus { status: 503 }
    );
    assert_eq!(stub.token_calls(), 3);
}

/// A clock set back by less than the token's age: the time passed since it was cached,
/// counted on the monotonic clock, still ends it when due, and its life left is what
/// that time leaves.
#[tokio::test]
async fn a_small_clock_step_back_does_not_stretch_the_cached_token() {
    use crate::wall_clock::pass_time;
    let stub = Stub::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    // The default refresh margin, 30 s.
    let client = stub.basic_client(&clock, false);
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-1"
    );
    // 200 s pass, then the clock is set back 100 s: by the clock the token would be
    // due at +370 s, 70 s after the server's expiry.
    pass_time(&clock, Duration::from_secs(200)).await;
    clock.rewind(Duration::from_secs(100));
    pass_time(&clock, Duration::from_secs(69)).await;
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-1"
    );
    assert_eq!(stub.token_calls(), 1);
    pass_time(&clock, Duration::from_secs(1)).await;
    stub.fixed(503, "");
    // Due after 270 s held (the 30 s margin): replacing it fails, and the token is
    // handed out while the time held leaves it a second or more.
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-1"
    );
    assert_eq!(stub.token_calls(), 2);
    pass_time(&clock, Duration::from_secs(29)).await;
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-1"
    );
    assert_eq!(stub.token_calls(), 3, "due again 5 s after the failure");
    pass_time(&clock, Duration::from_secs(1)).await;
    assert_eq!(
        client.access_token().await.unwrap_err(),
        ClientError::UnexpectedStatus { status: 503 },
        "300 s held: expired, whatever the clock says"
    );
}

/// When replacing the token fails (an OAuth error, 429, 503, a timeout) while the cached
/// token expires at least a second from now, the cached token is returned; once it has
/// expired, the error is.
#[tokio::test]
async fn a_failed_refresh_returns_the_cached_token_until_it_expires() {
    let stub = Stub::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    let client = stub
        .client()
        .client_secret_basic("s")
        .token_endpoint(stub.token_endpoint())
        // Far above a loopback answer, far below the delayed one below.
        .timeout(Duration::from_secs(2))
        .clock(clock.clone())
        .build()
        .unwrap();
    let first = client.access_token().await.unwrap();
    assert_eq!(
        (first.access_token(), first.expires_at()),
        ("token-1", 1_700_000_300)
    );
    // Replaced from +270 on; every attempt fails. After each failure the next attempt
    // waits a quarter of the time left (1 to 5 s): calls meanwhile get the cached token
    // without asking the failing endpoint.
    clock.advance(Duration::from_secs(270));
    let failures = [
        (
            400,
            json!({"error": "invalid_client", "error_description": "gone"}).to_string(),
        ),
        (429, String::new()),
        (503, json!({"error": "temporarily_unavailable"}).to_string()),
    ];
    for (attempt, (status, body)) in failures.into_iter().enumerate() {
        stub.fixed(status, body);
        assert_eq!(client.access_token().await.unwrap(), first, "{status}");
        assert_eq!(stub.token_calls(), attempt + 2, "{status}");
        for _ in 0..10 {
            assert_eq!(client.access_token().await.unwrap(), first, "{status}");
        }
        assert_eq!(stub.token_calls(), attempt + 2, "{status}: waiting");
        clock.advance(Duration::from_secs(4));
        assert_eq!(client.access_token().await.unwrap(), first, "{status}");
        assert_eq!(stub.token_calls(), attempt + 2, "{status}: still waiting");
        clock.advance(Duration::from_secs(1));
    }
    // +285: a timeout is a failure too.
    stub.reply(Reply::Token);
    stub.delay(Duration::from_secs(60));
    assert_eq!(client.access_token().await.unwrap(), first, "timeout");
    stub.delay(Duration::ZERO);
    assert_eq!(stub.token_calls(), 5);
    // One second of life left: still the cached token.
    stub.fixed(503, "");
    clock.advance(Duration::from_secs(14));
    assert_eq!(client.access_token().await.unwrap(), first);
    assert_eq!(stub.token_calls(), 6);
    // Expired by the client's clock: the error, the last one while the backoff lasts
    // (after five failures in a row, 16 s) without asking the endpoint again.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        client.access_token().await.unwrap_err(),
        ClientError::UnexpectedStatus { status: 503 }
    );
    assert_eq!(stub.token_calls(), 6);
    clock.advance(Duration::from_secs(15));
    assert_eq!(
        client.access_token().await.unwrap_err(),
        ClientError::UnexpectedStatus { status: 503 }
    );
    assert_eq!(stub.token_calls(), 7);
    // The server recovers: a new token once the backoff (now 32 s) is over.
    stub.reply(Reply::Token);
    clock.advance(Duration::from_secs(32));
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        "token-8"
    );
}

#[tokio::test]
async fn oauth_errors_are_typed() {
    let stub = Stub::start().await;
    let clock = ManualClock::new();
    let client = stub
        .client()
        .client_secret_basic("wrong")
        .clock(clock.clone())
        .build()
        .unwrap();
    stub.fixed(
        401,
        json!({"error": "invalid_client", "error_description": "client authentication failed"})
            .to_string(),
    );
    let error = client.access_token().await.unwrap_err();
    assert_eq!(
        error,
        ClientError::OAuth {
            status: 401,
            error: "invalid_client".into(),
            description: Some("client authentication failed".into()),
        }
    );
    assert!(!error.to_string().contains("wrong"));

    stub.fixed(400, json!({"error": "unsupported_grant_type"}).to_string());
    clock.advance(Duration::from_secs(60));
    let error = client.access_token().await.unwrap_err();
    assert_eq!(
        error,
        ClientError::OAuth {
            status: 400,
            error: "unsupported_grant_type".into(),
            description: None,
        }
    );

    stub.fixed(502, "<html>bad gateway</html>");
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        client.access_token().await.unwrap_err(),
        ClientError::UnexpectedStatus { status: 502 }
    );
}

#[tokio::test]
async fn malformed_token_responses_are_typed_errors() {
    let stub = Stub::start().await;
    let clock = ManualClock::new();
    let client = stub.basic_client(&clock, false);
    let bodies = [
        json!({"token_type": "Bearer", "expires_in": 300}).to_string(),
        json!({"access_token": "t", "token_type": "mac", "expires_in": 300}).to_string(),
        json!({"access_token": "t", "expires_in": 300}).to_string(),
        json!({"access_token": "t", "token_type": "Bearer", "expires_in": "3e2"}).to_string(),
        json!({"access_token": "t", "token_type": "Bearer", "expires_in": " 300"}).to_string(),
        "<html>welcome</html>".to_owned(),
        "[]".to_owned(),
    ];
    for body in bodies {
        stub.fixed(200, body.clone());
        // Past the backoff of the previous failure.
        clock.advance(Duration::from_secs(60));
        let error = client.access_token().await.unwrap_err();
        assert!(
            matches!(error, ClientError::InvalidTokenResponse(_)),
            "{body}: {error:?}"
        );
    }

    stub.fixed(200, "x".repeat(70 * 1024));
    clock.advance(Duration::from_secs(60));
    let error = client.access_token().await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Transport { reason } if reason.contains("exceeds")),
        "{error:?}"
    );
    assert_eq!(stub.token_calls(), 8);
}

#[tokio::test]
async fn redirects_are_refused() {
    let stub = Stub::start().await;
    stub.reply(Reply::Redirect(307));
    let client = stub.client().client_secret_basic("s").build().unwrap();
    let error = client.access_token().await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Transport { reason } if reason.contains("redirect")),
        "{error:?}"
    );
    assert_eq!(stub.token_calls(), 1, "the redirect was not followed");
}

/// A client that follows redirects (reqwest's default policy, up to ten) is given to the
/// builder: a 307 or 308 from the token endpoint still gets the form exactly once, the
/// assertion or the secret never reaches the redirect target, and the answer is refused.
#[tokio::test]
async fn injected_client_that_follows_redirects_never_replays_the_form() {
    let stub = Stub::start().await;
    let following = crate::support::loopback_client_builder().build().unwrap();
    let key = ClientKey::generate(SigningAlgorithm::ES384, "k1").unwrap();
    let builders = [
        stub.client().client_secret_basic("s"),
        stub.client().private_key_jwt(key),
    ];
    let mut expected_calls = 0;
    for builder in builders {
        let clock = ManualClock::new();
        let client = builder
            .http_client(following.clone())
            .clock(clock.clone())
            .build()
            .unwrap();
        for status in [307, 308] {
            stub.reply(Reply::Redirect(status));
            // Past the backoff of the previous failure.
            clock.advance(Duration::from_secs(60));
            let error = client.access_token().await.unwrap_err();
            assert!(
                matches!(&error, ClientError::Transport { reason } if reason.contains("redirect")),
                "{status}: {error:?}"
            );
            expected_calls += 1;
            assert_eq!(
                stub.token_calls(),
                expected_calls,
                "{status}: form replayed"
            );
        }
    }
    // The form still goes out with its length, not chunked.
    let seen = stub.state.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|seen| {
        seen.header("content-length") == Some(&seen.body_length.to_string())
            && seen.header("transfer-encoding").is_none()
    }));
}

#[tokio::test]
async fn slow_token_endpoint_times_out() {
    let stub = Stub::start().await;
    stub.delay(Duration::from_secs(5));
    let client = stub
        .client()
        .client_secret_basic("s")
        .token_endpoint(stub.token_endpoint())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(
        client.access_token().await.unwrap_err(),
        ClientError::Timeout
    );
}

#[tokio::test]
async fn discovery_failures() {
    let stub = Stub::start().await;
    let client = || stub.client().client_secret_basic("s").build().unwrap();
    let cases = [
        (Value::Null, "404"),
        (json!({"issuer": "x"}), "no token_endpoint"),
        (json!({"token_endpoint": 7}), "no token_endpoint"),
        (
            json!({"token_endpoint": "http://auth.example.invalid/token"}),
            "not an https URL",
        ),
        (json!(["token_endpoint"]), "not a JSON object"),
    ];
    for (document, expected) in cases {
        stub.configuration(document.clone());
        let error = client().token_endpoint().await.unwrap_err();
        assert!(
            matches!(&error, ClientError::Discovery { reason } if reason.contains(expected)),
            "{document}: {error:?}"
        );
        assert!(matches!(
            client().access_token().await.unwrap_err(),
            ClientError::Discovery { .. }
        ));
    }
    assert_eq!(stub.token_calls(), 0);

    // A loopback port nothing listens on: bound, then let go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nobody = BackendServiceClient::builder(format!("http://{closed}/fhir"))
        .client_id(CLIENT_ID)
        .client_secret_basic("s")
        .scope(SCOPE)
        .build()
        .unwrap();
    assert!(matches!(
        nobody.access_token().await.unwrap_err(),
        ClientError::Discovery { .. }
    ));
}

/// A relative `token_endpoint` (legacy servers) is resolved against the FHIR base taken as
/// a directory; the result is the URL posted to and the assertion's `aud`, and must pass
/// the checks an absolute one passes (https or loopback http, no user info, no fragment).
#[tokio::test]
async fn relative_token_endpoint_is_resolved_against_the_fhir_base() {
    let stub = Stub::start().await;
    let configuration = |token_endpoint: &str| {
        json!({
            "token_endpoint": token_endpoint,
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["client-confidential-asymmetric"],
        })
    };
    let key = ClientKey::generate(SigningAlgorithm::ES384, "k1").unwrap();
    let client = || stub.client().private_key_jwt(key.clone()).build().unwrap();
    for relative in ["/token", "../token"] {
        stub.configuration(configuration(relative));
        let client = client();
        assert_eq!(
            client.token_endpoint().await.unwrap(),
            stub.token_endpoint(),
            "{relative}"
        );
        let (trace, token) = client.request_token_verbose().await.unwrap();
        assert_eq!(
            token.access_token(),
            format!("token-{}", stub.token_calls())
        );
        assert_eq!(trace.token_endpoint, stub.token_endpoint());
        let jwt = stub.last_assertion();
        let claims = verify_assertion(
            &jwt,
            &key.public_jwk(),
            Algorithm::ES384,
            &stub.token_endpoint(),
        );
        assert_eq!(claims["aud"], stub.token_endpoint(), "{relative}");
        // The document is kept as published.
        assert_eq!(
            trace.discovered.unwrap().document["token_endpoint"],
            relative
        );
    }
    stub.configuration(configuration("oauth/token?tenant=1"));
    assert_eq!(
        client().token_endpoint().await.unwrap(),
        format!("{}/oauth/token?tenant=1", stub.fhir_base())
    );
    assert_eq!(stub.token_calls(), 2);

    // Resolved, each fails a check an absolute URL must pass.
    let port = stub.state.base.rsplit(':').next().unwrap().to_owned();
    for relative in [
        "//evil.example/token".to_owned(),
        format!("//user:secret@127.0.0.1:{port}/token"),
        format!("//user@127.0.0.1:{port}/token"),
        "/token#fragment".to_owned(),
        "/token#".to_owned(),
        String::new(),
        "  ".to_owned(),
    ] {
        stub.configuration(configuration(&relative));
        let error = client().token_endpoint().await.unwrap_err();
        assert!(
            matches!(error, ClientError::Discovery { .. }),
            "{relative:?}: {error:?}"
        );
    }
    assert_eq!(stub.token_calls(), 2);
}

#[tokio::test]
async fn authorize_attaches_the_bearer_token() {
    let stub = Stub::start().await;
    let client = stub.client().client_secret_basic("s").build().unwrap();
    let http = crate::support::loopback_client();
    let request = client
        .authorize(http.get(format!("{}/Patient/1", stub.fhir_base())))
        .await
        .unwrap();
    let echoed = request.send().await.unwrap().text().await.unwrap();
    assert_eq!(echoed, "Bearer token-1");
}

/// The token goes only to the FHIR server's origin (or one added), over https or loopback
/// http: every other URL is refused before a token is even requested.
#[tokio::test]
async fn authorize_sends_the_token_only_to_its_origins() {
    let stub = Stub::start().await;
    let base = stub.fhir_base();
    let origin = base.trim_end_matches("/fhir").to_owned();
    let port = origin.rsplit(':').next().unwrap().to_owned();
    let client = stub
        .client()
        .client_secret_basic("s")
        .also_authorize_origin("https://files.example.org/ignored/path")
        .build()
        .unwrap();
    let http = crate::support::loopback_client();
    for url in [
        "http://fhir.example.org/fhir/Patient/1".to_owned(),
        "http://files.example.org/x".to_owned(),
        "https://files.example.org:8443/x".to_owned(),
        "https://evil.example/fhir/Patient/1".to_owned(),
        format!("http://localhost:{port}/fhir/Patient/1"),
        format!("https://127.0.0.1:{port}/fhir/Patient/1"),
        "http://127.0.0.1:1/fhir/Patient/1".to_owned(),
    ] {
        let error = client.authorize(http.get(&url)).await.unwrap_err();
        assert_eq!(error, ClientError::TokenNotForUrl, "{url}");
    }
    let error = client.authorize(http.get("not a url")).await.unwrap_err();
    assert_eq!(error, ClientError::TokenNotForUrl);
    assert_eq!(stub.token_calls(), 0);
    // The FHIR server's origin, any path on it; and the added origin.
    let request = client
        .authorize(http.get(format!("{base}/Patient/1")))
        .await
        .unwrap();
    let echoed = request.send().await.unwrap().text().await.unwrap();
    assert_eq!(echoed, "Bearer token-1");
    for url in [
        format!("{origin}/other"),
        "https://files.example.org/output/1.ndjson".to_owned(),
        "https://FILES.example.org:443/x".to_owned(),
    ] {
        let built = client
            .authorize(http.get(&url))
            .await
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(built.headers()["authorization"], "Bearer token-1", "{url}");
        assert!(built.headers()["authorization"].is_sensitive());
    }
    // An added origin must be https (http only for loopback).
    let error = stub
        .client()
        .client_secret_basic("s")
        .also_authorize_origin("http://files.example.org")
        .build()
        .unwrap_err();
    assert!(matches!(error, ClientError::Config(_)), "{error:?}");
}

/// A configured token endpoint is taken without the whitespace around it (a value read
/// from a file or the environment with its line break): the assertion's `aud` is the URL
/// the request goes to, as servers compare it exactly. Whitespace or a control character
/// inside, which a URL parser would drop but `aud` would keep, is refused.
#[tokio::test]
async fn configured_token_endpoints_are_trimmed_or_refused() {
    let stub = Stub::start().await;
    let endpoint = stub.token_endpoint();
    // A client signing its assertions with a fresh key.
    let signing = || {
        let key = ClientKey::generate(SigningAlgorithm::ES384, "k").unwrap();
        stub.client().private_key_jwt(key)
    };
    for written in [format!(" {endpoint}\r\n"), format!("\t{endpoint}\n")] {
        let client = signing().token_endpoint(written.clone()).build().unwrap();
        client.access_token().await.unwrap();
        let claims = jwt_part(&stub.last_assertion(), 1);
        assert_eq!(claims["aud"], endpoint, "{written:?}");
        assert_eq!(client.token_endpoint().await.unwrap(), endpoint);
    }
    for written in [
        endpoint.replace("/token", "/to\tken"),
        endpoint.replace("/token", "/to ken"),
        endpoint.replace("/token", "/to\u{0}ken"),
        format!("{endpoint}\u{a0}"),
        format!("{endpoint}\u{85}"),
        endpoint.replace("://", "://fhir.example\\@"),
        endpoint.replace("/token", "/t\"ken"),
        endpoint.replace("/token", "/t<ken>"),
    ] {
        let error = signing()
            .token_endpoint(written.clone())
            .build()
            .unwrap_err();
        assert_eq!(
            error,
            ClientError::Config(
                "the token endpoint holds whitespace, a control character or another character a URI may not hold"
            ),
            "{written:?}"
        );
    }
    // The same for a configured assertion audience.
    let issuer = "https://login.example.test/tenant/v2.0";
    let client = signing()
        .token_endpoint(&endpoint)
        .assertion_audience(format!("{issuer}\n"))
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    assert_eq!(jwt_part(&stub.last_assertion(), 1)["aud"], issuer);
    for (written, refusal) in [
        (
            format!("{issuer} x"),
            "the assertion audience holds whitespace, a control character or another character a URI may not hold",
        ),
        (
            format!("{issuer}\u{0}"),
            "the assertion audience holds whitespace, a control character or another character a URI may not hold",
        ),
        (
            "https://login.example.test\\@evil.example/".to_owned(),
            "the assertion audience holds whitespace, a control character or another character a URI may not hold",
        ),
        (" \t".to_owned(), "the assertion audience is empty"),
        (
            "auth|tenant\u{feff}".to_owned(),
            "the assertion audience holds whitespace, a control character or another character a URI may not hold",
        ),
        (
            "auth|tenant \\".to_owned(),
            "the assertion audience holds whitespace, a control character or another character a URI may not hold",
        ),
    ] {
        let error = signing()
            .token_endpoint(&endpoint)
            .assertion_audience(written.clone())
            .build()
            .unwrap_err();
        assert_eq!(error, ClientError::Config(refusal), "{written:?}");
    }
    // An audience that is no URI is any string (RFC 7519's StringOrURI); one that is must
    // be written as one.
    for audience in ["auth|tenant", "Ärzte-AS"] {
        let client = signing()
            .token_endpoint(&endpoint)
            .assertion_audience(audience)
            .build()
            .unwrap();
        client.access_token().await.unwrap();
        assert_eq!(jwt_part(&stub.last_assertion(), 1)["aud"], audience);
    }
}

#[tokio::test]
async fn verbose_request_traces_each_step_without_secrets() {
    let stub = Stub::start().await;
    let clock = ManualClock::at_unix(1_700_000_000);
    let key = ClientKey::generate(SigningAlgorithm::RS384, "trace-key").unwrap();
    let client = stub
        .client()
        .private_key_jwt(key)
        .clock(clock)
        .build()
        .unwrap();
    let (trace, token) = client.request_token_verbose().await.unwrap();
    let discovered = trace.discovered.as_ref().unwrap();
    assert_eq!(
        discovered.url,
        format!("{}/.well-known/smart-configuration", stub.fhir_base())
    );
    assert_eq!(discovered.document["token_endpoint"], stub.token_endpoint());
    assert_eq!(trace.token_endpoint, stub.token_endpoint());
    assert_eq!(trace.auth_method, "private_key_jwt");
    assert_eq!(
        trace.assertion_header,
        Some(json!({"alg": "RS384", "kid": "trace-key", "typ": "JWT"}))
    );
    let claims = trace.assertion_claims.as_ref().unwrap();
    assert_eq!(claims["aud"], stub.token_endpoint());
    assert_eq!(claims["exp"], 1_700_000_240);
    let sent = stub.last_seen();
    let assertion = sent.field("client_assertion").unwrap();
    assert_eq!(&jwt_part(assertion, 1), claims);
    assert_eq!(trace.form.len(), 4);
    assert!(trace.form.iter().all(|(_, value)| value != assertion));
    assert_eq!(trace.response_status, 200);
    assert_eq!(trace.response_body["token_type"], "Bearer");
    assert_eq!(
        trace.response_body["access_token"],
        "<redacted, 7 characters>"
    );
    assert!(!format!("{trace:?}").contains(token.access_token()));

    // The traced token is the cached one; a second verbose call asks again.
    assert_eq!(client.access_token().await.unwrap(), token);
    let (second, _) = client.request_token_verbose().await.unwrap();
    assert!(second.discovered.is_some());
    assert_eq!(stub.token_calls(), 2);
    assert_eq!(stub.state.discovery_calls.load(Ordering::SeqCst), 1);
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/it/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn bare(jwk: &Value) -> Value {
    let mut jwk = jwk.clone();
    for member in ["kid", "alg", "use"] {
        jwk.as_object_mut().unwrap().remove(member);
    }
    jwk
}

#[tokio::test]
async fn keys_from_pem_and_jwk_are_the_same_key_and_sign_verifiably() {
    let stub = Stub::start().await;
    let rows = [
        (
            "rsa",
            SigningAlgorithm::RS384,
            Algorithm::RS384,
            &["rsa.pkcs8.pem", "rsa.pkcs1.pem"][..],
        ),
        (
            "p384",
            SigningAlgorithm::ES384,
            Algorithm::ES384,
            &["p384.pkcs8.pem", "p384.sec1.pem"],
        ),
        (
            "p256",
            SigningAlgorithm::ES256,
            Algorithm::ES256,
            &["p256.pkcs8.pem", "p256.sec1.pem"],
        ),
        (
            "ed25519",
            SigningAlgorithm::EdDSA,
            Algorithm::EdDSA,
            &["ed25519.pkcs8.pem"],
        ),
    ];
    for (name, alg, jwt_alg, pems) in rows {
        let private_jwk: Value =
            serde_json::from_str(&fixture(&format!("{name}.jwk.json"))).unwrap();
        let from_jwk = ClientKey::from_jwk(&private_jwk).unwrap();
        assert_eq!(from_jwk.algorithm(), alg, "{name}");
        assert_eq!(from_jwk.kid(), format!("{name}-fixture"));
        let public = from_jwk.public_jwk();
        assert!(public.get("d").is_none() && public.get("p").is_none());
        assert_eq!(public["use"], "sig");
        assert_eq!(public["alg"], alg.name());

        for pem in pems {
            let from_pem = ClientKey::from_pkcs8_pem(&fixture(pem), alg, "pem-key").unwrap();
            assert_eq!(bare(&from_pem.public_jwk()), bare(&public), "{pem}");
        }

        // Sign with the key loaded from the JWK, verify with the public half of the PEM key.
        let from_pem = ClientKey::from_pkcs8_pem(&fixture(pems[0]), alg, "pem-key").unwrap();
        let client = stub
            .client()
            .private_key_jwt(from_jwk.clone())
            .token_endpoint(stub.token_endpoint())
            .build()
            .unwrap();
        client.access_token().await.unwrap();
        let jwt = stub.last_assertion();
        assert_eq!(jwt_part(&jwt, 0)["kid"], format!("{name}-fixture"));
        verify_assertion(
            &jwt,
            &from_pem.public_jwk(),
            jwt_alg,
            &stub.token_endpoint(),
        );
        verify_assertion(&jwt, &public, jwt_alg, &stub.token_endpoint());
    }
}

#[test]
fn key_loading_refusals() {
    let p384 = fixture("p384.pkcs8.pem");
    assert_eq!(
        ClientKey::from_pkcs8_pem(&p384, SigningAlgorithm::RS384, "k").unwrap_err(),
        KeyError::Rejected("WrongAlgorithm")
    );
    assert!(matches!(
        ClientKey::from_pkcs8_pem(&p384, SigningAlgorithm::ES256, "k").unwrap_err(),
        KeyError::Rejected(_)
    ));
    assert_eq!(
        ClientKey::from_pkcs8_pem(&fixture("rsa.pkcs1.pem"), SigningAlgorithm::ES384, "k")
            .unwrap_err(),
        KeyError::AlgorithmMismatch {
            algorithm: SigningAlgorithm::ES384
        }
    );
    assert_eq!(
        ClientKey::from_pkcs8_pem(&fixture("p256.sec1.pem"), SigningAlgorithm::EdDSA, "k")
            .unwrap_err(),
        KeyError::AlgorithmMismatch {
            algorithm: SigningAlgorithm::EdDSA
        }
    );
    assert_eq!(
        ClientKey::from_pkcs8_pem(&fixture("rsa.pkcs8.pem"), SigningAlgorithm::RS384, "")
            .unwrap_err(),
        KeyError::EmptyKid
    );

    // A JWK whose alg does not fit its curve, and one whose private part does not match.
    let mut jwk: Value = serde_json::from_str(&fixture("p256.jwk.json")).unwrap();
    jwk["alg"] = json!("ES384");
    assert_eq!(
        ClientKey::from_jwk(&jwk).unwrap_err(),
        KeyError::AlgorithmMismatch {
            algorithm: SigningAlgorithm::ES384
        }
    );
    let mut jwk: Value = serde_json::from_str(&fixture("p384.jwk.json")).unwrap();
    let other: Value = serde_json::from_str(&fixture("p256.jwk.json")).unwrap();
    jwk["d"] = other["d"].clone();
    assert!(matches!(
        ClientKey::from_jwk(&jwk).unwrap_err(),
        KeyError::Rejected(_)
    ));
    let mut rsa: Value = serde_json::from_str(&fixture("rsa.jwk.json")).unwrap();
    rsa.as_object_mut().unwrap().remove("qi");
    assert_eq!(
        ClientKey::from_jwk(&rsa).unwrap_err(),
        KeyError::Jwk { member: "qi" }
    );
    let mut rsa: Value = serde_json::from_str(&fixture("rsa.jwk.json")).unwrap();
    rsa["d"] = rsa["p"].clone();
    assert!(matches!(
        ClientKey::from_jwk(&rsa).unwrap_err(),
        KeyError::Rejected(_)
    ));
    let mut rsa: Value = serde_json::from_str(&fixture("rsa.jwk.json")).unwrap();
    rsa["alg"] = json!("PS256");
    assert_eq!(
        ClientKey::from_jwk(&rsa).unwrap().algorithm(),
        SigningAlgorithm::PS256
    );
    assert!(
        !format!("{:?}", ClientKey::from_jwk(&rsa).unwrap()).contains(rsa["d"].as_str().unwrap())
    );
}

/// A FHIR server names where the client's credentials go: pinned origins keep them on the
/// authorization server meant (RFC 9700 section 4.9.1). A token endpoint elsewhere is a
/// discovery error before anything is sent, and so is one on another origin for a client
/// secret that pinned none; whitespace in a published endpoint too.
#[tokio::test]
async fn discovered_token_endpoints_outside_the_pinned_origins_are_refused() {
    let stub = Stub::start().await;
    let elsewhere = Stub::start().await;
    stub.configuration(json!({"token_endpoint": elsewhere.token_endpoint()}));
    let pinned = stub
        .client()
        .client_secret_basic("s")
        .trust_token_endpoint_origin(stub.state.base.clone())
        .build()
        .unwrap();
    let error = pinned.access_token().await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Discovery { reason } if reason.contains("not trusted")),
        "{error:?}"
    );
    assert_eq!(stub.token_calls() + elsewhere.token_calls(), 0);
    // Pinned to the other origin, it is used.
    let trusting = stub
        .client()
        .client_secret_basic("s")
        .trust_token_endpoint_origin(elsewhere.state.base.clone())
        .build()
        .unwrap();
    assert!(trusting.access_token().await.is_ok());
    assert_eq!(elsewhere.token_calls(), 1);
    // Unpinned, a client secret never goes to another origin (whoever receives it can
    // replay it); an assertion does, since it names that endpoint as its audience.
    let unpinned = stub.client().client_secret_basic("s").build().unwrap();
    let error = unpinned.access_token().await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Discovery { reason } if reason.contains("pinned")),
        "{error:?}"
    );
    assert_eq!(elsewhere.token_calls(), 1);
    let key = ClientKey::generate(SigningAlgorithm::ES384, "k").unwrap();
    let asserting = stub.client().private_key_jwt(key).build().unwrap();
    assert!(asserting.access_token().await.is_ok());
    assert_eq!(elsewhere.token_calls(), 2);
    // Whitespace inside, which the URL parser would drop from the POST target but not
    // from `aud`.
    // And what only a lenient parser reads as a URL: a `\` it takes for `/` (the host is
    // the FHIR server's for it, the text's `@` after it makes `auth.example` the host for
    // an RFC 3986 reader of `aud`), or no `//` before the host.
    let fhir_host = stub.token_endpoint().replace("://", "://fhir.example\\@");
    let no_slashes = stub.token_endpoint().replace("://", ":");
    for (published, expected) in [
        (
            stub.token_endpoint().replace("/token", "/to\tken"),
            "whitespace",
        ),
        (
            stub.token_endpoint().replace("/token", "/to ken"),
            "whitespace",
        ),
        (
            stub.token_endpoint().replace("/token", "/to\nken"),
            "whitespace",
        ),
        (fhir_host, "a URI may not hold"),
        (no_slashes, "is not an https URL"),
    ] {
        stub.configuration(json!({ "token_endpoint": published }));
        let client = stub.client().client_secret_basic("s").build().unwrap();
        let error = client.access_token().await.unwrap_err();
        assert!(
            matches!(&error, ClientError::Discovery { reason } if reason.contains(expected)),
            "{published:?}: {error:?}"
        );
    }
    assert_eq!(stub.token_calls(), 0);
    // Around it, whitespace is no part of it: the endpoint is used, and `aud` is exact.
    stub.configuration(json!({ "token_endpoint": format!(" {}\n", stub.token_endpoint()) }));
    let client = stub.client().client_secret_basic("s").build().unwrap();
    assert_eq!(
        client.token_endpoint().await.unwrap(),
        stub.token_endpoint()
    );
    // Origins to trust are plain URLs, checked at build.
    for bad in [
        "ftp://auth.example.org",
        "http://auth.example.org",
        "https://a.example/?x",
    ] {
        assert!(matches!(
            stub.client()
                .client_secret_basic("s")
                .trust_token_endpoint_origin(bad)
                .build()
                .unwrap_err(),
            ClientError::Config(_)
        ));
    }
}

/// The timeout is 100 ms to 5 minutes: less (5 ms meant as 5 s) fails every request,
/// more holds the refresh, and every caller waiting on it, that long.
#[test]
fn timeouts_out_of_bounds_are_refused() {
    let builder = |timeout| {
        BackendServiceClient::builder("https://fhir.example.org/r4")
            .client_id(CLIENT_ID)
            .scope(SCOPE)
            .client_secret_basic("s")
            .timeout(timeout)
            .build()
    };
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(5),
        Duration::from_millis(99),
        Duration::from_secs(301),
    ] {
        assert_eq!(
            builder(timeout).unwrap_err(),
            ClientError::Config("the timeout must be 100 ms to 5 minutes"),
            "{timeout:?}"
        );
    }
    for timeout in [Duration::from_millis(100), Duration::from_secs(300)] {
        assert!(builder(timeout).is_ok(), "{timeout:?}");
    }
}

/// An assertion audience other than the endpoint needs the endpoint configured: a
/// discovered endpoint could replay an assertion made for that audience.
#[test]
fn an_assertion_audience_needs_a_configured_token_endpoint() {
    let key = ClientKey::generate(SigningAlgorithm::ES384, "k").unwrap();
    let builder = || {
        BackendServiceClient::builder("https://fhir.example.org/r4")
            .client_id(CLIENT_ID)
            .scope(SCOPE)
            .private_key_jwt(key.clone())
            .assertion_audience("https://auth.example.org/")
    };
    assert!(matches!(
        builder().build().unwrap_err(),
        ClientError::Config(_)
    ));
    assert!(
        builder()
            .token_endpoint("https://auth.example.org/oauth/token")
            .build()
            .is_ok()
    );
}

/// While one caller replaces a token that is still valid (a slow token endpoint), the
/// others get the cached token at once.
#[tokio::test]
async fn callers_do_not_wait_for_a_refresh_while_the_token_is_valid() {
    let stub = Stub::start().await;
    let clock = ManualClock::new();
    let client = stub.basic_client(&clock, false);
    let first = client.access_token().await.unwrap();
    // Into the refresh margin (the token lives 300 s, replaced 30 s before).
    clock.advance(Duration::from_secs(280));
    let (gate, opened) = tokio::sync::oneshot::channel::<()>();
    stub.delay(Duration::from_secs(3600));
    let refreshing = tokio::spawn({
        let client = client.clone();
        async move {
            let _ = opened.await;
            client.access_token().await
        }
    });
    let _ = gate.send(());
    // The refresh has started once the stub saw the second request.
    stub.wait_for_token_calls(2).await;
    assert_eq!(stub.token_calls(), 2);
    for _ in 0..10 {
        let token = tokio::time::timeout(Duration::from_secs(5), client.access_token())
            .await
            .expect("no wait on the refresh")
            .unwrap();
        assert_eq!(token.access_token(), first.access_token());
    }
    refreshing.abort();
}

/// A token answer after a UTF-8 byte order mark is read (RFC 8259 section 8.1), success
/// and OAuth error alike; an OAuth error answered with 200 is still one.
#[tokio::test]
async fn token_answers_with_a_byte_order_mark_or_an_error_under_200() {
    let stub = Stub::start().await;
    let client = || {
        stub.client()
            .client_secret_basic("s")
            .token_endpoint(stub.token_endpoint())
            .build()
            .unwrap()
    };
    stub.fixed(
        200,
        "\u{feff}{\"access_token\":\"t-1\",\"token_type\":\"Bearer\",\"expires_in\":60}",
    );
    assert_eq!(client().access_token().await.unwrap().access_token(), "t-1");
    stub.fixed(400, "\u{feff}{\"error\":\"invalid_scope\"}");
    assert_eq!(
        client().access_token().await.unwrap_err().oauth_error(),
        Some("invalid_scope")
    );
    stub.fixed(200, "{\"error\":\"invalid_client\"}");
    assert!(matches!(
        client().access_token().await.unwrap_err(),
        ClientError::OAuth { status: 200, ref error, .. } if error == "invalid_client"
    ));
}

/// Parameters a server wants beyond SMART's go into every token request (Auth0's
/// `audience`); names the client writes itself, empty and repeated ones are refused.
#[tokio::test]
async fn token_request_parameters() {
    let stub = Stub::start().await;
    let client = stub
        .client()
        .client_secret_basic("s")
        .token_endpoint(stub.token_endpoint())
        .token_request_parameter("audience", "https://api.example/fhir")
        .build()
        .unwrap();
    client.access_token().await.unwrap();
    let seen = stub.last_seen();
    assert_eq!(seen.field("audience"), Some("https://api.example/fhir"));
    assert_eq!(seen.names(), ["audience", "grant_type", "scope"]);
    for name in [
        "grant_type",
        "scope",
        "client_assertion",
        "client_id",
        "client_secret",
        "",
    ] {
        assert!(
            matches!(
                stub.client()
                    .client_secret_basic("s")
                    .token_request_parameter(name, "x")
                    .build()
                    .unwrap_err(),
                ClientError::Config(_)
            ),
            "{name:?}"
        );
    }
    assert!(matches!(
        stub.client()
            .client_secret_basic("s")
            .token_request_parameter("audience", "a")
            .token_request_parameter("audience", "b")
            .build()
            .unwrap_err(),
        ClientError::Config(_)
    ));
}

/// Many answers refusing one revoked token clear it once: the token another caller got
/// meanwhile stays.
#[tokio::test]
async fn clearing_a_refused_token_keeps_a_newer_one() {
    let stub = Stub::start().await;
    let client = stub
        .client()
        .client_secret_basic("s")
        .token_endpoint(stub.token_endpoint())
        .build()
        .unwrap();
    let revoked = client.access_token().await.unwrap();
    assert!(client.clear_cached_token_if(&revoked));
    let newer = client.access_token().await.unwrap();
    assert_ne!(newer.access_token(), revoked.access_token());
    for _ in 0..20 {
        assert!(!client.clear_cached_token_if(&revoked));
    }
    assert_eq!(
        client.access_token().await.unwrap().access_token(),
        newer.access_token()
    );
    assert_eq!(stub.token_calls(), 2);
}

/// Without a cached token to fall back on, failed token requests are not repeated on
/// every call: the last error is answered while the server's `Retry-After` (429, 503; at
/// most 300 s) or a backoff doubling from 1 s to 60 s lasts.
#[tokio::test]
async fn failed_token_requests_back_off() {
    let stub = Stub::start().await;
    let clock = ManualClock::new();
    let client = stub.basic_client(&clock, true);
    let throttled = ClientError::UnexpectedStatus { status: 429 };
    stub.reply(Reply::Throttled(429, "30"));
    for _ in 0..10 {
        assert_eq!(client.access_token().await.unwrap_err(), throttled);
    }
    assert_eq!(stub.token_calls(), 1);
    clock.advance(Duration::from_secs(29));
    assert_eq!(client.access_token().await.unwrap_err(), throttled);
    assert_eq!(stub.token_calls(), 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(client.access_token().await.unwrap_err(), throttled);
    assert_eq!(stub.token_calls(), 2);
    // A Retry-After beyond 300 s is held to 300 s; an HTTP-date is not read (backoff).
    stub.reply(Reply::Throttled(503, "86400"));
    clock.advance(Duration::from_secs(30));
    client.access_token().await.unwrap_err();
    assert_eq!(stub.token_calls(), 3);
    clock.advance(Duration::from_secs(299));
    client.access_token().await.unwrap_err();
    assert_eq!(stub.token_calls(), 3);
    clock.advance(Duration::from_secs(1));
    stub.reply(Reply::Throttled(503, "Wed, 21 Oct 2015 07:28:00 GMT"));
    client.access_token().await.unwrap_err();
    assert_eq!(stub.token_calls(), 4);
    // Four failures in a row, no Retry-After read: 8 s.
    clock.advance(Duration::from_secs(7));
    client.access_token().await.unwrap_err();
    assert_eq!(stub.token_calls(), 4);
    clock.advance(Duration::from_secs(1));
    stub.reply(Reply::Token);
    assert!(client.access_token().await.is_ok());
    assert_eq!(stub.token_calls(), 5);
    // A success resets the backoff: the next failure waits 1 s.
    client.clear_cached_token();
    stub.fixed(500, "");
    client.access_token().await.unwrap_err();
    clock.advance(Duration::from_secs(1));
    client.access_token().await.unwrap_err();
    assert_eq!(stub.token_calls(), 7);
    // A clock set back neither stretches the wait (2 s after two failures) by the step nor
    // ends it: counted from the stepped clock's now, it lasts its own length.
    clock.rewind(Duration::from_secs(3600));
    client.access_token().await.unwrap_err();
    assert_eq!(stub.token_calls(), 7);
    clock.advance(Duration::from_secs(1));
    client.access_token().await.unwrap_err();
    assert_eq!(stub.token_calls(), 7);
    clock.advance(Duration::from_secs(1));
    client.access_token().await.unwrap_err();
    assert_eq!(stub.token_calls(), 8);
}
