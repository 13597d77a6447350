//! `GrpcRefusalsLayer`: turns the refusals of `SmartAuthLayer` into gRPC statuses.
//!
//! `SmartAuthLayer` is a plain tower layer, so it protects a tonic server as it protects an
//! axum router. Only its refusals need translating: it answers RFC 6750's HTTP 401/403 with
//! an `OperationOutcome` body, while a gRPC client reads the outcome of a call from
//! `grpc-status` (and `grpc-message`) on an HTTP 200 response. This layer sits outside the
//! auth layer, recognises a refusal by the `AuthError` the auth layer puts in the response
//! extensions, and answers a "trailers-only" gRPC error instead:
//!
//! | HTTP | gRPC status |
//! |---|---|
//! | 401 | `UNAUTHENTICATED` (16) |
//! | 403 | `PERMISSION_DENIED` (7) |
//! | 400 (`invalid_request`: malformed credentials) | `UNAUTHENTICATED` (16) |
//! | 503 | `UNAVAILABLE` (14) |
//! | other | `INTERNAL` (13) |
//!
//! The auth layer answers 400 only for credentials it cannot read (RFC 6750's
//! `invalid_request`: two tokens, `Bearer a b`, an empty token): for gRPC that is a call
//! without valid authentication, which a client answers by authenticating again.
//!
//! The challenge (`www-authenticate`) and `retry-after` are kept as response metadata, so a
//! client can read why it was refused and when to try again; `grpc-message` is the refusal's
//! short static description (never token contents). Every other response passes unchanged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use smart_auth::AuthError;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tower::{Layer, Service};

/// The error type of the response bodies tonic takes.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Layer that applies [`GrpcRefusals`]. Put it outside `SmartAuthLayer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcRefusalsLayer;

impl<S> Layer<S> for GrpcRefusalsLayer {
    type Service = GrpcRefusals<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcRefusals { inner }
    }
}

/// Answers the auth layer's refusals as gRPC statuses; see the module docs.
#[derive(Debug, Clone)]
pub struct GrpcRefusals<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcRefusals<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match response.extensions().get::<AuthError>() {
                Some(error) => grpc_refusal(response.status(), response.headers(), error),
                None => response.map(tonic::body::Body::new),
            })
        })
    }
}

/// The gRPC status code for the HTTP status of a refusal.
pub fn grpc_code(status: StatusCode) -> Code {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// A trailers-only gRPC error response for a refusal, with its challenge and `retry-after`
/// as metadata.
fn grpc_refusal(
    status: StatusCode,
    headers: &HeaderMap,
    error: &AuthError,
) -> Response<tonic::body::Body> {
    let mut metadata = HeaderMap::new();
    for name in [WWW_AUTHENTICATE, RETRY_AFTER] {
        if let Some(value) = headers.get(&name) {
            metadata.insert(name, value.clone());
        }
    }
    Status::with_metadata(
        grpc_code(status),
        error.to_string(),
        MetadataMap::from_headers(metadata),
    )
    .into_http()
}
