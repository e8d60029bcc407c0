//! A KIP-848 group as it is stored beside its committed offsets (what
//! Kafka keeps in its `ConsumerGroupMetadata`, `ConsumerGroupMemberMetadata`,
//! `ConsumerGroupTargetAssignment*` and `ConsumerGroupCurrentMemberAssignment`
//! records, here as one record per group), so that a coordinator taking the
//! group over restores its epochs, members, assignments and targets and the
//! members heartbeat and commit on with their epochs.
//!
//! The broker stores it whenever a heartbeat moved the sending member's
//! epoch or assignment, or joined or left a member, before answering; every
//! change of the group (a bump, a new target, a removal by a timer) moves
//! some member's epoch at its next heartbeat, which stores the whole group.
//! A restored group restarts every member's session and, for a member
//! still revoking, its rebalance timeout, from the moment of the restore.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use super::group::{ConsumerGroup, Ctx};
use super::member::{Member, MemberState, Partitions};
use super::target::TopicInfo;
use super::timer::TimerKind;

/// One stored member (see [`StoredConsumerGroup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredConsumerMember {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: u64,
    subscribed_topic_names: BTreeSet<String>,
    subscribed_topic_regex: Option<String>,
    server_assignor: Option<String>,
    epoch: i32,
    previous_epoch: i32,
    /// `stable`, `unrevoked` or `unreleased`.
    state: String,
    assigned: Partitions,
    pending_revocation: Partitions,
}

/// A KIP-848 consumer group's stored state; opaque outside this module
/// (its serde form is the stored one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConsumerGroup {
    group_id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    members: Vec<StoredConsumerMember>,
    target: BTreeMap<String, Partitions>,
    /// The subscribed topics as of the stored epoch: name → (id, partitions).
    topics: BTreeMap<String, (Uuid, u32)>,
}

impl StoredConsumerGroup {
    /// The group's id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }
}

fn state_name(state: MemberState) -> &'static str {
    match state {
        MemberState::Stable => "stable",
        MemberState::UnrevokedPartitions => "unrevoked",
        MemberState::UnreleasedPartitions => "unreleased",
    }
}

fn state_of(name: &str) -> MemberState {
    match name {
        "unrevoked" => MemberState::UnrevokedPartitions,
        "unreleased" => MemberState::UnreleasedPartitions,
        _ => MemberState::Stable,
    }
}

impl ConsumerGroup {
    /// The stored form of this group.
    pub(super) fn stored_form(&self) -> StoredConsumerGroup {
        StoredConsumerGroup {
            group_id: self.group_id.clone(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            members: self
                .members
                .values()
                .map(|m| StoredConsumerMember {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis().min(u64::MAX as u128) as u64,
                    subscribed_topic_names: m.subscribed_topic_names.clone(),
                    subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                    server_assignor: m.server_assignor.clone(),
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    state: state_name(m.state).to_owned(),
                    assigned: m.assigned.clone(),
                    pending_revocation: m.pending_revocation.clone(),
                })
                .collect(),
            target: self.target.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            topics: self.topics.iter().map(|(name, t)| (name.clone(), (t.id, t.partitions))).collect(),
        }
    }

    /// A group rebuilt from its stored form, with its indexes, timers and
    /// regex matches; topic metadata that changed since it was stored bumps
    /// the group epoch, as the next heartbeat would have.
    pub(super) fn restored(stored: StoredConsumerGroup, ctx: &Ctx<'_>) -> ConsumerGroup {
        let mut group = ConsumerGroup::new(&stored.group_id);
        group.group_epoch = stored.group_epoch;
        group.assignment_epoch = stored.assignment_epoch;
        for m in stored.members {
            let member = Member {
                member_id: m.member_id,
                instance_id: m.instance_id,
                rack_id: m.rack_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                subscribed_topic_names: m.subscribed_topic_names,
                subscribed_topic_regex: m.subscribed_topic_regex,
                server_assignor: m.server_assignor,
                epoch: m.epoch,
                previous_epoch: m.previous_epoch,
                state: state_of(&m.state),
                assigned: m.assigned,
                pending_revocation: m.pending_revocation,
                session_timer: None,
                rebalance_timer: None,
            };
            for partition in member.owned() {
                group.owners.insert(partition, member.member_id.clone());
            }
            let (id, revoking) = (member.member_id.clone(), member.state == MemberState::UnrevokedPartitions);
            group.put_member(member);
            group.schedule_session(&id, ctx);
            if revoking && let Some(member) = group.members.get_mut(&id) {
                let kind = TimerKind::Rebalance { member_id: id.clone(), member_epoch: member.epoch };
                let deadline = Instant::now() + member.rebalance_timeout;
                member.rebalance_timer = Some(ctx.timers.schedule(deadline, &stored.group_id, kind));
            }
        }
        group.target = stored.target.into_iter().collect();
        group.topics =
            stored.topics.into_iter().map(|(name, (id, partitions))| (name, TopicInfo { id, partitions })).collect();
        if group.refresh_metadata(ctx.source) && !group.members.is_empty() {
            group.group_epoch += 1;
        }
        group
    }
}
