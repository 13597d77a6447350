//! The arithmetic of the paired CPU-time benchmarks (`--bench overhead`, `--bench fresh`):
//! CPU time per call over a block of calls, and percentiles of the per-block figures.

use criterion::measurement::Measurement as _;

use crate::cpu_time::ThreadCpuTime;

/// CPU time per call of `f` in µs, over `n` calls.
pub fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let started = ThreadCpuTime.start();
    for _ in 0..n {
        f();
    }
    ThreadCpuTime.end(started).as_nanos() as f64 / f64::from(n) / 1e3
}

/// The `p` percentile (0 to 1) of `values`, the nearest rank.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * p).round() as usize;
    values[index]
}
