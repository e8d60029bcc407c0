//! Traffic counters: records and bytes produced and fetched.
//!
//! Plain atomics, updated on the produce and fetch paths (one relaxed add
//! each) and read by the admin API and the metrics endpoint, which turn
//! them into rates and Prometheus counters. Each partition has its own
//! counters (per-topic series are their sums); the broker keeps totals
//! that survive topic deletion, so broker-wide rates never go negative.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters of one partition, or of the whole broker.
#[derive(Debug, Default)]
pub struct Traffic {
    records_in: AtomicU64,
    bytes_in: AtomicU64,
    records_out: AtomicU64,
    bytes_out: AtomicU64,
    last_append_ms: AtomicI64,
}

/// A point-in-time copy of [`Traffic`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// Records appended by producers.
    pub records_in: u64,
    /// Batch bytes appended by producers.
    pub bytes_in: u64,
    /// Records served to consumers.
    pub records_out: u64,
    /// Bytes served to consumers.
    pub bytes_out: u64,
    /// When the last append was acknowledged (ms since the epoch), 0 if never.
    pub last_append_ms: i64,
}

impl Traffic {
    pub(crate) fn produced(&self, records: u64, bytes: u64, now_ms: i64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.last_append_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub(crate) fn fetched(&self, records: u64, bytes: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            last_append_ms: self.last_append_ms.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Add for TrafficSnapshot {
    type Output = TrafficSnapshot;

    fn add(self, o: TrafficSnapshot) -> TrafficSnapshot {
        TrafficSnapshot {
            records_in: self.records_in + o.records_in,
            bytes_in: self.bytes_in + o.bytes_in,
            records_out: self.records_out + o.records_out,
            bytes_out: self.bytes_out + o.bytes_out,
            last_append_ms: self.last_append_ms.max(o.last_append_ms),
        }
    }
}
