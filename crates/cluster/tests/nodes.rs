//! Several cluster nodes in one process, each with its own broker, data
//! directory and internode listener on loopback: the quorum forms, every
//! node (learners included) follows the metadata, topic changes from any
//! node reach every broker, a late node catches up from a snapshot, a
//! silent node is fenced and unfenced, and a node back from an outage
//! drops the topics deleted meanwhile.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::{Cluster, config, copy_dir};
use fjord_broker::{Broker, BrokerConfig, Leadership, TopicConfig, TopicPartition};
use fjord_controller::NodeState;
use fjord_log::SystemClock;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn voters_and_learners_follow_the_metadata_and_changes_reach_every_broker() {
    let (mut c, listeners) = Cluster::new(4, 3).await;
    for (i, l) in listeners.into_iter().enumerate() {
        c.start(i as u64 + 1, l).await;
    }
    c.join(&[1, 2, 3, 4]).await;
    c.until("every node to know all four", |c| c.nodes.values().all(|n| n.node.metadata().nodes.len() == 4)).await;

    // Created through the learner (node 4): forwarded to the controller
    // leader, applied everywhere, spread over the four nodes.
    c.nodes[&4].broker.create_topic("t", 8, TopicConfig::default()).await.unwrap();
    c.until("the topic on every broker", |c| c.nodes.values().all(|n| n.broker.topic("t").is_some())).await;
    let placement = c.nodes[&1].broker.placement().unwrap();
    let mut leaders: Vec<i32> = placement.topics["t"].iter().map(|p| p.leader).collect();
    leaders.sort_unstable();
    assert_eq!(leaders, [1, 1, 2, 2, 3, 3, 4, 4]);
    // Every node agrees who leads partition 0, and only that node serves it.
    let tp = TopicPartition::new("t", 0);
    let local: Vec<u64> =
        c.nodes.iter().filter(|(_, n)| n.broker.leadership(&tp) == Leadership::Local).map(|(id, _)| *id).collect();
    assert_eq!(local.len(), 1, "{local:?}");
    // The same topic id everywhere (Kafka clients see one topic).
    let ids: Vec<_> = c.nodes.values().map(|n| n.broker.topic("t").unwrap().id()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    // A second creation is refused wherever it is tried.
    let again = c.nodes[&2].broker.create_topic("t", 1, TopicConfig::default()).await;
    assert!(matches!(again, Err(fjord_broker::BrokerError::TopicExists(_))), "{again:?}");

    // Committed offsets live at the group's coordinator: a commit through
    // another node (as a RocketMQ consumer commits to a queue's broker) is
    // forwarded there, stored on its `__fjord_offsets` partition, and read
    // back through a third node.
    c.until("committed offsets loaded everywhere", |c| c.nodes.values().all(|n| n.broker.offsets().is_loaded())).await;
    let group = "orders-app";
    let coordinator_seen_by = |c: &Cluster, id: u64| match c.nodes[&id].broker.coordinator(group) {
        Leadership::Local => id as i32,
        Leadership::Remote(n) => n.node_id,
        Leadership::Unavailable => -1,
    };
    c.until("a coordinator for the group", |c| (1..=4).all(|id| coordinator_seen_by(c, id) > 0)).await;
    let coordinator = coordinator_seen_by(&c, 1) as u64;
    let others: Vec<u64> = (1..=4).filter(|id| *id != coordinator).collect();
    let tp0 = TopicPartition::new("t", 0);
    let off = fjord_broker::CommittedOffset { offset: 42, leader_epoch: 0, metadata: "m".into(), commit_timestamp: 0 };
    let results = c.nodes[&others[0]].broker.commit_offsets_unchecked(group, vec![(tp0.clone(), off)]).await.unwrap();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let read = c.nodes[&others[1]].broker.committed_offset(group, &tp0).await.unwrap();
    assert_eq!(read.map(|o| o.offset), Some(42));
    let at = &c.nodes[&coordinator].broker;
    assert_eq!(at.offsets().get(group, "t", 0).map(|o| o.offset), Some(42));
    assert_eq!(c.nodes[&others[0]].broker.offsets().get(group, "t", 0), None, "stored at the coordinator only");
    let shard = at.offsets().shard_of(group).unwrap();
    let stored = at.topic("__fjord_offsets").unwrap().partition(shard).unwrap();
    assert!(stored.high_watermark() > 0, "the commit is a record on the coordinator's partition");

    // A group's settings set through one node are the cluster's: every
    // node applies them, none keeps a file of its own; removal likewise.
    let settings = fjord_broker::GroupConfig::from([("fjord.max.attempts".to_string(), "3".to_string())]);
    c.nodes[&4].broker.set_group_config(group, settings.clone()).await.unwrap();
    assert_eq!(c.nodes[&4].broker.group_config(group).as_ref(), Some(&settings), "applied here before returning");
    c.until("the group's settings on every node", |c| {
        c.nodes.values().all(|n| n.broker.group_setting(group, "fjord.max.attempts").as_deref() == Some("3"))
    })
    .await;
    assert!(c.nodes.values().all(|n| !n.broker.config().data_dir.join("group-configs.json").exists()));
    c.nodes[&2].broker.set_group_config(group, Default::default()).await.unwrap();
    c.until("the settings gone everywhere", |c| c.nodes.values().all(|n| n.broker.group_config(group).is_none())).await;

    // Document scopes (AMQP definitions and users) are the cluster's: a
    // change through one node is on every node, none keeps a file; two
    // nodes changing a scope read at the same version: one lands, the other
    // is told to read again — and by then holds the winner's version.
    use fjord_broker::{DocumentChange, DocumentUpdate};
    let change = |k: &str| DocumentChange { set: [(k.to_string(), "v".to_string())].into(), remove: vec![] };
    assert_eq!(
        c.nodes[&3].broker.update_documents("amqp/test", 0, change("a")).await.unwrap(),
        DocumentUpdate::Applied
    );
    assert_eq!(c.nodes[&3].broker.documents("amqp/test").unwrap().version, 1, "applied here before returning");
    c.until("the scope on every node", |c| c.nodes.values().all(|n| n.broker.documents("amqp/test").is_some())).await;
    let (b1, b2) = (c.nodes[&1].broker.clone(), c.nodes[&2].broker.clone());
    let (r1, r2) = tokio::join!(
        b1.update_documents("amqp/test", 1, change("b")),
        b2.update_documents("amqp/test", 1, change("c"))
    );
    let mut outcomes = [r1.unwrap(), r2.unwrap()];
    outcomes.sort_by_key(|o| *o == DocumentUpdate::Conflict);
    assert_eq!(outcomes, [DocumentUpdate::Applied, DocumentUpdate::Conflict]);
    assert!(b1.documents("amqp/test").unwrap().version == 2 && b2.documents("amqp/test").unwrap().version == 2);
    c.until("one winner everywhere", |c| {
        c.nodes
            .values()
            .all(|n| n.broker.documents("amqp/test").is_some_and(|s| s.version == 2 && s.entries.len() == 2))
    })
    .await;
    assert!(c.nodes.values().all(|n| !n.broker.config().data_dir.join("documents.json").exists()));

    // Deleting through another node removes it from every broker.
    c.nodes[&3].broker.delete_topic("t").await.unwrap();
    c.until("the topic gone everywhere", |c| c.nodes.values().all(|n| n.broker.topic("t").is_none())).await;

    // Two voters gone: no quorum, no leader answers heartbeats. After a
    // lease, the remaining nodes stop serving even what they led...
    c.nodes[&4].broker.create_topic("u", 8, TopicConfig::default()).await.unwrap();
    let mine = |c: &Cluster, id: u64| {
        (0..8).filter(|p| c.nodes[&id].broker.leadership(&TopicPartition::new("u", *p)) == Leadership::Local).count()
    };
    c.until("node 4 to lead some of u", |c| mine(c, 4) > 0).await;
    c.stop(1).await;
    c.stop(2).await;
    c.until("nodes 3 and 4 to stop serving", |c| c.nodes[&3].node.isolated() && c.nodes[&4].node.isolated()).await;
    assert_eq!(mine(&c, 4), 0);
    // Nobody serves, but every node it knew stays known (Kafka Metadata
    // keeps listing them: clients must not forget the brokers).
    let md = c.nodes[&4].broker.metadata(Some(&[]));
    assert!(md.nodes.is_empty());
    let mut known: Vec<i32> = md.fenced.iter().map(|n| n.node_id).collect();
    known.sort_unstable();
    assert_eq!(known, [1, 2, 3, 4]);
    // ... and serve again once the quorum is back.
    for id in [1u64, 2] {
        let l = TcpListener::bind(c.addrs[id as usize - 1].as_str()).await.unwrap();
        c.start(id, l).await;
    }
    c.until("nodes 3 and 4 serving again", |c| !c.nodes[&3].node.isolated() && !c.nodes[&4].node.isolated()).await;
    c.until("node 4 leading its partitions again", |c| mine(c, 4) > 0).await;
    for id in [1, 2, 3, 4] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_node_catches_up_from_a_snapshot_and_a_silent_node_is_fenced() {
    let (mut c, mut listeners) = Cluster::new(4, 3).await;
    let late = listeners.pop().unwrap();
    for (i, l) in listeners.into_iter().enumerate() {
        c.start(i as u64 + 1, l).await;
    }
    c.join(&[1, 2, 3]).await;
    // Node 4 will arrive holding the data of a topic deleted long before
    // (as a node back from a long outage does, catching up from a
    // snapshot taken after the deletion): the metadata names deleted
    // topics, so it deletes that data rather than keep what nobody can
    // reach.
    c.nodes[&1].broker.create_topic("gone", 1, TopicConfig::default()).await.unwrap();
    let gone = |id: u64| c.dir.path().join(format!("node-{id}")).join("topics").join("gone");
    copy_dir(&gone(1), &gone(4));
    c.nodes[&1].broker.delete_topic("gone").await.unwrap();
    // Enough metadata changes for several snapshots (one every 10 entries)
    // and purged logs behind them.
    for i in 0..30 {
        c.nodes[&1].broker.create_topic(&format!("t{i}"), 1, TopicConfig::default()).await.unwrap();
    }
    c.start(4, late).await;
    c.join(&[4]).await;
    c.until("node 4 to have every topic", |c| (0..30).all(|i| c.nodes[&4].broker.topic(&format!("t{i}")).is_some()))
        .await;
    c.until("the deleted topic's data gone from node 4", |c| c.nodes[&4].broker.topic("gone").is_none()).await;
    assert!(!c.dir.path().join("node-4").join("topics").join("gone").exists());
    let snapshot = c.nodes[&4].node.raft().metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "node 4 caught up through a snapshot");

    // Node 3 goes silent: the others fence it once its lease runs out, and
    // its partitions have no serving leader.
    c.stop(3).await;
    c.until("node 3 fenced", |c| c.nodes[&1].node.metadata().nodes[&3].state == NodeState::Fenced).await;
    let metadata = c.nodes[&1].node.metadata();
    let led_by_3: Vec<(&str, u32)> = metadata.partitions_on(3).filter(|(t, _)| !t.starts_with("__")).collect();
    assert!(!led_by_3.is_empty());
    let tp = TopicPartition::new(led_by_3[0].0, led_by_3[0].1);
    // The broker's placement follows the applied metadata a moment later
    // (the reconciler installs it), so this is awaited, not read once.
    c.until("node 1 to route nothing to node 3", |c| c.nodes[&1].broker.leadership(&tp) == Leadership::Unavailable)
        .await;
    // Changes still commit with two of three voters.
    c.nodes[&2].broker.create_topic("after", 2, TopicConfig::default()).await.unwrap();
    // A learner whose controller state is lost (a replaced disk) rejoins
    // with an empty Raft log: the leader replicates to it from scratch.
    c.stop(4).await;
    std::fs::remove_dir_all(c.dir.path().join("node-4").join("controller")).unwrap();
    c.nodes[&1].broker.create_topic("while-away", 1, TopicConfig::default()).await.unwrap();
    let l = TcpListener::bind(c.addrs[3].as_str()).await.unwrap();
    c.start(4, l).await;
    c.join(&[4]).await;
    c.until("node 4 caught up again", |c| c.nodes[&4].broker.topic("while-away").is_some()).await;
    // A voter that lost its controller state but kept its data is refused:
    // voting as if it never had could lose committed metadata.
    c.stop(2).await;
    let data = c.dir.path().join("node-2");
    std::fs::remove_dir_all(data.join("controller")).unwrap();
    let bc = BrokerConfig { node_id: 2, cluster_id: Some("test".into()), ..BrokerConfig::new(&data) };
    let broker = Broker::open(bc, Arc::new(SystemClock)).await.unwrap();
    let (_stop, rx) = watch::channel(false);
    let l = TcpListener::bind(c.addrs[1].as_str()).await.unwrap();
    let refused = fjord_cluster::start(config(2, &c.voters, &c.addrs[1], &data), broker.clone(), l, rx).await;
    assert!(matches!(refused, Err(fjord_cluster::ClusterError::Config(_))), "{:?}", refused.err());
    broker.shutdown().await.unwrap();
    for id in [1, 4] {
        c.stop(id).await;
    }
}

/// A controller leader whose disk is full falls silent as soon as one of
/// its writes waits for space, so the others elect a leader that can
/// write: a write openraft makes beside its core (a snapshot; appends
/// that still fit in the log's last block) would leave its heartbeats
/// going and its followers keeping it while it stalls. Metadata changes
/// commit meanwhile, and once it has space again it follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_leader_with_a_full_disk_falls_silent_and_another_leads() {
    let (mut c, listeners) = Cluster::new(3, 3).await;
    for (i, l) in listeners.into_iter().enumerate() {
        c.start(i as u64 + 1, l).await;
    }
    c.join(&[1, 2, 3]).await;
    c.until("a controller leader", |c| c.nodes[&1].node.controller_leader().is_some()).await;
    let leader = c.nodes[&1].node.controller_leader().unwrap();
    // Its snapshots (one every 10 entries here) wait for space.
    let snapshot = c.nodes[&leader].node.config().dir.join("snapshot.bin");
    fjord_controller::store::inject_full(&snapshot, true);
    // Space comes back however this test ends: a write waiting for it
    // holds a blocking thread the runtime would wait for.
    struct Space(std::path::PathBuf);
    impl Drop for Space {
        fn drop(&mut self) {
            fjord_controller::store::inject_full(&self.0, false);
        }
    }
    let space = Space(snapshot);
    // Enough changes for a snapshot. Once the leader stalls on it, its own
    // node stops serving (its lease runs out) and what it is asked to
    // change is refused as unavailable: retriable, and not what this test
    // is about.
    for i in 0..12 {
        match c.nodes[&leader].broker.create_topic(&format!("t{i}"), 1, TopicConfig::default()).await {
            Ok(_) | Err(fjord_broker::BrokerError::Unavailable(_)) => {}
            Err(e) => panic!("creating t{i}: {e}"),
        }
    }
    // Proposed through another node as soon as the stalled one has fallen
    // silent: it reaches the new leader.
    // (Unavailable, retriable, until the nodes renew their leases with the
    // new leader: a node stops serving when its lease with the stalled one
    // runs out.)
    let other = (1..=3).find(|id| *id != leader).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match c.nodes[&other].broker.create_topic("while-full", 1, TopicConfig::default()).await {
            Ok(_) => break,
            Err(fjord_broker::BrokerError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("creating while-full: {e}"),
        }
    }
    assert!(c.nodes[&other].node.controller_leader().is_some_and(|l| l != leader));

    drop(space);
    c.until("the node with space again following", |c| c.nodes[&leader].broker.topic("while-full").is_some()).await;
    for id in 1..=3 {
        c.stop(id).await;
    }
}

/// A node whose process is gone — its cluster listener refuses
/// connections — is fenced at once, not after its lease (a minute here):
/// the controller leader probes a node whose connection ended or whose
/// heartbeats are overdue, and a new controller leader probes every node
/// as it takes over. Back, a node heartbeats and is unfenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_process_is_gone_is_fenced_before_its_lease_runs_out() {
    let (mut c, listeners) = Cluster::new(3, 3).await;
    c.lease = std::time::Duration::from_secs(60);
    for (i, l) in listeners.into_iter().enumerate() {
        c.start(i as u64 + 1, l).await;
    }
    c.join(&[1, 2, 3]).await;
    c.until("a controller leader", |c| c.nodes[&1].node.controller_leader().is_some()).await;
    let leader = c.nodes[&1].node.controller_leader().unwrap();
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    c.stop(victim).await;
    c.until("the stopped node fenced", |c| c.nodes[&leader].node.metadata().nodes[&victim].state == NodeState::Fenced)
        .await;

    let l = TcpListener::bind(c.addrs[victim as usize - 1].as_str()).await.unwrap();
    c.start(victim, l).await;
    c.join(&[victim]).await;
    c.until("the restarted node unfenced", |c| {
        c.nodes[&leader].node.metadata().nodes[&victim].state == NodeState::Active
    })
    .await;

    // The controller leader itself: the node elected next probes every
    // node as it takes over.
    c.stop(leader).await;
    let other = (1..=3).find(|id| *id != leader).unwrap();
    c.until("the old controller leader fenced", |c| {
        c.nodes[&other].node.metadata().nodes[&leader].state == NodeState::Fenced
    })
    .await;
    for id in (1..=3).filter(|id| *id != leader) {
        c.stop(id).await;
    }
}

/// Losing the controller leader, and getting a controller back, costs the
/// other nodes no service: a controller failover fits well inside the
/// nodes' lease (they heartbeat the new leader as soon as they learn of
/// it), and a restarted controller hears from the leader before its own
/// election timer fires (openraft 0.9 has no pre-vote: a campaign of the
/// restarted node, bound to lose, would depose the leader and make every
/// node's lease lapse while the quorum elected again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_failovers_and_restarts_stop_no_node_serving() {
    let (mut c, listeners) = Cluster::new(3, 3).await;
    for (i, l) in listeners.into_iter().enumerate() {
        c.start(i as u64 + 1, l).await;
    }
    c.join(&[1, 2, 3]).await;
    c.until("a controller leader", |c| c.nodes[&1].node.controller_leader().is_some()).await;
    // Twice the leader, then a follower.
    for round in 0..3 {
        let leader = c.nodes.values().find_map(|n| n.node.controller_leader()).unwrap();
        let victim = if round < 2 { leader } else { (1..=3).find(|id| *id != leader).unwrap() };
        let watched: Vec<_> = c.nodes.iter().filter(|(id, _)| **id != victim).map(|(_, n)| n.node.clone()).collect();
        // Polls the surviving nodes until told to stop; any moment one of
        // them serves nothing is a failure.
        let (done, mut until) = watch::channel(false);
        let watcher = tokio::spawn(async move {
            loop {
                if let Some(n) = watched.iter().find(|n| n.isolated()) {
                    return Some(n.config().node_id);
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                    _ = until.wait_for(|d| *d) => return None,
                }
            }
        });
        c.stop(victim).await;
        if victim == leader {
            c.until("another controller leader", |c| {
                c.nodes.values().all(|n| n.node.controller_leader().is_some_and(|l| l != victim))
            })
            .await;
        }
        let l = TcpListener::bind(c.addrs[victim as usize - 1].as_str()).await.unwrap();
        c.start(victim, l).await;
        c.join(&[victim]).await;
        c.until("the restarted node following the leader", |c| {
            let leader = c.nodes.values().find_map(|n| n.node.controller_leader().filter(|l| *l != victim));
            leader.is_some() && c.nodes[&victim].node.controller_leader() == leader
        })
        .await;
        // Long past the restarted node's election timer (its first
        // campaign could come 450 + 300..450 ms after it started).
        tokio::time::sleep(c.lease * 2).await;
        let _ = done.send(true);
        assert_eq!(watcher.await.unwrap(), None, "round {round}: a node stopped serving (victim {victim})");
    }
    for id in 1..=3 {
        c.stop(id).await;
    }
}
