//! Per-group state and the bookkeeping helpers shared by the request handlers.
//!
//! Everything here runs under the group's mutex. Helpers keep the derived structures
//! (leader, static-member index, pending sets, timers) consistent with `members`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::timer::{TimerKey, TimerKind, Timers};
use super::{GroupConfig, GroupError, GroupState, JoinGroupMember, JoinGroupResponse, SyncGroupResponse};

pub(crate) type JoinReply = oneshot::Sender<Result<JoinGroupResponse, GroupError>>;
pub(crate) type SyncReply = oneshot::Sender<Result<SyncGroupResponse, GroupError>>;

/// What the handlers need besides the group itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a GroupConfig,
    pub(crate) timers: &'a Timers<TimerKind>,
}

/// How the current join phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinDelay {
    /// `group.initial.rebalance.delay.ms` for a group leaving Empty: the phase never completes
    /// early, and is extended while new members arrive, within `remaining`.
    Initial { remaining: Duration },
    /// The rebalance timeout: the phase completes as soon as every member has rejoined.
    Rebalance,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) protocol_type: String,
    /// Supported protocols in preference order.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    /// Set while the member's JoinGroup is parked ("awaiting join").
    pub(crate) join_reply: Option<JoinReply>,
    /// Set while the member's SyncGroup waits for the leader ("awaiting sync").
    pub(crate) sync_reply: Option<SyncReply>,
    /// Joined but never received a join response: may expire while awaiting join.
    pub(crate) is_new: bool,
    /// Monotonic join order; the leader is re-elected as the oldest member.
    pub(crate) join_order: u64,
    pub(crate) session_timer: Option<TimerKey>,
}

impl Member {
    pub(crate) fn is_awaiting_join(&self) -> bool {
        self.join_reply.is_some()
    }

    pub(crate) fn is_awaiting_sync(&self) -> bool {
        self.sync_reply.is_some()
    }

    /// Whether a session expiry must be ignored (Kafka `hasSatisfiedHeartbeat`): members
    /// parked in a rebalance cannot heartbeat, except new members, which are bounded by the
    /// new-member join timeout instead.
    pub(crate) fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.is_awaiting_join() || self.is_awaiting_sync())
    }

    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// The member's most preferred protocol among `candidates`.
    fn vote<'a>(&'a self, candidates: &HashSet<&str>) -> Option<&'a str> {
        self.protocols.iter().map(|(name, _)| name.as_str()).find(|name| candidates.contains(name))
    }
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) previous_state: GroupState,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader_id: Option<String>,
    pub(crate) members: HashMap<String, Member>,
    /// group instance id -> current member id.
    pub(crate) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry timers.
    pub(crate) pending_members: HashMap<String, TimerKey>,
    /// Members that received a join response but have not sent SyncGroup yet.
    pub(crate) pending_sync: HashSet<String>,
    /// A new member arrived during the initial delay: extend it once more.
    pub(crate) new_member_added: bool,
    pub(crate) join_timer: Option<(TimerKey, JoinDelay)>,
    pub(crate) sync_timer: Option<TimerKey>,
    next_join_order: u64,
}

impl Group {
    pub(crate) fn new(group_id: &str) -> Self {
        Group {
            group_id: group_id.to_owned(),
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: HashMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            next_join_order: 0,
        }
    }

    pub(crate) fn transition(&mut self, to: GroupState) {
        tracing::debug!(group = %self.group_id, from = %self.state, %to, generation = self.generation, "group state transition");
        self.previous_state = self.state;
        self.state = to;
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub(crate) fn num_awaiting_join(&self) -> usize {
        self.members.values().filter(|m| m.is_awaiting_join()).count()
    }

    pub(crate) fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(Member::is_awaiting_join)
    }

    /// The group's rebalance timeout: the largest among its members.
    pub(crate) fn rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default()
    }

    /// Members sorted by join order: leader re-election and responses are deterministic.
    pub(crate) fn member_ids_in_join_order(&self) -> Vec<String> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.join_order);
        members.into_iter().map(|m| m.member_id.clone()).collect()
    }

    /// Whether a member with these protocols may join (Kafka `supportsProtocols`): an empty
    /// group takes any non-empty protocol type and list; otherwise the type must match and one
    /// of the protocols must be supported by every current member.
    pub(crate) fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    /// The protocol for the next generation: among the protocols every member supports, each
    /// member votes for its most preferred one and the most votes win. Ties go to the
    /// protocol whose first vote came earliest in join order (Kafka leaves ties unspecified).
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let ordered = self.member_ids_in_join_order();
        let first = self.members.get(ordered.first()?)?;
        let candidates: HashSet<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut tally: Vec<(&str, usize)> = Vec::new();
        for member in ordered.iter().filter_map(|id| self.members.get(id)) {
            if let Some(vote) = member.vote(&candidates) {
                match tally.iter_mut().find(|(name, _)| *name == vote) {
                    Some((_, count)) => *count += 1,
                    None => tally.push((vote, 1)),
                }
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in tally {
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    /// The member list handed to the leader: join order, metadata of the selected protocol.
    pub(crate) fn current_member_metadata(&self) -> Vec<JoinGroupMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.member_ids_in_join_order()
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|m| JoinGroupMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// Adds a member; the first member of an empty group fixes the protocol type and leads.
    pub(crate) fn add_member(&mut self, mut member: Member, ctx: &Ctx<'_>) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members.insert(instance_id.clone(), member.member_id.clone());
        }
        if let Some(key) = self.pending_members.remove(&member.member_id) {
            ctx.timers.cancel(key);
        }
        member.join_order = self.next_join_order;
        self.next_join_order += 1;
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member and everything that refers to it, without touching the group state.
    pub(crate) fn remove_member(&mut self, member_id: &str, ctx: &Ctx<'_>) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(key) = member.session_timer {
            ctx.timers.cancel(key);
        }
        if let Some(instance_id) = &member.group_instance_id {
            // Only drop the mapping if it still points here (it moves on static replacement).
            if self.static_members.get(instance_id).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance_id);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.member_ids_in_join_order().into_iter().next();
        }
        self.remove_pending_sync(member_id, ctx);
        Some(member)
    }

    /// Moves a static member to a new member id (KIP-345), fencing the old id's parked
    /// requests immediately so a zombie instance learns it was replaced.
    pub(crate) fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_member_id: &str,
        new_member_id: &str,
    ) -> Result<(), GroupError> {
        let mut member = self.members.remove(old_member_id).ok_or_else(|| {
            GroupError::UnknownServerError(format!(
                "static member `{instance_id}` maps to missing member `{old_member_id}`"
            ))
        })?;
        let fenced = || GroupError::FencedInstanceId { group_instance_id: instance_id.to_owned() };
        if let Some(reply) = member.join_reply.take() {
            let _ = reply.send(Err(fenced()));
        }
        if let Some(reply) = member.sync_reply.take() {
            let _ = reply.send(Err(fenced()));
        }
        member.member_id = new_member_id.to_owned();
        self.members.insert(new_member_id.to_owned(), member);
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_owned());
        }
        if self.pending_sync.remove(old_member_id) {
            self.pending_sync.insert(new_member_id.to_owned());
        }
        self.static_members.insert(instance_id.to_owned(), new_member_id.to_owned());
        Ok(())
    }

    /// Restarts a member's session deadline (Kafka `completeAndScheduleNextHeartbeatExpiration`).
    pub(crate) fn reschedule_session(&mut self, member_id: &str, timeout: Duration, ctx: &Ctx<'_>) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if let Some(old) = member.session_timer.take() {
            ctx.timers.cancel(old);
        }
        let kind = TimerKind::Session { member_id: member_id.to_owned() };
        member.session_timer = Some(ctx.timers.schedule(Instant::now() + timeout, &self.group_id, kind));
    }

    /// Reschedules with the member's own session timeout.
    pub(crate) fn touch_session(&mut self, member_id: &str, ctx: &Ctx<'_>) {
        if let Some(timeout) = self.members.get(member_id).map(|m| m.session_timeout) {
            self.reschedule_session(member_id, timeout, ctx);
        }
    }

    pub(crate) fn remove_pending_sync(&mut self, member_id: &str, ctx: &Ctx<'_>) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty()
            && let Some(key) = self.sync_timer.take()
        {
            ctx.timers.cancel(key);
        }
    }

    pub(crate) fn clear_pending_sync(&mut self, ctx: &Ctx<'_>) {
        self.pending_sync.clear();
        if let Some(key) = self.sync_timer.take() {
            ctx.timers.cancel(key);
        }
    }

    /// Kafka `validateCurrentMember`: with an instance id, it must map to `member_id` (else the
    /// caller was fenced); without, `member_id` must be a member.
    pub(crate) fn validate_current_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        match group_instance_id {
            Some(instance_id) => match self.static_members.get(instance_id) {
                Some(current) if current != member_id => {
                    Err(GroupError::FencedInstanceId { group_instance_id: instance_id.to_owned() })
                }
                Some(_) => Ok(()),
                None => Err(GroupError::unknown_member(member_id)),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(GroupError::unknown_member(member_id)),
        }
    }

    /// Answers every parked request with `error` (group deleted or coordinator shut down) and
    /// cancels all of the group's timers.
    pub(crate) fn abort(&mut self, error: &GroupError, ctx: &Ctx<'_>) {
        for member in self.members.values_mut() {
            if let Some(reply) = member.join_reply.take() {
                let _ = reply.send(Err(error.clone()));
            }
            if let Some(reply) = member.sync_reply.take() {
                let _ = reply.send(Err(error.clone()));
            }
            if let Some(key) = member.session_timer.take() {
                ctx.timers.cancel(key);
            }
        }
        for (_, key) in self.pending_members.drain() {
            ctx.timers.cancel(key);
        }
        if let Some((key, _)) = self.join_timer.take() {
            ctx.timers.cancel(key);
        }
        self.clear_pending_sync(ctx);
        self.transition(GroupState::Dead);
    }

    /// The response every member gets when a join phase completes (or a stable follower
    /// rejoins unchanged).
    pub(crate) fn join_response(&self, member_id: &str, members: Vec<JoinGroupMember>) -> JoinGroupResponse {
        JoinGroupResponse {
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            skip_assignment: false,
            members,
        }
    }
}
