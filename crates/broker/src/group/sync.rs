//! SyncGroup handling and assignment propagation.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::state::{Ctx, Group};
use super::{GroupError, GroupState, PendingResponse, SyncGroupRequest, SyncGroupResponse};

type SyncResult = PendingResponse<SyncGroupResponse>;

impl Group {
    pub(crate) fn sync(&mut self, request: SyncGroupRequest, ctx: &Ctx<'_>) -> SyncResult {
        if let Err(error) = self.validate_sync(&request) {
            return PendingResponse::ready(Err(error));
        }
        let member_id = request.member_id.as_str();
        match self.state {
            GroupState::Empty => PendingResponse::ready(Err(GroupError::unknown_member(member_id))),
            GroupState::PreparingRebalance => PendingResponse::ready(Err(GroupError::RebalanceInProgress)),
            GroupState::CompletingRebalance => {
                let (reply, receiver) = oneshot::channel();
                if let Some(member) = self.members.get_mut(member_id) {
                    // A client only re-sends SyncGroup after abandoning the first request.
                    if let Some(superseded) = member.sync_reply.replace(reply) {
                        let _ = superseded.send(Err(GroupError::RebalanceInProgress));
                    }
                }
                self.remove_pending_sync(member_id, ctx);
                if self.is_leader(member_id) {
                    tracing::info!(group = %self.group_id, generation = self.generation, leader = %member_id, "assignment received from leader");
                    // Members the leader left out get an empty assignment; entries for ids that
                    // are not members are ignored.
                    let assignments: HashMap<String, Bytes> = request.assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment = assignments.get(&member.member_id).cloned().unwrap_or_default();
                    }
                    self.propagate_assignment(None, ctx);
                    self.transition(GroupState::Stable);
                }
                PendingResponse::waiting(receiver)
            }
            GroupState::Stable => {
                // The leader already synced: answer from the stored assignment.
                self.remove_pending_sync(member_id, ctx);
                let assignment = self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                self.touch_session(member_id, ctx);
                PendingResponse::ready(Ok(self.sync_response(assignment)))
            }
            GroupState::Dead => PendingResponse::ready(Err(GroupError::CoordinatorNotAvailable)),
        }
    }

    fn validate_sync(&self, request: &SyncGroupRequest) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_current_member(&request.member_id, request.group_instance_id.as_deref())?;
        if request.generation_id != self.generation {
            return Err(GroupError::IllegalGeneration { generation: request.generation_id });
        }
        // SyncGroup v5+ echoes what the join response said; both sides must be known to
        // disagree (Kafka `isProtocolInconsistent`).
        let inconsistent = |requested: &Option<String>, current: &Option<String>| matches!((requested, current), (Some(r), Some(c)) if r != c);
        if inconsistent(&request.protocol_type, &self.protocol_type)
            || inconsistent(&request.protocol_name, &self.protocol_name)
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    fn sync_response(&self, assignment: Bytes) -> SyncGroupResponse {
        SyncGroupResponse {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// Answers every parked SyncGroup with its assignment (`error` = `None`) or the error,
    /// restarting the sessions of those members: they could not heartbeat while parked.
    fn propagate_assignment(&mut self, error: Option<&GroupError>, ctx: &Ctx<'_>) {
        let mut answered = Vec::new();
        for member in self.members.values_mut() {
            if let Some(reply) = member.sync_reply.take() {
                let response = match error {
                    None => Ok(SyncGroupResponse {
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        assignment: member.assignment.clone(),
                    }),
                    Some(error) => Err(error.clone()),
                };
                let _ = reply.send(response);
                answered.push(member.member_id.clone());
            }
        }
        for member_id in answered {
            self.touch_session(&member_id, ctx);
        }
    }

    /// Clears all assignments and fails parked SyncGroups (a rebalance interrupted the sync).
    pub(crate) fn reset_and_propagate_assignment_error(&mut self, error: GroupError, ctx: &Ctx<'_>) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        self.propagate_assignment(Some(&error), ctx);
    }
}
