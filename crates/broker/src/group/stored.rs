//! A group's membership as it is stored beside its committed offsets
//! (Kafka's `GroupMetadataValue` on `__consumer_offsets`), so that a
//! coordinator taking a group over — after a failover, a preferred-leader
//! move or a restart — carries on with the same generation, members and
//! assignments instead of refusing their commits with GROUP_ID_NOT_FOUND.
//!
//! Only settled states are stored: Stable (members with their assignments)
//! and Empty (the generation alone). A group in the middle of a rebalance
//! keeps its last settled record; its members rejoin on the new
//! coordinator as they would after any rebalance. A restored group is
//! Stable with every member's session restarted from the moment of the
//! restore (Kafka reschedules heartbeats on load the same way), so members
//! that are gone expire and the rest heartbeat and commit on.

use std::time::Duration;

use bytes::Bytes;

use super::GroupState;
use super::consumer::StoredConsumerGroup;
use super::state::{Ctx, Group, Member};

/// One member of a stored group: what Kafka's `MemberMetadata` record keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// Static membership instance id.
    pub group_instance_id: Option<String>,
    /// Client id it joined with.
    pub client_id: String,
    /// Client host it joined from.
    pub client_host: String,
    /// Session timeout it asked for.
    pub session_timeout: Duration,
    /// Rebalance timeout it asked for.
    pub rebalance_timeout: Duration,
    /// Its metadata for the group's selected protocol.
    pub subscription: Bytes,
    /// What the leader assigned it.
    pub assignment: Bytes,
}

/// A classic group in a settled state (Stable or Empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    /// Group id.
    pub group_id: String,
    /// Generation of the stored state.
    pub generation: i32,
    /// Protocol type (e.g. `consumer`), once a member fixed it.
    pub protocol_type: Option<String>,
    /// Selected protocol (assignor), while Stable.
    pub protocol_name: Option<String>,
    /// Leader member id, while Stable.
    pub leader_id: Option<String>,
    /// Members in join order; empty for an Empty group.
    pub members: Vec<StoredMember>,
}

/// What is stored for a group id: the state of a classic group or of a
/// KIP-848 consumer group (a group id is one or the other; converting a
/// group replaces its record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    /// A classic group.
    Classic(StoredGroup),
    /// A KIP-848 `consumer` protocol group.
    Consumer(StoredConsumerGroup),
}

impl Group {
    /// The stored form of this group, if it is settled (see the module docs).
    pub(crate) fn stored_form(&self) -> Option<StoredGroup> {
        let empty = StoredGroup {
            group_id: self.group_id.clone(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: None,
            leader_id: None,
            members: Vec::new(),
        };
        match self.state {
            GroupState::Empty => Some(empty),
            GroupState::Stable => {
                let protocol = self.protocol_name.as_deref().unwrap_or_default();
                let members = self
                    .member_ids_in_join_order()
                    .iter()
                    .filter_map(|id| self.members.get(id))
                    .map(|m| StoredMember {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        session_timeout: m.session_timeout,
                        rebalance_timeout: m.rebalance_timeout,
                        subscription: m.metadata(protocol),
                        assignment: m.assignment.clone(),
                    })
                    .collect();
                Some(StoredGroup {
                    protocol_name: self.protocol_name.clone(),
                    leader_id: self.leader_id.clone(),
                    members,
                    ..empty
                })
            }
            _ => None,
        }
    }

    /// A group rebuilt from its stored form: Stable with its members (their
    /// sessions starting now), or Empty. A Stable record whose protocol or
    /// members are missing is taken as Empty at its generation, so the
    /// members rejoin.
    pub(crate) fn restored(stored: StoredGroup, ctx: &Ctx<'_>) -> Group {
        let mut group = Group::new(&stored.group_id);
        group.generation = stored.generation;
        group.protocol_type = stored.protocol_type.clone();
        let protocol = match (&stored.protocol_name, &stored.protocol_type) {
            (Some(p), Some(_)) if !stored.members.is_empty() => p.clone(),
            _ => return group,
        };
        for m in stored.members {
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: m.session_timeout,
                rebalance_timeout: m.rebalance_timeout,
                protocol_type: stored.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                join_reply: None,
                sync_reply: None,
                is_new: false,
                join_order: 0,
                session_timer: None,
            };
            group.add_member(member, ctx);
            group.touch_session(&m.member_id, ctx);
        }
        // `add_member` made the oldest member leader; the record names it.
        if let Some(leader) = stored.leader_id.filter(|l| group.members.contains_key(l)) {
            group.leader_id = Some(leader);
        }
        group.protocol_name = Some(protocol);
        group.transition(GroupState::Stable);
        group
    }
}
