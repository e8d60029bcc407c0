//! LeaveGroup, Describe/List/DeleteGroups, offset-commit validation and shutdown.

use std::time::Duration;

use super::*;
use crate::group::{GroupListing, GroupState, LeaveGroupMember, LeaveGroupRequest};

fn leave(c: &GroupCoordinator, members: Vec<LeaveGroupMember>) -> Vec<Result<(), GroupError>> {
    let request = LeaveGroupRequest { group_id: "g".to_owned(), members };
    c.leave_group(request).unwrap().into_iter().map(|r| r.result).collect()
}

fn by_id(member_id: &str) -> LeaveGroupMember {
    LeaveGroupMember { member_id: member_id.to_owned(), group_instance_id: None }
}

#[tokio::test(start_paused = true)]
async fn leave_group_rebalances_and_reports_unknown_members() {
    let c = coordinator();
    let members = stable_group(&c, "g", &["a", "b", "c"]).await;
    let results = leave(&c, vec![by_id(&members[2].member_id), by_id("ghost")]);
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Err(GroupError::UnknownMemberId { member_id: "ghost".to_owned() }));
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::PreparingRebalance);
    assert_eq!(heartbeat(&c, "g", &members[0]), Err(GroupError::RebalanceInProgress));

    // The remaining members rejoin into generation 2 without the leaver.
    let a = c.join_group(rejoin_req("g", &members[0], "a"));
    let b = c.join_group(rejoin_req("g", &members[1], "b")).await.unwrap();
    let a = a.await.unwrap();
    assert_eq!((a.generation_id, b.generation_id), (2, 2));
    assert_eq!(a.members.len(), 2);

    // Leaving a group that does not exist is a per-member error, not a request error.
    let unknown = c.leave_group(LeaveGroupRequest { group_id: "nope".to_owned(), members: vec![by_id("x")] }).unwrap();
    assert!(matches!(unknown[0].result, Err(GroupError::UnknownMemberId { .. })));
}

#[tokio::test(start_paused = true)]
async fn static_members_leave_by_instance_id_or_matching_member_id() {
    let c = coordinator();
    let requests = vec![
        static_join_req("g", "i1", &["range"]),
        static_join_req("g", "i2", &["range"]),
        static_join_req("g", "i3", &["range"]),
    ];
    let members = join_all(&c, requests).await;
    sync_all(&c, "g", &members).await;
    let results = leave(
        &c,
        vec![
            // Administrative removal by instance id alone.
            LeaveGroupMember { member_id: String::new(), group_instance_id: Some("i1".to_owned()) },
            // Member id and instance id that do not belong together: fenced.
            LeaveGroupMember { member_id: members[1].member_id.clone(), group_instance_id: Some("i3".to_owned()) },
            // A static member can leave by member id.
            by_id(&members[2].member_id),
            LeaveGroupMember { member_id: String::new(), group_instance_id: Some("unknown-instance".to_owned()) },
        ],
    );
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Err(GroupError::FencedInstanceId { group_instance_id: "i3".to_owned() }));
    assert_eq!(results[2], Ok(()));
    assert!(matches!(results[3], Err(GroupError::UnknownMemberId { .. })));
    let remaining: Vec<_> = c.describe_group("g").unwrap().members.into_iter().map(|m| m.member_id).collect();
    assert_eq!(remaining, vec![members[1].member_id.clone()]);
}

#[tokio::test(start_paused = true)]
async fn only_empty_groups_can_be_deleted() {
    let c = coordinator();
    let members = stable_group(&c, "g", &["a"]).await;
    let results = c.delete_groups(&["g".to_owned(), "missing".to_owned()]);
    assert_eq!(results[0].1, Err(GroupError::NonEmptyGroup { group_id: "g".to_owned() }));
    assert_eq!(results[1].1, Err(GroupError::GroupIdNotFound { group_id: "missing".to_owned() }));

    // Once the last member left and the rebalance emptied the group, it can go.
    assert_eq!(leave(&c, vec![by_id(&members[0].member_id)]), vec![Ok(())]);
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::Empty);
    assert_eq!(c.delete_groups(&["g".to_owned()]), vec![("g".to_owned(), Ok(()))]);
    assert_eq!(c.describe_group("g"), Err(GroupError::GroupIdNotFound { group_id: "g".to_owned() }));
    assert!(c.list_groups(&[]).is_empty());
    assert_eq!(c.scheduled_timers(), 0);
}

#[tokio::test(start_paused = true)]
async fn list_groups_filters_by_state() {
    let c = coordinator();
    let _stable = stable_group(&c, "stable", &["a"]).await;
    let _joining = c.join_group(join_req("joining", "", "b", &["range"]));
    c.validate_member("offsets-only", "", -1, None).unwrap();

    let all = c.list_groups(&[]);
    let names: Vec<_> = all.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(names, vec!["joining", "offsets-only", "stable"]);
    assert_eq!(
        c.list_groups(&[GroupState::Stable, GroupState::Empty]),
        vec![
            GroupListing {
                group_id: "offsets-only".to_owned(),
                protocol_type: String::new(),
                state: GroupState::Empty,
            },
            GroupListing {
                group_id: "stable".to_owned(),
                protocol_type: "consumer".to_owned(),
                state: GroupState::Stable,
            },
        ]
    );
    assert_eq!(GroupState::from_kafka_str("preparingrebalance"), Some(GroupState::PreparingRebalance));
    assert_eq!(GroupState::CompletingRebalance.to_string(), "CompletingRebalance");
}

#[tokio::test(start_paused = true)]
async fn validate_member_follows_kafka_offset_commit_rules() {
    let c = coordinator();
    // Simple commits (generation -1) are fine for unknown and empty groups.
    assert_eq!(c.validate_member("fresh", "", -1, None), Ok(()));
    assert_eq!(
        c.validate_member("unknown", "m", 3, None),
        Err(GroupError::GroupIdNotFound { group_id: "unknown".to_owned() })
    );

    let requests = ["a", "b"].iter().map(|cl| join_req("g", "", cl, &["range"])).collect();
    let members = join_all(&c, requests).await;
    let (a, b) = (&members[0], &members[1]);
    // Between join and sync the member must wait for its assignment.
    assert_eq!(c.validate_member("g", &a.member_id, 1, None), Err(GroupError::RebalanceInProgress));
    sync_all(&c, "g", &members).await;

    assert_eq!(c.validate_member("g", &a.member_id, 1, None), Ok(()));
    assert_eq!(c.validate_member("g", &a.member_id, 0, None), Err(GroupError::IllegalGeneration { generation: 0 }));
    assert!(matches!(c.validate_member("g", "ghost", 1, None), Err(GroupError::UnknownMemberId { .. })));
    // A simple commit while members own the partitions is refused.
    assert!(matches!(c.validate_member("g", "", -1, None), Err(GroupError::UnknownMemberId { .. })));
    assert!(matches!(
        c.validate_member("g", &a.member_id, 1, Some("not-mine")),
        Err(GroupError::UnknownMemberId { .. })
    ));

    // During PreparingRebalance members may still commit what they processed.
    let _newcomer = c.join_group(join_req("g", "", "c", &["range"]));
    assert_eq!(c.validate_member("g", &b.member_id, 1, None), Ok(()));

    // A commit counts as a sign of life: b survives past its session by committing.
    tokio::time::advance(Duration::from_secs(8)).await;
    assert_eq!(c.validate_member("g", &b.member_id, 1, None), Ok(()));
    tokio::time::advance(Duration::from_secs(8)).await;
    settle().await;
    assert!(c.describe_group("g").unwrap().members.iter().any(|m| m.member_id == b.member_id));
}

#[tokio::test(start_paused = true)]
async fn shutdown_fails_parked_requests_and_stops_the_timer_task() {
    let c = coordinator();
    let parked = c.join_group(join_req("g", "", "a", &["range"]));
    c.shutdown();
    assert_eq!(parked.await.unwrap_err(), GroupError::CoordinatorNotAvailable);
    let later = c.join_group(join_req("g", "", "b", &["range"]));
    assert_eq!(later.await.unwrap_err(), GroupError::CoordinatorNotAvailable);
    assert_eq!(c.validate_member("g", "", -1, None), Err(GroupError::CoordinatorNotAvailable));
    assert!(c.list_groups(&[]).is_empty());
    assert_eq!(c.scheduled_timers(), 0);
    settle().await;
    assert!(c.timer_task_finished());

    // Dropping without an explicit shutdown releases everything too.
    let dropped = coordinator();
    let weak = dropped.downgrade();
    let parked = dropped.join_group(join_req("g", "", "a", &["range"]));
    drop(dropped);
    assert_eq!(parked.await.unwrap_err(), GroupError::CoordinatorNotAvailable);
    settle().await;
    assert!(weak.upgrade().is_none(), "the timer task must not keep the coordinator alive");
}

#[test]
fn handles_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<GroupCoordinator>();
    assert_send_sync::<crate::group::PendingResponse<JoinGroupResponse>>();
    assert_send_sync::<crate::group::PendingResponse<SyncGroupResponse>>();
    assert_send_sync::<GroupError>();
}

/// A coordinator that no longer coordinates a group (its offsets partition
/// moved) forgets it: a member of the old generation cannot commit against
/// it, and the others are untouched. Should the group come back here, its
/// members start a fresh one. Found by the fault-injection checker: a
/// zombie member's commit moved a group's offset back.
#[tokio::test(start_paused = true)]
async fn unloaded_groups_are_forgotten_and_others_kept() {
    let c = coordinator();
    let g = stable_group(&c, "g", &["a", "b"]).await;
    let h = stable_group(&c, "h", &["x"]).await;
    assert_eq!(c.validate_member("g", &g[0].member_id, g[0].generation_id, None), Ok(()));
    assert_eq!(c.unload(|id| id == "g"), 1);
    assert!(c.describe_group("g").is_err() || c.describe_group("g").is_ok_and(|d| d.members.is_empty()));
    assert!(matches!(
        c.validate_member("g", &g[0].member_id, g[0].generation_id, None),
        Err(GroupError::GroupIdNotFound { .. })
    ));
    assert_eq!(c.validate_member("h", &h[0].member_id, h[0].generation_id, None), Ok(()));
    assert_eq!(heartbeat(&c, "h", &h[0]), Ok(()));
}
