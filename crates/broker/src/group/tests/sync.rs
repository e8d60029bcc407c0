//! SyncGroup, heartbeats and session expiry.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, advance};

use super::*;
use crate::group::GroupState;

#[tokio::test(start_paused = true)]
async fn sync_gives_every_member_its_own_assignment() {
    let c = coordinator();
    let requests = ["a", "b", "c"].iter().map(|cl| join_req("g", "", cl, &["range"])).collect();
    let members = join_all(&c, requests).await;
    let (leader, b, third) = (&members[0], &members[1], &members[2]);

    // Followers that sync first wait for the leader.
    let mut b_sync = c.sync_group(sync_req("g", b, Vec::new()));
    settle().await;
    assert!(b_sync.try_response().is_none());

    // The leader assigns b and itself; c is left out and gets an empty assignment. Entries
    // for non-members are ignored.
    let assignments = vec![
        (leader.member_id.clone(), assignment_for(&leader.member_id)),
        (b.member_id.clone(), assignment_for(&b.member_id)),
        ("stranger".to_owned(), Bytes::from_static(b"ignored")),
    ];
    let leader_sync = c.sync_group(sync_req("g", leader, assignments)).await.unwrap();
    assert_eq!(leader_sync.assignment, assignment_for(&leader.member_id));
    assert_eq!(leader_sync.protocol_name.as_deref(), Some("range"));
    assert_eq!(leader_sync.protocol_type.as_deref(), Some("consumer"));

    let b_sync = b_sync.await.unwrap();
    assert_eq!(b_sync.assignment, assignment_for(&b.member_id));
    // A follower syncing after the leader is answered at once from the stored assignment.
    let c_sync = c.sync_group(sync_req("g", third, Vec::new())).await.unwrap();
    assert!(c_sync.assignment.is_empty());

    let description = c.describe_group("g").unwrap();
    assert_eq!(description.state, GroupState::Stable);
    assert_eq!(description.protocol, "range");
    assert_eq!(description.members[1].assignment, assignment_for(&b.member_id));
    assert_eq!(description.members[1].metadata, meta("b", "range"));
    assert_eq!(description.members[1].client_id, "b");
}

#[tokio::test(start_paused = true)]
async fn sync_rejects_invalid_requests() {
    let c = coordinator();
    let members = stable_group(&c, "g", &["a", "b"]).await;
    let b = &members[1];

    let wrong_generation = SyncGroupRequest { generation_id: 7, ..sync_req("g", b, Vec::new()) };
    let err = c.sync_group(wrong_generation).await.unwrap_err();
    assert_eq!(err, GroupError::IllegalGeneration { generation: 7 });
    assert_eq!(err.kind(), GroupErrorKind::IllegalGeneration);

    let unknown = SyncGroupRequest { member_id: "ghost".to_owned(), ..sync_req("g", b, Vec::new()) };
    let err = c.sync_group(unknown).await.unwrap_err();
    assert_eq!(err, GroupError::UnknownMemberId { member_id: "ghost".to_owned() });
    assert_eq!(err.kind(), GroupErrorKind::UnknownMemberId);

    let other_protocol =
        SyncGroupRequest { protocol_name: Some("roundrobin".to_owned()), ..sync_req("g", b, Vec::new()) };
    assert_eq!(c.sync_group(other_protocol).await.unwrap_err(), GroupError::InconsistentGroupProtocol);

    // While the group prepares a rebalance, SyncGroup tells the member to rejoin.
    let _rejoin = c.join_group(rejoin_req("g", &members[0], "a"));
    let err = c.sync_group(sync_req("g", b, Vec::new())).await.unwrap_err();
    assert_eq!(err, GroupError::RebalanceInProgress);
    assert_eq!(err.kind(), GroupErrorKind::RebalanceInProgress);
}

#[tokio::test(start_paused = true)]
async fn a_rebalance_fails_syncs_waiting_for_the_leader() {
    let c = coordinator();
    let requests = ["a", "b"].iter().map(|cl| join_req("g", "", cl, &["range"])).collect();
    let members = join_all(&c, requests).await;
    let waiting = c.sync_group(sync_req("g", &members[1], Vec::new()));
    // A new member arrives before the leader synced.
    let _newcomer = c.join_group(join_req("g", "", "c", &["range"]));
    assert_eq!(waiting.await.unwrap_err(), GroupError::RebalanceInProgress);
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::PreparingRebalance);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_tells_members_to_rejoin_during_a_rebalance() {
    let c = coordinator();
    let members = stable_group(&c, "g", &["a", "b"]).await;
    let b = &members[1];
    assert_eq!(heartbeat(&c, "g", b), Ok(()));

    let newcomer = c.join_group(join_req("g", "", "c", &["range"]));
    assert_eq!(heartbeat(&c, "g", b), Err(GroupError::RebalanceInProgress));

    let stale = HeartbeatRequest {
        group_id: "g".to_owned(),
        member_id: b.member_id.clone(),
        group_instance_id: None,
        generation_id: 0,
    };
    assert_eq!(c.heartbeat(&stale), Err(GroupError::IllegalGeneration { generation: 0 }));

    // Everyone rejoins; the rebalance completes without waiting for the timeout.
    let a2 = c.join_group(rejoin_req("g", &members[0], "a"));
    let b2 = c.join_group(rejoin_req("g", b, "b")).await.unwrap();
    let (a2, c2) = (a2.await.unwrap(), newcomer.await.unwrap());
    assert!([&a2, &b2, &c2].iter().all(|r| r.generation_id == 2));
    assert_eq!(heartbeat(&c, "g", &b2), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn session_expiry_removes_the_silent_member_and_rebalances_the_rest() {
    let c = coordinator();
    let members = stable_group(&c, "g", &["a", "b", "c"]).await;
    let (a, b, silent) = (&members[0], &members[1], &members[2]);

    // a and b heartbeat every 3 s; the third member stays silent past its 10 s session.
    let mut rebalancing = false;
    for _ in 0..4 {
        advance(Duration::from_secs(3)).await;
        settle().await;
        let results = (heartbeat(&c, "g", a), heartbeat(&c, "g", b));
        if results == (Err(GroupError::RebalanceInProgress), Err(GroupError::RebalanceInProgress)) {
            rebalancing = true;
            break;
        }
        assert_eq!(results, (Ok(()), Ok(())));
    }
    assert!(rebalancing, "the expiry must trigger a rebalance");
    assert_eq!(c.describe_group("g").unwrap().members.len(), 2);

    let a2 = c.join_group(rejoin_req("g", a, "a"));
    let b2 = c.join_group(rejoin_req("g", b, "b")).await.unwrap();
    let a2 = a2.await.unwrap();
    assert_eq!((a2.generation_id, b2.generation_id), (2, 2));
    let survivors: Vec<_> = a2.members.iter().map(|m| m.member_id.clone()).collect();
    assert_eq!(survivors, vec![a.member_id.clone(), b.member_id.clone()]);
    assert_eq!(heartbeat(&c, "g", silent), Err(GroupError::UnknownMemberId { member_id: silent.member_id.clone() }));
}

#[tokio::test(start_paused = true)]
async fn members_that_never_sync_are_removed_after_the_rebalance_timeout() {
    let c = coordinator();
    let requests = ["a", "b"].iter().map(|cl| join_req("g", "", cl, &["range"])).collect();
    let members = join_all(&c, requests).await;
    let start = Instant::now();
    // Only the leader syncs; b heartbeats (so its session lives) but never sends SyncGroup.
    let assignments = vec![(members[1].member_id.clone(), assignment_for(&members[1].member_id))];
    c.sync_group(sync_req("g", &members[0], assignments)).await.unwrap();
    for _ in 0..10 {
        advance(Duration::from_secs(3)).await;
        settle().await;
        let _ = heartbeat(&c, "g", &members[0]);
        let _ = heartbeat(&c, "g", &members[1]);
    }
    assert!(start.elapsed() >= REBALANCE);
    let description = c.describe_group("g").unwrap();
    assert_eq!(description.state, GroupState::PreparingRebalance);
    assert_eq!(description.members.len(), 1);
    assert_eq!(description.members[0].member_id, members[0].member_id);
}

#[tokio::test(start_paused = true)]
async fn group_becomes_empty_with_a_new_generation_when_everyone_expires() {
    let c = coordinator();
    let _members = stable_group(&c, "g", &["a"]).await;
    advance(SESSION + Duration::from_secs(1)).await;
    settle().await;
    let description = c.describe_group("g").unwrap();
    assert_eq!(description.state, GroupState::Empty);
    assert!(description.members.is_empty());
    // Generation 2 is the empty one: a simple commit is accepted again.
    assert_eq!(c.validate_member("g", "", -1, None), Ok(()));
    assert_eq!(c.scheduled_timers(), 0, "no timer outlives the members");
}
