//! The server side of the load benchmark (`bash bench/load.sh` runs it; see
//! BENCHMARKS.md).
//!
//! Starts, in one process, on ephemeral `127.0.0.1` ports:
//!
//! - a [`TestIssuer`] (discovery and keys),
//! - the same hello handler five times: unprotected; behind a layer that only forwards
//!   (what wrapping the routes in any tower layer costs in axum); behind a
//!   `SmartAuthLayer` with the token cache (the default) added with `Router::layer`; the
//!   same around the whole router instead (`layer.layer(router)`, no per-route boxing);
//!   and behind one with `.no_token_cache()`,
//! - a `/stats` endpoint reporting how many tokens the cached layer holds.
//!
//! Then it prints one `NAME value` line per item and `READY`, and serves until killed:
//!
//! ```text
//! UNPROTECTED http://127.0.0.1:41234/fhir/Patient/1
//! FORWARDING http://127.0.0.1:41237/fhir/Patient/1
//! CACHED http://127.0.0.1:41235/fhir/Patient/1
//! AROUND http://127.0.0.1:41238/fhir/Patient/1
//! UNCACHED http://127.0.0.1:41236/fhir/Patient/1
//! STATS http://127.0.0.1:41234/stats
//! TOKEN eyJ...
//! READY
//! ```
//!
//! Options: `--tokens-file PATH --distinct-tokens N` also writes N distinct valid tokens,
//! one per line, for the distinct-token runs; `--alg NAME` picks the algorithm of the
//! reused token (default RS256), `--distinct-alg NAME` that of the distinct tokens
//! (default ES256). `LOAD_SERVER_THREADS` sets the runtime's worker threads (default 1).
//!
//! Built with the crate's `metrics` feature (`LOAD_SERVER_FEATURES=testing,metrics` for the
//! bench scripts), it installs a Prometheus recorder first, as an application would, and
//! `/stats` also renders the metrics.

use std::io::Write as _;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use smart_auth::testing::TestIssuer;
use smart_auth::{SigningAlgorithm, SmartAuthLayer};
use tower::Layer as _;

async fn hello() -> &'static str {
    "hello"
}

/// A service that only forwards to the one it wraps: the baseline for what any layer
/// costs, before it does any work of its own.
#[derive(Clone)]
struct Forward<S>(S);

impl<S: tower::Service<R>, R> tower::Service<R> for Forward<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.0.call(request)
    }
}

fn app() -> Router {
    Router::new().route("/fhir/Patient/{id}", get(hello))
}

async fn serve(router: Router) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("server stopped: {error}");
        }
    });
    Ok(format!("http://{address}"))
}

/// Serves `router` wrapped as a whole in `layer`.
async fn serve_wrapped(router: Router, layer: SmartAuthLayer) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let service = axum::ServiceExt::<Request>::into_make_service(layer.layer(router));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, service).await {
            eprintln!("server stopped: {error}");
        }
    });
    Ok(format!("http://{address}"))
}

struct Options {
    tokens_file: Option<String>,
    distinct_tokens: usize,
    alg: SigningAlgorithm,
    distinct_alg: SigningAlgorithm,
}

fn algorithm(name: &str) -> Result<SigningAlgorithm, String> {
    SigningAlgorithm::DEFAULT
        .iter()
        .copied()
        .find(|alg| alg.name() == name)
        .ok_or_else(|| format!("unknown algorithm {name}"))
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        tokens_file: None,
        distinct_tokens: 0,
        alg: SigningAlgorithm::RS256,
        distinct_alg: SigningAlgorithm::ES256,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tokens-file" => options.tokens_file = Some(value),
            "--distinct-tokens" => {
                options.distinct_tokens = value.parse().map_err(|_| "not a count".to_owned())?
            }
            "--alg" => options.alg = algorithm(&value)?,
            "--distinct-alg" => options.distinct_alg = algorithm(&value)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let threads = std::env::var("LOAD_SERVER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(run(options))
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "metrics")]
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let issuer = TestIssuer::start().await;
    let layer = |cache: bool| {
        let builder = SmartAuthLayer::builder(issuer.url()).audience(issuer.audience());
        if cache {
            builder.build()
        } else {
            builder.no_token_cache().build()
        }
    };
    let cached = layer(true)?;
    let around = layer(true)?;
    let uncached = layer(false)?;
    for layer in [&cached, &around, &uncached] {
        layer.warm_up().await?;
    }

    let lifetime = Duration::from_secs(3600);
    if let Some(path) = &options.tokens_file {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for _ in 0..options.distinct_tokens {
            let token = issuer
                .token()
                .alg(options.distinct_alg)
                .lifetime(lifetime)
                .sign();
            writeln!(file, "{token}")?;
        }
        file.flush()?;
    }
    let token = issuer.token().alg(options.alg).lifetime(lifetime).sign();

    let stats_layer = cached.clone();
    let stats = get(move || {
        let cached_tokens = stats_layer
            .issuers()
            .iter()
            .map(|verifier| verifier.cached_tokens())
            .sum::<u64>();
        #[allow(unused_mut)]
        let mut text = format!("cached_tokens {cached_tokens}\n");
        #[cfg(feature = "metrics")]
        text.push_str(&prometheus.render());
        async move { text }
    });
    let unprotected = serve(app().route("/stats", stats)).await?;
    let forwarding = serve(app().layer(tower::layer::layer_fn(Forward))).await?;
    let with_cache = serve(app().layer(cached)).await?;
    let around_router = serve_wrapped(app(), around).await?;
    let without_cache = serve(app().layer(uncached)).await?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "UNPROTECTED {unprotected}/fhir/Patient/1")?;
    writeln!(out, "FORWARDING {forwarding}/fhir/Patient/1")?;
    writeln!(out, "CACHED {with_cache}/fhir/Patient/1")?;
    writeln!(out, "AROUND {around_router}/fhir/Patient/1")?;
    writeln!(out, "UNCACHED {without_cache}/fhir/Patient/1")?;
    writeln!(out, "STATS {unprotected}/stats")?;
    writeln!(out, "TOKEN {token}")?;
    writeln!(out, "READY")?;
    out.flush()?;
    drop(out);
    // Serve until the benchmark script kills the process.
    std::future::pending::<()>().await;
    Ok(())
}
