//! The server side of the soak benchmark (`bash bench/soak.sh` runs it; see the Soak
//! section of BENCHMARKS.md).
//!
//! Starts, in one process, on ephemeral `127.0.0.1` ports: a protected API (one hello
//! route behind a [`SmartAuthLayer`]), the authority it trusts, and a control endpoint.
//! A counting layer around the protected API records, for every request, its token class
//! (the `x-soak-class` header the load generator sets), the schedule phase it arrived in,
//! the status it got and how long the layer took to answer.
//!
//! Two modes (`--mode`):
//!
//! - `jwt` (default): the layer validates JWTs against the JWK Set of a [`TestIssuer`].
//!   Classes: `reused` (a small pool of valid tokens), `fresh` (each valid token sent
//!   once), `fresh_rotated` (each sent once, signed by a key the issuer publishes only from
//!   the `rotate` phase on), `expired`, `bad_sig` (a signature byte changed), `unknown_kid`
//!   (signed by a key the issuer never publishes), `alg_hs256` (HS256 with the RSA public
//!   key as the secret) and `alg_none`. Phases: normal, rotate (the new keys are published
//!   beside the old), down (503), slow (longer than the fetch timeout), 500, garbage (a 200
//!   that is not a key set), back up.
//! - `introspection`: the layer validates opaque tokens by RFC 7662 introspection against
//!   an in-process endpoint. Classes: `reused`, `fresh` (each sent once), `expired` (the
//!   endpoint says active but `exp` is past), `inactive` (revoked) and `forged` (each sent
//!   once, unknown to the endpoint). Phases: normal, down (503), slow, 500, garbage (a 200
//!   that is not JSON), back up.
//!
//! It writes the tokens (`CLASS TOKEN` per line) to `--tokens-file`, prints
//!
//! ```text
//! API http://127.0.0.1:41234/fhir/Patient/1
//! CONTROL http://127.0.0.1:41235
//! MIX reused=60 fresh=15 ...
//! READY
//! ```
//!
//! and serves until killed. `GET CONTROL/start` starts the schedule (`--duration`
//! seconds, split evenly over the phases); `GET CONTROL/report` answers the report (a
//! markdown table and `CHECK` lines). Other options: `--fetch-timeout-ms` (default 1000),
//! `--fresh N` (one-shot tokens to mint: N fresh and N/3 fresh_rotated JWTs, or 2N fresh
//! and N forged opaque tokens; default 300000). `SOAK_SERVER_THREADS` sets the
//! runtime's worker threads (default 1); `SOAK_LOG` (a tracing filter, default `warn`)
//! what the crate logs to stderr, such as each failed fetch.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::{Value, json};
use smart_auth::testing::{JwksBehaviour, TestIssuer, sign_hs256};
use smart_auth::{
    Introspection, IntrospectionAuth, RefreshPolicy, SigningAlgorithm, SmartAuthLayer,
};

/// Key-cache times, scaled down so that a 60 s run goes through every path: refreshes on
/// expiry, refetches for unknown `kid`s, failure cooldowns.
const KEY_TTL: Duration = Duration::from_secs(5);
const UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(5);
const FAILURE_COOLDOWN: Duration = Duration::from_secs(3);
/// Introspection settings (the crate's defaults but the cooldown).
const MAX_CONCURRENT_CALLS: usize = 32;
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(1);

const STATUS_NAMES: [&str; 6] = ["200", "401", "403", "503", "other 5xx", "other"];

fn status_slot(status: StatusCode) -> usize {
    match status.as_u16() {
        200 => 0,
        401 => 1,
        403 => 2,
        503 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

/// Latency histogram: 16 sub-buckets per power of two of microseconds (6 % resolution).
const BUCKETS: usize = 400;

fn bucket_of(micros: u64) -> usize {
    let micros = micros.max(1);
    let exp = 63 - micros.leading_zeros() as usize;
    let index = if exp < 4 {
        micros as usize
    } else {
        (exp - 3) * 16 + ((micros >> (exp - 4)) & 15) as usize
    };
    index.min(BUCKETS - 1)
}

/// The largest latency (µs) a bucket holds.
fn bucket_ceiling(index: usize) -> u64 {
    if index < 32 {
        return index as u64;
    }
    let exp = index / 16 + 3;
    let mantissa = (index % 16) as u64;
    ((16 + mantissa + 1) << (exp - 4)) - 1
}

struct Cell {
    statuses: [AtomicU64; 6],
    latency: Vec<AtomicU64>,
}

impl Cell {
    fn new() -> Self {
        Self {
            statuses: Default::default(),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// A latency histogram read out of cells.
#[derive(Clone)]
struct Histogram(Vec<u64>);

impl Histogram {
    fn empty() -> Self {
        Self(vec![0; BUCKETS])
    }
    fn add(&mut self, cell: &Cell) {
        for (sum, count) in self.0.iter_mut().zip(&cell.latency) {
            *sum += count.load(Ordering::Relaxed);
        }
    }
    fn count(&self) -> u64 {
        self.0.iter().sum()
    }
    /// The latency (µs) under which `fraction` of the requests were answered.
    fn quantile(&self, fraction: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * fraction).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.0.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_ceiling(index);
            }
        }
        bucket_ceiling(BUCKETS - 1)
    }
    fn max(&self) -> u64 {
        self.0
            .iter()
            .rposition(|count| *count > 0)
            .map_or(0, bucket_ceiling)
    }
}

/// What the counting layer records: one cell per (phase, class); the last phase slot
/// holds requests outside the schedule.
struct Counters {
    classes: Vec<&'static str>,
    phases: Vec<Phase>,
    cells: Vec<Cell>,
    current_phase: AtomicUsize,
    /// Per phase, the longest a 5 ms timer fired late (µs): how long the runtime's workers
    /// were kept from running tasks.
    max_lag: Vec<AtomicU64>,
    /// How long after the authority stopped failing a 503 is still documented: in
    /// introspection mode the layer's failure cooldown, plus a call and a queue wait that
    /// may have started just before; in JWT mode the wait for the next key-set fetch (the
    /// longest of the key TTL, the failure and unknown-kid cooldowns) plus a call.
    grace: Option<Duration>,
    /// JWT mode: the one class a 503 is documented for, tokens whose `kid` no cached key
    /// carries while the key set cannot be fetched (the layer cannot tell them from keys it
    /// has not seen yet); `None` in introspection mode, where any class may get 503.
    only_class: Option<usize>,
    /// When the schedule started, and (ms after that) when the latest failing phase ended.
    clock_start: Instant,
    failing_ended_ms: AtomicU64,
    /// Per phase, the 503 answers outside the documented cases.
    undocumented_503: Vec<AtomicU64>,
}

impl Counters {
    fn new(
        classes: Vec<&'static str>,
        phases: Vec<Phase>,
        grace: Option<Duration>,
        only_class: Option<&str>,
    ) -> Self {
        let slots = (phases.len() + 1) * (classes.len() + 1);
        Self {
            grace,
            only_class: only_class.and_then(|name| classes.iter().position(|class| *class == name)),
            clock_start: Instant::now(),
            failing_ended_ms: AtomicU64::new(0),
            undocumented_503: (0..=phases.len()).map(|_| AtomicU64::new(0)).collect(),
            cells: (0..slots).map(|_| Cell::new()).collect(),
            current_phase: AtomicUsize::new(phases.len()),
            max_lag: (0..=phases.len()).map(|_| AtomicU64::new(0)).collect(),
            classes,
            phases,
        }
    }
    fn cell(&self, phase: usize, class: usize) -> &Cell {
        &self.cells[phase * (self.classes.len() + 1) + class]
    }
    fn class_of(&self, request: &Request) -> usize {
        let name = request
            .headers()
            .get("x-soak-class")
            .map(|value| value.as_bytes())
            .unwrap_or_default();
        self.classes
            .iter()
            .position(|class| class.as_bytes() == name)
            .unwrap_or(self.classes.len())
    }
    fn class_name(&self, class: usize) -> &'static str {
        self.classes
            .get(class)
            .copied()
            .unwrap_or("probe (unlabelled)")
    }
    /// Whether a 503 answered now, in `phase`, to a request of `class`, is one of the
    /// documented cases.
    fn documented_503(&self, phase: usize, class: usize) -> bool {
        let Some(grace) = self.grace else {
            return false;
        };
        if self.only_class.is_some_and(|only| only != class) {
            return false;
        }
        if self.phases.get(phase).is_some_and(|p| p.failing) {
            return true;
        }
        let ended = Duration::from_millis(self.failing_ended_ms.load(Ordering::Relaxed));
        ended > Duration::ZERO && self.clock_start.elapsed() <= ended + grace
    }
    fn phase_name(&self, phase: usize) -> &'static str {
        self.phases.get(phase).map_or("outside", |p| p.name)
    }
}

async fn count(State(counters): State<Arc<Counters>>, request: Request, next: Next) -> Response {
    let class = counters.class_of(&request);
    let phase = counters.current_phase.load(Ordering::Relaxed);
    let started = Instant::now();
    let response = next.run(request).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let cell = counters.cell(phase, class);
    cell.statuses[status_slot(response.status())].fetch_add(1, Ordering::Relaxed);
    // A request that arrived just before a phase changed may be answered in the next one.
    let documented = |phase| counters.documented_503(phase, class);
    if response.status() == StatusCode::SERVICE_UNAVAILABLE
        && !documented(phase)
        && !documented(counters.current_phase.load(Ordering::Relaxed))
    {
        counters.undocumented_503[phase].fetch_add(1, Ordering::Relaxed);
    }
    cell.latency[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    response
}

/// One step of the schedule.
#[derive(Clone, Copy)]
struct Phase {
    name: &'static str,
    /// Whether the authority fails in it.
    failing: bool,
}

const JWT_PHASES: [Phase; 7] = [
    Phase {
        name: "normal",
        failing: false,
    },
    Phase {
        name: "rotate",
        failing: false,
    },
    Phase {
        name: "down (503)",
        failing: true,
    },
    Phase {
        name: "slow",
        failing: true,
    },
    Phase {
        name: "500",
        failing: true,
    },
    Phase {
        name: "garbage",
        failing: true,
    },
    Phase {
        name: "back up",
        failing: false,
    },
];

const INTROSPECTION_PHASES: [Phase; 6] = [
    Phase {
        name: "normal",
        failing: false,
    },
    Phase {
        name: "down (503)",
        failing: true,
    },
    Phase {
        name: "slow",
        failing: true,
    },
    Phase {
        name: "500",
        failing: true,
    },
    Phase {
        name: "garbage",
        failing: true,
    },
    Phase {
        name: "back up",
        failing: false,
    },
];

/// What was measured at the end of each phase.
#[derive(Clone, Default)]
struct PhaseRecord {
    seconds: f64,
    /// JWK Set requests (jwt) or introspection calls (introspection) during the phase.
    authority_calls: u64,
    discovery_calls: u64,
    rss_kib: u64,
}

struct Run {
    counters: Arc<Counters>,
    authority: Authority,
    duration: Duration,
    fetch_timeout: Duration,
    started: AtomicBool,
    records: Mutex<Vec<PhaseRecord>>,
    rss_before_kib: AtomicU64,
    cached_tokens: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// The service the layer depends on, driven by the schedule.
enum Authority {
    Jwt {
        issuer: Arc<TestIssuer>,
        old_keys: String,
        both_keys: String,
    },
    Introspection(Arc<Endpoint>),
}

impl Authority {
    fn enter(&self, phase: &str, slow: Duration) {
        match self {
            Self::Jwt {
                issuer,
                old_keys,
                both_keys,
            } => issuer.set_jwks_behaviour(match phase {
                "normal" => JwksBehaviour::Body(old_keys.clone()),
                "rotate" | "back up" => JwksBehaviour::Body(both_keys.clone()),
                "down (503)" => JwksBehaviour::Status(503),
                // Never completes: the fetch times out first.
                "slow" => JwksBehaviour::Delay(slow),
                "500" => JwksBehaviour::Status(500),
                _ => JwksBehaviour::Body("<html>not a key set</html>".to_owned()),
            }),
            Self::Introspection(endpoint) => {
                *endpoint.behaviour.lock().unwrap() = match phase {
                    "normal" | "back up" => EndpointBehaviour::Normal,
                    "down (503)" => EndpointBehaviour::Status(503),
                    "slow" => EndpointBehaviour::Delay(slow),
                    "500" => EndpointBehaviour::Status(500),
                    _ => EndpointBehaviour::Garbage,
                }
            }
        }
    }
    fn calls(&self) -> (u64, u64) {
        match self {
            Self::Jwt { issuer, .. } => (
                issuer.jwks_fetches() as u64,
                issuer.smart_configuration_fetches() as u64,
            ),
            Self::Introspection(endpoint) => (endpoint.calls.load(Ordering::SeqCst), 0),
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

async fn run_schedule(run: Arc<Run>) {
    let phases = run.counters.phases.clone();
    let length = run.duration / phases.len() as u32;
    let slow = run.fetch_timeout * 3;
    run.rss_before_kib.store(rss_kib(), Ordering::SeqCst);
    let (mut calls, mut discovery) = run.authority.calls();
    for (index, phase) in phases.iter().enumerate() {
        run.authority.enter(phase.name, slow);
        run.counters.current_phase.store(index, Ordering::SeqCst);
        let started = Instant::now();
        tokio::time::sleep(length).await;
        if phase.failing {
            let since_start = run.counters.clock_start.elapsed().as_millis() as u64;
            run.counters
                .failing_ended_ms
                .store(since_start.max(1), Ordering::Relaxed);
        }
        let (calls_now, discovery_now) = run.authority.calls();
        run.records.lock().unwrap().push(PhaseRecord {
            seconds: started.elapsed().as_secs_f64(),
            authority_calls: calls_now - calls,
            discovery_calls: discovery_now - discovery,
            rss_kib: rss_kib(),
        });
        (calls, discovery) = (calls_now, discovery_now);
    }
    run.counters
        .current_phase
        .store(phases.len(), Ordering::SeqCst);
}

/// Measures how late a 5 ms timer fires, per phase, for as long as the process runs.
async fn watch_lag(counters: Arc<Counters>) {
    let tick = Duration::from_millis(5);
    loop {
        let before = Instant::now();
        tokio::time::sleep(tick).await;
        let late = before.elapsed().saturating_sub(tick);
        let phase = counters.current_phase.load(Ordering::Relaxed);
        counters.max_lag[phase].fetch_max(late.as_micros() as u64, Ordering::Relaxed);
    }
}

async fn start(State(run): State<Arc<Run>>) -> &'static str {
    if run.started.swap(true, Ordering::SeqCst) {
        return "already started\n";
    }
    tokio::spawn(watch_lag(Arc::clone(&run.counters)));
    tokio::spawn(run_schedule(Arc::clone(&run)));
    "started\n"
}

async fn report(State(run): State<Arc<Run>>) -> String {
    build_report(&run)
}

fn millis(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// The classes for which a 200 is a wrong accept, in `phase`.
fn must_refuse(mode_jwt: bool, class: &str, phase: &str) -> bool {
    match class {
        "reused" | "fresh" | "probe (unlabelled)" => false,
        // Signed by a key the issuer has not published yet.
        "fresh_rotated" => mode_jwt && phase == "normal",
        _ => true,
    }
}

fn build_report(run: &Run) -> String {
    let counters = &run.counters;
    let records = run.records.lock().unwrap().clone();
    let jwt = matches!(run.authority, Authority::Jwt { .. });
    let classes = counters.classes.len() + 1;
    let phases = counters.phases.len() + 1;
    let mut out = String::new();
    let mut failures = Vec::new();

    // Per phase.
    let _ = writeln!(
        out,
        "\n### {} soak: by phase\n",
        if jwt { "JWT" } else { "Introspection" }
    );
    let calls_name = if jwt {
        "JWKS fetches"
    } else {
        "endpoint calls"
    };
    let _ = writeln!(
        out,
        "| phase | s | requests | req/s | 200 | 401 | 403 | 503 | other 5xx | p50 ms | p99 ms | max ms | max runtime lag ms | {calls_name} | RSS KiB at end |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut all = Histogram::empty();
    let mut slow = Histogram::empty();
    let mut wrong_accepts = 0u64;
    let mut undocumented_5xx = 0u64;
    for phase in 0..phases {
        let mut histogram = Histogram::empty();
        let mut statuses = [0u64; 6];
        for class in 0..classes {
            let cell = counters.cell(phase, class);
            histogram.add(cell);
            for (sum, count) in statuses.iter_mut().zip(&cell.statuses) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
        let requests = histogram.count();
        if phase < counters.phases.len() || requests > 0 {
            let record = records.get(phase).cloned().unwrap_or_default();
            let rate = if record.seconds > 0.0 {
                format!("{:.0}", requests as f64 / record.seconds)
            } else {
                "-".to_owned()
            };
            let calls = if phase < records.len() {
                let discovery = if record.discovery_calls > 0 {
                    format!(" (+{} discovery)", record.discovery_calls)
                } else {
                    String::new()
                };
                format!("{}{discovery}", record.authority_calls)
            } else {
                "-".to_owned()
            };
            let rss = if phase < records.len() {
                record.rss_kib.to_string()
            } else {
                "-".to_owned()
            };
            let _ = writeln!(
                out,
                "| {} | {:.1} | {requests} | {rate} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {calls} | {rss} |",
                counters.phase_name(phase),
                record.seconds,
                statuses[0],
                statuses[1],
                statuses[2],
                statuses[3],
                statuses[4],
                millis(histogram.quantile(0.5)),
                millis(histogram.quantile(0.99)),
                millis(histogram.max()),
                millis(counters.max_lag[phase].load(Ordering::Relaxed)),
            );
        }
        if phase < counters.phases.len() {
            for (sum, count) in all.0.iter_mut().zip(&histogram.0) {
                *sum += count;
            }
        }
        if counters.phase_name(phase) == "slow" {
            slow = histogram.clone();
        }
        undocumented_5xx += counters.undocumented_503[phase].load(Ordering::Relaxed);
        undocumented_5xx += statuses[4];
    }

    // Per class.
    let _ = writeln!(out, "\n### By token class (whole run)\n");
    let _ = writeln!(
        out,
        "| class | requests | {} | p99 ms | p99 ms while slow | wrong accepts |",
        STATUS_NAMES.join(" | ")
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for class in 0..classes {
        let mut histogram = Histogram::empty();
        let mut statuses = [0u64; 6];
        let mut slow_class = Histogram::empty();
        let mut wrong = 0;
        for phase in 0..phases {
            let cell = counters.cell(phase, class);
            histogram.add(cell);
            if counters.phase_name(phase) == "slow" {
                slow_class.add(cell);
            }
            for (sum, count) in statuses.iter_mut().zip(&cell.statuses) {
                *sum += count.load(Ordering::Relaxed);
            }
            if must_refuse(jwt, counters.class_name(class), counters.phase_name(phase)) {
                wrong += cell.statuses[0].load(Ordering::Relaxed);
            }
        }
        if histogram.count() == 0 {
            continue;
        }
        wrong_accepts += wrong;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {wrong} |",
            counters.class_name(class),
            histogram.count(),
            statuses.map(|n| n.to_string()).join(" | "),
            millis(histogram.quantile(0.99)),
            millis(slow_class.quantile(0.99)),
        );
    }

    // Valid tokens, phase by phase: what they got other than 200.
    let valid: Vec<usize> = (0..counters.classes.len())
        .filter(|&class| !must_refuse(jwt, counters.class_name(class), "back up"))
        .collect();
    let _ = writeln!(
        out,
        "\n### Valid tokens not answered 200, by phase (401 / 503 / other)\n"
    );
    let names: Vec<&str> = valid.iter().map(|&c| counters.class_name(c)).collect();
    let _ = writeln!(out, "| phase | {} |", names.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(valid.len()));
    for phase in 0..counters.phases.len() {
        let row: Vec<String> = valid
            .iter()
            .map(|&class| {
                let cell = counters.cell(phase, class);
                let count = |slot: usize| cell.statuses[slot].load(Ordering::Relaxed);
                let other = count(2) + count(4) + count(5);
                format!("{} / {} / {other}", count(1), count(3))
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} |",
            counters.phase_name(phase),
            row.join(" | ")
        );
    }

    // Summary and checks.
    let total = all.count();
    let seconds: f64 = records.iter().map(|r| r.seconds).sum();
    let calls: u64 = records.iter().map(|r| r.authority_calls).sum();
    let discovery: u64 = records.iter().map(|r| r.discovery_calls).sum();
    let timeout_us = run.fetch_timeout.as_micros() as u64;
    let _ = writeln!(out, "\n### Summary\n");
    let _ = writeln!(
        out,
        "- requests in the schedule: {total} in {seconds:.1} s ({:.0} req/s)",
        total as f64 / seconds.max(0.001)
    );
    let _ = writeln!(
        out,
        "- latency inside the server (the counting layer around the auth layer): p50 {} ms, p99 {} ms, max {} ms; while the {} was slow: p99 {} ms, max {} ms (fetch timeout {} ms)",
        millis(all.quantile(0.5)),
        millis(all.quantile(0.99)),
        millis(all.max()),
        if jwt {
            "key server"
        } else {
            "introspection endpoint"
        },
        millis(slow.quantile(0.99)),
        millis(slow.max()),
        run.fetch_timeout.as_millis()
    );
    let bound;
    if jwt {
        // One fetch at most per cooldown for unknown kids; refreshes at most one per TTL
        // after a success or per failure cooldown after a failure.
        let spacing = KEY_TTL.min(FAILURE_COOLDOWN).as_secs_f64();
        bound = (seconds / spacing).floor() as u64
            + 1
            + (seconds / UNKNOWN_KID_COOLDOWN.as_secs_f64()).floor() as u64
            + 1;
        let _ = writeln!(
            out,
            "- JWKS fetches: {calls} (+{discovery} discovery); bound {bound} = floor({seconds:.0} s / min(TTL {} s, failure cooldown {} s)) + 1 + floor({seconds:.0} s / unknown-kid cooldown {} s) + 1, whatever the request rate",
            KEY_TTL.as_secs(),
            FAILURE_COOLDOWN.as_secs(),
            UNKNOWN_KID_COOLDOWN.as_secs()
        );
    } else {
        let Authority::Introspection(endpoint) = &run.authority else {
            unreachable!()
        };
        // Each outage meets at most max_concurrent_calls calls, then the cooldown.
        let failing: Vec<&PhaseRecord> = records
            .iter()
            .zip(&counters.phases)
            .filter(|(_, phase)| phase.failing)
            .map(|(record, _)| record)
            .collect();
        let failing_calls: u64 = failing.iter().map(|record| record.authority_calls).sum();
        let failing_bound: u64 = failing
            .iter()
            .map(|record| {
                ((record.seconds / FAILURE_COOLDOWN.as_secs_f64()).floor() as u64 + 1)
                    * (MAX_CONCURRENT_CALLS as u64 + 1)
            })
            .sum();
        let _ = writeln!(
            out,
            "- endpoint calls: {calls}; most in flight at once: {} (max_concurrent_calls {MAX_CONCURRENT_CALLS}); calls while the endpoint failed: {failing_calls}, bound {failing_bound} = per failing phase (floor(length / failure cooldown {} s) + 1) x (max_concurrent_calls + 1 health check)",
            endpoint.max_in_flight.load(Ordering::SeqCst),
            FAILURE_COOLDOWN.as_secs()
        );
        if failing_calls > failing_bound {
            failures.push(format!(
                "{failing_calls} calls to the failing endpoint, over the bound {failing_bound}"
            ));
        }
        bound = u64::MAX;
    }
    let rss_before = run.rss_before_kib.load(Ordering::SeqCst);
    let steady_start = records.first().map_or(0, |r| r.rss_kib);
    let steady_end = records.last().map_or(0, |r| r.rss_kib);
    let growth = if steady_start > 0 {
        (steady_end as f64 - steady_start as f64) / steady_start as f64 * 100.0
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "- RSS: {rss_before} KiB at the start, {steady_start} KiB after the first phase (start of the steady state), {steady_end} KiB at the end ({growth:+.1} %); cached tokens at the end: {}",
        (run.cached_tokens)()
    );
    let _ = writeln!(
        out,
        "- wrong accepts: {wrong_accepts}; 5xx outside the documented cases: {undocumented_5xx} ({})",
        match (counters.grace, counters.only_class) {
            (Some(grace), None) => format!(
                "documented: 503 while the endpoint fails, or up to {:.0} s after, the failure cooldown plus one call and one queue wait",
                grace.as_secs_f64()
            ),
            (Some(grace), Some(_)) => format!(
                "documented: 503 only for a kid no cached key carries while the key set cannot be fetched, or up to {:.0} s after (the next fetch), and with no usable key at all, which cannot happen once the keys are warmed up",
                grace.as_secs_f64()
            ),
            (None, _) => "documented: no 503".to_owned(),
        }
    );

    if wrong_accepts > 0 {
        failures.push(format!("{wrong_accepts} wrong accepts"));
    }
    if undocumented_5xx > 0 {
        failures.push(format!("{undocumented_5xx} undocumented 5xx"));
    }
    // Requests must not queue behind a slow call: the p99 stays under the fetch timeout.
    let slow_limit = timeout_us;
    if slow.quantile(0.99) >= slow_limit {
        failures.push(format!(
            "p99 while slow {} ms is not under {} ms",
            millis(slow.quantile(0.99)),
            millis(slow_limit)
        ));
    }
    if calls > bound {
        failures.push(format!("{calls} JWKS fetches over the bound {bound}"));
    }
    if let Authority::Introspection(endpoint) = &run.authority {
        let most = endpoint.max_in_flight.load(Ordering::SeqCst);
        if most > MAX_CONCURRENT_CALLS as u64 {
            failures.push(format!("{most} calls in flight at once"));
        }
    }
    if growth.abs() > 10.0 {
        failures.push(format!("RSS changed by {growth:.1} % in the steady state"));
    }
    if records.len() < counters.phases.len() {
        failures.push("the schedule has not finished".to_owned());
    }
    let names: Vec<&str> = counters.phases.iter().map(|phase| phase.name).collect();
    let _ = writeln!(out, "\nPHASES {}", names.join(","));
    for failure in &failures {
        let _ = writeln!(out, "CHECK FAIL {failure}");
    }
    let _ = writeln!(
        out,
        "VERDICT {}",
        if failures.is_empty() { "PASS" } else { "FAIL" }
    );
    out
}

/// The in-process introspection endpoint.
struct Endpoint {
    /// The layer's fetch timeout.
    client_timeout: Duration,
    behaviour: Mutex<EndpointBehaviour>,
    calls: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

#[derive(Clone)]
enum EndpointBehaviour {
    Normal,
    Status(u16),
    Delay(Duration),
    Garbage,
}

struct InFlight<'a>(&'a Endpoint);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn introspect(State(endpoint): State<Arc<Endpoint>>, body: String) -> Response {
    endpoint.calls.fetch_add(1, Ordering::SeqCst);
    let now = endpoint.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    endpoint.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let guard = InFlight(&endpoint);
    let behaviour = endpoint.behaviour.lock().unwrap().clone();
    match behaviour {
        EndpointBehaviour::Normal => {}
        EndpointBehaviour::Status(status) => {
            return StatusCode::from_u16(status).unwrap().into_response();
        }
        EndpointBehaviour::Delay(delay) => {
            // The layer gives up after its fetch timeout, and its call slot is free from
            // then on, even if this handler is not dropped at once.
            tokio::time::sleep(endpoint.client_timeout).await;
            drop(guard);
            tokio::time::sleep(delay.saturating_sub(endpoint.client_timeout)).await;
        }
        EndpointBehaviour::Garbage => return "<html>not json</html>".into_response(),
    }
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let answer = introspection_answer(&token, unix_now());
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

async fn hello() -> &'static str {
    "hello"
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

struct Options {
    mode: String,
    tokens_file: String,
    duration: Duration,
    fetch_timeout: Duration,
    fresh: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        mode: "jwt".to_owned(),
        tokens_file: "soak-tokens.txt".to_owned(),
        duration: Duration::from_secs(60),
        fetch_timeout: Duration::from_secs(1),
        fresh: 300_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--mode" if value == "jwt" || value == "introspection" => options.mode = value,
            "--tokens-file" => options.tokens_file = value,
            "--duration" => options.duration = Duration::from_secs(number()?),
            "--fetch-timeout-ms" => options.fetch_timeout = Duration::from_millis(number()?),
            "--fresh" => options.fresh = usize::try_from(number()?).map_err(|e| e.to_string())?,
            _ => return Err(format!("unknown option {flag} {value}")),
        }
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    // The crate's warnings (failed fetches, failed introspection calls) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SOAK_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let threads = std::env::var("SOAK_SERVER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(run(options))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Changes one character in the middle of a token's signature.
fn tamper(token: &str) -> String {
    let signature_start = token.rfind('.').unwrap() + 1;
    let middle = signature_start + (token.len() - signature_start) / 2;
    let mut bytes = token.as_bytes().to_vec();
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Where minted tokens go: one `CLASS TOKEN` line each, written as they are minted so
/// that the server never holds them (its RSS is the layer's, not the token list's).
struct TokenFile(std::io::BufWriter<std::fs::File>);

impl TokenFile {
    fn emit(&mut self, class: &str, token: &str) -> std::io::Result<()> {
        writeln!(self.0, "{class} {token}")
    }
}

const JWT_CLASSES: [&str; 8] = [
    "reused",
    "fresh",
    "fresh_rotated",
    "expired",
    "bad_sig",
    "unknown_kid",
    "alg_hs256",
    "alg_none",
];
const JWT_MIX: &str =
    "reused=60 fresh=15 fresh_rotated=5 expired=4 bad_sig=4 unknown_kid=4 alg_hs256=4 alg_none=4";
const INTROSPECTION_CLASSES: [&str; 5] = ["reused", "fresh", "expired", "inactive", "forged"];
const INTROSPECTION_MIX: &str = "reused=60 fresh=20 expired=5 inactive=5 forged=10";

/// Mints the JWT classes; returns the key set to serve before the rotation and the one
/// to serve from it on (old and new keys).
async fn jwt_tokens(
    issuer: &TestIssuer,
    options: &Options,
    file: &mut TokenFile,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let hour = Duration::from_secs(3600);
    let now = unix_now();
    let old_keys = issuer.jwks();
    let alternate = |index: usize, even, odd| {
        if index.is_multiple_of(2) { even } else { odd }
    };
    for index in 0..64 {
        let alg = alternate(index, SigningAlgorithm::RS256, SigningAlgorithm::ES256);
        file.emit("reused", &issuer.token().alg(alg).lifetime(hour).sign())?;
    }
    for index in 0..options.fresh {
        let alg = alternate(index, SigningAlgorithm::ES256, SigningAlgorithm::EdDSA);
        file.emit("fresh", &issuer.token().alg(alg).lifetime(hour).sign())?;
    }
    for index in 0..64 {
        let alg = alternate(index, SigningAlgorithm::RS256, SigningAlgorithm::ES256);
        let expired = issuer
            .token()
            .alg(alg)
            .claim("iat", now - 7200)
            .expires_in_secs(-3600)
            .sign();
        file.emit("expired", &expired)?;
        let valid = issuer.token().alg(alg).lifetime(hour).sign();
        file.emit("bad_sig", &tamper(&valid))?;
    }
    // Signed by an issuer whose keys are never published, with our iss and aud.
    let rogue = TestIssuer::start().await;
    for _ in 0..64 {
        let token = rogue
            .token()
            .alg(SigningAlgorithm::ES256)
            .claim("iss", issuer.url())
            .audience(issuer.audience())
            .lifetime(hour)
            .sign();
        file.emit("unknown_kid", &token)?;
    }
    // Algorithm confusion: HS256 keyed with the RSA public key (its JWK, or its modulus),
    // under the RSA key's kid; and "none".
    let rsa_kid = issuer.current_kid(SigningAlgorithm::RS256);
    let rsa_jwk = old_keys["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["kid"] == rsa_kid.as_str()))
        .cloned()
        .unwrap_or_default();
    let secrets = [
        rsa_jwk.to_string().into_bytes(),
        rsa_jwk["n"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
    ];
    for index in 0..64 {
        let claims = json!({
            "iss": issuer.url(), "aud": issuer.audience(), "sub": "forger",
            "client_id": "forger", "scope": "system/*.rs", "iat": now,
            "exp": now + 3600, "jti": format!("forged-{index}"),
        });
        let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": rsa_kid });
        file.emit(
            "alg_hs256",
            &sign_hs256(&secrets[index % 2], &header, &claims),
        )?;
        let none = json!({ "alg": "none", "typ": "at+jwt", "kid": rsa_kid });
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(none.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        file.emit("alg_none", &unsigned)?;
    }
    // The next generation of keys: published from the rotate phase on.
    issuer.rotate_keys();
    for index in 0..options.fresh / 3 {
        let alg = alternate(index, SigningAlgorithm::ES256, SigningAlgorithm::EdDSA);
        file.emit(
            "fresh_rotated",
            &issuer.token().alg(alg).lifetime(hour).sign(),
        )?;
    }
    let new_keys = issuer.jwks();
    let mut both = old_keys.clone();
    if let (Some(keys), Some(new)) = (both["keys"].as_array_mut(), new_keys["keys"].as_array()) {
        keys.extend(new.iter().cloned());
    }
    Ok((old_keys.to_string(), both.to_string()))
}

/// Mints the opaque tokens: the class is the token's first word, and the endpoint answers
/// by it, so that it keeps no table (`forged-…` tokens are unknown to it).
fn introspection_tokens(options: &Options, file: &mut TokenFile) -> std::io::Result<()> {
    let salt = unix_now();
    let mut emit = |class: &str, count: usize| {
        (0..count).try_for_each(|index| file.emit(class, &format!("{class}-{index:07}-{salt:x}")))
    };
    emit("reused", 64)?;
    emit("expired", 64)?;
    emit("inactive", 64)?;
    // Cheap to mint, and needed faster than JWTs: twice as many.
    emit("fresh", options.fresh * 2)?;
    emit("forged", options.fresh)
}

/// The endpoint's answer about an opaque token minted by [`introspection_tokens`].
fn introspection_answer(token: &str, now: i64) -> Value {
    let active = |exp: i64| {
        json!({
            "active": true, "exp": exp, "iat": now - 60, "scope": "system/*.rs",
            "client_id": "soak-client", "sub": "soak-client", "token_type": "Bearer",
        })
    };
    match token.split('-').next() {
        Some("reused" | "fresh") => active(now + 3600),
        // Active by the endpoint's word, but past its exp: the layer must refuse it.
        Some("expired") => active(now - 3600),
        // Revoked ("inactive"), or never issued ("forged").
        _ => json!({ "active": false }),
    }
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let issuer = Arc::new(TestIssuer::start().await);
    let builder = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .fetch_timeout(options.fetch_timeout)
        .refresh_policy(
            RefreshPolicy::default()
                .default_ttl(KEY_TTL)
                .unknown_kid_cooldown(UNKNOWN_KID_COOLDOWN)
                .failure_cooldown(FAILURE_COOLDOWN),
        );
    let mut file = TokenFile(std::io::BufWriter::new(std::fs::File::create(
        &options.tokens_file,
    )?));
    let (classes, mix, layer, authority, phases) = if options.mode == "jwt" {
        let (old_keys, both_keys) = jwt_tokens(&issuer, &options, &mut file).await?;
        issuer.set_jwks_behaviour(JwksBehaviour::Body(old_keys.clone()));
        let layer = builder.build()?;
        layer.warm_up().await?;
        let authority = Authority::Jwt {
            issuer: Arc::clone(&issuer),
            old_keys,
            both_keys,
        };
        (
            JWT_CLASSES.to_vec(),
            JWT_MIX,
            layer,
            authority,
            JWT_PHASES.to_vec(),
        )
    } else {
        introspection_tokens(&options, &mut file)?;
        let endpoint = Arc::new(Endpoint {
            client_timeout: options.fetch_timeout,
            behaviour: Mutex::new(EndpointBehaviour::Normal),
            calls: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        });
        let endpoint_url = serve(
            Router::new()
                .route("/introspect", post(introspect))
                .with_state(Arc::clone(&endpoint)),
        )
        .await?;
        let layer = builder
            .introspection(
                Introspection::new(IntrospectionAuth::basic("resource-server", "rs-secret"))
                    .endpoint(format!("{endpoint_url}/introspect"))
                    .failure_cooldown(FAILURE_COOLDOWN)
                    .max_concurrent_calls(MAX_CONCURRENT_CALLS)
                    .max_queue_wait(MAX_QUEUE_WAIT),
            )
            .build()?;
        (
            INTROSPECTION_CLASSES.to_vec(),
            INTROSPECTION_MIX,
            layer,
            Authority::Introspection(endpoint),
            INTROSPECTION_PHASES.to_vec(),
        )
    };
    file.0.flush()?;
    drop(file);

    // A 503 may follow the end of a failing phase: for introspection by the failure
    // cooldown, plus a call (the fetch timeout) and a queue wait that started just before
    // it ended; for an unknown `kid` while the key set cannot be fetched, until the next
    // fetch succeeds (after the longest of the key TTL and the cooldowns, plus a call).
    let (grace, only_class) = if options.mode == "introspection" {
        (
            FAILURE_COOLDOWN + options.fetch_timeout + MAX_QUEUE_WAIT,
            None,
        )
    } else {
        (
            KEY_TTL.max(FAILURE_COOLDOWN).max(UNKNOWN_KID_COOLDOWN) + options.fetch_timeout,
            Some("unknown_kid"),
        )
    };
    let counters = Arc::new(Counters::new(classes, phases, Some(grace), only_class));
    let verifier_layer = layer.clone();
    let run = Arc::new(Run {
        counters: Arc::clone(&counters),
        authority,
        duration: options.duration,
        fetch_timeout: options.fetch_timeout,
        started: AtomicBool::new(false),
        records: Mutex::new(Vec::new()),
        rss_before_kib: AtomicU64::new(0),
        cached_tokens: Box::new(move || {
            verifier_layer
                .issuers()
                .iter()
                .map(|verifier| verifier.cached_tokens())
                .sum::<u64>()
        }),
    });
    let api = serve(
        Router::new()
            .route("/fhir/Patient/{id}", get(hello))
            .layer(layer)
            .layer(from_fn_with_state(counters, count)),
    )
    .await?;
    let control = serve(
        Router::new()
            .route("/start", get(start))
            .route("/report", get(report))
            .with_state(run),
    )
    .await?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "API {api}/fhir/Patient/1")?;
    writeln!(out, "CONTROL {control}")?;
    writeln!(out, "MIX {mix}")?;
    writeln!(out, "READY")?;
    out.flush()?;
    drop(out);
    // Serve until the benchmark script kills the process.
    std::future::pending::<()>().await;
    Ok(())
}
