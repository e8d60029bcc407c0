//! openraft's `RaftLogStorage` over [`LogDisk`].
//!
//! The entries live in memory too ([`LogShared`]), behind a lock that
//! readers ([`LogReader`], used concurrently by replication tasks) take
//! only to clone entries out. Every write runs on the blocking pool and
//! does the disk part and then the memory part under the writer's lock, as
//! one step: an `append` whose future were dropped still leaves memory and
//! disk agreeing. openraft serializes writes (`&mut self`); the writer lock
//! only carries the state into the blocking task. No lock is held across an
//! `.await`.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::{Mutex, RwLock};

use super::files::blocking;
use super::log_file::{LogDisk, LogEntry};
use crate::{ControllerError, NodeId, TypeConfig};

/// The controller's durable Raft log, vote and committed id.
#[derive(Debug)]
pub struct LogStore {
    inner: Arc<Inner>,
}

/// A read handle on the log, for openraft's replication tasks: cheap to
/// clone, usable concurrently with writes.
#[derive(Debug, Clone)]
pub struct LogReader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Writer state; locked only on the blocking pool (and briefly by
    /// `read_vote`/`read_committed`).
    disk: Mutex<LogDisk>,
    shared: RwLock<LogShared>,
}

/// What readers see.
#[derive(Debug, Default)]
struct LogShared {
    /// Consecutive entries after `last_purged`.
    entries: VecDeque<LogEntry>,
    last_purged: Option<LogId<NodeId>>,
}

impl LogShared {
    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries.back().map(|e| e.log_id).or(self.last_purged)
    }

    /// The index the next appended entry must have, if the log constrains it.
    fn next_index(&self) -> Option<u64> {
        self.last_log_id().map(|l| l.index + 1)
    }

    fn get<RB: RangeBounds<u64>>(&self, range: &RB) -> Vec<LogEntry> {
        let (Some(first), Some(last)) = (self.entries.front(), self.entries.back()) else {
            return Vec::new();
        };
        let (first, last) = (first.log_id.index, last.log_id.index);
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        let (lo, hi) = (start.max(first), end.min(last + 1));
        if lo >= hi {
            return Vec::new();
        }
        self.entries.range((lo - first) as usize..(hi - first) as usize).cloned().collect()
    }
}

impl LogStore {
    /// Opens the log in `dir` (blocking).
    pub(super) fn open(dir: &Path) -> Result<LogStore, ControllerError> {
        let (disk, opened) = LogDisk::open(dir)?;
        let shared = LogShared { entries: opened.entries.into(), last_purged: opened.last_purged };
        Ok(LogStore { inner: Arc::new(Inner { disk: Mutex::new(disk), shared: RwLock::new(shared) }) })
    }

    /// Runs one write on the blocking pool with the writer's state.
    async fn write<T, F>(&self, f: F) -> Result<T, ControllerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogDisk, &RwLock<LogShared>) -> Result<T, ControllerError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || f(&mut inner.disk.lock(), &inner.shared)).await
    }

    async fn append_entries(&self, entries: Vec<LogEntry>) -> Result<(), ControllerError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(move |disk, shared| {
            // Entries at or below the purge point are covered by a snapshot
            // already: appending them is a no-op (openraft's storage suite
            // does it; a running node does not).
            let (mut expected, purged) = {
                let shared = shared.read();
                (shared.next_index(), shared.last_purged.map(|p| p.index))
            };
            let entries: Vec<LogEntry> = match purged {
                Some(p) => entries.into_iter().filter(|e| e.log_id.index > p).collect(),
                None => entries,
            };
            if entries.is_empty() {
                return Ok(());
            }
            for e in &entries {
                match expected {
                    Some(x) if x != e.log_id.index => {
                        return Err(ControllerError::NotContiguous { expected: x, got: e.log_id.index });
                    }
                    _ => expected = Some(e.log_id.index + 1),
                }
            }
            disk.append(&entries)?;
            shared.write().entries.extend(entries);
            Ok(())
        })
        .await
    }

    #[cfg(test)]
    pub(super) fn file_len(&self) -> u64 {
        self.inner.disk.lock().file_len()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError<NodeId>> {
        Ok(self.inner.shared.read().get(&range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError<NodeId>> {
        Ok(self.inner.shared.read().get(&range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let shared = self.inner.shared.read();
        Ok(LogState { last_purged_log_id: shared.last_purged, last_log_id: shared.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader { inner: self.inner.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.write(move |disk, _| disk.save_vote(&vote)).await.map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.disk.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.write(move |disk, _| disk.save_committed(committed)).await.map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.disk.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Written and fsynced before the callback; openraft awaits it, so it
        // is called on every path.
        match self.append_entries(entries.into_iter().collect()).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(io::Error::other(e)));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let index = log_id.index;
        self.write(move |disk, shared| {
            disk.truncate(index)?;
            let mut shared = shared.write();
            while shared.entries.back().is_some_and(|e| e.log_id.index >= index) {
                shared.entries.pop_back();
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write(move |disk, shared| {
            if shared.read().last_purged.is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            disk.purge(&log_id)?;
            let mut shared = shared.write();
            shared.last_purged = Some(log_id);
            while shared.entries.front().is_some_and(|e| e.log_id.index <= log_id.index) {
                shared.entries.pop_front();
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
