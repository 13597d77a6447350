//! Instructions per fresh token, for `bash bench/fresh_instructions.sh` (callgrind).
//!
//! Mints N distinct tokens (default 2,000; `EdDSA` by default, or the algorithm given as
//! the first argument) with the benchmarks' realistic payload (20 SMART scopes), then
//! verifies each once with the token cache off, through [`verify_one`], the function the
//! script counts. The script subtracts the signature check (`jwt::verify_signature`, the
//! same work as the crypto floor) to print the verifier's own instructions per token.

use std::time::Duration;

use futures_util::FutureExt as _;
use smart_auth::testing::TestIssuer;
use smart_auth::{SigningAlgorithm, TokenCachePolicy, TokenVerifier};

#[path = "../benches/support/twenty_scopes.rs"]
mod twenty_scopes;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let alg = match args.next() {
        Some(name) => name.parse::<SigningAlgorithm>()?,
        None => SigningAlgorithm::EdDSA,
    };
    let count: usize = match args.next() {
        Some(count) => count.parse()?,
        None => 2_000,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let issuer = runtime.block_on(TestIssuer::start());
    let verifier = TokenVerifier::builder(issuer.url())
        .audience(issuer.audience())
        .token_cache(TokenCachePolicy::disabled())
        .build()?;
    let mint = || {
        issuer
            .token()
            .alg(alg)
            .lifetime(Duration::from_secs(3600))
            .scope(twenty_scopes::TWENTY_SCOPES)
            .sign()
    };
    // Fetches the keys, so that every counted verification finds them warm.
    runtime.block_on(verifier.verify(&mint()))?;
    let tokens: Vec<String> = (0..count).map(|_| mint()).collect();
    let _context = runtime.enter();
    for token in &tokens {
        verify_one(&verifier, token);
    }
    println!("verified {count} {} tokens", alg.name());
    Ok(())
}

/// One verification, ready at once (the keys are warm). Not inlined, so that callgrind
/// can count exactly this.
#[inline(never)]
fn verify_one(verifier: &TokenVerifier, token: &str) {
    let claims = verifier
        .verify(token)
        .now_or_never()
        .expect("ready without waiting: keys are warm")
        .expect("a valid token");
    std::hint::black_box(claims);
}
