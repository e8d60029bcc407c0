//! The leader side of a replica fetch.

use std::sync::Arc;
use std::time::Duration;

use fjord_broker::{Broker, Partition, TopicPartition};
use fjord_cluster_codec::{FetchPartition, FetchStatus, FetchedPartition, ReplicaFetch, ReplicaFetchResponse};
use futures_util::future::select_all;

/// Longest long poll a follower may ask for.
const MAX_HOLD: Duration = Duration::from_secs(5);

/// Answers follower `from`'s fetch.
pub(crate) async fn serve(broker: &Broker, from: u64, req: ReplicaFetch) -> Result<ReplicaFetchResponse, String> {
    let follower = i32::try_from(from).map_err(|_| format!("node id {from} out of range"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(req.max_wait_ms)).min(MAX_HOLD);
    let mut first = true;
    loop {
        let mut budget = req.max_bytes as usize;
        let mut waits = Vec::new();
        let mut out = Vec::with_capacity(req.partitions.len());
        let mut ready = false;
        for fp in &req.partitions {
            let (answer, partition) = answer(broker, follower, fp, &mut budget, first);
            ready |= answer.status != FetchStatus::Ok || !answer.records.is_empty();
            if let Some(p) = partition {
                waits.push((p, fp.fetch_offset));
            }
            out.push(answer);
        }
        first = false;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if ready || waits.is_empty() || left.is_zero() {
            return Ok(ReplicaFetchResponse { partitions: out });
        }
        // Nothing new anywhere: wait for any of them to grow.
        let futs = waits.iter().map(|(p, at)| Box::pin(p.wait_log_end_past(*at, left)));
        select_all(futs).await;
    }
}

/// One partition's answer, and the partition to long-poll on when it had
/// nothing to send.
pub(super) fn answer(
    broker: &Broker,
    follower: i32,
    fp: &FetchPartition,
    budget: &mut usize,
    record_progress: bool,
) -> (FetchedPartition, Option<Arc<Partition>>) {
    let mut out = FetchedPartition {
        topic: fp.topic.clone(),
        partition: fp.partition,
        status: FetchStatus::Ok,
        leader_epoch: -1,
        high_watermark: 0,
        log_start: 0,
        diverging: None,
        records: Default::default(),
    };
    let tp = TopicPartition::new(fp.topic.as_str(), fp.partition);
    let me = broker.config().node_id;
    let placed = broker.placement().and_then(|pl| pl.partition(&tp).cloned());
    let Some(placed) = placed else {
        out.status = FetchStatus::UnknownPartition;
        return (out, None);
    };
    out.leader_epoch = placed.leader_epoch;
    let Some(p) = broker.topic(&fp.topic).and_then(|t| t.partition(fp.partition)) else {
        out.status = FetchStatus::UnknownPartition;
        return (out, None);
    };
    if placed.leader != me || !placed.replicas.contains(&follower) {
        out.status = FetchStatus::NotLeader;
        return (out, None);
    }
    if fp.leader_epoch < placed.leader_epoch {
        out.status = FetchStatus::FencedLeaderEpoch;
        return (out, None);
    }
    if fp.leader_epoch > placed.leader_epoch || p.leader_epoch() < placed.leader_epoch {
        out.status = FetchStatus::UnknownLeaderEpoch;
        return (out, None);
    }
    out.high_watermark = p.high_watermark();
    out.log_start = p.log_start_offset();
    // A follower whose log ends below this log's start (retention, a trim)
    // starts over there. Said before the divergence check: with the epoch
    // cache cut from the start too, that check finds no epoch so old and
    // sends the follower to cut where its log already ends, again and
    // again (fjord-chaos: a replica stuck for good on `__fjord_pop` shards,
    // whose log start moves with their snapshot trims).
    if fp.fetch_offset < out.log_start {
        out.status = FetchStatus::OffsetOutOfRange;
        return (out, None);
    }
    // KIP-320: the follower's last epoch must end, in this log, at or past
    // its log end; otherwise its tail diverged and is cut there.
    if fp.last_fetched_epoch >= 0 && fp.fetch_offset > 0 {
        match p.end_offset_for_epoch(fp.last_fetched_epoch) {
            Some((epoch, end)) if epoch == fp.last_fetched_epoch && end >= fp.fetch_offset => {}
            Some((epoch, end)) => {
                out.status = FetchStatus::Diverging;
                out.diverging = Some((epoch.max(0), end.min(fp.fetch_offset)));
                return (out, None);
            }
            None => {
                out.status = FetchStatus::Diverging;
                out.diverging = Some((0, p.log_start_offset().min(fp.fetch_offset)));
                return (out, None);
            }
        }
    }
    if record_progress {
        p.follower_fetched(follower, fp.fetch_offset, fp.durable_offset);
        out.high_watermark = p.high_watermark();
    }
    if fp.fetch_offset > p.log_end_offset() {
        out.status = FetchStatus::OffsetOutOfRange;
        return (out, None);
    }
    if fp.fetch_offset == p.log_end_offset() || *budget == 0 {
        return (out, Some(p));
    }
    match p.read_for_replica(fp.fetch_offset, *budget) {
        Ok(read) => {
            *budget = budget.saturating_sub(read.records.len());
            out.records = read.records;
            out.log_start = read.log_start;
            (out, None)
        }
        Err(e) => {
            tracing::warn!(partition = %tp, offset = fp.fetch_offset, error = %e, "replica read failed");
            out.status = FetchStatus::OffsetOutOfRange;
            (out, None)
        }
    }
}
