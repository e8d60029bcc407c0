//! Describe, list, delete, contains and the offset-commit hooks.

use super::*;
use crate::group::consumer::ConsumerGroupListing;

#[tokio::test(start_paused = true)]
async fn describe_reports_epochs_members_and_assignments() {
    let topics = Topics::with(&[("t", 2)]);
    let t = topics.id("t");
    let c = coordinator(&topics);
    let join = ConsumerHeartbeat {
        rack_id: Some("rack-1".to_owned()),
        instance_id: Some("i-1".to_owned()),
        ..join_req("a", &["t"])
    };
    Client::join_with(&c, join);
    let (mut b, _) = Client::join(&c, "b", &["t"]);

    let mut described = c.describe(&[GROUP.to_owned(), "missing".to_owned()]);
    assert_eq!(described[1].as_ref().unwrap_err().kind(), GroupErrorKind::GroupIdNotFound);
    let group = described.remove(0).unwrap();
    assert_eq!(group.group_id, GROUP);
    assert_eq!(group.state, ConsumerGroupState::Reconciling);
    assert_eq!(group.state.as_kafka_str(), "Reconciling");
    assert_eq!((group.group_epoch, group.assignment_epoch), (2, 2));
    assert_eq!(group.assignor_name, "uniform");
    let a = &group.members[0];
    assert_eq!(a.member_id, "a");
    assert_eq!(a.instance_id.as_deref(), Some("i-1"));
    assert_eq!(a.rack_id.as_deref(), Some("rack-1"));
    assert_eq!(a.member_epoch, 1);
    assert_eq!((a.client_id.as_str(), a.client_host.as_str()), ("client-a", "/127.0.0.1"));
    assert_eq!(a.subscribed_topic_names, ["t"]);
    assert_eq!(a.assignment.len(), 1);
    assert_eq!(a.assignment[0].topic_id, t);
    assert_eq!(a.assignment[0].topic_name, "t");
    assert_eq!(a.assignment[0].partitions, [0, 1]);
    assert_eq!(a.target_assignment[0].partitions.len(), 1);
    let b_described = &group.members[1];
    assert!(b_described.assignment.is_empty());
    assert_eq!(b_described.target_assignment[0].partitions.len(), 1);

    // Once reconciled: Stable.
    let mut a_client =
        Client { member_id: "a".to_owned(), instance_id: Some("i-1".to_owned()), epoch: 1, owned: tps(t, &[0, 1]) };
    a_client.heartbeat(&c).unwrap();
    a_client.heartbeat(&c).unwrap();
    b.heartbeat(&c).unwrap();
    assert_eq!(state(&c), ConsumerGroupState::Stable);
    assert_eq!(ConsumerGroupState::from_kafka_str("stable"), Some(ConsumerGroupState::Stable));
}

#[tokio::test(start_paused = true)]
async fn list_contains_and_delete() {
    let topics = Topics::with(&[("t", 1)]);
    let c = coordinator(&topics);
    assert!(!c.contains(GROUP));
    assert_eq!(c.delete(GROUP).unwrap_err().kind(), GroupErrorKind::GroupIdNotFound);
    Client::join(&c, "a", &["t"]);
    let other = ConsumerHeartbeat { group_id: "another".to_owned(), ..join_req("x", &["t"]) };
    c.heartbeat(other).unwrap();
    let listed = c.list();
    assert_eq!(listed.iter().map(|l| l.group_id.as_str()).collect::<Vec<_>>(), ["another", GROUP]);
    assert!(listed.iter().all(|l| l.state == ConsumerGroupState::Stable));
    assert_eq!(ConsumerGroupListing::GROUP_TYPE, "consumer");
    assert!(c.contains(GROUP));

    assert_eq!(c.delete(GROUP).unwrap_err().kind(), GroupErrorKind::NonEmptyGroup);
    c.heartbeat(hb_req("a", -1, None)).unwrap();
    assert_eq!(state(&c), ConsumerGroupState::Empty);
    c.delete(GROUP).unwrap();
    assert!(!c.contains(GROUP));
    assert_eq!(c.list().len(), 1);
    assert_eq!(c.heartbeat(hb_req("a", 1, None)).unwrap_err().kind(), GroupErrorKind::GroupIdNotFound);
    // A join re-creates it from scratch.
    let (client, _) = Client::join(&c, "a", &["t"]);
    assert_eq!(client.epoch, 1);
}

#[tokio::test(start_paused = true)]
async fn commits_are_validated_against_the_member_epoch() {
    let topics = Topics::with(&[("t", 2)]);
    let c = coordinator(&topics);
    assert_eq!(c.validate_commit(GROUP, "a", 1).unwrap_err().kind(), GroupErrorKind::GroupIdNotFound);
    let (mut a, _) = Client::join(&c, "a", &["t"]);
    c.validate_commit(GROUP, "a", 1).unwrap();
    assert_eq!(
        c.validate_commit(GROUP, "a", 0).unwrap_err(),
        GroupError::StaleMemberEpoch { member_id: "a".to_owned(), received: 0, current: 1 }
    );
    assert_eq!(c.validate_commit(GROUP, "a", 2).unwrap_err().kind(), GroupErrorKind::StaleMemberEpoch);
    assert_eq!(c.validate_commit(GROUP, "zzz", 1).unwrap_err().kind(), GroupErrorKind::UnknownMemberId);
    // Admin-style commits (epoch -1) only while the group is empty.
    assert_eq!(c.validate_commit(GROUP, "", -1).unwrap_err().kind(), GroupErrorKind::UnknownMemberId);

    // Fetches: admin clients pass, members are checked.
    c.validate_fetch(GROUP, None, -1).unwrap();
    c.validate_fetch(GROUP, Some("a"), 1).unwrap();
    assert_eq!(c.validate_fetch(GROUP, Some("a"), 3).unwrap_err().kind(), GroupErrorKind::StaleMemberEpoch);
    assert_eq!(c.validate_fetch(GROUP, Some("zzz"), 1).unwrap_err().kind(), GroupErrorKind::UnknownMemberId);

    // The epoch moves with the group.
    Client::join(&c, "b", &["t"]);
    a.heartbeat(&c).unwrap();
    a.heartbeat(&c).unwrap();
    assert_eq!(a.epoch, 2);
    assert_eq!(c.validate_commit(GROUP, "a", 1).unwrap_err().kind(), GroupErrorKind::StaleMemberEpoch);
    c.validate_commit(GROUP, "a", 2).unwrap();

    c.heartbeat(hb_req("a", -1, None)).unwrap();
    c.heartbeat(hb_req("b", -1, None)).unwrap();
    c.validate_commit(GROUP, "", -1).unwrap();
}
