//! Handlers under test with `testing::ClaimsBuilder` and `testing::ClaimsLayer`: no issuer,
//! no token, the handler's own answers.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use smart_auth::scopes::Interaction;
use smart_auth::testing::{ClaimsBuilder, ClaimsLayer};
use smart_auth::{AuthError, FhirContext, SmartClaims};
use tower::ServiceExt as _;

use crate::support::echo_claims;

async fn body_json(response: http::Response<Body>) -> Value {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

#[tokio::test]
async fn handler_reads_builder_claims_through_claims_layer() {
    let claims = ClaimsBuilder::new()
        .sub("service-account")
        .client_id("backend-1")
        .scope("system/Patient.rs  system/Observation.rs")
        .patient("p-7")
        .encounter("e-9")
        .fhir_user("Practitioner/3")
        .tenant("t-1")
        .fhir_context(FhirContext::from_reference("Observation/5"))
        .claim("custom", json!({"nested": [1, 2]}))
        .exp(2_000_000_000)
        .iat(1_999_999_000)
        .jti("j-1")
        .build();
    let app = Router::new()
        .route("/fhir/Patient/{id}", get(echo_claims))
        .layer(ClaimsLayer::new(claims));
    let response = app
        .oneshot(
            Request::get("/fhir/Patient/1")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_json(response).await,
        json!({
            "iss": "https://issuer.test",
            "sub": "service-account",
            "client_id": "backend-1",
            "aud": ["https://fhir.test"],
            "exp": 2_000_000_000,
            "iat": 1_999_999_000,
            "jti": "j-1",
            "scopes": ["system/Patient.rs", "system/Observation.rs"],
            "patient": "p-7",
            "encounter": "e-9",
            "fhirUser": "Practitioner/3",
            "tenant": "t-1",
            "fhirContext": [{"reference": "Observation/5", "canonical": null, "type": null, "role": null}],
            "custom": {"nested": [1, 2]},
        })
    );
}

async fn read_observation(claims: SmartClaims) -> Result<String, AuthError> {
    claims.require(Interaction::Read, "Observation")?;
    Ok("observation".to_owned())
}

fn observation_app(claims: SmartClaims) -> Router {
    Router::new()
        .route("/fhir/Observation/{id}", get(read_observation))
        .layer(ClaimsLayer::new(claims))
}

fn get_observation() -> Request<Body> {
    Request::get("/fhir/Observation/1")
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn require_answers_403_for_builder_claims_lacking_the_scope() {
    let lacking = ClaimsBuilder::new()
        .scopes([
            "system/Patient.rs",
            "system/Observation.rs?category=laboratory",
        ])
        .build();
    let response = observation_app(lacking)
        .oneshot(get_observation())
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .expect("a challenge")
        .to_str()
        .expect("ASCII");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.ends_with("scope=\"system/Observation.r\""),
        "{challenge}"
    );

    let granted = ClaimsBuilder::new().scope("system/Observation.rs").build();
    let response = observation_app(granted)
        .oneshot(get_observation())
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get(header::WWW_AUTHENTICATE), None);
}

#[tokio::test]
async fn optional_extractor_sees_the_claims_too() {
    let app = Router::new()
        .route(
            "/who",
            get(|claims: Option<SmartClaims>| async move {
                claims
                    .and_then(|c| c.client_id().map(str::to_owned))
                    .unwrap_or_default()
            }),
        )
        .layer(ClaimsLayer::new(
            ClaimsBuilder::new().client_id("c-1").build(),
        ));
    let response = app
        .oneshot(Request::get("/who").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&bytes[..], b"c-1");
}
