//! Partition replication across three in-process nodes: followers copy
//! the leader's batches with their offsets, a write is acknowledged only
//! once every in-sync replica holds it durably, the leader's loss elects
//! an in-sync follower holding every acknowledged record, and the old
//! leader comes back as a follower, catches up and rejoins the in-sync
//! replicas.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use bytes::{Bytes, BytesMut};
use common::Cluster;
use fjord_broker::{TopicConfig, TopicPartition};
use fjord_log::batch::{BatchBuilder, NewRecord};
use tokio::net::TcpListener;

fn batch(values: &[String]) -> BytesMut {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for v in values {
        b.push(&NewRecord { value: Some(Bytes::from(v.clone())), ..Default::default() });
    }
    b.build()
}

fn values(c: &Cluster, node: u64, tp: &TopicPartition) -> Vec<String> {
    let p = c.nodes[&node].broker.topic(&tp.topic).unwrap().partition(tp.partition).unwrap();
    let mut out = Vec::new();
    // One segment per read: read on until the log end.
    while (out.len() as u64) < p.log_end_offset() {
        let recs = p.read_appended(out.len() as u64, 1 << 20).unwrap();
        if recs.is_empty() {
            break;
        }
        out.extend(recs.into_iter().map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_copy_the_leader_and_one_takes_over_with_everything_acknowledged() {
    let (mut c, mut listeners) = Cluster::new(3, 3).await;
    listeners.reverse();
    for id in 1..=3 {
        c.start(id, listeners.pop().unwrap()).await;
    }
    c.join(&[1, 2, 3]).await;
    c.until("node 1 to see three serving nodes", |c| {
        c.nodes[&1].broker.placement().is_some_and(|p| p.nodes.len() == 3)
    })
    .await;
    let tp = TopicPartition::new("r", 0);
    c.nodes[&1].broker.create_topic_replicated("r", 1, Some(3), TopicConfig::default()).await.unwrap();
    // None while `via` serves nothing: a node that heard no controller
    // leader for a lease (one is being elected after a stop) empties it.
    let placed = |c: &Cluster, via: u64| c.nodes[&via].broker.placement()?.partition(&tp).cloned();
    let first = placed(&c, 1).unwrap();
    assert_eq!(first.replicas.len(), 3);
    assert_eq!(first.isr.len(), 3);
    let leader = first.leader as u64;

    // Acknowledged means every in-sync replica holds it: once produce
    // returns, each follower's log has the records at the same offsets.
    let mut sent = Vec::new();
    for i in 0..20 {
        let vals: Vec<String> = (0..5).map(|j| format!("m{i}-{j}")).collect();
        let r = c.nodes[&leader].broker.produce(&tp, batch(&vals)).await.unwrap();
        assert_eq!(r.base_offset, i * 5);
        sent.extend(vals);
    }
    for id in 1..=3 {
        let have = values(&c, id, &tp);
        assert!(have.len() >= sent.len() && have[..sent.len()] == sent[..], "node {id} holds {}", have.len());
    }
    // Followers learn the commit point from the leader's answers.
    c.until("followers at the leader's high watermark", |c| {
        (1..=3).all(|id| c.nodes[&id].broker.topic("r").unwrap().partition(0).unwrap().high_watermark() == 100)
    })
    .await;

    // The leader is lost: an in-sync follower leads, in a new epoch, with
    // every acknowledged record, and takes writes.
    c.stop(leader).await;
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    c.until("a new leader", |c| placed(c, survivor).is_some_and(|p| p.leader as u64 != leader)).await;
    let now = placed(&c, survivor).unwrap();
    assert!(now.leader_epoch > first.leader_epoch);
    assert!(!now.isr.contains(&(leader as i32)));
    let new_leader = now.leader as u64;
    assert_eq!(values(&c, new_leader, &tp)[..100], sent[..]);
    let r = c.nodes[&new_leader].broker.produce(&tp, batch(&["after".to_string()])).await.unwrap();
    assert_eq!(r.base_offset, 100);
    // The old leader's epoch is fenced: the deposed node is not asked.
    assert!(c.nodes[&new_leader].broker.produce(&TopicPartition::new("r", 0), batch(&["x".into()])).await.is_ok());

    // The old leader returns as a follower, catches up and is in sync again.
    let l = TcpListener::bind(c.addrs[leader as usize - 1].as_str()).await.unwrap();
    c.start(leader, l).await;
    c.join(&[leader]).await;
    c.until("the old leader caught up", |c| values(c, leader, &tp).len() == 102).await;
    assert_eq!(values(&c, leader, &tp)[..100], sent[..]);
    c.until("the old leader back in sync", |c| placed(c, survivor).is_some_and(|p| p.isr.len() == 3)).await;
    for id in 1..=3 {
        c.stop(id).await;
    }
}

/// Three nodes serving, and a partition of topic `name` on all three.
async fn three_nodes_and_a_replicated_partition(name: &str) -> (Cluster, TopicPartition) {
    three_nodes_and_a_partition(name, 3).await
}

/// Three nodes serving, and a partition of topic `name` on `replicas` of
/// them.
async fn three_nodes_and_a_partition(name: &str, replicas: u16) -> (Cluster, TopicPartition) {
    let (mut c, mut listeners) = Cluster::new(3, 3).await;
    listeners.reverse();
    for id in 1..=3 {
        c.start(id, listeners.pop().unwrap()).await;
    }
    c.join(&[1, 2, 3]).await;
    c.until("three serving nodes", |c| c.nodes[&1].broker.placement().is_some_and(|p| p.nodes.len() == 3)).await;
    c.nodes[&1].broker.create_topic_replicated(name, 1, Some(replicas), TopicConfig::default()).await.unwrap();
    (c, TopicPartition::new(name, 0))
}

/// Kafka's controlled shutdown: a node about to stop cleanly is fenced at
/// once and its partitions get new leaders while it still runs, without
/// waiting for its lease to run out; its heartbeats no longer renew
/// anything, so it is not unfenced before it is gone; its next incarnation
/// is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controlled_shutdown_hands_partitions_over_at_once_and_stays_fenced() {
    let (mut c, tp) = three_nodes_and_a_replicated_partition("s").await;
    let placed = |c: &Cluster, via: u64| c.nodes[&via].broker.placement()?.partition(&tp).cloned();
    let first = placed(&c, 1).unwrap();
    let leader = first.leader as u64;
    let vals: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    c.nodes[&leader].broker.produce(&tp, batch(&vals)).await.unwrap();

    c.nodes[&leader].node.controlled_shutdown().await.unwrap();
    // At once, as the node itself sees it: another leads, in a new epoch,
    // with everything acknowledged; the node is out of the in-sync set.
    let now = placed(&c, leader).unwrap();
    assert_ne!(now.leader as u64, leader);
    assert!(now.leader_epoch > first.leader_epoch);
    assert!(!now.isr.contains(&(leader as i32)));
    assert_eq!(values(&c, now.leader as u64, &tp)[..10], vals[..]);
    assert!(c.nodes[&leader].broker.produce(&tp, batch(&["late".into()])).await.is_err());
    let state = |c: &Cluster| c.nodes[&1].node.metadata().nodes[&leader].state;
    assert_eq!(state(&c), fjord_controller::NodeState::Fenced);
    // It still heartbeats (not stopped yet): for two leases, nobody
    // unfences it.
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    assert_eq!(state(&c), fjord_controller::NodeState::Fenced);

    // Its next incarnation is served again.
    c.stop(leader).await;
    let l = TcpListener::bind(c.addrs[leader as usize - 1].as_str()).await.unwrap();
    c.start(leader, l).await;
    c.join(&[leader]).await;
    let other = (1..=3).find(|id| *id != leader).unwrap();
    c.until("the restarted node active", |c| {
        c.nodes[&other].node.metadata().nodes[&leader].state == fjord_controller::NodeState::Active
    })
    .await;
    for id in 1..=3 {
        c.stop(id).await;
    }
}

/// A restarted node serves nothing until its new incarnation is
/// registered: the metadata it applied before it stopped names it leader
/// in an epoch its former incarnation led, and taking writes in that epoch
/// again (with a log that may have lost its unsynced tail) forks the log
/// under one epoch — the checker found an acknowledged write lost that way.
/// Registering hands what it led on in a new epoch first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_leader_serves_nothing_before_it_registers() {
    let (mut c, tp) = three_nodes_and_a_replicated_partition("b").await;
    let placed = |c: &Cluster, via: u64| c.nodes[&via].broker.placement()?.partition(&tp).cloned();
    let first = placed(&c, 1).unwrap();
    let leader = first.leader as u64;
    c.nodes[&leader].broker.produce(&tp, batch(&["v".into()])).await.unwrap();

    c.stop(leader).await;
    let l = TcpListener::bind(c.addrs[leader as usize - 1].as_str()).await.unwrap();
    c.start(leader, l).await;
    // Through the metadata it holds (its peers listed, as not serving:
    // clients keep them), yet serving nothing.
    c.until("the restarted node through the metadata it holds", |c| {
        c.nodes[&leader].broker.placement().is_some_and(|p| p.fenced.len() == 3)
    })
    .await;
    assert!(c.nodes[&leader].node.metadata().topics.contains_key("b"));
    assert!(placed(&c, leader).is_none(), "served before registering");
    let refused = c.nodes[&leader].broker.produce(&tp, batch(&["stale".into()])).await;
    assert!(matches!(refused, Err(fjord_broker::BrokerError::NotLeader { .. })), "{refused:?}");

    c.join(&[leader]).await;
    let now = placed(&c, leader).unwrap();
    assert!(now.leader_epoch > first.leader_epoch);
    for id in 1..=3 {
        c.stop(id).await;
    }
}

/// A leader whose disk fails (a full disk poisons its log) resigns: an
/// in-sync follower leads with everything acknowledged and takes writes;
/// once the disk is back the old leader recovers, catches up as a follower
/// and is in sync again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_cannot_write_hands_the_lead_to_an_in_sync_replica() {
    let (mut c, tp) = three_nodes_and_a_replicated_partition("d").await;
    let placed = |c: &Cluster, via: u64| c.nodes[&via].broker.placement()?.partition(&tp).cloned();
    let first = placed(&c, 1).unwrap();
    let leader = first.leader as u64;
    let other = (1..=3).find(|id| *id != leader).unwrap();
    let vals: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    c.nodes[&leader].broker.produce(&tp, batch(&vals)).await.unwrap();

    let part = c.nodes[&leader].broker.topic("d").unwrap().partition(0).unwrap();
    part.log_for_tests().inject_fsync_failure(true);
    assert!(c.nodes[&leader].broker.produce(&tp, batch(&["lost".into()])).await.is_err());
    assert!(part.write_failure().is_some());
    c.until("another leader", |c| placed(c, other).is_some_and(|p| p.leader as u64 != leader)).await;
    let now = placed(&c, other).unwrap();
    assert!(!now.isr.contains(&(leader as i32)));
    assert!(now.leader_epoch > first.leader_epoch);
    let new_leader = now.leader as u64;
    assert_eq!(values(&c, new_leader, &tp)[..10], vals[..]);
    let r = c.nodes[&new_leader].broker.produce(&tp, batch(&["after".into()])).await.unwrap();
    // The write refused at the old leader (its fsync failed there) may
    // have reached the followers first, and then stays: it was answered
    // as possibly written (REQUEST_TIMED_OUT in Kafka), never as lost.
    let lead = values(&c, new_leader, &tp);
    assert_eq!(r.base_offset as usize, lead.len() - 1);
    assert!(lead.len() == 11 || (lead.len() == 12 && lead[10] == "lost"), "{lead:?}");

    // The disk is back: recovered, the old leader follows and rejoins.
    part.log_for_tests().inject_fsync_failure(false);
    // (What the broker's maintenance task does every `log_recovery_interval`.)
    assert_eq!(c.nodes[&leader].broker.recover_poisoned_logs().await, 1);
    c.until("the old leader caught up and back in sync", |c| {
        placed(c, other).is_some_and(|p| p.isr.contains(&(leader as i32)))
    })
    .await;
    c.until("the old leader holding what the new one holds", |c| values(c, leader, &tp) == lead).await;
    for id in 1..=3 {
        c.stop(id).await;
    }
}

/// A leader alone in its in-sync set whose log is recovered in place (cut
/// back to its last fsync) leads on only in a new leader epoch, which the
/// controller renews for it: a follower that copied the lost tail (the
/// checker's seed 10) cuts it by its epoch instead of taking new records at
/// those offsets for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_lost_a_tail_in_place_leads_on_in_a_new_epoch() {
    let (mut c, tp) = three_nodes_and_a_partition("lt", 2).await;
    let placed = |c: &Cluster, via: u64| c.nodes[&via].broker.placement()?.partition(&tp).cloned();
    c.until("the partition placed", |c| placed(c, 1).is_some()).await;
    let first = placed(&c, 1).unwrap();
    let leader = first.leader as u64;
    let follower = first.replicas.iter().map(|r| *r as u64).find(|r| *r != leader).unwrap();
    let witness = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
    c.nodes[&leader].broker.produce(&tp, batch(&["kept".into()])).await.unwrap();
    c.stop(follower).await;
    c.until("the leader alone in sync", |c| placed(c, leader).is_some_and(|p| p.isr == vec![leader as i32])).await;
    let alone = placed(&c, leader).unwrap();

    let part = c.nodes[&leader].broker.topic("lt").unwrap().partition(0).unwrap();
    part.log_for_tests().inject_fsync_failure(true);
    assert!(c.nodes[&leader].broker.produce(&tp, batch(&["lost".into()])).await.is_err());
    part.log_for_tests().inject_fsync_failure(false);
    assert_eq!(c.nodes[&leader].broker.recover_poisoned_logs().await, 1);
    c.until("a new leader epoch for the same leader", |c| {
        [leader, witness].iter().all(|via| {
            placed(c, *via).is_some_and(|p| p.leader as u64 == leader && p.leader_epoch > alone.leader_epoch)
        })
    })
    .await;
    let r = c.nodes[&leader].broker.produce(&tp, batch(&["new".into()])).await.unwrap();
    assert_eq!(r.base_offset, 1, "written where the lost record was");
    assert!(part.last_epoch() > alone.leader_epoch, "in the new epoch");
    assert_eq!(values(&c, leader, &tp), ["kept", "new"]);
    for id in [leader, witness] {
        c.stop(id).await;
    }
}

/// A group's coordinator moving (its offsets partition led elsewhere after
/// a controlled shutdown) keeps the group: the new coordinator restores a
/// classic group's generation, members and assignments, and a KIP-848
/// group's epochs and assignments, from the partition, so members
/// heartbeat and commit on without a rebalance (Kafka's group metadata
/// records). Without it the commit failed with GROUP_ID_NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_keeps_its_generation_and_members_when_its_coordinator_moves() {
    use fjord_broker::group::consumer::ConsumerHeartbeat;
    use fjord_broker::group::{GroupState, HeartbeatRequest, JoinGroupRequest, SyncGroupRequest};
    use fjord_broker::group_offsets::CommitIdentity;
    use fjord_broker::offsets::CommittedOffset;
    use fjord_broker::placement::Leadership;

    let (mut c, mut listeners) = Cluster::new(3, 3).await;
    c.replication_factor = 3;
    listeners.reverse();
    for id in 1..=3 {
        c.start(id, listeners.pop().unwrap()).await;
    }
    c.join(&[1, 2, 3]).await;
    let coordinator = |c: &Cluster| {
        (1..=3u64).find(|id| {
            c.nodes.get(id).is_some_and(|n| {
                matches!(n.broker.coordinator("g"), Leadership::Local) && n.broker.offsets().is_current("g")
            })
        })
    };
    c.until("a coordinator for the group", |c| coordinator(c).is_some()).await;
    let first = coordinator(&c).unwrap();
    let b = c.nodes[&first].broker.clone();
    b.create_topic_replicated("t", 1, Some(3), TopicConfig::default()).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    c.until("the topic on the coordinator", |c| c.nodes[&first].broker.partition(&tp).is_ok()).await;

    let joined = b
        .join_group(JoinGroupRequest {
            group_id: "g".into(),
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c1".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: std::time::Duration::from_secs(30),
            rebalance_timeout: std::time::Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: false,
            supports_skip_assignment: false,
        })
        .await
        .unwrap();
    let (member, generation) = (joined.member_id.clone(), joined.generation_id);
    b.sync_group(SyncGroupRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member.clone(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: vec![(member.clone(), Bytes::from_static(b"t-0"))],
    })
    .await
    .unwrap();
    let who = CommitIdentity { member_id: member.clone(), generation_id: generation, group_instance_id: None };
    let off = |o| CommittedOffset { offset: o, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 };
    b.commit_offsets("g", &who, vec![(tp.clone(), off(5))]).await.unwrap();
    // A KIP-848 group coordinated by the same node.
    let cg = (0..).map(|i| format!("cg-{i}")).find(|g| matches!(b.coordinator(g), Leadership::Local)).unwrap();
    let joined = b
        .consumer_heartbeat(ConsumerHeartbeat {
            group_id: cg.clone(),
            member_epoch: 0,
            rebalance_timeout: Some(std::time::Duration::from_secs(30)),
            subscribed_topic_names: Some(vec!["t".into()]),
            owned_partitions: Some(Vec::new()),
            ..ConsumerHeartbeat::default()
        })
        .await
        .unwrap();
    assert_eq!(joined.assignment.as_ref().map(|a| a.len()), Some(1));

    c.nodes[&first].node.controlled_shutdown().await.unwrap();
    c.until("another coordinator, loaded", |c| coordinator(c).is_some_and(|n| n != first)).await;
    let next = &c.nodes[&coordinator(&c).unwrap()].broker;
    let heartbeat = HeartbeatRequest {
        group_id: "g".into(),
        member_id: member.clone(),
        group_instance_id: None,
        generation_id: generation,
    };
    next.groups().heartbeat(&heartbeat).unwrap();
    let results = next.commit_offsets("g", &who, vec![(tp.clone(), off(9))]).await.unwrap();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let described = next.groups().describe_group("g").unwrap();
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].member_id, member);
    assert_eq!(&described.members[0].assignment[..], b"t-0");
    assert_eq!(next.committed_offset("g", &tp).await.unwrap().map(|o| o.offset), Some(9));
    // The KIP-848 member carries on with its epoch and assignment.
    let next = &c.nodes[&coordinator(&c).unwrap()].broker;
    next.consumer_groups().validate_commit(&cg, &joined.member_id, joined.member_epoch).unwrap();
    let owned = joined.assignment.clone();
    let beat = next
        .consumer_heartbeat(ConsumerHeartbeat {
            group_id: cg.clone(),
            member_id: joined.member_id.clone(),
            member_epoch: joined.member_epoch,
            owned_partitions: owned,
            ..ConsumerHeartbeat::default()
        })
        .await
        .unwrap();
    assert_eq!((beat.member_epoch, beat.assignment), (joined.member_epoch, None));
    for id in 1..=3 {
        c.stop(id).await;
    }
}

/// A replica moved away is emptied on its old node once the move completes
/// (Kafka deletes it too): its files do not stay behind for ever. The
/// partition keeps every record on its new replicas, and the old node
/// copies all of it again when it is added back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_moved_away_is_emptied_and_copied_again_when_it_comes_back() {
    let (mut c, tp) = three_nodes_and_a_partition("mv", 2).await;
    let placed = |c: &Cluster| c.nodes[&1].broker.placement().and_then(|p| p.partition(&tp).cloned());
    let first = placed(&c).unwrap();
    let (leader, follower) = (first.replicas[0] as u64, first.replicas[1] as u64);
    let spare = (1..=3).find(|id| !first.replicas.contains(&(*id as i32))).unwrap();
    let sent: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
    for chunk in sent.chunks(10) {
        c.nodes[&leader].broker.produce(&tp, batch(chunk)).await.unwrap();
    }
    c.until("the follower holding everything", |c| values(c, follower, &tp).len() == 50).await;

    // The follower's replica moves to the spare node.
    let target = vec![leader as i32, spare as i32];
    c.nodes[&1].broker.reassign_partition(&tp, Some(target.clone())).await.unwrap();
    c.until("the move complete", |c| placed(c).is_some_and(|p| p.replicas == target && p.adding.is_empty())).await;
    assert_eq!(values(&c, spare, &tp), sent);
    let part = |c: &Cluster, id: u64| c.nodes[&id].broker.topic("mv").unwrap().partition(0).unwrap();
    c.until("the old replica emptied", |c| part(c, follower).log_end_offset() == 0).await;
    assert!(values(&c, follower, &tp).is_empty());

    // Moved back, it copies the partition from the leader again.
    let back = vec![leader as i32, follower as i32];
    c.nodes[&1].broker.reassign_partition(&tp, Some(back.clone())).await.unwrap();
    c.until("the move back complete", |c| placed(c).is_some_and(|p| p.replicas == back && p.adding.is_empty())).await;
    c.nodes[&leader].broker.produce(&tp, batch(&["after".to_string()])).await.unwrap();
    c.until("the returned replica following", |c| part(c, follower).log_end_offset() == 51).await;
    let mut all = sent.clone();
    all.push("after".into());
    assert_eq!(values(&c, follower, &tp), all, "copied from the leader's log start again");
    for id in 1..=3 {
        c.stop(id).await;
    }
}
