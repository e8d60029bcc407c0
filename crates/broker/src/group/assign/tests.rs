//! Assignor examples from Kafka's documentation and property tests.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::{Assignment, MemberSubscription, range, uniform};

type TopicPartition = (String, i32);

fn member(id: &str, topics: &[&str]) -> MemberSubscription {
    MemberSubscription {
        member_id: id.to_owned(),
        group_instance_id: None,
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn counts(topics: &[(&str, i32)]) -> HashMap<String, i32> {
    topics.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

fn tps(list: &[(&str, i32)]) -> Vec<TopicPartition> {
    list.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect()
}

#[test]
fn range_matches_the_kafka_example() {
    let members = [member("c1", &["t0", "t1"]), member("c0", &["t0", "t1"])];
    let result = range(&members, &counts(&[("t0", 3), ("t1", 3)]));
    assert_eq!(result["c0"], tps(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]));
    assert_eq!(result["c1"], tps(&[("t0", 2), ("t1", 2)]));
}

#[test]
fn uniform_matches_the_kafka_round_robin_examples() {
    let members = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
    let result = uniform(&members, &counts(&[("t0", 3), ("t1", 3)]));
    assert_eq!(result["c0"], tps(&[("t0", 0), ("t0", 2), ("t1", 1)]));
    assert_eq!(result["c1"], tps(&[("t0", 1), ("t1", 0), ("t1", 2)]));

    let members = [member("c0", &["t0"]), member("c1", &["t0", "t1"]), member("c2", &["t0", "t1", "t2"])];
    let result = uniform(&members, &counts(&[("t0", 1), ("t1", 2), ("t2", 3)]));
    assert_eq!(result["c0"], tps(&[("t0", 0)]));
    assert_eq!(result["c1"], tps(&[("t1", 0)]));
    assert_eq!(result["c2"], tps(&[("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)]));
}

#[test]
fn static_members_come_first_and_unknown_topics_are_ignored() {
    let members = [
        member("a-dynamic", &["t0", "unknown"]),
        MemberSubscription { group_instance_id: Some("instance".to_owned()), ..member("z-static", &["t0"]) },
        member("idle", &[]),
    ];
    let result = range(&members, &counts(&[("t0", 3), ("empty", 0)]));
    assert_eq!(result["z-static"], tps(&[("t0", 0), ("t0", 1)]));
    assert_eq!(result["a-dynamic"], tps(&[("t0", 2)]));
    assert!(result["idle"].is_empty(), "every member is present in the result");
    assert!(uniform(&[], &counts(&[("t0", 3)])).is_empty());
}

const TOPICS: [&str; 4] = ["t0", "t1", "t2", "t3"];

fn arb_counts() -> impl Strategy<Value = HashMap<String, i32>> {
    proptest::collection::vec(0..10i32, TOPICS.len())
        .prop_map(|n| TOPICS.iter().map(|t| (*t).to_owned()).zip(n).collect())
}

fn arb_members() -> impl Strategy<Value = Vec<MemberSubscription>> {
    proptest::collection::vec((proptest::collection::vec(any::<bool>(), TOPICS.len()), any::<bool>()), 0..8).prop_map(
        |specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (subscribed, is_static))| MemberSubscription {
                    member_id: format!("member-{i}"),
                    group_instance_id: is_static.then(|| format!("instance-{}", 7 - i)),
                    topics: TOPICS.iter().zip(subscribed).filter(|(_, s)| *s).map(|(t, _)| (*t).to_owned()).collect(),
                })
                .collect()
        },
    )
}

/// Checks the invariants shared by all assignors.
fn check_complete_and_exclusive(
    members: &[MemberSubscription],
    partition_counts: &HashMap<String, i32>,
    assignment: &Assignment,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(assignment.len(), members.len(), "every member is in the result");
    let mut owners: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (member_id, partitions) in assignment {
        let member = members.iter().find(|m| &m.member_id == member_id);
        let Some(member) = member else {
            return Err(TestCaseError::fail(format!("unexpected member {member_id}")));
        };
        prop_assert!(partitions.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        for tp in partitions {
            prop_assert!(member.topics.contains(&tp.0), "{} got unsubscribed {:?}", member_id, tp);
            *owners.entry(tp.clone()).or_default() += 1;
        }
    }
    for (topic, count) in partition_counts {
        let subscribed = members.iter().any(|m| m.topics.contains(topic));
        for partition in 0..*count {
            let owned = owners.get(&(topic.clone(), partition)).copied().unwrap_or(0);
            prop_assert_eq!(owned, usize::from(subscribed), "{}-{} owners", topic, partition);
        }
    }
    Ok(())
}

fn reversed(members: &[MemberSubscription]) -> Vec<MemberSubscription> {
    members.iter().rev().cloned().collect()
}

proptest! {
    #[test]
    fn range_assigns_each_partition_once_and_balances_per_topic(
        members in arb_members(),
        partition_counts in arb_counts(),
    ) {
        let assignment = range(&members, &partition_counts);
        check_complete_and_exclusive(&members, &partition_counts, &assignment)?;
        prop_assert_eq!(&assignment, &range(&reversed(&members), &partition_counts));
        for topic in TOPICS {
            let per_member: Vec<usize> = members
                .iter()
                .filter(|m| m.topics.iter().any(|t| t == topic))
                .map(|m| assignment[&m.member_id].iter().filter(|tp| tp.0 == topic).count())
                .collect();
            if let (Some(max), Some(min)) = (per_member.iter().max(), per_member.iter().min()) {
                prop_assert!(max - min <= 1, "{}: {:?}", topic, per_member);
            }
        }
    }

    #[test]
    fn uniform_assigns_each_partition_once(
        members in arb_members(),
        partition_counts in arb_counts(),
    ) {
        let assignment = uniform(&members, &partition_counts);
        check_complete_and_exclusive(&members, &partition_counts, &assignment)?;
        prop_assert_eq!(&assignment, &uniform(&reversed(&members), &partition_counts));
    }

    #[test]
    fn uniform_balances_within_one_for_equal_subscriptions(
        member_count in 1..10usize,
        subscribed in proptest::collection::vec(any::<bool>(), TOPICS.len()),
        partition_counts in arb_counts(),
    ) {
        let topics: Vec<&str> = TOPICS.iter().zip(&subscribed).filter(|(_, s)| **s).map(|(t, _)| *t).collect();
        let members: Vec<MemberSubscription> =
            (0..member_count).map(|i| member(&format!("m{i}"), &topics)).collect();
        let assignment = uniform(&members, &partition_counts);
        check_complete_and_exclusive(&members, &partition_counts, &assignment)?;
        let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
        let (max, min) = (sizes.iter().max().copied().unwrap_or(0), sizes.iter().min().copied().unwrap_or(0));
        prop_assert!(max - min <= 1, "{:?}", sizes);
    }
}
