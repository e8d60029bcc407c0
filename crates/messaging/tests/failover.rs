//! Pop queues across leadership changes in a cluster: a node serves a queue
//! only in the leader epoch it loaded it in, from its `__fjord_pop` shard,
//! which keeps what every server of the queue did; a queue its shard does
//! not know opens from the group's committed progress. The other node of
//! these tests is simulated through the placement.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::{Env, T0, config};
use fjord_broker::placement::{OFFSETS_TOPIC, POP_TOPIC};
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

/// The internal topics, all led by node 1 (this broker).
fn internal(broker: &Broker) -> Vec<(String, Vec<PartitionPlacement>)> {
    [OFFSETS_TOPIC, POP_TOPIC]
        .into_iter()
        .map(|t| (t.to_string(), vec![led(1, 0); broker.topic(t).unwrap().partitions().len()]))
        .collect()
}

/// Node 1 (this broker) coordinates every group and keeps every pop queue;
/// `q`'s partition is led by `leader` in `epoch`.
fn place(broker: &Broker, leader: i32, epoch: i32) {
    let node = |id: i32| NodeInfo { node_id: id, listeners: BTreeMap::new(), rack: None };
    let mut topics: HashMap<String, Vec<PartitionPlacement>> = internal(broker).into_iter().collect();
    topics.insert("q".to_string(), vec![led(leader, epoch)]);
    broker.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1), node(2)],
        fenced: Vec::new(),
        topics,
        controllers: vec![1],
    });
}

async fn committed(broker: &Broker) -> i64 {
    broker.committed_offset("g", &TopicPartition::new("q", 0)).await.unwrap().unwrap().offset
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

/// A node that leads the partition again serves the queue as its shard
/// keeps it: deliveries in flight stay invisible with their receipts
/// valid, acked messages are not delivered again, and the group's progress
/// goes on from there.
#[tokio::test]
async fn a_node_that_leads_again_serves_the_queue_as_its_shard_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    let g = ConsumeModel::Clustering;
    let got = ten_popped(&env).await;
    for p in got[..3].iter().chain(&got[5..7]) {
        env.m.ack("g", &g, &p.receipt).await.unwrap();
    }
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 3);

    // Node 2 leads: node 1 does not pop, and commits nothing.
    place(&env.broker, 2, 2);
    let refused = env.m.pop(req(10)).await.unwrap_err();
    assert!(matches!(refused, MessagingError::Broker(BrokerError::NotLeader { .. })), "{refused:?}");
    assert!(env.m.ack("g", &g, &got[3].receipt).await.is_err(), "not served here now");
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 3);

    // Node 1 leads again: 3, 4 and 7..10 are still in flight (ten minutes),
    // so only 10 and 11 are handed out; the old receipts still ack.
    place(&env.broker, 1, 3);
    env.m.ack("g", &g, &got[3].receipt).await.expect("acked before any pop here: the queue is loaded for it");
    let again = env.m.pop(req(10)).await.unwrap();
    assert_eq!(offsets(&again), vec![10, 11]);
    for p in got[4..5].iter().chain(&got[7..]).chain(&again) {
        env.m.ack("g", &g, &p.receipt).await.unwrap();
    }
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(committed(&env.broker).await, 12);

    // After a restart, leading in a new epoch, it loads the queue again.
    env.close().await;
    let env = open(dir.path()).await;
    place(&env.broker, 1, 5);
    env.m.send(Message::new("q", "m12"), Partitioning::Explicit(0)).await.unwrap();
    let last = env.m.pop(req(10)).await.unwrap();
    assert_eq!(offsets(&last), vec![12]);
    env.close().await;
}

/// A connection-bound group's (AMQP's) deliveries stay with consumers
/// still connected when their queue moves to another server and back (this
/// node's, here; another node's are adopted by the new server:
/// `forward::holds`), and go back to the queue once their holder's run is
/// over (this node restarted). Each keeps its receipt until it is
/// delivered again.
#[tokio::test]
async fn a_connection_bound_queue_hands_back_what_lost_holders_held() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.m.set_connection_bound("g");
    let g = ConsumeModel::Clustering;
    let got = ten_popped(&env).await;
    env.m.ack("g", &g, &got[0].receipt).await.unwrap();
    place(&env.broker, 2, 2);
    place(&env.broker, 1, 3);
    // Acked through the new server before it popped: still valid.
    env.m.ack("g", &g, &got[1].receipt).await.unwrap();
    let more = env.m.pop(req(20)).await.unwrap();
    assert_eq!(offsets(&more), vec![10, 11], "the consumers holding 2..9 are still connected");
    env.m.ack("g", &g, &got[2].receipt).await.unwrap();

    // Restarted, this node's consumers are gone: what they held goes back
    // (leading again in the same epoch or another).
    env.close().await;
    let env = open(dir.path()).await;
    env.m.set_connection_bound("g");
    place(&env.broker, 1, 3);
    env.m.ack("g", &g, &got[3].receipt).await.expect("a receipt from before the restart");
    let again = env.m.pop(req(20)).await.unwrap();
    assert_eq!(offsets(&again), vec![4, 5, 6, 7, 8, 9, 10, 11]);
    assert!(again.iter().all(|p| p.attempt == 2));
    env.close().await;
}

/// A queue its shard does not know (its group committed through a Kafka
/// client, or an earlier version kept the queue node-locally) opens from
/// the group's committed progress: the acked offsets and deliveries the
/// metadata records above the offset count.
#[tokio::test]
async fn a_queue_new_to_its_shard_opens_from_the_groups_committed_progress() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("q", 1).await;
    place(&env.broker, 1, 1);
    for i in 0..12 {
        env.m.send(Message::new("q", format!("m{i}")), Partitioning::Explicit(0)).await.unwrap();
    }
    // 3 and 4 delivered once before; 5..8 acked.
    let off =
        CommittedOffset { offset: 3, leader_epoch: -1, metadata: "fjord-pop/1 2-5;0-2:1".into(), commit_timestamp: 0 };
    env.broker.commit_offsets_unchecked("g", vec![(TopicPartition::new("q", 0), off)]).await.unwrap();
    let again = env.m.pop(req(20)).await.unwrap();
    assert_eq!(offsets(&again), vec![3, 4, 8, 9, 10, 11]);
    let attempts: Vec<u32> = again.iter().map(|p| p.attempt).collect();
    assert_eq!(attempts, vec![2, 2, 1, 1, 1, 1]);
    let g = ConsumeModel::Clustering;
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
    env.broker.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1)],
        fenced: vec![node(2)],
        topics: internal(&env.broker).into_iter().chain([("q".to_string(), vec![led(2, 1)])]).collect(),
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
    let placed = |isr: Vec<i32>, epoch: i32| Placement {
        controller_id: 1,
        nodes: vec![node(1), node(2), node(3)],
        fenced: Vec::new(),
        topics: internal(&env.broker)
            .into_iter()
            .chain([("q".to_string(), vec![PartitionPlacement { replicas: vec![1, 2, 3], isr, ..led(1, epoch) }])])
            .collect(),
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

/// An ack made while the queue's pop shard has no serving leader (its
/// leader lost, the election not done) waits for the shard's new leader
/// and is applied there, instead of failing — a failed ack hands an acked
/// message out again.
#[tokio::test]
async fn an_ack_while_the_pop_shard_moves_is_applied_by_its_new_leader() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    let got = ten_popped(&env).await;
    // Node 2 leads the pop shards in epoch 1 and is fenced: no shard leader.
    let node = |id: i32| NodeInfo { node_id: id, listeners: BTreeMap::new(), rack: None };
    let shards = |leader: i32, epoch: i32| -> Vec<(String, Vec<PartitionPlacement>)> {
        internal(&env.broker)
            .into_iter()
            .map(|(t, p)| if t == POP_TOPIC { (t, vec![led(leader, epoch); p.len()]) } else { (t, p) })
            .collect()
    };
    env.broker.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1)],
        fenced: vec![node(2)],
        topics: shards(2, 1).into_iter().chain([("q".to_string(), vec![led(1, 1)])]).collect(),
        controllers: vec![1],
    });
    let m = env.m.clone();
    let receipt = got[0].receipt.clone();
    let ack = tokio::spawn(async move {
        let g = ConsumeModel::Clustering;
        m.ack_many_at_leaders("g", &g, std::slice::from_ref(&receipt), true).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ack.is_finished(), "failed at once: {:?}", ack.await);
    // This node is elected the shards' leader.
    env.broker.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1), node(2)],
        fenced: Vec::new(),
        topics: shards(1, 2).into_iter().chain([("q".to_string(), vec![led(1, 1)])]).collect(),
        controllers: vec![1],
    });
    let results = ack.await.unwrap().unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    // Applied: the message is not handed out again once the others' time
    // runs out.
    env.clock.advance(601_000);
    let again = env.m.pop(req(20)).await.unwrap();
    assert_eq!(offsets(&again), (1..12).collect::<Vec<_>>(), "m0 was acked");
    env.close().await;
}
