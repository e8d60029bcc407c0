use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::batch::{BatchBuilder, NewRecord};
use crate::clock::ManualClock;
use crate::config::{Durability, LogConfig};
use crate::error::LogError;
use crate::log::{AppendOrigin, Log, ReadBound};

const T0: i64 = 1_700_000_000_000;

fn batch(values: &[&str]) -> BytesMut {
    let mut b = BatchBuilder::new(T0);
    for v in values {
        b.push(&NewRecord { value: Some(Bytes::copy_from_slice(v.as_bytes())), ..Default::default() });
    }
    b.build()
}

fn leader() -> AppendOrigin {
    AppendOrigin::Leader { epoch: 0 }
}

fn config(durability: Durability) -> LogConfig {
    LogConfig { segment_bytes: 1024, index_interval_bytes: 128, durability, ..LogConfig::default() }
}

fn values(log: &Log) -> Vec<String> {
    let (mut out, mut next) = (Vec::new(), log.log_start_offset());
    while next < log.log_end_offset() {
        let recs = log.read_records(next, 1 << 20, ReadBound::LogEnd).unwrap();
        let Some(last) = recs.last() else { break };
        next = last.offset + 1;
        out.extend(recs.into_iter().map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
    }
    out
}

fn open(dir: &std::path::Path, cfg: LogConfig) -> Log {
    Log::open(dir, cfg, Arc::new(ManualClock::new(T0))).unwrap()
}

#[test]
fn a_poisoned_log_recovers_in_place_keeping_exactly_what_was_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config(Durability::GroupCommit));
    // Several segments, so the cut is not at the start of the only one.
    for i in 0..40 {
        log.append(batch(&[&format!("ok-{i}")]), leader()).unwrap();
    }
    let durable = log.log_end_offset();
    let old_reader = log.read(0, 1 << 20, ReadBound::LogEnd).unwrap().slice.unwrap();
    assert_eq!(log.recover().unwrap(), None, "a healthy log is left alone");

    log.fail_fsync.store(true, Ordering::SeqCst);
    let err = log.append(batch(&["lost"]), leader()).unwrap_err();
    assert!(matches!(err, LogError::Poisoned { .. }), "{err}");
    assert!(log.poisoned().is_some_and(|r| r.contains("injected EIO")));
    // Written to the page cache but never fsynced: must not survive.
    assert_eq!(log.log_end_offset(), durable + 1);

    // While the cause persists, recovery succeeds but the next fsync fails
    // again: nothing is ever acknowledged.
    log.recover().unwrap();
    assert!(log.append(batch(&["still-failing"]), leader()).is_err());

    log.fail_fsync.store(false, Ordering::SeqCst);
    let outcome = log.recover().unwrap().unwrap();
    assert_eq!(outcome.log_end, durable);
    assert!(log.poisoned().is_none());
    assert_eq!(log.log_end_offset(), durable);
    assert_eq!(log.durable_offset(), durable);
    let info = log.append(batch(&["after"]), leader()).unwrap();
    assert_eq!(info.base_offset, durable, "the cut offsets are reused: they were never acknowledged");
    let mut expected: Vec<String> = (0..40).map(|i| format!("ok-{i}")).collect();
    expected.push("after".into());
    assert_eq!(values(&log), expected);
    // A slice read before the recovery stays readable.
    assert!(!old_reader.to_bytes().unwrap().is_empty());

    // And the result is what a restart sees.
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), config(Durability::GroupCommit));
    assert_eq!(values(&log), expected);
}

#[test]
fn interval_durability_recovers_to_the_last_flush() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config(Durability::Interval(Duration::from_secs(3600))));
    log.append(batch(&["flushed"]), leader()).unwrap();
    log.flush().unwrap();
    log.append(batch(&["unflushed"]), leader()).unwrap();
    log.fail_fsync.store(true, Ordering::SeqCst);
    assert!(log.flush().is_err());
    assert!(log.append(batch(&["refused"]), leader()).is_err());
    log.fail_fsync.store(false, Ordering::SeqCst);
    let outcome = log.recover().unwrap().unwrap();
    // Interval durability promised nothing after the last flush.
    assert_eq!((outcome.previous_log_end, outcome.log_end), (2, 1));
    assert_eq!(values(&log), vec!["flushed".to_string()]);
    log.append(batch(&["next"]), leader()).unwrap();
    log.flush().unwrap();
    assert_eq!(values(&log), vec!["flushed".to_string(), "next".to_string()]);
}

#[test]
fn a_write_made_before_a_recovery_is_never_acknowledged_by_a_later_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config(Durability::GroupCommit));
    let generation = log.sync.lock().generation;
    log.fail_fsync.store(true, Ordering::SeqCst);
    assert!(log.append(batch(&["lost"]), leader()).is_err());
    log.fail_fsync.store(false, Ordering::SeqCst);
    log.recover().unwrap().unwrap();
    // New writes reach the offset the lost one had; its wait must still fail.
    log.append(batch(&["new"]), leader()).unwrap();
    assert!(log.durable_offset() >= 1);
    let err = log.wait_durable_in(1, generation).unwrap_err();
    assert!(err.to_string().contains("recovered"), "{err}");
}
