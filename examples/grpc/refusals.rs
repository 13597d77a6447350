//! `GrpcRefusalsLayer`: turns the refusals of `SmartAuthLayer` into gRPC statuses.
//!
//! `SmartAuthLayer` is a plain tower layer, so it protects a tonic server as it protects an
//! axum router. Only its refusals need translating: it answers RFC 6750's HTTP 401/403 with
//! an `OperationOutcome` body, while a gRPC client reads the outcome of a call from
//! `grpc-status` (and `grpc-message`) on an HTTP 200 response. This layer sits outside the
//! auth layer, recognises a refusal by the `AuthError` the auth layer puts in the response
//! extensions, and answers a "trailers-only" gRPC error instead, for gRPC calls only (a
//! request whose `content-type` is `application/grpc`, `+proto` and gRPC-Web's included):
//! a plain HTTP request's refusal passes unchanged, so a server that also serves REST
//! routes keeps their 401s. A gRPC-Web call's refusal carries its own content type.
//!
//! | refusal | gRPC status |
//! |---|---|
//! | 401 (`invalid_token`, or no token) | `UNAUTHENTICATED` (16) |
//! | 400 `invalid_request` for credentials the layer cannot read (`ErrorKind::InvalidRequest`: two tokens, `Bearer a b`) | `UNAUTHENTICATED` (16) |
//! | 400 `invalid_request` for a call scope enforcement cannot read (`ErrorKind::MalformedRequest`: a path with `..`) | `INVALID_ARGUMENT` (3) |
//! | 403 | `PERMISSION_DENIED` (7) |
//! | 503 | `UNAVAILABLE` (14) |
//! | other (500: no auth layer in front of a handler that needs one) | `INTERNAL` (13) |
//!
//! Credentials the layer cannot read are a call without valid authentication, which a
//! client answers by authenticating again; a call it cannot read is one no credentials
//! would let through, which a client must not retry as it is.
//!
//! The challenge (`www-authenticate`) and `retry-after` are kept as response metadata, so a
//! client can read why it was refused and when to try again; `grpc-message` is the refusal's
//! short static description (never token contents). Every other response passes unchanged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use smart_auth::{AuthError, ErrorKind};
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
        // A gRPC call's content type, answered in kind (gRPC-Web's is its own).
        let grpc = is_grpc(request.headers()).then(|| request.headers()[CONTENT_TYPE].clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match (response.extensions().get::<AuthError>(), grpc) {
                (Some(error), Some(content_type)) => {
                    let mut refusal = grpc_refusal(response.headers(), error);
                    if content_type.as_bytes()[16..].starts_with(b"-") {
                        refusal.headers_mut().insert(CONTENT_TYPE, content_type);
                    }
                    refusal
                }
                _ => response.map(tonic::body::Body::new),
            })
        })
    }
}

/// Whether a request is a gRPC call: its `content-type` is `application/grpc` or starts
/// with `application/grpc+` or `application/grpc-` (`+proto`, gRPC-Web), in any case.
fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let bytes = value.as_bytes();
    bytes
        .get(..16)
        .is_some_and(|start| start.eq_ignore_ascii_case(b"application/grpc"))
        && matches!(bytes.get(16), None | Some(b'+' | b'-' | b';'))
}

/// The gRPC status code for a refusal.
pub fn grpc_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::MalformedRequest => Code::InvalidArgument,
        kind => match kind.answer().status {
            StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST => Code::Unauthenticated,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            _ => Code::Internal,
        },
    }
}

/// A trailers-only gRPC error response for a refusal, with its challenge and `retry-after`
/// as metadata.
fn grpc_refusal(headers: &HeaderMap, error: &AuthError) -> Response<tonic::body::Body> {
    let mut metadata = HeaderMap::new();
    for name in [WWW_AUTHENTICATE, RETRY_AFTER] {
        if let Some(value) = headers.get(&name) {
            metadata.insert(name, value.clone());
        }
    }
    Status::with_metadata(
        grpc_code(error.kind()),
        error.to_string(),
        MetadataMap::from_headers(metadata),
    )
    .into_http()
}
