//! Pure server-side partition assignors.
//!
//! The classic Kafka protocol lets the group leader assign partitions client-side, so the
//! coordinator in this module never calls these. They exist for protocols where the broker
//! assigns: Kafka's KIP-848 consumer protocol and RocketMQ's server-side rebalancing.
//!
//! Both assignors are deterministic: the result depends only on the set of members (ordered
//! as Kafka orders `MemberInfo`: static members by instance id first, then dynamic members by
//! member id), their subscriptions and the partition counts, never on input order. Every
//! member appears in the result, possibly with no partitions. A partition is only assigned
//! to a member subscribed to its topic; topics without a (positive) partition count are
//! ignored. Member ids are expected to be unique; repeated ids are merged into one member
//! subscribed to the union of their topics.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The output of an assignor: member id -> its `(topic, partition)` pairs, sorted.
pub type Assignment = BTreeMap<String, Vec<(String, i32)>>;

/// One member's subscription, the input of an assignor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any; static members sort first (Kafka `MemberInfo`).
    pub group_instance_id: Option<String>,
    /// The topics the member subscribes to.
    pub topics: Vec<String>,
}

#[derive(Debug)]
struct Subscriber {
    member_id: String,
    group_instance_id: Option<String>,
    topics: BTreeSet<String>,
}

/// Kafka's `MemberInfo` order: static members by instance id, then dynamic by member id.
fn member_order(a: &Subscriber, b: &Subscriber) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

/// Merges duplicates and sorts members into assignment order.
fn normalize(members: &[MemberSubscription]) -> Vec<Subscriber> {
    let mut merged: BTreeMap<&str, Subscriber> = BTreeMap::new();
    for member in members {
        let entry = merged.entry(&member.member_id).or_insert_with(|| Subscriber {
            member_id: member.member_id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            topics: BTreeSet::new(),
        });
        entry.topics.extend(member.topics.iter().cloned());
    }
    let mut sorted: Vec<Subscriber> = merged.into_values().collect();
    sorted.sort_by(member_order);
    sorted
}

/// Topics with at least one partition, in name order.
fn sorted_topics(partition_counts: &HashMap<String, i32>) -> Vec<(&str, i32)> {
    let mut topics: Vec<(&str, i32)> = partition_counts
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(topic, count)| (topic.as_str(), *count))
        .collect();
    topics.sort_unstable();
    topics
}

fn empty_assignment(members: &[Subscriber]) -> Assignment {
    members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect()
}

fn finish(mut assignment: Assignment) -> Assignment {
    for partitions in assignment.values_mut() {
        partitions.sort_unstable();
    }
    assignment
}

/// Kafka's `RangeAssignor`: for each topic independently, its partitions are split into
/// contiguous ranges over the members subscribed to it, the first `partitions % members`
/// members getting one extra partition.
pub fn range(members: &[MemberSubscription], partition_counts: &HashMap<String, i32>) -> Assignment {
    let members = normalize(members);
    let mut assignment = empty_assignment(&members);
    for (topic, count) in sorted_topics(partition_counts) {
        let subscribers: Vec<&Subscriber> = members.iter().filter(|m| m.topics.contains(topic)).collect();
        let Ok(subscriber_count) = i32::try_from(subscribers.len()) else {
            continue; // More than i32::MAX members: unreachable in practice.
        };
        if subscriber_count == 0 {
            continue;
        }
        let per_member = count / subscriber_count;
        let extra = count % subscriber_count;
        let mut next = 0;
        for (index, member) in (0..).zip(&subscribers) {
            let len = per_member + i32::from(index < extra);
            if let Some(owned) = assignment.get_mut(&member.member_id) {
                owned.extend((next..next + len).map(|p| (topic.to_owned(), p)));
            }
            next += len;
        }
    }
    finish(assignment)
}

/// Kafka's `RoundRobinAssignor`: all partitions of all subscribed topics, sorted by topic
/// and partition, are dealt to the members in a circle, skipping members not subscribed to
/// the partition's topic. With identical subscriptions every member gets `n / members` or
/// one more partition.
pub fn uniform(members: &[MemberSubscription], partition_counts: &HashMap<String, i32>) -> Assignment {
    let members = normalize(members);
    let mut assignment = empty_assignment(&members);
    if members.is_empty() {
        return assignment;
    }
    let mut cursor = 0;
    for (topic, count) in sorted_topics(partition_counts) {
        if !members.iter().any(|m| m.topics.contains(topic)) {
            continue;
        }
        for partition in 0..count {
            // Continue the circle where the previous partition stopped; the `any` above
            // guarantees a subscriber is found within one lap.
            let offset =
                (0..members.len()).find(|step| members[(cursor + step) % members.len()].topics.contains(topic));
            let Some(offset) = offset else { break };
            let chosen = (cursor + offset) % members.len();
            if let Some(owned) = assignment.get_mut(&members[chosen].member_id) {
                owned.push((topic.to_owned(), partition));
            }
            cursor = (chosen + 1) % members.len();
        }
    }
    finish(assignment)
}

#[cfg(test)]
mod tests;
