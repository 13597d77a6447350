//! What the crate logs: the missing-audience warning once, and never token contents.
//!
//! A test binary of its own with a single test: tracing's callsite filters are
//! process-wide, so log capture must not share a process with other tests.

#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use tracing_subscriber::fmt::MakeWriter;

use support::{app, issuer};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures this thread's `smart_auth` events (the test runtime is single-threaded, so the
/// app, the issuer and the fetch tasks all log here).
fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("smart_auth=trace")
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

#[tokio::test]
async fn logging() {
    let (logs, _guard) = capture();
    without_audience_only_typed_access_tokens_are_accepted_with_one_warning(&logs).await;
    any_audience_only_when_spelled_out_with_one_warning(&logs).await;
    token_contents_never_reach_the_logs(&logs).await;
    #[cfg(feature = "introspection")]
    throttled_introspection_warns_at_most_once_a_second(&logs).await;
    #[cfg(feature = "introspection")]
    refused_introspection_logs_an_error_at_most_once_a_second(&logs).await;
    #[cfg(feature = "introspection")]
    refusals_are_logged_by_what_the_health_check_finds(&logs).await;
    #[cfg(feature = "introspection")]
    a_failed_discovery_warns_once_for_every_lookup_waiting(&logs).await;
}

/// Lookups of distinct tokens that wait for one discovery of the introspection endpoint
/// (an issuer that never answers, cut off by the fetch timeout) get 503 each, and one
/// warning says the discovery failed: the others are answered as in the cooldown it starts.
#[cfg(feature = "introspection")]
async fn a_failed_discovery_warns_once_for_every_lookup_waiting(logs: &Capture) {
    use smart_auth::{Introspection, IntrospectionAuth, ManualClock, SmartAuthLayer};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_issuer = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let clock = ManualClock::new();
    let layer = SmartAuthLayer::builder(&silent_issuer)
        .audience("https://fhir.example.test/r4")
        .clock(clock.clone())
        .fetch_timeout(std::time::Duration::from_secs(1))
        .introspection(Introspection::new(IntrospectionAuth::bearer("rs-token")))
        .build()
        .unwrap();
    let app = support::app_with_layer(issuer(&clock).await, clock, layer).await;
    let before = logs.text().len();
    let tokens: Vec<String> = (0..6).map(|n| format!("opaque-{n}")).collect();
    let answers =
        futures_util::future::join_all(tokens.iter().map(|token| app.get_with_token(token))).await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let text = logs.text()[before..].to_owned();
    let warnings = text
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("token introspection failed"))
        .count();
    assert_eq!(warnings, 1, "{text}");
    silent.abort();
}

/// An app whose introspection endpoint is `endpoint` (a POST handler at `/introspect`),
/// with its server.
#[cfg(feature = "introspection")]
async fn app_introspecting_with(
    endpoint: axum::routing::MethodRouter,
) -> (support::App, tokio::task::JoinHandle<()>) {
    use smart_auth::{Introspection, IntrospectionAuth, IntrospectionMode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/introspect", endpoint);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let app = app(|b| {
        b.introspection(
            Introspection::new(IntrospectionAuth::bearer("rs-token"))
                .endpoint(url)
                .mode(IntrospectionMode::Only),
        )
    })
    .await;
    (app, server)
}

/// An app whose introspection endpoint answers every call with `status`.
#[cfg(feature = "introspection")]
async fn app_introspecting_at(status: StatusCode) -> (support::App, tokio::task::JoinHandle<()>) {
    app_introspecting_with(axum::routing::post(move || async move { status })).await
}

/// A 401 or 403 from the introspection endpoint that no token found active before shows
/// to be an outage (a firewall in front of it refusing one hostile token after another)
/// starts no cooldown, so every request meets it: the warning that says to check the
/// credentials (or the firewall) is logged once a second at most, not once per request,
/// and no error is, since nothing shows the credentials are at fault.
#[cfg(feature = "introspection")]
async fn refused_introspection_logs_an_error_at_most_once_a_second(logs: &Capture) {
    for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
        let (app, _server) = app_introspecting_at(status).await;
        let before = logs.text().len();
        let started = tokio::time::Instant::now();
        for n in 0..20 {
            let answer = app.get_with_token(&format!("opaque-{n}")).await;
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{status}");
        }
        let elapsed = started.elapsed().as_secs();
        let text = logs.text()[before..].to_owned();
        let lines = |level: &str| {
            text.lines()
                .filter(|line| line.contains(level) && line.contains("own credentials"))
                .count()
        };
        let warnings = lines("WARN");
        assert!(
            warnings >= 1 && u64::try_from(warnings).unwrap() <= 1 + elapsed,
            "{status}: {warnings} warnings in {elapsed} s: {text}"
        );
        assert_eq!(lines("ERROR"), 0, "{status}: {text}");
    }
}

/// An app whose introspection endpoint refuses every call with `refusal` but those about
/// the tokens named `good…`, which it answers with the status `good_status` holds (200:
/// active).
#[cfg(feature = "introspection")]
async fn app_refusing_all_but_good(
    refusal: StatusCode,
) -> (
    support::App,
    Arc<std::sync::atomic::AtomicU16>,
    tokio::task::JoinHandle<()>,
) {
    use axum::response::IntoResponse as _;
    use smart_auth::Clock as _;
    use std::sync::atomic::{AtomicU16, Ordering};
    let active: Arc<Mutex<serde_json::Value>> = Arc::default();
    let good_status = Arc::new(AtomicU16::new(200));
    let (answer, status) = (Arc::clone(&active), Arc::clone(&good_status));
    let endpoint = axum::routing::post(move |body: String| {
        let good = body.starts_with("token=good");
        let status = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
        let answer = answer.lock().unwrap().clone();
        async move {
            match (good, status) {
                (true, StatusCode::OK) => axum::Json(answer).into_response(),
                (true, status) => status.into_response(),
                (false, _) => refusal.into_response(),
            }
        }
    });
    let (app, server) = app_introspecting_with(endpoint).await;
    let now = app
        .clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    *active.lock().unwrap() = serde_json::json!({
        "active": true, "scope": "system/Patient.rs", "client_id": "c", "token_type": "Bearer",
        "exp": now + 300, "iss": app.issuer.url(), "aud": app.issuer.audience(),
    });
    (app, good_status, server)
}

/// Sends ten tokens (`{prefix}-0`, ...) that each get 503, and returns what was logged
/// meanwhile.
#[cfg(feature = "introspection")]
async fn logs_of_ten_unavailable(app: &support::App, logs: &Capture, prefix: &str) -> String {
    let before = logs.text().len();
    for n in 0..10 {
        let answer = app.get_with_token(&format!("{prefix}-{n}")).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{prefix}-{n}"
        );
    }
    logs.text()[before..].to_owned()
}

/// How many lines of `text` hold both `level` and `words`.
#[cfg(feature = "introspection")]
fn count_lines(text: &str, level: &str, words: &str) -> usize {
    text.lines()
        .filter(|line| line.contains(level) && line.contains(words))
        .count()
}

/// How a 401 or 403 is logged follows what asking about a token found active before
/// shows: still answered (a firewall refusing hostile tokens, which anyone can send) at
/// debug level only; refused too (the resource server's own credentials) as one error;
/// failed otherwise (a 500) as an outage, without blaming the credentials.
#[cfg(feature = "introspection")]
async fn refusals_are_logged_by_what_the_health_check_finds(logs: &Capture) {
    for (status, check) in [
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED),
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
        (StatusCode::FORBIDDEN, StatusCode::INTERNAL_SERVER_ERROR),
        (StatusCode::BAD_GATEWAY, StatusCode::UNAUTHORIZED),
    ] {
        let (app, good_status, _server) = app_refusing_all_but_good(status).await;
        assert_eq!(app.get_with_token("good-1").await.status, StatusCode::OK);
        let text = logs_of_ten_unavailable(&app, logs, "blocked").await;
        let count = |level: &str, words: &str| count_lines(&text, level, words);
        assert_eq!(count("ERROR", "introspection"), 0, "{status}: {text}");
        assert_eq!(count("WARN", "introspection"), 0, "{status}: {text}");
        let refusals = if status == StatusCode::BAD_GATEWAY {
            0
        } else {
            10
        };
        assert_eq!(
            count("DEBUG", "refused one token's call"),
            refusals,
            "{status}: {text}"
        );
        // Now the endpoint fails on the token it found active too.
        good_status.store(check.as_u16(), std::sync::atomic::Ordering::SeqCst);
        tokio::time::pause();
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        tokio::time::resume();
        let text = logs_of_ten_unavailable(&app, logs, "other").await;
        let count = |level: &str, words: &str| count_lines(&text, level, words);
        let refused = check != StatusCode::INTERNAL_SERVER_ERROR;
        assert_eq!(
            count("ERROR", "own credentials"),
            usize::from(refused),
            "{status} {check}: {text}"
        );
        // The outage itself is warned about by the lookup that met it.
        assert_eq!(
            count("WARN", "token introspection failed"),
            1,
            "{status} {check}: {text}"
        );
    }
}

/// An introspection endpoint that throttles (429) starts no cooldown, so every request
/// meets it: one warning a second at most, the rest at debug level.
#[cfg(feature = "introspection")]
async fn throttled_introspection_warns_at_most_once_a_second(logs: &Capture) {
    let (app, _server) = app_introspecting_at(StatusCode::TOO_MANY_REQUESTS).await;
    let before = logs.text().len();
    let started = tokio::time::Instant::now();
    for n in 0..20 {
        let answer = app.get_with_token(&format!("opaque-{n}")).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let elapsed = started.elapsed().as_secs();
    let text = logs.text()[before..].to_owned();
    let lines = |level: &str| {
        text.lines()
            .filter(|line| line.contains(level) && line.contains("token introspection refused"))
            .count()
    };
    let warnings = lines("WARN");
    assert!(
        warnings >= 1 && u64::try_from(warnings).unwrap() <= 1 + elapsed,
        "{warnings} warnings in {elapsed} s: {text}"
    );
    assert_eq!(lines("DEBUG"), 20 - warnings, "{text}");
}

async fn without_audience_only_typed_access_tokens_are_accepted_with_one_warning(logs: &Capture) {
    let clock = smart_auth::ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = smart_auth::SmartAuthLayer::builder(issuer.url())
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = support::app_with_layer(issuer, clock, layer).await;
    for audience in [
        "https://a.example",
        "https://b.example",
        "https://c.example",
    ] {
        let token = app.issuer.token().audience(audience).sign();
        assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    }
    // An ID token of the same issuer (typed `JWT`, or untyped, `aud` a client id) is not an
    // access token for this API.
    for typ in [Some("JWT"), Some("jwt"), Some("id_token"), None] {
        // `Value::Null` leaves `typ` out.
        let typ = typ.map_or(serde_json::Value::Null, serde_json::Value::from);
        let token = app
            .issuer
            .token()
            .audience("client-123")
            .header("typ", typ.clone())
            .sign();
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "typ {typ:?}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(
                "Bearer realm=\"fhir\", error=\"invalid_token\", \
                 error_description=\"the token type is not accepted\""
            ),
            "typ {typ:?}"
        );
    }
    assert_eq!(
        logs.text().matches("no audience configured").count(),
        1,
        "{}",
        logs.text()
    );
}

async fn any_audience_only_when_spelled_out_with_one_warning(logs: &Capture) {
    let clock = smart_auth::ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = smart_auth::SmartAuthLayer::builder(issuer.url())
        .clock(clock.clone())
        .insecure_accept_any_audience()
        .build()
        .unwrap();
    let app = support::app_with_layer(issuer, clock, layer).await;
    for typ in ["JWT", "at+jwt"] {
        let token = app
            .issuer
            .token()
            .audience("client-123")
            .header("typ", typ)
            .sign();
        assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    }
    assert_eq!(
        logs.text()
            .matches("insecure_accept_any_audience: tokens for any audience")
            .count(),
        1,
        "{}",
        logs.text()
    );
}

async fn token_contents_never_reach_the_logs(logs: &Capture) {
    let app = app(|b| b).await;
    let secret_scope = "system/SecretMarker.rs";
    let tokens = [
        app.issuer.token().scope(secret_scope).sign(),
        app.issuer
            .token()
            .scope(secret_scope)
            .expires_in_secs(-3600)
            .sign(),
        app.issuer
            .token()
            .scope(secret_scope)
            .kid("kid-marker")
            .sign(),
        app.issuer
            .token()
            .scope(secret_scope)
            .claim("iss", "https://issuer-marker.example")
            .sign(),
        format!("{}tampered", app.issuer.token().scope(secret_scope).sign()),
    ];
    for token in &tokens {
        app.get_with_token(token).await;
    }
    let text = logs.text();
    assert!(
        text.contains("token refused"),
        "rejections are logged: {text}"
    );
    for token in &tokens {
        for segment in token.split('.') {
            assert!(!text.contains(segment), "a token segment was logged");
        }
    }
    for marker in ["SecretMarker", "kid-marker", "issuer-marker"] {
        assert!(!text.contains(marker), "{marker} was logged");
    }
}
