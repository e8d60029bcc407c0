//! Classic consumer groups: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, DescribeGroups, ListGroups, DeleteGroups. The
//! state machine is the broker core's; this maps wire fields and versions.
//!
//! A group that only has committed offsets (consumers using `assign()` and
//! committing) exists for Kafka too: it is listed and described as `Empty`
//! and can be deleted.

use std::time::Duration;

use fjord_broker::Leadership;
use fjord_broker::group::consumer::ConsumerGroupState;
use fjord_broker::group::{
    GroupError, GroupState, HeartbeatRequest as CoreHeartbeat, JoinGroupRequest as CoreJoin, LeaveGroupMember,
    LeaveGroupRequest as CoreLeave, SyncGroupRequest as CoreSync,
};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::delete_groups_response::{DeletableGroupResult, DeleteGroupsResponse};
use fjord_kafka_codec::kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use fjord_kafka_codec::kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use fjord_kafka_codec::kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use fjord_kafka_codec::kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use fjord_kafka_codec::kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use fjord_kafka_codec::kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use fjord_kafka_codec::kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use fjord_kafka_codec::kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, SyncGroupRequest,
};
use fjord_kafka_codec::kafka_protocol::protocol::StrBytes;

use super::metadata::OPS_OMITTED;
use super::{RequestContext, kafka_endpoint, sb};

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|v| v.to_string())
}

pub(crate) fn find_coordinator(ctx: &RequestContext<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    // Groups (key type 0) and transactional ids (1) are coordinated by the
    // leader of their coordinator partition (this node, alone); share-group
    // keys (2) are not served.
    let serves = matches!(req.key_type, 0 | 1);
    let find = |key: &str| -> Result<(i32, String, i32), i16> {
        if !serves {
            return Err(ResponseError::InvalidRequest.code());
        }
        let node = match ctx.gw.broker.coordinator(key) {
            Leadership::Local => ctx.gw.broker.node(),
            Leadership::Remote(node) => node,
            Leadership::Unavailable => return Err(ResponseError::CoordinatorNotAvailable.code()),
        };
        let (host, port) = kafka_endpoint(&node);
        Ok((node.node_id, host, port))
    };
    if ctx.version() < 4 {
        return match find(req.key.as_str()) {
            Ok((id, host, port)) => {
                FindCoordinatorResponse::default().with_node_id(BrokerId(id)).with_host(sb(host)).with_port(port)
            }
            Err(code) => FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_host(sb(String::new()))
                .with_port(-1),
        };
    }
    let coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let c = match find(key.as_str()) {
                Ok((id, host, port)) => {
                    Coordinator::default().with_node_id(BrokerId(id)).with_host(sb(host)).with_port(port)
                }
                Err(code) => Coordinator::default()
                    .with_error_code(code)
                    .with_node_id(BrokerId(-1))
                    .with_host(sb(String::new()))
                    .with_port(-1),
            };
            c.with_key(key)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

/// `NOT_COORDINATOR` when another node coordinates `group` (the client
/// asks FindCoordinator again), `COORDINATOR_NOT_AVAILABLE` when none does,
/// `COORDINATOR_LOAD_IN_PROGRESS` while this node has not loaded the
/// committed offsets it now coordinates (the topic not attached yet, or
/// its partition not replayed since this node was elected its leader).
pub(crate) fn not_coordinator(ctx: &RequestContext<'_>, group: &str) -> Option<i16> {
    match ctx.gw.broker.coordinator(group) {
        // Just made coordinator, its offsets partition not replayed here
        // yet: Kafka's answer for a coordinator still loading (retriable).
        Leadership::Local if !ctx.gw.broker.offsets().is_current(group) => {
            Some(ResponseError::CoordinatorLoadInProgress.code())
        }
        Leadership::Local => None,
        Leadership::Remote(_) => Some(ResponseError::NotCoordinator.code()),
        Leadership::Unavailable => Some(ResponseError::CoordinatorNotAvailable.code()),
    }
}

pub(crate) async fn join(ctx: &RequestContext<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let v = ctx.version();
    let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    let member_id = req.member_id.to_string();
    if let Some(code) = not_coordinator(ctx, req.group_id.as_str()) {
        return JoinGroupResponse::default().with_error_code(code).with_generation_id(-1).with_member_id(req.member_id);
    }
    if let Some(e) = super::consumer_groups::classic_conflict(ctx, req.group_id.as_str()) {
        return JoinGroupResponse::default()
            .with_error_code(crate::errors::group_code(&e))
            .with_generation_id(-1)
            .with_member_id(req.member_id);
    }
    let core = CoreJoin {
        group_id: req.group_id.to_string(),
        member_id: member_id.clone(),
        group_instance_id: opt(&req.group_instance_id),
        client_id: ctx.client_id(),
        client_host: format!("/{}", ctx.client_host),
        session_timeout: session,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout: if v == 0 { session } else { Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64) },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: false,
    };
    match ctx.gw.broker.join_group(core).await {
        Ok(r) => JoinGroupResponse::default()
            .with_generation_id(r.generation_id)
            // Protocol type from v7 on; the name is nullable from v7 on.
            .with_protocol_type(if v >= 7 { r.protocol_type.map(sb) } else { None })
            .with_protocol_name(if v >= 7 {
                r.protocol_name.map(sb)
            } else {
                Some(sb(r.protocol_name.unwrap_or_default()))
            })
            .with_leader(sb(r.leader_id))
            .with_skip_assignment(r.skip_assignment)
            .with_member_id(sb(r.member_id))
            .with_members(
                r.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(sb(m.member_id))
                            .with_group_instance_id(if v >= 5 { m.group_instance_id.map(sb) } else { None })
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
        Err(e) => {
            let member = match &e {
                GroupError::MemberIdRequired { member_id } => member_id.clone(),
                _ => member_id,
            };
            JoinGroupResponse::default()
                .with_error_code(crate::errors::group_code(&e))
                .with_generation_id(-1)
                .with_protocol_name(if v >= 7 { None } else { Some(StrBytes::default()) })
                .with_member_id(sb(member))
        }
    }
}

pub(crate) async fn sync(ctx: &RequestContext<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    if let Some(code) = not_coordinator(ctx, req.group_id.as_str()) {
        return SyncGroupResponse::default().with_error_code(code);
    }
    let core = CoreSync {
        group_id: req.group_id.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: opt(&req.group_instance_id),
        protocol_type: opt(&req.protocol_type),
        protocol_name: opt(&req.protocol_name),
        assignments: req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect(),
    };
    match ctx.gw.broker.sync_group(core).await {
        // Protocol type and name are part of the response from v5 on.
        Ok(r) if ctx.version() >= 5 => SyncGroupResponse::default()
            .with_protocol_type(r.protocol_type.map(sb))
            .with_protocol_name(r.protocol_name.map(sb))
            .with_assignment(r.assignment),
        Ok(r) => SyncGroupResponse::default().with_assignment(r.assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(crate::errors::group_code(&e)),
    }
}

pub(crate) fn heartbeat(ctx: &RequestContext<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    if let Some(code) = not_coordinator(ctx, req.group_id.as_str()) {
        return HeartbeatResponse::default().with_error_code(code);
    }
    let core = CoreHeartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: opt(&req.group_instance_id),
        generation_id: req.generation_id,
    };
    let code = ctx.gw.broker.groups().heartbeat(&core).err().map_or(0, |e| crate::errors::group_code(&e));
    HeartbeatResponse::default().with_error_code(code)
}

pub(crate) async fn leave(ctx: &RequestContext<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    if let Some(code) = not_coordinator(ctx, req.group_id.as_str()) {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let v = ctx.version();
    let members = if v < 3 {
        vec![LeaveGroupMember { member_id: req.member_id.to_string(), group_instance_id: None }]
    } else {
        req.members
            .iter()
            .map(|m| LeaveGroupMember {
                member_id: m.member_id.to_string(),
                group_instance_id: opt(&m.group_instance_id),
            })
            .collect()
    };
    let core = CoreLeave { group_id: req.group_id.to_string(), members };
    match ctx.gw.broker.leave_group(core).await {
        Ok(results) if v < 3 => {
            // One member and no per-member list: its result is the answer.
            let code = results.first().and_then(|r| r.result.as_ref().err()).map_or(0, crate::errors::group_code);
            LeaveGroupResponse::default().with_error_code(code)
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            results
                .into_iter()
                .map(|r| {
                    MemberResponse::default()
                        .with_member_id(sb(r.member_id))
                        .with_group_instance_id(r.group_instance_id.map(sb))
                        .with_error_code(r.result.err().map_or(0, |e| crate::errors::group_code(&e)))
                })
                .collect(),
        ),
        Err(e) => LeaveGroupResponse::default().with_error_code(crate::errors::group_code(&e)),
    }
}

pub(crate) fn describe(ctx: &RequestContext<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let broker = &ctx.gw.broker;
    let v = ctx.version();
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let base = DescribedGroup::default().with_group_id(id.clone()).with_authorized_operations(OPS_OMITTED);
            if let Some(code) = not_coordinator(ctx, id.as_str()) {
                return base.with_error_code(code);
            }
            match broker.groups().describe_group(id.as_str()) {
                Ok(d) => base
                    .with_group_state(sb(d.state.as_kafka_str()))
                    .with_protocol_type(sb(d.protocol_type))
                    .with_protocol_data(sb(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(sb(m.member_id))
                                    .with_group_instance_id(if v >= 4 { m.group_instance_id.map(sb) } else { None })
                                    .with_client_id(sb(m.client_id))
                                    .with_client_host(sb(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                Err(GroupError::GroupIdNotFound { .. }) if has_offsets(ctx, id.as_str()) => {
                    base.with_group_state(sb(GroupState::Empty.as_kafka_str()))
                }
                // v6+ reports unknown groups as an error; older versions as
                // a Dead group, which is what clients of those versions expect.
                Err(GroupError::GroupIdNotFound { .. }) if v < 6 => base.with_group_state(sb("Dead")),
                Err(e) => base.with_error_code(crate::errors::group_code(&e)).with_error_message(if v >= 6 {
                    Some(sb(e.to_string()))
                } else {
                    None
                }),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

fn has_offsets(ctx: &RequestContext<'_>, group: &str) -> bool {
    !ctx.gw.broker.offsets().group_offsets(group).is_empty()
}

pub(crate) fn list(ctx: &RequestContext<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let broker = &ctx.gw.broker;
    let states: Vec<GroupState> =
        req.states_filter.iter().filter_map(|s| GroupState::from_kafka_str(s.as_str())).collect();
    let consumer_states: Vec<ConsumerGroupState> =
        req.states_filter.iter().filter_map(|s| ConsumerGroupState::from_kafka_str(s.as_str())).collect();
    let types: Vec<String> = req.types_filter.iter().map(|t| t.to_lowercase()).collect();
    let wants = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let mut groups: Vec<ListedGroup> = Vec::new();
    let listed = broker.groups().list_groups(&states);
    let mut seen: std::collections::HashSet<String> = listed.iter().map(|g| g.group_id.clone()).collect();
    if wants("consumer") && (req.states_filter.is_empty() || !consumer_states.is_empty()) {
        for g in ctx.gw.broker.consumer_groups().list() {
            if (consumer_states.is_empty() || consumer_states.contains(&g.state)) && seen.insert(g.group_id.clone()) {
                groups.push(
                    ListedGroup::default()
                        .with_group_id(GroupId(sb(g.group_id)))
                        .with_protocol_type(sb("consumer"))
                        .with_group_state(sb(g.state.as_kafka_str()))
                        .with_group_type(sb("consumer")),
                );
            }
        }
    }
    // A filter naming only states classic groups never have matches none.
    if wants("classic") && (req.states_filter.is_empty() || !states.is_empty()) {
        groups.extend(listed.into_iter().map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(sb(g.group_id)))
                .with_protocol_type(sb(g.protocol_type))
                .with_group_state(sb(g.state.as_kafka_str()))
                .with_group_type(sb("classic"))
        }));
        // Offset-only groups are Empty classic groups.
        if states.is_empty() || states.contains(&GroupState::Empty) {
            for id in broker.offsets().groups() {
                if seen.insert(id.clone()) {
                    groups.push(
                        ListedGroup::default()
                            .with_group_id(GroupId(sb(id)))
                            .with_group_state(sb(GroupState::Empty.as_kafka_str()))
                            .with_group_type(sb("classic")),
                    );
                }
            }
        }
    }
    let v = ctx.version();
    for g in &mut groups {
        if v < 4 {
            g.group_state = StrBytes::default();
        }
        if v < 5 {
            g.group_type = StrBytes::default();
        }
    }
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) async fn delete(ctx: &RequestContext<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let broker = &ctx.gw.broker;
    let mut results = Vec::with_capacity(req.groups_names.len());
    let mut ids: Vec<String> = Vec::with_capacity(req.groups_names.len());
    for g in &req.groups_names {
        match not_coordinator(ctx, g.as_str()) {
            Some(code) => results.push(DeletableGroupResult::default().with_group_id(g.clone()).with_error_code(code)),
            None => ids.push(g.to_string()),
        }
    }
    for (id, outcome) in broker.groups().delete_groups(&ids) {
        let outcome = match outcome {
            Err(GroupError::GroupIdNotFound { .. }) if ctx.gw.broker.consumer_groups().contains(&id) => {
                ctx.gw.broker.consumer_groups().delete(&id)
            }
            Err(GroupError::GroupIdNotFound { .. }) if has_offsets(ctx, &id) => Ok(()),
            other => other,
        };
        let code = match outcome {
            Ok(()) => match broker.delete_offsets(&id, None).await {
                Ok(_) => 0,
                Err(e) => crate::errors::code(&e),
            },
            Err(e) => crate::errors::group_code(&e),
        };
        results.push(DeletableGroupResult::default().with_group_id(GroupId(sb(id))).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}
