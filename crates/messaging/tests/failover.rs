//! Pop queues across leadership changes in a cluster: a node uses its
//! (node-local) pop state on a partition only in the leader epoch it loaded
//! it in. When it leads again after another node did, it reopens its queues
//! at the group's committed offset — the other leader's progress — instead
//! of its stale state, and it never commits a stale position over a newer
//! one (not even after a restart).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::{Env, T0, config};
use fjord_broker::placement::OFFSETS_TOPIC;
use fjord_broker::{
    Broker, BrokerConfig, BrokerError, CommittedOffset, NodeInfo, PartitionPlacement, Placement, TopicPartition,
};
use fjord_log::ManualClock;
use fjord_messaging::{ConsumeModel, Message, Messaging, MessagingConfig, MessagingError, Partitioning, PopRequest};

/// Node 1 of a cluster (its placement set by the test).
async fn open(dir: &std::path::Path) -> Env {
    let c = BrokerConfig { node_id: 1, ..config(dir) };
    let clock = Arc::new(ManualClock::new(T0));
    let broker = Broker::open(c, clock.clone()).await.unwrap();
    let m = Messaging::open(broker.clone(), MessagingConfig::default()).await.unwrap();
    Env { broker, m, clock }
}

fn req(n: usize) -> PopRequest {
    PopRequest { invisible: Duration::from_secs(600), partition: Some(0), ..PopRequest::new("g", "q", n) }
}

fn led(leader: i32, epoch: i32) -> PartitionPlacement {
    PartitionPlacement {
        leader,
        leader_epoch: epoch,
        replicas: vec![1, 2],
        isr: vec![leader],
        partition_epoch: epoch,
        adding: vec![],
        removing: vec![],
    }
}

/// Node 1 (this broker) coordinates every group; `q`'s partition is led by
/// `leader` in `epoch`.
fn place(broker: &Broker, leader: i32, epoch: i32) {
    let node = |id: i32| NodeInfo { node_id: id, listeners: BTreeMap::new(), rack: None };
    let offsets = broker.topic(OFFSETS_TOPIC).unwrap().partitions().len();
    broker.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1), node(2)],
        fenced: Vec::new(),
        topics: HashMap::from([
            ("q".to_string(), vec![led(leader, epoch)]),
            (OFFSETS_TOPIC.to_string(), vec![led(1, 0); offsets]),
        ]),
        controllers: vec![1],
    });
}

async fn committed(broker: &Broker) -> i64 {
    broker.committed_offset("g", &TopicPartition::new("q", 0)).await.unwrap().unwrap().offset
}

/// What node 2 committed while it led the partition.
async fn commit_elsewhere(broker: &Broker, offset: i64) {
    let off = CommittedOffset { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 };
    broker.commit_offsets_unchecked("g", vec![(TopicPartition::new("q", 0), off)]).await.unwrap();
}

fn offsets(got: &[fjord_messaging::Popped]) -> Vec<u64> {
    got.iter().map(|p| p.message.offset).collect()
}

/// Topic `q` (one partition, led here in epoch 1) holding m0..m11, of
/// which group `g` has popped the first ten.
async fn ten_popped(env: &Env) -> Vec<fjord_messaging::Popped> {
    env.topic("q", 1).await;
    place(&env.broker, 1, 1);
    for i in 0..12 {
        env.m.send(Message::new("q", format!("m{i}")), Partitioning::Explicit(0)).await.unwrap();
    }
    let got = env.m.pop(req(10)).await.unwrap();
    assert_eq!(offsets(&got), (0..10).collect::<Vec<_>>());
    got
}

#[tokio::test]
async fn a_node_that_leads_again_goes_on_from_the_groups_committed_progress() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    let g = ConsumeModel::Clustering;
    let got = ten_popped(&env).await;
    for p in &got[..3] {
        env.m.ack("g", &g, &p.receipt).await.unwrap();
    }
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 3);

    // Node 2 leads; its consumers get to offset 8. Node 1 does not pop.
    place(&env.broker, 2, 2);
    let refused = env.m.pop(req(10)).await.unwrap_err();
    assert!(matches!(refused, MessagingError::Broker(BrokerError::NotLeader { .. })), "{refused:?}");
    commit_elsewhere(&env.broker, 8).await;
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 8, "a node that does not lead commits nothing");

    // Node 1 leads again: its own state (3..10 in flight for ten minutes)
    // is stale; it goes on from 8, at once.
    place(&env.broker, 1, 3);
    let again = env.m.pop(req(10)).await.unwrap();
    assert_eq!(offsets(&again), vec![8, 9, 10, 11]);
    assert!(env.m.ack("g", &g, &got[5].receipt).await.is_err(), "a receipt of the stale state is refused");
    env.m.ack("g", &g, &again[0].receipt).await.unwrap();
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 9);

    // Node 2 leads and moves on; node 1 restarts holding its journal.
    place(&env.broker, 2, 4);
    commit_elsewhere(&env.broker, 11).await;
    env.close().await;
    let env = open(dir.path()).await;
    place(&env.broker, 2, 4);
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 11, "the restarted node's stale position is not committed");
    // Leading after the restart (a new epoch), it reloads too.
    place(&env.broker, 1, 5);
    let last = env.m.pop(req(10)).await.unwrap();
    assert_eq!(offsets(&last), vec![11]);
    env.close().await;
}

/// What was acked above the group's first unacked message survives a
/// change of leader: the committed progress carries it (in its metadata),
/// and the next leader delivers again only what was in flight, counting
/// its attempts on.
#[tokio::test]
async fn a_new_leader_does_not_deliver_again_what_was_acked_above_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    let g = ConsumeModel::Clustering;
    let got = ten_popped(&env).await;
    // 3 and 4 stay in flight; 0..3 and 5..8 are acked.
    for p in got[..3].iter().chain(&got[5..8]) {
        env.m.ack("g", &g, &p.receipt).await.unwrap();
    }
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 3);

    // Led elsewhere, then here again: the queue is reopened from the
    // committed progress, the acks above it included.
    place(&env.broker, 2, 2);
    place(&env.broker, 1, 3);
    let again = env.m.pop(req(20)).await.unwrap();
    assert_eq!(offsets(&again), vec![3, 4, 8, 9, 10, 11]);
    // 3 and 4 were delivered before (and 8, 9 too, never acked): their
    // attempts count on (AMQP's redelivered flag, delivery limits).
    let attempts: Vec<u32> = again.iter().map(|p| p.attempt).collect();
    assert_eq!(attempts, vec![2, 2, 2, 2, 1, 1]);
    for p in &again {
        env.m.ack("g", &g, &p.receipt).await.unwrap();
    }
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 12);
    env.close().await;
}

#[tokio::test]
async fn a_send_while_the_partition_elects_waits_for_its_new_leader() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("q", 1).await;
    // Node 2 led and is fenced (not among the serving nodes): no leader.
    let node = |id: i32| NodeInfo { node_id: id, listeners: BTreeMap::new(), rack: None };
    let offsets = env.broker.topic(OFFSETS_TOPIC).unwrap().partitions().len();
    env.broker.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1)],
        fenced: vec![node(2)],
        topics: HashMap::from([
            ("q".to_string(), vec![led(2, 1)]),
            (OFFSETS_TOPIC.to_string(), vec![led(1, 0); offsets]),
        ]),
        controllers: vec![1],
    });
    let m = env.m.clone();
    let send = tokio::spawn(async move {
        m.send_batch_to_leaders(vec![Message::new("q", "during the election")], Partitioning::Auto).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!send.is_finished(), "refused at once: {:?}", send.await);
    // This node is elected.
    place(&env.broker, 1, 2);
    let receipts = send.await.unwrap().unwrap();
    assert_eq!(receipts[0].partition, TopicPartition::new("q", 0));
    env.close().await;
}

#[tokio::test]
async fn a_send_short_of_in_sync_replicas_waits_for_them_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("q", 1).await;
    // Three replicas need two in sync (the default); only the leader is.
    let node = |id: i32| NodeInfo { node_id: id, listeners: BTreeMap::new(), rack: None };
    let offsets = env.broker.topic(OFFSETS_TOPIC).unwrap().partitions().len();
    let placed = |isr: Vec<i32>, epoch: i32| Placement {
        controller_id: 1,
        nodes: vec![node(1), node(2), node(3)],
        fenced: Vec::new(),
        topics: HashMap::from([
            ("q".to_string(), vec![PartitionPlacement { replicas: vec![1, 2, 3], isr, ..led(1, epoch) }]),
            (OFFSETS_TOPIC.to_string(), vec![led(1, 0); offsets]),
        ]),
        controllers: vec![1],
    };
    env.broker.set_placement(placed(vec![1], 1));
    let m = env.m.clone();
    let send =
        tokio::spawn(
            async move { m.send_batch_to_leaders(vec![Message::new("q", "short")], Partitioning::Auto).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!send.is_finished(), "refused at once: {:?}", send.await);
    // Node 2 is back in sync: the send is written, and committed once node
    // 2 holds it.
    env.broker.set_placement(placed(vec![1, 2], 2));
    let p = env.broker.partition(&TopicPartition::new("q", 0)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.log_end_offset() == 0 {
        assert!(std::time::Instant::now() < deadline, "the retry writes it");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.follower_fetched(2, p.log_end_offset(), p.log_end_offset());
    let receipts = send.await.unwrap().unwrap();
    assert_eq!(receipts[0].offset, Some(0));
    env.close().await;
}
