//! An earlier version's node-local append-only logs (pop journal, half
//! messages, transaction journal, timer), read once to move their state
//! onto the internal topics:
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

    /// Fsyncs and closes cleanly.
    pub(crate) fn close(&self) -> Result<()> {
        self.log.close().map_err(|e| MessagingError::log(self.name, e))
    }
}
