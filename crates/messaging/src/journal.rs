//! Node-local append-only logs (pop journal, half messages, transaction
//! journal; an earlier version's timer):
//! fjord-log logs of single-record batches, written without waiting and
//! made durable separately, so that a caller can write under its state lock
//! (keeping the journal in the order of state changes) and wait for the
//! fsync after releasing it (sharing one fsync with concurrent callers).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fjord_log::batch::{BatchBuilder, NewRecord, Record};
use fjord_log::{AppendOrigin, Clock, Durability, Log, LogConfig, ReadBound};

use crate::error::{MessagingError, Result};

/// One internal log and the durability its acknowledgements promise.
#[derive(Debug)]
pub(crate) struct Journal {
    log: Log,
    name: &'static str,
    durability: Durability,
}

impl Journal {
    /// Opens (recovering) the log in `dir`; `durability` is the broker's
    /// policy, applied by [`Journal::sync`].
    pub(crate) fn open(
        dir: &Path,
        name: &'static str,
        base: &LogConfig,
        durability: Durability,
        clock: Arc<dyn Clock>,
    ) -> Result<Journal> {
        let mut cfg = base.clone();
        // Written without waiting; `sync` applies the real policy.
        cfg.durability = Durability::Interval(std::time::Duration::from_secs(3600));
        cfg.retention_ms = None;
        cfg.retention_bytes = None;
        cfg.segment_bytes = cfg.segment_bytes.min(64 << 20);
        cfg.max_message_bytes = cfg.max_message_bytes.max(64 << 20);
        cfg.key_index.enabled = false;
        let log = Log::open(dir, cfg, clock).map_err(|e| MessagingError::log(name, e))?;
        Ok(Journal { log, name, durability })
    }

    /// Appends one record; returns its offset. Not yet durable.
    pub(crate) fn append(&self, rec: &NewRecord, now_ms: i64) -> Result<u64> {
        let mut b = BatchBuilder::new(now_ms);
        b.push(rec);
        let data = b.try_build().map_err(|e| MessagingError::log(self.name, e.into()))?;
        let info =
            self.log.append(data, AppendOrigin::Leader { epoch: 0 }).map_err(|e| MessagingError::log(self.name, e))?;
        self.log.set_high_watermark(info.last_offset + 1);
        Ok(info.base_offset)
    }

    /// Appends a record whose value is `value`.
    pub(crate) fn append_value(&self, value: Vec<u8>, now_ms: i64) -> Result<u64> {
        self.append(&NewRecord { value: Some(Bytes::from(value)), ..Default::default() }, now_ms)
    }

    /// Waits until everything up to `offset` is as durable as the policy
    /// promises: fsynced for `EveryWrite` and `GroupCommit`, written for
    /// `Interval` (the background flusher syncs it).
    pub(crate) fn sync(&self, offset: u64) -> Result<()> {
        match self.durability {
            Durability::EveryWrite | Durability::GroupCommit => {
                self.log.wait_durable(offset + 1).map_err(|e| MessagingError::log(self.name, e))
            }
            Durability::Interval(_) => Ok(()),
        }
    }

    /// One past the last record known to be on disk.
    #[cfg(test)]
    pub(crate) fn durable_end(&self) -> u64 {
        self.log.durable_offset()
    }

    /// Reads records from `offset` (to the log end), about `max_bytes`.
    pub(crate) fn read(&self, offset: u64, max_bytes: usize) -> Result<Vec<Record>> {
        self.log.read_records(offset, max_bytes, ReadBound::LogEnd).map_err(|e| MessagingError::log(self.name, e))
    }

    /// Calls `f` on every record from `offset` to the end.
    pub(crate) fn scan(&self, mut offset: u64, mut f: impl FnMut(Record) -> Result<()>) -> Result<()> {
        offset = offset.max(self.start());
        while offset < self.end() {
            let recs = self.read(offset, 1 << 20)?;
            let Some(last) = recs.last().map(|r| r.offset) else { break };
            for r in recs {
                f(r)?;
            }
            offset = last + 1;
        }
        Ok(())
    }

    pub(crate) fn start(&self) -> u64 {
        self.log.log_start_offset()
    }

    pub(crate) fn end(&self) -> u64 {
        self.log.log_end_offset()
    }

    /// Drops records below `offset` (whole segments are deleted).
    pub(crate) fn trim_before(&self, offset: u64) -> Result<()> {
        let offset = offset.min(self.end());
        self.log.delete_records_before(offset).map(|_| ()).map_err(|e| MessagingError::log(self.name, e))
    }

    /// Makes the log writable again after a failed write or fsync (a full
    /// disk) poisoned it: it is cut back to its durable point (see
    /// `fjord_log::Log::recover`). Returns the new end when it recovered,
    /// `None` when it was not poisoned. What the owner applied in memory
    /// from records past that point is the owner's to settle.
    pub(crate) fn recover(&self) -> Result<Option<u64>> {
        match self.log.recover() {
            Ok(Some(outcome)) => {
                tracing::warn!(
                    journal = self.name,
                    log_end = outcome.log_end,
                    previous_log_end = outcome.previous_log_end,
                    "journal writable again after a failed write"
                );
                Ok(Some(outcome.log_end))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(MessagingError::log(self.name, e)),
        }
    }

    /// Makes fsyncs fail (as a full or failing disk), for tests.
    #[cfg(test)]
    pub(crate) fn inject_fsync_failure(&self, fail: bool) {
        self.log.inject_fsync_failure(fail);
    }

    /// Fsyncs and closes cleanly.
    pub(crate) fn close(&self) -> Result<()> {
        self.log.close().map_err(|e| MessagingError::log(self.name, e))
    }
}
