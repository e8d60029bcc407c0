//! Static membership: temporary leave (-2), restart with the same instance id, fencing.

use super::*;

fn static_leave(c: &ConsumerGroups, client: &Client) -> Result<ConsumerHeartbeatResponse, GroupError> {
    c.heartbeat(ConsumerHeartbeat { instance_id: client.instance_id.clone(), ..hb_req(&client.member_id, -2, None) })
}

#[tokio::test(start_paused = true)]
async fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let mut clients = vec![Client::join_static(&c, "a1", "instance-a", &["t"]).0, Client::join(&c, "b", &["t"]).0];
    converge(&c, &mut clients);
    let before = clients[0].owned.clone();
    assert_eq!(before.len(), 2);
    let epoch = group_epoch(&c);

    let response = static_leave(&c, &clients[0]).unwrap();
    assert_eq!((response.member_id.as_str(), response.member_epoch), ("a1", -2));
    assert_eq!(group_epoch(&c), epoch, "a temporary leave does not rebalance");
    // B keeps its share only: A's partitions stay reserved.
    clients[1].heartbeat(&c).unwrap();
    assert_eq!(clients[1].owned.len(), 2);

    // The restarted instance comes back under a new member id.
    advance(Duration::from_secs(10)).await;
    let (a2, response) = Client::join_static(&c, "a2", "instance-a", &["t"]);
    assert_eq!(a2.owned, before);
    assert_eq!(response.member_epoch, epoch);
    assert_eq!(group_epoch(&c), epoch);
    assert_eq!(state(&c), ConsumerGroupState::Stable);
    let described = c.describe(&[GROUP.to_owned()]).remove(0).unwrap();
    let ids: Vec<&str> = described.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(ids, ["a2", "b"]);
    assert_eq!(described.members[0].instance_id.as_deref(), Some("instance-a"));

    // The old member id is fenced by the new one.
    let old = ConsumerHeartbeat { instance_id: Some("instance-a".to_owned()), ..hb_req("a1", epoch, None) };
    assert_eq!(c.heartbeat(old).unwrap_err().kind(), GroupErrorKind::FencedInstanceId);
    // Another process cannot take an instance id that is in use.
    let thief = ConsumerHeartbeat { instance_id: Some("instance-a".to_owned()), ..join_req("a3", &["t"]) };
    let error = c.heartbeat(thief).unwrap_err();
    assert_eq!(error, GroupError::UnreleasedInstanceId { group_instance_id: "instance-a".to_owned() });
    assert_eq!(error.kind(), GroupErrorKind::UnreleasedInstanceId);
    // Only the holder may leave for the instance.
    let wrong = ConsumerHeartbeat { instance_id: Some("instance-a".to_owned()), ..hb_req("a1", -2, None) };
    assert_eq!(c.heartbeat(wrong).unwrap_err().kind(), GroupErrorKind::FencedInstanceId);
    let unknown = ConsumerHeartbeat { instance_id: Some("nope".to_owned()), ..hb_req("a1", -2, None) };
    assert_eq!(c.heartbeat(unknown).unwrap_err().kind(), GroupErrorKind::UnknownMemberId);
    check(&c);
}

#[tokio::test(start_paused = true)]
async fn a_static_member_that_does_not_return_is_removed_after_its_session() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let mut clients = vec![Client::join_static(&c, "a1", "instance-a", &["t"]).0, Client::join(&c, "b", &["t"]).0];
    converge(&c, &mut clients);
    static_leave(&c, &clients[0]).unwrap();
    let mut b = clients.remove(1);
    let mut elapsed = Duration::ZERO;
    while elapsed <= SESSION {
        advance(HEARTBEAT).await;
        elapsed += HEARTBEAT;
        b.heartbeat(&c).unwrap();
    }
    b.heartbeat(&c).unwrap();
    assert_eq!(b.owned.len(), 4);
    assert_eq!(c.inspect(GROUP, |g| g.static_members.len()), Some(0));
    // The instance id is free again: a new member joins as a new static member.
    let (a3, _) = Client::join_static(&c, "a3", "instance-a", &["t"]);
    assert!(a3.owned.is_empty(), "B still owns everything until it revokes");
}

#[tokio::test(start_paused = true)]
async fn a_static_member_leaving_for_good_triggers_a_rebalance() {
    let topics = Topics::with(&[("t", 2)]);
    let c = coordinator(&topics);
    let mut clients = vec![Client::join_static(&c, "a1", "instance-a", &["t"]).0, Client::join(&c, "b", &["t"]).0];
    converge(&c, &mut clients);
    let epoch = group_epoch(&c);
    let leave = ConsumerHeartbeat { instance_id: Some("instance-a".to_owned()), ..hb_req("a1", -1, None) };
    assert_eq!(c.heartbeat(leave).unwrap().member_epoch, -1);
    assert_eq!(group_epoch(&c), epoch + 1);
    clients[1].heartbeat(&c).unwrap();
    assert_eq!(clients[1].owned.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_static_leave_releases_partitions_pending_revocation() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let (a, _) = Client::join_static(&c, "a1", "instance-a", &["t"]);
    let (mut b, _) = Client::join(&c, "b", &["t"]);
    // A is asked to revoke two partitions, then shuts down before confirming.
    let response = c.heartbeat(a.request()).unwrap();
    assert_eq!(response.assignment.map(|x| flatten(&x).len()), Some(2));
    static_leave(&c, &a).unwrap();
    check(&c);
    b.heartbeat(&c).unwrap();
    assert_eq!(b.owned.len(), 2);
    // And the returning instance resumes with the two it kept.
    let (a2, _) = Client::join_static(&c, "a2", "instance-a", &["t"]);
    assert_eq!(a2.owned.len(), 2);
    assert_disjoint(&[a2, b]);
}
