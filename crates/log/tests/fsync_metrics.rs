//! The log's fsyncs show up in `fjord_fsync_duration_seconds`, recorded
//! with a test recorder installed on this thread only.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_log::batch::{BatchBuilder, NewRecord};
use fjord_log::{AppendOrigin, Durability, Log, LogConfig, ManualClock};
use fjord_metrics_testing::TestRecorder;

const FSYNC: &str = "fjord_fsync_duration_seconds";

fn batch(value: &str) -> bytes::BytesMut {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    b.push(&NewRecord { value: Some(Bytes::copy_from_slice(value.as_bytes())), ..Default::default() });
    b.build()
}

/// A log with one batch in it already, so that the leader epoch checkpoint
/// (written on an epoch's first append, with fsyncs of its own) is behind.
fn open(dir: &std::path::Path, durability: Durability) -> Log {
    let cfg = LogConfig { durability, ..LogConfig::default() };
    let log = Log::open(dir, cfg, Arc::new(ManualClock::new(1_700_000_000_000))).unwrap();
    log.append(batch("warm-up"), AppendOrigin::Leader { epoch: 0 }).unwrap();
    log
}

#[test]
fn every_write_durability_records_one_fsync_per_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::EveryWrite);
    let rec = TestRecorder::default();
    metrics::with_local_recorder(&rec, || {
        log.append(batch("a"), AppendOrigin::Leader { epoch: 0 }).unwrap();
        log.append(batch("b"), AppendOrigin::Leader { epoch: 0 }).unwrap();
    });
    let seen = rec.observations(FSYNC, &[]);
    assert_eq!(seen.len(), 2, "one fdatasync per append: {seen:?}");
    assert!(seen.iter().all(|s| s.is_finite() && *s >= 0.0), "{seen:?}");
    assert_eq!(rec.counter("fjord_fsync_errors_total", &[]), 0);
}

#[test]
fn group_commit_and_interval_flushes_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let group = open(&dir.path().join("group"), Durability::GroupCommit);
    let interval = open(&dir.path().join("interval"), Durability::Interval(Duration::from_secs(1)));
    let rec = TestRecorder::default();
    metrics::with_local_recorder(&rec, || {
        // Group commit: the append waits for one round that covers it; a
        // later wait for the same offset finds it durable already.
        let info = group.append(batch("a"), AppendOrigin::Leader { epoch: 0 }).unwrap();
        assert_eq!(rec.observations(FSYNC, &[]).len(), 1);
        group.wait_durable(info.last_offset + 1).unwrap();
        assert_eq!(rec.observations(FSYNC, &[]).len(), 1);
        // Interval: nothing until the owner flushes.
        interval.append(batch("b"), AppendOrigin::Leader { epoch: 0 }).unwrap();
        assert_eq!(rec.observations(FSYNC, &[]).len(), 1);
        interval.flush().unwrap();
        assert_eq!(rec.observations(FSYNC, &[]).len(), 2);
    });
}

#[test]
fn nothing_is_recorded_without_a_recorder() {
    // The facade without a recorder is a no-op: appends work as before.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), Durability::EveryWrite);
    log.append(batch("a"), AppendOrigin::Leader { epoch: 0 }).unwrap();
    assert_eq!(log.log_end_offset(), 2);
}
