//! Both sides of a replica fetch between two brokers in one process,
//! placed by hand: a follower whose tail was written by a deposed leader
//! in an older epoch is cut where the logs last agree (KIP-320) and then
//! copies the leader's log exactly; stale epochs and non-leaders are
//! refused.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig, NodeInfo, PartitionPlacement, Placement, TopicConfig, TopicPartition};
use fjord_cluster_codec::{FetchPartition, FetchStatus};
use fjord_log::batch::{BatchBuilder, NewRecord};

use super::fetcher::apply;
use super::serve::answer;

fn batch(values: &[&str]) -> BytesMut {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for v in values {
        b.push(&NewRecord { value: Some(Bytes::from(v.to_string())), ..Default::default() });
    }
    b.build()
}

/// Places `t-0` on nodes 1 and 2, led by `leader` in `epoch`, with the
/// leader alone in sync (so its writes commit without a follower here).
fn place(b: &Broker, leader: i32, epoch: i32) {
    place_in_sync(b, leader, epoch, &[leader]);
}

/// Places `t-0` on nodes 1 and 2, led by `leader` in `epoch`, with `isr`.
fn place_in_sync(b: &Broker, leader: i32, epoch: i32, isr: &[i32]) {
    let node = |id| NodeInfo { node_id: id, listeners: BTreeMap::new(), rack: None };
    let part = PartitionPlacement {
        leader,
        leader_epoch: epoch,
        replicas: vec![1, 2],
        isr: isr.to_vec(),
        partition_epoch: 0,
        adding: vec![],
        removing: vec![],
    };
    b.set_placement(Placement {
        controller_id: 1,
        nodes: vec![node(1), node(2)],
        fenced: Vec::new(),
        controllers: vec![1],
        topics: HashMap::from([("t".to_string(), vec![part])]),
    });
}

fn values(b: &Broker) -> Vec<String> {
    let p = b.topic("t").unwrap().partition(0).unwrap();
    let mut out = Vec::new();
    while (out.len() as u64) < p.log_end_offset() {
        let recs = p.read_appended(out.len() as u64, 1 << 20).unwrap();
        out.extend(recs.into_iter().map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
    }
    out
}

/// Two brokers, nodes 1 and 2, each with topic `t` (one partition).
async fn two_brokers() -> ((tempfile::TempDir, tempfile::TempDir), Arc<Broker>, Arc<Broker>, TopicPartition) {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = |id: i32, dir: &std::path::Path| {
        let cfg = BrokerConfig { node_id: id, ..BrokerConfig::new(dir) };
        async move { Broker::open(cfg, Arc::new(fjord_log::SystemClock)).await.unwrap() }
    };
    let (a, b) = (open(1, dirs.0.path()).await, open(2, dirs.1.path()).await);
    for br in [&a, &b] {
        br.create_topic("t", 1, TopicConfig::default()).await.unwrap();
    }
    (dirs, a, b, TopicPartition::new("t", 0))
}

/// Node 2's fetch of `t-0` in `epoch`, from where its log ends.
fn fetch_of(pb: &fjord_broker::Partition, epoch: i32) -> FetchPartition {
    FetchPartition {
        topic: "t".into(),
        partition: 0,
        leader_epoch: epoch,
        fetch_offset: pb.log_end_offset(),
        last_fetched_epoch: pb.last_epoch(),
        durable_offset: pb.replica_durable_end(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_below_the_leaders_log_start_starts_over_there() {
    // Found by fjord-chaos: the leader's epoch cache, cut from the start
    // with its log, had no epoch as old as the follower's last, so it
    // answered "diverging" at the follower's own log end; the follower's
    // cut there changed nothing and it asked again, for good.
    let (_dirs, a, b, tp) = two_brokers().await;
    place(&b, 2, 0);
    b.produce(&tp, batch(&["a"])).await.unwrap();
    place(&a, 1, 0);
    a.produce(&tp, batch(&["a", "b", "c"])).await.unwrap();
    place(&a, 1, 1);
    a.produce(&tp, batch(&["d", "e", "f"])).await.unwrap();
    assert_eq!(a.delete_records(&tp, 3).await.unwrap(), 3);
    place(&b, 1, 1);
    let pb = b.topic("t").unwrap().partition(0).unwrap();
    let (first, _) = answer(&a, 2, &fetch_of(&pb, 1), &mut 1_000_000, true);
    assert_eq!((first.status, first.log_start), (FetchStatus::OffsetOutOfRange, 3));
    apply(&tp, &pb, first).await;
    assert_eq!((pb.log_start_offset(), pb.log_end_offset()), (3, 3), "started over at the leader's log start");
    let (next, _) = answer(&a, 2, &fetch_of(&pb, 1), &mut 1_000_000, true);
    assert_eq!(next.status, FetchStatus::Ok);
    apply(&tp, &pb, next).await;
    assert_eq!(pb.log_end_offset(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_tail_is_cut_where_the_logs_agree_then_copied() {
    let (_dirs, a, b, tp) = two_brokers().await;
    // Node 2 holds [a b c] of epoch 0, then [x y z] it wrote leading
    // epoch 1, which nobody else got.
    place(&b, 2, 0);
    b.produce(&tp, batch(&["a", "b", "c"])).await.unwrap();
    place(&b, 2, 1);
    b.produce(&tp, batch(&["x", "y", "z"])).await.unwrap();
    // Node 1 led epoch 0 first: [a b c] (which node 2 got) and [d e]
    // (which it did not); it leads epoch 2 now.
    place(&a, 1, 0);
    a.produce(&tp, batch(&["a", "b", "c"])).await.unwrap();
    a.produce(&tp, batch(&["d", "e"])).await.unwrap();
    place(&a, 1, 2);
    a.produce(&tp, batch(&["f", "g"])).await.unwrap();
    place(&b, 1, 2);
    let (pa, pb) = (a.topic("t").unwrap().partition(0).unwrap(), b.topic("t").unwrap().partition(0).unwrap());

    let fetch = |epoch| fetch_of(&pb, epoch);
    // A stale epoch is fenced; a node that does not lead says so.
    assert_eq!(answer(&a, 2, &fetch(1), &mut 1_000_000, true).0.status, FetchStatus::FencedLeaderEpoch);
    assert_eq!(answer(&b, 1, &fetch(2), &mut 1_000_000, true).0.status, FetchStatus::NotLeader);

    // Node 2's epoch 1 is unknown to the leader, whose epoch 0 ends at 5;
    // node 2's own epoch 0 ends at 3: the cut is at 3.
    let (first, _) = answer(&a, 2, &fetch(2), &mut 1_000_000, true);
    assert_eq!((first.status, first.diverging), (FetchStatus::Diverging, Some((0, 5))));
    apply(&tp, &pb, first).await;
    assert_eq!(pb.log_end_offset(), 3);
    for _ in 0..4 {
        if pb.log_end_offset() == pa.log_end_offset() {
            break;
        }
        let (next, _) = answer(&a, 2, &fetch(2), &mut 1_000_000, true);
        assert_eq!(next.status, FetchStatus::Ok);
        apply(&tp, &pb, next).await;
    }
    assert_eq!(values(&b), ["a", "b", "c", "d", "e", "f", "g"]);
    assert_eq!(values(&b), values(&a));
    assert_eq!(pb.last_epoch(), 2, "epochs are copied with the batches");
    // The follower reported its progress; nothing is left to send.
    let (idle, wait) = answer(&a, 2, &fetch(2), &mut 1_000_000, true);
    assert!(idle.records.is_empty() && wait.is_some());
    assert_eq!(pb.high_watermark(), pa.high_watermark());
}

/// The follower's log lacks the epoch the leader names (it never saw the
/// leader's epoch 2; its tail is an epoch 3 nobody else got): the cut goes
/// where the follower's largest epoch below it ends, not at the leader's
/// answer (which cut nothing and was asked again forever — a chaos run's
/// replica stuck after a reassignment, 309,750 cuts at one offset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_without_the_leaders_epoch_cuts_where_its_own_earlier_epoch_ends() {
    let (_dirs, a, b, tp) = two_brokers().await;
    // Node 2: [a b c] in epoch 0, then [x y z] it wrote leading epoch 3.
    place(&b, 2, 0);
    b.produce(&tp, batch(&["a", "b", "c"])).await.unwrap();
    place(&b, 2, 3);
    b.produce(&tp, batch(&["x", "y", "z"])).await.unwrap();
    // Node 1: [a b c] in epoch 0, [d e f g] in epoch 2, [h] leading epoch 4.
    place(&a, 1, 0);
    a.produce(&tp, batch(&["a", "b", "c"])).await.unwrap();
    place(&a, 1, 2);
    a.produce(&tp, batch(&["d", "e", "f", "g"])).await.unwrap();
    place(&a, 1, 4);
    a.produce(&tp, batch(&["h"])).await.unwrap();
    place(&b, 1, 4);
    let (pa, pb) = (a.topic("t").unwrap().partition(0).unwrap(), b.topic("t").unwrap().partition(0).unwrap());
    let fetch = || fetch_of(&pb, 4);
    // The leader's largest epoch up to 3 is 2, ending past 6: diverging at
    // (2, 6); the follower's largest epoch up to 2 is 0, ending at 3.
    let (first, _) = answer(&a, 2, &fetch(), &mut 1_000_000, true);
    assert_eq!((first.status, first.diverging), (FetchStatus::Diverging, Some((2, 6))));
    apply(&tp, &pb, first).await;
    assert_eq!(pb.log_end_offset(), 3);
    for _ in 0..4 {
        if pb.log_end_offset() == pa.log_end_offset() {
            break;
        }
        let (next, _) = answer(&a, 2, &fetch(), &mut 1_000_000, true);
        assert_eq!(next.status, FetchStatus::Ok);
        apply(&tp, &pb, next).await;
    }
    assert_eq!(values(&b), ["a", "b", "c", "d", "e", "f", "g", "h"]);
}

/// A follower whose log ends below the leader's log start starts over
/// there, and holds that durably: an idle partition's leader takes it back
/// into the in-sync set on its next fetch (it reported the durable end a
/// cut left, 0 here, until a batch arrived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reset_to_the_leaders_log_start_holds_it_durably() {
    let (_dirs, a, b, tp) = two_brokers().await;
    place(&a, 1, 0);
    a.produce(&tp, batch(&["a", "b", "c"])).await.unwrap();
    a.delete_records(&tp, 3).await.unwrap();
    place(&b, 1, 0);
    let (pa, pb) = (a.topic("t").unwrap().partition(0).unwrap(), b.topic("t").unwrap().partition(0).unwrap());
    assert_eq!((pa.log_start_offset(), pa.high_watermark()), (3, 3));
    let (first, _) = answer(&a, 2, &fetch_of(&pb, 0), &mut 1_000_000, true);
    assert_eq!(first.status, FetchStatus::OffsetOutOfRange);
    apply(&tp, &pb, first).await;
    assert_eq!((pb.log_start_offset(), pb.log_end_offset()), (3, 3));
    assert_eq!(pb.replica_durable_end(), 3, "the reset log is durable at its start");
    answer(&a, 2, &fetch_of(&pb, 0), &mut 1_000_000, true);
    let (_, followers) = pa.followers();
    let f = followers.iter().find(|(n, _)| *n == 2).map(|(_, f)| *f).unwrap();
    assert!(f.durable >= pa.high_watermark() && f.caught_up_at.is_some(), "{f:?}");
}

/// A leader deposed while a client's write waits answers it by what the
/// new leader holds: written, once it learns (as a follower) a high
/// watermark past it; not written, once the tail holding it is cut. Not
/// "not leader" for a write that survived: librdkafka takes that to mean
/// not written, and re-sends the batch under a new producer epoch after
/// any epoch bump (a duplicate; found by fjord-chaos, seed 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_answers_a_waiting_write_by_what_the_new_leader_holds() {
    let (_dirs, a, b, tp) = two_brokers().await;
    let (pa, pb) = (a.topic("t").unwrap().partition(0).unwrap(), b.topic("t").unwrap().partition(0).unwrap());
    let both = |leader, epoch, isr: &[i32]| {
        place_in_sync(&a, leader, epoch, isr);
        place_in_sync(&b, leader, epoch, isr);
    };
    let produce = |br: &Arc<Broker>, v: &'static str| {
        let (br, tp) = (br.clone(), tp.clone());
        tokio::spawn(async move { br.produce(&tp, batch(&[v])).await })
    };
    // Node 1 leads with node 2 in sync; node 2 copies the write, but node
    // 1 is deposed before it hears so.
    both(1, 0, &[1, 2]);
    let kept = produce(&a, "kept");
    pa.subscribe_log_end_for_tests().wait_for(|e| *e == 1).await.unwrap();
    let (copy, _) = answer(&a, 2, &fetch_of(&pb, 0), &mut 1_000_000, true);
    apply(&tp, &pb, copy).await;
    pb.wait_replica_durable(1, std::time::Duration::from_secs(10)).await;
    assert_eq!(pb.replica_durable_end(), 1);
    both(2, 1, &[2, 1]);
    assert!(!kept.is_finished(), "not committed yet");
    // As node 2's follower, node 1 learns the high watermark past it.
    for _ in 0..4 {
        let (next, _) = answer(&b, 1, &fetch_of(&pa, 1), &mut 1_000_000, true);
        assert_eq!(next.status, FetchStatus::Ok);
        apply(&tp, &pa, next).await;
        if kept.is_finished() {
            break;
        }
    }
    let kept = tokio::time::timeout(std::time::Duration::from_secs(10), kept).await.expect("answered").unwrap();
    assert_eq!(kept.expect("written").base_offset, 0);

    // Node 2 writes what node 1 never copies, and is deposed: node 1 leads
    // alone and writes at the same offset; node 2 cuts its tail there.
    let lost = produce(&b, "lost");
    pb.subscribe_log_end_for_tests().wait_for(|e| *e == 2).await.unwrap();
    both(1, 2, &[1]);
    a.produce(&tp, batch(&["new"])).await.unwrap();
    let (first, _) = answer(&a, 2, &fetch_of(&pb, 2), &mut 1_000_000, true);
    assert_eq!(first.status, FetchStatus::Diverging);
    apply(&tp, &pb, first).await;
    let lost = tokio::time::timeout(std::time::Duration::from_secs(10), lost).await.expect("answered").unwrap();
    assert!(matches!(lost, Err(fjord_broker::BrokerError::NotLeader { .. })), "{lost:?}");
}

/// A deposed leader that learns nothing of its write's fate within its
/// grace (its new leader unreachable, or it is shutting down) answers
/// "possibly written" (NotCommitted: Kafka's REQUEST_TIMED_OUT), not "not
/// leader", which librdkafka takes for "not written" (chaos seed 13: a
/// rolling restart's node answered so after the grace, and the batches it
/// held were written again under a new producer epoch).
#[tokio::test(start_paused = true)]
async fn a_deposed_leader_that_learns_nothing_answers_possibly_written() {
    let (_dirs, a, b, tp) = two_brokers().await;
    let pa = a.topic("t").unwrap().partition(0).unwrap();
    place_in_sync(&a, 1, 0, &[1, 2]);
    let write = {
        let (a, tp) = (a.clone(), tp.clone());
        tokio::spawn(async move { a.produce(&tp, batch(&["w"])).await })
    };
    pa.subscribe_log_end_for_tests().wait_for(|e| *e == 1).await.unwrap();
    place_in_sync(&a, 2, 1, &[2, 1]);
    let out = write.await.unwrap();
    assert!(matches!(out, Err(fjord_broker::BrokerError::NotCommitted { .. })), "{out:?}");
    drop(b);
}
