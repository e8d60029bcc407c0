//! Session and rebalance timeouts, timer hygiene and shutdown.

use super::*;

/// Heartbeats `client` every heartbeat interval for `total`.
async fn keep_alive(c: &ConsumerGroups, client: &mut Client, total: Duration) {
    let mut elapsed = Duration::ZERO;
    while elapsed < total {
        advance(HEARTBEAT).await;
        elapsed += HEARTBEAT;
        client.heartbeat(c).expect("keep-alive heartbeat");
    }
}

#[tokio::test(start_paused = true)]
async fn session_expiry_frees_partitions() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let mut clients = vec![Client::join(&c, "a", &["t"]).0, Client::join(&c, "b", &["t"]).0];
    converge(&c, &mut clients);
    let epoch = group_epoch(&c);
    let mut b = clients.remove(1);

    // Only B heartbeats; A's session runs out after 45 s.
    keep_alive(&c, &mut b, SESSION - HEARTBEAT).await;
    assert_eq!(c.inspect(GROUP, |g| g.members.len()), Some(2));
    keep_alive(&c, &mut b, HEARTBEAT * 2).await;
    assert_eq!(c.inspect(GROUP, |g| g.members.len()), Some(1));
    check(&c);
    assert!(group_epoch(&c) > epoch);
    b.heartbeat(&c).unwrap();
    assert_eq!(b.owned.len(), 4);
    assert_eq!(state(&c), ConsumerGroupState::Stable);
    assert_eq!(c.heartbeat(clients[0].request()).unwrap_err().kind(), GroupErrorKind::UnknownMemberId);

    // The last member expiring leaves an Empty group behind.
    advance(SESSION).await;
    assert_eq!(state(&c), ConsumerGroupState::Empty);
    assert_eq!(c.scheduled_timers(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_groups_own_timeouts_override_the_coordinators() {
    let topics = Topics::with(&[("t", 2)]);
    topics.set_group_setting(GROUP, super::super::SESSION_TIMEOUT_CONFIG, &(SESSION * 2).as_millis().to_string());
    topics.set_group_setting(GROUP, super::super::HEARTBEAT_INTERVAL_CONFIG, "7000");
    // Another group, and nonsense values, keep the coordinator's.
    topics.set_group_setting("other", super::super::HEARTBEAT_INTERVAL_CONFIG, "not-a-number");
    let c = coordinator(&topics);
    let (a, response) = Client::join(&c, "a", &["t"]);
    assert_eq!(response.heartbeat_interval, Duration::from_millis(7000));
    let other = ConsumerHeartbeat { group_id: "other".into(), ..join_req("x", &["t"]) };
    assert_eq!(c.heartbeat(other).unwrap().heartbeat_interval, HEARTBEAT);

    // A silent member outlives the coordinator's session timeout, not its group's.
    drop(a);
    advance(SESSION + HEARTBEAT).await;
    assert_eq!(c.inspect(GROUP, |g| g.members.len()), Some(1));
    advance(SESSION).await;
    assert_eq!(c.inspect(GROUP, |g| g.members.len()), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let (a, _) = Client::join(&c, "a", &["t"]);
    let (mut b, _) = Client::join(&c, "b", &["t"]);

    // A is told to revoke but keeps reporting every partition (stuck in its callback).
    let stubborn = a.request();
    let response = c.heartbeat(stubborn.clone()).unwrap();
    assert_eq!(response.member_epoch, 1);
    assert_eq!(response.assignment.as_ref().map(|a| flatten(a).len()), Some(2));
    let mut elapsed = Duration::ZERO;
    while elapsed + HEARTBEAT < REBALANCE {
        advance(HEARTBEAT).await;
        elapsed += HEARTBEAT;
        c.heartbeat(stubborn.clone()).expect("still a member");
        b.heartbeat(&c).unwrap();
        assert!(b.owned.is_empty(), "partitions must not move before A revoked them");
    }
    advance(REBALANCE - elapsed).await;
    // Fenced: A is gone, B gets everything.
    assert_eq!(c.heartbeat(stubborn).unwrap_err().kind(), GroupErrorKind::UnknownMemberId);
    b.heartbeat(&c).unwrap();
    assert_eq!(b.owned.len(), 4);
    check(&c);
}

#[tokio::test(start_paused = true)]
async fn revoking_in_time_cancels_the_rebalance_timeout() {
    let topics = Topics::with(&[("t", 4)]);
    let c = coordinator(&topics);
    let (mut a, _) = Client::join(&c, "a", &["t"]);
    let (mut b, _) = Client::join(&c, "b", &["t"]);
    a.heartbeat(&c).unwrap();
    // Session timers for both plus A's rebalance timeout.
    assert_eq!(c.scheduled_timers(), 3);
    a.heartbeat(&c).unwrap();
    assert_eq!(c.scheduled_timers(), 2);
    b.heartbeat(&c).unwrap();
    advance(REBALANCE + HEARTBEAT).await;
    a.heartbeat(&c).unwrap();
    b.heartbeat(&c).unwrap();
    assert_eq!((a.owned.len(), b.owned.len()), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn timers_do_not_leak_and_shutdown_stops_everything() {
    let topics = Topics::with(&[("t", 3)]);
    let c = coordinator(&topics);
    let mut clients = vec![Client::join(&c, "a", &["t"]).0, Client::join(&c, "b", &["t"]).0];
    for _ in 0..10 {
        for client in &mut clients {
            client.heartbeat(&c).unwrap();
        }
    }
    assert_eq!(c.scheduled_timers(), 2);
    c.heartbeat(hb_req("a", -1, None)).unwrap();
    assert_eq!(c.scheduled_timers(), 1);

    c.shutdown();
    settle().await;
    assert!(c.timer_task_finished());
    assert_eq!(c.scheduled_timers(), 0);
    assert_eq!(clients[1].heartbeat(&c).unwrap_err(), GroupError::CoordinatorNotAvailable);
    assert_eq!(
        c.describe(&[GROUP.to_owned()])[0].as_ref().unwrap_err().kind(),
        GroupErrorKind::CoordinatorNotAvailable
    );
    assert_eq!(c.validate_commit(GROUP, "b", 1).unwrap_err().kind(), GroupErrorKind::CoordinatorNotAvailable);
    assert!(c.list().is_empty());
    c.shutdown();
}
