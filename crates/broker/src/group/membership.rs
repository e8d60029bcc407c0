//! Heartbeats, leaving, expiry, offset-commit validation and describing a group.

use super::state::{Ctx, Group, Member};
use super::timer::TimerKey;
use super::{GroupDescription, GroupError, GroupState, LeaveGroupMember, LeaveGroupMemberResult, MemberDescription};

impl Group {
    /// Removes a member and reacts: a settled group starts a rebalance, a rebalancing one
    /// may now be complete. A parked JoinGroup of the member gets UNKNOWN_MEMBER_ID so a
    /// live client retries (Kafka `removeMemberAndUpdateGroup`).
    pub(crate) fn remove_member_and_update_group(&mut self, member_id: &str, ctx: &Ctx<'_>) {
        if let Some(mut member) = self.remove_member(member_id, ctx) {
            tracing::info!(group = %self.group_id, member = %member_id, state = %self.state, "member removed");
            if let Some(reply) = member.join_reply.take() {
                let _ = reply.send(Err(GroupError::unknown_member(member_id)));
            }
            if let Some(reply) = member.sync_reply.take() {
                let _ = reply.send(Err(GroupError::unknown_member(member_id)));
            }
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(ctx),
            GroupState::PreparingRebalance => self.try_complete_join(ctx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Forgets a MEMBER_ID_REQUIRED reservation; a join phase may have been waiting on it.
    pub(crate) fn remove_pending_member_and_update_group(&mut self, member_id: &str, ctx: &Ctx<'_>) {
        if let Some(key) = self.pending_members.remove(member_id) {
            ctx.timers.cancel(key);
        }
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(ctx);
        }
    }

    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        ctx: &Ctx<'_>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_current_member(member_id, group_instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration { generation });
        }
        match self.state {
            GroupState::Empty => Err(GroupError::unknown_member(member_id)),
            // Clients may heartbeat between their join and sync responses.
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch_session(member_id, ctx);
                Ok(())
            }
            // The member is alive, but must rejoin to stay in the group.
            GroupState::PreparingRebalance => {
                self.touch_session(member_id, ctx);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::Dead => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    pub(crate) fn leave(&mut self, leaving: Vec<LeaveGroupMember>, ctx: &Ctx<'_>) -> Vec<LeaveGroupMemberResult> {
        leaving
            .into_iter()
            .map(|identity| {
                let result = self.leave_one(&identity, ctx);
                LeaveGroupMemberResult {
                    member_id: identity.member_id,
                    group_instance_id: identity.group_instance_id,
                    result,
                }
            })
            .collect()
    }

    fn leave_one(&mut self, identity: &LeaveGroupMember, ctx: &Ctx<'_>) -> Result<(), GroupError> {
        let instance_id = identity.group_instance_id.as_deref();
        if identity.member_id.is_empty() {
            // Administrative removal of a static member by instance id alone (KIP-345).
            let current = instance_id.and_then(|id| self.static_members.get(id)).cloned();
            let Some(current) = current else {
                return Err(GroupError::unknown_member(""));
            };
            self.remove_member_and_update_group(&current, ctx);
            return Ok(());
        }
        if self.pending_members.contains_key(&identity.member_id) {
            self.remove_pending_member_and_update_group(&identity.member_id, ctx);
            return Ok(());
        }
        // A static member may leave by member id; with an instance id, the pair must match.
        self.validate_current_member(&identity.member_id, instance_id)?;
        self.remove_member_and_update_group(&identity.member_id, ctx);
        Ok(())
    }

    /// A session (or pending-member) timer fired.
    pub(crate) fn on_session_expired(&mut self, key: TimerKey, member_id: &str, ctx: &Ctx<'_>) {
        if self.state == GroupState::Dead {
            return;
        }
        if self.pending_members.get(member_id) == Some(&key) {
            tracing::info!(group = %self.group_id, member = %member_id, "pending member expired");
            self.remove_pending_member_and_update_group(member_id, ctx);
            return;
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if member.session_timer != Some(key) {
            return; // Raced with a reschedule.
        }
        member.session_timer = None;
        // A parked member is not expected to heartbeat; its session restarts when the
        // rebalance answers it, so no new timer is needed now.
        if !member.has_satisfied_heartbeat() {
            tracing::info!(group = %self.group_id, member = %member_id, "session expired");
            self.remove_member_and_update_group(member_id, ctx);
        }
    }

    /// The sync deadline after a join phase passed: members that never sent SyncGroup are
    /// removed and the group rebalances without them.
    pub(crate) fn on_pending_sync_expired(&mut self, key: TimerKey, ctx: &Ctx<'_>) {
        if self.sync_timer != Some(key) {
            return;
        }
        self.sync_timer = None;
        if !matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable) || self.pending_sync.is_empty() {
            return;
        }
        let missing: Vec<String> = self.pending_sync.drain().collect();
        tracing::info!(group = %self.group_id, members = ?missing, "removing members that did not sync in time");
        for member_id in &missing {
            if let Some(mut member) = self.remove_member(member_id, ctx)
                && let Some(reply) = member.join_reply.take()
            {
                let _ = reply.send(Err(GroupError::unknown_member(member_id)));
            }
        }
        self.prepare_rebalance(ctx);
    }

    /// Kafka's offset-commit validation (`validateOffsetCommit` plus the state checks of
    /// `doCommitOffsets`). A valid commit also counts as a sign of life.
    pub(crate) fn validate_offset_commit(
        &mut self,
        member_id: &str,
        generation: i32,
        group_instance_id: Option<&str>,
        ctx: &Ctx<'_>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            // Admin clients and consumers using manual assignment commit with generation -1;
            // that is fine as long as no group-managed member could own the partitions.
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_current_member(member_id, group_instance_id)?;
            if generation != self.generation {
                return Err(GroupError::IllegalGeneration { generation });
            }
        } else if self.state != GroupState::Empty {
            // A "simple" commit while members own the partitions would race with them.
            return Err(GroupError::unknown_member(member_id));
        }
        match self.state {
            // The member has its generation but not its assignment yet.
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            // Commits are allowed during PreparingRebalance: the heartbeat tells the member
            // to rejoin, and it commits before revoking its partitions.
            GroupState::Stable | GroupState::PreparingRebalance => {
                self.touch_session(member_id, ctx);
                Ok(())
            }
            GroupState::Empty | GroupState::Dead => Ok(()),
        }
    }

    /// DescribeGroups: metadata, assignment and protocol are only reported for Stable groups.
    pub(crate) fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable { self.protocol_name.clone().unwrap_or_default() } else { String::new() };
        let members = self
            .member_ids_in_join_order()
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|m: &Member| MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable { m.metadata(&protocol) } else { Default::default() },
                assignment: if stable { m.assignment.clone() } else { Default::default() },
            })
            .collect();
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        }
    }
}
