use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn register(id: NodeId) -> Command {
    Command::RegisterNode { id, internode: format!("127.0.0.1:{}", 7000 + id), listeners: BTreeMap::new(), rack: None }
}

fn topic(leaders: &[NodeId]) -> TopicAssignment {
    TopicAssignment {
        id: "00000000-0000-0000-0000-000000000001".into(),
        config: BTreeMap::new(),
        partitions: leaders.iter().map(|l| PartitionAssignment::new(vec![*l], *l)).collect(),
    }
}

#[test]
fn rules_are_enforced_and_rejections_change_nothing() {
    let mut m = Metadata::default();
    assert_eq!(m.apply(&register(1)), Reply::Ok);
    let create = Command::CreateTopic { name: "t".into(), topic: topic(&[1, 2]) };
    assert!(matches!(m.apply(&create), Reply::Rejected { reason: Rejection::UnknownNode, .. }));
    assert!(m.topics.is_empty());
    m.apply(&register(2));
    assert_eq!(m.apply(&create), Reply::Ok);
    let mut other = topic(&[1]);
    other.id = "00000000-0000-0000-0000-000000000002".into();
    let again = Command::CreateTopic { name: "t".into(), topic: other };
    assert!(matches!(m.apply(&again), Reply::Rejected { reason: Rejection::TopicExists, .. }));
    // A node holding partitions cannot be removed.
    assert!(matches!(m.apply(&Command::RemoveNode { id: 2 }), Reply::Rejected { reason: Rejection::Invalid, .. }));
    // A re-registration is a new incarnation.
    m.apply(&register(2));
    assert_eq!(m.nodes[&2].incarnation, 2);
}

/// A proposer retries a change whose first attempt committed unanswered
/// (its controller leader stalled or was deposed): the retry succeeds
/// without changing anything again, and a stale one changes nothing.
#[test]
fn retried_topic_changes_succeed_once_and_stale_ones_are_refused() {
    let mut m = Metadata::default();
    m.apply(&register(1));
    let create = Command::CreateTopic { name: "t".into(), topic: topic(&[1]) };
    assert_eq!(m.apply(&create), Reply::Ok);
    assert_eq!(m.apply(&create), Reply::Ok);
    assert_eq!(m.topics["t"].partitions.len(), 1);

    let grow = Command::CreatePartitions {
        name: "t".into(),
        added: vec![PartitionAssignment::new(vec![1], 1); 2],
        from: Some(1),
    };
    assert_eq!(m.apply(&grow), Reply::Ok);
    assert_eq!(m.apply(&grow), Reply::Ok);
    assert_eq!(m.topics["t"].partitions.len(), 3, "a retried growth adds nothing");
    let stale = Command::CreatePartitions {
        name: "t".into(),
        added: vec![PartitionAssignment::new(vec![1], 1)],
        from: Some(1),
    };
    assert!(matches!(m.apply(&stale), Reply::Rejected { reason: Rejection::Conflict, .. }));
    assert_eq!(m.topics["t"].partitions.len(), 3);

    let id = m.topics["t"].id.clone();
    let delete = Command::DeleteTopic { name: "t".into(), id: Some(id) };
    assert_eq!(m.apply(&delete), Reply::Ok);
    assert_eq!(m.apply(&delete), Reply::Ok, "a retried delete succeeds");
    // Recreated under the name: an old delete leaves it alone.
    let mut newer = topic(&[1]);
    newer.id = "00000000-0000-0000-0000-000000000002".into();
    assert_eq!(m.apply(&Command::CreateTopic { name: "t".into(), topic: newer }), Reply::Ok);
    assert_eq!(m.apply(&delete), Reply::Ok);
    assert!(m.topics.contains_key("t"), "the recreated topic stays");
    let unknown = Command::DeleteTopic { name: "t".into(), id: Some("00000000-0000-0000-0000-000000000009".into()) };
    assert!(matches!(m.apply(&unknown), Reply::Rejected { reason: Rejection::UnknownTopic, .. }));
}

#[test]
fn leader_epochs_grow_with_each_leader_change() {
    let mut m = Metadata::default();
    m.apply(&register(1));
    m.apply(&register(2));
    m.apply(&Command::CreateTopic { name: "t".into(), topic: topic(&[1]) });
    let mv = |leader| Command::AssignPartition { name: "t".into(), partition: 0, replicas: vec![1, 2], leader };
    m.apply(&mv(2));
    assert_eq!(m.topics["t"].partitions[0].leader_epoch, 1);
    // Same leader, new replica set: the epoch stays.
    m.apply(&mv(2));
    assert_eq!(m.topics["t"].partitions[0].leader_epoch, 1);
    m.apply(&mv(1));
    assert_eq!((m.topics["t"].partitions[0].leader, m.topics["t"].partitions[0].leader_epoch), (1, 2));
}

fn command() -> impl Strategy<Value = Command> {
    let node = 1u64..5;
    prop_oneof![
        node.clone().prop_map(register),
        node.clone().prop_map(|id| Command::FenceNode { id }),
        node.clone().prop_map(|id| Command::UnfenceNode { id }),
        node.clone().prop_map(|id| Command::ShutdownNode { id }),
        (0u8..3, node.clone(), 0i32..3, 0i32..4).prop_map(|(t, leader, leader_epoch, partition_epoch)| {
            Command::ResignLeadership { name: format!("t{t}"), partition: 0, leader, leader_epoch, partition_epoch }
        }),
        node.clone().prop_map(|id| Command::RemoveNode { id }),
        (0u8..3, proptest::collection::vec(1u64..5, 1..4))
            .prop_map(|(t, l)| Command::CreateTopic { name: format!("t{t}"), topic: topic(&l) }),
        (0u8..3, proptest::collection::btree_set(1u64..5, 1..4)).prop_map(|(t, r)| {
            let replicas: Vec<NodeId> = r.into_iter().collect();
            let mut topic = topic(&[replicas[0]]);
            topic.partitions = vec![PartitionAssignment::new(replicas.clone(), replicas[0]); 2];
            Command::CreateTopic { name: format!("r{t}"), topic }
        }),
        (0u8..3, 0u32..2, 1u64..5, 0i32..3, 0i32..4, proptest::collection::vec(1u64..5, 0..4)).prop_map(
            |(t, partition, leader, leader_epoch, partition_epoch, isr)| Command::AlterIsr {
                name: format!("r{t}"),
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            }
        ),
        (0u8..3, 0u32..2, proptest::option::of(proptest::collection::vec(1u64..5, 0..4)))
            .prop_map(|(t, partition, target)| Command::ReassignPartition { name: format!("r{t}"), partition, target }),
        (0u8..3, 0u32..2, 0i32..6).prop_map(|(t, partition, partition_epoch)| Command::CompleteReassignment {
            name: format!("r{t}"),
            partition,
            partition_epoch
        }),
        (0u8..3, 0u32..2, any::<bool>()).prop_map(|(t, partition, unclean)| Command::ElectLeader {
            name: format!("r{t}"),
            partition,
            unclean
        }),
        (0u8..3).prop_map(|t| Command::DeleteTopic { name: format!("t{t}"), id: None }),
        (0u8..3, 0u32..3, 1u64..5).prop_map(|(t, p, leader)| Command::AssignPartition {
            name: format!("t{t}"),
            partition: p,
            replicas: vec![leader],
            leader
        }),
        (0u8..3, 0u8..3).prop_map(|(g, n)| Command::SetGroupConfig {
            group: format!("g{g}"),
            config: (0..n).map(|i| (format!("k{i}"), i.to_string())).collect(),
        }),
        (0u8..2, 0u64..3, 0u8..3, 0u8..3).prop_map(|(s, expect, k, r)| Command::UpdateDocuments {
            scope: format!("s{s}"),
            expect,
            set: (0..k).map(|i| (format!("k{i}"), i.to_string())).collect(),
            remove: (0..r).map(|i| format!("k{i}")).collect(),
        }),
    ]
}

proptest! {
    /// Two replicas applying the same log agree, a snapshot restores the
    /// same state, and leader epochs never go down.
    #[test]
    fn apply_is_deterministic_and_snapshots_round_trip(cmds in proptest::collection::vec(command(), 0..60)) {
        let (mut a, mut b) = (Metadata::default(), Metadata::default());
        for c in &cmds {
            let before: BTreeMap<(String, usize), (i32, i32)> = a.topics.iter()
                .flat_map(|(n, t)| t.partitions.iter().enumerate()
                    .map(move |(i, p)| ((n.clone(), i), (p.leader_epoch, p.partition_epoch))))
                .collect();
            prop_assert_eq!(a.apply(c), b.apply(c));
            for ((n, i), (e, pe)) in before {
                if let Some(p) = a.topics.get(&n).and_then(|t| t.partitions.get(i)) {
                    prop_assert!(p.leader_epoch >= e && p.partition_epoch >= pe);
                }
            }
            for p in a.topics.values().flat_map(|t| &t.partitions) {
                let isr = p.in_sync();
                prop_assert!(p.replicas.contains(&p.leader) && isr.contains(&p.leader));
                prop_assert!(isr.iter().all(|r| p.replicas.contains(r)));
                prop_assert!(p.adding.iter().chain(&p.removing).all(|r| p.replicas.contains(r)));
            }
        }
        prop_assert_eq!(&a, &b);
        let bytes = a.to_bytes().expect("encode");
        prop_assert_eq!(Metadata::from_bytes(&bytes).expect("decode"), a);
    }
}

#[test]
fn deleted_topics_are_remembered_by_id_boundedly() {
    let mut m = Metadata::default();
    m.apply(&register(1));
    for i in 0..3u32 {
        let mut t = topic(&[1]);
        t.id = format!("id-{i}");
        m.apply(&Command::CreateTopic { name: format!("t{i}"), topic: t });
    }
    m.apply(&Command::DeleteTopic { name: "t1".into(), id: None });
    m.apply(&Command::DeleteTopic { name: "t0".into(), id: None });
    assert_eq!(m.deleted_topic_ids, ["id-1", "id-0"]);
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Metadata>(&json).unwrap(), m);
    // Metadata written before tombstones existed still loads.
    let old = r#"{"nodes":{},"topics":{}}"#;
    assert!(serde_json::from_str::<Metadata>(old).unwrap().deleted_topic_ids.is_empty());
    for i in 0..DELETED_TOPICS_KEPT + 5 {
        m.deleted_topic_ids.push_back(format!("x{i}"));
    }
    let mut t = topic(&[1]);
    t.id = "last".into();
    m.apply(&Command::CreateTopic { name: "t9".into(), topic: t });
    m.apply(&Command::DeleteTopic { name: "t9".into(), id: None });
    assert_eq!(m.deleted_topic_ids.len(), DELETED_TOPICS_KEPT);
    assert_eq!(m.deleted_topic_ids.back().map(String::as_str), Some("last"));
}

#[test]
fn group_configs_are_set_replaced_and_removed() {
    let mut m = Metadata::default();
    let cfg = |v: &str| BTreeMap::from([("fjord.max.attempts".to_string(), v.to_string())]);
    assert_eq!(m.apply(&Command::SetGroupConfig { group: "g".into(), config: cfg("3") }), Reply::Ok);
    assert_eq!(m.apply(&Command::SetGroupConfig { group: "g".into(), config: cfg("5") }), Reply::Ok);
    assert_eq!(m.group_configs["g"], cfg("5"));
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Metadata>(&json).unwrap(), m);
    // An empty config removes the group's entry; a nameless group is refused.
    m.apply(&Command::SetGroupConfig { group: "g".into(), config: BTreeMap::new() });
    assert!(m.group_configs.is_empty());
    let before = m.clone();
    assert!(matches!(
        m.apply(&Command::SetGroupConfig { group: String::new(), config: cfg("1") }),
        Reply::Rejected { reason: Rejection::Invalid, .. }
    ));
    assert_eq!(m, before);
    // Metadata written before group configs existed still loads.
    let old = r#"{"nodes":{},"topics":{}}"#;
    assert!(serde_json::from_str::<Metadata>(old).unwrap().group_configs.is_empty());
}

/// Nodes 1–3 registered and topic `t` with one partition on all three,
/// led by node 1.
fn three_replicas_led_by_1() -> Metadata {
    let mut m = Metadata::default();
    for id in 1..=3 {
        m.apply(&register(id));
    }
    let mut t = topic(&[1]);
    t.partitions = vec![PartitionAssignment::new(vec![1, 2, 3], 1)];
    m.apply(&Command::CreateTopic { name: "t".into(), topic: t });
    m
}

#[test]
fn fencing_elects_from_the_in_sync_set_and_never_uncleanly() {
    let mut m = three_replicas_led_by_1();
    let p = |m: &Metadata| m.topics["t"].partitions[0].clone();
    // Node 2 falls out of sync; the leader's stale proposal changes nothing.
    let alter = |isr: Vec<NodeId>, partition_epoch| Command::AlterIsr {
        name: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        partition_epoch,
        isr,
    };
    assert_eq!(m.apply(&alter(vec![1, 3], 0)), Reply::Ok);
    assert!(matches!(m.apply(&alter(vec![1], 0)), Reply::Rejected { reason: Rejection::Conflict, .. }));
    assert!(matches!(m.apply(&alter(vec![3], 1)), Reply::Rejected { reason: Rejection::Invalid, .. }));
    // The leader is fenced: node 3 (in sync) leads, not node 2 (first, but behind).
    m.apply(&Command::FenceNode { id: 1 });
    assert_eq!((p(&m).leader, p(&m).leader_epoch, p(&m).isr.clone()), (3, 1, vec![3]));
    // The last in-sync member fenced: no election to node 2, the set keeps it.
    m.apply(&Command::FenceNode { id: 3 });
    assert_eq!((p(&m).leader, p(&m).leader_epoch, p(&m).isr.clone()), (3, 1, vec![3]));
    // It restarts: it leads again, in a new epoch (it may have lost an unsynced tail).
    m.apply(&register(3));
    assert_eq!((p(&m).leader, p(&m).leader_epoch), (3, 2));
    // A fenced node cannot be added back; a serving one can.
    let alter3 = |isr: Vec<NodeId>, partition_epoch| Command::AlterIsr {
        name: "t".into(),
        partition: 0,
        leader: 3,
        leader_epoch: 2,
        partition_epoch,
        isr,
    };
    let pe = p(&m).partition_epoch;
    assert!(matches!(m.apply(&alter3(vec![3, 1], pe)), Reply::Rejected { reason: Rejection::Invalid, .. }));
    assert_eq!(m.apply(&alter3(vec![3, 2], pe)), Reply::Ok);
    // A follower in sync restarts: it leaves the set (its disk may have
    // lost a tail) and the leader keeps the lead and its epoch.
    let before = p(&m);
    m.apply(&register(2));
    let after = p(&m);
    assert_eq!((after.leader, after.leader_epoch, after.isr.clone()), (3, 2, vec![3]));
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
    // A restart of a node in no in-sync set changes nothing.
    m.apply(&register(2));
    assert_eq!(p(&m), after);
    // Metadata written before in-sync sets existed loads with the leader alone in sync.
    let old = r#"{"replicas":[2],"leader":2,"leader_epoch":4}"#;
    let old: PartitionAssignment = serde_json::from_str(old).unwrap();
    assert_eq!((old.in_sync(), old.partition_epoch), (vec![2], 0));
}

#[test]
fn a_leader_that_cannot_write_resigns_to_an_in_sync_replica_only() {
    let mut m = three_replicas_led_by_1();
    let p = |m: &Metadata| m.topics["t"].partitions[0].clone();
    let resign = |leader, leader_epoch, partition_epoch| Command::ResignLeadership {
        name: "t".into(),
        partition: 0,
        leader,
        leader_epoch,
        partition_epoch,
    };
    // Stale epochs or another node's word change nothing.
    assert!(matches!(m.apply(&resign(1, 0, 7)), Reply::Rejected { reason: Rejection::Conflict, .. }));
    assert!(matches!(m.apply(&resign(2, 0, 0)), Reply::Rejected { reason: Rejection::Conflict, .. }));
    // Node 2 is fenced: node 3, in sync and serving, takes over; node 1
    // leaves the in-sync set.
    m.apply(&Command::FenceNode { id: 2 });
    let before = p(&m);
    assert_eq!(before.isr, vec![1, 3]);
    assert_eq!(m.apply(&resign(1, before.leader_epoch, before.partition_epoch)), Reply::Ok);
    let after = p(&m);
    assert_eq!((after.leader, after.isr.clone()), (3, vec![3]));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    // The last in-sync replica cannot resign: the partition waits.
    let r = m.apply(&resign(3, after.leader_epoch, after.partition_epoch));
    assert!(matches!(r, Reply::Rejected { reason: Rejection::NoEligibleLeader, .. }), "{r:?}");
    assert_eq!(p(&m), after);
}

/// A leader that recovered its log in place, with nobody to hand over
/// to, leads on only in a new epoch: asked with the epochs it read.
#[test]
fn a_leader_that_lost_a_tail_gets_a_new_epoch_for_itself() {
    let mut m = three_replicas_led_by_1();
    let p = |m: &Metadata| m.topics["t"].partitions[0].clone();
    let renew = |leader, leader_epoch, partition_epoch| Command::RenewLeaderEpoch {
        name: "t".into(),
        partition: 0,
        leader,
        leader_epoch,
        partition_epoch,
    };
    let before = p(&m);
    let stale = m.apply(&renew(1, before.leader_epoch, before.partition_epoch + 1));
    assert!(matches!(stale, Reply::Rejected { reason: Rejection::Conflict, .. }), "{stale:?}");
    let other = m.apply(&renew(2, before.leader_epoch, before.partition_epoch));
    assert!(matches!(other, Reply::Rejected { reason: Rejection::Conflict, .. }), "{other:?}");
    assert_eq!(m.apply(&renew(1, before.leader_epoch, before.partition_epoch)), Reply::Ok);
    let after = p(&m);
    assert_eq!((after.leader, after.isr.clone(), after.replicas.clone()), (1, before.isr.clone(), before.replicas));
    assert_eq!((after.leader_epoch, after.partition_epoch), (before.leader_epoch + 1, before.partition_epoch + 1));
    let again = m.apply(&renew(1, before.leader_epoch, before.partition_epoch));
    assert!(matches!(again, Reply::Rejected { reason: Rejection::Conflict, .. }), "a retry renews once: {again:?}");
}

#[test]
fn a_reassignment_adds_first_and_drops_the_old_replicas_once_the_new_are_in_sync() {
    let mut m = Metadata::default();
    for id in 1..=3 {
        m.apply(&register(id));
    }
    m.apply(&Command::CreateTopic { name: "t".into(), topic: topic(&[1]) });
    let p = |m: &Metadata| m.topics["t"].partitions[0].clone();
    let to = |target: Option<Vec<NodeId>>| Command::ReassignPartition { name: "t".into(), partition: 0, target };
    assert!(matches!(m.apply(&to(None)), Reply::Rejected { reason: Rejection::NoReassignment, .. }));
    assert!(matches!(m.apply(&to(Some(vec![2, 2]))), Reply::Rejected { reason: Rejection::Invalid, .. }));
    assert_eq!(m.apply(&to(Some(vec![2, 3]))), Reply::Ok);
    let now = p(&m);
    assert_eq!((now.replicas, now.adding, now.removing, now.leader), (vec![2, 3, 1], vec![2, 3], vec![1], 1));
    // Not before the new replicas are in sync.
    let complete = |pe| Command::CompleteReassignment { name: "t".into(), partition: 0, partition_epoch: pe };
    assert!(matches!(m.apply(&complete(p(&m).partition_epoch)), Reply::Rejected { reason: Rejection::Invalid, .. }));
    let alter = Command::AlterIsr {
        name: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        partition_epoch: p(&m).partition_epoch,
        isr: vec![1, 2, 3],
    };
    assert_eq!(m.apply(&alter), Reply::Ok);
    assert!(matches!(m.apply(&complete(0)), Reply::Rejected { reason: Rejection::Conflict, .. }));
    assert_eq!(m.apply(&complete(p(&m).partition_epoch)), Reply::Ok);
    let done = p(&m);
    assert_eq!((done.replicas, done.isr, done.leader, done.leader_epoch), (vec![2, 3], vec![2, 3], 2, 1));
    assert!(done.adding.is_empty() && done.removing.is_empty());
    // A cancelled one leaves the original replicas.
    assert_eq!(m.apply(&to(Some(vec![1]))), Reply::Ok);
    assert_eq!(m.apply(&to(None)), Reply::Ok);
    let back = p(&m);
    assert_eq!((back.replicas, back.leader, back.adding), (vec![2, 3], 2, vec![]));
}

#[test]
fn elections_on_request_prefer_the_first_replica_and_unclean_ones_are_explicit() {
    let mut m = three_replicas_led_by_1();
    let p = |m: &Metadata| m.topics["t"].partitions[0].clone();
    let elect = |unclean| Command::ElectLeader { name: "t".into(), partition: 0, unclean };
    assert!(matches!(m.apply(&elect(false)), Reply::Rejected { reason: Rejection::ElectionNotNeeded, .. }));
    // Node 1 fenced: node 2 leads; back and in sync, node 1 may lead again.
    m.apply(&Command::FenceNode { id: 1 });
    assert_eq!(p(&m).leader, 2);
    m.apply(&Command::UnfenceNode { id: 1 });
    assert!(matches!(m.apply(&elect(false)), Reply::Rejected { reason: Rejection::NoEligibleLeader, .. }));
    let back = Command::AlterIsr {
        name: "t".into(),
        partition: 0,
        leader: 2,
        leader_epoch: 1,
        partition_epoch: p(&m).partition_epoch,
        isr: vec![2, 3, 1],
    };
    assert_eq!(m.apply(&back), Reply::Ok);
    assert_eq!(m.apply(&elect(false)), Reply::Ok);
    assert_eq!((p(&m).leader, p(&m).leader_epoch), (1, 2));
    // Every in-sync replica gone but node 3, out of sync, serving: only an
    // unclean election picks it, and it is then the only one in sync.
    let shrink = Command::AlterIsr {
        name: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 2,
        partition_epoch: p(&m).partition_epoch,
        isr: vec![1, 2],
    };
    assert_eq!(m.apply(&shrink), Reply::Ok);
    m.apply(&Command::FenceNode { id: 1 });
    m.apply(&Command::FenceNode { id: 2 });
    assert_eq!(p(&m).leader, 2, "no clean candidate: the partition waits");
    assert!(matches!(m.apply(&elect(false)), Reply::Rejected { .. }));
    assert_eq!(m.apply(&elect(true)), Reply::Ok);
    assert_eq!((p(&m).leader, p(&m).isr.clone()), (3, vec![3]));
    assert!(matches!(m.apply(&elect(true)), Reply::Rejected { reason: Rejection::ElectionNotNeeded, .. }));
}

/// A node being decommissioned that fell out of sync (it restarted just
/// before) may come back into the in-sync set with the others: refusing it
/// refused the whole change, so the new replicas of the move never joined
/// either and the move stayed stuck (seen in CI: a five-node decommission
/// right after a restart). A fenced node still may not.
#[test]
fn a_decommissioning_node_may_rejoin_an_in_sync_set_but_a_fenced_one_not() {
    let mut m = three_replicas_led_by_1();
    let set = |m: &mut Metadata, isr: Vec<NodeId>| {
        let partition_epoch = m.topics["t"].partitions[0].partition_epoch;
        m.apply(&Command::AlterIsr { name: "t".into(), partition: 0, leader: 1, leader_epoch: 0, partition_epoch, isr })
    };
    assert_eq!(set(&mut m, vec![1]), Reply::Ok);
    m.apply(&Command::DecommissionNode { id: 2 });
    assert_eq!(set(&mut m, vec![1, 2, 3]), Reply::Ok);
    m.apply(&Command::FenceNode { id: 3 });
    assert_eq!(set(&mut m, vec![1, 2]), Reply::Ok);
    assert!(matches!(set(&mut m, vec![1, 2, 3]), Reply::Rejected { reason: Rejection::Invalid, .. }));
}

/// `unclean.leader.election.enable=true`: when no in-sync replica serves,
/// the controller elects an out-of-sync one by itself (at once when the
/// setting changes, or when the last in-sync replica is fenced); without
/// it the partition waits for an in-sync replica.
#[test]
fn a_topic_that_allows_unclean_elections_gets_them_from_the_controller() {
    let mut m = three_replicas_led_by_1();
    let p = |m: &Metadata| m.topics["t"].partitions[0].clone();
    let partition_epoch = p(&m).partition_epoch;
    let shrink =
        Command::AlterIsr { name: "t".into(), partition: 0, leader: 1, leader_epoch: 0, partition_epoch, isr: vec![1] };
    assert_eq!(m.apply(&shrink), Reply::Ok);
    m.apply(&Command::FenceNode { id: 1 });
    assert_eq!(p(&m).leader, 1, "by default the partition waits for its in-sync replica");
    let allow = BTreeMap::from([("unclean.leader.election.enable".to_string(), "true".to_string())]);
    assert_eq!(m.apply(&Command::AlterTopicConfig { name: "t".into(), config: allow }), Reply::Ok);
    let elected = p(&m);
    assert_eq!((elected.leader, elected.isr.clone()), (2, vec![2]));
    assert_eq!(elected.leader_epoch, 1);
    // Its leader fenced in turn, the next serving replica takes over.
    m.apply(&Command::FenceNode { id: 2 });
    assert_eq!((p(&m).leader, p(&m).isr.clone()), (3, vec![3]));
    // Nothing serves: it waits, and the first replica back leads.
    m.apply(&Command::FenceNode { id: 3 });
    assert_eq!(p(&m).leader, 3);
    m.apply(&Command::UnfenceNode { id: 1 });
    assert_eq!((p(&m).leader, p(&m).isr.clone()), (1, vec![1]));
}
