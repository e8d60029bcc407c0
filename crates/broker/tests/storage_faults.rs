//! Storage failures: broken topics at start, poisoned logs recovering.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig, BrokerError, CommitIdentity, CommittedOffset, TopicConfig, TopicPartition};
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};

fn batch(values: &[&str]) -> BytesMut {
    let mut b = BatchBuilder::new(1);
    for v in values {
        b.push(&NewRecord { value: Some(Bytes::copy_from_slice(v.as_bytes())), ..Default::default() });
    }
    b.build()
}

async fn open(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(BrokerConfig::new(dir), Arc::new(SystemClock)).await.unwrap()
}

fn tp(t: &str, p: u32) -> TopicPartition {
    TopicPartition::new(t, p)
}

async fn consume(b: &Broker, tp: &TopicPartition) -> Vec<String> {
    let (mut out, mut next) = (Vec::new(), 0);
    loop {
        let recs = b.read_records(tp, next, 1 << 20).await.unwrap();
        let Some(last) = recs.last() else { return out };
        next = last.offset + 1;
        out.extend(recs.into_iter().map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
    }
}

fn offset(o: i64) -> CommittedOffset {
    CommittedOffset { offset: o, leader_epoch: 0, metadata: String::new(), commit_timestamp: 0 }
}

async fn commit(b: &Broker, group: &str, t: &TopicPartition, o: i64) -> Result<(), BrokerError> {
    let who = CommitIdentity { generation_id: -1, ..Default::default() };
    b.commit_offsets(group, &who, vec![(t.clone(), offset(o))]).await.map(|_| ())
}

fn committed(b: &Broker, group: &str, t: &TopicPartition) -> Option<i64> {
    b.fetch_offsets(group, Some(std::slice::from_ref(t)))[0].1.as_ref().map(|o| o.offset)
}

#[tokio::test]
async fn a_topic_that_cannot_be_loaded_is_offline_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("good", 1, TopicConfig::default()).await.unwrap();
    b.create_topic("broken", 2, TopicConfig::default()).await.unwrap();
    b.create_topic("garbled", 1, TopicConfig::default()).await.unwrap();
    b.produce(&tp("good", 0), batch(&["g"])).await.unwrap();
    b.produce(&tp("broken", 1), batch(&["a", "b"])).await.unwrap();
    b.shutdown().await.unwrap();
    drop(b);

    // Corrupt partition 1 of `broken`: a second segment overlapping the first
    // (the log refuses to guess which is right), and `garbled`'s topic.json.
    let topics = dir.path().join("topics");
    let p1 = topics.join("broken/1");
    std::fs::copy(p1.join("00000000000000000000.log"), p1.join("00000000000000000001.log")).unwrap();
    std::fs::write(topics.join("garbled/topic.json"), b"{ not json").unwrap();
    // An interrupted creation: a directory without topic.json.
    std::fs::create_dir_all(topics.join("half/0")).unwrap();

    let b = open(dir.path()).await;
    assert_eq!(consume(&b, &tp("good", 0)).await, vec!["g"]);
    b.produce(&tp("good", 0), batch(&["more"])).await.unwrap();
    let offline = b.offline_topics();
    assert_eq!(offline.keys().cloned().collect::<Vec<_>>(), vec!["broken".to_string(), "garbled".to_string()]);
    assert!(offline["broken"].contains("overlaps"), "{}", offline["broken"]);
    assert!(offline["garbled"].contains("corrupt"), "{}", offline["garbled"]);
    assert!(!topics.join("half").exists(), "an interrupted creation is removed at start");

    // Served by no one, with a storage error rather than "unknown".
    let err = b.produce(&tp("broken", 0), batch(&["x"])).await.unwrap_err();
    assert!(matches!(err, BrokerError::TopicOffline { .. }), "{err}");
    // Never created over, explicitly or by auto-creation, and its data stays.
    let err = b.create_topic("broken", 1, TopicConfig::default()).await.unwrap_err();
    assert!(matches!(err, BrokerError::TopicOffline { .. }), "{err}");
    let err = b.partition_or_create(&tp("broken", 0)).await.unwrap_err();
    assert!(matches!(err, BrokerError::TopicOffline { .. }), "{err}");
    assert!(p1.join("00000000000000000000.log").exists());
    assert!(topics.join("broken/topic.json").exists());

    // Deleting it is how an operator gives the data up; then the name is free.
    b.delete_topic("broken").await.unwrap();
    assert!(!b.offline_topics().contains_key("broken"));
    b.create_topic("broken", 1, TopicConfig::default()).await.unwrap();
    assert!(consume(&b, &tp("broken", 0)).await.is_empty());
}

#[tokio::test]
async fn a_poisoned_offsets_log_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    let t0 = tp("t", 0);
    commit(&b, "before", &t0, 7).await.unwrap();
    commit(&b, "g", &t0, 1).await.unwrap();

    // The disk fails an fsync (as when it is full): the commit is refused
    // and so is every later one while the log is poisoned. The group's
    // offsets live on one `__fjord_offsets` partition.
    let index = b.offsets().shard_of("g").expect("offsets loaded");
    let shard = b.topic(fjord_broker::placement::OFFSETS_TOPIC).unwrap().partition(index).unwrap();
    shard.log_for_tests().inject_fsync_failure(true);
    let err = commit(&b, "g", &t0, 2).await.unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
    assert!(commit(&b, "g", &t0, 3).await.is_err());
    let poisoned = b.poisoned_logs();
    assert_eq!(poisoned.len(), 1);
    assert_eq!(poisoned[0].log, format!("__fjord_offsets-{index}"));
    assert!(poisoned[0].reason.contains("injected EIO"), "{}", poisoned[0].reason);
    assert_eq!(committed(&b, "g", &t0), Some(1), "a refused commit is not applied");

    // A recovery attempt while the cause persists leaves it refusing.
    b.recover_poisoned_logs().await;
    assert!(commit(&b, "g", &t0, 4).await.is_err());

    // Space is back: the next round recovers it and commits succeed again.
    shard.log_for_tests().inject_fsync_failure(false);
    assert_eq!(b.recover_poisoned_logs().await, 1);
    assert!(b.poisoned_logs().is_empty());
    assert_eq!(committed(&b, "before", &t0), Some(7));
    assert_eq!(committed(&b, "g", &t0), Some(1));
    commit(&b, "g", &t0, 5).await.unwrap();
    assert_eq!(committed(&b, "g", &t0), Some(5));

    // Nothing refused reappears and nothing acknowledged is lost on restart.
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(dir.path()).await;
    assert_eq!(committed(&b, "before", &t0), Some(7));
    assert_eq!(committed(&b, "g", &t0), Some(5));
}

#[tokio::test]
async fn a_poisoned_partition_recovers_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = BrokerConfig::new(dir.path());
    cfg.log_recovery_interval = std::time::Duration::from_millis(20);
    let b = Broker::open(cfg, Arc::new(SystemClock)).await.unwrap();
    let _tasks = b.start_background_tasks();
    b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    let t0 = tp("t", 0);
    b.produce(&t0, batch(&["kept"])).await.unwrap();
    let log = b.partition(&t0).unwrap().log_for_tests().clone();
    log.inject_fsync_failure(true);
    assert!(b.produce(&t0, batch(&["refused"])).await.is_err());
    log.inject_fsync_failure(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !b.poisoned_logs().is_empty() {
        assert!(std::time::Instant::now() < deadline, "not recovered: {:?}", b.poisoned_logs());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(b.produce(&t0, batch(&["after"])).await.unwrap().base_offset, 1);
    assert_eq!(consume(&b, &t0).await, vec!["kept", "after"]);
    b.shutdown().await.unwrap();
}

fn idempotent(value: &str, producer: i64, seq: i32) -> BytesMut {
    let mut b = BatchBuilder::new(1).producer(producer, 0, seq);
    b.push(&NewRecord { value: Some(Bytes::copy_from_slice(value.as_bytes())), ..Default::default() });
    b.build()
}

/// A write the log took but could not make durable (a full disk fails its
/// fsync) is "not committed" — possibly written, retriable — never a
/// storage error, which tells a Kafka client it was not written (librdkafka
/// then re-sends it under a bumped producer epoch: a duplicate if the
/// recovery kept it). Its idempotent retry after the recovery is written
/// once. Found by the fault-injection checker's disk-full fault.
#[tokio::test]
async fn a_write_that_cannot_be_made_durable_is_reported_as_possibly_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    let t0 = tp("t", 0);
    b.produce(&t0, idempotent("a", 9, 0)).await.unwrap();
    let log = b.topic("t").unwrap().partition(0).unwrap();
    log.log_for_tests().inject_fsync_failure(true);
    let err = b.produce(&t0, idempotent("b", 9, 1)).await.unwrap_err();
    assert!(matches!(err, BrokerError::NotCommitted { .. }), "{err:?}");
    // While the log is poisoned every write is refused before its
    // sequence is checked (the Kafka gateway answers that as a timeout
    // too, so pipelined batches never see OUT_OF_ORDER behind it).
    let again = b.produce(&t0, idempotent("b", 9, 1)).await.unwrap_err();
    assert!(matches!(again, BrokerError::Log { .. }), "{again:?}");
    let next = b.produce(&t0, idempotent("c", 9, 2)).await.unwrap_err();
    assert!(matches!(next, BrokerError::Log { .. }), "not OUT_OF_ORDER: {next:?}");
    let refused = b.produce(&t0, batch(&["z"])).await.unwrap_err();
    assert!(matches!(refused, BrokerError::Log { .. }), "{refused:?}");

    log.log_for_tests().inject_fsync_failure(false);
    assert_eq!(b.recover_poisoned_logs().await, 1);
    let retried = b.produce(&t0, idempotent("b", 9, 1)).await.unwrap();
    b.produce(&t0, idempotent("c", 9, 2)).await.unwrap();
    assert_eq!(consume(&b, &t0).await, ["a", "b", "c"]);
    assert_eq!(retried.base_offset, 1);
}
