//! Pops and acks that do not wait for the journal's fsync: applied and
//! written at once, durable after the next maintenance.

use std::sync::Arc;
use std::time::Duration;

use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_log::ManualClock;

use crate::pull::ConsumeModel;
use crate::send::Partitioning;
use crate::{Message, Messaging, MessagingConfig, PopRequest};

async fn open(dir: &std::path::Path) -> Arc<Messaging> {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let b = Broker::open(BrokerConfig::new(dir), clock).await.expect("broker");
    if b.topic("q").is_none() {
        b.create_topic("q", 1, TopicConfig::default()).await.expect("topic");
    }
    Messaging::open(b, MessagingConfig::default()).await.expect("messaging")
}

async fn close(m: Arc<Messaging>) {
    m.shutdown().await.expect("messaging shutdown");
    m.broker.shutdown().await.expect("broker shutdown");
}

#[tokio::test]
async fn unsynced_pops_and_acks_are_applied_at_once_and_synced_by_the_maintenance() {
    let dir = tempfile::tempdir().expect("dir");
    let m = open(dir.path()).await;
    for i in 0..3 {
        m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.expect("send");
    }
    let g = ConsumeModel::Clustering;
    let req = PopRequest { invisible: Duration::from_secs(600), durable: false, ..PopRequest::new("g", "q", 3) };
    let got = m.pop(req).await.expect("pop");
    assert_eq!(got.len(), 3);
    let receipts: Vec<_> = got.iter().map(|p| p.receipt.clone()).collect();
    let acked = m.ack_many_unsynced("g", &g, &receipts[..2]).await.expect("ack");
    assert!(acked.iter().all(Result::is_ok));
    assert_eq!(m.pop_depth("g", &g, "q"), (0, 1), "applied before any sync");
    assert!(m.pop.journal.durable_end() < m.pop.journal.end(), "written, not yet synced");
    m.pop_maintenance().await.expect("maintenance");
    assert_eq!(m.pop.journal.durable_end(), m.pop.journal.end(), "the maintenance syncs them");
    close(m).await;
    let m = open(dir.path()).await;
    assert_eq!(m.pop_depth("g", &g, "q"), (0, 1), "kept across a restart");
    close(m).await;
}

/// A background task stuck (in a call to a node that never answers) does
/// not hold the stop: it is cut short after the grace.
#[tokio::test]
async fn a_stuck_background_task_does_not_hold_the_shutdown() {
    let dir = tempfile::tempdir().expect("dir");
    let m = open(dir.path()).await;
    m.start();
    m.tasks.lock().push(tokio::spawn(std::future::pending::<()>()));
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), close(m)).await.expect("the shutdown ends");
    assert!(started.elapsed() < crate::TASK_GRACE + Duration::from_secs(5), "{:?}", started.elapsed());
}

/// A pop journal poisoned by a failed fsync (a full disk) refuses every
/// pop and ack, so the queues stop; once the disk takes writes again the
/// maintenance recovers it and the queues are served again (chaos seed 18:
/// an AMQP queue's node stayed stuck after a full disk).
#[tokio::test]
async fn a_poisoned_pop_journal_recovers_and_the_queue_is_served_again() {
    let dir = tempfile::tempdir().expect("dir");
    let m = open(dir.path()).await;
    for i in 0..3 {
        m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.expect("send");
    }
    m.pop.journal.inject_fsync_failure(true);
    assert!(m.pop(PopRequest::new("g", "q", 1)).await.is_err(), "its journal record is not durable");
    m.pop.journal.inject_fsync_failure(false);
    assert!(m.pop(PopRequest::new("g", "q", 1)).await.is_err(), "poisoned: refused");

    m.recover_journals().expect("recovered");
    let got = m.pop(PopRequest::new("g", "q", 1)).await.expect("served again");
    assert_eq!(got.len(), 1);
    let g = ConsumeModel::Clustering;
    m.ack("g", &g, &got[0].receipt).await.expect("ack");
    close(m).await;
}
