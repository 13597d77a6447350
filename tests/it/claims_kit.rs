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

/// `ClaimsLayer::enforce_scopes` answers every request as the real layer with the same
/// scopes and enforcement does: the same status, and the same challenge up to the realm.
#[tokio::test]
async fn claims_layer_enforcement_answers_as_the_layer_does() {
    use smart_auth::testing::TestIssuer;
    use smart_auth::{ManualClock, ScopeEnforcement, SmartAuthLayer};

    let scopes = "system/Patient.rs system/Observation.c patient/Encounter.r";
    let router = || {
        Router::new()
            .route(
                "/fhir/{type}",
                get(|| async { "type" }).post(|| async { "created" }),
            )
            .route(
                "/fhir/{type}/{id}",
                get(|| async { "instance" }).delete(|| async { "gone" }),
            )
    };
    let offline = router().layer(
        ClaimsLayer::new(ClaimsBuilder::new().scope(scopes).patient("7").build())
            .enforce_scopes(ScopeEnforcement::new(), "/fhir"),
    );
    let clock = ManualClock::new();
    let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .fhir_base(issuer.audience())
        .served_at_path("/fhir")
        .clock(clock)
        .realm("fhir")
        .enforce_scopes(ScopeEnforcement::new())
        .build()
        .unwrap();
    let online = router().layer(layer);
    let token = issuer.token().scope(scopes).claim("patient", "7").sign();

    let requests = [
        ("GET", "/fhir/Patient/1"),
        ("GET", "/fhir/Patient?name=x"),
        ("DELETE", "/fhir/Patient/1"),
        ("POST", "/fhir/Observation"),
        ("GET", "/fhir/Observation/1"),
        ("GET", "/fhir/Encounter/1"),
        // `.r` is read only: no search, whatever the patient.
        ("GET", "/fhir/Encounter?patient=7"),
        ("GET", "/fhir/Encounter?patient=8"),
        ("GET", "/fhir/%50atient/1"),
        ("GET", "/fhir//Patient/1"),
        ("GET", "/other/Patient/1"),
    ];
    let mut statuses = Vec::new();
    for (method, path) in requests {
        let request = || {
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap()
        };
        let expected = online
            .clone()
            .oneshot({
                let mut request = request();
                request.headers_mut().insert(
                    header::AUTHORIZATION,
                    format!("Bearer {token}").parse().unwrap(),
                );
                request
            })
            .await
            .unwrap();
        let got = offline.clone().oneshot(request()).await.unwrap();
        assert_eq!(got.status(), expected.status(), "{method} {path}");
        statuses.push(got.status().as_u16());
        assert_eq!(
            got.headers().get(header::WWW_AUTHENTICATE),
            expected.headers().get(header::WWW_AUTHENTICATE),
            "{method} {path}"
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 403, 200, 403, 200, 403, 403, 200, 400, 403],
        "both answers occur"
    );
    // Bodies without a length (as HTTP/2 sends them): read from the body itself by both.
    for (method, path, content_type, body, status) in [
        (
            "GET",
            "/fhir/Patient?name=x",
            Some("application/x-www-form-urlencoded"),
            "name=y",
            400,
        ),
        ("POST", "/fhir/Observation", None, "_method=DELETE", 403),
        ("POST", "/fhir/Observation", None, "", 200),
    ] {
        let request = |authorized: bool| {
            let mut request = Request::builder().method(method).uri(path);
            if let Some(content_type) = content_type {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            if authorized {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            request.body(Body::from(body)).unwrap()
        };
        let expected = online.clone().oneshot(request(true)).await.unwrap();
        let got = offline.clone().oneshot(request(false)).await.unwrap();
        assert_eq!(
            expected.status().as_u16(),
            status,
            "{method} {path} {body:?}"
        );
        assert_eq!(got.status(), expected.status(), "{method} {path} {body:?}");
    }
}

/// `ClaimsLayer` refuses, as `SmartAuthBuilder::build` does, an enforcement setting that
/// cannot be one: a test never passes with a configuration the layer would not build.
#[test]
#[should_panic(expected = "handler_checks_paging_links")]
fn claims_layer_refuses_settings_the_layer_refuses() {
    let _ = ClaimsLayer::new(ClaimsBuilder::new().build()).enforce_scopes(
        smart_auth::ScopeEnforcement::new().handler_checks_paging_links("_id"),
        "/fhir",
    );
}

/// `require_access` tells a handler every limit of a grant: the patient compartment of
/// `patient/` scopes, the filters of granular ones; `user/` and `system/` grants of the
/// whole type lift both.
#[test]
fn require_access_names_the_patient_compartment_and_the_filters() {
    use smart_auth::scopes::SearchConstraints;
    let lab =
        || SearchConstraints::AnyOf(vec![vec![("category".to_owned(), "laboratory".to_owned())]]);
    type Expected<'a> = Option<(SearchConstraints, Option<&'a str>)>;
    let rows: Vec<(&str, Option<&str>, Expected<'_>)> = vec![
        (
            "patient/Observation.rs",
            Some("123"),
            Some((SearchConstraints::Unconstrained, Some("123"))),
        ),
        (
            "patient/*.rs",
            Some("123"),
            Some((SearchConstraints::Unconstrained, Some("123"))),
        ),
        (
            "patient/Observation.rs?category=laboratory",
            Some("123"),
            Some((lab(), Some("123"))),
        ),
        // No patient in context: patient/ scopes grant nothing.
        ("patient/Observation.rs", None, None),
        (
            "user/Observation.rs",
            Some("123"),
            Some((SearchConstraints::Unconstrained, None)),
        ),
        (
            "system/Observation.read",
            None,
            Some((SearchConstraints::Unconstrained, None)),
        ),
        (
            "system/Observation.rs?category=laboratory",
            None,
            Some((lab(), None)),
        ),
        // A whole-type user/ or system/ grant lifts the compartment.
        (
            "patient/Observation.rs system/Observation.rs",
            Some("123"),
            Some((SearchConstraints::Unconstrained, None)),
        ),
        // Both kinds grant part: the patient/ part, never wider than the union.
        (
            "patient/Observation.rs user/Observation.rs?category=laboratory",
            Some("123"),
            Some((SearchConstraints::Unconstrained, Some("123"))),
        ),
        ("system/Patient.rs", None, None),
        ("patient/Observation.cud", Some("123"), None),
    ];
    for (scope, patient, expected) in rows {
        let mut claims = ClaimsBuilder::new().scope(scope);
        if let Some(patient) = patient {
            claims = claims.patient(patient);
        }
        let claims = claims.build();
        let access = claims.require_access(Interaction::Read, "Observation");
        match expected {
            Some((constraints, compartment)) => {
                let access = access.unwrap_or_else(|error| panic!("{scope}: {error}"));
                assert_eq!(access.constraints(), &constraints, "{scope}");
                assert_eq!(access.patient_compartment(), compartment, "{scope}");
                assert_eq!(
                    access.is_unlimited_by_scopes(),
                    constraints.is_unconstrained() && compartment.is_none(),
                    "{scope}"
                );
            }
            None => {
                let error = access.unwrap_err();
                assert_eq!(
                    error.kind(),
                    smart_auth::ErrorKind::InsufficientScope,
                    "{scope}"
                );
            }
        }
    }
}

/// On the layer's public routes (the capability statement and the SMART configuration,
/// under the enforcement base, else at the root) handlers get no claims through the test
/// kit either, as behind the layer; every other route gets them.
#[tokio::test]
async fn claims_layer_keeps_public_routes_anonymous() {
    let claims = ClaimsBuilder::new().scope("system/*.rs").build();
    let seen = |layer: ClaimsLayer| {
        Router::new()
            .fallback(|claims: Option<SmartClaims>| async move { claims.is_some().to_string() })
            .layer(layer)
    };
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let at_fhir = || {
        ClaimsLayer::new(claims.clone())
            .enforce_scopes(smart_auth::ScopeEnforcement::new(), "/fhir")
    };
    let cases = [
        (ClaimsLayer::new(claims.clone()), "/metadata", "false"),
        (
            ClaimsLayer::new(claims.clone()),
            "/.well-known/smart-configuration",
            "false",
        ),
        (ClaimsLayer::new(claims.clone()), "/Patient/1", "true"),
        (at_fhir(), "/fhir/metadata", "false"),
        (at_fhir(), "/fhir/.well-known/smart-configuration", "false"),
        (at_fhir(), "/fhir/Patient/1", "true"),
        // Another spelling is no public route.
        (at_fhir(), "/fhir/%6Detadata", "true"),
    ];
    for (layer, path, expected) in cases {
        let response = seen(layer).oneshot(get(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expected, "{path}");
    }
}
