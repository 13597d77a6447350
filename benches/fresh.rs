//! Issue 16's fresh-token target: a token seen for the first time costs at most a bare
//! aws-lc-rs signature check with a pre-parsed key plus 2 µs, for RS256, PS256, ES256,
//! ES384 and EdDSA.
//!
//! For each algorithm, three things are measured in the same run on the same token:
//!
//! - `floor`: the crypto floor. base64url-decode the signature (into a stack buffer) and
//!   verify it over the signing input with an aws-lc-rs `ParsedPublicKey` built once, from
//!   the issuer's published JWK, before the loop. Nothing else: no header, no claims.
//! - `jsonwebtoken`: a bare `jsonwebtoken::decode::<serde_json::Value>` with a
//!   `DecodingKey` built once and `iss`/`aud`/`exp` validation
//!   (`benches/support/bare.rs`), what an application without this crate would do.
//! - `ours`: `TokenVerifier::verify` with the token cache off, so every call is a full
//!   verification (header, key choice, signature, claims, time bounds, `SmartClaims`).
//!   Keys are warmed up first, so the future is ready at its first poll and is polled
//!   once, outside any executor loop (on a current-thread runtime's context).
//!
//! They run in alternating blocks of a few milliseconds of the thread's CPU time, the
//! order of the three rotating through all six permutations, as in
//! `benches/overhead.rs`: the statistic for the target is the median over blocks of the
//! per-block difference `ours - floor`, so drift in the machine's speed that lasts longer
//! than a block cancels out. `PASS` means that median is at most 2 µs.
//!
//! The token carries a realistic SMART payload: `iss`, `sub`, `client_id`, `aud`, `iat`,
//! `exp`, `jti` (the test kit's defaults) and 20 scopes (`benches/support/twenty_scopes.rs`).
//!
//! Run with `cargo bench --features testing --bench fresh`. Settings (environment):
//! `FRESH_BLOCKS` blocks per algorithm (default 120, a multiple of 6 keeps the orders
//! balanced), `FRESH_BLOCK_MS` CPU milliseconds per block and variant (default 8).
//! Arguments after `--` that do not start with `-` select algorithms by name
//! (`cargo bench --features testing --bench fresh -- RS256 EdDSA`).

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

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use smart_auth::SigningAlgorithm;
use smart_auth::testing::TestIssuer;

use bare::{bare_decoder, published_jwk, ready};
use paired::{per_call, percentile};
use twenty_scopes::TWENTY_SCOPES;
use verifier::issuer_and_uncached_verifier;

/// The target: ours − floor, paired median, at most this many µs.
const TARGET_US: f64 = 2.0;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn b64(value: &serde_json::Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(value.as_str().expect("a base64url string"))
        .expect("base64url")
}

/// The issuer's published key for `token`'s `kid`, parsed once by aws-lc-rs for `alg`.
fn floor_key(issuer: &TestIssuer, token: &str, alg: SigningAlgorithm) -> ParsedPublicKey {
    let jwk = &published_jwk(issuer, token);
    let ec_point = |jwk: &serde_json::Value| {
        let mut point = vec![0x04];
        point.extend(b64(&jwk["x"]));
        point.extend(b64(&jwk["y"]));
        point
    };
    match alg {
        SigningAlgorithm::RS256 | SigningAlgorithm::PS256 => {
            let (n, e) = (b64(&jwk["n"]), b64(&jwk["e"]));
            let parameters = if alg == SigningAlgorithm::RS256 {
                &RSA_PKCS1_2048_8192_SHA256
            } else {
                &RSA_PSS_2048_8192_SHA256
            };
            RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(parameters)
                .expect("RSA key")
        }
        SigningAlgorithm::ES256 => {
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, ec_point(jwk)).expect("P-256 key")
        }
        SigningAlgorithm::ES384 => {
            ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, ec_point(jwk)).expect("P-384 key")
        }
        SigningAlgorithm::EdDSA => {
            ParsedPublicKey::new(&ED25519, b64(&jwk["x"])).expect("Ed25519 key")
        }
        other => panic!("no floor for {}", other.name()),
    }
}

/// The crypto floor: verify one compact JWS signature with a pre-parsed key.
fn floor_verify(key: &ParsedPublicKey, token: &str) -> bool {
    let Some(dot) = token.rfind('.') else {
        return false;
    };
    // Large enough for an RSA-8192 signature; no allocation.
    let mut signature = [0u8; 1024];
    let Ok(length) = URL_SAFE_NO_PAD.decode_slice(&token[dot + 1..], &mut signature) else {
        return false;
    };
    key.verify_sig(&token.as_bytes()[..dot], &signature[..length])
        .is_ok()
}

/// The six orders of the three variants; block `i` uses `ORDERS[i % 6]`.
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [2, 1, 0],
    [1, 2, 0],
    [0, 2, 1],
    [2, 0, 1],
    [1, 0, 2],
];

fn main() {
    let selected: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let blocks = env_number("FRESH_BLOCKS", 120).max(6) as usize;
    let block_cpu = Duration::from_millis(env_number("FRESH_BLOCK_MS", 8).max(1));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    let (issuer, verifier) = issuer_and_uncached_verifier(&runtime);

    println!(
        "fresh token vs the crypto floor: {blocks} blocks of {} ms CPU per variant, medians in µs",
        block_cpu.as_millis()
    );
    println!(
        "{:<7} {:>8} {:>13} {:>8} {:>13} {:>17} {:>16} {:>7}",
        "alg",
        "floor",
        "jsonwebtoken",
        "ours",
        "ours-floor",
        "10th..90th pct",
        "jsonwebtoken-f.",
        "target"
    );
    let mut all_pass = true;
    for alg in [
        SigningAlgorithm::RS256,
        SigningAlgorithm::PS256,
        SigningAlgorithm::ES256,
        SigningAlgorithm::ES384,
        SigningAlgorithm::EdDSA,
    ] {
        if !selected.is_empty() && !selected.iter().any(|s| s == alg.name()) {
            continue;
        }
        let token = issuer
            .token()
            .alg(alg)
            .lifetime(Duration::from_secs(3600))
            .scope(TWENTY_SCOPES)
            .sign();
        let key = floor_key(&issuer, &token, alg);
        let (decoding_key, validation) = bare_decoder(&issuer, &token, alg);
        assert!(floor_verify(&key, &token), "floor refuses the token");
        // The floor must refuse a changed signature, or it measures nothing.
        let mut forged = token.clone();
        let last = forged.pop().expect("non-empty");
        forged.push(if last == 'A' { 'Q' } else { 'A' });
        assert!(!floor_verify(&key, &forged), "floor accepts a forged token");

        let mut floor = || {
            assert!(floor_verify(&key, black_box(&token)));
        };
        let mut jwt = || {
            jsonwebtoken::decode::<serde_json::Value>(
                black_box(&token),
                &decoding_key,
                &validation,
            )
            .expect("valid");
        };
        let mut ours = || {
            ready(verifier.verify(black_box(&token))).expect("valid");
        };
        let variants: [&mut dyn FnMut(); 3] = [&mut floor, &mut jwt, &mut ours];

        // Calibrate the block length on the slowest of the three, and warm up all three.
        let slowest = variants
            .into_iter()
            .map(|f| per_call(20, f))
            .fold(0.1_f64, f64::max);
        let calls = ((block_cpu.as_secs_f64() * 1e6 / slowest) as u32).clamp(5, 20_000);
        let variants: [&mut dyn FnMut(); 3] = [&mut floor, &mut jwt, &mut ours];

        let mut times: [Vec<f64>; 3] = Default::default();
        let (mut ours_floor, mut jwt_floor) = (Vec::new(), Vec::new());
        for block in 0..blocks {
            let mut t = [0.0; 3];
            for &v in &ORDERS[block % ORDERS.len()] {
                t[v] = per_call(calls, &mut *variants[v]);
            }
            for (times, t) in times.iter_mut().zip(t) {
                times.push(t);
            }
            ours_floor.push(t[2] - t[0]);
            jwt_floor.push(t[1] - t[0]);
        }
        let over = percentile(&ours_floor, 0.5);
        let pass = over <= TARGET_US;
        all_pass &= pass;
        println!(
            "{:<7} {:>8.2} {:>13.2} {:>8.2} {:>13.2} {:>8.2} ..{:>6.2} {:>16.2} {:>7}",
            alg.name(),
            percentile(&times[0], 0.5),
            percentile(&times[1], 0.5),
            percentile(&times[2], 0.5),
            over,
            percentile(&ours_floor, 0.1),
            percentile(&ours_floor, 0.9),
            percentile(&jwt_floor, 0.5),
            if pass { "PASS" } else { "FAIL" },
        );
    }
    println!(
        "target (issue 16): ours - floor <= {TARGET_US} µs (paired median) for every algorithm: {}",
        if all_pass { "PASS" } else { "FAIL" }
    );
}
