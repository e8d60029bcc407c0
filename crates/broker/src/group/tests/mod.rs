//! Coordinator tests. All run on a paused Tokio clock: awaiting a parked response lets the
//! runtime auto-advance to the next deadline, and `advance` + `settle` step time explicitly.

mod admin;
mod join;
mod static_members;
mod sync;

use std::time::Duration;

use bytes::Bytes;

use super::{
    GroupConfig, GroupCoordinator, GroupError, GroupErrorKind, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    SyncGroupRequest, SyncGroupResponse,
};

pub(super) const SESSION: Duration = Duration::from_secs(10);
pub(super) const REBALANCE: Duration = Duration::from_secs(30);
pub(super) const INITIAL_DELAY: Duration = Duration::from_secs(3);

pub(super) fn coordinator() -> GroupCoordinator {
    GroupCoordinator::new(GroupConfig::default())
}

/// The metadata a test client sends for `protocol`.
pub(super) fn meta(client: &str, protocol: &str) -> Bytes {
    Bytes::from(format!("{client}/{protocol}"))
}

/// A JoinGroup from `client` supporting `protocols` in that preference order.
pub(super) fn join_req(group: &str, member_id: &str, client: &str, protocols: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.to_owned(),
        member_id: member_id.to_owned(),
        client_id: client.to_owned(),
        client_host: format!("/10.0.0.{}", client.len()),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".to_owned(),
        protocols: protocols.iter().map(|p| ((*p).to_owned(), meta(client, p))).collect(),
        ..JoinGroupRequest::default()
    }
}

pub(super) fn static_join_req(group: &str, instance: &str, protocols: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest { group_instance_id: Some(instance.to_owned()), ..join_req(group, "", instance, protocols) }
}

/// Rejoin of an existing member with the same protocols it joined with.
pub(super) fn rejoin_req(group: &str, response: &JoinGroupResponse, client: &str) -> JoinGroupRequest {
    join_req(group, &response.member_id, client, &["range"])
}

pub(super) fn heartbeat(c: &GroupCoordinator, group: &str, member: &JoinGroupResponse) -> Result<(), GroupError> {
    c.heartbeat(&HeartbeatRequest {
        group_id: group.to_owned(),
        member_id: member.member_id.clone(),
        group_instance_id: None,
        generation_id: member.generation_id,
    })
}

pub(super) fn sync_req(group: &str, member: &JoinGroupResponse, assignments: Vec<(String, Bytes)>) -> SyncGroupRequest {
    SyncGroupRequest {
        group_id: group.to_owned(),
        generation_id: member.generation_id,
        member_id: member.member_id.clone(),
        group_instance_id: None,
        protocol_type: Some("consumer".to_owned()),
        protocol_name: member.protocol_name.clone(),
        assignments,
    }
}

/// The assignment a test leader gives `member_id`.
pub(super) fn assignment_for(member_id: &str) -> Bytes {
    Bytes::from(format!("assigned-to-{member_id}"))
}

/// Lets the timer task and other tasks run after the clock moved.
pub(super) async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Joins every request concurrently and waits for the join phase; returns the responses in
/// request order.
pub(super) async fn join_all(c: &GroupCoordinator, requests: Vec<JoinGroupRequest>) -> Vec<JoinGroupResponse> {
    let pending: Vec<_> = requests.into_iter().map(|r| c.join_group(r)).collect();
    let mut responses = Vec::new();
    for response in pending {
        responses.push(response.await.unwrap());
    }
    responses
}

/// Syncs all members (followers first, then the leader assigning `assignment_for(id)` to
/// everyone) and returns the sync responses in the order of `members`.
pub(super) async fn sync_all(
    c: &GroupCoordinator,
    group: &str,
    members: &[JoinGroupResponse],
) -> Vec<SyncGroupResponse> {
    let mut pending = Vec::new();
    for member in members.iter().filter(|m| m.member_id != m.leader_id) {
        pending.push((member.member_id.clone(), c.sync_group(sync_req(group, member, Vec::new()))));
    }
    for leader in members.iter().filter(|m| m.member_id == m.leader_id) {
        let assignments = leader.members.iter().map(|m| (m.member_id.clone(), assignment_for(&m.member_id))).collect();
        pending.push((leader.member_id.clone(), c.sync_group(sync_req(group, leader, assignments))));
    }
    let mut by_id = std::collections::HashMap::new();
    for (member_id, response) in pending {
        by_id.insert(member_id, response.await.unwrap());
    }
    members.iter().map(|m| by_id.remove(&m.member_id).unwrap()).collect()
}

/// Builds a Stable group of dynamic members with the `range` protocol.
pub(super) async fn stable_group(c: &GroupCoordinator, group: &str, clients: &[&str]) -> Vec<JoinGroupResponse> {
    let requests = clients.iter().map(|client| join_req(group, "", client, &["range"])).collect();
    let members = join_all(c, requests).await;
    sync_all(c, group, &members).await;
    members
}
