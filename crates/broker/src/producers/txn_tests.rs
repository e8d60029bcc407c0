//! Transactions in the producer table: open transactions hold the last
//! stable offset, markers end them, aborts are indexed — and all of it
//! survives a restart, clean or not (`docs/design/transactions.md` §3).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_log::batch::{BatchBuilder, NewRecord};
use fjord_log::control::{TxnMarker, marker_batch};
use fjord_log::{AbortedTxn, SystemClock};

use crate::error::BrokerError;
use crate::partition::Partition;
use crate::{Broker, BrokerConfig, TopicConfig, TopicPartition};

fn data(producer: Option<(i64, i32)>, transactional: bool, records: usize) -> BytesMut {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    if let Some((pid, seq)) = producer {
        b = b.producer(pid, 0, seq).transactional(transactional);
    }
    for i in 0..records {
        b.push(&NewRecord { value: Some(Bytes::from(format!("v{i}"))), ..Default::default() });
    }
    b.build()
}

fn marker(pid: i64, commit: bool) -> BytesMut {
    marker_batch(pid, 0, TxnMarker { commit, coordinator_epoch: 3 }, 1_700_000_000_000)
}

/// Appends as the leader and waits for the commit; returns the base offset.
async fn write(p: &Partition, bytes: BytesMut) -> u64 {
    let (info, written) = p.append(bytes).await.unwrap().unwrap();
    p.committed(written).await.unwrap();
    info.base_offset
}

async fn broker(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(BrokerConfig::new(dir), Arc::new(SystemClock)).await.unwrap()
}

#[tokio::test]
async fn open_transactions_hold_the_last_stable_offset_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let t = TopicPartition::new("txn", 0);
    {
        let b = broker(dir.path()).await;
        b.create_topic("txn", 1, TopicConfig::default()).await.unwrap();
        let p = b.partition(&t).unwrap();
        assert_eq!(write(&p, data(None, false, 1)).await, 0);
        assert_eq!(p.last_stable_offset().await.unwrap(), 1, "nothing open: the high watermark");
        assert_eq!(write(&p, data(Some((1, 0)), true, 2)).await, 1);
        assert_eq!(write(&p, data(None, false, 1)).await, 3);
        assert_eq!(write(&p, data(Some((2, 0)), true, 1)).await, 4);
        assert_eq!(p.high_watermark(), 5);
        assert_eq!(p.last_stable_offset().await.unwrap(), 1, "producer 1's transaction, open since 1");
        assert_eq!(write(&p, data(Some((1, 2)), true, 1)).await, 5);
        // Producer 1 aborts: its entry's stable offset is producer 2's
        // open transaction's start.
        assert_eq!(write(&p, marker(1, false)).await, 6);
        assert_eq!(p.last_stable_offset().await.unwrap(), 4);
        let aborted = AbortedTxn { producer_id: 1, first_offset: 1, last_offset: 6, last_stable_offset: 4 };
        assert_eq!(p.aborted_transactions(0, 7), vec![aborted]);
        assert_eq!(write(&p, marker(2, true)).await, 7);
        assert_eq!(p.last_stable_offset().await.unwrap(), 8);
        assert_eq!(p.aborted_transactions(7, 8), vec![], "nothing aborted in that range");
        // Producer 1 opens another; a clean shutdown keeps it.
        assert_eq!(write(&p, data(Some((1, 3)), true, 1)).await, 8);
        assert_eq!(p.last_stable_offset().await.unwrap(), 8);
        b.shutdown().await.unwrap();
    }
    let b = broker(dir.path()).await;
    let p = b.partition(&t).unwrap();
    assert_eq!(p.last_stable_offset().await.unwrap(), 8, "the open transaction came back from the snapshot");
    assert_eq!(write(&p, marker(1, false)).await, 9);
    assert_eq!(p.last_stable_offset().await.unwrap(), 10);
    assert_eq!(p.aborted_transactions(0, 10).len(), 2);
}

/// A crash that kept the markers but lost the index's entries (written
/// after the segment's pages, say): the unclean open's replay derives
/// them again, and the transaction left open is open again.
#[tokio::test]
async fn an_unclean_restart_derives_lost_abort_entries_again() {
    let dir = tempfile::tempdir().unwrap();
    let t = TopicPartition::new("txn-crash", 0);
    let part_dir = {
        let b = broker(dir.path()).await;
        // Small segments: rolls after the marker save snapshots past it.
        let small = TopicConfig::from_entries([("segment.bytes", "600")]).unwrap();
        b.create_topic("txn-crash", 1, small).await.unwrap();
        let p = b.partition(&t).unwrap();
        write(&p, data(Some((5, 0)), true, 2)).await;
        write(&p, marker(5, false)).await;
        write(&p, data(Some((6, 0)), true, 1)).await;
        for _ in 0..12 {
            write(&p, data(None, false, 1)).await;
        }
        assert!(p.log().snapshot_offsets().unwrap().iter().any(|o| *o > 3), "a snapshot past the marker");
        assert_eq!(p.aborted_transactions(0, 4).len(), 1);
        assert_eq!(p.last_stable_offset().await.unwrap(), 3);
        p.log().dir().to_path_buf()
        // Dropped without a shutdown.
    };
    for f in std::fs::read_dir(&part_dir).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|e| e == "txnindex") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let b = broker(dir.path()).await;
    let p = b.partition(&t).unwrap();
    assert_eq!(p.last_stable_offset().await.unwrap(), 3, "producer 6's transaction is open again");
    let want = AbortedTxn { producer_id: 5, first_offset: 0, last_offset: 2, last_stable_offset: 3 };
    assert_eq!(p.aborted_transactions(0, 4), vec![want]);
}

/// A completed transaction whose marker the high watermark does not cover
/// yet still holds the last stable offset (its readers would otherwise
/// see records a cut of the marker could turn back into an open
/// transaction's).
#[tokio::test]
async fn a_marker_not_yet_committed_holds_the_last_stable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    b.create_topic("txn-hw", 1, TopicConfig::default()).await.unwrap();
    let p = b.partition(&TopicPartition::new("txn-hw", 0)).unwrap();
    write(&p, data(Some((9, 0)), true, 2)).await;
    // A follower in sync that has not fetched yet: no commit past 2.
    p.set_replica_role(true, &[2]);
    p.follower_fetched(2, 2, 2);
    let (_, w) = p.append(marker(9, true)).await.unwrap().unwrap();
    assert_eq!(p.high_watermark(), 2);
    assert_eq!(p.last_stable_offset().await.unwrap(), 0, "the commit marker is not committed yet");
    p.follower_fetched(2, 3, 3);
    p.committed(w).await.unwrap();
    assert_eq!(p.last_stable_offset().await.unwrap(), 3);
}

#[tokio::test]
async fn clients_cannot_produce_control_batches() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    b.create_topic("txn-ctl", 1, TopicConfig::default()).await.unwrap();
    let t = TopicPartition::new("txn-ctl", 0);
    let p = b.partition(&t).unwrap();
    write(&p, data(Some((4, 0)), true, 1)).await;
    let refused = b.produce(&t, marker(4, false)).await;
    assert!(matches!(refused, Err(BrokerError::InvalidRequest(_))), "{refused:?}");
    let mut two = data(None, false, 1);
    two.extend_from_slice(&marker(4, false));
    assert!(matches!(b.produce(&t, two).await, Err(BrokerError::InvalidRequest(_))), "behind a data batch too");
    assert_eq!(p.last_stable_offset().await.unwrap(), 0, "producer 4's transaction is still open");
}

/// `read_committed` fetches stop at the last stable offset and carry the
/// aborted transactions of what they return; `read_uncommitted` ones read
/// to the high watermark and report the last stable offset. ListOffsets'
/// "latest" is the last stable offset for `read_committed`.
#[tokio::test]
async fn read_committed_fetches_stop_at_the_last_stable_offset() {
    use crate::fetch::{FetchPartition, FetchRequest};

    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    b.create_topic("txn-fetch", 1, TopicConfig::default()).await.unwrap();
    let t = TopicPartition::new("txn-fetch", 0);
    let p = b.partition(&t).unwrap();
    write(&p, data(None, false, 1)).await;
    write(&p, data(Some((3, 0)), true, 2)).await;
    write(&p, data(None, false, 1)).await;
    let fetch = |read_committed| FetchRequest {
        partitions: vec![FetchPartition { tp: t.clone(), offset: 0, max_bytes: 1 << 20 }],
        max_wait: std::time::Duration::ZERO,
        min_bytes: 1,
        max_bytes: 1 << 20,
        bound: fjord_log::ReadBound::HighWatermark,
        follower_reads: false,
        read_committed,
    };
    let got = b.fetch(fetch(true)).await.remove(0).result.unwrap();
    assert_eq!((got.slice.unwrap().end_offset, got.last_stable_offset, got.high_watermark), (1, 1, 4));
    let all = b.fetch(fetch(false)).await.remove(0).result.unwrap();
    assert_eq!((all.slice.unwrap().end_offset, all.last_stable_offset), (4, 1), "read_uncommitted reads on");
    let latest = |spec| {
        let (b, t) = (b.clone(), t.clone());
        async move { b.list_offset(&t, spec).await.unwrap().unwrap().offset }
    };
    assert_eq!(latest(crate::OffsetSpec::LatestStable).await, 1);
    assert_eq!(latest(crate::OffsetSpec::Latest).await, 4);

    write(&p, marker(3, false)).await;
    let got = b.fetch(fetch(true)).await.remove(0).result.unwrap();
    assert_eq!((got.slice.unwrap().end_offset, got.last_stable_offset), (5, 5));
    let aborted = AbortedTxn { producer_id: 3, first_offset: 1, last_offset: 4, last_stable_offset: 5 };
    assert_eq!(got.aborted, vec![aborted], "the consumer skips producer 3's records");
    assert!(b.fetch(fetch(false)).await.remove(0).result.unwrap().aborted.is_empty());
    assert_eq!(latest(crate::OffsetSpec::LatestStable).await, 5);
}

/// The messaging layer's reads (pops, pulls, queries) see what Kafka's
/// `read_committed` consumers see — up to the last stable offset, without
/// markers or aborted records — and read past batches that hold nothing
/// to return, so "empty" still means "nothing more for now".
#[tokio::test]
async fn the_messaging_layers_reads_skip_markers_and_aborted_records() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    b.create_topic("txn-read", 1, TopicConfig::default()).await.unwrap();
    let p = b.partition(&TopicPartition::new("txn-read", 0)).unwrap();
    let values = |p: &Partition, from| -> Vec<u64> {
        p.read_committed(from, 1 << 20).unwrap().iter().map(|r| r.offset).collect()
    };
    write(&p, data(None, false, 1)).await; // 0
    write(&p, data(Some((1, 0)), true, 2)).await; // 1, 2: aborted below
    write(&p, data(Some((2, 0)), true, 1)).await; // 3: committed below
    assert_eq!(values(&p, 0), [0], "stops at the last stable offset (1)");
    write(&p, marker(1, false)).await; // 4
    assert_eq!(values(&p, 0), [0], "producer 2's transaction still holds it at 3");
    write(&p, marker(2, true)).await; // 5
    assert_eq!(values(&p, 0), [0, 3], "aborted records and markers left out");
    assert_eq!(values(&p, 1), [3]);
    assert!(values(&p, 4).is_empty(), "only markers after 4: nothing more for now");
    write(&p, data(Some((1, 2)), true, 1)).await; // 6
    write(&p, marker(1, false)).await; // 7
    write(&p, data(None, false, 1)).await; // 8
    // A one-batch budget reads a marker or an aborted batch first: read
    // past, not taken for the end.
    let past = p.read_committed(4, 1).unwrap();
    assert_eq!(past.iter().map(|r| r.offset).collect::<Vec<_>>(), [8]);
}
