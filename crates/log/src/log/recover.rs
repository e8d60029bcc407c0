//! Recovering a poisoned log in place, without a restart.
//!
//! After a failed write or fsync nothing written since the last successful
//! fsync can be trusted: the kernel may have dropped those dirty pages (or
//! marked them clean without writing them), so the page cache can show bytes
//! the disk does not hold, and a second fsync can report success for them.
//! Recovery therefore never retries the failed fsync. It cuts the log back
//! to its durable point (the end covered by the last successful fsync; under
//! interval durability the last flush, which is all that policy promised),
//! fsyncs the cut, and then runs exactly the recovery [`Log::open`] runs
//! after a crash (CRC scan of the tail, index rebuild) on fresh file handles,
//! and swaps the result in. Readers holding segments of the old state keep
//! their open files: they read what is still there or get a clean I/O error
//! for bytes cut away.

use std::os::unix::fs::FileExt;

use super::{Log, SyncState, pwrite_all};
use crate::checkpoint::sync_dir;
use crate::error::{LogError, Result};
use crate::segment::Segment;

/// Bytes before a cut that are written again before it is fsynced; covers
/// the page holding the cut for every common page size (4 KiB to 64 KiB).
const REWRITE_BEFORE_CUT: u64 = 64 * 1024;

/// What [`Log::recover`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOutcome {
    /// The log end before: everything written, durable or not.
    pub previous_log_end: u64,
    /// The high watermark before.
    pub previous_high_watermark: u64,
    /// The log end after: the durable point, or less if the CRC scan found
    /// a damaged batch before it. Below `previous_high_watermark` only when
    /// acknowledged records were dropped, which only interval durability
    /// allows.
    pub log_end: u64,
}

impl Log {
    /// Makes a poisoned log writable again: cuts it back to the durable
    /// point and re-runs crash recovery on it (see the module docs).
    /// Returns `Ok(None)` when the log is not poisoned. On error the log
    /// stays poisoned and recovery can simply be tried again later.
    ///
    /// Appends wait for their durability through the log and fail if a
    /// recovery happens in between, so nothing cut is ever acknowledged.
    /// Owners that instead call [`Log::wait_durable`] after their own
    /// appends, or keep state derived from writes not yet durable, must
    /// rebuild that state after a recovery (or not recover).
    pub fn recover(&self) -> Result<Option<RecoveryOutcome>> {
        let _w = self.writer.lock();
        let durable = {
            let mut s = self.sync.lock();
            // An fsync in flight works on the segments about to be replaced;
            // none can start afterwards, as the log is poisoned.
            while s.in_progress {
                self.synced.wait(&mut s);
            }
            if s.closed {
                return Err(LogError::Closed(self.dir.clone()));
            }
            if s.poison.is_none() {
                return Ok(None);
            }
            s.durable
        };
        let (previous_log_end, previous_high_watermark, cut, later) = {
            let inner = self.inner.read();
            let cut = inner.segments.range(..=durable).next_back().map(|(_, s)| s.clone());
            let later: Vec<_> = inner.segments.range(durable.saturating_add(1)..).map(|(_, s)| s.clone()).collect();
            (inner.log_end, inner.high_watermark, cut, later)
        };
        let cut = cut.ok_or_else(|| {
            LogError::Internal(format!("no segment holds the durable offset {durable} of {}", self.dir.display()))
        })?;
        // Positions below the durable point come from the in-memory index
        // and headers that were fsynced, so they can be trusted.
        let size = cut.size();
        let pos = cut.translate_offset(durable, size)?.map_or(size, |(pos, _)| pos);
        cut_segment(&cut, pos)?;
        for seg in &later {
            seg.delete_files()?;
        }
        sync_dir(&self.dir)?;
        // (The open below drops the snapshots past the new end too; said
        // here so none outlives the cut even if that open fails.)
        super::snapshots::delete_after(&self.dir, durable)?;
        // No clean-shutdown marker exists for a poisoned log (close skips
        // it), so this rescans the tail exactly as after a crash.
        let fresh = Log::open(self.dir.clone(), self.config(), self.clock.clone())?;
        // The throw-away log takes the old state with it when dropped.
        std::mem::swap(&mut *self.inner.write(), &mut *fresh.inner.write());
        let log_end = self.inner.read().log_end;
        {
            let mut s = self.sync.lock();
            let generation = s.generation + 1;
            *s = SyncState { durable: log_end, generation, ..SyncState::default() };
            self.synced.notify_all();
        }
        crate::instrument::poisoned_logs(-1.0);
        let dropped_acknowledged = log_end < previous_high_watermark;
        tracing::warn!(
            dir = %self.dir.display(), previous_log_end, log_end, dropped_acknowledged,
            "recovered poisoned log: cut back to its durable point, writable again"
        );
        Ok(Some(RecoveryOutcome { previous_log_end, previous_high_watermark, log_end }))
    }
}

/// Cuts `seg`'s file at `pos` and makes the cut durable.
fn cut_segment(seg: &Segment, pos: u64) -> Result<()> {
    let io = |op, e| LogError::io(op, &seg.log_path, e);
    seg.file.set_len(pos).map_err(|e| io("truncate segment", e))?;
    // The page holding the cut had its durable prefix fsynced before, but a
    // failed write-back of later bytes in the same page may have left the
    // disk copy damaged while the page cache still shows the good bytes:
    // writing the prefix again makes the disk hold what readers are served.
    let start = pos - pos % REWRITE_BEFORE_CUT;
    if start < pos {
        let mut buf = vec![0u8; (pos - start) as usize];
        seg.file.read_exact_at(&mut buf, start).map_err(|e| io("read segment", e))?;
        pwrite_all(&seg.file, &[&buf], start).map_err(|e| io("rewrite segment", e))?;
    }
    crate::instrument::fsync(|| seg.file.sync_all()).map_err(|e| io("fsync segment", e))
}

#[cfg(test)]
mod tests;
