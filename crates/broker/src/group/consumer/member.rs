//! One member of a consumer group and the partition-set helpers used throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use uuid::Uuid;

use super::TopicPartitions;
use super::timer::TimerKey;
use crate::group::GroupError;

/// A set of partitions keyed by topic id. Topics never map to an empty set.
pub(super) type Partitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// Where a member stands in its reconciliation (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum MemberState {
    /// The member owns its target assignment (or is about to be told its new epoch).
    #[default]
    Stable,
    /// The member must revoke `pending_revocation` before it can move to the target epoch.
    UnrevokedPartitions,
    /// The member is at the target epoch but some target partitions are still owned by others.
    UnreleasedPartitions,
}

/// A consumer group member.
#[derive(Debug, Clone, Default)]
pub(super) struct Member {
    pub(super) member_id: String,
    pub(super) instance_id: Option<String>,
    pub(super) rack_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) rebalance_timeout: Duration,
    pub(super) subscribed_topic_names: BTreeSet<String>,
    pub(super) subscribed_topic_regex: Option<String>,
    pub(super) server_assignor: Option<String>,
    /// The current member epoch (0 before the first reconciliation, -2 after a static leave).
    pub(super) epoch: i32,
    /// The epoch before the last change of `epoch` or of the assignment; a heartbeat carrying
    /// it is still accepted if its owned partitions fit the assignment (lost response).
    pub(super) previous_epoch: i32,
    pub(super) state: MemberState,
    /// The partitions the member may consume.
    pub(super) assigned: Partitions,
    /// Partitions taken away from the member that it has not yet confirmed giving up.
    pub(super) pending_revocation: Partitions,
    pub(super) session_timer: Option<TimerKey>,
    pub(super) rebalance_timer: Option<TimerKey>,
}

impl Member {
    /// A member joining with `member_id`, before any request field is applied.
    pub(super) fn new(member_id: &str) -> Self {
        Member { member_id: member_id.to_owned(), ..Member::default() }
    }

    /// Whether the subscription (names and regex) differs from `other`'s.
    pub(super) fn subscription_differs(&self, other: &Member) -> bool {
        self.subscribed_topic_names != other.subscribed_topic_names
            || self.subscribed_topic_regex != other.subscribed_topic_regex
    }

    /// Kafka's `isReconciledTo`: at the target epoch with nothing in flight.
    pub(super) fn is_reconciled_to(&self, target_epoch: i32) -> bool {
        self.epoch == target_epoch && self.state == MemberState::Stable
    }

    /// Every partition the member may still be consuming: assigned or pending revocation.
    pub(super) fn owned(&self) -> impl Iterator<Item = (Uuid, i32)> + '_ {
        iter(&self.assigned).chain(iter(&self.pending_revocation))
    }

    /// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`: the request must carry the current
    /// epoch, or the previous one with owned partitions that the current assignment contains
    /// (the response that moved the member on may have been lost).
    pub(super) fn validate_epoch(&self, received: i32, owned: Option<&[TopicPartitions]>) -> Result<(), GroupError> {
        let fenced =
            || GroupError::FencedMemberEpoch { member_id: self.member_id.clone(), received, current: self.epoch };
        if received > self.epoch {
            return Err(fenced());
        }
        if received < self.epoch && (received != self.previous_epoch || !is_subset(owned, &self.assigned)) {
            return Err(fenced());
        }
        Ok(())
    }
}

/// Iterates a partition set as `(topic id, partition)` pairs in order.
pub(super) fn iter(partitions: &Partitions) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    partitions.iter().flat_map(|(topic, set)| set.iter().map(move |p| (*topic, *p)))
}

/// Adds one partition to a set.
pub(super) fn insert(partitions: &mut Partitions, topic: Uuid, partition: i32) {
    partitions.entry(topic).or_default().insert(partition);
}

/// Whether a set contains one partition.
pub(super) fn contains(partitions: &Partitions, topic: Uuid, partition: i32) -> bool {
    partitions.get(&topic).is_some_and(|set| set.contains(&partition))
}

/// The wire form of a partition set: topics and partitions ascending.
pub(super) fn to_list(partitions: &Partitions) -> Vec<TopicPartitions> {
    partitions
        .iter()
        .map(|(topic, set)| TopicPartitions { topic_id: *topic, partitions: set.iter().copied().collect() })
        .collect()
}

/// Kafka's `isSubset`: every reported partition is in `assigned`; an absent list is not.
pub(super) fn is_subset(owned: Option<&[TopicPartitions]>, assigned: &Partitions) -> bool {
    let Some(owned) = owned else { return false };
    owned.iter().all(|tp| tp.partitions.iter().all(|p| contains(assigned, tp.topic_id, *p)))
}

/// Kafka's `ownsRevokedPartitions`: whether the member still reports any partition of
/// `pending`. An absent list tells nothing, so it counts as still owning them.
pub(super) fn owns_any(owned: Option<&[TopicPartitions]>, pending: &Partitions) -> bool {
    let Some(owned) = owned else { return true };
    owned.iter().any(|tp| tp.partitions.iter().any(|p| contains(pending, tp.topic_id, *p)))
}
