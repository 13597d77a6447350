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
//! - two comparison servers for issue 16, the same handler behind: jwt-authorizer 0.15's
//!   layer (configured by OpenID discovery from the test issuer, like ours, checking
//!   `iss` and `aud`; `JWT_AUTHORIZER`), and behind a minimal middleware that runs one
//!   bare `jsonwebtoken::decode` per request with a `DecodingKey` built once, checking
//!   `iss`, `aud` and `exp` (`BARE_JWT`: the floor of "a JWT library per request"). Both
//!   are added with `Router::layer`, as `CACHED` and `UNCACHED` are, and neither caches.
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
//! JWT_AUTHORIZER http://127.0.0.1:41239/fhir/Patient/1
//! BARE_JWT http://127.0.0.1:41240/fhir/Patient/1
//! STATS http://127.0.0.1:41234/stats
//! TOKEN eyJ...
//! READY
//! ```
//!
//! Options: `--tokens-file PATH --distinct-tokens N` also writes N distinct valid tokens,
//! one per line, for the distinct-token runs (minted on as many threads as the process
//! may run on, before `READY`); `--alg NAME` picks the algorithm of the reused token
//! (default RS256), `--distinct-alg NAME` that of the distinct tokens (default ES256) and
//! of `BARE_JWT`'s one key. `LOAD_SERVER_THREADS` sets the runtime's worker threads
//! (default 1).
//!
//! Built with the crate's `metrics` feature (`LOAD_SERVER_FEATURES=testing,metrics` for the
//! bench scripts), it installs a Prometheus recorder first, as an application would, and
//! `/stats` also renders the metrics.
//!
//! jwt-authorizer 0.15 is built on axum 0.7: its layer is a plain tower layer, but it
//! answers refusals with axum 0.7's response type, so here it sits between two
//! conversions of the response body (axum 0.8's `Body` into axum-core 0.4's and back),
//! one boxed body each per request: tens of nanoseconds next to a signature check. It
//! verifies with jsonwebtoken 9, that is with `ring`, not aws-lc.

use std::io::Write as _;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use futures_util::future::{Either, Ready, ready};
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

/// The claims `BARE_JWT` hands to the handler (`jsonwebtoken` reads `iss`, `aud` and
/// `exp` for its validation on its own).
#[derive(Clone, serde::Deserialize)]
#[allow(dead_code)] // Put into the request for a handler; this one does not read them.
struct BareClaims {
    sub: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
}

/// A middleware that does what an application using a JWT library directly would: one
/// `jsonwebtoken::decode` per request, with a key built once.
#[derive(Clone)]
struct BareJwt<S> {
    inner: S,
    decoder: Arc<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
}

impl<S> tower::Service<Request> for BareJwt<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let (key, validation) = &*self.decoder;
        let claims = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| jsonwebtoken::decode::<BareClaims>(token, key, validation).ok());
        match claims {
            Some(data) => {
                request.extensions_mut().insert(data.claims);
                Either::Right(self.inner.call(request))
            }
            None => Either::Left(ready(Ok(http::StatusCode::UNAUTHORIZED.into_response()))),
        }
    }
}

/// `BARE_JWT`'s key and validation: the issuer's published key for `alg`, its `iss` and
/// `aud`, `exp` required (jsonwebtoken's defaults otherwise).
fn bare_decoder(
    issuer: &TestIssuer,
    alg: SigningAlgorithm,
) -> Result<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation), Box<dyn std::error::Error>> {
    let kid = issuer.current_kid(alg);
    let jwks = issuer.jwks();
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["kid"] == kid.as_str()))
        .ok_or("the issuer does not publish its current key")?;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone())?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)?;
    let mut validation = jsonwebtoken::Validation::new(alg.name().parse()?);
    validation.set_issuer(&[issuer.url()]);
    validation.set_audience(&[issuer.audience()]);
    Ok((key, validation))
}

/// jwt-authorizer 0.15's layer, set up with the issuer's key set URL (the key set fetched
/// on the first request and kept; refetched for an unknown `kid`), checking `iss` and `aud`
/// (and `exp`, its default), wrapped so that it fits an axum 0.8 router. The key set is
/// the issuer's without its P-521 key: jsonwebtoken 9, which jwt-authorizer 0.15 reads
/// key sets with, knows no P-521 and refuses the whole set for it.
async fn jwt_authorizer_app(issuer: &TestIssuer) -> Result<Router, Box<dyn std::error::Error>> {
    use jwt_authorizer::{IntoLayer as _, JwtAuthorizer, RegisteredClaims, Validation};

    let mut keys = issuer.jwks();
    if let Some(list) = keys["keys"].as_array_mut() {
        list.retain(|key| key["crv"] != "P-521");
    }
    let body = keys.to_string();
    let key_set = Router::new().route(
        "/jwks.json",
        get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let jwks_url = format!("{}/jwks.json", serve(key_set).await?);
    let authorizer = JwtAuthorizer::<RegisteredClaims>::from_jwks_url(&jwks_url)
        .validation(
            Validation::new()
                .iss(&[issuer.url()])
                .aud(&[issuer.audience()]),
        )
        .build()
        .await?;
    let layer = tower::ServiceBuilder::new()
        .map_response(|response: http::Response<axum_core_04::body::Body>| {
            response.map(axum::body::Body::new)
        })
        .layer(authorizer.into_layer())
        .map_response(|response: Response| response.map(axum_core_04::body::Body::new));
    Ok(app().layer(layer))
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
        // RSA signing is slow (about a millisecond a token): mint on every CPU the process
        // may use (the benchmark script pins the server only once it is ready).
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(options.distinct_tokens.max(1));
        let minted: Vec<Vec<String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|i| {
                    let count = options.distinct_tokens / threads
                        + usize::from(i < options.distinct_tokens % threads);
                    let issuer = &issuer;
                    scope.spawn(move || {
                        (0..count)
                            .map(|_| {
                                issuer
                                    .token()
                                    .alg(options.distinct_alg)
                                    .lifetime(lifetime)
                                    .sign()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("minting thread"))
                .collect()
        });
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for token in minted.iter().flatten() {
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
    let jwt_authorizer = serve(jwt_authorizer_app(&issuer).await?).await?;
    let bare = Arc::new(bare_decoder(&issuer, options.distinct_alg)?);
    let bare_jwt = serve(app().layer(tower::layer::layer_fn(move |inner| BareJwt {
        inner,
        decoder: Arc::clone(&bare),
    })))
    .await?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "UNPROTECTED {unprotected}/fhir/Patient/1")?;
    writeln!(out, "FORWARDING {forwarding}/fhir/Patient/1")?;
    writeln!(out, "CACHED {with_cache}/fhir/Patient/1")?;
    writeln!(out, "AROUND {around_router}/fhir/Patient/1")?;
    writeln!(out, "UNCACHED {without_cache}/fhir/Patient/1")?;
    writeln!(out, "JWT_AUTHORIZER {jwt_authorizer}/fhir/Patient/1")?;
    writeln!(out, "BARE_JWT {bare_jwt}/fhir/Patient/1")?;
    writeln!(out, "STATS {unprotected}/stats")?;
    writeln!(out, "TOKEN {token}")?;
    writeln!(out, "READY")?;
    out.flush()?;
    drop(out);
    // Serve until the benchmark script kills the process.
    std::future::pending::<()>().await;
    Ok(())
}
