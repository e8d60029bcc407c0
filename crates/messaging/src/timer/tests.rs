//! Crash windows of a delivery, cut at each step: nothing is lost and
//! nothing is delivered twice; trimming; the move from an earlier
//! version's node-local timer.

use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::{Broker, BrokerConfig, TopicConfig, TopicPartition};
use fjord_log::ManualClock;

use super::shard::{Begun, Shard};
use crate::message::{Delivery, Message, headers};
use crate::send::Partitioning;
use crate::{Messaging, MessagingConfig};

const T0: i64 = 1_700_000_000_000;

async fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Arc<Messaging> {
    let b = Broker::open(BrokerConfig::new(dir), clock).await.expect("broker");
    if b.topic("d").is_none() {
        b.create_topic("d", 1, TopicConfig::default()).await.expect("topic");
    }
    Messaging::open(b, MessagingConfig::default()).await.expect("messaging")
}

fn ids_in(m: &Messaging) -> Vec<String> {
    let p = m.broker.partition(&TopicPartition::new("d", 0)).expect("partition");
    let recs = p.read_appended(0, 1 << 24).expect("read");
    recs.iter().map(|r| crate::message::StoredMessage::from_record("d", 0, r).id.expect("id")).collect()
}

async fn schedule(m: &Messaging, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let msg = Message { delivery: Delivery::At(T0 + 1000), ..Message::new("d", Bytes::from(format!("m{i}"))) };
        ids.push(m.send(msg, Partitioning::Auto).await.expect("send").id);
    }
    ids
}

/// Takes every shard's due entries and writes their intents: a delivery
/// cut after its first step.
async fn begin_all(m: &Messaging) -> Vec<(Arc<Shard>, Begun)> {
    let mut out = Vec::new();
    for s in m.timer.serving() {
        let mut due = Vec::new();
        s.wheel.lock().advance(m.broker.clock().now_ms(), &mut due);
        let due = due.into_iter().map(|(at, o)| (o, at)).collect();
        if let Some(b) = s.begin(m, due).await.expect("begin") {
            out.push((s, b));
        }
    }
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Cut after the intent (nothing appended): everything is delivered after
/// the restart, once.
#[tokio::test]
async fn crash_after_the_intent_delivers_after_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    let ids = schedule(&m, 5).await;
    assert!(m.timer.serving().len() > 1, "spread over the shards");
    clock.advance(1000);
    let begun = begin_all(&m).await;
    let taken: usize = begun.iter().flat_map(|(_, b)| &b.targets).map(|(t, _)| t.offsets.len()).sum();
    assert_eq!(taken, 5);
    drop(begun);
    drop(m); // crash: no done records
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.timer_stats().pending, 5);
    m.deliver_due().await.expect("deliver");
    assert_eq!(sorted(ids_in(&m)), sorted(ids));
    assert_eq!(m.timer_stats().pending, 0);
}

/// Cut after the append (no done record): the restart finds the copies by
/// their timer reference and does not deliver them again.
#[tokio::test]
async fn crash_after_the_append_does_not_deliver_twice() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    let ids = schedule(&m, 7).await;
    clock.advance(1000);
    let mut delivered = 0;
    for (s, b) in begin_all(&m).await {
        let (d, retry) = s.append_targets(&m, b.targets).await;
        assert!(retry.is_empty());
        delivered += d.len();
    }
    assert_eq!(delivered, 7);
    drop(m);
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.deliver_due().await.expect("deliver"), 0, "resolved as delivered");
    assert_eq!(m.timer_stats().pending, 0);
    clock.advance(60_000);
    m.deliver_due().await.expect("deliver");
    assert_eq!(ids_in(&m).len(), 7);
    // And the resolution is recorded: a second restart agrees.
    drop(m);
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.timer_stats().pending, 0);
    m.deliver_due().await.expect("deliver");
    assert_eq!(sorted(ids_in(&m)), sorted(ids));
    let p = m.broker.partition(&TopicPartition::new("d", 0)).expect("p");
    let recs = p.read_appended(0, 1 << 20).expect("read");
    assert!(recs.iter().all(|r| r.headers.iter().any(|h| h.key.as_ref() == headers::TIMER_REF.as_bytes())));
}

/// Trimming moves each shard's start to its oldest pending entry; a
/// restart then rebuilds the same pending set from what is left.
#[tokio::test]
async fn trimmed_shards_keep_what_is_pending() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    schedule(&m, 10).await;
    for i in 0..3 {
        let msg =
            Message { delivery: Delivery::At(T0 + 3_600_000), ..Message::new("d", Bytes::from(format!("late{i}"))) };
        m.send(msg, Partitioning::Auto).await.expect("send");
    }
    clock.advance(1000);
    assert_eq!(m.deliver_due().await.expect("deliver"), 10);
    for s in m.timer.serving() {
        s.trim(&m).await.expect("trim");
        let oldest = s.wheel.lock().iter().map(|(_, o)| *o).min();
        // Everything before the oldest pending entry (or everything) went.
        assert_eq!(s.partition.log_start_offset(), oldest.unwrap_or(s.partition.log_end_offset()), "{}", s.tp);
    }
    drop(m);
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.timer_stats().pending, 3);
    assert_eq!(m.deliver_due().await.expect("deliver"), 0);
    assert_eq!(ids_in(&m).len(), 10);
    clock.advance(3_600_000);
    assert_eq!(m.deliver_due().await.expect("deliver"), 3);
    assert_eq!(ids_in(&m).len(), 13);
}

/// An earlier version's node-local timer (`messaging/timer`) is moved
/// onto the shards at open, once, and then deleted.
#[tokio::test]
async fn an_earlier_versions_timer_moves_onto_the_shards() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    let legacy = m.dir().join("timer");
    let mut ids = Vec::new();
    {
        let log = crate::journal::Journal::open(
            &legacy.join("schedule"),
            "old timer log",
            &m.broker.config().log_defaults,
            fjord_log::Durability::EveryWrite,
            clock.clone(),
        )
        .expect("old log");
        for i in 0..4 {
            let msg = Message::new("d", Bytes::from(format!("old{i}")));
            let id = format!("old-{i}");
            let at = T0 + 500 + i;
            let o = log.append(&m.timer_record(&msg, &id, at, 0, &[]), T0).expect("append");
            log.sync(o).expect("sync");
            ids.push(id);
        }
        log.close().expect("close");
    }
    m.shutdown().await.expect("shutdown");
    m.broker().shutdown().await.expect("broker shutdown");
    drop(m);
    let m = open(dir.path(), clock.clone()).await;
    assert!(!legacy.exists(), "the old timer is gone");
    assert_eq!(m.timer_stats().pending, 4);
    clock.advance(1000);
    assert_eq!(m.deliver_due().await.expect("deliver"), 4);
    assert_eq!(sorted(ids_in(&m)), sorted(ids));
    // Moved once: a restart finds nothing more to move or deliver.
    drop(m);
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.timer_stats().pending, 0);
}

/// The timer topic indexes exactly the headers the messaging layer looks
/// records up by (the broker names them in its config).
#[test]
fn the_timer_topic_indexes_the_messaging_headers() {
    let config = fjord_broker::offsets::timer_topic_config();
    let names: Vec<Vec<u8>> = config.0["fjord.key.index.headers"].split(',').map(|h| h.as_bytes().to_vec()).collect();
    assert_eq!(names, crate::message::indexed_headers());
}

/// A send dropped while its schedule waits for the commit (its client went
/// away) still leaves the message filed: it is delivered at its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_whose_caller_went_away_is_still_filed() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    let shards_end = |m: &Messaging| -> u64 { m.timer.serving().iter().map(|s| s.partition.log_end_offset()).sum() };
    let (mut sent, mut caught) = (0, 0);
    while caught < 3 && sent < 200 {
        let msg = Message { delivery: Delivery::At(T0 + 1000), ..Message::new("d", Bytes::from(format!("m{sent}"))) };
        let before = shards_end(&m);
        let mut send = Box::pin(m.send(msg, Partitioning::Auto));
        sent += 1;
        loop {
            tokio::select! {
                biased;
                r = &mut send => {
                    r.expect("send");
                    break;
                }
                _ = tokio::task::yield_now() => {}
            }
            if shards_end(&m) > before {
                // Written, not yet answered: the client goes away.
                caught += 1;
                break;
            }
        }
        drop(send);
    }
    assert!(caught > 0, "no send was caught between its write and its answer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while m.timer_stats().pending < sent {
        assert!(std::time::Instant::now() < deadline, "{} of {sent} filed", m.timer_stats().pending);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    clock.advance(1000);
    assert_eq!(m.deliver_due().await.expect("deliver"), sent);
    assert_eq!(ids_in(&m).len(), sent);
}

/// A delivery whose append failed without a known outcome (here: the
/// target's commit timed out, its follower silent) is not delivered again
/// blindly: the copies may have landed. It is resolved by searching the
/// target once the copies' fate is decided (committed or cut), so each
/// message is there once (the cluster suite once read a delayed message
/// twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_outcome_is_unknown_is_resolved_not_repeated() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    let ids = schedule(&m, 7).await;
    // The target commits only once follower 2 has the copies.
    let p = m.broker.partition(&TopicPartition::new("d", 0)).expect("p");
    p.set_replica_role(true, &[2]);
    clock.advance(1000);
    m.deliver_due().await.expect("deliver");
    assert!(p.log_end_offset() > p.high_watermark(), "appended, not committed: the append timed out");
    clock.advance(5000);
    m.deliver_due().await.expect("deliver");
    assert_eq!(ids_in(&m).len(), 7, "not appended a second time while undecided");
    // The follower catches up: the copies are committed, the intent resolved.
    p.follower_fetched(2, p.log_end_offset(), p.log_end_offset());
    clock.advance(5000);
    m.deliver_due().await.expect("deliver");
    assert_eq!(m.timer_stats().pending, 0);
    clock.advance(60_000);
    m.deliver_due().await.expect("deliver");
    assert_eq!(sorted(ids_in(&m)), sorted(ids));
}

/// A shard elected with a tail its predecessor wrote but did not commit
/// delivers the scheduled messages in it only once they are committed:
/// until then another election could cut them (their sends were never
/// acknowledged), and a delivery would be a message nobody sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_in_an_uncommitted_tail_wait_for_their_commit() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    // Every shard leads with an in-sync follower (node 2) that fetches
    // nothing: a schedule is written, not committed.
    let shards = m.timer.serving();
    for s in &shards {
        s.partition.set_replica_role(true, &[2]);
    }
    let mm = m.clone();
    let send = tokio::spawn(async move {
        let msg = Message { delivery: Delivery::At(T0 + 1000), ..Message::new("d", Bytes::from("late")) };
        mm.send(msg, Partitioning::Auto).await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let shard = loop {
        if let Some(s) = shards.iter().find(|s| s.partition.log_end_offset() > s.partition.high_watermark()) {
            break s.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the schedule reaches a shard's log");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    // This node is elected again with that tail: the replay files it.
    let p = shard.partition.clone();
    let elected = Shard::replay(shard.tp.partition, p.clone(), T0, 10).expect("replay");
    assert_eq!(elected.pending(), 1);
    clock.advance(2000);
    assert_eq!(elected.dispatch_due(&m).await.expect("dispatch"), 0);
    assert!(ids_in(&m).is_empty(), "delivered before it was committed");

    // The follower catches up: committed, then delivered (the follower
    // leaves the in-sync set so the delivery's own records commit alone).
    let end = p.log_end_offset();
    p.follower_fetched(2, end, end);
    p.set_replica_role(true, &[]);
    // The commit also waits for this replica's own fsync (group commit),
    // which a loaded machine runs late.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.high_watermark() < end {
        assert!(std::time::Instant::now() < deadline, "the tail commits");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(elected.dispatch_due(&m).await.expect("dispatch"), 1);
    assert_eq!(ids_in(&m).len(), 1);
    let _ = send.await;
}

/// Transactions begun, checked and committed while the shards trim: a trim
/// never cuts an open half (nor one still being stored), so every one is
/// checked back and delivered once, also after a restart replays the
/// shards from their trimmed starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trims_keep_every_open_transaction() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    let claim = crate::CheckClaim {
        groups: vec!["pg".into()],
        topics: vec![],
        first_after_ms: 0,
        interval_ms: 0,
        max_checks: u32::MAX,
        max: usize::MAX,
    };
    let rounds = 150;
    let open_left = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..2)
        .map(|t| {
            let (m, claim, open_left) = (m.clone(), claim.clone(), open_left.clone());
            tokio::spawn(async move {
                for i in 0..rounds {
                    let msg = Message::new("d", Bytes::from(format!("t{t}-{i}")));
                    let h = m.send_half(msg, Partitioning::Auto, "pg").await.expect("half");
                    let due = m.claim_checks(&claim).await.expect("claim");
                    assert!(due.iter().any(|x| x.handle == h.handle), "open half {} checked back", h.handle);
                    if i % 10 == 9 {
                        open_left.lock().push(h.handle);
                    } else {
                        m.end_transaction(h.handle, crate::TxOutcome::Commit).await.expect("commit");
                    }
                }
            })
        })
        .collect();
    let trimmer = {
        let m = m.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                for s in m.timer.serving() {
                    s.trim(&m).await.expect("trim");
                }
                m.deliver_due().await.expect("deliver");
                tokio::task::yield_now().await;
            }
        })
    };
    for t in tasks {
        t.await.expect("task");
    }
    trimmer.await.expect("trimmer");
    m.deliver_due().await.expect("deliver");
    for s in m.timer.serving() {
        s.trim(&m).await.expect("trim");
    }
    assert!(m.timer.serving().iter().any(|s| s.partition.log_start_offset() > 0), "the shards were trimmed");
    assert_eq!(ids_in(&m).len(), 2 * rounds - 2 * rounds / 10);
    drop(m);
    let m = open(dir.path(), clock).await;
    assert_eq!(m.timer_stats().open_transactions, 2 * rounds / 10);
    let left = open_left.lock().clone();
    for h in left {
        m.end_transaction(h, crate::TxOutcome::Commit).await.expect("commit after the restart");
    }
    m.deliver_due().await.expect("deliver");
    assert_eq!(ids_in(&m).len(), 2 * rounds);
}
