//! The development server's time limit per request, its body read included.

use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::oauth::OAuthError;

/// How long one request may take from its headers on, its body read included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Middleware: a request not answered within [`REQUEST_TIMEOUT`] (a body sent a byte at a
/// time) gets 408 and its connection is closed.
pub(crate) async fn limit_request_time(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = OAuthError::request_timeout().into_response();
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}
