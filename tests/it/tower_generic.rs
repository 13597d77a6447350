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
