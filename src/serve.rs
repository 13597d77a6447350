//! Serving a router on a listener with bounded connections and bounded time: the
//! development server, the test kit's issuer and the servers of a local demo.
//!
//! `axum::serve` sets no timer on hyper, so a client could hold a connection forever by
//! sending its headers a byte at a time, or by sending requests and never reading the
//! answers; with enough of them the process runs out of file descriptors and the test kits
//! using the server are no longer served. And it spawns each connection as a task of its
//! own, which outlives the serving future: a server "stopped" by dropping it still
//! answers on the connections its clients keep alive. Here each connection is a task of a
//! set the serving future owns (dropping the future aborts them all), at most
//! [`MAX_CONNECTIONS`] are served at once (the others wait in the listener's queue), a
//! request's headers must arrive within [`HEADER_READ_TIMEOUT`], and a peer that takes no
//! byte of its answers for [`WRITE_STALL_TIMEOUT`] loses the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Sleep;

/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's headers, or stay idle between requests
/// on a kept-alive connection.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a peer may leave the answers it is sent unread (hyper's header timer only runs
/// while a request is read, so it does not see a peer that sends requests and never reads).
pub(crate) const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds one server is served with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) connections: usize,
    /// Hyper's header read timeout; `None` for none.
    pub(crate) header_read: Option<Duration>,
    /// How long a write may wait for the peer to take a byte.
    pub(crate) write_stall: Duration,
}

impl Limits {
    /// The development server's bounds, and [`serve_with_limits`]'.
    pub(crate) const SERVER: Limits = Limits {
        connections: MAX_CONNECTIONS,
        header_read: Some(HEADER_READ_TIMEOUT),
        write_stall: WRITE_STALL_TIMEOUT,
    };

    /// The test kit's issuer: no idle limit, so that a test moving tokio's paused clock by
    /// hours keeps the connections its verifier pooled, and (as idle connections then hold
    /// their slots) no practical bound on connections, as with `axum::serve` before.
    #[cfg(feature = "testing")]
    pub(crate) const TEST_ISSUER: Limits = Limits {
        connections: Semaphore::MAX_PERMITS,
        header_read: None,
        ..Limits::SERVER
    };
}

/// Serves `router` on `listener` over HTTP/1.1 until the future is dropped, with the
/// development server's bounds: at most 256 connections at once (the others wait in the
/// listener's queue), 10 s to send a request's headers or between requests on a kept
/// connection, 30 s for a peer to take any byte of its answers. Dropping the future (or
/// aborting its task) closes every connection it serves, kept-alive ones included. The
/// time a request's body may take is the router's to bound (a timeout middleware); the
/// development server's own router answers 408 after 30 s. For the demo's API and other
/// servers of a local test setup.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
/// tokio::spawn(smart_auth::dev_server::serve_with_limits(listener, app));
/// # Ok(()) }
/// ```
#[cfg(feature = "dev-server")]
pub async fn serve_with_limits(listener: TcpListener, router: Router) {
    serve(listener, router, Limits::SERVER).await;
}

/// [`serve_with_limits`] with the given bounds.
pub(crate) async fn serve(listener: TcpListener, router: Router, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    // Dropped with this future: every connection task is aborted with it.
    let mut connections = JoinSet::new();
    loop {
        // Finished connections leave the set here, so that it holds at most the
        // connections served at once and those finished since the last accept.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // wait a moment rather than spin (axum::serve does the same).
                tracing::debug!(%error, "a server of the crate could not accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read);
            let io = StallBounded::new(stream, limits.write_stall);
            // A failed or timed-out connection has nothing to report to anyone.
            let _ = builder.serve_connection(io, service).await;
            drop(slot);
        });
    }
}

/// A connection whose writes fail with [`io::ErrorKind::TimedOut`] once the peer has taken
/// no byte for the given time.
struct StallBounded {
    io: TokioIo<TcpStream>,
    limit: Duration,
    /// Armed when a write or flush waits for the peer, disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallBounded {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        StallBounded {
            io: TokioIo::new(stream),
            limit,
            stalled: None,
        }
    }

    /// What a write or flush returned, with the stall timer kept: started when it waits,
    /// stopped when it does not, and a timeout once it has waited too long.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer took none of its answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Read for StallBounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for StallBounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.bounded(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.bounded(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.bounded(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.bounded(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::{Limits, serve};

    /// A router answering `ok`, or 64 KiB at `/big`.
    fn router() -> Router {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/big", get(|| async { vec![b'x'; 64 * 1024] }))
    }

    async fn start(limits: Limits) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        (address, tokio::spawn(serve(listener, router(), limits)))
    }

    /// What the server sends until it closes the connection (a reset counts as a close),
    /// within `bound` so that a server that never closes fails the test instead of hanging
    /// it (on tokio's clock: paused in one test, real in the other).
    async fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> String {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(bound, stream.read_to_end(&mut answer));
        let _ = read.await.expect("the server closed the connection");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Dropping the serving future (aborting its task, as dropping a `DevAuthServer` or a
    /// `TestIssuer` does) closes a connection its client keeps alive: that connection
    /// answers no more requests.
    #[tokio::test]
    async fn dropping_the_server_closes_its_kept_alive_connections() {
        let (address, server) = start(Limits::SERVER).await;
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let request = format!("GET / HTTP/1.1\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\nok") {
            let mut chunk = [0; 1024];
            let read = stream.read(&mut chunk).await.unwrap();
            assert_ne!(read, 0, "closed before the first answer");
            answer.extend_from_slice(&chunk[..read]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
        server.abort();
        assert!(server.await.unwrap_err().is_cancelled());
        // The kept-alive connection is closed, and the request sent on it unanswered.
        let _ = stream.write_all(request.as_bytes()).await;
        // Closed at once; 10 s of real time is only the bound of a failing run.
        let closed = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        assert_eq!(closed, "");
    }

    /// A peer that sends requests and reads none of the answers holds its connection until
    /// its stalled write times out, not forever: with one connection slot, a second client
    /// is served once the first one's write has waited the stall limit. Time is paused and
    /// advanced by tokio while every task waits, so nothing here waits for real.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_no_answer_loses_its_connection() {
        let limits = Limits {
            connections: 1,
            ..Limits::SERVER
        };
        let (address, _server) = start(limits).await;
        let mut stalled = TcpStream::connect(&address).await.unwrap();
        // Far more answers than the two sockets' buffers hold (64 KiB each).
        let requests = format!("GET /big HTTP/1.1\r\nHost: {address}\r\n\r\n").repeat(2000);
        let started = tokio::time::Instant::now();
        // Either every request fits in the buffers or the write stalls too: both leave the
        // server unable to write its answers.
        let write = stalled.write_all(requests.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
        let mut second = TcpStream::connect(&address).await.unwrap();
        let request = format!("GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        second.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut second, Duration::from_secs(3600)).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
        let waited = started.elapsed();
        assert!(
            waited >= super::WRITE_STALL_TIMEOUT && waited <= super::WRITE_STALL_TIMEOUT * 2,
            "served after {waited:?}"
        );
    }
}
