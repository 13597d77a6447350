//! `SmartAuthLayer` in front of a tonic gRPC service, over real HTTP/2 on 127.0.0.1: a valid
//! token reaches the service; refusals arrive as the gRPC statuses clients expect, with the
//! challenge in the metadata. The adapter under test is the one of `examples/grpc`.

#[path = "../examples/grpc/refusals.rs"]
mod refusals;

use std::net::SocketAddr;

use http::StatusCode;
use refusals::{GrpcRefusalsLayer, grpc_code};
use smart_auth::testing::TestIssuer;
use smart_auth::{Refusal, SmartAuthLayer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::util::MapResponseLayer;

const HEALTH_SCOPE: &str = "system/health.read";

/// The health service behind the auth layer (which requires [`HEALTH_SCOPE`]) and the
/// refusal adapter, served on 127.0.0.1:0; a client connected to it over HTTP/2.
async fn protected_health(issuer: &TestIssuer) -> HealthClient<Channel> {
    client(serve_protected_health(issuer).await).await
}

/// The server of [`protected_health`]; its address.
async fn serve_protected_health(issuer: &TestIssuer) -> SocketAddr {
    let auth = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .validate(|claims| {
            if claims.scopes().iter().any(|scope| scope == HEALTH_SCOPE) {
                Ok(())
            } else {
                Err(Refusal::insufficient_scope(HEALTH_SCOPE))
            }
        })
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("smart", ServingStatus::NotServing)
        .await;
    tokio::spawn(
        Server::builder()
            .layer(GrpcRefusalsLayer)
            .layer(auth)
            .layer(MapResponseLayer::new(
                |response: http::Response<tonic::body::Body>| response.map(axum::body::Body::new),
            ))
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    address
}

async fn client(address: SocketAddr) -> HealthClient<Channel> {
    HealthClient::new(channel(address).await)
}

/// An HTTP/2 channel to `address`, for raw requests too.
async fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A `Check` of `service` with `authorization` as its metadata, if any.
fn check(service: &str, authorization: Option<String>) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    request
}

/// The `www-authenticate` metadata of a refused call.
fn challenge(status: &tonic::Status) -> &str {
    status
        .metadata()
        .get("www-authenticate")
        .expect("a challenge in the metadata")
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_valid_token_reaches_the_service() {
    let issuer = TestIssuer::start().await;
    let mut client = protected_health(&issuer).await;
    let token = issuer.token().scope(HEALTH_SCOPE).sign();

    let serving = client
        .check(check("", Some(format!("Bearer {token}"))))
        .await
        .unwrap();
    assert_eq!(serving.into_inner().status(), WireStatus::Serving);

    // The service's own answers pass through unchanged, errors included.
    let not_serving = client
        .check(check("smart", Some(format!("Bearer {token}"))))
        .await
        .unwrap();
    assert_eq!(not_serving.into_inner().status(), WireStatus::NotServing);
    let unknown = client
        .check(check("nope", Some(format!("Bearer {token}"))))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.metadata().get("www-authenticate").is_none());
}

#[tokio::test]
async fn a_missing_token_is_unauthenticated_with_the_challenge_in_the_metadata() {
    let issuer = TestIssuer::start().await;
    let mut client = protected_health(&issuer).await;

    let status = client.check(check("", None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // RFC 6750 section 3.1: no error code when the request had no token at all.
    assert_eq!(
        challenge(&status),
        format!(r#"Bearer realm="{}""#, issuer.audience()),
        "{status:?}"
    );
    assert!(!status.message().is_empty());
    assert_eq!(issuer.jwks_fetches(), 0);
}

#[tokio::test]
async fn a_bad_token_is_unauthenticated_with_invalid_token() {
    let issuer = TestIssuer::start().await;
    let mut client = protected_health(&issuer).await;
    let expired = issuer
        .token()
        .scope(HEALTH_SCOPE)
        .expires_in_secs(-3600)
        .sign();

    for (authorization, description) in [
        (
            "Bearer not.a.token".to_owned(),
            "the access token is malformed",
        ),
        (format!("Bearer {expired}"), "the access token has expired"),
    ] {
        let status = client
            .check(check("", Some(authorization.clone())))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{authorization}");
        assert_eq!(
            challenge(&status),
            format!(
                r#"Bearer realm="{}", error="invalid_token", error_description="{description}""#,
                issuer.audience()
            ),
            "{status:?}"
        );
        let token = authorization.trim_start_matches("Bearer ");
        assert!(!status.message().contains(token));
        assert!(!challenge(&status).contains(token));
    }
}

/// Credentials the layer cannot read (HTTP 400 `invalid_request`) are a call without valid
/// authentication for gRPC: `UNAUTHENTICATED`, with the challenge naming the error.
#[tokio::test]
async fn malformed_credentials_are_unauthenticated_with_invalid_request() {
    let issuer = TestIssuer::start().await;
    let mut client = protected_health(&issuer).await;
    for authorization in ["Bearer a b", "Bearer ", "Basic eA==, Bearer abc"] {
        let status = client
            .check(check("", Some(authorization.to_owned())))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{authorization}");
        assert_eq!(
            challenge(&status),
            format!(
                r#"Bearer realm="{}", error="invalid_request", error_description="malformed or repeated credentials""#,
                issuer.audience()
            ),
            "{authorization}: {status:?}"
        );
    }
}

#[tokio::test]
async fn a_token_without_the_scope_is_permission_denied() {
    let issuer = TestIssuer::start().await;
    let mut client = protected_health(&issuer).await;
    let token = issuer.token().scope("system/Patient.rs").sign();

    let status = client
        .check(check("", Some(format!("Bearer {token}"))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        challenge(&status),
        format!(
            r#"Bearer realm="{}", error="insufficient_scope", error_description="the token's scopes do not allow this request", scope="{HEALTH_SCOPE}""#,
            issuer.audience()
        ),
        "{status:?}"
    );
}

#[test]
fn refusals_map_to_grpc_codes() {
    use smart_auth::ErrorKind;
    for (kind, grpc) in [
        (ErrorKind::MissingToken, Code::Unauthenticated),
        (ErrorKind::Expired, Code::Unauthenticated),
        (ErrorKind::InvalidSignature, Code::Unauthenticated),
        (ErrorKind::InvalidRequest, Code::Unauthenticated),
        (ErrorKind::MalformedRequest, Code::InvalidArgument),
        (ErrorKind::InsufficientScope, Code::PermissionDenied),
        (ErrorKind::KeysUnavailable, Code::Unavailable),
        (ErrorKind::IntrospectionUnavailable, Code::Unavailable),
        (ErrorKind::LayerMissing, Code::Internal),
    ] {
        assert_eq!(grpc_code(kind), grpc, "{kind:?}");
    }
}

/// tonic routes by path whatever the method: a request dressed as a CORS preflight
/// (`OPTIONS` with `Origin` and `Access-Control-Request-Method`, no token) must not reach
/// the service. It is refused like any request without a token; being no gRPC call (no
/// gRPC content type), its refusal stays the plain HTTP 401.
#[tokio::test]
async fn a_preflight_shaped_request_does_not_reach_the_service() {
    use tower::{Service as _, ServiceExt as _};

    let issuer = TestIssuer::start().await;
    let address = serve_protected_health(&issuer).await;
    let mut channel = channel(address).await;
    let request = http::Request::builder()
        .method("OPTIONS")
        .uri(format!("http://{address}/grpc.health.v1.Health/Check"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(tonic::body::Body::empty())
        .unwrap();
    let response = channel.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("grpc-status").is_none());
    assert_eq!(
        response.headers()["www-authenticate"],
        format!("Bearer realm=\"{}\"", issuer.audience()).as_str()
    );
}

/// The adapter answers in gRPC's terms only for gRPC calls (`application/grpc`, its
/// `+proto` and gRPC-Web forms, in any case): a plain HTTP request's refusal stays the
/// HTTP 401 with its challenge, never an HTTP 200 a REST client would take for success.
#[tokio::test]
async fn only_grpc_calls_get_grpc_refusals() {
    use tower::{Service as _, ServiceExt as _};

    let issuer = TestIssuer::start().await;
    let address = serve_protected_health(&issuer).await;
    let mut channel = channel(address).await;
    for (content_type, grpc) in [
        (Some("application/grpc"), true),
        (Some("application/grpc+proto"), true),
        (Some("Application/GRPC-Web+proto"), true),
        (Some("application/grpc-web-text"), true),
        (Some("application/grpc; charset=utf-8"), true),
        (Some("application/grpcx"), false),
        (Some("application/json"), false),
        (None, false),
    ] {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{address}/grpc.health.v1.Health/Check"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(tonic::body::Body::empty()).unwrap();
        let response = channel.ready().await.unwrap().call(request).await.unwrap();
        if grpc {
            assert_eq!(response.status(), StatusCode::OK, "{content_type:?}");
            assert_eq!(
                response.headers()["grpc-status"],
                (Code::Unauthenticated as i32).to_string().as_str(),
                "{content_type:?}"
            );
            // gRPC-Web answers in its own content type.
            let expected = match content_type {
                Some(web) if web.to_ascii_lowercase().starts_with("application/grpc-web") => web,
                _ => "application/grpc",
            };
            assert_eq!(
                response.headers()["content-type"],
                expected,
                "{content_type:?}"
            );
        } else {
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{content_type:?}"
            );
            assert!(
                response.headers().get("grpc-status").is_none(),
                "{content_type:?}"
            );
        }
    }
}
