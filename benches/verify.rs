//! What one token costs, measured in one run so the numbers compare:
//!
//! - `fresh/*`: a full verification (token cache off) per algorithm, next to a bare
//!   `jsonwebtoken` decode of the same token with the same key and the same iss/aud/exp
//!   checks (`jsonwebtoken/*`);
//! - `cached/*`: the same token answered from the token cache;
//! - `distinct/*`: a different token every time (EdDSA): `cache_off` verifies each one,
//!   `cache_on` also looks it up and notes it as seen (a token is stored only when it
//!   verifies a second time);
//! - `layer/*`: one request through the tower service (bearer header, verification,
//!   claims into the request) against the same service without the layer.
//!
//! The key cache is warm in every case. The clock is the benchmark thread's CPU time
//! (see `support/cpu_time.rs`), so time the thread spends descheduled on a busy machine does not
//! count. Run with `cargo bench --features testing --bench verify`.

#[path = "support/bare.rs"]
mod bare;
#[path = "support/cpu_time.rs"]
mod cpu_time;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bare::{bare_decoder, ready};
use bytes::Bytes;
use cpu_time::ThreadCpuTime;
use criterion::{BenchmarkId, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use smart_auth::testing::TestIssuer;
use smart_auth::{SigningAlgorithm, SmartAuthLayer, TokenVerifier};
use tower::{Layer as _, Service as _};

const ALGORITHMS: [SigningAlgorithm; 6] = [
    SigningAlgorithm::RS256,
    SigningAlgorithm::RS384,
    SigningAlgorithm::PS256,
    SigningAlgorithm::ES256,
    SigningAlgorithm::ES384,
    SigningAlgorithm::EdDSA,
];

struct Setup {
    runtime: tokio::runtime::Runtime,
    issuer: TestIssuer,
    cached: SmartAuthLayer,
    uncached: SmartAuthLayer,
}

fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let issuer = runtime.block_on(TestIssuer::start());
    let layer = |cache: bool| {
        let builder = SmartAuthLayer::builder(issuer.url()).audience(issuer.audience());
        let builder = if cache {
            builder
        } else {
            builder.no_token_cache()
        };
        let layer = builder.build().expect("valid configuration");
        runtime.block_on(layer.warm_up()).expect("keys");
        layer
    };
    let cached = layer(true);
    let uncached = layer(false);
    Setup {
        runtime,
        issuer,
        cached,
        uncached,
    }
}

fn token(issuer: &TestIssuer, alg: SigningAlgorithm) -> String {
    issuer
        .token()
        .alg(alg)
        .lifetime(Duration::from_secs(3600))
        .sign()
}

fn verifier(layer: &SmartAuthLayer) -> &TokenVerifier {
    layer.issuers().iter().next().expect("one issuer")
}

fn fresh_and_cached(c: &mut Criterion) {
    let setup = setup();
    let _context = setup.runtime.enter();
    let (cached, uncached) = (verifier(&setup.cached), verifier(&setup.uncached));

    let mut group = c.benchmark_group("fresh");
    for alg in ALGORITHMS {
        let token = token(&setup.issuer, alg);
        let (key, validation) = bare_decoder(&setup.issuer, &token, alg);
        group.bench_with_input(BenchmarkId::new("jsonwebtoken", alg), &token, |b, token| {
            b.iter(|| {
                jsonwebtoken::decode::<serde_json::Value>(black_box(token), &key, &validation)
                    .expect("valid")
            })
        });
        group.bench_with_input(BenchmarkId::new("smart_auth", alg), &token, |b, token| {
            b.iter(|| ready(uncached.verify(black_box(token))).expect("valid"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("cached");
    for alg in [SigningAlgorithm::RS256, SigningAlgorithm::ES256] {
        let token = token(&setup.issuer, alg);
        // Stored the second time it verifies.
        for _ in 0..2 {
            ready(cached.verify(&token)).expect("valid");
        }
        group.bench_with_input(BenchmarkId::new("smart_auth", alg), &token, |b, token| {
            b.iter(|| ready(cached.verify(black_box(token))).expect("valid"))
        });
    }
    group.finish();

    // Each verifier sees each token once: the group's time budget is cut so that the
    // warm-up and the samples need fewer tokens than are minted (checked below).
    let tokens: Vec<String> = (0..50_000)
        .map(|_| token(&setup.issuer, SigningAlgorithm::EdDSA))
        .collect();
    let mut group = c.benchmark_group("distinct");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (name, verifier) in [("cache_off", uncached), ("cache_on", cached)] {
        let mut used = 0;
        group.bench_function(BenchmarkId::new(name, SigningAlgorithm::EdDSA), |b| {
            b.iter(|| {
                let token = &tokens[used % tokens.len()];
                used += 1;
                ready(verifier.verify(black_box(token))).expect("valid")
            })
        });
        if used > tokens.len() {
            eprintln!(
                "distinct/{name}: {used} verifications of {} tokens: some repeated",
                tokens.len()
            );
        }
    }
    group.finish();
    assert!(cached.cached_tokens() <= 10_000);
}

async fn hello(_request: Request<Full<Bytes>>) -> Result<Response<Bytes>, Infallible> {
    Ok(Response::new(Bytes::from_static(b"hello")))
}

fn request(token: &str) -> Request<Full<Bytes>> {
    Request::get("/fhir/Patient/1")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn layer(c: &mut Criterion) {
    let setup = setup();
    let _context = setup.runtime.enter();
    let token = token(&setup.issuer, SigningAlgorithm::RS256);
    let mut bare = tower::service_fn(hello);
    let mut cached = setup.cached.layer(tower::service_fn(hello));
    let mut uncached = setup.uncached.layer(tower::service_fn(hello));

    let mut group = c.benchmark_group("layer");
    group.bench_function("unprotected", |b| {
        b.iter(|| ready(bare.call(request(black_box(&token)))).expect("ok"))
    });
    group.bench_function("cached/RS256", |b| {
        b.iter(|| {
            let response = ready(cached.call(request(black_box(&token)))).expect("ok");
            assert_eq!(response.status(), 200);
        })
    });
    group.bench_function("uncached/RS256", |b| {
        b.iter(|| {
            let response = ready(uncached.call(request(black_box(&token)))).expect("ok");
            assert_eq!(response.status(), 200);
        })
    });
    group.finish();
}

type Criterion = criterion::Criterion<ThreadCpuTime>;

criterion_group! {
    name = benches;
    config = criterion::Criterion::default().with_measurement(ThreadCpuTime);
    targets = fresh_and_cached, layer
}
criterion_main!(benches);
