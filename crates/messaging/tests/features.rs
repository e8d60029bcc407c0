//! Core-level tests of the messaging features: properties, queries,
//! filters, delayed messages, pop, retry and DLQ, FIFO, broadcasting.
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{T0, open};
use fjord_broker::TopicPartition;
use fjord_filter::{Filter, FilterKind};
use fjord_messaging::pop::StartFrom;
use fjord_messaging::{
    ConsumeModel, Delivery, Message, MessagingError, OffsetReset, Partitioning, PopRequest, PullRequest,
};

fn msg(topic: &str, body: &str) -> Message {
    Message::new(topic, Bytes::copy_from_slice(body.as_bytes()))
}

fn pull_req(group: &str, tp: TopicPartition, filter: Filter) -> PullRequest {
    PullRequest {
        group: group.into(),
        model: ConsumeModel::Clustering,
        partition: tp,
        offset: None,
        max_messages: 100,
        filter,
        wait: Duration::ZERO,
    }
}

fn bodies(ms: &[fjord_messaging::StoredMessage]) -> Vec<String> {
    ms.iter().map(|m| String::from_utf8_lossy(m.body.as_deref().unwrap_or_default()).into_owned()).collect()
}

#[tokio::test]
async fn properties_ids_and_queries_by_key_id_offset_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("orders", 2).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut m = msg("orders", &format!("o{i}"));
        m.tag = Some(if i % 2 == 0 { "even".into() } else { "odd".into() });
        m.keys = vec![format!("order-{i}"), "all".into()];
        m.properties = vec![("n".into(), i.to_string())];
        env.clock.advance(1000);
        let r = env.m.send(m, Partitioning::Auto).await.unwrap();
        assert_eq!(r.id.len(), 32);
        assert!(r.offset.is_some());
        ids.push(r);
    }
    // By key: exactly the one message, with its properties intact.
    let found = env.m.query_by_key("orders", "order-7", 10).await.unwrap();
    assert_eq!(bodies(&found), vec!["o7"]);
    assert_eq!(found[0].tag.as_deref(), Some("odd"));
    assert_eq!(found[0].property("n"), Some("7"));
    assert_eq!(env.m.query_by_key("orders", "all", 100).await.unwrap().len(), 20);
    assert_eq!(env.m.query_by_key("orders", "all", 5).await.unwrap().len(), 5);
    assert!(env.m.query_by_key("orders", "nope", 10).await.unwrap().is_empty());
    // By id.
    let by_id = env.m.query_by_id("orders", &ids[12].id).await.unwrap();
    assert_eq!(bodies(std::slice::from_ref(&by_id)), vec!["o12"]);
    assert_eq!((by_id.partition, Some(by_id.offset)), (ids[12].partition.partition, ids[12].offset));
    assert!(matches!(
        env.m.query_by_id("orders", "00000000000000000000000000000000").await,
        Err(MessagingError::NotFound(_))
    ));
    // By offset.
    let at = env.m.query_by_offset(&ids[3].partition, ids[3].offset.unwrap()).await.unwrap();
    assert_eq!(at.id.as_deref(), Some(ids[3].id.as_str()));
    // By time: messages 5..=9 were born at T0 + 6000 ..= T0 + 10000.
    let mut range = env.m.query_by_time("orders", T0 + 6000, T0 + 10_000, 100).await.unwrap();
    range.sort_by_key(|m| m.timestamp);
    assert_eq!(bodies(&range), vec!["o5", "o6", "o7", "o8", "o9"]);
    env.close().await;
}

#[tokio::test]
async fn tag_and_sql_filters_run_on_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("f", 1).await;
    for (i, tag) in ["A", "B", "C", "A"].iter().enumerate() {
        let mut m = msg("f", &format!("m{i}"));
        m.tag = Some(tag.to_string());
        m.properties =
            vec![("a".into(), (i * 3).to_string()), ("b".into(), if i < 2 { "x".into() } else { "y".into() })];
        env.m.send(m, Partitioning::Explicit(0)).await.unwrap();
    }
    let mut untagged = msg("f", "m4");
    untagged.properties = vec![("a".into(), "100".into())];
    env.m.send(untagged, Partitioning::Explicit(0)).await.unwrap();
    let tp = TopicPartition::new("f", 0);
    let pull = |f| pull_req("g", tp.clone(), f);
    let tag = |e| Filter::parse(FilterKind::Tag, e).unwrap();
    let sql = |e| Filter::parse(FilterKind::Sql92, e).unwrap();
    let got = env.m.pull(pull(tag("A || C"))).await.unwrap();
    assert_eq!(bodies(&got.messages), vec!["m0", "m2", "m3"]);
    assert_eq!(got.next_offset, 5, "filtered-out messages are passed over");
    assert_eq!(bodies(&env.m.pull(pull(tag("*"))).await.unwrap().messages).len(), 5);
    assert_eq!(bodies(&env.m.pull(pull(sql("a > 6 AND b = 'y'"))).await.unwrap().messages), vec!["m3"]);
    assert_eq!(bodies(&env.m.pull(pull(sql("b IS NULL"))).await.unwrap().messages), vec!["m4"]);
    assert_eq!(bodies(&env.m.pull(pull(sql("a BETWEEN 3 AND 6"))).await.unwrap().messages), vec!["m1", "m2"]);
    assert_eq!(bodies(&env.m.pull(pull(sql("TAGS IN ('B', 'C')"))).await.unwrap().messages), vec!["m1", "m2"]);
    assert!(Filter::parse(FilterKind::Sql92, "a > AND").is_err());
    env.close().await;
}

/// Pulls read about what they want and grow their reads past what a
/// filter skips: the one match after 2,000 skipped messages (more than
/// one maximal read) is found, and the skipped ones are passed over.
#[tokio::test]
async fn pulls_read_past_long_runs_of_skipped_messages() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("skip", 1).await;
    let filler = "x".repeat(150);
    for i in 0..2000 {
        let mut m = msg("skip", &format!("{i}{filler}"));
        m.tag = Some("A".into());
        env.m.send(m, Partitioning::Explicit(0)).await.unwrap();
    }
    let mut wanted = msg("skip", "wanted");
    wanted.tag = Some("B".into());
    env.m.send(wanted, Partitioning::Explicit(0)).await.unwrap();
    let tp = TopicPartition::new("skip", 0);
    let one = |filter| PullRequest { max_messages: 1, offset: Some(0), ..pull_req("g", tp.clone(), filter) };
    let got = env.m.pull(one(Filter::parse(FilterKind::Tag, "B").unwrap())).await.unwrap();
    assert_eq!(bodies(&got.messages), vec!["wanted"]);
    assert_eq!(got.next_offset, 2001);
    let first = env.m.pull(one(Filter::All)).await.unwrap();
    assert_eq!((first.messages.len(), first.next_offset), (1, 1));
    env.close().await;
}

#[tokio::test]
async fn delayed_messages_appear_at_their_time_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("d", 1).await;
    let mut a = msg("d", "level-2");
    a.delivery = Delivery::DelayLevel(2); // 5 s
    let mut b = msg("d", "at+30d");
    b.delivery = Delivery::At(T0 + 30 * 86_400_000);
    let mut c = msg("d", "now");
    c.delivery = Delivery::At(T0 - 1);
    let ra = env.m.send(a, Partitioning::Explicit(0)).await.unwrap();
    assert_eq!((ra.offset, ra.deliver_at), (None, Some(T0 + 5000)));
    env.m.send(b, Partitioning::Explicit(0)).await.unwrap();
    env.m.send(c, Partitioning::Explicit(0)).await.unwrap();
    let tp = TopicPartition::new("d", 0);
    let read = || async { bodies(&env.m.pull(pull_req("g", tp.clone(), Filter::All)).await.unwrap().messages) };
    assert_eq!(read().await, vec!["now"]);
    // Still scheduled: findable by id in the timer.
    let q = env.m.query_by_id("d", &ra.id).await.unwrap();
    assert_eq!(q.deliver_at, Some(T0 + 5000));
    env.clock.advance(4_900);
    env.m.deliver_due().await.unwrap();
    assert_eq!(read().await, vec!["now"], "not before its time");
    env.clock.advance(200);
    env.m.deliver_due().await.unwrap();
    assert_eq!(read().await, vec!["now", "level-2"]);
    assert_eq!(env.m.timer_stats().pending, 1);
    env.clock.advance(30 * 86_400_000);
    env.m.deliver_due().await.unwrap();
    assert_eq!(read().await, vec!["now", "level-2", "at+30d"]);
    assert_eq!(env.m.timer_stats().pending, 0);
    let too_far = Message { delivery: Delivery::At(env.clock_now() + 41 * 86_400_000), ..msg("d", "x") };
    assert!(matches!(env.m.send(too_far, Partitioning::Auto).await, Err(MessagingError::InvalidMessage(_))));
    env.close().await;
}

trait Now {
    fn clock_now(&self) -> i64;
}
impl Now for common::Env {
    fn clock_now(&self) -> i64 {
        fjord_log::Clock::now_ms(&*self.clock)
    }
}

#[tokio::test]
async fn pop_ack_invisibility_redelivery_and_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("p", 1).await;
    for i in 0..5 {
        env.m.send(msg("p", &format!("m{i}")), Partitioning::Auto).await.unwrap();
    }
    let req = |n| PopRequest { invisible: Duration::from_secs(10), ..PopRequest::new("g", "p", n) };
    let first = env.m.pop(req(3)).await.unwrap();
    assert_eq!(bodies(&first.iter().map(|p| p.message.clone()).collect::<Vec<_>>()), vec!["m0", "m1", "m2"]);
    assert!(first.iter().all(|p| p.attempt == 1));
    let rest = env.m.pop(req(10)).await.unwrap();
    assert_eq!(rest.len(), 2, "in-flight messages are invisible");
    let g = ConsumeModel::Clustering;
    // Ack m1; progress stays at m0, the lowest unacked.
    env.m.ack("g", &g, &first[1].receipt).await.unwrap();
    assert!(matches!(env.m.ack("g", &g, &first[1].receipt).await, Err(MessagingError::InvalidReceipt(_))));
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(env.m.committed("g", &g, &TopicPartition::new("p", 0)).await.unwrap(), Some(0));
    // Extend m2, ack the others except m0.
    let m2 = env.m.change_invisibility("g", &g, &first[2].receipt, Duration::from_secs(60)).await.unwrap();
    assert!(env.m.ack("g", &g, &first[2].receipt).await.is_err(), "old receipt is stale");
    for p in &rest {
        env.m.ack("g", &g, &p.receipt).await.unwrap();
    }
    // After 10 s only m0 comes back, attempt 2.
    env.clock.advance(10_000);
    let again = env.m.pop(req(10)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].message.offset, again[0].attempt), (0, 2));
    assert!(env.m.ack("g", &g, &first[0].receipt).await.is_err(), "receipt of the first delivery is stale");
    env.m.ack("g", &g, &m2).await.unwrap();
    env.m.ack("g", &g, &again[0].receipt).await.unwrap();
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(env.m.committed("g", &g, &TopicPartition::new("p", 0)).await.unwrap(), Some(5));

    // A message never acked: redelivered up to max_attempts, then the DLQ.
    let sent = env.m.send(msg("p", "poison"), Partitioning::Auto).await.unwrap();
    let max = env.m.config().max_attempts;
    for attempt in 1..=max {
        let got = env.m.pop(req(10)).await.unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0].attempt, attempt);
        env.clock.advance(10_000);
    }
    assert!(env.m.pop(req(10)).await.unwrap().is_empty(), "out of attempts");
    env.m.pop_maintenance().await.unwrap();
    let dlq = env.m.dlq_list("g", 0, 10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].id.as_deref(), Some(sent.id.as_str()));
    assert_eq!(dlq[0].attempt, max);
    assert_eq!(dlq[0].origin, Some(("p".to_string(), 0, sent.offset)));
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(
        env.m.committed("g", &g, &TopicPartition::new("p", 0)).await.unwrap(),
        Some(6),
        "dead-lettered counts as done"
    );
    // Re-send from the DLQ to the original topic.
    let back = env.m.dlq_resend("g", &sent.id).await.unwrap();
    assert_eq!(back.partition.topic, "p");
    let got = env.m.pop(req(10)).await.unwrap();
    assert_eq!((bodies(&[got[0].message.clone()]), got[0].attempt), (vec!["poison".to_string()], 1));
    env.close().await;
}

#[tokio::test]
async fn batch_ack_reports_stale_receipts_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("ba", 2).await;
    for i in 0..6 {
        env.m.send(msg("ba", &format!("m{i}")), Partitioning::Auto).await.unwrap();
    }
    let g = ConsumeModel::Clustering;
    let got = env.m.pop(PopRequest::new("g", "ba", 6)).await.unwrap();
    assert_eq!(got.len(), 6);
    env.m.ack("g", &g, &got[0].receipt).await.unwrap();
    let mut receipts: Vec<_> = got.iter().map(|p| p.receipt.clone()).collect();
    receipts.push(fjord_messaging::ReceiptHandle("garbage".into()));
    let r = env.m.ack_many("g", &g, &receipts).await.unwrap();
    assert_eq!(r.iter().map(Result::is_ok).collect::<Vec<_>>(), vec![false, true, true, true, true, true, false]);
    env.m.pop_maintenance().await.unwrap();
    for p in 0..2 {
        assert_eq!(env.m.committed("g", &g, &TopicPartition::new("ba", p)).await.unwrap(), Some(3));
    }
    env.close().await;
}

#[tokio::test]
async fn a_group_can_set_its_own_max_attempts_durably() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("ma", 1).await;
    let s = fjord_messaging::GroupSettings { max_attempts: 2, fifo: false };
    assert!(
        env.m
            .set_group_settings("g", Some(fjord_messaging::GroupSettings { max_attempts: 0, fifo: false }))
            .await
            .is_err()
    );
    env.m.set_group_settings("g", Some(s)).await.unwrap();
    let clock = env.clock.clone();
    env.close().await;
    let env = common::open_at(dir.path(), clock, fjord_messaging::MessagingConfig::default()).await;
    assert_eq!(env.m.group_settings("g"), Some(s));
    assert_eq!(env.m.max_attempts("g"), 2);
    assert_eq!(env.m.max_attempts("other"), 16);
    env.m.send(msg("ma", "x"), Partitioning::Auto).await.unwrap();
    let req = || PopRequest { invisible: Duration::from_secs(1), ..PopRequest::new("g", "ma", 1) };
    for attempt in 1..=2 {
        assert_eq!(env.m.pop(req()).await.unwrap()[0].attempt, attempt);
        env.clock.advance(1_000);
    }
    assert!(env.m.pop(req()).await.unwrap().is_empty());
    env.m.pop_maintenance().await.unwrap();
    assert_eq!(env.m.dlq_list("g", 0, 10).await.unwrap()[0].attempt, 2);
    // consume_failed uses the group's setting too.
    let m = env.m.query_by_offset(&TopicPartition::new("ma", 0), 0).await.unwrap();
    let r = env.m.consume_failed("g", &fjord_messaging::StoredMessage { attempt: 1, ..m }, None).await.unwrap();
    assert_eq!(r.partition.topic, "%DLQ%g");
    env.close().await;
}

#[tokio::test]
async fn group_settings_of_an_earlier_version_are_moved_into_the_brokers_group_configs() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("messaging/groups.json");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, r#"{"a": {"max_attempts": 3}, "b": {"max_attempts": 5, "fifo": true}}"#).unwrap();
    let env = open(dir.path()).await;
    assert!(!old.exists(), "moved, not kept beside");
    assert_eq!(env.m.max_attempts("a"), 3);
    assert_eq!(env.m.group_settings("b"), Some(fjord_messaging::GroupSettings { max_attempts: 5, fifo: true }));
    assert_eq!(env.broker.group_setting("b", fjord_messaging::groups::FIFO).as_deref(), Some("true"));
    assert_eq!(env.m.configured_groups(), ["a", "b"]);
    // Removing a group's settings keeps its other configs.
    let mut cfg = env.broker.group_config("a").unwrap();
    cfg.insert("other".into(), "x".into());
    env.broker.set_group_config("a", cfg).await.unwrap();
    env.m.set_group_settings("a", None).await.unwrap();
    assert_eq!(env.m.group_settings("a"), None);
    assert_eq!(env.broker.group_setting("a", "other").as_deref(), Some("x"));
    env.close().await;
}

#[tokio::test]
async fn nack_backs_off_by_the_retry_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("n", 1).await;
    env.m.send(msg("n", "x"), Partitioning::Auto).await.unwrap();
    let g = ConsumeModel::Clustering;
    let got = env.m.pop(PopRequest::new("g", "n", 1)).await.unwrap();
    env.m.nack("g", &g, &got[0].receipt, got[0].attempt).await.unwrap();
    env.clock.advance(9_900);
    assert!(env.m.pop(PopRequest::new("g", "n", 1)).await.unwrap().is_empty(), "10 s back-off after attempt 1");
    env.clock.advance(200);
    let got = env.m.pop(PopRequest::new("g", "n", 1)).await.unwrap();
    assert_eq!(got[0].attempt, 2);
    env.m.nack("g", &g, &got[0].receipt, got[0].attempt).await.unwrap();
    env.clock.advance(29_000);
    assert!(env.m.pop(PopRequest::new("g", "n", 1)).await.unwrap().is_empty(), "30 s back-off after attempt 2");
    env.clock.advance(1_100);
    assert_eq!(env.m.pop(PopRequest::new("g", "n", 1)).await.unwrap()[0].attempt, 3);
    env.close().await;
}

#[tokio::test]
async fn consume_failed_goes_through_the_retry_topic_then_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("r", 1).await;
    let sent = env.m.send(Message { keys: vec!["k".into()], ..msg("r", "work") }, Partitioning::Auto).await.unwrap();
    let tp = TopicPartition::new("r", 0);
    let mut m = env.m.pull(pull_req("g", tp, Filter::All)).await.unwrap().messages.remove(0);
    let retry_tp = TopicPartition::new("%RETRY%g", 0);
    for attempt in 1..3u32 {
        let r = env.m.consume_failed("g", &m, Some(3)).await.unwrap();
        assert_eq!(r.partition.topic, "%RETRY%g");
        assert_eq!(env.m.deliver_due().await.unwrap(), 0, "not before the back-off");
        env.clock.advance(env.m.config().backoff(attempt).as_millis() as i64);
        assert_eq!(env.m.deliver_due().await.unwrap(), 1);
        let got = env
            .m
            .pull(PullRequest { offset: Some(u64::from(attempt) - 1), ..pull_req("g", retry_tp.clone(), Filter::All) })
            .await
            .unwrap();
        m = got.messages[0].clone();
        assert_eq!((m.attempt, m.id.as_deref()), (attempt, Some(sent.id.as_str())));
        assert_eq!(m.origin, Some(("r".to_string(), 0, Some(0))));
        assert_eq!(m.keys, vec!["k"]);
    }
    let r = env.m.consume_failed("g", &m, Some(3)).await.unwrap();
    assert_eq!(r.partition.topic, "%DLQ%g");
    let dlq = env.m.dlq_list("g", 0, 10).await.unwrap();
    assert_eq!((dlq[0].attempt, dlq[0].origin.clone()), (3, Some(("r".to_string(), 0, Some(0)))));
    env.close().await;
}

#[tokio::test]
async fn fifo_holds_back_a_busy_group_and_lets_others_go() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("fifo", 4).await;
    // Two groups interleaved; all land on their group's partition.
    let mut parts = std::collections::HashSet::new();
    for i in 0..6 {
        let g = if i % 2 == 0 { "A" } else { "B" };
        let r = env
            .m
            .send(Message { group: Some(g.into()), ..msg("fifo", &format!("{g}{i}")) }, Partitioning::Auto)
            .await
            .unwrap();
        parts.insert((g, r.partition.partition));
    }
    assert_eq!(parts.len(), 2, "one partition per message group");
    // Force both groups into one partition to test hold-back there.
    for i in 0..6 {
        let g = if i % 2 == 0 { "A" } else { "B" };
        env.m
            .send(Message { group: Some(g.into()), ..msg("one", &format!("{g}{i}")) }, Partitioning::Explicit(0))
            .await
            .unwrap();
    }
    let req = || PopRequest {
        fifo: true,
        partition: Some(0),
        invisible: Duration::from_secs(5),
        ..PopRequest::new("g", "one", 10)
    };
    let c = ConsumeModel::Clustering;
    let got = env.m.pop(req()).await.unwrap();
    assert_eq!(bodies(&got.iter().map(|p| p.message.clone()).collect::<Vec<_>>()), vec!["A0", "B1"], "one per group");
    assert!(env.m.pop(req()).await.unwrap().is_empty(), "both groups busy");
    env.m.ack("g", &c, &got[1].receipt).await.unwrap(); // B1 done
    let got2 = env.m.pop(req()).await.unwrap();
    assert_eq!(bodies(&got2.iter().map(|p| p.message.clone()).collect::<Vec<_>>()), vec!["B3"], "B goes on, A waits");
    // A0 times out: it is redelivered before anything later of A.
    env.clock.advance(5_000);
    let got3 = env.m.pop(req()).await.unwrap();
    let names: Vec<_> = got3.iter().map(|p| (bodies(std::slice::from_ref(&p.message))[0].clone(), p.attempt)).collect();
    assert!(names.contains(&("A0".to_string(), 2)), "{names:?}");
    assert!(!names.iter().any(|(n, _)| n == "A2"), "A2 must wait for A0: {names:?}");
    for p in &got3 {
        env.m.ack("g", &c, &p.receipt).await.unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..10 {
        let got = env.m.pop(req()).await.unwrap();
        if got.is_empty() {
            break;
        }
        for p in got {
            order.push(bodies(std::slice::from_ref(&p.message))[0].clone());
            env.m.ack("g", &c, &p.receipt).await.unwrap();
        }
    }
    assert_eq!(order.iter().filter(|n| n.starts_with('A')).cloned().collect::<Vec<_>>(), vec!["A2", "A4"]);
    env.close().await;
}

#[tokio::test]
async fn broadcasting_instances_keep_their_own_progress_and_resets_move_it() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("b", 1).await;
    for i in 0..4 {
        env.clock.advance(1000);
        env.m.send(msg("b", &format!("m{i}")), Partitioning::Auto).await.unwrap();
    }
    let tp = TopicPartition::new("b", 0);
    let inst = |i: &str| ConsumeModel::Broadcasting { instance: i.into() };
    for who in ["x", "y"] {
        let got = env.m.pull(PullRequest { model: inst(who), ..pull_req("g", tp.clone(), Filter::All) }).await.unwrap();
        assert_eq!(got.messages.len(), 4, "every instance gets every message");
    }
    env.m.commit("g", &inst("x"), &tp, 4).await.unwrap();
    env.m.commit("g", &inst("y"), &tp, 1).await.unwrap();
    assert_eq!(env.m.committed("g", &inst("x"), &tp).await.unwrap(), Some(4));
    assert_eq!(env.m.committed("g", &inst("y"), &tp).await.unwrap(), Some(1));
    assert_eq!(env.m.committed("g", &ConsumeModel::Clustering, &tp).await.unwrap(), None);
    // Pop in broadcasting mode: both instances get the same message.
    let px = env
        .m
        .pop(PopRequest { model: inst("x"), start: StartFrom::Earliest, ..PopRequest::new("h", "b", 1) })
        .await
        .unwrap();
    let py = env.m.pop(PopRequest { model: inst("y"), ..PopRequest::new("h", "b", 1) }).await.unwrap();
    assert_eq!((px[0].message.offset, py[0].message.offset), (0, 0));
    // Resets.
    let c = ConsumeModel::Clustering;
    assert_eq!(env.m.reset_offsets("g", &c, "b", OffsetReset::Latest).await.unwrap(), vec![(0, 4)]);
    assert_eq!(env.m.reset_offsets("g", &c, "b", OffsetReset::Earliest).await.unwrap(), vec![(0, 0)]);
    assert_eq!(env.m.reset_offsets("g", &c, "b", OffsetReset::Offset(2)).await.unwrap(), vec![(0, 2)]);
    assert_eq!(env.m.reset_offsets("g", &c, "b", OffsetReset::Timestamp(T0 + 2500)).await.unwrap(), vec![(0, 2)]);
    assert_eq!(env.m.committed("g", &c, &tp).await.unwrap(), Some(2));
    // A reset moves pop queues too: in-flight messages are dropped.
    env.m.reset_offsets("h", &inst("x"), "b", OffsetReset::Offset(3)).await.unwrap();
    let px = env.m.pop(PopRequest { model: inst("x"), ..PopRequest::new("h", "b", 10) }).await.unwrap();
    assert_eq!(px.iter().map(|p| p.message.offset).collect::<Vec<_>>(), vec![3]);
    env.close().await;
}

#[tokio::test]
async fn ordered_partition_locks_are_exclusive_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    let tps: Vec<_> = (0..2).map(|p| TopicPartition::new("o", p)).collect();
    assert_eq!(env.m.lock_partitions("g", "c1", &tps), tps);
    assert!(env.m.lock_partitions("g", "c2", &tps).is_empty(), "held by c1");
    assert_eq!(env.m.lock_partitions("other", "c2", &tps), tps, "other groups are independent");
    env.clock.advance(59_000);
    assert_eq!(env.m.lock_partitions("g", "c1", &tps[..1]), tps[..1].to_vec(), "renewed");
    env.clock.advance(1_500);
    // tps[1] was not renewed: c1 is presumed dead for it.
    assert_eq!(env.m.lock_partitions("g", "c2", &tps), tps[1..].to_vec());
    assert_eq!(env.m.lock_holder("g", &tps[0]).as_deref(), Some("c1"));
    env.m.unlock_partitions("g", "c1", &tps);
    assert_eq!(env.m.lock_holder("g", &tps[0]), None);
    env.close().await;
}

#[tokio::test]
async fn queries_need_the_key_index_and_topics_can_turn_it_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = fjord_broker::BrokerConfig::new(dir.path());
    c.log_defaults.key_index =
        fjord_log::KeyIndexConfig { enabled: false, header_keys: fjord_messaging::message::indexed_headers() };
    let clock = std::sync::Arc::new(fjord_log::ManualClock::new(T0));
    let broker = fjord_broker::Broker::open(c, clock).await.unwrap();
    let m = fjord_messaging::Messaging::open(broker.clone(), Default::default()).await.unwrap();
    broker.create_topic("plain", 1, Default::default()).await.unwrap();
    let keyed = fjord_broker::TopicConfig::from_entries([("fjord.key.index", "true")]).unwrap();
    broker.create_topic("keyed", 1, keyed).await.unwrap();
    for t in ["plain", "keyed"] {
        m.send(Message { keys: vec!["k1".into()], ..msg(t, "x") }, Partitioning::Auto).await.unwrap();
    }
    let err = m.query_by_key("plain", "k1", 10).await.unwrap_err();
    assert!(err.to_string().contains("key index is disabled"), "{err}");
    assert_eq!(m.query_by_key("keyed", "k1", 10).await.unwrap().len(), 1);
    assert!(fjord_broker::TopicConfig::from_entries([("fjord.key.index", "yes")]).is_err());
    m.shutdown().await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn half_messages_commit_rollback_check_back_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(dir.path()).await;
    env.topic("tx", 1).await;
    let tp = TopicPartition::new("tx", 0);
    let read = |env: &common::Env| {
        let (m, tp) = (env.m.clone(), tp.clone());
        async move {
            m.deliver_due().await.unwrap();
            bodies(&m.pull(pull_req("g", tp, Filter::All)).await.unwrap().messages)
        }
    };
    let a = env.m.send_half(msg("tx", "commit-me"), Partitioning::Auto, "pg").await.unwrap();
    let b = env.m.send_half(msg("tx", "roll-me-back"), Partitioning::Auto, "pg").await.unwrap();
    let c = env.m.send_half(msg("tx", "forgotten"), Partitioning::Auto, "pg").await.unwrap();
    let d = env.m.send_half(msg("tx", "after-restart"), Partitioning::Auto, "pg").await.unwrap();
    assert!(read(&env).await.is_empty(), "half messages are invisible");
    env.clock.advance(6_000);
    // Check-backs, claimed by a gateway for the producer groups it can ask.
    let claim = |groups: &[&str]| fjord_messaging::CheckClaim {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        topics: vec![],
        first_after_ms: 5_000,
        interval_ms: 60_000,
        max_checks: 3,
        max: 10,
    };
    let handles = |txs: &[fjord_messaging::OpenTransaction]| {
        let mut h: Vec<u64> = txs.iter().map(|t| t.handle).collect();
        h.sort();
        h
    };
    let sorted = |mut v: Vec<u64>| {
        v.sort();
        v
    };
    assert!(env.m.claim_checks(&claim(&["other"])).await.unwrap().is_empty(), "only the groups asked for");
    let first = env.m.claim_checks(&claim(&["pg"])).await.unwrap();
    assert_eq!(handles(&first), sorted(vec![a.handle, b.handle, c.handle, d.handle]));
    let of_a = first.iter().find(|t| t.handle == a.handle).unwrap();
    assert_eq!((of_a.producer_group.as_str(), of_a.message.id.as_deref(), of_a.checks), ("pg", Some(a.id.as_str()), 0));
    env.m.end_transaction(a.handle, fjord_messaging::TxOutcome::Commit).await.unwrap();
    env.m.end_transaction(b.handle, fjord_messaging::TxOutcome::Rollback).await.unwrap();
    assert!(env.m.end_transaction(a.handle, fjord_messaging::TxOutcome::Rollback).await.is_err(), "decided once");
    assert_eq!(read(&env).await, vec!["commit-me"]);
    let visible = env.m.query_by_id("tx", &a.id).await.unwrap();
    assert_eq!(visible.body.as_deref(), Some(&b"commit-me"[..]));
    // A checked transaction is due again only after the interval.
    assert!(env.m.claim_checks(&claim(&["pg"])).await.unwrap().is_empty(), "checked just now");
    env.clock.advance(60_000);
    let second = env.m.claim_checks(&claim(&["pg"])).await.unwrap();
    assert_eq!(handles(&second), sorted(vec![c.handle, d.handle]));
    assert!(second.iter().all(|t| t.checks == 1), "{second:?}");
    // Restart: c and d are still open, with their checks and when they
    // were made; committing d works, and c's third check rolls it back.
    let clock = env.clock.clone();
    env.close().await;
    let env = common::open_at(dir.path(), clock, fjord_messaging::MessagingConfig::default()).await;
    assert_eq!(env.m.timer_stats().open_transactions, 2);
    assert!(env.m.claim_checks(&claim(&["pg"])).await.unwrap().is_empty(), "checked just before the restart");
    env.m.end_transaction(d.handle, fjord_messaging::TxOutcome::Commit).await.unwrap();
    env.clock.advance(60_000);
    assert!(env.m.claim_checks(&claim(&["pg"])).await.unwrap().is_empty(), "rolled back at its third check");
    assert!(env.m.end_transaction(c.handle, fjord_messaging::TxOutcome::Commit).await.is_err(), "no longer open");
    assert_eq!(env.m.timer_stats().open_transactions, 0);
    assert_eq!(read(&env).await, vec!["commit-me", "after-restart"]);
    env.close().await;
}
