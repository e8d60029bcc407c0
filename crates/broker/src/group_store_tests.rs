//! Classic groups stored beside their offsets: a settled group survives a
//! restart with its generation, members and assignments; a group its last
//! member left comes back Empty at its new generation; a deleted group
//! does not come back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_log::SystemClock;

use crate::group::{
    GroupError, GroupRecord, GroupState, HeartbeatRequest, JoinGroupRequest, LeaveGroupMember, LeaveGroupRequest,
    SyncGroupRequest,
};
use crate::{Broker, BrokerConfig};

async fn open(dir: &std::path::Path) -> Arc<Broker> {
    let mut cfg = BrokerConfig::new(dir);
    cfg.groups.initial_rebalance_delay = Duration::ZERO;
    cfg.groups.min_session_timeout = Duration::from_millis(100);
    Broker::open(cfg, Arc::new(SystemClock)).await.expect("open")
}

/// A new member's JoinGroup (`instance`: static membership).
fn join_request(group: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        member_id: String::new(),
        group_instance_id: instance.map(Into::into),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(30),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

/// Joins one member and syncs its assignment; returns its id and generation.
async fn join_and_sync(b: &Broker, group: &str, assignment: &'static [u8]) -> (String, i32) {
    let joined = b.join_group(join_request(group, Some("instance-1"))).await.expect("join");
    let member = joined.member_id.clone();
    b.sync_group(SyncGroupRequest {
        group_id: group.into(),
        generation_id: joined.generation_id,
        member_id: member.clone(),
        group_instance_id: Some("instance-1".into()),
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: vec![(member.clone(), Bytes::from_static(assignment))],
    })
    .await
    .expect("sync");
    (member, joined.generation_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_group_survives_a_restart_and_a_deleted_one_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(dir.path()).await;
    let (member, generation) = join_and_sync(&b, "g", b"t-0").await;
    drop(b); // no clean shutdown
    let b = open(dir.path()).await;
    let hb = |generation_id| HeartbeatRequest {
        group_id: "g".into(),
        member_id: member.clone(),
        group_instance_id: Some("instance-1".into()),
        generation_id,
    };
    b.groups().heartbeat(&hb(generation)).expect("the member carries on after the restart");
    b.groups().validate_member("g", &member, generation, Some("instance-1")).expect("commits are accepted");
    let d = b.groups().describe_group("g").expect("describe");
    assert_eq!((d.state, d.protocol.as_str(), d.members.len()), (GroupState::Stable, "range", 1));
    assert_eq!(&d.members[0].assignment[..], b"t-0");
    assert_eq!(&d.members[0].metadata[..], b"sub");

    // The last member leaves: Empty, one generation on, after a restart too.
    let leave = LeaveGroupRequest {
        group_id: "g".into(),
        members: vec![LeaveGroupMember { member_id: member.clone(), group_instance_id: Some("instance-1".into()) }],
    };
    b.leave_group(leave).await.expect("leave");
    drop(b);
    let b = open(dir.path()).await;
    let d = b.groups().describe_group("g").expect("describe");
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0));
    assert!(matches!(b.groups().heartbeat(&hb(generation)), Err(GroupError::UnknownMemberId { .. })));
    let (_, next) = join_and_sync(&b, "g", b"t-0").await;
    assert_eq!(next, generation + 2, "Empty took a generation, the new member the next");

    // Deleted (Empty first): gone after a restart.
    let leave = LeaveGroupRequest {
        group_id: "g".into(),
        members: vec![LeaveGroupMember { member_id: String::new(), group_instance_id: Some("instance-1".into()) }],
    };
    b.leave_group(leave).await.expect("leave");
    assert!(b.groups().delete_groups(&["g".to_string()])[0].1.is_ok());
    b.delete_offsets("g", None).await.expect("delete");
    drop(b);
    let b = open(dir.path()).await;
    assert!(matches!(b.groups().describe_group("g"), Err(GroupError::GroupIdNotFound { .. })));
    assert!(b.offsets().stored_groups().is_empty());
}

/// A group mid-rebalance keeps its last settled record: what a coordinator
/// taking it over restores is that generation, whose members then rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_settled_states_are_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(dir.path()).await;
    let (_, generation) = join_and_sync(&b, "g", b"a").await;
    let stored = b.offsets().stored_groups();
    let [GroupRecord::Classic(g)] = &stored[..] else { panic!("one classic group stored: {stored:?}") };
    assert_eq!((g.generation, g.members.len()), (generation, 1));
    // A second member joining starts a rebalance the first has not rejoined:
    // nothing new is stored.
    let pending = b.join_group(join_request("g", None));
    let waiting = tokio::time::timeout(Duration::from_millis(200), pending).await;
    assert!(waiting.is_err(), "the join waits for the first member to rejoin");
    assert_eq!(b.groups().describe_group("g").expect("describe").state, GroupState::PreparingRebalance);
    assert_eq!(b.offsets().stored_groups(), stored);
}

/// A group emptied by its members' sessions expiring (no request said so)
/// is stored Empty too: a coordinator taking it over does not restore the
/// members that are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_emptied_by_expired_sessions_is_stored_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = open(dir.path()).await;
    let _tasks = b.start_background_tasks();
    let mut join = join_request("g", None);
    join.session_timeout = Duration::from_millis(300);
    let joined = b.join_group(join).await.expect("join");
    b.sync_group(SyncGroupRequest {
        group_id: "g".into(),
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"a"))],
    })
    .await
    .expect("sync");
    // No heartbeats: the session expires.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = b.offsets().stored_groups();
        if let [GroupRecord::Classic(g)] = &stored[..]
            && g.members.is_empty()
        {
            assert!(g.generation > joined.generation_id, "Empty at a newer generation");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still stored with its members: {stored:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b);
    let b = open(dir.path()).await;
    let d = b.groups().describe_group("g").expect("describe");
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0));
}

/// The same for a KIP-848 group: a member whose session expired is gone
/// from the stored group as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_member_that_expired_is_gone_from_the_stored_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = BrokerConfig::new(dir.path());
    cfg.consumer_groups.session_timeout = Duration::from_millis(300);
    let b = Broker::open(cfg, Arc::new(SystemClock)).await.expect("open");
    let _tasks = b.start_background_tasks();
    b.create_topic("t", 1, crate::TopicConfig::default()).await.expect("topic");
    let joined = b
        .consumer_heartbeat(crate::group::consumer::ConsumerHeartbeat {
            group_id: "cg".into(),
            member_id: "member-expiring".into(),
            member_epoch: 0,
            instance_id: None,
            rack_id: None,
            rebalance_timeout: Some(Duration::from_secs(30)),
            subscribed_topic_names: Some(vec!["t".into()]),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned_partitions: Some(vec![]),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            member_id_required: true,
        })
        .await
        .expect("join");
    assert!(joined.member_epoch > 0);
    let stored = || format!("{:?}", b.offsets().stored_groups());
    assert!(stored().contains("member-expiring"), "stored with its member: {}", stored());
    // No heartbeats: the session expires and the stored group loses it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored().contains("member-expiring") {
        assert!(tokio::time::Instant::now() < deadline, "still stored with its member: {}", stored());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
