//! JoinGroup handling and the join phase: starting a rebalance, completing it, and the
//! static-membership replacement path (KIP-345).

use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::state::{Ctx, Group, JoinDelay, Member};
use super::timer::TimerKind;
use super::{GroupError, GroupState, JoinGroupRequest, JoinGroupResponse, PendingResponse};

type JoinResult = PendingResponse<JoinGroupResponse>;

fn fail(error: GroupError) -> JoinResult {
    PendingResponse::ready(Err(error))
}

impl Group {
    /// Entry point for a JoinGroup on an existing (possibly just created) group.
    pub(crate) fn join(&mut self, request: JoinGroupRequest, ctx: &Ctx<'_>) -> JoinResult {
        if self.state == GroupState::Dead {
            // Deleted while the request raced with it: the client rediscovers and retries.
            return fail(GroupError::CoordinatorNotAvailable);
        }
        // Deliberate deviation: a restarting static member is counted as the member it
        // replaces, so a full group of static members can still restart one of them (Kafka
        // checks the empty member id and would answer GROUP_MAX_SIZE_REACHED).
        let effective_id = match (&request.group_instance_id, request.member_id.is_empty()) {
            (Some(instance_id), true) => self.static_members.get(instance_id).cloned().unwrap_or_default(),
            _ => request.member_id.clone(),
        };
        if !self.accept_joining_member(&effective_id, ctx.config.max_group_size) {
            // As in Kafka, a known member that did not rejoin in time loses its place.
            if self.members.contains_key(&effective_id) {
                self.remove_member_and_update_group(&effective_id, ctx);
            } else if self.pending_members.contains_key(&effective_id) {
                self.remove_pending_member_and_update_group(&effective_id, ctx);
            }
            return fail(GroupError::GroupMaxSizeReached { max_size: ctx.config.max_group_size });
        }
        let result = if request.member_id.is_empty() {
            self.join_new_member(request, ctx)
        } else {
            self.join_existing_member(request, ctx)
        };
        self.try_complete_join(ctx);
        result
    }

    /// Kafka `acceptJoiningMember`. During PreparingRebalance the number of members that
    /// already rejoined is what counts, so a shrunk `group.max.size` kicks out the last ones.
    fn accept_joining_member(&self, member_id: &str, max_size: usize) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members.get(member_id).is_some_and(Member::is_awaiting_join) || self.num_awaiting_join() < max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max_size
            }
        }
    }

    fn join_new_member(&mut self, request: JoinGroupRequest, ctx: &Ctx<'_>) -> JoinResult {
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        // Kafka prefixes static member ids with the instance id, dynamic ones with the client id.
        let prefix = request.group_instance_id.as_deref().unwrap_or(&request.client_id);
        let new_member_id = format!("{prefix}-{}", Uuid::new_v4());
        match request.group_instance_id.clone() {
            Some(instance_id) => match self.static_members.get(&instance_id).cloned() {
                Some(old_member_id) => {
                    self.update_static_member(request, &instance_id, &old_member_id, new_member_id, ctx)
                }
                None => self.add_member_and_rebalance(request, new_member_id, ctx),
            },
            None if request.require_known_member_id => {
                // The id is only reserved: it joins for real when the client comes back with it,
                // and expires after one session timeout otherwise.
                let kind = TimerKind::Session { member_id: new_member_id.clone() };
                let key = ctx.timers.schedule(Instant::now() + request.session_timeout, &self.group_id, kind);
                self.pending_members.insert(new_member_id.clone(), key);
                tracing::debug!(group = %self.group_id, member = %new_member_id, "member id required");
                fail(GroupError::MemberIdRequired { member_id: new_member_id })
            }
            None => self.add_member_and_rebalance(request, new_member_id, ctx),
        }
    }

    fn join_existing_member(&mut self, request: JoinGroupRequest, ctx: &Ctx<'_>) -> JoinResult {
        let member_id = request.member_id.clone();
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        if self.pending_members.contains_key(&member_id) {
            if request.group_instance_id.is_some() {
                // Pending ids are only handed to dynamic members (Kafka throws here too).
                return fail(GroupError::UnknownServerError(format!(
                    "static member joined with pending dynamic member id `{member_id}`"
                )));
            }
            return self.add_member_and_rebalance(request, member_id, ctx);
        }
        if let Err(error) = self.validate_current_member(&member_id, request.group_instance_id.as_deref()) {
            return fail(error);
        }
        let Some(member) = self.members.get(&member_id) else {
            return fail(GroupError::unknown_member(&member_id));
        };
        let unchanged = member.protocols == request.protocols;
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(request, ctx),
            // Same metadata: the member most likely lost its join response; hand it out again.
            GroupState::CompletingRebalance if unchanged => {
                let members = if self.is_leader(&member_id) { self.current_member_metadata() } else { Vec::new() };
                PendingResponse::ready(Ok(self.join_response(&member_id, members)))
            }
            // The leader rejoining forces a rebalance: that is how a client reacts to changes
            // that are invisible in member metadata (e.g. new partitions of a subscribed topic).
            GroupState::Stable if unchanged && !self.is_leader(&member_id) => {
                PendingResponse::ready(Ok(self.join_response(&member_id, Vec::new())))
            }
            GroupState::CompletingRebalance | GroupState::Stable => self.update_member_and_rebalance(request, ctx),
            GroupState::Empty | GroupState::Dead => fail(GroupError::unknown_member(&member_id)),
        }
    }

    fn add_member_and_rebalance(&mut self, request: JoinGroupRequest, member_id: String, ctx: &Ctx<'_>) -> JoinResult {
        let (reply, receiver) = oneshot::channel();
        if self.state == GroupState::PreparingRebalance && self.previous_state == GroupState::Empty {
            self.new_member_added = true;
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            assignment: bytes::Bytes::new(),
            join_reply: Some(reply),
            sync_reply: None,
            is_new: true,
            join_order: 0,
            session_timer: None,
        };
        self.add_member(member, ctx);
        // A new member cannot heartbeat before it has its join response, and a client whose
        // JoinGroup timed out simply retries with a new id: bound how long such a ghost can
        // hold up rebalances.
        self.reschedule_session(&member_id, ctx.config.new_member_join_timeout, ctx);
        tracing::info!(group = %self.group_id, member = %member_id, state = %self.state, "member added");
        self.maybe_prepare_rebalance(ctx);
        PendingResponse::waiting(receiver)
    }

    /// Parks the member's JoinGroup with its new metadata and starts a rebalance if needed.
    fn update_member_and_rebalance(&mut self, request: JoinGroupRequest, ctx: &Ctx<'_>) -> JoinResult {
        let (reply, receiver) = oneshot::channel();
        let Some(member) = self.members.get_mut(&request.member_id) else {
            return fail(GroupError::unknown_member(&request.member_id));
        };
        member.protocols = request.protocols;
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        // A client only sends a second JoinGroup after abandoning the first one.
        if let Some(superseded) = member.join_reply.replace(reply) {
            let _ = superseded.send(Err(GroupError::RebalanceInProgress));
        }
        self.maybe_prepare_rebalance(ctx);
        PendingResponse::waiting(receiver)
    }

    /// A known static instance rejoins with an empty member id (it restarted): it takes over
    /// the old member's place under a new id. A Stable group keeps its generation and
    /// assignment when the selected protocol would not change.
    fn update_static_member(
        &mut self,
        request: JoinGroupRequest,
        instance_id: &str,
        old_member_id: &str,
        new_member_id: String,
        ctx: &Ctx<'_>,
    ) -> JoinResult {
        let previous_leader = self.leader_id.clone().unwrap_or_default();
        if let Err(error) = self.replace_static_member(instance_id, old_member_id, &new_member_id) {
            return fail(error);
        }
        let (reply, receiver) = oneshot::channel();
        if let Some(member) = self.members.get_mut(&new_member_id) {
            member.protocols = request.protocols;
            member.session_timeout = request.session_timeout;
            member.rebalance_timeout = request.rebalance_timeout;
            member.join_reply = Some(reply);
        }
        self.touch_session(&new_member_id, ctx);
        tracing::info!(group = %self.group_id, instance = %instance_id, old = %old_member_id, new = %new_member_id, state = %self.state, "static member replaced");
        match self.state {
            GroupState::Stable => {
                let next_protocol = self.select_protocol();
                if next_protocol.is_some() && next_protocol == self.protocol_name {
                    self.complete_static_rejoin(&new_member_id, previous_leader, request.supports_skip_assignment);
                } else {
                    self.maybe_prepare_rebalance(ctx);
                }
            }
            // The leader may already be assigning to the old member id; rebalance so the new
            // id does not end up without an assignment.
            GroupState::CompletingRebalance => self.prepare_rebalance(ctx),
            // Already rebalancing: the member is now simply awaiting join.
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => {
                return fail(GroupError::UnknownServerError(format!(
                    "static member `{instance_id}` rejoined group in state {}",
                    self.state
                )));
            }
        }
        PendingResponse::waiting(receiver)
    }

    /// Answers a static rejoin that did not need a rebalance.
    fn complete_static_rejoin(&mut self, member_id: &str, previous_leader: String, supports_skip: bool) {
        let is_leader = self.is_leader(member_id);
        let mut response = self.join_response(member_id, Vec::new());
        if supports_skip {
            // KIP-814: a returning leader learns it leads but must keep the current assignment.
            if is_leader {
                response.members = self.current_member_metadata();
                response.skip_assignment = true;
            }
        } else {
            // Older clients would compute a (never propagated) assignment if they believed they
            // lead, so they are told the previous leader id, which is not theirs.
            response.leader_id = previous_leader;
        }
        if let Some(reply) = self.members.get_mut(member_id).and_then(|m| m.join_reply.take()) {
            let _ = reply.send(Ok(response));
        }
    }

    /// Starts a rebalance unless one is already running.
    pub(crate) fn maybe_prepare_rebalance(&mut self, ctx: &Ctx<'_>) {
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty) {
            self.prepare_rebalance(ctx);
        }
    }

    pub(crate) fn prepare_rebalance(&mut self, ctx: &Ctx<'_>) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for the leader's assignment must rejoin instead.
            self.reset_and_propagate_assignment_error(GroupError::RebalanceInProgress, ctx);
        }
        self.clear_pending_sync(ctx);
        let (delay, kind) = if self.state == GroupState::Empty {
            let delay = ctx.config.initial_rebalance_delay;
            let remaining = self.rebalance_timeout().saturating_sub(delay);
            (delay, JoinDelay::Initial { remaining })
        } else {
            (self.rebalance_timeout(), JoinDelay::Rebalance)
        };
        self.schedule_join_timer(delay, kind, ctx);
        tracing::info!(group = %self.group_id, from = %self.state, generation = self.generation, "preparing to rebalance");
        self.transition(GroupState::PreparingRebalance);
        self.try_complete_join(ctx);
    }

    fn schedule_join_timer(&mut self, delay: std::time::Duration, kind: JoinDelay, ctx: &Ctx<'_>) {
        if let Some((old, _)) = self.join_timer.take() {
            ctx.timers.cancel(old);
        }
        let key = ctx.timers.schedule(Instant::now() + delay, &self.group_id, TimerKind::Join);
        self.join_timer = Some((key, kind));
    }

    /// Completes the join phase early once everyone is in; never during the initial delay.
    pub(crate) fn try_complete_join(&mut self, ctx: &Ctx<'_>) {
        let initial = matches!(self.join_timer, Some((_, JoinDelay::Initial { .. })));
        if self.state == GroupState::PreparingRebalance && !initial && self.has_all_members_joined() {
            self.complete_join(ctx);
        }
    }

    /// The join timer fired: extend the initial delay if new members keep arriving,
    /// otherwise force the join phase to complete.
    pub(crate) fn on_join_timer(&mut self, ctx: &Ctx<'_>) {
        match self.join_timer.take() {
            Some((_, JoinDelay::Initial { remaining })) if self.new_member_added && !remaining.is_zero() => {
                self.new_member_added = false;
                let delay = ctx.config.initial_rebalance_delay.min(remaining);
                let remaining = remaining.saturating_sub(delay);
                self.schedule_join_timer(delay, JoinDelay::Initial { remaining }, ctx);
            }
            Some(_) => self.complete_join(ctx),
            None => {}
        }
    }

    /// Kafka `onCompleteJoin`: drop dynamic members that did not rejoin, start the next
    /// generation and answer every parked JoinGroup (only the leader gets the member list).
    pub(crate) fn complete_join(&mut self, ctx: &Ctx<'_>) {
        if let Some((key, _)) = self.join_timer.take() {
            ctx.timers.cancel(key);
        }
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        self.new_member_added = false;
        // Static members are kept: they may come back with the same instance id, and they
        // are still subject to their session timeout.
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.is_awaiting_join() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in &not_rejoined {
            tracing::info!(group = %self.group_id, member = %member_id, "removing member that did not rejoin in time");
            self.remove_member(member_id, ctx);
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined (only absent static members are left): wait another rebalance
            // timeout; their sessions will expire meanwhile if they are really gone.
            let timeout = self.rebalance_timeout();
            self.schedule_join_timer(timeout, JoinDelay::Rebalance, ctx);
            return;
        }
        self.init_next_generation(ctx);
        if self.state == GroupState::Empty {
            tracing::info!(group = %self.group_id, generation = self.generation, "group is now empty");
            return;
        }
        tracing::info!(group = %self.group_id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol_name, "join phase complete");
        let leader_view = self.current_member_metadata();
        for member_id in self.member_ids_in_join_order() {
            let members = if self.is_leader(&member_id) { leader_view.clone() } else { Vec::new() };
            let response = self.join_response(&member_id, members);
            if let Some(member) = self.members.get_mut(&member_id) {
                if let Some(reply) = member.join_reply.take() {
                    let _ = reply.send(Ok(response));
                }
                member.is_new = false;
            }
            self.touch_session(&member_id, ctx);
            self.pending_sync.insert(member_id);
        }
        // Members that never follow up with SyncGroup are removed after a rebalance timeout.
        let key =
            ctx.timers.schedule(Instant::now() + self.rebalance_timeout(), &self.group_id, TimerKind::PendingSync);
        self.sync_timer = Some(key);
    }

    /// Keeps the leader if it rejoined, else promotes the oldest member that did.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.as_deref() else {
            return false;
        };
        if self.members.get(leader).is_some_and(Member::is_awaiting_join) {
            return true;
        }
        let next = self
            .member_ids_in_join_order()
            .into_iter()
            .find(|id| self.members.get(id).is_some_and(Member::is_awaiting_join));
        match next {
            Some(new_leader) => {
                self.leader_id = Some(new_leader);
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, ctx: &Ctx<'_>) {
        // The generation also advances when the group ends up empty, as in Kafka, so commits
        // carrying the old generation are rejected.
        self.generation = self.generation.wrapping_add(1);
        self.clear_pending_sync(ctx);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty);
        } else {
            self.protocol_name = self.select_protocol();
            self.transition(GroupState::CompletingRebalance);
        }
    }
}
