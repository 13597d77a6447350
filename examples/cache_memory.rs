//! Memory per cached token (issue 16: at most 1 KB at 10,000 tokens, measured as RSS
//! growth). `bash bench/memory.sh` builds and runs it; see BENCHMARKS.md.
//!
//! In one process, on `127.0.0.1`: a [`TestIssuer`], and a [`TokenVerifier`] with the
//! token cache holding up to 10% more than N tokens (see `--capacity`). Then:
//!
//! 1. mint N distinct valid tokens (default 10,000) and keep them, so their strings are
//!    allocated before the first measurement and freed only after the last;
//! 2. fetch the keys (`warm_up`), and read `VmRSS` from `/proc/self/status`;
//! 3. verify every token twice in a row (a token is stored the second time it verifies),
//!    until the cache holds N tokens (a second pass is needed only if the note that a
//!    token was seen got overwritten by another's before its second verification);
//! 4. read `VmRSS` again, and print `(after - before) / N` in bytes, with PASS or FAIL
//!    against the 1,024-byte target.
//!
//! The growth includes everything the cache keeps per token and whatever the allocator
//! does not give back after the verifications' short-lived allocations (both are what an
//! operator sees). The token strings do not count: they exist before and after.
//!
//! Options: `--tokens N` (default 10000), `--capacity N` (the cache's `max_entries`;
//! default N + 10%: the store is split into shards that each hold their share of the
//! bound, and tokens do not spread over the shards exactly evenly, so a cache of exactly
//! N entries holds a little less than N distinct tokens), `--alg NAME` (default ES256, the load test's distinct-token
//! algorithm), `--twenty-scopes` (tokens with 20 SMART scopes, `patient` and `fhirUser`
//! instead of the test kit's one scope).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use smart_auth::testing::TestIssuer;
use smart_auth::{SigningAlgorithm, TokenCachePolicy, TokenVerifier};

/// The twenty scopes of `benches/support/twenty_scopes.rs`.
#[path = "../benches/support/twenty_scopes.rs"]
mod twenty_scopes;

/// The system allocator, counting the bytes currently allocated: the heap the cache
/// keeps, without the allocator's own overhead and fragmentation that RSS also shows.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is
// updated next to it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The target: bytes of RSS per cached token.
const TARGET_BYTES: f64 = 1024.0;

struct Options {
    tokens: usize,
    capacity: Option<u64>,
    alg: SigningAlgorithm,
    twenty_scopes: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        tokens: 10_000,
        capacity: None,
        alg: SigningAlgorithm::ES256,
        twenty_scopes: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--twenty-scopes" {
            options.twenty_scopes = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--tokens" => options.tokens = value.parse().map_err(|_| "not a count")?,
            "--capacity" => options.capacity = Some(value.parse().map_err(|_| "not a count")?),
            "--alg" => {
                options.alg = SigningAlgorithm::DEFAULT
                    .iter()
                    .copied()
                    .find(|alg| alg.name() == value)
                    .ok_or_else(|| format!("unknown algorithm {value}"))?
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

/// Resident set size of this process in KiB, from `/proc/self/status`.
fn rss_kib() -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _context = runtime.enter();
    let issuer = runtime.block_on(TestIssuer::start());
    let capacity = options
        .capacity
        .unwrap_or(options.tokens as u64 + options.tokens as u64 / 10);
    let policy = TokenCachePolicy::default().max_entries(capacity);
    let verifier = TokenVerifier::builder(issuer.url())
        .audience(issuer.audience())
        .token_cache(policy)
        .build()?;

    let tokens: Vec<String> = (0..options.tokens)
        .map(|_| {
            let mut builder = issuer
                .token()
                .alg(options.alg)
                .lifetime(Duration::from_secs(3600));
            if options.twenty_scopes {
                builder = builder
                    .scope(twenty_scopes::TWENTY_SCOPES)
                    .claim("patient", "123")
                    .claim("fhirUser", "Practitioner/9");
            }
            builder.sign()
        })
        .collect();
    let token_bytes: usize = tokens.iter().map(String::len).sum();
    runtime.block_on(verifier.warm_up())?;
    // One verification of an unrelated token, not stored (seen once), so that whatever a
    // first verification sets up once (lazily initialised statics, thread-locals) is
    // counted before, not in the growth.
    let other = issuer
        .token()
        .alg(options.alg)
        .lifetime(Duration::from_secs(3600))
        .sign();
    let verify = |token: &str| {
        verifier
            .verify(token)
            .now_or_never()
            .expect("ready without waiting: keys are warm")
            .map(|_| ())
    };
    verify(&other)?;
    assert_eq!(
        verifier.cached_tokens(),
        0,
        "a token seen once is not stored"
    );

    let before = rss_kib()?;
    let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut passes = 0;
    while verifier.cached_tokens() < options.tokens as u64 && passes < 4 {
        passes += 1;
        for token in &tokens {
            verify(token)?;
            verify(token)?;
        }
    }
    let held = verifier.cached_tokens();
    let after = rss_kib()?;
    let heap_after = LIVE_BYTES.load(Ordering::Relaxed);

    let per_token = (after as f64 - before as f64) * 1024.0 / options.tokens as f64;
    println!(
        "tokens: {} {} (average {} bytes each, {} KiB in all, minted before the first reading)",
        options.tokens,
        options.alg.name(),
        token_bytes / options.tokens.max(1),
        token_bytes / 1024
    );
    println!("cache: {held} tokens held after {passes} pass(es) of two verifications per token");
    println!("RSS before filling: {before} KiB, after: {after} KiB");
    println!(
        "heap bytes allocated per cached token (requested sizes, no allocator overhead): {:.0}",
        (heap_after - heap_before) as f64 / options.tokens as f64
    );
    println!(
        "RSS growth per cached token: {per_token:.0} bytes; target <= {TARGET_BYTES:.0}: {}",
        if per_token <= TARGET_BYTES && held == options.tokens as u64 {
            "PASS"
        } else {
            "FAIL"
        }
    );
    if held != options.tokens as u64 {
        println!(
            "(FAIL because the cache holds {held} tokens, not {})",
            options.tokens
        );
    }
    // Everything above stays alive until here.
    drop(tokens);
    Ok(())
}
