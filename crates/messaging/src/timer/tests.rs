//! Crash windows of a delivery, cut at each step: nothing is lost and
//! nothing is delivered twice.

use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::{Broker, BrokerConfig, TopicConfig, TopicPartition};
use fjord_log::{Clock, ManualClock};

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

/// Cut after the intent (nothing appended): everything is delivered after
/// the restart, once.
#[tokio::test]
async fn crash_after_the_intent_delivers_after_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    let ids = schedule(&m, 5).await;
    clock.advance(1000);
    let (n, _, _) = m.timer.begin_delivery(&m.broker).await.expect("begin").expect("due");
    assert_eq!(n, 5);
    drop(m); // crash: no done record, no snapshot
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.timer_stats().pending, 5);
    m.deliver_due().await.expect("deliver");
    let mut got = ids_in(&m);
    got.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want);
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
    let (_, _, targets) = m.timer.begin_delivery(&m.broker).await.expect("begin").expect("due");
    let (delivered, retry) = m.timer.append_targets(&m.broker, targets).await;
    assert_eq!((delivered.len(), retry.len()), (7, 0));
    drop(m);
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.timer_stats().pending, 0, "resolved as delivered");
    clock.advance(60_000);
    m.deliver_due().await.expect("deliver");
    assert_eq!(ids_in(&m).len(), 7);
    // And the resolution is recorded: a second restart agrees.
    drop(m);
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.timer_stats().pending, 0);
    let mut got = ids_in(&m);
    got.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want);
    let p = m.broker.partition(&TopicPartition::new("d", 0)).expect("p");
    let recs = p.read_appended(0, 1 << 20).expect("read");
    assert!(recs.iter().all(|r| r.headers.iter().any(|h| h.key.as_ref() == headers::TIMER_REF.as_bytes())));
    assert!(clock.now_ms() > T0);
}

/// Snapshots plus journal tails rebuild the same pending set, and trim the
/// logs.
#[tokio::test]
async fn snapshot_then_more_work_then_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(T0));
    let m = open(dir.path(), clock.clone()).await;
    schedule(&m, 10).await;
    {
        let _g = m.timer.gate.lock().await;
        super::recover::write_snapshot(&m.timer.dir, &m.timer.schedule, &m.timer.journal, &m.timer.state)
            .expect("snap");
    }
    // After the snapshot: 3 more scheduled far ahead, the first 10 delivered.
    for i in 0..3 {
        let msg =
            Message { delivery: Delivery::At(T0 + 3_600_000), ..Message::new("d", Bytes::from(format!("late{i}"))) };
        m.send(msg, Partitioning::Auto).await.expect("send");
    }
    clock.advance(1000);
    assert_eq!(m.deliver_due().await.expect("deliver"), 10);
    drop(m);
    let m = open(dir.path(), clock.clone()).await;
    assert_eq!(m.timer_stats().pending, 3);
    assert_eq!(m.deliver_due().await.expect("deliver"), 0);
    assert_eq!(ids_in(&m).len(), 10);
    clock.advance(3_600_000);
    assert_eq!(m.deliver_due().await.expect("deliver"), 3);
    assert_eq!(ids_in(&m).len(), 13);
}
