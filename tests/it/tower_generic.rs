//! The layer around a plain tower service with a non-axum body type.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use smart_auth::{AuthError, ErrorKind, ManualClock, SmartAuthLayer, SmartClaims};
use tower::{Service as _, ServiceBuilder, ServiceExt as _};

use crate::support::issuer;

async fn handler(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let client = request
        .extensions()
        .get::<SmartClaims>()
        .and_then(|c| c.client_id().map(str::to_owned));
    Ok(Response::new(Full::new(Bytes::from(
        client.unwrap_or_default(),
    ))))
}

#[tokio::test]
async fn works_around_any_service_and_body() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service_fn(handler);

    let token = issuer.token().sign();
    let request = Request::get("/fhir/Patient/1")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes(),
        "test-client"
    );

    // Refusals carry the typed error for outer layers.
    let request = Request::get("/fhir/Patient/1")
        .body(Full::default())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response
            .extensions()
            .get::<AuthError>()
            .map(AuthError::kind),
        Some(ErrorKind::MissingToken)
    );
}

#[tokio::test]
async fn poll_ready_delegates_and_the_ready_service_is_called() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .build()
        .unwrap();
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<Full<Bytes>>, Response<Full<Bytes>>>();
    let mut service = tower::Layer::layer(&layer, mock);

    handle.allow(0);
    assert!(
        futures_util::poll!(std::pin::pin!(service.ready())).is_pending(),
        "not ready while inner is not"
    );
    handle.allow(1);
    let token = issuer.token().sign();
    let request = Request::get("/fhir/Patient/1")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let call = tokio::spawn(service.ready().await.unwrap().call(request));
    let (received, respond) = handle.next_request().await.unwrap();
    assert!(received.extensions().get::<SmartClaims>().is_some());
    respond.send_response(Response::new(Full::default()));
    assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// RFC 9110 section 9.3.2: refusals to `HEAD` have no body, also where no router drops it
/// (the layer around a whole service, served over HTTP/2, where a body fails the client's
/// stream): the layer's own refusals, before and after verification, and a refusal raised
/// behind the layer that the layer rebuilds with its refusal body. The headers stay.
#[tokio::test]
async fn refusals_to_head_have_no_body() {
    use axum::response::IntoResponse as _;
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .refusal_body(|error| {
            smart_auth::RefusalBody::json(
                &serde_json::json!({"kind": format!("{:?}", error.kind())}),
            )
        })
        .clock(clock)
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service_fn(
        |request: Request<axum::body::Body>| async move {
            let response = if request.uri().path() == "/refuse" {
                AuthError::insufficient_scope("system/Observation.rs").into_response()
            } else {
                "ok".into_response()
            };
            Ok::<_, Infallible>(response)
        },
    );
    let token = issuer.token().sign();
    let rows: [(&str, Option<String>, StatusCode); 4] = [
        ("/fhir/Patient/1", None, StatusCode::UNAUTHORIZED),
        (
            "/fhir/Patient/1",
            Some("Bearer a\"b".into()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/fhir/Patient/1",
            Some("Bearer not-a-jwt".into()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/refuse",
            Some(format!("Bearer {token}")),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (path, authorization, status) in rows {
        let mut get_length = None;
        for method in [http::Method::GET, http::Method::HEAD] {
            let mut request = Request::builder().method(method.clone()).uri(path);
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            let request = request.body(axum::body::Body::empty()).unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            let context = format!("{method} {path} {authorization:?}");
            assert_eq!(response.status(), status, "{context}");
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{context}"
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "{context}"
            );
            // `HEAD` gets the length `GET` gets (RFC 9110 section 8.6), without the body.
            let length = response.headers()["content-length"].clone();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(body.is_empty(), method == http::Method::HEAD, "{context}");
            match get_length.take() {
                None => {
                    assert_eq!(length, body.len().to_string().as_str(), "{context}");
                    get_length = Some(length);
                }
                Some(get_length) => assert_eq!(length, get_length, "{context}"),
            }
        }
    }
}

/// Under scope enforcement the body itself says whether a form follows, not only its
/// headers: an HTTP/2 request needs no `Content-Length`. A `GET` whose form body a Rack
/// server would merge over the checked query, and a `POST` without a type whose body Rack
/// reads as a form, are refused however they announce the body; without a body they pass.
#[tokio::test]
async fn bodies_without_a_length_are_seen() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .served_at_path("/fhir")
        .enforce_scopes(smart_auth::ScopeEnforcement::new())
        .clock(clock)
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service_fn(handler);
    let token = issuer
        .token()
        .scope("patient/Observation.crs")
        .claim("patient", "123")
        .sign();
    let rows: [(&str, &str, Option<&str>, &'static str, StatusCode); 4] = [
        (
            "GET",
            "/fhir/Observation?patient=123",
            Some("application/x-www-form-urlencoded"),
            "patient=456",
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/fhir/Observation?patient=123",
            Some("application/x-www-form-urlencoded"),
            "",
            StatusCode::OK,
        ),
        (
            "POST",
            "/fhir/Observation",
            None,
            "_method=DELETE",
            StatusCode::FORBIDDEN,
        ),
        ("POST", "/fhir/Observation", None, "", StatusCode::OK),
    ];
    for (method, path, content_type, body, status) in rows {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        // No `Content-Length` or `Transfer-Encoding`: only the body tells.
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), status, "{method} {path} {body:?}");
    }
}
