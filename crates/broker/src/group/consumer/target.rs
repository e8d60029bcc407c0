//! Target assignment: runs the group's server assignor over every member.
//!
//! `range` reuses [`crate::group::assign::range`] (it already has the semantics of Kafka's
//! server-side `RangeAssignor`). `uniform` is a sticky variant defined here: Kafka's
//! `UniformAssignor` keeps previous assignments where it can, which the round-robin
//! [`crate::group::assign::uniform`] does not, and stickiness is what keeps reconciliation
//! cheap when one member joins or leaves.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::ServerAssignor;
use super::member::{Partitions, insert};
use crate::group::assign::{self, MemberSubscription};

/// A subscribed topic that exists: its id and partition count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TopicInfo {
    pub(super) id: Uuid,
    pub(super) partitions: u32,
}

/// One member as the assignor sees it.
#[derive(Debug, Clone)]
pub(super) struct MemberSpec<'a> {
    pub(super) member_id: &'a str,
    pub(super) instance_id: Option<&'a str>,
    /// Subscribed topics (names and regex matches) that exist.
    pub(super) topics: BTreeSet<&'a str>,
}

/// Computes the target assignment of every member. `topics` holds every subscribed topic
/// that exists; `previous` is the previous target assignment (for stickiness).
pub(super) fn compute(
    assignor: ServerAssignor,
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicInfo>,
    previous: &HashMap<String, Partitions>,
) -> HashMap<String, Partitions> {
    match assignor {
        ServerAssignor::Range => range(members, topics),
        ServerAssignor::Uniform => uniform(members, topics, previous),
    }
}

fn range(members: &[MemberSpec<'_>], topics: &BTreeMap<String, TopicInfo>) -> HashMap<String, Partitions> {
    let subscriptions: Vec<MemberSubscription> = members
        .iter()
        .map(|m| MemberSubscription {
            member_id: m.member_id.to_owned(),
            group_instance_id: m.instance_id.map(str::to_owned),
            topics: m.topics.iter().map(|t| (*t).to_owned()).collect(),
        })
        .collect();
    let counts: HashMap<String, i32> =
        topics.iter().map(|(name, info)| (name.clone(), i32::try_from(info.partitions).unwrap_or(i32::MAX))).collect();
    assign::range(&subscriptions, &counts)
        .into_iter()
        .map(|(member_id, pairs)| {
            let mut partitions = Partitions::new();
            for (topic, partition) in pairs {
                if let Some(info) = topics.get(&topic) {
                    insert(&mut partitions, info.id, partition);
                }
            }
            (member_id, partitions)
        })
        .collect()
}

/// Kafka's `MemberInfo` order: static members by instance id, then dynamic ones by member id.
fn member_order(a: &MemberSpec<'_>, b: &MemberSpec<'_>) -> Ordering {
    match (a.instance_id, b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(b.member_id),
    }
}

/// A partition as `(index of its topic in name order, partition)`.
type Slot = (usize, i32);

/// Sticky balanced assignment:
///
/// 1. every member keeps the partitions of its previous target that still exist and that it
///    is still subscribed to (each partition once);
/// 2. every other partition goes to the least-loaded subscribed member, topics with fewer
///    subscribers first;
/// 3. while some member holds at least two partitions more than a member subscribed to one of
///    them, the most loaded member gives its last such partition to the least loaded one.
///
/// Every step decreases the sum of squared loads, so 3. terminates; with identical
/// subscriptions it leaves every member within one partition of the others. Ties are broken by
/// the member order, so the result is deterministic.
fn uniform(
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicInfo>,
    previous: &HashMap<String, Partitions>,
) -> HashMap<String, Partitions> {
    let mut sorted: Vec<&MemberSpec<'_>> = members.iter().collect();
    sorted.sort_by(|a, b| member_order(a, b));
    let topic_list: Vec<(&str, TopicInfo)> = topics.iter().map(|(name, info)| (name.as_str(), *info)).collect();
    let index_by_name: HashMap<&str, usize> = topic_list.iter().enumerate().map(|(i, (name, _))| (*name, i)).collect();
    let index_by_id: HashMap<Uuid, usize> = topic_list.iter().enumerate().map(|(i, (_, info))| (info.id, i)).collect();
    let subscriptions: Vec<BTreeSet<usize>> =
        sorted.iter().map(|m| m.topics.iter().filter_map(|name| index_by_name.get(name).copied()).collect()).collect();
    let partition_count = |topic: usize| i32::try_from(topic_list[topic].1.partitions).unwrap_or(i32::MAX);

    // 1. Stickiness.
    let mut owned: Vec<BTreeSet<Slot>> = vec![BTreeSet::new(); sorted.len()];
    let mut taken: BTreeSet<Slot> = BTreeSet::new();
    for (index, member) in sorted.iter().enumerate() {
        let Some(before) = previous.get(member.member_id) else { continue };
        for (topic_id, partitions) in before {
            let Some(&topic) = index_by_id.get(topic_id) else { continue };
            if !subscriptions[index].contains(&topic) {
                continue;
            }
            for &partition in partitions.iter().filter(|p| (0..partition_count(topic)).contains(*p)) {
                if taken.insert((topic, partition)) {
                    owned[index].insert((topic, partition));
                }
            }
        }
    }

    // 2. Free partitions to the least loaded subscriber.
    let mut loads: BTreeSet<(usize, usize)> = owned.iter().enumerate().map(|(i, o)| (o.len(), i)).collect();
    let mut subscribers = vec![0usize; topic_list.len()];
    for subscription in &subscriptions {
        for topic in subscription {
            subscribers[*topic] += 1;
        }
    }
    let mut topic_order: Vec<usize> = (0..topic_list.len()).filter(|t| subscribers[*t] > 0).collect();
    topic_order.sort_by_key(|t| (subscribers[*t], *t));
    for topic in topic_order {
        for partition in 0..partition_count(topic) {
            if taken.contains(&(topic, partition)) {
                continue;
            }
            let Some(&(load, index)) = loads.iter().find(|(_, i)| subscriptions[*i].contains(&topic)) else {
                break;
            };
            loads.remove(&(load, index));
            loads.insert((load + 1, index));
            owned[index].insert((topic, partition));
        }
    }

    // 3. Balance.
    while let Some((donor, receiver, slot)) = find_move(&loads, &owned, &subscriptions) {
        let (donor_load, receiver_load) = (owned[donor].len(), owned[receiver].len());
        loads.remove(&(donor_load, donor));
        loads.remove(&(receiver_load, receiver));
        owned[donor].remove(&slot);
        owned[receiver].insert(slot);
        loads.insert((donor_load - 1, donor));
        loads.insert((receiver_load + 1, receiver));
    }

    sorted
        .iter()
        .zip(owned)
        .map(|(member, slots)| {
            let mut partitions = Partitions::new();
            for (topic, partition) in slots {
                insert(&mut partitions, topic_list[topic].1.id, partition);
            }
            (member.member_id.to_owned(), partitions)
        })
        .collect()
}

/// A partition move `(donor, receiver, partition)` that narrows a load gap of two or more.
fn find_move(
    loads: &BTreeSet<(usize, usize)>,
    owned: &[BTreeSet<Slot>],
    subscriptions: &[BTreeSet<usize>],
) -> Option<(usize, usize, Slot)> {
    let &(min_load, _) = loads.first()?;
    for &(donor_load, donor) in loads.iter().rev() {
        if donor_load < min_load + 2 {
            return None;
        }
        for &slot in owned[donor].iter().rev() {
            let receiver = loads
                .iter()
                .take_while(|(load, _)| load + 2 <= donor_load)
                .find(|(_, index)| subscriptions[*index].contains(&slot.0));
            if let Some(&(_, receiver)) = receiver {
                return Some((donor, receiver, slot));
            }
        }
    }
    None
}
