//! A partition's append queue: appends from many tasks are gathered and
//! written as one write group at a time ([`Log::write_many`]). Each append
//! is answered as soon as its group is written (offsets assigned); its
//! commit is a separate wait ([`crate::commit`]). The groups that must be
//! fsynced before they count as durable (group commit) wait for it on a
//! blocking thread per group, while the next groups are written, so each
//! fsync covers everything written meanwhile; when it completes the commit
//! point learns the group is durable.
//!
//! Why: the log's append blocks (a write, and under group commit an fsync),
//! so each append used to take a blocking-pool thread of its own. Small
//! appends from many producers (RocketMQ sends one message per request)
//! then cost two thread switches and a pool wake-up each, which was most
//! of the broker's CPU. Queued here, they cost an async wake-up each. The
//! appender that finds the queue idle writes the groups itself, on its own
//! worker (a write to the page cache takes microseconds), for a few rounds,
//! then hands what is left to the blocking pool; where every write fsyncs
//! (`every-write` durability) the blocking pool drains from the start.
//!
//! Each group written is applied to the partition's producer table before
//! its writers are answered (in log order, as only the drain writes), and
//! when it began a new segment the table's snapshot is saved.
//!
//! Invariants: at most one drain runs per partition, so appends are
//! written in the order they were queued; every queued append gets an
//! answer (its result, or a closed channel if the drain panicked, after
//! which the next append starts a fresh drain); the commit point hears of
//! a group's durability only once its policy allows it, and of a failure
//! before its waiters could be told anything else.

use std::sync::Arc;

use bytes::BytesMut;
use fjord_log::{AppendInfo, AppendOrigin, Log, LogError};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::commit::{CommitPoint, Stamp, Written};
use crate::error::{BrokerError, Result};
use crate::producers::{ProducerTable, facts_of};

type Reply = oneshot::Sender<fjord_log::Result<(AppendInfo, Written)>>;

/// Appends waiting for the partition's drain.
#[derive(Debug)]
pub(crate) struct AppendQueue {
    log: Arc<Log>,
    commit: Arc<CommitPoint>,
    producers: Arc<ProducerTable>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<(BytesMut, AppendOrigin, Reply)>,
    draining: bool,
}

impl AppendQueue {
    pub(crate) fn new(log: Arc<Log>, commit: Arc<CommitPoint>, producers: Arc<ProducerTable>) -> AppendQueue {
        AppendQueue { log, commit, producers, state: Mutex::default() }
    }

    /// Writes `data` with the others queued meanwhile; returns once it is
    /// written, with what to wait on for its commit.
    pub(crate) async fn append(
        self: &Arc<Self>,
        data: BytesMut,
        origin: AppendOrigin,
    ) -> Result<fjord_log::Result<(AppendInfo, Written)>> {
        let log = &self.log;
        if !self.producers.is_loaded() {
            // Once after the partition opened or was cut, so that its
            // writes keep the table (and its snapshots) current. Without
            // it writes go on: a later load replays them.
            if let Err(e) = self.producers.ensure_loaded(log).await {
                tracing::warn!(dir = %log.dir().display(), error = %e, "loading the producer state failed");
            }
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.state.lock();
            st.pending.push((data, origin, tx));
            !std::mem::replace(&mut st.draining, true)
        };
        // The appender that found the queue idle writes a few groups itself.
        if start && (log.write_fsyncs() || !self.drain(INLINE_ROUNDS)) {
            let queue = self.clone();
            // Not awaited: the drain outlives this append if others queue.
            drop(tokio::task::spawn_blocking(move || queue.drain(usize::MAX)));
        }
        rx.await.map_err(|_| BrokerError::internal("the partition's append task failed"))
    }

    /// Writes groups until the queue is empty (true) or `rounds` groups were
    /// written (false: still draining, the caller hands on).
    fn drain(&self, rounds: usize) -> bool {
        // Whatever way this ends (a panic included), the next append must
        // be able to start a drain, and nobody may wait on a lost reply.
        struct Reset<'a>(&'a AppendQueue);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                let mut st = self.0.state.lock();
                st.draining = false;
                st.pending.clear();
            }
        }
        let reset = Reset(self);
        for _ in 0..rounds {
            let group = {
                let mut st = self.state.lock();
                if st.pending.is_empty() {
                    // Idle again, under the lock: an appender queuing next
                    // starts a drain of its own, which `reset` (locking
                    // afresh) must not disturb.
                    st.draining = false;
                    std::mem::forget(reset);
                    return true;
                }
                std::mem::take(&mut st.pending)
            };
            let mut replies = Vec::with_capacity(group.len());
            let mut facts = Vec::with_capacity(group.len());
            let requests = group
                .into_iter()
                .map(|(data, origin, reply)| {
                    replies.push(reply);
                    facts.push((facts_of(&data), origin));
                    (data, origin)
                })
                .collect();
            let stamp = self.commit.stamp();
            let (results, mark) = self.log.write_many(requests);
            let end = results.iter().filter_map(|r| r.as_ref().ok()).map(|i| i.last_offset + 1).max();
            let failed = results.iter().any(|r| matches!(r, Err(LogError::Poisoned { .. } | LogError::Io { .. })));
            let aborted = self.producers.apply(
                facts
                    .iter()
                    .zip(&results)
                    .filter_map(|((f, origin), r)| r.as_ref().ok().map(|info| (f.as_slice(), *origin, info))),
            );
            if !aborted.is_empty()
                && let Err(e) = self.log.add_aborted(&aborted)
            {
                // Derived again by the load that follows (see `producers`).
                tracing::error!(dir = %self.log.dir().display(), error = %e, "indexing aborted transactions failed: reloading the producer state");
                self.producers.reset();
            }
            if end.is_some() {
                self.snapshot_if_rolled();
            }
            answer(stamp, results, replies);
            if let Some(end) = end {
                self.commit.appended(end);
            }
            if failed {
                // The log is poisoned: waiters past its durable point fail.
                self.commit.durability_failed();
            }
            match (mark, end) {
                (Some(mark), Some(end)) => {
                    let (log, commit) = (self.log.clone(), self.commit.clone());
                    // One waiter per group; concurrent waiters share fsyncs.
                    drop(tokio::task::spawn_blocking(move || match log.wait_durable_mark(mark) {
                        Ok(()) => commit.locally_durable(end),
                        Err(_) => commit.durability_failed(),
                    }));
                }
                (None, Some(end)) if !failed => self.commit.locally_durable(end),
                _ => {}
            }
        }
        // Still draining: the caller hands the queue on.
        std::mem::forget(reset);
        false
    }

    /// Saves the producer table's snapshot when the last group began a new
    /// segment (rare: a write and an fsync of a small file, here so no cut
    /// or write comes between the state and its save).
    fn snapshot_if_rolled(&self) {
        let Some((offset, bytes)) = self.producers.snapshot_due(self.log.active_segment_base()) else { return };
        if let Err(e) = self.log.save_snapshot(offset, &bytes) {
            tracing::warn!(dir = %self.log.dir().display(), offset, error = %e, "saving a producer-state snapshot failed");
        }
    }
}

fn answer(stamp: Stamp, results: Vec<fjord_log::Result<AppendInfo>>, replies: Vec<Reply>) {
    for (result, reply) in results.into_iter().zip(replies) {
        // The appender may have gone (its client disconnected); the append
        // stands either way, as a blocking append would.
        let _ = reply.send(result.map(|info| (info, CommitPoint::written(stamp, info.last_offset))));
    }
}

/// Groups an appender writes on its own worker before handing the rest of
/// the queue to the blocking pool.
const INLINE_ROUNDS: usize = 4;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use fjord_log::batch::{BatchBuilder, NewRecord};
    use fjord_log::{Durability, LogConfig, ReadBound, SystemClock};

    use super::*;

    fn one(value: String) -> BytesMut {
        let mut b = BatchBuilder::new(1_700_000_000_000);
        b.push(&NewRecord { value: Some(Bytes::from(value)), ..Default::default() });
        b.build()
    }

    /// Many concurrent appenders, inline groups and the pool's hand-over:
    /// every append is acknowledged with its own offset, in a gap-free log,
    /// and each one's record is stored at the offset it was told.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_each_get_their_own_offset() {
        for durability in [Durability::Interval(Duration::from_secs(60)), Durability::GroupCommit] {
            let dir = tempfile::tempdir().expect("tempdir");
            let cfg = LogConfig { durability, ..LogConfig::default() };
            let log = Arc::new(Log::open(dir.path(), cfg, Arc::new(SystemClock)).expect("open"));
            let commit = Arc::new(CommitPoint::new(log.clone()));
            let queue = Arc::new(AppendQueue::new(log.clone(), commit.clone(), Arc::default()));
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let (queue, commit) = (queue.clone(), commit.clone());
                    tokio::spawn(async move {
                        let appended = queue.append(one(format!("m{i}")), AppendOrigin::Leader { epoch: 0 }).await;
                        let (info, written) = appended.expect("queued").expect("appended");
                        commit.committed(written, crate::commit::Until::Committed).await.expect("committed");
                        (i, info.base_offset)
                    })
                })
                .collect();
            let mut offsets = Vec::new();
            for t in tasks {
                offsets.push(t.await.expect("task"));
            }
            let mut seen: Vec<u64> = offsets.iter().map(|(_, o)| *o).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..200).collect::<Vec<_>>(), "{durability:?}");
            assert_eq!(commit.high_watermark(), 200, "{durability:?}");
            let records = log.read_records(0, 1 << 20, ReadBound::HighWatermark).expect("read");
            for (i, offset) in offsets {
                let r = &records[offset as usize];
                assert_eq!(r.value.as_deref(), Some(format!("m{i}").as_bytes()));
            }
            // The drain notices the empty queue just after its last reply.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while queue.state.lock().draining {
                assert!(tokio::time::Instant::now() < deadline, "the queue never went idle");
                tokio::task::yield_now().await;
            }
        }
    }
}
