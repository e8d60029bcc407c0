//! The committed offsets on `__fjord_offsets`: where they are stored, that
//! they survive a crash, compaction, and the move from the old log.

use std::sync::Arc;

use fjord_log::SystemClock;

use super::{CommittedOffset, OffsetKey};
use crate::placement::OFFSETS_TOPIC;
use crate::{Broker, BrokerConfig, BrokerError, TopicConfig, TopicPartition};

fn off(o: i64) -> Option<CommittedOffset> {
    Some(CommittedOffset { offset: o, leader_epoch: 3, metadata: format!("m{o}"), commit_timestamp: 7 })
}

fn key(g: &str, t: &str, p: u32) -> OffsetKey {
    (g.into(), t.into(), p)
}

async fn open(dir: &std::path::Path, f: impl FnOnce(&mut BrokerConfig)) -> Arc<Broker> {
    let mut cfg = BrokerConfig::new(dir);
    f(&mut cfg);
    Broker::open(cfg, Arc::new(SystemClock)).await.expect("open")
}

/// A group's commits are records on the `__fjord_offsets` partition its
/// name hashes to (the partition whose leader coordinates it), and nowhere
/// else; they survive a crash (no clean shutdown) and deletes stick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_records_on_the_groups_partition_and_survive_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(dir.path(), |c| c.offsets_partitions = 4).await;
    let topic = b.topic(OFFSETS_TOPIC).expect("created on open");
    assert!(topic.record().internal);
    assert_eq!(topic.partitions().len(), 4);
    let groups = ["g", "h", "orders-app", "billing"];
    for (i, g) in groups.iter().enumerate() {
        b.offsets().put(vec![(key(g, "t", 0), off(i as i64 + 10)), (key(g, "t", 1), off(5))], 1).await.expect("put");
    }
    b.offsets().put(vec![(key("h", "t", 1), None)], 2).await.expect("delete");
    for p in topic.partitions() {
        let index = p.id().partition;
        let stored: Vec<String> = p
            .read_committed(0, 1 << 20)
            .expect("read")
            .iter()
            .filter_map(|r| super::decode_key(r.key.as_deref()?))
            .map(|(g, _, _)| g)
            .collect();
        for g in groups {
            let here = b.offsets().shard_of(g) == Some(index);
            assert_eq!(stored.iter().any(|s| s == g), here, "group {g} on partition {index}");
            let expected = (fjord_log::key_hash(g.as_bytes()) % 4) as u32;
            assert_eq!(b.offsets().shard_of(g), Some(expected), "the coordinator's partition");
        }
    }
    drop(topic);
    drop(b); // no clean shutdown
    let b = open(dir.path(), |c| c.offsets_partitions = 4).await;
    for (i, g) in groups.iter().enumerate() {
        assert_eq!(b.offsets().get(g, "t", 0), off(i as i64 + 10), "{g}");
    }
    assert_eq!(b.offsets().get("h", "t", 1), None, "a delete sticks");
    assert_eq!(b.offsets().get("g", "t", 1), off(5));
    let mut all = b.offsets().groups();
    all.sort();
    assert_eq!(all, vec!["billing", "g", "h", "orders-app"]);
}

/// Compaction keeps each partition's log bounded and every live offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_bounds_each_partition_and_keeps_every_live_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = |c: &mut BrokerConfig| {
        c.offsets_partitions = 2;
        c.offsets_compact_bytes = 256 * 1024;
    };
    let b = open(dir.path(), cfg).await;
    for round in 0..400i64 {
        let batch = (0..50u32).map(|p| (key("grp", "topic", p), off(round * 100 + i64::from(p)))).collect();
        b.offsets().put(batch, round).await.expect("put");
    }
    let shard = b.offsets().shard_of("grp").expect("loaded");
    let p = b.topic(OFFSETS_TOPIC).and_then(|t| t.partition(shard)).expect("partition");
    let size = p.log_stats().size_bytes;
    assert!(size < 4 * 1024 * 1024 + 256 * 1024, "log not compacted: {size}");
    assert!(p.log_start_offset() > 0, "older records were dropped");
    drop(p);
    drop(b);
    let b = open(dir.path(), cfg).await;
    for p in 0..50u32 {
        assert_eq!(b.offsets().get("grp", "topic", p), off(399 * 100 + i64::from(p)));
    }
}

/// A data directory of an earlier version keeps its offsets: they move
/// onto `__fjord_offsets` on the first start, and the old log goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_the_old_node_local_log_are_moved_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let legacy = dir.path().join(super::legacy::LEGACY_DIR);
    super::legacy::tests::write(
        &legacy,
        &[(key("g", "t", 0), off(5)), (key("g", "t", 1), off(9)), (key("h", "t", 0), off(1)), (key("h", "t", 0), None)],
    );
    let b = open(dir.path(), |_| {}).await;
    assert_eq!(b.offsets().get("g", "t", 0), off(5));
    assert_eq!(b.offsets().get("g", "t", 1), off(9));
    assert_eq!(b.offsets().get("h", "t", 0), None);
    assert!(!legacy.exists(), "the old log is removed once moved");
    drop(b);
    let b = open(dir.path(), |_| {}).await;
    assert_eq!(b.offsets().get("g", "t", 1), off(9), "moved offsets are on the partitions");
}

/// The internal topic is the broker's: clients cannot write, delete or grow
/// it (reading is allowed, as Kafka allows reading `__consumer_offsets`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_write_delete_or_grow_the_offsets_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(dir.path(), |_| {}).await;
    let mut batch = fjord_log::batch::BatchBuilder::new(1);
    batch.push(&fjord_log::batch::NewRecord { value: Some("x".into()), ..Default::default() });
    let tp = TopicPartition::new(OFFSETS_TOPIC, 0);
    assert!(matches!(b.produce(&tp, batch.build()).await, Err(BrokerError::InvalidTopicName { .. })));
    assert!(matches!(b.delete_topic(OFFSETS_TOPIC).await, Err(BrokerError::InvalidTopicName { .. })));
    assert!(matches!(b.create_partitions(OFFSETS_TOPIC, 64).await, Err(BrokerError::InvalidTopicName { .. })));
    assert!(b.create_topic(OFFSETS_TOPIC, 1, TopicConfig::default()).await.is_err());
    assert!(b.read_records(&tp, 0, 1024).await.is_ok());
}

/// A shard whose partition this node stops leading goes stale: it is not
/// served (no groups listed, `is_current` false, so coordinators answer
/// "loading") until the replay after the next election, which picks up what
/// another leader wrote to the log meanwhile. Serving the stale map would
/// move that group's committed offsets back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_is_served_only_while_current() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(dir.path(), |c| c.offsets_partitions = 2).await;
    let offsets = b.offsets();
    offsets.put(vec![(key("g", "t", 0), off(10))], 1).await.expect("put");
    let index = offsets.shard_of("g").expect("attached");
    assert!(offsets.is_current("g"));

    offsets.mark_stale(index);
    assert!(!offsets.is_current("g"), "a shard whose leadership went elsewhere");
    assert!(!offsets.groups().contains(&"g".to_string()), "a stale shard lists no groups");
    assert!(offsets.keys_of_topic("t").is_empty());
    // What a leader elsewhere committed reaches this log, not the map.
    let shard = offsets.shard_at(index).expect("shard");
    shard.append(&[(key("g", "t", 0), off(42))], 2).await.expect("append");
    assert_eq!(offsets.get("g", "t", 0).map(|o| o.offset), Some(10), "the stale map");

    offsets.reload_in_background(index, |_| {});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !offsets.is_current("g") {
        assert!(std::time::Instant::now() < deadline, "the replay after an election finishes");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(offsets.get("g", "t", 0).map(|o| o.offset), Some(42), "replayed from the log");
    assert!(offsets.groups().contains(&"g".to_string()));

    // Going stale again is not undone by an earlier replay's end.
    offsets.mark_stale(index);
    assert!(!offsets.is_current("g"));
    let b2 = b.clone();
    tokio::task::spawn_blocking(move || b2.offsets().reload(index)).await.expect("join").expect("reload");
    assert!(offsets.is_current("g"));
}

/// A node elected for a shard whose log ends with records its predecessor
/// wrote but did not commit serves the shard only once its own high
/// watermark covers them: until then another election could still cut
/// them (chaos seed 15: an OffsetFetch answered an offset that was never
/// committed, and the group's committed offset then "moved back").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elected_shard_serves_an_inherited_tail_only_once_it_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(dir.path(), |c| c.offsets_partitions = 2).await;
    let offsets = b.offsets();
    offsets.put(vec![(key("g", "t", 0), off(10))], 1).await.expect("put");
    let index = offsets.shard_of("g").expect("attached");
    let shard = offsets.shard_at(index).expect("shard");
    let p = shard.partition.clone();
    // Leading with an in-sync follower (node 2) that fetches nothing: a
    // commit is written, not committed.
    p.set_replica_role(true, &[2]);
    let writer = shard.clone();
    let write = tokio::spawn(async move { writer.append(&[(key("g", "t", 0), off(42))], 2).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.log_end_offset() <= p.high_watermark() {
        assert!(std::time::Instant::now() < deadline, "the write reaches the log");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // This node is (re)elected with that tail.
    offsets.reload_in_background(index, |_| {});
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!offsets.is_current("g"), "served before its inherited tail is committed");

    // The follower catches up: the tail is committed, the shard served.
    p.follower_fetched(2, p.log_end_offset(), p.log_end_offset());
    write.await.expect("join").expect("committed");
    while !offsets.is_current("g") {
        assert!(std::time::Instant::now() < deadline, "the replay after the commit finishes");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(offsets.get("g", "t", 0).map(|o| o.offset), Some(42));
}
