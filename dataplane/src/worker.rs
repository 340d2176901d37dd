//! What the live engines' workers share, whichever backend they poll: the cores they are pinned
//! to, the wall clock they stamp frames with, their latency histograms and the summary of a
//! merged one, how long they spin before sleeping, and the lock on their reports.
#![forbid(unsafe_code)]

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Empty polls in a row before an idle worker starts sleeping (when configured to).
pub(crate) const IDLE_POLLS_BEFORE_SLEEP: u32 = 64;

/// Highest latency the histograms hold: 60 s.
const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// A worker's latency histogram: 1 ns to 60 s, 3 significant digits, fixed size (recording
/// never allocates).
pub(crate) fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds");
    h.auto(false);
    h
}

/// The wall clock, ns since the Unix epoch: what IOAM timestamps and postcards carry.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The cores workers go on: `configured`, or every core but the first (left to the control
/// plane and the kernel), or the only one.
pub(crate) fn cores(configured: &[usize]) -> Vec<usize> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let all: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if all.len() > 1 {
        all[1..].to_vec()
    } else {
        all
    }
}

/// A worker's report: a panicking holder leaves it readable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Latency quantiles, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

impl LatencySummary {
    /// The quantiles of a (merged) histogram.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let q = |x: f64| h.value_at_quantile(x);
        LatencySummary {
            count: h.len(),
            p50_ns: q(0.5),
            p90_ns: q(0.9),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: h.max(),
            mean_ns: if h.is_empty() { 0.0 } else { h.mean() },
        }
    }
}
