//! The CPU a fresh verification costs on top of a bare `jsonwebtoken` decode of the same
//! token, measured as paired differences.
//!
//! Criterion measures one benchmark after the other, so on a shared machine a drift in
//! speed between two benchmarks shows up as a difference between them. Here the two are
//! measured in alternating blocks (bare, ours, ours, bare, ...), each block a few
//! milliseconds of the thread's CPU time, and the statistic is the median over blocks of
//! `ours - bare`: drift that lasts longer than a block cancels out.
//!
//! A second table measures the same way what the token cache adds when it does not help:
//! every token new (EdDSA), verified with the cache on (full of other tokens) against the
//! cache off. A token is stored only when it verifies a second time, so this is a lookup
//! miss and a note that the token was seen.
//!
//! Run with `cargo bench --features testing --bench overhead`.

#[path = "support/bare.rs"]
mod bare;
#[path = "support/cpu_time.rs"]
mod cpu_time;
#[path = "support/paired.rs"]
mod paired;
#[path = "support/twenty_scopes.rs"]
mod twenty_scopes;
#[path = "support/verifier.rs"]
mod verifier;

use std::hint::black_box;
use std::time::Duration;

use smart_auth::{SigningAlgorithm, TokenVerifier};

use bare::{bare_decoder, ready};
use paired::{per_call, percentile};
use twenty_scopes::TWENTY_SCOPES;
use verifier::issuer_and_uncached_verifier;

const BLOCKS: usize = 100;
const BLOCK_CPU: Duration = Duration::from_millis(8);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    let (issuer, verifier) = issuer_and_uncached_verifier(&runtime);
    let caching = TokenVerifier::builder(issuer.url())
        .audience(issuer.audience())
        .build()
        .expect("valid configuration");
    runtime.block_on(caching.warm_up()).expect("keys");

    println!(
        "{:<22} {:>10} {:>10} {:>15} {:>22}",
        "token", "bare (us)", "ours (us)", "ours-bare (us)", "10th..90th pct (us)"
    );
    let plain = |alg: SigningAlgorithm| (alg, alg.name().to_owned(), None);
    for (alg, label, scopes) in [
        plain(SigningAlgorithm::RS256),
        plain(SigningAlgorithm::RS384),
        plain(SigningAlgorithm::PS256),
        plain(SigningAlgorithm::ES256),
        plain(SigningAlgorithm::ES384),
        plain(SigningAlgorithm::EdDSA),
        (
            SigningAlgorithm::RS256,
            "RS256, 20 scopes".to_owned(),
            Some(TWENTY_SCOPES),
        ),
    ] {
        let mut builder = issuer.token().alg(alg).lifetime(Duration::from_secs(3600));
        if let Some(scopes) = scopes {
            builder = builder
                .scope(scopes)
                .claim("patient", "123")
                .claim("fhirUser", "Practitioner/9")
                .claim("fhirContext", serde_json::json!(["Encounter/7"]));
        }
        let token = builder.sign();
        let (key, validation) = bare_decoder(&issuer, &token, alg);

        let mut bare = || {
            jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &key, &validation)
                .expect("valid");
        };
        let mut ours = || {
            ready(verifier.verify(black_box(&token))).expect("valid");
        };
        // Calibrate the block length, and warm up both.
        let calls = (BLOCK_CPU.as_secs_f64() * 1e6 / per_call(20, &mut bare).max(0.1)) as u32;
        let calls = calls.clamp(5, 10_000);
        per_call(calls, &mut ours);

        let (mut bares, mut ourses, mut differences) = (Vec::new(), Vec::new(), Vec::new());
        for block in 0..BLOCKS {
            let (b, o) = if block % 2 == 0 {
                let b = per_call(calls, &mut bare);
                (b, per_call(calls, &mut ours))
            } else {
                let o = per_call(calls, &mut ours);
                (per_call(calls, &mut bare), o)
            };
            bares.push(b);
            ourses.push(o);
            differences.push(o - b);
        }
        println!(
            "{:<22} {:>10.1} {:>10.1} {:>15.2} {:>10.2} ..{:>8.2}",
            label,
            percentile(&bares, 0.5),
            percentile(&ourses, 0.5),
            percentile(&differences, 0.5),
            percentile(&differences, 0.1),
            percentile(&differences, 0.9),
        );
    }

    // Distinct tokens: each verifier sees each token once.
    let tokens: Vec<String> = (0..40_000)
        .map(|_| {
            issuer
                .token()
                .alg(SigningAlgorithm::EdDSA)
                .lifetime(Duration::from_secs(3600))
                .sign()
        })
        .collect();
    let calls = 150;
    // The first 10,000 tokens fill the cache (each verified twice, so stored); the rest
    // are measured, each verifier seeing each of them once.
    for token in &tokens[..10_000] {
        for _ in 0..2 {
            ready(caching.verify(token)).expect("valid");
        }
    }
    assert_eq!(caching.cached_tokens(), 10_000);
    let (mut next_off, mut next_on) = (10_000, 10_000);
    let mut off = |verifier: &smart_auth::TokenVerifier| {
        let token = &tokens[next_off];
        next_off += 1;
        ready(verifier.verify(token)).expect("valid");
    };
    let mut on = |verifier: &smart_auth::TokenVerifier| {
        let token = &tokens[next_on];
        next_on += 1;
        ready(verifier.verify(token)).expect("valid");
    };
    let blocks = (tokens.len() - 10_000) / calls as usize;
    let (mut offs, mut ons, mut differences) = (Vec::new(), Vec::new(), Vec::new());
    for block in 0..blocks {
        let (a, b) = if block % 2 == 0 {
            let a = per_call(calls, || off(&verifier));
            (a, per_call(calls, || on(&caching)))
        } else {
            let b = per_call(calls, || on(&caching));
            (per_call(calls, || off(&verifier)), b)
        };
        offs.push(a);
        ons.push(b);
        differences.push(b - a);
    }
    println!();
    println!(
        "{:<22} {:>10} {:>10} {:>15} {:>22}",
        "distinct EdDSA tokens", "off (us)", "on (us)", "on-off (us)", "10th..90th pct (us)"
    );
    println!(
        "{:<22} {:>10.1} {:>10.1} {:>15.2} {:>10.2} ..{:>8.2}",
        format!("{blocks} blocks of {calls}"),
        percentile(&offs, 0.5),
        percentile(&ons, 0.5),
        percentile(&differences, 0.5),
        percentile(&differences, 0.1),
        percentile(&differences, 0.9),
    );
    assert!(caching.cached_tokens() <= 10_000);
}
