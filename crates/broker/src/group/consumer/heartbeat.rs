//! The ConsumerGroupHeartbeat flow (Kafka's `GroupMetadataManager.consumerGroupHeartbeat`
//! and `consumerGroupLeave`): request validation, member lookup / creation / static
//! replacement, group epoch bump, target assignment and one reconciliation step.

use uuid::Uuid;

use super::group::{ConsumerGroup, Ctx, compile_regex};
use super::member::{Member, MemberState, Partitions, iter, to_list};
use super::timer::Timers;
use super::{
    ConsumerGroupConfig, ConsumerHeartbeat, ConsumerHeartbeatResponse, LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH, TopicPartitions,
};
use crate::group::GroupError;

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`, plus the regex check Kafka does
/// when it records a new regex. Runs before any group is looked up.
pub(super) fn validate_request(request: &ConsumerHeartbeat, config: &ConsumerGroupConfig) -> Result<(), GroupError> {
    let invalid = |reason: &str| Err(GroupError::InvalidRequest { reason: reason.to_owned() });
    let epoch = request.member_epoch;
    if request.member_id.is_empty() && (request.member_id_required || epoch > 0 || epoch == LEAVE_GROUP_MEMBER_EPOCH) {
        return invalid("MemberId can't be empty.");
    }
    if request.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if request.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if request.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if epoch == 0 {
        if request.rebalance_timeout.is_none() {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if !request.owned_partitions.as_ref().is_some_and(Vec::is_empty) {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
        if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
            return invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.");
        }
    } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH && request.instance_id.is_none() {
        return invalid("InstanceId can't be null.");
    } else if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return invalid("MemberEpoch is invalid.");
    }
    if let Some(name) = &request.server_assignor
        && config.assignor(name).is_none()
    {
        return Err(GroupError::UnsupportedAssignor { assignor: name.clone() });
    }
    if epoch >= 0
        && let Some(pattern) = request.subscribed_topic_regex.as_deref().filter(|p| !p.is_empty())
        && let Err(error) = compile_regex(pattern)
    {
        return Err(GroupError::InvalidRegularExpression { regex: pattern.to_owned(), reason: error.to_string() });
    }
    Ok(())
}

impl ConsumerGroup {
    /// Handles one validated heartbeat (or leave) for this group.
    pub(super) fn heartbeat(
        &mut self,
        request: &ConsumerHeartbeat,
        ctx: &Ctx<'_>,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        if request.member_epoch < 0 {
            return self.leave(request, ctx);
        }
        let joining = request.member_epoch == 0;
        self.check_capacity(request, ctx.config)?;
        let member_id =
            if request.member_id.is_empty() { Uuid::new_v4().to_string() } else { request.member_id.clone() };
        let owned = request.owned_partitions.as_deref();
        let (old, is_new) = match &request.instance_id {
            None => self.dynamic_member(&member_id, request.member_epoch, owned, joining)?,
            Some(instance) => {
                self.static_member(&member_id, instance, request.member_epoch, owned, joining, ctx.timers)?
            }
        };
        // Nothing below fails: the group is only changed from here on.

        let mut member = old.clone();
        apply_request(&mut member, request);
        let mut bump = is_new || member.subscription_differs(&old) || self.group_epoch == 0;
        self.put_member(member);
        if self.refresh_metadata(ctx.source) {
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
            tracing::info!(group = %self.group_id, epoch = self.group_epoch, member = %member_id, "bumped consumer group epoch");
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(ctx.config);
        }
        self.reconcile(&member_id, owned, ctx);
        self.schedule_session(&member_id, ctx);

        let member = self.members.get(&member_id).ok_or_else(|| {
            GroupError::UnknownServerError(format!("member {member_id} vanished during its heartbeat"))
        })?;
        // Kafka sends the assignment when it changed, or when the request was a full one
        // (joining, or every field a full request must carry is present).
        let full_request = joining
            || (request.rebalance_timeout.is_some()
                && (request.subscribed_topic_names.is_some() || request.subscribed_topic_regex.is_some())
                && owned.is_some());
        let assignment = (full_request || member.assigned != old.assigned).then(|| to_list(&member.assigned));
        Ok(ConsumerHeartbeatResponse {
            member_id,
            member_epoch: member.epoch,
            heartbeat_interval: ctx.heartbeat_interval(&self.group_id),
            assignment,
        })
    }

    /// Kafka's `throwIfConsumerGroupIsFull`: a full group only takes heartbeats of members it
    /// has (and, deviating from Kafka, static members replacing their departed instance).
    fn check_capacity(&self, request: &ConsumerHeartbeat, config: &ConsumerGroupConfig) -> Result<(), GroupError> {
        let known_member = !request.member_id.is_empty() && self.members.contains_key(&request.member_id);
        let known_instance = request.instance_id.as_ref().is_some_and(|i| self.static_members.contains_key(i));
        if self.members.len() >= config.max_group_size && !known_member && !known_instance {
            return Err(GroupError::GroupMaxSizeReached { max_size: config.max_group_size });
        }
        Ok(())
    }

    /// A dynamic member: an existing one must carry a valid epoch; an unknown one may only join.
    fn dynamic_member(
        &self,
        member_id: &str,
        epoch: i32,
        owned: Option<&[TopicPartitions]>,
        joining: bool,
    ) -> Result<(Member, bool), GroupError> {
        match self.members.get(member_id) {
            Some(member) => {
                member.validate_epoch(epoch, owned)?;
                Ok((member.clone(), false))
            }
            None if joining => {
                tracing::info!(group = %self.group_id, member = %member_id, "member joins the consumer group");
                Ok((Member::new(member_id), true))
            }
            None => Err(GroupError::unknown_member(member_id)),
        }
    }

    /// A static member: joining takes over a departed instance (epoch -2) or creates a new
    /// member; other heartbeats must come from the member currently holding the instance.
    fn static_member(
        &mut self,
        member_id: &str,
        instance: &str,
        epoch: i32,
        owned: Option<&[TopicPartitions]>,
        joining: bool,
        timers: &Timers,
    ) -> Result<(Member, bool), GroupError> {
        let holder = self.static_members.get(instance).cloned();
        if joining {
            let Some(holder) = holder else {
                return Ok(match self.members.get(member_id) {
                    Some(member) => (member.clone(), false),
                    None => {
                        tracing::info!(group = %self.group_id, member = %member_id, %instance, "static member joins");
                        (Member::new(member_id), true)
                    }
                });
            };
            if self.members.get(&holder).is_none_or(|m| m.epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH) {
                return Err(GroupError::UnreleasedInstanceId { group_instance_id: instance.to_owned() });
            }
            let member = self
                .replace_static_member(&holder, member_id, timers)
                .ok_or_else(|| GroupError::UnknownServerError(format!("static member {holder} is not indexed")))?;
            return Ok((member, false));
        }
        let Some(holder) = holder else { return Err(GroupError::unknown_member(member_id)) };
        if holder != member_id {
            return Err(GroupError::FencedInstanceId { group_instance_id: instance.to_owned() });
        }
        let member = self.members.get(&holder).ok_or_else(|| GroupError::unknown_member(member_id))?;
        member.validate_epoch(epoch, owned)?;
        Ok((member.clone(), false))
    }

    /// Kafka's `consumerGroupLeave`: epoch -1 removes the member; -2 (static members only)
    /// parks it at epoch -2 with its assignment until it returns or its session expires.
    fn leave(&mut self, request: &ConsumerHeartbeat, ctx: &Ctx<'_>) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let heartbeat_interval = ctx.heartbeat_interval(&self.group_id);
        let response = |member_epoch| ConsumerHeartbeatResponse {
            member_id: request.member_id.clone(),
            member_epoch,
            heartbeat_interval,
            assignment: None,
        };
        let Some(instance) = &request.instance_id else {
            if !self.members.contains_key(&request.member_id) {
                return Err(GroupError::unknown_member(&request.member_id));
            }
            self.remove_member(&request.member_id, "the member left the group", ctx);
            return Ok(response(LEAVE_GROUP_MEMBER_EPOCH));
        };
        let Some(holder) = self.static_members.get(instance).cloned() else {
            return Err(GroupError::unknown_member(&request.member_id));
        };
        if holder != request.member_id {
            return Err(GroupError::FencedInstanceId { group_instance_id: instance.clone() });
        }
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            self.static_leave(&holder, ctx.timers);
            Ok(response(LEAVE_GROUP_STATIC_MEMBER_EPOCH))
        } else {
            self.remove_member(&holder, "the static member left the group", ctx);
            Ok(response(LEAVE_GROUP_MEMBER_EPOCH))
        }
    }

    /// A static member's temporary leave: epoch -2, partitions pending revocation released,
    /// assigned partitions kept for its return. The session timeout keeps running.
    fn static_leave(&mut self, member_id: &str, timers: &Timers) {
        let Some(member) = self.members.get_mut(member_id) else { return };
        let released: Vec<(Uuid, i32)> = iter(&member.pending_revocation).collect();
        member.pending_revocation = Partitions::new();
        if member.state == MemberState::UnrevokedPartitions {
            // Nothing left to revoke; reconciliation restarts when the instance returns.
            member.state = MemberState::Stable;
        }
        member.epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
        if let Some(key) = member.rebalance_timer.take() {
            timers.cancel(key);
        }
        for partition in released {
            self.owners.remove(&partition);
        }
        tracing::info!(group = %self.group_id, member = %member_id, "static member left the consumer group temporarily");
    }
}

/// Applies the request's optional fields (Kafka's `maybeUpdate*`) and the client identity.
fn apply_request(member: &mut Member, request: &ConsumerHeartbeat) {
    if let Some(instance) = &request.instance_id {
        member.instance_id = Some(instance.clone());
    }
    if let Some(rack) = &request.rack_id {
        member.rack_id = Some(rack.clone());
    }
    if let Some(timeout) = request.rebalance_timeout {
        member.rebalance_timeout = timeout;
    }
    if let Some(assignor) = &request.server_assignor {
        member.server_assignor = Some(assignor.clone());
    }
    if let Some(names) = &request.subscribed_topic_names {
        member.subscribed_topic_names = names.iter().cloned().collect();
    }
    if let Some(regex) = &request.subscribed_topic_regex {
        member.subscribed_topic_regex = (!regex.is_empty()).then(|| regex.clone());
    }
    member.client_id.clone_from(&request.client_id);
    member.client_host.clone_from(&request.client_host);
}
