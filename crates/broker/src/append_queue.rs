//! A partition's append queue: appends from many tasks are gathered and
//! written as one write group at a time ([`Log::write_many`]); the groups
//! that must be fsynced before they are acknowledged (group commit) wait
//! for it on a blocking thread per group, while the next groups are
//! written, so each fsync covers everything written meanwhile.
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
//! Invariants: at most one drain runs per partition, so appends are
//! written in the order they were queued; every queued append gets an
//! answer (its result, or a closed channel if the drain panicked, after
//! which the next append starts a fresh drain); nothing is acknowledged
//! before its durability policy allows it.

use std::sync::Arc;

use bytes::BytesMut;
use fjord_log::{AppendInfo, AppendOrigin, Log};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{BrokerError, Result};

type Reply = oneshot::Sender<fjord_log::Result<AppendInfo>>;

/// Appends waiting for the partition's drain.
#[derive(Debug, Default)]
pub(crate) struct AppendQueue {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<(BytesMut, AppendOrigin, Reply)>,
    draining: bool,
}

impl AppendQueue {
    /// Appends `data` to `log` with the others queued meanwhile; returns
    /// once the log's durability policy acknowledged it.
    pub(crate) async fn append(
        self: &Arc<Self>,
        log: &Arc<Log>,
        data: BytesMut,
        origin: AppendOrigin,
    ) -> Result<fjord_log::Result<AppendInfo>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.state.lock();
            st.pending.push((data, origin, tx));
            !std::mem::replace(&mut st.draining, true)
        };
        // The appender that found the queue idle writes a few groups itself.
        if start && (log.write_fsyncs() || !self.drain(log, INLINE_ROUNDS)) {
            let (queue, log) = (self.clone(), log.clone());
            // Not awaited: the drain outlives this append if others queue.
            drop(tokio::task::spawn_blocking(move || queue.drain(&log, usize::MAX)));
        }
        rx.await.map_err(|_| BrokerError::internal("the partition's append task failed"))
    }

    /// Writes groups until the queue is empty (true) or `rounds` groups were
    /// written (false: still draining, the caller hands on).
    fn drain(&self, log: &Arc<Log>, rounds: usize) -> bool {
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
            let requests = group
                .into_iter()
                .map(|(data, origin, reply)| {
                    replies.push(reply);
                    (data, origin)
                })
                .collect();
            let (results, mark) = log.write_many(requests);
            match mark {
                None => answer(results, replies),
                Some(mark) => {
                    let log = log.clone();
                    // One waiter per group; concurrent waiters share fsyncs.
                    drop(tokio::task::spawn_blocking(move || {
                        let mut results = results;
                        if let Err(e) = log.wait_durable_mark(mark) {
                            log.fail_unsynced(&mut results, &e);
                        }
                        answer(results, replies);
                    }));
                }
            }
        }
        // Still draining: the caller hands the queue on.
        std::mem::forget(reset);
        false
    }
}

fn answer(results: Vec<fjord_log::Result<AppendInfo>>, replies: Vec<Reply>) {
    for (result, reply) in results.into_iter().zip(replies) {
        // The appender may have gone (its client disconnected); the append
        // stands either way, as a blocking append would.
        let _ = reply.send(result);
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
            let queue = Arc::new(AppendQueue::default());
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let (queue, log) = (queue.clone(), log.clone());
                    tokio::spawn(async move {
                        let info = queue.append(&log, one(format!("m{i}")), AppendOrigin::Leader { epoch: 0 }).await;
                        (i, info.expect("queued").expect("appended").base_offset)
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
            let records = log.read_records(0, 1 << 20, ReadBound::LogEnd).expect("read");
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
