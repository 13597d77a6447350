//! Verification cost per algorithm on a warm key cache, against a bare `jsonwebtoken`
//! decode of the same token with the same key, measured in the same run.
//!
//! Run with `cargo bench --features testing --bench verify`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};
use smart_auth::testing::TestIssuer;
use smart_auth::{SigningAlgorithm, SmartAuthLayer};

fn verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let issuer = runtime.block_on(TestIssuer::start());
    let verifier = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .build_verifier()
        .unwrap();
    runtime.block_on(verifier.warm_up()).unwrap();
    let jwks = issuer.jwks();

    let mut group = c.benchmark_group("verify");
    for alg in [
        SigningAlgorithm::RS256,
        SigningAlgorithm::RS384,
        SigningAlgorithm::PS256,
        SigningAlgorithm::ES256,
        SigningAlgorithm::ES384,
        SigningAlgorithm::EdDSA,
    ] {
        let token = issuer
            .token()
            .alg(alg)
            .lifetime(std::time::Duration::from_secs(3600))
            .sign();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let jwk: Jwk = serde_json::from_value(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid.as_str())
                .unwrap()
                .clone(),
        )
        .unwrap();
        let key = DecodingKey::from_jwk(&jwk).unwrap();
        let jwt_alg: jsonwebtoken::Algorithm = alg.name().parse().unwrap();
        let mut validation = Validation::new(jwt_alg);
        validation.set_audience(&[issuer.audience()]);
        validation.set_issuer(&[issuer.url()]);

        group.bench_with_input(
            BenchmarkId::new("jsonwebtoken_decode", alg),
            &token,
            |b, token| {
                b.iter(|| {
                    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).unwrap()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("smart_auth_verify", alg),
            &token,
            |b, token| b.iter(|| runtime.block_on(verifier.verify(token)).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
