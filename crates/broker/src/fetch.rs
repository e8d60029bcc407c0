//! Fetch with long polling.
//!
//! A fetch that finds fewer than `min_bytes` waits until a partition it asks
//! for gets new data or the deadline passes. Waiting is on each partition's
//! high-watermark watch channel, subscribed *before* reading, so an append
//! between the read and the wait still wakes the fetch: no busy polling and
//! no lost wake-ups.

use std::sync::Arc;
use std::time::Duration;

use fjord_log::{LogSlice, ReadBound};
use futures_util::future::select_all;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::{BrokerError, Result, blocking};
use crate::partition::{Partition, TopicPartition};

/// One partition of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    /// Which partition.
    pub tp: TopicPartition,
    /// First offset wanted.
    pub offset: u64,
    /// Most bytes for this partition (at least one whole batch is returned).
    pub max_bytes: usize,
}

/// A fetch over several partitions.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Partitions in priority order.
    pub partitions: Vec<FetchPartition>,
    /// Longest wait for `min_bytes`.
    pub max_wait: Duration,
    /// Answer as soon as this many bytes are available.
    pub min_bytes: usize,
    /// Most bytes in the whole response.
    pub max_bytes: usize,
    /// Replicas read to the log end; consumers to the high watermark.
    pub bound: ReadBound,
    /// Whether partitions this node follows in sync are read too, up to
    /// their high watermark (KIP-392); otherwise only led ones.
    pub follower_reads: bool,
    /// Consumers that see committed transactions only (Kafka's
    /// `read_committed`): each partition is read up to its last stable
    /// offset, and answered with the aborted transactions of what is
    /// returned. Ignored for other bounds.
    pub read_committed: bool,
}

/// Data for one partition.
#[derive(Debug, Clone)]
pub struct PartitionData {
    /// Batches, if any.
    pub slice: Option<LogSlice>,
    /// High watermark at read time.
    pub high_watermark: u64,
    /// Log start offset at read time.
    pub log_start_offset: u64,
    /// Log end offset at read time.
    pub log_end_offset: u64,
    /// Last stable offset at read time (consumers' reads; the high
    /// watermark for others).
    pub last_stable_offset: u64,
    /// The aborted transactions with records in what was returned
    /// (`read_committed` reads only).
    pub aborted: Vec<fjord_log::AbortedTxn>,
}

/// Result for one partition.
#[derive(Debug)]
pub struct FetchedPartition {
    /// Which partition.
    pub tp: TopicPartition,
    /// Its data or why there is none.
    pub result: Result<PartitionData>,
}

impl Broker {
    /// Fetches from several partitions, waiting up to `max_wait` for
    /// `min_bytes` to become available. Unknown partitions get their error
    /// at once (without waiting), next to data from the others.
    pub async fn fetch(&self, req: FetchRequest) -> Vec<FetchedPartition> {
        let deadline = Instant::now() + req.max_wait;
        let mut lookups: Vec<Result<Arc<Partition>>> = req
            .partitions
            .iter()
            .map(|p| self.fetchable_partition(&p.tp, req.follower_reads).map(|(p, _)| p))
            .collect();
        let known: Vec<Option<Arc<Partition>>> = lookups.iter().map(|r| r.as_ref().ok().cloned()).collect();
        let lookup_failed = known.iter().any(Option::is_none);
        let mut shutdown = self.shutdown_signal();
        loop {
            let mut watchers: Vec<_> = known.iter().flatten().map(|p| p.subscribe()).collect();
            // Consumers' reads know the last stable offset (after the
            // subscription: a later change still wakes the wait).
            let mut stable = Vec::with_capacity(known.len());
            for p in &known {
                stable.push(match p {
                    Some(p) if matches!(req.bound, ReadBound::HighWatermark) => Some(p.last_stable_offset().await),
                    _ => None,
                });
            }
            let mut results = read_all(&req, &known, stable).await;
            let bytes: usize = results
                .iter()
                .flatten()
                .filter_map(|r| r.as_ref().ok())
                .filter_map(|d| d.slice.as_ref())
                .map(LogSlice::len)
                .sum();
            let read_failed = results.iter().flatten().any(Result::is_err);
            let done = bytes >= req.min_bytes.max(1)
                || lookup_failed
                || read_failed
                || watchers.is_empty()
                || Instant::now() >= deadline
                || *shutdown.borrow();
            if !done {
                let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = changed => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            // Consumers' traffic only; replicas read to the log end.
            let consumer = matches!(req.bound, ReadBound::HighWatermark);
            for (fp, (read, p)) in req.partitions.iter().zip(results.iter().zip(known.iter())) {
                if consumer && let (Some(Ok(PartitionData { slice: Some(slice), .. })), Some(p)) = (read, p) {
                    let records = slice.end_offset.saturating_sub(fp.offset.max(slice.first_offset));
                    p.traffic.fetched(records, slice.len() as u64);
                    self.traffic.fetched(records, slice.len() as u64);
                }
            }
            return req
                .partitions
                .iter()
                .zip(results.iter_mut().zip(lookups.iter_mut()))
                .map(|(fp, (read, lookup))| {
                    let result = match (read.take(), std::mem::replace(lookup, Err(BrokerError::ShuttingDown))) {
                        (Some(r), _) => r,
                        (None, Err(e)) => Err(e),
                        (None, Ok(_)) => Err(BrokerError::internal("partition was not read")),
                    };
                    FetchedPartition { tp: fp.tp.clone(), result }
                })
                .collect();
        }
    }
}

/// One partition to read: what is asked, the partition if found, and its
/// last stable offset (consumers' reads).
type Work = (FetchPartition, Option<Arc<Partition>>, Option<Result<u64>>);

/// Reads every known partition in one blocking task, sharing the response
/// byte budget in request order. `None` marks partitions that were not
/// found; `stable`: each one's last stable offset, for consumers' reads.
async fn read_all(
    req: &FetchRequest,
    known: &[Option<Arc<Partition>>],
    stable: Vec<Option<Result<u64>>>,
) -> Vec<Option<Result<PartitionData>>> {
    let work: Vec<Work> = req
        .partitions
        .iter()
        .cloned()
        .zip(known.iter().cloned())
        .zip(stable)
        .map(|((fp, p), lso)| (fp, p, lso))
        .collect();
    let (max_total, bound, read_committed) = (req.max_bytes, req.bound, req.read_committed);
    let n = work.len();
    let read = blocking(move || {
        let mut budget = max_total;
        work.into_iter()
            .map(|(fp, p, lso)| {
                let p = p?;
                let lso = match lso.transpose() {
                    Ok(lso) => lso,
                    Err(e) => return Some(Err(e)),
                };
                let bound = match lso {
                    Some(lso) if read_committed => ReadBound::Below(lso),
                    _ => bound,
                };
                let result = p.log().read(fp.offset, fp.max_bytes.min(budget), bound);
                Some(match result {
                    Ok(r) => {
                        // The first partition with data may exceed the budget by
                        // one batch (so oversized batches never get stuck);
                        // after the budget is spent, partitions return no data.
                        let slice = if budget == 0 { None } else { r.slice };
                        budget = budget.saturating_sub(slice.as_ref().map_or(0, LogSlice::len));
                        let aborted = match &slice {
                            Some(s) if read_committed && lso.is_some() => {
                                p.aborted_transactions(fp.offset, s.end_offset)
                            }
                            _ => Vec::new(),
                        };
                        Ok(PartitionData {
                            slice,
                            high_watermark: r.high_watermark,
                            log_start_offset: r.log_start_offset,
                            log_end_offset: r.log_end_offset,
                            last_stable_offset: lso.unwrap_or(r.high_watermark).min(r.high_watermark),
                            aborted,
                        })
                    }
                    Err(e) => Err(BrokerError::log(fp.tp.to_string(), e)),
                })
            })
            .collect::<Vec<_>>()
    })
    .await;
    match read {
        Ok(v) => v,
        Err(e) => {
            (0..n).map(|_| Some(Err(BrokerError::internal(format!("reading the partitions failed: {e}"))))).collect()
        }
    }
}
