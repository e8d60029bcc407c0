//! Static membership (KIP-345, KIP-814).

use std::time::Duration;

use tokio::time::advance;

use super::*;
use crate::group::{GroupState, JoinGroupResponse};

fn static_heartbeat(
    c: &GroupCoordinator,
    member_id: &str,
    instance: Option<&str>,
    generation_id: i32,
) -> Result<(), GroupError> {
    c.heartbeat(&HeartbeatRequest {
        group_id: "g".to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: instance.map(str::to_owned),
        generation_id,
    })
}

async fn stable_static_group(c: &GroupCoordinator, protocols: &[&str]) -> Vec<JoinGroupResponse> {
    let requests = vec![static_join_req("g", "i1", protocols), static_join_req("g", "i2", protocols)];
    let members = join_all(c, requests).await;
    sync_all(c, "g", &members).await;
    members
}

#[tokio::test(start_paused = true)]
async fn restarted_static_member_replaces_its_old_id_without_a_rebalance() {
    let c = coordinator();
    let members = stable_static_group(&c, &["range"]).await;
    let (leader, old) = (&members[0], &members[1]);
    assert!(old.member_id.starts_with("i2-"), "static member ids are prefixed by the instance id");

    // i2 restarts: empty member id, same instance id, same protocols.
    let mut rejoin = c.join_group(static_join_req("g", "i2", &["range"]));
    let fresh = rejoin.try_response().expect("answered without waiting for a rebalance").unwrap();
    assert_ne!(fresh.member_id, old.member_id);
    assert!(fresh.member_id.starts_with("i2-"));
    assert_eq!(fresh.generation_id, 1, "no new generation");
    assert_eq!(fresh.leader_id, leader.member_id);
    assert!(fresh.members.is_empty());
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::Stable);

    // The old incarnation is fenced when it names the instance id, unknown otherwise.
    let fenced = static_heartbeat(&c, &old.member_id, Some("i2"), 1).unwrap_err();
    assert_eq!(fenced, GroupError::FencedInstanceId { group_instance_id: "i2".to_owned() });
    assert_eq!(fenced.kind(), GroupErrorKind::FencedInstanceId);
    assert!(matches!(static_heartbeat(&c, &old.member_id, None, 1), Err(GroupError::UnknownMemberId { .. })));
    let zombie_join = JoinGroupRequest { member_id: old.member_id.clone(), ..static_join_req("g", "i2", &["range"]) };
    assert_eq!(c.join_group(zombie_join).await.unwrap_err(), fenced);

    // The new id inherits the old assignment and heartbeats normally.
    let sync = SyncGroupRequest { group_instance_id: Some("i2".to_owned()), ..sync_req("g", &fresh, Vec::new()) };
    assert_eq!(c.sync_group(sync).await.unwrap().assignment, assignment_for(&old.member_id));
    assert_eq!(static_heartbeat(&c, &fresh.member_id, Some("i2"), 1), Ok(()));
    assert_eq!(heartbeat(&c, "g", leader), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn restarted_static_leader_is_told_to_skip_the_assignment() {
    let c = coordinator();
    let members = stable_static_group(&c, &["range"]).await;
    let old_leader = &members[0];

    // Pre-KIP-814 client: told the previous leader id, so it does not compute an assignment.
    let legacy = c.join_group(static_join_req("g", "i1", &["range"])).await.unwrap();
    assert_eq!(legacy.leader_id, old_leader.member_id);
    assert_ne!(legacy.member_id, legacy.leader_id);
    assert!(legacy.members.is_empty() && !legacy.skip_assignment);

    // JoinGroup v9+: it learns it leads, sees the members, and must skip the assignment.
    let modern = JoinGroupRequest { supports_skip_assignment: true, ..static_join_req("g", "i1", &["range"]) };
    let modern = c.join_group(modern).await.unwrap();
    assert_eq!(modern.leader_id, modern.member_id);
    assert!(modern.skip_assignment);
    let ids: Vec<_> = modern.members.iter().map(|m| m.member_id.clone()).collect();
    assert_eq!(ids, vec![modern.member_id.clone(), members[1].member_id.clone()]);
    assert_eq!(modern.members[0].group_instance_id.as_deref(), Some("i1"));
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::Stable);
}

#[tokio::test(start_paused = true)]
async fn static_rejoin_that_changes_the_selected_protocol_rebalances() {
    let c = coordinator();
    let members = stable_static_group(&c, &["range", "roundrobin"]).await;
    assert_eq!(members[0].protocol_name.as_deref(), Some("range"));

    let i2 = c.join_group(static_join_req("g", "i2", &["roundrobin"]));
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::PreparingRebalance);
    let i1_rejoin = JoinGroupRequest {
        member_id: members[0].member_id.clone(),
        ..static_join_req("g", "i1", &["range", "roundrobin"])
    };
    let i1 = c.join_group(i1_rejoin).await.unwrap();
    let i2 = i2.await.unwrap();
    assert_eq!((i1.generation_id, i2.generation_id), (2, 2));
    assert_eq!(i2.protocol_name.as_deref(), Some("roundrobin"));
}

#[tokio::test(start_paused = true)]
async fn static_member_that_misses_a_rebalance_keeps_its_place() {
    let c = coordinator();
    let members = stable_static_group(&c, &["range"]).await;
    let (i1, i2) = (&members[0], &members[1]);
    let newcomer = c.join_group(join_req("g", "", "dynamic", &["range"]));
    let i1_rejoin =
        c.join_group(JoinGroupRequest { member_id: i1.member_id.clone(), ..static_join_req("g", "i1", &["range"]) });
    // i2 stays alive (heartbeats) but does not rejoin before the rebalance timeout.
    for _ in 0..10 {
        advance(Duration::from_secs(3)).await;
        settle().await;
        let _ = static_heartbeat(&c, &i2.member_id, Some("i2"), 1);
    }
    let leader = i1_rejoin.await.unwrap();
    newcomer.await.unwrap();
    assert_eq!(leader.generation_id, 2);
    let ids: Vec<_> = leader.members.iter().map(|m| m.member_id.clone()).collect();
    assert_eq!(ids.len(), 3, "static member kept, unlike a dynamic one");
    assert!(ids.contains(&i2.member_id));
}
