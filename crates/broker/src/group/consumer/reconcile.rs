//! One reconciliation step of a member towards its target assignment (the semantics of
//! Kafka's `CurrentAssignmentBuilder`). Pure: the group applies the result.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::TopicPartitions;
use super::member::{Member, MemberState, Partitions, owns_any};

/// The member's reconciliation state after one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub(super) epoch: i32,
    pub(super) state: MemberState,
    pub(super) assigned: Partitions,
    pub(super) pending_revocation: Partitions,
}

/// Moves `member` one step towards `target` (its target assignment at `target_epoch`).
///
/// `owned` is what the member's heartbeat reported (`None`: not reported);
/// `owned_by_other(topic, partition)` tells whether another member still has the partition
/// assigned or pending revocation. Returns `None` when nothing changes.
///
/// * A member with partitions to give up stays at its epoch in UnrevokedPartitions until a
///   heartbeat no longer reports any of them.
/// * Otherwise the member moves to `target_epoch`, keeps what it still should have, and
///   receives every target partition that no other member owns; the rest stay pending
///   (UnreleasedPartitions) and are handed out by a later step once released.
pub(super) fn step(
    member: &Member,
    target_epoch: i32,
    target: &Partitions,
    owned: Option<&[TopicPartitions]>,
    owned_by_other: impl Fn(Uuid, i32) -> bool,
) -> Option<Step> {
    if member.is_reconciled_to(target_epoch) {
        return None;
    }
    if member.state == MemberState::UnrevokedPartitions && owns_any(owned, &member.pending_revocation) {
        return None;
    }
    let next = next_assignment(member, target_epoch, target, owned, owned_by_other);
    let unchanged = next.epoch == member.epoch
        && next.state == member.state
        && next.assigned == member.assigned
        && next.pending_revocation == member.pending_revocation;
    (!unchanged).then_some(next)
}

fn next_assignment(
    member: &Member,
    target_epoch: i32,
    target: &Partitions,
    owned: Option<&[TopicPartitions]>,
    owned_by_other: impl Fn(Uuid, i32) -> bool,
) -> Step {
    let empty = BTreeSet::new();
    let mut assigned = Partitions::new();
    let mut revoke = Partitions::new();
    let mut to_assign = Partitions::new();
    let mut unreleased = false;

    let topics: BTreeSet<Uuid> = target.keys().chain(member.assigned.keys()).copied().collect();
    for topic in topics {
        let wanted = target.get(&topic).unwrap_or(&empty);
        let current = member.assigned.get(&topic).unwrap_or(&empty);
        let keep: BTreeSet<i32> = current.intersection(wanted).copied().collect();
        let give_up: BTreeSet<i32> = current.difference(&keep).copied().collect();
        let mut take = BTreeSet::new();
        for partition in wanted.difference(&keep) {
            if owned_by_other(topic, *partition) {
                unreleased = true;
            } else {
                take.insert(*partition);
            }
        }
        if !keep.is_empty() {
            assigned.insert(topic, keep);
        }
        if !give_up.is_empty() {
            revoke.insert(topic, give_up);
        }
        if !take.is_empty() {
            to_assign.insert(topic, take);
        }
    }

    if !revoke.is_empty() && owns_any(owned, &revoke) {
        // Revoke first: the member keeps its epoch until it confirms giving them up.
        return Step {
            epoch: member.epoch,
            state: MemberState::UnrevokedPartitions,
            assigned,
            pending_revocation: revoke,
        };
    }
    for (topic, partitions) in to_assign {
        assigned.entry(topic).or_default().extend(partitions);
    }
    let state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
    Step { epoch: target_epoch, state, assigned, pending_revocation: Partitions::new() }
}
