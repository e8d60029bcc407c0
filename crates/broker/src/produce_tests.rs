//! Idempotent produce while a batch waits for its commit.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};

use crate::{Broker, BrokerConfig, TopicConfig, TopicPartition};

fn idempotent(value: &str, producer: i64, seq: i32) -> BytesMut {
    let mut b = BatchBuilder::new(1_000).producer(producer, 0, seq);
    b.push(&NewRecord { value: Some(Bytes::from(value.to_string())), ..Default::default() });
    b.build()
}

#[tokio::test]
async fn a_retry_of_a_batch_still_waiting_for_its_commit_waits_for_that_write() {
    // Found by fjord-chaos: the producer state recorded a batch only once
    // it was committed, so a client's retry after its request timed out
    // (the leader's followers paused) was written a second and third time.
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    b.create_topic("idem-wait", 1, TopicConfig::default()).await.unwrap();
    let t = TopicPartition::new("idem-wait", 0);
    let p = b.partition(&t).unwrap();
    // Leading with an in-sync follower that fetches nothing: no commit.
    p.set_replica_role(true, &[2]);
    let pid = b.allocate_producer_id().await.unwrap();
    let wait = Duration::from_millis(200);
    assert!(tokio::time::timeout(wait, b.produce(&t, idempotent("a", pid, 0))).await.is_err());
    assert_eq!(p.log_end_offset(), 1, "written, not committed");
    // The retry finds the batch and waits for its commit; nothing new is written.
    assert!(tokio::time::timeout(wait, b.produce(&t, idempotent("a", pid, 0))).await.is_err());
    assert_eq!(p.log_end_offset(), 1);
    let retry = {
        let (b, t) = (b.clone(), t.clone());
        tokio::spawn(async move { b.produce(&t, idempotent("a", pid, 0)).await })
    };
    // The producer's next batch is written meanwhile (the lock is not held
    // across the commit wait).
    let next = {
        let (b, t) = (b.clone(), t.clone());
        tokio::spawn(async move { b.produce(&t, idempotent("b", pid, 1)).await })
    };
    let mut end = p.commit.subscribe_log_end();
    tokio::time::timeout(Duration::from_secs(10), end.wait_for(|e| *e >= 2)).await.unwrap().unwrap();
    p.follower_fetched(2, 2, 2);
    let retried = retry.await.unwrap().unwrap();
    assert_eq!((retried.base_offset, retried.last_offset), (0, 0));
    assert_eq!(next.await.unwrap().unwrap().base_offset, 1);
    assert_eq!(p.log_end_offset(), 2);
}

#[tokio::test]
async fn a_leader_takes_no_replica_appends() {
    // Found by fjord-chaos: a fetch from the old leader, in flight when
    // this replica was elected, added a batch its rebuilt producer state
    // never saw, and the producer's retry of it was written again.
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    b.create_topic("lead-only", 1, TopicConfig::default()).await.unwrap();
    let p = b.partition(&TopicPartition::new("lead-only", 0)).unwrap();
    let mut batch = idempotent("a", 7, 0);
    fjord_log::batch::set_base_offset(&mut batch, 0);
    p.set_replica_role(false, &[]);
    assert!(p.append_replica(batch.clone()).await.unwrap().is_ok());
    fjord_log::batch::set_base_offset(&mut batch, 1);
    p.set_replica_role(true, &[2]);
    assert!(p.append_replica(batch).await.is_err());
    assert_eq!(p.log_end_offset(), 1);
}

#[tokio::test]
async fn an_idempotent_write_waits_for_the_leaders_role_not_just_the_placement() {
    // Found by fjord-chaos: between a placement naming this node leader and
    // the partition taking the role (and forgetting the producer state of
    // an earlier term), a write was checked against that stale state, and
    // the OUT_OF_ORDER answer made librdkafka bump its epoch and re-send.
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    b.create_topic("role", 1, TopicConfig::default()).await.unwrap();
    let t = TopicPartition::new("role", 0);
    let p = b.partition(&t).unwrap();
    let pid = b.allocate_producer_id().await.unwrap();
    b.produce(&t, idempotent("a", pid, 0)).await.unwrap();
    p.set_replica_role(false, &[]);
    let err = b.produce(&t, idempotent("b", pid, 1)).await.unwrap_err();
    assert!(matches!(err, crate::BrokerError::NotLeader { .. }), "{err}");
    p.set_replica_role(true, &[]);
    assert_eq!(b.produce(&t, idempotent("b", pid, 1)).await.unwrap().base_offset, 1);
}
