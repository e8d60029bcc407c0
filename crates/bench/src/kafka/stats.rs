//! Counters and latency histograms shared by the workers, and the reports
//! built from them.
//!
//! Counters are cumulative atomics; the reporter takes differences. The
//! latency histograms (microseconds, HDR, 3 significant digits) hold one
//! report interval: the reporter swaps them out, prints the interval, and
//! adds them to the whole-run histograms once the warm-up is over.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

/// Highest latency a histogram holds (one hour, in µs); larger values are
/// clamped to it.
const MAX_US: u64 = 3_600_000_000;

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records `count` samples of `us` microseconds.
pub(crate) fn record(h: &mut Histogram<u64>, us: u64, count: u64) {
    // Cannot fail: the value is clamped into the histogram's range.
    let _ = h.record_n(us.clamp(1, MAX_US), count);
}

/// Shared by every producer and consumer of a run.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Messages acknowledged by the broker (sent, for acks=0).
    pub(crate) pub_msgs: AtomicU64,
    /// Payload bytes of those messages.
    pub(crate) pub_bytes: AtomicU64,
    /// Messages the broker refused or that failed to send.
    pub(crate) pub_errors: AtomicU64,
    /// Messages consumed.
    pub(crate) cons_msgs: AtomicU64,
    /// Payload bytes of those messages.
    pub(crate) cons_bytes: AtomicU64,
    /// Publish latency (send to acknowledgement), this interval.
    pub(crate) pub_latency: Mutex<Histogram<u64>>,
    /// End-to-end latency (produce timestamp to consume), this interval.
    pub(crate) e2e_latency: Mutex<Histogram<u64>>,
    /// Producers and consumers that stopped with an error; the run ends
    /// early when one does.
    pub(crate) failed_workers: AtomicU64,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            pub_msgs: AtomicU64::new(0),
            pub_bytes: AtomicU64::new(0),
            pub_errors: AtomicU64::new(0),
            cons_msgs: AtomicU64::new(0),
            cons_bytes: AtomicU64::new(0),
            pub_latency: Mutex::new(new_histogram()),
            e2e_latency: Mutex::new(new_histogram()),
            failed_workers: AtomicU64::new(0),
        }
    }

    pub(crate) fn published(&self, msgs: u64, bytes: u64) {
        self.pub_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.pub_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn consumed(&self, msgs: u64, bytes: u64) {
        self.cons_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.cons_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds a worker's local histogram of publish latencies and resets it.
    pub(crate) fn merge_pub_latency(&self, local: &mut Histogram<u64>) {
        merge(&self.pub_latency, local);
    }

    /// Adds a worker's local histogram of end-to-end latencies and resets it.
    pub(crate) fn merge_e2e_latency(&self, local: &mut Histogram<u64>) {
        merge(&self.e2e_latency, local);
    }

    pub(crate) fn counters(&self) -> Counters {
        Counters {
            pub_msgs: self.pub_msgs.load(Ordering::Relaxed),
            pub_bytes: self.pub_bytes.load(Ordering::Relaxed),
            pub_errors: self.pub_errors.load(Ordering::Relaxed),
            cons_msgs: self.cons_msgs.load(Ordering::Relaxed),
            cons_bytes: self.cons_bytes.load(Ordering::Relaxed),
        }
    }

    /// Takes this interval's histograms, leaving empty ones.
    pub(crate) fn take_histograms(&self) -> (Histogram<u64>, Histogram<u64>) {
        let take = |m: &Mutex<Histogram<u64>>| {
            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *g, new_histogram())
        };
        (take(&self.pub_latency), take(&self.e2e_latency))
    }
}

fn merge(shared: &Mutex<Histogram<u64>>, local: &mut Histogram<u64>) {
    if local.is_empty() {
        return;
    }
    let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
    // Same bounds on both sides: adding cannot fail.
    let _ = g.add(&*local);
    drop(g);
    local.reset();
}

/// A snapshot of the cumulative counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) pub_msgs: u64,
    pub(crate) pub_bytes: u64,
    pub(crate) pub_errors: u64,
    pub(crate) cons_msgs: u64,
    pub(crate) cons_bytes: u64,
}

impl Counters {
    pub(crate) fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            pub_msgs: self.pub_msgs - earlier.pub_msgs,
            pub_bytes: self.pub_bytes - earlier.pub_bytes,
            pub_errors: self.pub_errors - earlier.pub_errors,
            cons_msgs: self.cons_msgs - earlier.cons_msgs,
            cons_bytes: self.cons_bytes - earlier.cons_bytes,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) avg: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) p9999: f64,
    pub(crate) max: f64,
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1e3;
        Latency {
            count: h.len(),
            avg: h.mean() / 1e3,
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            p9999: ms(h.value_at_quantile(0.9999)),
            max: ms(h.max()),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        serde_json::json!({
            "count": self.count, "avg": r(self.avg), "p50": r(self.p50), "p99": r(self.p99),
            "p99_9": r(self.p999), "p99_99": r(self.p9999), "max": r(self.max),
        })
    }
}

/// `1234567.8` → `1,234,568`.
pub(crate) fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_percentiles() {
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(12.0), "12");
        let mut h = new_histogram();
        for v in 1..=1000 {
            record(&mut h, v * 10, 1);
        }
        record(&mut h, u64::MAX, 1);
        let l = Latency::of(&h);
        assert_eq!(l.count, 1001);
        assert!((l.p50 - 5.0).abs() < 0.05, "{l:?}");
        assert!(l.max >= 3_600_000.0 * 0.99);
    }

    #[test]
    fn merge_resets_local() {
        let s = Stats::new();
        let mut local = new_histogram();
        record(&mut local, 100, 5);
        s.merge_e2e_latency(&mut local);
        assert!(local.is_empty());
        let (p, e) = s.take_histograms();
        assert_eq!((p.len(), e.len()), (0, 5));
    }
}
