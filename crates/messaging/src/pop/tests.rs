//! Pop queues on their shards: changes nobody waits for, restarts, a shard
//! whose disk fails.

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
async fn unsynced_pops_and_acks_are_applied_at_once_and_kept_across_a_restart() {
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
    assert_eq!(m.pop_depth("g", &g, "q"), (0, 1), "applied before anything is written");
    // The shutdown sends what is still queued.
    close(m).await;
    let m = open(dir.path()).await;
    assert!(m.pop(PopRequest::new("g", "q", 3)).await.expect("pop").is_empty(), "m2 is still invisible");
    assert_eq!(m.pop_depth("g", &g, "q"), (0, 1), "kept across a restart");
    m.ack("g", &g, &receipts[2]).await.expect("a receipt from before the restart");
    close(m).await;
}

/// The trim writes every queue's state and moves the shard's log start
/// past what came before: a restart replays only that.
#[tokio::test]
async fn a_trimmed_shard_keeps_every_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let m = open(dir.path()).await;
    for i in 0..5 {
        m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.expect("send");
    }
    let g = ConsumeModel::Clustering;
    let req = PopRequest { invisible: Duration::from_secs(600), ..PopRequest::new("g", "q", 5) };
    let got = m.pop(req).await.expect("pop");
    m.ack("g", &g, &got[1].receipt).await.expect("ack");
    let shard = m.pop.shards.serving().into_iter().find(|s| s.tp.partition == shard_of_q(&m)).expect("led here");
    let p = m.broker.partition(&shard.tp).expect("partition");
    let end = p.log_end_offset();
    shard.trim(&m).await.expect("trim");
    assert_eq!(p.log_start_offset(), end, "everything before the states is gone");
    m.ack("g", &g, &got[3].receipt).await.expect("ack after the trim");
    close(m).await;
    let m = open(dir.path()).await;
    assert!(m.pop(PopRequest::new("g", "q", 5)).await.expect("pop").is_empty());
    assert_eq!(m.pop_depth("g", &g, "q"), (0, 3));
    m.ack("g", &g, &got[0].receipt).await.expect("a receipt from before the trim");
    close(m).await;
}

fn shard_of_q(m: &Messaging) -> u32 {
    let q = m.queue_id("g", &ConsumeModel::Clustering, &fjord_broker::TopicPartition::new("q", 0));
    super::shard::shard_of(&q, m.pop_shard_count().expect("count"))
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

/// A pop shard whose disk fails an fsync (a full disk) refuses pops and
/// acks; once the disk takes writes again and the broker recovered the
/// log, the shard is loaded again and the queue is served as it was
/// (chaos seed 18: an AMQP queue's node stayed stuck after a full disk).
#[tokio::test]
async fn a_pop_shard_whose_disk_failed_is_served_again_once_it_recovered() {
    let dir = tempfile::tempdir().expect("dir");
    let m = open(dir.path()).await;
    for i in 0..3 {
        m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.expect("send");
    }
    let g = ConsumeModel::Clustering;
    let first = m.pop(PopRequest::new("g", "q", 1)).await.expect("pop");
    let tp = fjord_broker::TopicPartition::new(fjord_broker::placement::POP_TOPIC, shard_of_q(&m));
    let log = m.broker.partition(&tp).expect("shard").log_for_tests().clone();
    log.inject_fsync_failure(true);
    assert!(m.pop(PopRequest::new("g", "q", 1)).await.is_err(), "its change is not durable");
    log.inject_fsync_failure(false);
    assert!(m.pop(PopRequest::new("g", "q", 1)).await.is_err(), "poisoned: refused");

    assert!(m.broker.recover_poisoned_logs().await >= 1);
    m.reconcile_pop_shards().await;
    let got = m.pop(PopRequest::new("g", "q", 3)).await.expect("served again");
    assert!(!got.is_empty());
    assert!(got.iter().all(|p| p.message.offset != 0), "the first pop stays in flight");
    m.ack("g", &g, &first[0].receipt).await.expect("ack");
    close(m).await;
}

/// Once another server loaded a queue (a later leader epoch of its
/// partition), its shard refuses the changes of the one before: that
/// server's ack fails and it stops serving the queue, and its attempt to
/// load it again from its older epoch is refused too.
#[tokio::test]
async fn a_shard_refuses_the_changes_of_a_deposed_server() {
    let dir = tempfile::tempdir().expect("dir");
    let m = open(dir.path()).await;
    for i in 0..3 {
        m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.expect("send");
    }
    let g = ConsumeModel::Clustering;
    let got = m.pop(PopRequest::new("g", "q", 2)).await.expect("pop");
    let q = m.queue_id("g", &g, &fjord_broker::TopicPartition::new("q", 0));
    let served = m.pop.queue(&q).expect("served");
    let loaded = m.pop_shard_load(&q, served.epoch + 1).await.expect("a newer server loads it");
    assert!(loaded.token > served.token);
    assert_eq!(loaded.previous_epoch, Some(served.epoch));
    assert_eq!(loaded.state.expect("known").inflight.len(), 2);

    assert!(m.ack("g", &g, &got[0].receipt).await.is_err(), "refused at the shard");
    assert!(m.pop.queues.lock().get(&q).is_none(), "no longer served here");
    let again = m.pop(PopRequest::new("g", "q", 2)).await.expect_err("its epoch is older");
    assert!(matches!(again, crate::MessagingError::Broker(fjord_broker::BrokerError::NotLeader { .. })), "{again:?}");
    assert!(m.pop_shard_load(&q, served.epoch).await.is_err());
    close(m).await;
}

/// Acks on queues of several shards wait for every shard's write, not the
/// last one's only: a refused write on the first shard is reported.
#[tokio::test]
async fn acks_across_shards_wait_for_each_shards_write() {
    let dir = tempfile::tempdir().expect("dir");
    let m = open(dir.path()).await;
    m.broker.create_topic("wide", 8, TopicConfig::default()).await.expect("topic");
    let g = ConsumeModel::Clustering;
    let count = m.pop_shard_count().expect("count");
    let shard =
        |p: u32| super::shard::shard_of(&m.queue_id("g", &g, &fjord_broker::TopicPartition::new("wide", p)), count);
    let first = 0;
    let other = (1..8).find(|p| shard(*p) != shard(first)).expect("two shards among 8 queues");
    let mut receipts = Vec::new();
    for p in [first, other] {
        m.send(Message::new("wide", "x"), Partitioning::Explicit(p)).await.expect("send");
        let req = PopRequest { partition: Some(p), ..PopRequest::new("g", "wide", 1) };
        receipts.push(m.pop(req).await.expect("pop").remove(0).receipt);
    }
    // Another server loaded the first queue: its ack is refused there.
    let q = m.queue_id("g", &g, &fjord_broker::TopicPartition::new("wide", first));
    let epoch = m.pop.queue(&q).expect("served").epoch;
    m.pop_shard_load(&q, epoch + 1).await.expect("loaded elsewhere");
    assert!(m.ack_many("g", &g, &receipts).await.is_err(), "the first shard's refusal is reported");
    close(m).await;
}

/// A pop whose answer never reached its consumer (the checker's seed 3: an
/// AMQP consumer's messages stayed invisible for half an hour while its
/// connection lived) is taken back by its name: exactly the deliveries it
/// made to its holder, visible at once with the attempt count they had,
/// once.
#[tokio::test]
async fn a_pop_whose_answer_was_lost_is_taken_back_by_its_name() {
    let dir = tempfile::tempdir().expect("dir");
    let m = open(dir.path()).await;
    m.set_connection_bound("g");
    for i in 0..4 {
        m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.expect("send");
    }
    let g = ConsumeModel::Clustering;
    let named =
        |id, n| PopRequest { invisible: Duration::from_secs(1800), id: Some(id), ..PopRequest::new("g", "q", n) };
    let lost = m.pop(named(7, 2)).await.expect("pop");
    let kept = m.pop(named(8, 1)).await.expect("pop");
    assert_eq!((lost.len(), kept.len()), (2, 1));
    assert_eq!(m.pop_depth("g", &g, "q"), (1, 3));

    let me = super::Holder { node: m.broker.config().node_id, session: m.session };
    let someone_else = super::Holder { node: me.node, session: me.session.wrapping_add(1) };
    assert_eq!(m.abandon_pop("g", &g, "q", someone_else, 7).await.expect("abandon"), 0, "not its pop");
    // What a failed `pop_at_leader` does in the background.
    m.abandon_everywhere("g", &g, "q", None, 7).await;
    assert_eq!(m.pop_depth("g", &g, "q"), (3, 1), "pop 7's two are back, pop 8's stays out");
    assert_eq!(m.abandon_pop("g", &g, "q", me, 7).await.expect("abandon"), 0, "taken back once");

    let again = m.pop(named(9, 3)).await.expect("pop");
    let offsets: Vec<u64> = again.iter().map(|p| p.message.offset).collect();
    assert!(offsets.contains(&lost[0].message.offset) && offsets.contains(&lost[1].message.offset), "{offsets:?}");
    assert!(again.iter().all(|p| p.attempt == 1), "never delivered: not a redelivery");
    assert!(m.ack("g", &g, &lost[0].receipt).await.is_err(), "the lost pop's receipts are stale");
    m.ack("g", &g, &kept[0].receipt).await.expect("the other pop's receipt holds");

    // Given up before it took anything (the checker's seed 3 again: the
    // caller's forwarded call timed out while the serving node still
    // waited to load the queue, and the take-back found nothing): the pop,
    // when it runs, takes nothing.
    let before = m.pop_depth("g", &g, "q");
    assert_eq!(m.abandon_pop("g", &g, "q", me, 10).await.expect("abandon"), 0);
    assert!(m.pop(named(10, 3)).await.expect("pop").is_empty(), "abandoned before it ran");
    assert_eq!(m.pop_depth("g", &g, "q"), before, "nothing taken");
    close(m).await;
}

/// A message in flight whose records retention (or DeleteRecords) deleted
/// before its ack is dropped when its invisibility runs out: a read below
/// the log start fails, and it failed every later pop of the queue.
#[tokio::test]
async fn a_delivery_deleted_while_in_flight_is_dropped_not_a_stuck_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let b = Broker::open(BrokerConfig::new(dir.path()), clock.clone()).await.expect("broker");
    b.create_topic("q", 1, TopicConfig::default()).await.expect("topic");
    let m = Messaging::open(b, MessagingConfig::default()).await.expect("messaging");
    for i in 0..6 {
        m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.expect("send");
    }
    let req = |n| PopRequest { invisible: Duration::from_secs(10), ..PopRequest::new("g", "q", n) };
    let first = m.pop(req(2)).await.expect("pop");
    assert_eq!(first.iter().map(|p| p.message.offset).collect::<Vec<_>>(), [0, 1]);
    let tp = fjord_broker::TopicPartition::new("q", 0);
    m.broker.delete_records(&tp, 3).await.expect("delete records");
    clock.advance(11_000);
    let next = m.pop(req(3)).await.expect("the queue is not stuck on the deleted deliveries");
    assert_eq!(next.iter().map(|p| p.message.offset).collect::<Vec<_>>(), [3, 4, 5], "2 was deleted unread");
    let g = ConsumeModel::Clustering;
    assert!(m.ack("g", &g, &first[0].receipt).await.is_err(), "dropped: its receipt is stale");
    assert_eq!(m.pop_depth("g", &g, "q"), (0, 3));
    close(m).await;
}
