//! The set-up the paired CPU-time benchmarks (`--bench overhead`, `--bench fresh`) share:
//! a test issuer on `127.0.0.1` and a verifier of its tokens with the token cache off, so
//! that every call is a full verification, its keys fetched before the first call.

use smart_auth::TokenVerifier;
use smart_auth::testing::TestIssuer;

/// A started issuer and a warm verifier without a token cache, on `runtime`.
pub fn issuer_and_uncached_verifier(
    runtime: &tokio::runtime::Runtime,
) -> (TestIssuer, TokenVerifier) {
    let issuer = runtime.block_on(TestIssuer::start());
    let verifier = TokenVerifier::builder(issuer.url())
        .audience(issuer.audience())
        .no_token_cache()
        .build()
        .expect("valid configuration");
    runtime.block_on(verifier.warm_up()).expect("keys");
    (issuer, verifier)
}
