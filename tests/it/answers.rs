//! RFC 6750 answers for requests without a usable credential, public routes, and a
//! misconfigured layer.

use reqwest::StatusCode;
use smart_auth::{ManualClock, SmartAuthLayer};

use crate::support::{app, app_with_layer, issuer};

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
    ] {
        let answer = app.send(request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.challenge.as_deref(), Some(REALM));
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/fhir+json")
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
    let app = app(|b| b.fhir_base_path("/fhir")).await;
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
    // Passed to the router, which has no OPTIONS route: 405, not 401.
    assert_eq!(
        app.send(preflight).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn metadata_can_be_protected() {
    let app = app(|b| b.protect_discovery_and_metadata()).await;
    let answer = app
        .send(app.http.get(format!("{}/fhir/metadata", app.url)))
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
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

#[tokio::test]
async fn misconfigured_layer_fails_closed_with_500() {
    let layer = SmartAuthLayer::new("not a url");
    assert!(layer.config_error().is_some());
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let app = app_with_layer(issuer, clock, layer).await;
    let token = app.issuer.token().sign();
    let answer = app.get_with_token(&token).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.challenge, None);
    assert_eq!(answer.issue_code(), "exception");
    // Public routes still pass (`SmartAuthLayer::new` makes the root ones public): to the
    // router, which serves no `/metadata`, instead of a 500 from the layer.
    let metadata = app
        .send(app.http.get(format!("{}/metadata", app.url)))
        .await;
    assert_eq!(metadata.status, StatusCode::NOT_FOUND);
}
