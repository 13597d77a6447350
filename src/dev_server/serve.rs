//! Serving the development server's router: bounded connections and bounded time.
//!
//! `axum::serve` sets no timer on hyper, so a client could hold a connection forever by
//! sending its headers (or its body) a byte at a time; with enough of them the process
//! runs out of file descriptors and the test kits using the server are no longer served.
//! Here each connection gets hyper's header read timeout, each request a time limit that
//! covers reading its body, and at most [`MAX_CONNECTIONS`] are served at once (the others
//! wait in the listener's queue).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::oauth::OAuthError;

/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's headers, or stay idle between requests
/// on a kept-alive connection.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take from its headers on, its body read included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` over HTTP/1.1 until the future is dropped, with the
/// development server's bounds: at most 256 connections at once (the others wait in the
/// listener's queue) and 10 s to send a request's headers or between requests on a kept
/// connection. `axum::serve` sets neither, so a client sending its headers a byte at a
/// time holds a connection forever. The time a request's body may take is the router's to
/// bound (a timeout middleware); the development server's own router answers 408 after
/// 30 s. For the demo's API and other servers of a local test setup.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
/// tokio::spawn(smart_auth::dev_server::serve_with_limits(listener, app));
/// # Ok(()) }
/// ```
pub async fn serve_with_limits(listener: TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // wait a moment rather than spin (axum::serve does the same).
                tracing::debug!(%error, "the development server could not accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // A failed or timed-out connection has nothing to report to anyone.
            let _ = connection.await;
            drop(slot);
        });
    }
}

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
