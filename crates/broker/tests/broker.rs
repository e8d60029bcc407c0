//! Broker core behaviour against a real data directory.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_broker::{
    Broker, BrokerConfig, BrokerError, CommitIdentity, CommittedOffset, FetchPartition, FetchRequest, OffsetSpec,
    TopicConfig, TopicPartition,
};
use fjord_log::batch::{BatchBuilder, NewRecord};
use fjord_log::{LogError, ReadBound, SystemClock};

fn batch(values: &[&str], ts: i64) -> BytesMut {
    let mut b = BatchBuilder::new(ts);
    for v in values {
        b.push(&NewRecord { value: Some(Bytes::copy_from_slice(v.as_bytes())), ..Default::default() });
    }
    b.build()
}

async fn open(dir: &std::path::Path, f: impl FnOnce(&mut BrokerConfig)) -> Arc<Broker> {
    let mut cfg = BrokerConfig::new(dir);
    f(&mut cfg);
    Broker::open(cfg, Arc::new(SystemClock)).await.unwrap()
}

fn tp(t: &str, p: u32) -> TopicPartition {
    TopicPartition::new(t, p)
}

async fn consume(b: &Broker, tp: &TopicPartition, from: u64) -> Vec<String> {
    b.read_records(tp, from, 1 << 20)
        .await
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn fetch_req(tp: &TopicPartition, offset: u64, wait: Duration) -> FetchRequest {
    FetchRequest {
        partitions: vec![FetchPartition { tp: tp.clone(), offset, max_bytes: 1 << 20 }],
        max_wait: wait,
        min_bytes: 1,
        max_bytes: 1 << 20,
        bound: ReadBound::HighWatermark,
        follower_reads: false,
        read_committed: false,
    }
}

#[tokio::test]
async fn topics_records_and_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), |_| {}).await;
    b.create_topic("orders", 3, TopicConfig::from_entries([("retention.ms", "-1")]).unwrap()).await.unwrap();
    let r = b.produce(&tp("orders", 1), batch(&["a", "b"], 1)).await.unwrap();
    assert_eq!((r.base_offset, r.last_offset), (0, 1));
    let r = b.produce(&tp("orders", 1), batch(&["c"], 2)).await.unwrap();
    assert_eq!(r.base_offset, 2);
    let who = CommitIdentity { generation_id: -1, ..Default::default() };
    let mut off = CommittedOffset { offset: 2, leader_epoch: 0, metadata: "m".into(), commit_timestamp: 5 };
    let res =
        b.commit_offsets("g1", &who, vec![(tp("orders", 1), off.clone()), (tp("nope", 0), off.clone())]).await.unwrap();
    assert!(res[0].1.is_ok());
    assert!(matches!(res[1].1, Err(BrokerError::UnknownTopic(_))));
    let stored = b.fetch_offsets("g1", Some(&[tp("orders", 1)]))[0].1.clone().unwrap();
    assert!(stored.commit_timestamp > 5, "the broker stamps commits with its own clock");
    off.commit_timestamp = stored.commit_timestamp;
    b.shutdown().await.unwrap();
    drop(b);

    let b = open(dir.path(), |_| {}).await;
    let t = b.topic("orders").unwrap();
    assert_eq!(t.partitions().len(), 3);
    assert_eq!(t.record().config.0.get("retention.ms").map(String::as_str), Some("-1"));
    assert_eq!(consume(&b, &tp("orders", 1), 0).await, vec!["a", "b", "c"]);
    assert_eq!(b.fetch_offsets("g1", Some(&[tp("orders", 1)]))[0].1, Some(off));
    assert_eq!(b.produce(&tp("orders", 1), batch(&["d"], 3)).await.unwrap().base_offset, 3);
}

#[tokio::test]
async fn offsets_of_idle_groups_expire_after_the_retention_period() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(fjord_log::ManualClock::new(1_000_000));
    let mut cfg = BrokerConfig::new(dir.path());
    cfg.offsets_retention = Duration::from_secs(60);
    let b = Broker::open(cfg, clock.clone()).await.unwrap();
    b.create_topic("t", 2, TopicConfig::default()).await.unwrap();
    let who = CommitIdentity { generation_id: -1, ..Default::default() };
    let off = |o| CommittedOffset { offset: o, leader_epoch: 0, metadata: String::new(), commit_timestamp: 0 };
    b.commit_offsets("old", &who, vec![(tp("t", 0), off(1)), (tp("t", 1), off(2))]).await.unwrap();
    // A KIP-848 group with a member keeps its offsets however old.
    let joined = b
        .consumer_heartbeat(fjord_broker::group::consumer::ConsumerHeartbeat {
            group_id: "live".into(),
            member_epoch: 0,
            rebalance_timeout: Some(Duration::from_secs(30)),
            subscribed_topic_names: Some(vec!["t".into()]),
            owned_partitions: Some(Vec::new()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(joined.member_epoch > 0);
    b.commit_offsets_unchecked("live", vec![(tp("t", 0), off(4))]).await.unwrap();
    clock.advance(50_000);
    b.commit_offsets("young", &who, vec![(tp("t", 0), off(3))]).await.unwrap();
    assert_eq!(b.expire_offsets().await.unwrap(), 0, "nothing is older than 60 s yet");
    clock.advance(20_000);
    assert_eq!(b.expire_offsets().await.unwrap(), 2);
    assert!(b.fetch_offsets("old", None).is_empty());
    assert_eq!(b.fetch_offsets("live", None).len(), 1, "a group with members keeps its offsets");
    assert_eq!(b.fetch_offsets("young", None).len(), 1);
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(dir.path(), |_| {}).await;
    assert!(b.fetch_offsets("old", None).is_empty(), "expiry is durable");
    assert_eq!(b.fetch_offsets("young", None).len(), 1);
}

#[tokio::test]
async fn a_waiting_fetch_wakes_as_soon_as_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), |_| {}).await;
    b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    let p = tp("t", 0);
    let waiter = {
        let b = b.clone();
        let p = p.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let res = b.fetch(fetch_req(&p, 0, Duration::from_secs(30))).await;
            (start.elapsed(), res)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "fetch must wait while there is no data");
    b.produce(&p, batch(&["wake"], 1)).await.unwrap();
    let (elapsed, res) = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert!(elapsed < Duration::from_secs(10), "fetch waited for its deadline instead of waking: {elapsed:?}");
    let data = res[0].result.as_ref().unwrap();
    assert_eq!(data.high_watermark, 1);
    assert!(!data.slice.as_ref().unwrap().is_empty());
}

#[tokio::test]
async fn a_fetch_without_data_returns_empty_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), |_| {}).await;
    b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    let start = Instant::now();
    let res = b.fetch(fetch_req(&tp("t", 0), 0, Duration::from_millis(300))).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(res[0].result.as_ref().unwrap().slice.is_none());
    // Unknown partitions answer immediately with an error, beside the others.
    let mut req = fetch_req(&tp("t", 0), 0, Duration::from_secs(30));
    req.partitions.push(FetchPartition { tp: tp("t", 9), offset: 0, max_bytes: 100 });
    let start = Instant::now();
    let res = b.fetch(req).await;
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(matches!(res[1].result, Err(BrokerError::UnknownPartition { partition: 9, .. })));
}

#[tokio::test]
async fn fetch_shares_the_response_budget_but_always_returns_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), |_| {}).await;
    b.create_topic("t", 2, TopicConfig::default()).await.unwrap();
    let big = "x".repeat(5000);
    b.produce(&tp("t", 0), batch(&[&big], 1)).await.unwrap();
    b.produce(&tp("t", 1), batch(&["small"], 1)).await.unwrap();
    let mut req = fetch_req(&tp("t", 0), 0, Duration::ZERO);
    req.max_bytes = 100;
    req.partitions.push(FetchPartition { tp: tp("t", 1), offset: 0, max_bytes: 100 });
    let res = b.fetch(req).await;
    assert!(res[0].result.as_ref().unwrap().slice.as_ref().unwrap().len() > 5000);
    assert!(res[1].result.as_ref().unwrap().slice.is_none(), "budget spent by the first partition");
}

#[tokio::test]
async fn auto_creation_can_be_disabled_and_bad_input_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), |c| c.default_partitions = 2).await;
    b.produce(&tp("auto", 1), batch(&["x"], 1)).await.unwrap();
    assert_eq!(b.topic("auto").unwrap().partitions().len(), 2);
    assert!(matches!(
        b.produce(&tp("auto", 5), batch(&["x"], 1)).await,
        Err(BrokerError::UnknownPartition { partition: 5, .. })
    ));
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(dir.path(), |c| {
        c.auto_create_topics = false;
        c.log_defaults.max_message_bytes = 1000;
    })
    .await;
    assert!(matches!(b.produce(&tp("other", 0), batch(&["x"], 1)).await, Err(BrokerError::UnknownTopic(_))));
    let err = b.produce(&tp("auto", 0), batch(&[&"y".repeat(2000)], 1)).await.unwrap_err();
    assert!(matches!(err.log_error(), Some(LogError::MessageTooLarge { .. })), "{err}");
    assert!(matches!(
        b.create_topic("bad/name", 1, TopicConfig::default()).await,
        Err(BrokerError::InvalidTopicName { .. })
    ));
    assert!(matches!(b.create_topic("auto", 1, TopicConfig::default()).await, Err(BrokerError::TopicExists(_))));
    assert!(matches!(b.create_topic("zero", 0, TopicConfig::default()).await, Err(BrokerError::InvalidPartitions(_))));
}

#[tokio::test]
async fn list_offsets_by_position_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), |_| {}).await;
    let p = tp("t", 0);
    for i in 0..10i64 {
        b.produce(&p, batch(&[&format!("m{i}")], 1000 + i * 100)).await.unwrap();
    }
    let at = |spec| {
        let b = b.clone();
        let p = p.clone();
        async move { b.list_offset(&p, spec).await.unwrap().map(|l| (l.offset, l.timestamp)) }
    };
    assert_eq!(at(OffsetSpec::Earliest).await, Some((0, None)));
    assert_eq!(at(OffsetSpec::Latest).await, Some((10, None)));
    assert_eq!(at(OffsetSpec::Timestamp(1250)).await, Some((3, Some(1300))));
    assert_eq!(at(OffsetSpec::Timestamp(5000)).await, None);
    assert_eq!(at(OffsetSpec::MaxTimestamp).await, Some((9, Some(1900))));
    assert_eq!(b.delete_records(&p, 4).await.unwrap(), 4);
    assert_eq!(at(OffsetSpec::Earliest).await, Some((4, None)));
    assert_eq!(at(OffsetSpec::Timestamp(0)).await, Some((4, Some(1400))));
}

#[tokio::test]
async fn delete_recreate_grow_and_reconfigure_topics() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), |_| {}).await;
    b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    b.produce(&tp("t", 0), batch(&["old"], 1)).await.unwrap();
    let committed = CommittedOffset { offset: 1, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 };
    for group in ["g1", "g2"] {
        b.commit_offsets_unchecked(group, vec![(tp("t", 0), committed.clone())]).await.unwrap();
    }
    b.delete_topic("t").await.unwrap();
    assert!(matches!(b.delete_topic("t").await, Err(BrokerError::UnknownTopic(_))));
    b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    assert!(consume(&b, &tp("t", 0), 0).await.is_empty(), "a recreated topic must not see old data");
    // Committed offsets went with the old topic, as in Kafka.
    assert_eq!(b.offsets().get("g1", "t", 0), None);
    assert_eq!(b.offsets().get("g2", "t", 0), None);
    b.create_partitions("t", 4).await.unwrap();
    assert!(matches!(b.create_partitions("t", 2).await, Err(BrokerError::InvalidPartitions(_))));
    b.set_topic_config("t", TopicConfig::from_entries([("segment.bytes", "2048")]).unwrap()).await.unwrap();
    assert!(matches!(
        b.set_topic_config("t", TopicConfig([("x".to_string(), "1".to_string())].into())).await,
        Err(BrokerError::InvalidConfig { .. })
    ));
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(dir.path(), |_| {}).await;
    let t = b.topic("t").unwrap();
    assert_eq!(t.partitions().len(), 4);
    assert_eq!(t.partition(3).unwrap().log_for_tests().config().segment_bytes, 2048);
    let meta = b.metadata(None);
    // As Kafka lists `__consumer_offsets`: the internal topic is listed,
    // marked internal.
    let user: Vec<_> = meta.topics.iter().filter(|t| !t.internal).collect();
    assert_eq!(user.len(), 1);
    assert_eq!(user[0].partitions.len(), 4);
    assert!(meta.topics.iter().any(|t| t.internal && t.name == "__fjord_offsets"));
    assert_eq!(meta.cluster_id, b.cluster_id());
}

#[tokio::test]
async fn the_cluster_id_is_stable_and_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), |_| {}).await;
    let id = b.cluster_id().to_string();
    b.shutdown().await.unwrap();
    drop(b);
    assert_eq!(open(dir.path(), |_| {}).await.cluster_id(), id);
    std::fs::write(dir.path().join("cluster.json"), b"{\"cluster_id\": ").unwrap();
    let err = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap_err();
    assert!(err.to_string().contains("cluster.json"), "{err}");
}

fn idempotent(values: &[&str], producer: i64, epoch: i16, seq: i32) -> BytesMut {
    let mut b = BatchBuilder::new(1_000).producer(producer, epoch, seq);
    for v in values {
        b.push(&NewRecord { timestamp: None, key: None, value: Some(Bytes::from(v.to_string())), headers: vec![] });
    }
    b.build()
}

#[tokio::test]
async fn idempotent_retries_are_not_written_twice_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = tp("idem", 0);
    {
        let b = open(dir.path(), |_| {}).await;
        let pid = b.allocate_producer_id().await.unwrap();
        let first = b.produce(&t, idempotent(&["a", "b"], pid, 0, 0)).await.unwrap();
        let second = b.produce(&t, idempotent(&["c"], pid, 0, 2)).await.unwrap();
        // A retry of the first batch is answered with its original offsets.
        let retry = b.produce(&t, idempotent(&["a", "b"], pid, 0, 0)).await.unwrap();
        assert_eq!((retry.base_offset, retry.last_offset), (first.base_offset, first.last_offset));
        // A gap is refused; an older epoch after a newer one is fenced.
        let gap = b.produce(&t, idempotent(&["x"], pid, 0, 9)).await.unwrap_err();
        assert!(matches!(gap, BrokerError::OutOfOrderSequence { .. }), "{gap}");
        b.produce(&t, idempotent(&["d"], pid, 1, 0)).await.unwrap();
        let fenced = b.produce(&t, idempotent(&["e"], pid, 0, 3)).await.unwrap_err();
        assert!(matches!(fenced, BrokerError::InvalidProducerEpoch { .. }), "{fenced}");
        assert_eq!(second.base_offset, 2);
        b.shutdown().await.unwrap();
    }
    // After a restart the state is rebuilt from the log: the retry of the
    // epoch-1 batch is still recognised, and ids are never handed out twice.
    let b = open(dir.path(), |_| {}).await;
    let again = b.produce(&t, idempotent(&["d"], 0, 1, 0)).await.unwrap();
    assert_eq!(again.base_offset, 3);
    assert_eq!(consume(&b, &t, 0).await, vec!["a", "b", "c", "d"]);
    assert!(b.allocate_producer_id().await.unwrap() > 0);
    b.shutdown().await.unwrap();
}
