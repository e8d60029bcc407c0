//! Requeueing many deliveries at once, releasing a group's deliveries
//! after a restart, the pop backlog counts, groups without a delivery
//! limit (what the AMQP gateway builds on), and pop queues going with
//! their topic.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::open;
use fjord_messaging::{ConsumeModel, GroupSettings, Message, Partitioning, PopRequest, UNLIMITED_ATTEMPTS};

fn req(n: usize) -> PopRequest {
    PopRequest { invisible: Duration::from_secs(600), ..PopRequest::new("g", "q", n) }
}

#[tokio::test]
async fn release_many_requeues_at_once_and_skips_stale_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("q", 1).await;
    for i in 0..4 {
        env.m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.unwrap();
    }
    let g = ConsumeModel::Clustering;
    assert_eq!(env.m.pop_depth("g", &g, "q"), (4, 0), "never popped: all ready");
    let got = env.m.pop(req(4)).await.unwrap();
    assert_eq!(env.m.pop_depth("g", &g, "q"), (0, 4));
    env.m.ack("g", &g, &got[0].receipt).await.unwrap();
    let receipts: Vec<_> = got.iter().map(|p| p.receipt.clone()).collect();
    // m0 was acked: its receipt is skipped; the other three are visible now.
    assert_eq!(env.m.release_many("g", &g, &receipts).await.unwrap(), 3);
    assert_eq!(env.m.pop_depth("g", &g, "q"), (3, 0));
    let again = env.m.pop(req(10)).await.unwrap();
    assert_eq!(again.iter().map(|p| p.message.offset).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(again.iter().all(|p| p.attempt == 2));
    // Old receipts are stale now.
    assert_eq!(env.m.release_many("g", &g, &receipts).await.unwrap(), 0);
    env.close().await;
}

#[tokio::test]
async fn ready_sizes_count_ready_bodies_only_in_pop_order() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("q", 1).await;
    let g = ConsumeModel::Clustering;
    assert_eq!(env.m.pop_ready_sizes("g", &g, "q").await.unwrap(), Vec::<u64>::new());
    for body in ["a", "bb", "ccc", "dddd"] {
        env.m.send(Message::new("q", body), Partitioning::Auto).await.unwrap();
    }
    assert_eq!(env.m.pop_ready_sizes("g", &g, "q").await.unwrap(), vec![1, 2, 3, 4], "never popped");
    let got = env.m.pop(req(3)).await.unwrap();
    // a acked, bb in flight (not ready), ccc released: ready again, and first.
    env.m.ack("g", &g, &got[0].receipt).await.unwrap();
    env.m.release_many("g", &g, std::slice::from_ref(&got[2].receipt)).await.unwrap();
    assert_eq!(env.m.pop_ready_sizes("g", &g, "q").await.unwrap(), vec![3, 4]);
    let next = env.m.pop(req(1)).await.unwrap();
    assert_eq!(next[0].message.body.as_deref(), Some(&b"ccc"[..]), "pops hand them out in that order");
    assert_eq!(env.m.pop_ready_sizes("g", &g, "q").await.unwrap(), vec![4]);
    env.close().await;
}

#[tokio::test]
async fn release_all_returns_a_groups_deliveries_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("q", 1).await;
    for i in 0..3 {
        env.m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.unwrap();
    }
    let g = ConsumeModel::Clustering;
    assert_eq!(env.m.pop(req(3)).await.unwrap().len(), 3);
    let clock = env.clock.clone();
    env.close().await;
    let env = common::open_at(dir.path(), clock, Default::default()).await;
    // The pops were journaled: still invisible for ten minutes...
    assert!(env.m.pop(req(3)).await.unwrap().is_empty());
    assert_eq!(env.m.release_all("g", &g, "q").await.unwrap(), 3);
    let got = env.m.pop(req(3)).await.unwrap();
    assert_eq!(got.len(), 3, "...until released");
    assert!(got.iter().all(|p| p.attempt == 2));
    env.close().await;
}

#[tokio::test]
async fn an_unlimited_group_is_never_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("q", 1).await;
    env.m.set_group_settings("g", Some(GroupSettings { max_attempts: UNLIMITED_ATTEMPTS, fifo: false })).await.unwrap();
    env.m.send(Message::new("q", "poison"), Partitioning::Auto).await.unwrap();
    let g = ConsumeModel::Clustering;
    for attempt in 1..=(env.m.config().max_attempts + 5) {
        let got = env.m.pop(req(1)).await.unwrap();
        assert_eq!(got[0].attempt, attempt);
        env.m.release_many("g", &g, &[got[0].receipt.clone()]).await.unwrap();
        env.m.pop_maintenance().await.unwrap();
    }
    assert!(env.m.dlq_list("g", 0, 10).await.unwrap().is_empty());
    env.close().await;
}

#[tokio::test]
async fn a_topic_created_again_after_deletion_is_popped_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("q", 1).await;
    for i in 0..5 {
        env.m.send(Message::new("q", format!("old{i}")), Partitioning::Auto).await.unwrap();
    }
    let g = ConsumeModel::Clustering;
    let got = env.m.pop(req(3)).await.unwrap();
    env.m.ack("g", &g, &got[0].receipt).await.unwrap();
    // Deleted by any protocol's admin (not through the pop API), then made again.
    env.broker.delete_topic("q").await.unwrap();
    env.topic("q", 1).await;
    for i in 0..2 {
        env.m.send(Message::new("q", format!("new{i}")), Partitioning::Auto).await.unwrap();
    }
    assert_eq!(env.m.pop_depth("g", &g, "q"), (2, 0), "nothing of the old topic's state is left");
    let dir_path = dir.path().to_path_buf();
    env.close().await;
    // And so after a restart (the journal says so too).
    let env = open(&dir_path).await;
    assert_eq!(env.m.pop_depth("g", &g, "q"), (2, 0));
    let again = env.m.pop(req(10)).await.unwrap();
    let bodies: Vec<_> = again.iter().map(|p| p.message.body.clone().unwrap()).collect();
    assert_eq!(bodies, vec![bytes::Bytes::from("new0"), bytes::Bytes::from("new1")]);
    env.close().await;
}
