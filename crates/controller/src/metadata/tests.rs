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
        partitions: leaders
            .iter()
            .map(|l| PartitionAssignment { replicas: vec![*l], leader: *l, leader_epoch: 0 })
            .collect(),
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
    assert!(matches!(m.apply(&create), Reply::Rejected { reason: Rejection::TopicExists, .. }));
    // A node holding partitions cannot be removed.
    assert!(matches!(m.apply(&Command::RemoveNode { id: 2 }), Reply::Rejected { reason: Rejection::Invalid, .. }));
    // A re-registration is a new incarnation.
    m.apply(&register(2));
    assert_eq!(m.nodes[&2].incarnation, 2);
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
        node.clone().prop_map(|id| Command::RemoveNode { id }),
        (0u8..3, proptest::collection::vec(1u64..5, 1..4))
            .prop_map(|(t, l)| Command::CreateTopic { name: format!("t{t}"), topic: topic(&l) }),
        (0u8..3).prop_map(|t| Command::DeleteTopic { name: format!("t{t}") }),
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
            let before: BTreeMap<(String, usize), i32> = a.topics.iter()
                .flat_map(|(n, t)| t.partitions.iter().enumerate().map(move |(i, p)| ((n.clone(), i), p.leader_epoch)))
                .collect();
            prop_assert_eq!(a.apply(c), b.apply(c));
            for ((n, i), e) in before {
                if let Some(p) = a.topics.get(&n).and_then(|t| t.partitions.get(i)) {
                    prop_assert!(p.leader_epoch >= e);
                }
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
    m.apply(&Command::DeleteTopic { name: "t1".into() });
    m.apply(&Command::DeleteTopic { name: "t0".into() });
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
    m.apply(&Command::DeleteTopic { name: "t9".into() });
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
