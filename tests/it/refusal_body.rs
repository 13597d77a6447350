//! A refusal body of the user's own (`SmartAuthBuilder::refusal_body`): the body and extra
//! headers change, the status and the RFC 6750 answer headers never do.

use axum::Router;
use axum::routing::get;
use http::{HeaderName, HeaderValue};
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::scopes::Interaction;
use smart_auth::testing::{JwksBehaviour, TestIssuer};
use smart_auth::{
    AuthError, ManualClock, RefusalBody, ScopeEnforcement, SmartAuthLayer, SmartClaims,
};

use crate::support::serve;

/// Refuses without read on Observation, with a header of its own on the refusal (as an
/// inner CORS layer would add).
async fn observation(
    claims: SmartClaims,
) -> Result<&'static str, ([(&'static str, &'static str); 2], AuthError)> {
    claims
        .require(Interaction::Read, "Observation")
        .map_err(|error| ([("x-inner", "kept"), ("etag", "\"inner\"")], error))?;
    Ok("observation")
}

/// The hook under test: a JSON body, extra headers, and attempts at the answer's own.
fn json_body(error: &AuthError) -> RefusalBody {
    let answer = error.kind().answer();
    let header = |name: &'static str, value: &'static str| {
        (
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    let mut body = RefusalBody::json(&json!({
        "status": answer.status.as_u16(),
        "error": answer.bearer_error,
        "message": answer.description,
    }));
    for (name, value) in [
        header("cache-control", "no-store"),
        header("x-refused", "1"),
        header("x-refused", "2"),
        // The answer's own headers: ignored.
        header("www-authenticate", "Basic"),
        header("retry-after", "0"),
        header("content-length", "1"),
        header("content-type", "text/html"),
    ] {
        body = body.header(name, value);
    }
    body
}

/// What a client sees of one response.
struct Seen {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

#[tokio::test]
async fn the_hook_builds_the_body_and_the_answer_stays_exact() {
    let clock = ManualClock::new();
    let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .realm("api")
        .served_at_path("/api")
        .enforce_scopes(ScopeEnforcement::new().allow_any_token_outside_base())
        .refusal_body(json_body)
        .build()
        .unwrap();
    let router = Router::new()
        .route("/api/Patient/{id}", get(|| async { "patient" }))
        .route("/observation", get(observation))
        .layer(layer);
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let send = |path: &str, authorization: Option<String>| {
        let mut request = http.get(format!("{url}{path}"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.json().await.unwrap_or(Value::Null);
            Seen {
                status,
                headers,
                body,
            }
        }
    };
    let check = |seen: &Seen, status: u16, challenge: Option<&str>, error: Option<&str>| {
        assert_eq!(seen.status.as_u16(), status);
        assert_eq!(
            seen.headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            challenge
        );
        assert_eq!(seen.headers["content-type"], "application/json");
        assert_eq!(seen.headers["cache-control"], "no-store");
        let refused: Vec<_> = seen.headers.get_all("x-refused").iter().collect();
        assert_eq!(refused, ["1", "2"]);
        assert_eq!(seen.body["status"], status);
        assert_eq!(seen.body["error"], json!(error));
        assert!(seen.body["message"].is_string());
    };

    let missing = send("/api/Patient/1", None).await;
    check(&missing, 401, Some("Bearer realm=\"api\""), None);
    let malformed = send("/api/Patient/1", Some("Bearer".into())).await;
    check(
        &malformed,
        400,
        Some(
            "Bearer realm=\"api\", error=\"invalid_request\", error_description=\"malformed or repeated credentials\"",
        ),
        Some("invalid_request"),
    );
    let expired = issuer.token().expires_in_secs(-3600).sign();
    let seen = send("/api/Patient/1", Some(format!("Bearer {expired}"))).await;
    check(
        &seen,
        401,
        Some(
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token has expired\"",
        ),
        Some("invalid_token"),
    );
    assert!(
        !seen.body.to_string().contains(&expired[..20]),
        "no token in the body"
    );
    let observation_only = issuer.token().scope("system/Observation.rs").sign();
    let seen = send("/api/Patient/1", Some(format!("Bearer {observation_only}"))).await;
    check(
        &seen,
        403,
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\", scope=\"system/Patient.r\"",
        ),
        Some("insufficient_scope"),
    );
    // Raised by a handler behind the layer: the same body, the handler's own headers kept.
    let patient_only = issuer.token().scope("system/Patient.rs").sign();
    let seen = send("/observation", Some(format!("Bearer {patient_only}"))).await;
    assert_eq!(seen.headers["x-inner"], "kept");
    // A validator of the inner body does not go with the body built in its place.
    assert_eq!(seen.headers.get("etag"), None);
    check(
        &seen,
        403,
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\", scope=\"system/Observation.r\"",
        ),
        Some("insufficient_scope"),
    );
    // 503: no challenge, and the layer's own Retry-After.
    let down = TestIssuer::start().await;
    down.set_jwks_behaviour(JwksBehaviour::Status(500));
    let layer = SmartAuthLayer::builder(down.url())
        .audience(down.audience())
        .realm("api")
        .refusal_body(json_body)
        .build()
        .unwrap();
    let (down_url, _down_server) = serve(
        Router::new()
            .route("/x", get(|| async { "x" }))
            .layer(layer),
    )
    .await;
    let response = http
        .get(format!("{down_url}/x"))
        .bearer_auth(down.token().sign())
        .send()
        .await
        .unwrap();
    let seen = Seen {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.json().await.unwrap(),
    };
    check(&seen, 503, None, None);
    assert_eq!(seen.headers["retry-after"], "10");
}
