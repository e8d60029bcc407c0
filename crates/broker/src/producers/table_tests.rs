//! The producer table is the log's: after restarts (clean or not), cuts,
//! retention and replica appends it holds what a replay of the log gives,
//! and what the log no longer holds it keeps from its snapshots.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_log::batch::{BatchBuilder, NewRecord};
use fjord_log::{Durability, Log, LogConfig, SystemClock};
use proptest::prelude::*;

use super::ProducerEntry;
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::{Broker, BrokerConfig, TopicConfig, TopicPartition};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn batch(producer: Option<(i64, i32)>, records: usize) -> BytesMut {
    let mut b = BatchBuilder::new(now());
    if let Some((pid, seq)) = producer {
        b = b.producer(pid, 0, seq);
    }
    for i in 0..records {
        b.push(&NewRecord { value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(40)))), ..Default::default() });
    }
    b.build()
}

fn small_segments() -> TopicConfig {
    TopicConfig::from_entries([("segment.bytes", "600")]).unwrap()
}

/// The table a replay of the whole log from its start gives, with the
/// aborted transactions its markers make.
fn replayed_with_aborts(log: &Log) -> ((u64, HashMap<i64, ProducerEntry>), Vec<fjord_log::AbortedTxn>) {
    let mut loaded = super::table::Loaded::empty_at(log.log_start_offset());
    let aborted = super::table::replay(log, &mut loaded).unwrap();
    (loaded.into_parts(), aborted)
}

#[tokio::test]
async fn producers_whose_batches_retention_deleted_are_known_after_an_unclean_restart() {
    // The state was rebuilt from the batches of the log's last million
    // offsets: a producer whose batches retention had deleted (or that was
    // idle for longer) became unknown, and any sequence of it was taken.
    let dir = tempfile::tempdir().unwrap();
    let t = TopicPartition::new("ps-retention", 0);
    let pid = {
        let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
        b.create_topic("ps-retention", 1, small_segments()).await.unwrap();
        let pid = b.allocate_producer_id().await.unwrap();
        for seq in 0..3 {
            b.produce(&t, batch(Some((pid, seq)), 1)).await.unwrap();
        }
        for _ in 0..40 {
            b.produce(&t, batch(None, 2)).await.unwrap();
        }
        let end = b.partition(&t).unwrap().log_end_offset();
        b.delete_records(&t, end - 2).await.unwrap();
        b.enforce_retention().await;
        let p = b.partition(&t).unwrap();
        assert!(p.log_start_offset() > 3, "the producer's batches are gone");
        let snapshots = p.log().snapshot_offsets().unwrap();
        assert!(!snapshots.is_empty(), "snapshots were saved at the rolls");
        assert!(
            snapshots.iter().filter(|o| **o <= p.log_start_offset()).count() <= 1,
            "retention keeps one snapshot at or below the log start: {snapshots:?}"
        );
        // Dropped without a shutdown: no snapshot at the log end.
        pid
    };
    let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    // A retry of the producer's last batch is its duplicate, a gap is
    // refused: the producer is known.
    let retried = b.produce(&t, batch(Some((pid, 2)), 1)).await.unwrap();
    assert_eq!(retried.base_offset, 2);
    let gap = b.produce(&t, batch(Some((pid, 5)), 1)).await;
    assert!(matches!(gap, Err(BrokerError::OutOfOrderSequence { .. })), "{gap:?}");
    b.produce(&t, batch(Some((pid, 3)), 1)).await.unwrap();
}

#[tokio::test]
async fn a_clean_shutdown_saves_the_state_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let t = TopicPartition::new("ps-clean", 0);
    let (pid, end) = {
        let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
        b.create_topic("ps-clean", 1, TopicConfig::default()).await.unwrap();
        let pid = b.allocate_producer_id().await.unwrap();
        b.produce(&t, batch(Some((pid, 0)), 3)).await.unwrap();
        let end = b.partition(&t).unwrap().log_end_offset();
        b.shutdown().await.unwrap();
        (pid, end)
    };
    let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    let p = b.partition(&t).unwrap();
    assert_eq!(p.log().snapshot_offsets().unwrap(), vec![end]);
    p.producers.ensure_loaded(p.log()).await.unwrap();
    let (at, entries) = p.producers.snapshot_for_tests().unwrap();
    assert_eq!(at, end);
    assert_eq!(entries[&pid].batches.back().map(|m| (m.first_seq, m.last_seq)), Some((0, 2)));
}

#[tokio::test]
async fn a_follower_keeps_its_producers_states_and_knows_them_when_elected() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    b.create_topic("ps-follower", 1, TopicConfig::default()).await.unwrap();
    let t = TopicPartition::new("ps-follower", 0);
    let p = b.partition(&t).unwrap();
    p.set_replica_role(false, &[]);
    for seq in 0..3 {
        let mut data = batch(Some((42, seq)), 1);
        fjord_log::batch::set_base_offset(&mut data, seq as u64);
        p.append_replica(data).await.unwrap().unwrap();
    }
    let (end, entries) = p.producers.snapshot_for_tests().expect("loaded by the first replica append");
    assert_eq!((end, entries[&42].batches.len()), (3, 3));
    p.set_replica_role(true, &[]);
    let retried = b.produce(&t, batch(Some((42, 2)), 1)).await.unwrap();
    assert_eq!(retried.base_offset, 2, "a retry of the old leader's batch is its duplicate");
    assert_eq!(p.log_end_offset(), 3);
    assert!(matches!(b.produce(&t, batch(Some((42, 4)), 1)).await, Err(BrokerError::OutOfOrderSequence { .. })));
}

#[tokio::test]
async fn idle_producers_expire() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    b.create_topic("ps-expiry", 1, TopicConfig::default()).await.unwrap();
    let t = TopicPartition::new("ps-expiry", 0);
    let p = b.partition(&t).unwrap();
    let old = {
        let mut b = BatchBuilder::new(now() - 2 * super::PRODUCER_ID_EXPIRATION.as_millis() as i64).producer(1, 0, 0);
        b.push(&NewRecord { value: Some(Bytes::from_static(b"old")), ..Default::default() });
        b.build()
    };
    b.produce(&t, old).await.unwrap();
    b.produce(&t, batch(Some((2, 0)), 1)).await.unwrap();
    assert_eq!(b.expire_producers(), 1);
    let (_, entries) = p.producers.snapshot_for_tests().unwrap();
    assert!(!entries.contains_key(&1) && entries.contains_key(&2));
    // Unknown again: it may start anywhere.
    b.produce(&t, batch(Some((1, 9)), 1)).await.unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    /// Batches in one write: each of producer `Some(p)` or of none, with
    /// its record count and kind (0 idempotent, 1 transactional, 2 an
    /// abort marker, 3 a commit marker; a producer's only).
    Write(Vec<(Option<u8>, u8, u8)>),
    /// Cut the log at this fraction (per mille) of its end.
    Cut(u16),
    /// Close (saving the state at the end) or drop, and open again.
    Reopen { clean: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((prop::option::of(0u8..3), 1u8..4, 0u8..4), 1..3).prop_map(Op::Write),
        1 => (0u16..1000).prop_map(Op::Cut),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

fn open(dir: &std::path::Path) -> Partition {
    let cfg = LogConfig {
        segment_bytes: 500,
        durability: Durability::Interval(std::time::Duration::from_secs(60)),
        ..LogConfig::default()
    };
    Partition::new(TopicPartition::new("prop", 0), Log::open(dir, cfg, Arc::new(SystemClock)).unwrap(), 0)
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    // Each producer's next sequence (the log may have lost some: a cut
    // makes the producer look as if it skipped, which the table records as
    // written; only the log's own order matters here).
    let mut next = [0i32; 3];
    for op in ops {
        match op {
            Op::Write(batches) => {
                let mut data = BytesMut::new();
                for (producer, records, kind) in batches {
                    if let (Some(i), 2 | 3) = (producer, kind) {
                        let m = fjord_log::control::TxnMarker { commit: kind == 3, coordinator_epoch: 0 };
                        data.extend_from_slice(&fjord_log::control::marker_batch(i64::from(i) + 100, 0, m, now()));
                        continue;
                    }
                    let producer = producer.map(|i| {
                        let seq = next[i as usize];
                        next[i as usize] += i32::from(records);
                        (i64::from(i) + 100, seq)
                    });
                    let mut b = batch(producer, records as usize);
                    if producer.is_some() && kind == 1 {
                        let mut t = BatchBuilder::new(now()).transactional(true);
                        if let Some((pid, seq)) = producer {
                            t = t.producer(pid, 0, seq);
                        }
                        for i in 0..records {
                            t.push(&NewRecord { value: Some(Bytes::from(format!("t{i}"))), ..Default::default() });
                        }
                        b = t.build();
                    }
                    data.extend_from_slice(&b);
                }
                p.append(data).await.unwrap().unwrap();
            }
            Op::Cut(per_mille) => {
                let to = p.log_end_offset() * u64::from(per_mille) / 1000;
                let end = p.truncate_to(to).unwrap();
                assert!(p.log().snapshot_offsets().unwrap().iter().all(|o| *o <= end), "a snapshot outlived the cut");
            }
            Op::Reopen { clean } => {
                if clean {
                    p.producers.save_at_end(p.log()).unwrap();
                    p.log().close().unwrap();
                }
                drop(p);
                p = open(dir.path());
            }
        }
        p.producers.ensure_loaded(p.log()).await.unwrap();
        let (state, aborted) = replayed_with_aborts(p.log());
        assert_eq!(p.producers.snapshot_for_tests().unwrap(), state);
        assert_eq!(p.aborted_transactions(0, u64::MAX), aborted, "the index holds what the log's aborts make");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever writes (transactions and their markers among them), cuts
    /// and restarts happen, the table equals a replay of the whole log,
    /// and the aborted-transaction index holds the entries that replay
    /// derives: snapshots and incremental applies never drift from it.
    #[test]
    fn the_table_is_always_a_replay_of_the_log(ops in prop::collection::vec(op(), 1..24)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
