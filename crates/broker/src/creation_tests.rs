//! Failed topic and partition creations leave nothing behind. The failure
//! is injected through `broker::FAIL_PARTITION_OPEN` (the way running out of
//! file descriptors fails `Log::open` midway through a topic's partitions).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use fjord_log::SystemClock;

use crate::broker::FAIL_PARTITION_OPEN;
use crate::{Broker, BrokerConfig, BrokerError, TopicConfig};

async fn open(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(BrokerConfig::new(dir), Arc::new(SystemClock)).await.unwrap()
}

fn fail_opening(topic: &str, partition: u32, on: bool) {
    let mut f = FAIL_PARTITION_OPEN.lock();
    f.retain(|(t, _)| t != topic);
    if on {
        f.push((topic.to_string(), partition));
    }
}

#[tokio::test]
async fn a_failed_topic_creation_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    fail_opening("rollback-topic", 2, true);
    let err = b.create_topic("rollback-topic", 3, TopicConfig::default()).await.unwrap_err();
    assert!(err.to_string().contains("Too many open files"), "{err}");
    let topic_dir = dir.path().join("topics/rollback-topic");
    assert!(!topic_dir.exists(), "partitions 0 and 1 were left behind");
    assert!(b.topic("rollback-topic").is_none());
    // Auto-creation (one partition) fails the same way, and cleanly too.
    fail_opening("rollback-topic", 0, true);
    let tp = crate::TopicPartition::new("rollback-topic", 0);
    assert!(b.partition_or_create(&tp).await.is_err());
    assert!(!topic_dir.exists());
    b.shutdown().await.unwrap();
    drop(b);

    let b = open(dir.path()).await;
    assert!(b.topic("rollback-topic").is_none(), "a failed creation reappeared after a restart");
    assert!(b.offline_topics().is_empty());
    fail_opening("rollback-topic", 0, false);
    b.create_topic("rollback-topic", 3, TopicConfig::default()).await.unwrap();
}

#[tokio::test]
async fn a_failed_partition_growth_leaves_no_partition_directory() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("rollback-grow", 1, TopicConfig::default()).await.unwrap();
    fail_opening("rollback-grow", 2, true);
    let err = b.create_partitions("rollback-grow", 3).await.unwrap_err();
    assert!(matches!(err, BrokerError::Internal { .. }), "{err}");
    let topic_dir = dir.path().join("topics/rollback-grow");
    assert!(!topic_dir.join("1").exists(), "partition 1 was left behind");
    assert!(topic_dir.join("0").exists());
    assert_eq!(b.topic("rollback-grow").unwrap().partitions().len(), 1);
    fail_opening("rollback-grow", 2, false);
    b.shutdown().await.unwrap();
    drop(b);

    // A growth interrupted by a crash (directories but no topic.json
    // update) is removed at start, so a later growth starts empty.
    std::fs::create_dir_all(topic_dir.join("1")).unwrap();
    std::fs::write(topic_dir.join("1/00000000000000000000.log"), b"stale").unwrap();
    let b = open(dir.path()).await;
    assert!(!topic_dir.join("1").exists());
    b.create_partitions("rollback-grow", 2).await.unwrap();
    assert_eq!(b.topic("rollback-grow").unwrap().partition(1).unwrap().log().log_end_offset(), 0);
}
