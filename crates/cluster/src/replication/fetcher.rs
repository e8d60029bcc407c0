//! The follower side: one fetch loop per leader node this node follows
//! partitions on, started and ended as the placement changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Partition, PartitionPlacement, TopicPartition};
use fjord_cluster_codec::{FetchPartition, FetchStatus, FetchedPartition, Kind, ReplicaFetch, ReplicaFetchResponse};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{MAX_BYTES, MAX_WAIT};
use crate::node::ClusterNode;

/// Longest wait between attempts after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Keeps one fetch loop running per leader node this node follows
/// partitions on, until `stop`.
pub(crate) async fn run(node: Arc<ClusterNode>, mut stop: watch::Receiver<bool>) {
    let mut changes = node.broker.subscribe_placement();
    let mut loops: HashMap<i32, JoinHandle<()>> = HashMap::new();
    loop {
        loops.retain(|_, h| !h.is_finished());
        for leader in leaders_followed(&node) {
            loops.entry(leader).or_insert_with(|| tokio::spawn(fetch_loop(node.clone(), leader, stop.clone())));
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The leader nodes of the partitions this node follows.
fn leaders_followed(node: &ClusterNode) -> Vec<i32> {
    let me = node.broker.config().node_id;
    let Some(placement) = node.broker.placement() else { return Vec::new() };
    let mut leaders: Vec<i32> = placement
        .topics
        .values()
        .flatten()
        .filter(|p| p.leader >= 0 && p.leader != me && p.replicas.contains(&me))
        .map(|p| p.leader)
        .collect();
    leaders.sort_unstable();
    leaders.dedup();
    leaders
}

/// What this node follows on `leader`: each partition with the epoch the
/// placement gives it.
fn followed(node: &ClusterNode, leader: i32) -> Vec<(TopicPartition, i32, Arc<Partition>)> {
    let me = node.broker.config().node_id;
    let Some(placement) = node.broker.placement() else { return Vec::new() };
    let mut out = Vec::new();
    for (name, parts) in &placement.topics {
        let Some(topic) = node.broker.topic(name) else { continue };
        for (i, p) in parts.iter().enumerate() {
            if follows_on(p, me, leader)
                && let Some(partition) = topic.partition(i as u32)
            {
                out.push((TopicPartition::new(name.as_str(), i as u32), p.leader_epoch, partition));
            }
        }
    }
    out
}

/// Whether the placement still has this node follow `tp` on `leader` in
/// `epoch`.
fn still_follows(node: &ClusterNode, tp: &TopicPartition, leader: i32, epoch: i32) -> bool {
    let me = node.broker.config().node_id;
    node.broker
        .placement()
        .and_then(|pl| pl.partition(tp).cloned())
        .is_some_and(|p| p.leader_epoch == epoch && follows_on(&p, me, leader))
}

/// Whether node `me` holds a replica of `p` that `leader` (not `me`) leads.
fn follows_on(p: &PartitionPlacement, me: i32, leader: i32) -> bool {
    p.leader == leader && p.leader != me && p.replicas.contains(&me)
}

/// Fetches from `leader` until this node follows nothing there.
async fn fetch_loop(node: Arc<ClusterNode>, leader: i32, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut parts = followed(&node, leader);
        if parts.is_empty() {
            return;
        }
        // A replica whose log cannot be written (poisoned by a disk fault)
        // does not fetch until it is recovered: its leader then sees no
        // progress from it and keeps it out of (or drops it from) the
        // in-sync set, as Kafka takes a replica on a failed log dir offline.
        parts.retain(|(_, _, p)| p.write_failure().is_none());
        let ok = !parts.is_empty()
            && match fetch_once(&node, leader, &parts).await {
                Ok(clean) => clean,
                Err(e) => {
                    tracing::debug!(leader, error = %e, "replica fetch failed");
                    false
                }
            };
        if ok {
            backoff = Duration::from_millis(50);
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One fetch and what it brought; false when some partition must wait
/// (newer metadata, an unreachable leader).
async fn fetch_once(
    node: &ClusterNode,
    leader: i32,
    parts: &[(TopicPartition, i32, Arc<Partition>)],
) -> Result<bool, String> {
    let req = ReplicaFetch {
        max_wait_ms: MAX_WAIT.as_millis() as u32,
        max_bytes: MAX_BYTES,
        partitions: parts
            .iter()
            .map(|(tp, epoch, p)| FetchPartition {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                leader_epoch: *epoch,
                fetch_offset: p.log_end_offset(),
                last_fetched_epoch: p.last_epoch(),
                durable_offset: p.replica_durable_end(),
            })
            .collect(),
    };
    let asked: Vec<u64> = req.partitions.iter().map(|f| f.fetch_offset).collect();
    let id = u64::try_from(leader).map_err(|_| format!("node id {leader}"))?;
    let addr = node.address_of(id).ok_or_else(|| format!("no address for node {leader}"))?;
    let body = req.encode().map_err(|e| e.to_string())?;
    let reply = node
        .peers
        .call(id, &addr, Kind::ReplicaFetch, body, MAX_WAIT + Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let resp = ReplicaFetchResponse::decode(reply).map_err(|e| e.to_string())?;
    if resp.partitions.len() != parts.len() {
        return Err(format!("node {leader} answered {} of {} partitions", resp.partitions.len(), parts.len()));
    }
    let mut clean = true;
    let mut appended = Vec::new();
    for (((tp, epoch, p), answer), asked) in parts.iter().zip(resp.partitions).zip(asked) {
        // The placement may have moved on during the long poll: what the
        // old leader sent is no longer this replica's to take.
        if !still_follows(node, tp, leader, *epoch) {
            clean = false;
            continue;
        }
        // Nor is an answer for a log that changed meanwhile (emptied as a
        // removed replica and added back in the same leader epoch, cut):
        // batches for the old end would leave a hole below them (a replica
        // batch may skip offsets: compaction does), as Kafka's fetcher
        // drops a partition's data when its fetch offset moved.
        if p.log_end_offset() != asked {
            clean = false;
            continue;
        }
        match apply(tp, p, answer).await {
            Applied::Appended(end) => appended.push((p, end)),
            Applied::Nothing => {}
            Applied::Wait => clean = false,
        }
    }
    // Report what is durable with the next fetch, not what is merely
    // written: the leader's commit point counts only durable copies.
    for (p, end) in appended {
        p.wait_replica_durable(end, Duration::from_secs(5)).await;
    }
    Ok(clean)
}

pub(super) enum Applied {
    Appended(u64),
    Nothing,
    Wait,
}

pub(super) async fn apply(tp: &TopicPartition, p: &Arc<Partition>, answer: FetchedPartition) -> Applied {
    match answer.status {
        FetchStatus::Ok => {
            let whole = whole_batches(&answer.records);
            let mut out = Applied::Nothing;
            if !whole.is_empty() {
                match p.append_replica(BytesMut::from(&whole[..])).await {
                    Ok(Ok(info)) => out = Applied::Appended(info.last_offset + 1),
                    Ok(Err(e)) | Err(fjord_broker::BrokerError::Log { source: e, .. }) => {
                        tracing::warn!(partition = %tp, error = %e, "could not append the leader's batches");
                        return Applied::Wait;
                    }
                    Err(e) => {
                        tracing::warn!(partition = %tp, error = %e, "could not append the leader's batches");
                        return Applied::Wait;
                    }
                }
            }
            if let Err(e) = p.follow_leader(answer.high_watermark, answer.log_start) {
                tracing::warn!(partition = %tp, error = %e, "could not follow the leader's log start");
            }
            out
        }
        FetchStatus::Diverging => {
            let Some((epoch, end)) = answer.diverging else { return Applied::Wait };
            // Cut where both logs last agree (KIP-320): the leader's end of
            // that epoch, or where ours ends if earlier — the end of our
            // largest epoch up to it, which need not be that epoch: a log
            // that never saw it must lose what it wrote after its own
            // earlier epoch (Kafka's follower does the same; the next fetch
            // goes on from there). With no epoch that old, nothing here
            // is known to agree: back to the log start.
            let start = p.log_start_offset();
            let ours = p.end_offset_for_epoch(epoch).map_or(start, |(_, o)| o);
            let cut = end.min(ours).max(start);
            let part = p.clone();
            match on_log(tp, "cut a diverged tail", move || part.truncate_to(cut)).await {
                Some(new_end) => {
                    tracing::info!(partition = %tp, cut, new_end, "cut a tail that diverged from the leader's");
                    Applied::Nothing
                }
                None => Applied::Wait,
            }
        }
        FetchStatus::OffsetOutOfRange if p.log_end_offset() < answer.log_start => {
            // Everything here is below what the leader keeps: start over
            // where its log begins.
            let (part, start) = (p.clone(), answer.log_start);
            match on_log(tp, "start the log at the leader's log start", move || part.reset_replica(start)).await {
                Some(()) => Applied::Nothing,
                None => Applied::Wait,
            }
        }
        FetchStatus::OffsetOutOfRange => {
            tracing::warn!(partition = %tp, log_start = answer.log_start, end = p.log_end_offset(),
                "this replica's log end is outside the leader's log");
            Applied::Wait
        }
        // Newer metadata will tell: fenced, not the leader, unknown here.
        _ => Applied::Wait,
    }
}

/// Runs blocking file work `f` on a partition's log off the async workers;
/// `None` (after a warning naming `what`) when it failed or panicked.
async fn on_log<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    tp: &TopicPartition,
    what: &str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(partition = %tp, error = %e, "could not {what}");
            None
        }
        Err(e) => {
            tracing::warn!(partition = %tp, error = %e, "trying to {what} panicked");
            None
        }
    }
}

/// The prefix of `records` made of whole batches (a fetch's byte budget
/// may cut the last one).
fn whole_batches(records: &Bytes) -> Bytes {
    let mut at = 0usize;
    while records.len() >= at + 12 {
        let len = u32::from_be_bytes([records[at + 8], records[at + 9], records[at + 10], records[at + 11]]) as usize;
        let next = at + 12 + len;
        if next > records.len() {
            break;
        }
        at = next;
    }
    records.slice(..at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_last_batch_is_left_for_the_next_fetch() {
        let mut b = Vec::new();
        for len in [3u32, 5] {
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&len.to_be_bytes());
            b.extend(std::iter::repeat_n(7u8, len as usize));
        }
        let all = Bytes::from(b);
        assert_eq!(whole_batches(&all).len(), all.len());
        assert_eq!(whole_batches(&all.slice(..all.len() - 1)).len(), 15);
        assert_eq!(whole_batches(&all.slice(..10)).len(), 0);
    }
}
