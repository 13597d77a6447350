//! RFC 6750 answers for requests without a usable credential, public routes, and an
//! invalid configuration.

use reqwest::StatusCode;
use smart_auth::{ConfigError, SmartAuthLayer};

use crate::support::app;

const REALM: &str = "Bearer realm=\"https://fhir.example.test/r4\"";

#[tokio::test]
async fn no_credentials_get_a_bare_challenge() {
    let app = app(|b| b).await;
    for request in [
        app.http.get(app.patient_url()),
        app.http
            .get(app.patient_url())
            .header("authorization", "Basic dXNlcjpwYXNz"),
        app.http
            .get(app.patient_url())
            .header("authorization", "Negotiate abc"),
        // `obs-text` in a quoted string (RFC 9110 section 5.6.4): well-formed.
        app.http.get(app.patient_url()).header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Digest username=\"\xc3\xa9\", realm=\"x\"")
                .unwrap(),
        ),
    ] {
        let answer = app.send(request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.challenge.as_deref(), Some(REALM));
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/fhir+json; charset=utf-8")
        );
        assert_eq!(answer.body["resourceType"], "OperationOutcome");
        assert_eq!(answer.issue_code(), "login");
    }
    assert_eq!(
        app.issuer.jwks_fetches(),
        0,
        "no fetch for requests without a token"
    );
}

#[tokio::test]
async fn malformed_or_repeated_credentials_are_invalid_requests() {
    let app = app(|b| b).await;
    let token = app.issuer.token().sign();
    let expected = format!(
        "{REALM}, error=\"invalid_request\", error_description=\"malformed or repeated credentials\""
    );
    let requests = [
        app.http
            .get(app.patient_url())
            .header("authorization", "Bearer "),
        app.http
            .get(app.patient_url())
            .header("authorization", "Bearer"),
        app.http
            .get(app.patient_url())
            .header("authorization", "Bearer a b"),
        app.http
            .get(app.patient_url())
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}")),
        app.http
            .get(app.patient_url())
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", "Basic dXNlcjpwYXNz"),
        app.http
            .get(format!("{}?access_token={token}", app.patient_url())),
        app.http
            .get(format!("{}?access_token={token}", app.patient_url()))
            .header("authorization", format!("Bearer {token}")),
    ];
    for request in requests {
        let answer = app.send(request).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
        assert_eq!(answer.challenge.as_deref(), Some(expected.as_str()));
        assert_eq!(answer.issue_code(), "invalid");
    }
}

#[tokio::test]
async fn scheme_name_is_case_insensitive() {
    let app = app(|b| b).await;
    let token = app.issuer.token().sign();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let request = app
            .http
            .get(app.patient_url())
            .header("authorization", format!("{scheme} {token}"));
        assert_eq!(app.send(request).await.status, StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn discovery_and_metadata_are_public_under_the_base() {
    let app = app(|b| b.served_at_path("/fhir")).await;
    let answer = app
        .send(app.http.get(format!("{}/fhir/metadata", app.url)))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["resourceType"], "CapabilityStatement");
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.patient_url())
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET");
    // A preflight to a protected path needs a token by default.
    assert_eq!(app.send(preflight).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn metadata_can_be_protected() {
    let app = app(|b| b.protect_discovery_and_metadata()).await;
    let metadata = format!("{}/fhir/metadata", app.url);
    let answer = app.send(app.http.get(&metadata)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    let challenge = format!("Bearer realm=\"{}\"", app.issuer.audience());
    assert_eq!(answer.challenge.as_deref(), Some(challenge.as_str()));
    assert_eq!(answer.body["resourceType"], "OperationOutcome");
    // With a valid token it is served.
    let token = app.issuer.token().sign();
    let answer = app.send(app.http.get(&metadata).bearer_auth(token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["resourceType"], "CapabilityStatement");
}

#[tokio::test]
async fn custom_realm_is_used() {
    let app = app(|b| b.realm("My FHIR API")).await;
    let answer = app.send(app.http.get(app.patient_url())).await;
    assert_eq!(
        answer.challenge.as_deref(),
        Some("Bearer realm=\"My FHIR API\"")
    );
}

/// A configuration that cannot work is never a layer: `build` returns the error and the
/// one-line `new` panics at startup, instead of a layer that would answer 500 forever.
#[test]
fn an_invalid_configuration_is_never_a_layer() {
    for issuer in [
        "not a url",
        "http://auth.example",
        "https://auth.example?x=1",
        "",
    ] {
        assert!(
            matches!(
                SmartAuthLayer::builder(issuer).build(),
                Err(ConfigError::InvalidUrl {
                    field: "issuer",
                    ..
                })
            ),
            "{issuer:?}"
        );
        let made = std::panic::catch_unwind(|| SmartAuthLayer::new(issuer));
        let message = made.expect_err("new must not make a layer");
        let message = message
            .downcast_ref::<String>()
            .expect("a formatted panic message");
        assert!(message.contains("invalid issuer URL"), "{message}");
    }
}
