//! JoinGroup: the join phase, initial delay, MEMBER_ID_REQUIRED, protocol selection, limits.

use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;
use crate::group::{GroupState, JoinGroupMember};

#[tokio::test(start_paused = true)]
async fn three_members_share_a_generation_and_only_the_leader_gets_the_member_list() {
    let c = coordinator();
    let start = Instant::now();
    let mut pending: Vec<_> =
        ["a", "b", "c"].iter().map(|client| c.join_group(join_req("g", "", client, &["range"]))).collect();

    // The first join of an empty group waits for the initial rebalance delay.
    advance(INITIAL_DELAY - Duration::from_millis(1)).await;
    settle().await;
    assert!(pending.iter_mut().all(|p| p.try_response().is_none()));
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::PreparingRebalance);

    let mut responses = Vec::new();
    for p in pending {
        responses.push(p.await.unwrap());
    }
    // b and c arrived during the first delay, which therefore ran once more.
    assert_eq!(start.elapsed(), INITIAL_DELAY * 2);

    let leader = &responses[0];
    assert_eq!(leader.leader_id, leader.member_id, "the first member leads");
    assert!(leader.member_id.starts_with("a-"), "member ids are prefixed with the client id");
    for r in &responses {
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader_id, leader.member_id);
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert!(!r.skip_assignment);
    }
    let expected: Vec<JoinGroupMember> = responses
        .iter()
        .zip(["a", "b", "c"])
        .map(|(r, client)| JoinGroupMember {
            member_id: r.member_id.clone(),
            group_instance_id: None,
            metadata: meta(client, "range"),
        })
        .collect();
    assert_eq!(leader.members, expected, "leader sees every member, in join order");
    assert!(responses[1].members.is_empty() && responses[2].members.is_empty());
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::CompletingRebalance);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_is_extended_while_new_members_arrive() {
    let c = coordinator();
    let start = Instant::now();
    let mut first = c.join_group(join_req("g", "", "a", &["range"]));
    advance(Duration::from_secs(2)).await;
    let mut second = c.join_group(join_req("g", "", "b", &["range"]));
    // Step exactly onto the 3 s deadline so the extension is scheduled from there.
    advance(Duration::from_secs(1)).await;
    settle().await;

    // A member arrived during the first delay: the phase runs one more delay (until 6 s).
    advance(Duration::from_millis(2_999)).await;
    settle().await;
    assert!(first.try_response().is_none() && second.try_response().is_none());

    let a = first.await.unwrap();
    let b = second.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    assert_eq!(a.members.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_extension_is_bounded_by_the_rebalance_timeout() {
    let c = coordinator();
    let start = Instant::now();
    let short = |client: &str| JoinGroupRequest {
        rebalance_timeout: Duration::from_secs(5),
        ..join_req("g", "", client, &["range"])
    };
    let first = c.join_group(short("a"));
    advance(Duration::from_secs(2)).await;
    let _second = c.join_group(short("b"));
    advance(Duration::from_secs(1)).await;
    settle().await;
    advance(Duration::from_secs(1)).await;
    let _third = c.join_group(short("c"));
    // 3 s delay, then only the 2 s left of the 5 s rebalance timeout despite more joins.
    let a = first.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(a.members.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn member_id_required_then_join_with_the_given_id() {
    let c = coordinator();
    let request = JoinGroupRequest { require_known_member_id: true, ..join_req("g", "", "client-a", &["range"]) };
    let member_id = match c.join_group(request.clone()).await {
        Err(GroupError::MemberIdRequired { member_id }) => member_id,
        other => panic!("expected MemberIdRequired, got {other:?}"),
    };
    assert!(member_id.starts_with("client-a-"));
    // A pending member is not a member yet.
    assert!(c.describe_group("g").unwrap().members.is_empty());

    let joined = c.join_group(JoinGroupRequest { member_id: member_id.clone(), ..request.clone() }).await.unwrap();
    assert_eq!(joined.member_id, member_id);
    assert_eq!(joined.leader_id, member_id);
    assert_eq!(joined.generation_id, 1);

    // A reservation that is never used expires after the session timeout.
    let Err(GroupError::MemberIdRequired { member_id: abandoned }) = c.join_group(request.clone()).await else {
        panic!("expected MemberIdRequired");
    };
    advance(SESSION + Duration::from_millis(1)).await;
    settle().await;
    let late = c.join_group(JoinGroupRequest { member_id: abandoned.clone(), ..request });
    assert_eq!(late.await.unwrap_err(), GroupError::UnknownMemberId { member_id: abandoned });
}

#[tokio::test(start_paused = true)]
async fn pending_member_holds_the_join_phase_until_it_joins() {
    let c = coordinator();
    let members = stable_group(&c, "g", &["a"]).await;
    let request = JoinGroupRequest { require_known_member_id: true, ..join_req("g", "", "b", &["range"]) };
    let Err(GroupError::MemberIdRequired { member_id }) = c.join_group(request.clone()).await else {
        panic!("expected MemberIdRequired");
    };
    // The leader rejoins (rebalance), but the phase waits for the pending member.
    let mut leader = c.join_group(rejoin_req("g", &members[0], "a"));
    settle().await;
    assert!(leader.try_response().is_none());
    let b = c.join_group(JoinGroupRequest { member_id, ..request }).await.unwrap();
    let a = leader.await.unwrap();
    assert_eq!((a.generation_id, b.generation_id), (2, 2));
    assert_eq!(a.members.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn protocol_is_chosen_by_member_vote() {
    let c = coordinator();
    let responses = join_all(
        &c,
        vec![
            join_req("g", "", "a", &["roundrobin", "range", "sticky"]),
            join_req("g", "", "b", &["range", "roundrobin"]),
            join_req("g", "", "c", &["range", "roundrobin"]),
        ],
    )
    .await;
    // "sticky" is not supported by all; "range" gets two votes against one.
    assert!(responses.iter().all(|r| r.protocol_name.as_deref() == Some("range")));
    let leader_metadata: Vec<_> = responses[0].members.iter().map(|m| m.metadata.clone()).collect();
    assert_eq!(leader_metadata, vec![meta("a", "range"), meta("b", "range"), meta("c", "range")]);
}

#[tokio::test(start_paused = true)]
async fn incompatible_protocols_are_rejected() {
    let c = coordinator();
    let _members = stable_group(&c, "g", &["a", "b"]).await;

    let no_common = c.join_group(join_req("g", "", "c", &["sticky"]));
    assert_eq!(no_common.await.unwrap_err(), GroupError::InconsistentGroupProtocol);
    let other_type = JoinGroupRequest { protocol_type: "connect".to_owned(), ..join_req("g", "", "d", &["range"]) };
    assert_eq!(c.join_group(other_type).await.unwrap_err(), GroupError::InconsistentGroupProtocol);
    let empty = join_req("g2", "", "e", &[]);
    assert_eq!(c.join_group(empty).await.unwrap_err(), GroupError::InconsistentGroupProtocol);
    // The rejected members did not disturb the group.
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::Stable);
}

#[tokio::test(start_paused = true)]
async fn rebalance_timeout_removes_a_member_that_does_not_rejoin() {
    let c = coordinator();
    let members = stable_group(&c, "g", &["a", "b"]).await;
    let (a, b) = (&members[0], &members[1]);
    let start = Instant::now();
    // The leader rejoins; b keeps heartbeating (so its session stays alive) but never rejoins.
    let mut rejoin = c.join_group(rejoin_req("g", a, "a"));
    for _ in 0..9 {
        advance(Duration::from_secs(3)).await;
        settle().await;
        assert_eq!(heartbeat(&c, "g", b), Err(GroupError::RebalanceInProgress));
        assert!(rejoin.try_response().is_none());
    }
    let a2 = rejoin.await.unwrap();
    assert_eq!(start.elapsed(), REBALANCE);
    assert_eq!(a2.generation_id, 2);
    assert_eq!(a2.members.iter().map(|m| m.member_id.as_str()).collect::<Vec<_>>(), vec![a.member_id.as_str()]);
    assert_eq!(heartbeat(&c, "g", b), Err(GroupError::UnknownMemberId { member_id: b.member_id.clone() }));
}

#[tokio::test(start_paused = true)]
async fn stable_follower_rejoining_unchanged_gets_the_current_generation() {
    let c = coordinator();
    let members = stable_group(&c, "g", &["a", "b"]).await;
    let again = c.join_group(rejoin_req("g", &members[1], "b")).await.unwrap();
    assert_eq!(again.generation_id, 1);
    assert!(again.members.is_empty());
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::Stable);

    // A follower with new metadata forces a rebalance.
    let changed = c.join_group(join_req("g", &members[1].member_id, "b", &["range", "sticky"]));
    drop(changed);
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::PreparingRebalance);
}

#[tokio::test(start_paused = true)]
async fn request_validation() {
    let c = GroupCoordinator::new(GroupConfig { max_group_size: 2, ..GroupConfig::default() });
    let too_short = JoinGroupRequest { session_timeout: Duration::from_secs(1), ..join_req("g", "", "a", &["range"]) };
    let err = c.join_group(too_short).await.unwrap_err();
    assert!(matches!(err, GroupError::InvalidSessionTimeout { .. }));
    assert_eq!(err.kind(), GroupErrorKind::InvalidSessionTimeout);
    let empty_group = c.join_group(join_req("", "", "a", &["range"]));
    assert_eq!(empty_group.await.unwrap_err(), GroupError::InvalidGroupId);
    let unknown_group = c.join_group(join_req("nope", "some-id", "a", &["range"]));
    assert!(matches!(unknown_group.await, Err(GroupError::UnknownMemberId { .. })));

    let _members = stable_group(&c, "g", &["a", "b"]).await;
    let full = c.join_group(join_req("g", "", "c", &["range"])).await.unwrap_err();
    assert_eq!(full, GroupError::GroupMaxSizeReached { max_size: 2 });
    assert_eq!(full.kind(), GroupErrorKind::GroupMaxSizeReached);
}
