//! Retention, record deletion, truncation and clean shutdown.

use std::sync::Arc;

use super::{CLEAN_SHUTDOWN, Inner, LOG_START, Log, RECOVERY_POINT};
use crate::checkpoint::{sync_dir, write_atomic, write_u64};
use crate::error::{LogError, Result};
use crate::segment::Segment;

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes freed.
    pub bytes_deleted: u64,
    /// Log start offset afterwards.
    pub log_start_offset: u64,
}

impl Log {
    /// Deletes whole segments that are expired by time, push the log over its
    /// size limit, or lie entirely below the log start offset. The active
    /// segment is rolled first if it is itself expired by time, so an idle
    /// partition's old data does not live forever.
    pub fn enforce_retention(&self) -> Result<RetentionOutcome> {
        let cfg = self.config.read().clone();
        let now = self.clock.now_ms();
        let _w = self.writer.lock();
        let expired = |s: &Segment| {
            let max_ts = s.meta.read().max_timestamp;
            cfg.retention_ms.is_some_and(|r| max_ts != i64::MIN && max_ts < now.saturating_sub(r))
        };
        let active = self.inner.read().active()?.clone();
        if active.size() > 0 && expired(&active) {
            self.roll(&active, active.next_offset())?;
        }
        let mut inner = self.inner.write();
        let mut total: u64 = inner.segments.values().map(|s| s.size()).sum();
        let mut victims = Vec::new();
        let candidates: Vec<Arc<Segment>> =
            inner.segments.values().take(inner.segments.len().saturating_sub(1)).cloned().collect();
        for seg in candidates {
            let size = seg.size();
            let below_start = seg.next_offset() <= inner.log_start;
            let over_size = cfg.retention_bytes.is_some_and(|limit| total > limit && total - size >= limit);
            if below_start || expired(&seg) || over_size {
                total -= size;
                victims.push(seg);
            } else {
                break;
            }
        }
        let outcome = self.remove_segments(&mut inner, &victims)?;
        if outcome.segments_deleted > 0 {
            tracing::info!(dir = %self.dir.display(), segments = outcome.segments_deleted, bytes = outcome.bytes_deleted, log_start = outcome.log_start_offset, "retention deleted segments");
        }
        Ok(outcome)
    }

    fn remove_segments(&self, inner: &mut Inner, victims: &[Arc<Segment>]) -> Result<RetentionOutcome> {
        let mut out = RetentionOutcome { log_start_offset: inner.log_start, ..Default::default() };
        for seg in victims {
            inner.segments.remove(&seg.base_offset);
            out.bytes_deleted += seg.size();
            out.segments_deleted += 1;
            seg.delete_files()?;
        }
        if let Some(first) = inner.segments.keys().next().copied()
            && first > inner.log_start
        {
            inner.log_start = first;
            write_u64(&self.dir.join(LOG_START), first)?;
            inner.epochs.truncate_from_start(first)?;
        }
        super::snapshots::delete_before(&self.dir, inner.log_start)?;
        if !victims.is_empty() {
            sync_dir(&self.dir)?;
        }
        out.log_start_offset = inner.log_start;
        Ok(out)
    }

    /// Makes offsets below `offset` unreadable (Kafka's DeleteRecords) and
    /// deletes the segments entirely below it. `offset` may not exceed the
    /// high watermark. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64> {
        let _w = self.writer.lock();
        let mut inner = self.inner.write();
        if offset > inner.high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: inner.log_start,
                log_end: inner.high_watermark,
            });
        }
        if offset <= inner.log_start {
            return Ok(inner.log_start);
        }
        inner.log_start = offset;
        write_u64(&self.dir.join(LOG_START), offset)?;
        inner.epochs.truncate_from_start(offset)?;
        let last = inner.segments.keys().next_back().copied();
        let victims: Vec<Arc<Segment>> = inner
            .segments
            .values()
            .filter(|s| s.next_offset() <= offset && Some(s.base_offset) != last)
            .cloned()
            .collect();
        self.remove_segments(&mut inner, &victims)?;
        Ok(inner.log_start)
    }

    /// Removes every record at or after `offset` (a diverged replica's tail).
    /// The cut happens at a batch boundary, so the new log end may be below
    /// `offset` when it falls inside a batch. Returns the new log end.
    pub fn truncate_to(&self, offset: u64) -> Result<u64> {
        let cfg = self.config.read().clone();
        let _w = self.writer.lock();
        let mut inner = self.inner.write();
        if offset >= inner.log_end {
            return Ok(inner.log_end);
        }
        let victims: Vec<Arc<Segment>> = inner.segments.range(offset..).map(|(_, s)| s.clone()).collect();
        let keep = inner.segments.range(..offset).next_back().map(|(_, s)| s.clone());
        for seg in &victims {
            inner.segments.remove(&seg.base_offset);
            seg.delete_files()?;
        }
        let new_end = match keep {
            Some(seg) => {
                let size = seg.size();
                if let Some((pos, _)) = seg.translate_offset(offset, size)? {
                    seg.truncate_to(pos, cfg.index_interval_bytes, &cfg.key_index)?;
                }
                seg.next_offset()
            }
            None => {
                let seg = Arc::new(Segment::create(&self.dir, offset, cfg.key_index.enabled)?);
                inner.segments.insert(offset, seg);
                inner.log_start = offset;
                write_u64(&self.dir.join(LOG_START), offset)?;
                offset
            }
        };
        sync_dir(&self.dir)?;
        super::snapshots::delete_after(&self.dir, new_end)?;
        inner.log_end = new_end;
        inner.high_watermark = inner.high_watermark.min(new_end);
        if inner.hw_checkpoint.is_some_and(|hw| hw > new_end) {
            // The cut records were never committed everywhere: a restart
            // must not believe they were.
            write_u64(&self.dir.join(super::HIGH_WATERMARK), new_end)?;
            inner.hw_checkpoint = Some(new_end);
        }
        inner.epochs.truncate_from_end(new_end)?;
        let rp = crate::checkpoint::read_u64(&self.dir.join(RECOVERY_POINT)).unwrap_or(0);
        if rp > new_end {
            write_u64(&self.dir.join(RECOVERY_POINT), new_end)?;
        }
        drop(inner);
        let mut s = self.sync.lock();
        s.durable = s.durable.min(new_end);
        tracing::info!(dir = %self.dir.display(), offset, new_end, "truncated log");
        Ok(new_end)
    }

    /// Empties the log and starts it at `offset`: a follower whose whole log
    /// lies below its leader's log start (retention deleted what it would
    /// copy) starts over where the leader's log begins. Blocking file I/O.
    pub fn reset_to(&self, offset: u64) -> Result<()> {
        let cfg = self.config.read().clone();
        let _w = self.writer.lock();
        let mut inner = self.inner.write();
        let victims: Vec<Arc<Segment>> = inner.segments.values().cloned().collect();
        for seg in &victims {
            inner.segments.remove(&seg.base_offset);
            seg.delete_files()?;
        }
        let seg = Arc::new(Segment::create(&self.dir, offset, cfg.key_index.enabled)?);
        inner.segments.insert(offset, seg);
        write_u64(&self.dir.join(LOG_START), offset)?;
        write_u64(&self.dir.join(RECOVERY_POINT), offset)?;
        write_u64(&self.dir.join(super::HIGH_WATERMARK), offset)?;
        sync_dir(&self.dir)?;
        super::snapshots::delete_all(&self.dir)?;
        inner.log_start = offset;
        inner.log_end = offset;
        inner.high_watermark = offset;
        inner.hw_checkpoint = Some(offset);
        // No epoch of the old log applies: the next fetch copies the
        // leader's epochs with its batches.
        inner.epochs.truncate_from_end(0)?;
        drop(inner);
        self.sync.lock().durable = offset;
        tracing::info!(dir = %self.dir.display(), offset, "reset the log to start at the leader's log start");
        Ok(())
    }

    /// Flushes, writes the active segment's indexes and marks the shutdown
    /// clean, so the next open trusts the indexes instead of rescanning.
    /// Further appends fail with [`LogError::Closed`].
    pub fn close(&self) -> Result<()> {
        let _w = self.writer.lock();
        {
            let s = self.sync.lock();
            if s.closed {
                return Ok(());
            }
            if s.poison.is_some() {
                // Leave the marker absent: the next open must rescan.
                return Ok(());
            }
        }
        let end = self.log_end_offset();
        self.wait_durable(end)?;
        let active = self.inner.read().active()?.clone();
        active.write_indexes()?;
        write_u64(&self.dir.join(RECOVERY_POINT), active.base_offset)?;
        self.write_hw_checkpoint()?;
        write_atomic(&self.dir.join(CLEAN_SHUTDOWN), b"")?;
        self.sync.lock().closed = true;
        Ok(())
    }
}
