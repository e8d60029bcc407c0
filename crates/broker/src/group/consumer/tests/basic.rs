//! Joining, reconciliation, assignors, subscriptions and epoch validation.

use std::collections::BTreeSet;

use super::*;
use crate::group::consumer::ConsumerGroupDescription;

fn describe(c: &ConsumerGroups) -> ConsumerGroupDescription {
    c.describe(&[GROUP.to_owned()]).remove(0).expect("describe")
}

#[tokio::test(start_paused = true)]
async fn single_member_gets_all_partitions() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let (client, response) = Client::join(&c, "m1", &["t"]);
    assert_eq!(response.member_id, "m1");
    assert_eq!(response.member_epoch, 1);
    assert_eq!(response.heartbeat_interval, HEARTBEAT);
    assert_eq!(client.owned, tps(topics.id("t"), &[0, 1, 2, 3]));
    assert_eq!(group_epoch(&c), 1);
    assert_eq!(state(&c), ConsumerGroupState::Stable);

    // A plain heartbeat without changes carries no assignment.
    let mut client = client;
    let response = client.heartbeat(&c).unwrap();
    assert_eq!(response.member_epoch, 1);
    assert_eq!(response.assignment, None);
    // A full request always gets it.
    let full = ConsumerHeartbeat {
        rebalance_timeout: Some(REBALANCE),
        subscribed_topic_names: Some(vec!["t".to_owned()]),
        ..client.request()
    };
    assert!(c.heartbeat(full).unwrap().assignment.is_some());
}

#[tokio::test(start_paused = true)]
async fn partitions_move_only_after_the_previous_owner_revoked_them() {
    let topics = Topics::with(&[("t", 4)]);
    let t = topics.id("t");
    let c = coordinator(&topics);
    let (mut a, _) = Client::join(&c, "a", &["t"]);
    assert_eq!(a.owned.len(), 4);

    // B joins: epoch 2, but every partition of its target is still A's.
    let (mut b, response) = Client::join(&c, "b", &["t"]);
    assert_eq!(response.member_epoch, 2);
    assert_eq!(response.assignment, Some(Vec::new()));
    assert_eq!(group_epoch(&c), 2);
    assert_eq!(state(&c), ConsumerGroupState::Reconciling);

    // A, still reporting all four, is asked to revoke two and stays at epoch 1.
    let stale_owned = a.request();
    let response = a.heartbeat(&c).unwrap();
    assert_eq!(response.member_epoch, 1);
    assert_eq!(a.owned, tps(t, &[0, 1]));
    // B gets nothing while A has not confirmed.
    assert_eq!(b.heartbeat(&c).unwrap().assignment, None);
    assert!(b.owned.is_empty());
    // A heartbeat that still reports the revoked partitions changes nothing.
    let response = c.heartbeat(stale_owned).unwrap();
    assert_eq!((response.member_epoch, response.assignment), (1, None));
    assert!(b.heartbeat(&c).unwrap().assignment.is_none());

    // A confirms: it moves to epoch 2; then B receives the released partitions.
    let response = a.heartbeat(&c).unwrap();
    assert_eq!(response.member_epoch, 2);
    assert_eq!(response.assignment, None, "A's assignment did not change when it moved to the new epoch");
    let response = b.heartbeat(&c).unwrap();
    assert_eq!(response.member_epoch, 2);
    assert_eq!(b.owned, tps(t, &[2, 3]));
    assert_disjoint(&[a.clone(), b.clone()]);
    assert_eq!(state(&c), ConsumerGroupState::Stable);
}

#[tokio::test(start_paused = true)]
async fn uniform_spreads_six_partitions_over_three_members() {
    let topics = Topics::with(&[("t", 6)]);
    let c = coordinator(&topics);
    let mut clients: Vec<Client> = ["a", "b", "c"].iter().map(|id| Client::join(&c, id, &["t"]).0).collect();
    converge(&c, &mut clients);
    for client in &clients {
        assert_eq!(client.owned.len(), 2, "{client:?}");
    }
    let all: BTreeSet<Tp> = clients.iter().flat_map(|c| c.owned.iter().copied()).collect();
    assert_eq!(all.len(), 6);

    // Sticky: a fourth member takes partitions without reshuffling the rest.
    let before: Vec<BTreeSet<Tp>> = clients.iter().map(|c| c.owned.clone()).collect();
    clients.push(Client::join(&c, "d", &["t"]).0);
    converge(&c, &mut clients);
    let sizes: Vec<usize> = clients.iter().map(|c| c.owned.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 6);
    assert!(sizes.iter().all(|n| (1..=2).contains(n)), "{sizes:?}");
    for (old, client) in before.iter().zip(&clients) {
        assert!(client.owned.is_subset(old), "{} lost partitions it could keep", client.member_id);
    }
}

#[tokio::test(start_paused = true)]
async fn range_assignor_co_partitions_like_kafka() {
    let topics = Topics::with(&[("t1", 3), ("t2", 3)]);
    let (t1, t2) = (topics.id("t1"), topics.id("t2"));
    let c = coordinator(&topics);
    let range =
        |id: &str| ConsumerHeartbeat { server_assignor: Some("range".to_owned()), ..join_req(id, &["t1", "t2"]) };
    let mut clients = vec![Client::join_with(&c, range("m0")).0, Client::join_with(&c, range("m1")).0];
    converge(&c, &mut clients);
    // Kafka's RangeAssignor javadoc: M0: [T1P0, T1P1, T2P0, T2P1], M1: [T1P2, T2P2].
    let expected0: BTreeSet<Tp> = tps(t1, &[0, 1]).union(&tps(t2, &[0, 1])).copied().collect();
    let expected1: BTreeSet<Tp> = tps(t1, &[2]).union(&tps(t2, &[2])).copied().collect();
    assert_eq!(clients[0].owned, expected0);
    assert_eq!(clients[1].owned, expected1);
    assert_eq!(describe(&c).assignor_name, "range");

    // Static members sort first (by instance id), so `z` (static) gets the first range.
    let static_z = ConsumerHeartbeat { instance_id: Some("i-z".to_owned()), ..range("z") };
    clients.push(Client::join_with(&c, static_z).0);
    converge(&c, &mut clients);
    assert_eq!(clients[2].owned, tps(t1, &[0]).union(&tps(t2, &[0])).copied().collect());
    assert_eq!(clients[0].owned, tps(t1, &[1]).union(&tps(t2, &[1])).copied().collect());
}

#[tokio::test(start_paused = true)]
async fn regex_subscription_picks_up_topics_created_later() {
    let topics = Topics::with(&[("orders-eu", 2), ("payments", 2)]);
    let c = coordinator(&topics);
    let join = ConsumerHeartbeat {
        subscribed_topic_names: None,
        subscribed_topic_regex: Some("orders-.*".to_owned()),
        ..join_req("m", &[])
    };
    let (mut client, _) = Client::join_with(&c, join);
    assert_eq!(client.owned, tps(topics.id("orders-eu"), &[0, 1]));
    let epoch = group_epoch(&c);

    // Unrelated topics and partial matches do not count; a new match bumps the epoch.
    topics.create("xorders-us", 1);
    assert_eq!(client.heartbeat(&c).unwrap().assignment, None);
    assert_eq!(group_epoch(&c), epoch);
    let us = topics.create("orders-us", 3);
    let response = client.heartbeat(&c).unwrap();
    assert_eq!(group_epoch(&c), epoch + 1);
    assert_eq!(response.member_epoch, epoch + 1);
    let expected: BTreeSet<Tp> = tps(topics.id("orders-eu"), &[0, 1]).union(&tps(us, &[0, 1, 2])).copied().collect();
    assert_eq!(client.owned, expected);
    let described = describe(&c);
    assert_eq!(described.members[0].subscribed_topic_regex.as_deref(), Some("orders-.*"));
    let names: BTreeSet<&str> = described.members[0].assignment.iter().map(|t| t.topic_name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["orders-eu", "orders-us"]));

    // Switching to names drops the regex topics.
    let switch = ConsumerHeartbeat {
        subscribed_topic_names: Some(vec!["payments".to_owned()]),
        subscribed_topic_regex: Some(String::new()),
        ..client.request()
    };
    let response = c.heartbeat(switch).unwrap();
    client.apply(&response);
    client.heartbeat(&c).unwrap();
    assert_eq!(client.owned, tps(topics.id("payments"), &[0, 1]));
}

#[tokio::test(start_paused = true)]
async fn metadata_changes_bump_the_group_epoch() {
    let topics = Topics::with(&[("t", 2)]);
    let c = coordinator(&topics);
    let (mut client, _) = Client::join(&c, "m", &["t", "later"]);
    assert_eq!(group_epoch(&c), 1);
    client.heartbeat(&c).unwrap();
    assert_eq!(group_epoch(&c), 1, "nothing changed");

    topics.set_partitions("t", 4);
    let response = client.heartbeat(&c).unwrap();
    assert_eq!((group_epoch(&c), response.member_epoch), (2, 2));
    assert_eq!(client.owned, tps(topics.id("t"), &[0, 1, 2, 3]));

    let later = topics.create("later", 1);
    client.heartbeat(&c).unwrap();
    assert_eq!(group_epoch(&c), 3);
    assert!(client.owned.contains(&(later, 0)));

    // Deleting a topic revokes its partitions.
    let old_t = topics.id("t");
    topics.delete("t");
    let response = client.heartbeat(&c).unwrap();
    assert_eq!(group_epoch(&c), 4);
    assert_eq!(response.member_epoch, 3, "must first revoke the deleted topic's partitions");
    assert_eq!(client.owned, tps(later, &[0]));
    let response = client.heartbeat(&c).unwrap();
    assert_eq!(response.member_epoch, 4);
    assert!(!client.owned.iter().any(|(topic, _)| *topic == old_t));
}

#[tokio::test(start_paused = true)]
async fn epoch_validation_follows_kafka() {
    let topics = Topics::with(&[("t", 2)]);
    let t = topics.id("t");
    let c = coordinator(&topics);
    let (mut a, _) = Client::join(&c, "a", &["t"]);
    assert_eq!(a.epoch, 1);

    let ahead = c.heartbeat(hb_req("a", 5, Some(unflatten(&a.owned)))).unwrap_err();
    assert_eq!(ahead, GroupError::FencedMemberEpoch { member_id: "a".to_owned(), received: 5, current: 1 });
    assert_eq!(ahead.kind(), GroupErrorKind::FencedMemberEpoch);

    // Move A to epoch 2 (B joins; A keeps p0): previous epoch 1.
    let (mut b, _) = Client::join(&c, "b", &["t"]);
    a.heartbeat(&c).unwrap();
    a.heartbeat(&c).unwrap();
    assert_eq!(a.epoch, 2);
    b.heartbeat(&c).unwrap();
    assert_eq!(a.owned, tps(t, &[0]));

    // The response moving A to 2 may have been lost: epoch 1 with a subset is accepted...
    let lost = c.heartbeat(hb_req("a", 1, Some(unflatten(&tps(t, &[0]))))).unwrap();
    assert_eq!(lost.member_epoch, 2);
    // ...but not with partitions outside its assignment, nor without owned partitions.
    let bad = c.heartbeat(hb_req("a", 1, Some(unflatten(&tps(t, &[0, 1]))))).unwrap_err();
    assert_eq!(bad.kind(), GroupErrorKind::FencedMemberEpoch);
    assert_eq!(c.heartbeat(hb_req("a", 1, None)).unwrap_err().kind(), GroupErrorKind::FencedMemberEpoch);
    // An older epoch is always fenced.
    assert_eq!(
        c.heartbeat(hb_req("a", 0, Some(Vec::new()))).unwrap_err().kind(),
        GroupErrorKind::InvalidRequest,
        "join needs fields"
    );
    let older = ConsumerHeartbeat { member_epoch: 0, ..join_req("a", &["t"]) };
    assert_eq!(c.heartbeat(older).unwrap_err().kind(), GroupErrorKind::FencedMemberEpoch);

    // Unknown members and groups.
    assert_eq!(c.heartbeat(hb_req("nobody", 1, None)).unwrap_err().kind(), GroupErrorKind::UnknownMemberId);
    let other_group = ConsumerHeartbeat { group_id: "nope".to_owned(), ..hb_req("a", 1, None) };
    assert_eq!(c.heartbeat(other_group).unwrap_err().kind(), GroupErrorKind::GroupIdNotFound);
    let leave_unknown = hb_req("nobody", -1, None);
    assert_eq!(c.heartbeat(leave_unknown).unwrap_err().kind(), GroupErrorKind::UnknownMemberId);
}

#[tokio::test(start_paused = true)]
async fn a_join_retried_after_a_lost_response_is_accepted() {
    let topics = Topics::with(&[("t", 2)]);
    let c = coordinator(&topics);
    let first = c.heartbeat(join_req("m", &["t"])).unwrap();
    assert_eq!(first.member_epoch, 1);
    let again = c.heartbeat(join_req("m", &["t"])).unwrap();
    assert_eq!(again.member_epoch, 1);
    assert_eq!(again.assignment, first.assignment);
    assert_eq!(group_epoch(&c), 1);
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_are_rejected() {
    let topics = Topics::with(&[("t", 2)]);
    let c = coordinator(&topics);
    let code = |request: ConsumerHeartbeat| c.heartbeat(request).unwrap_err().kind();

    assert_eq!(
        code(ConsumerHeartbeat { member_id: String::new(), ..join_req("m", &["t"]) }),
        GroupErrorKind::InvalidRequest
    );
    assert_eq!(
        code(ConsumerHeartbeat { group_id: String::new(), ..join_req("m", &["t"]) }),
        GroupErrorKind::InvalidRequest
    );
    assert_eq!(
        code(ConsumerHeartbeat { rebalance_timeout: None, ..join_req("m", &["t"]) }),
        GroupErrorKind::InvalidRequest
    );
    assert_eq!(
        code(ConsumerHeartbeat { owned_partitions: None, ..join_req("m", &["t"]) }),
        GroupErrorKind::InvalidRequest
    );
    let owned = Some(vec![TopicPartitions { topic_id: topics.id("t"), partitions: vec![0] }]);
    assert_eq!(
        code(ConsumerHeartbeat { owned_partitions: owned, ..join_req("m", &["t"]) }),
        GroupErrorKind::InvalidRequest
    );
    assert_eq!(
        code(ConsumerHeartbeat { subscribed_topic_names: None, ..join_req("m", &["t"]) }),
        GroupErrorKind::InvalidRequest
    );
    assert_eq!(
        code(ConsumerHeartbeat { instance_id: Some(String::new()), ..join_req("m", &["t"]) }),
        GroupErrorKind::InvalidRequest
    );
    assert_eq!(
        code(ConsumerHeartbeat { rack_id: Some(String::new()), ..join_req("m", &["t"]) }),
        GroupErrorKind::InvalidRequest
    );
    assert_eq!(code(hb_req("m", -3, None)), GroupErrorKind::InvalidRequest);
    assert_eq!(code(hb_req("m", -2, None)), GroupErrorKind::InvalidRequest, "a static leave needs the instance id");
    assert_eq!(
        code(ConsumerHeartbeat { server_assignor: Some("sticky".to_owned()), ..join_req("m", &["t"]) }),
        GroupErrorKind::UnsupportedAssignor
    );
    let regex = ConsumerHeartbeat { subscribed_topic_regex: Some("orders-(".to_owned()), ..join_req("m", &[]) };
    assert_eq!(code(regex), GroupErrorKind::InvalidRegularExpression);
    // Nothing was created by the failed joins.
    assert!(!c.contains(GROUP));
    assert!(c.list().is_empty());

    // ConsumerGroupHeartbeat v0: the coordinator generates the member id.
    let v0 = ConsumerHeartbeat { member_id: String::new(), member_id_required: false, ..join_req("", &["t"]) };
    let response = c.heartbeat(v0).unwrap();
    assert!(Uuid::parse_str(&response.member_id).is_ok(), "{}", response.member_id);
    check(&c);
}

#[tokio::test(start_paused = true)]
async fn max_group_size_is_enforced() {
    let topics = Topics::with(&[("t", 2)]);
    let config = ConsumerGroupConfig { max_group_size: 2, ..config() };
    let c = ConsumerGroups::new(config, Arc::clone(&topics) as Arc<dyn TopicMetadataSource>);
    let (mut a, _) = Client::join(&c, "a", &["t"]);
    Client::join(&c, "b", &["t"]);
    let error = c.heartbeat(join_req("c", &["t"])).unwrap_err();
    assert_eq!(error, GroupError::GroupMaxSizeReached { max_size: 2 });
    assert_eq!(error.kind(), GroupErrorKind::GroupMaxSizeReached);
    // Existing members keep heartbeating.
    a.heartbeat(&c).unwrap();
}

#[tokio::test(start_paused = true)]
async fn leaving_frees_partitions_and_bumps_the_epoch() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let mut clients = vec![Client::join(&c, "a", &["t"]).0, Client::join(&c, "b", &["t"]).0];
    converge(&c, &mut clients);
    let epoch = group_epoch(&c);
    let response = c.heartbeat(hb_req("a", -1, None)).unwrap();
    assert_eq!((response.member_id.as_str(), response.member_epoch), ("a", -1));
    assert_eq!(group_epoch(&c), epoch + 1);
    assert_eq!(state(&c), ConsumerGroupState::Assigning);
    let mut b = clients.remove(1);
    b.heartbeat(&c).unwrap();
    assert_eq!(b.owned.len(), 4);
    assert_eq!(state(&c), ConsumerGroupState::Stable);
}
