//! The append path.
//!
//! 1. The caller validates its batches without any lock, so concurrent
//!    producers validate in parallel.
//! 2. It queues itself. If no write group is in progress it becomes the
//!    leader; otherwise it sleeps on its own slot until the leader either
//!    wrote its batches or handed leadership to it.
//! 3. The leader takes the writer lock and writes everything queued so far:
//!    it assigns offsets in queue order and writes all the batches with one
//!    vectored write (LevelDB-style group write), wakes each appender of the
//!    group directly, and hands leadership to the first appender that queued
//!    meanwhile. Under concurrency writes get larger and fewer without
//!    delaying anyone's acknowledgement: every batch is in the page cache
//!    before its append returns. Followers never wait for the writer lock
//!    just to learn their result, so a finished group costs one wake-up per
//!    appender instead of a convoy through the lock, and the next group
//!    starts while they return.
//! 4. Outside the lock, each appender waits for the durability its policy
//!    requires (group commit shares fsyncs the same way).

use std::io::IoSlice;
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::{Condvar, Mutex};

use super::{AppendInfo, AppendOrigin, Log};
use crate::batch::{self, BatchHeader, TimestampType};
use crate::config::{Durability, LogConfig};
use crate::error::{FormatError, LogError, Result};
use crate::segment::{Located, Part};

/// An append's outcome with the log generation it was written in (see
/// `SyncState::generation`).
type Written = Result<(AppendInfo, u64)>;

/// What an appender hands to the writer.
#[derive(Debug)]
struct Request {
    data: BytesMut,
    headers: Vec<Located>,
    origin: AppendOrigin,
}

/// Appends waiting for a writer, and whether a leader is writing.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    slots: Vec<Arc<Slot>>,
    leader: bool,
}

/// One queued append.
#[derive(Debug)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Debug)]
enum SlotState {
    Pending(Request),
    /// Still queued, and now the leader.
    Promoted(Request),
    Writing,
    Done(Written),
    Taken,
}

/// Why a queued appender woke up.
enum Woken {
    Done(Written),
    Promoted,
}

impl Slot {
    fn new(r: Request) -> Slot {
        Slot { state: Mutex::new(SlotState::Pending(r)), changed: Condvar::new() }
    }

    fn take_request(&self) -> Option<Request> {
        let mut st = self.state.lock();
        match std::mem::replace(&mut *st, SlotState::Writing) {
            SlotState::Pending(r) | SlotState::Promoted(r) => Some(r),
            other => {
                *st = other;
                None
            }
        }
    }

    fn finish(&self, r: Written) {
        *self.state.lock() = SlotState::Done(r);
        self.changed.notify_one();
    }

    fn promote(&self) {
        // Queued slots stay pending until a leader takes them.
        let mut st = self.state.lock();
        *st = match std::mem::replace(&mut *st, SlotState::Writing) {
            SlotState::Pending(r) => SlotState::Promoted(r),
            other => other,
        };
        self.changed.notify_one();
    }

    /// Sleeps until this append is written or this appender leads.
    fn wait(&self) -> Woken {
        let mut st = self.state.lock();
        loop {
            match &*st {
                SlotState::Done(_) => {
                    if let SlotState::Done(r) = std::mem::replace(&mut *st, SlotState::Taken) {
                        return Woken::Done(r);
                    }
                }
                SlotState::Promoted(_) => return Woken::Promoted,
                _ => self.changed.wait(&mut st),
            }
        }
    }

    /// Sleeps until this append is written or this appender leads, leaving
    /// a written result in place for `wait`.
    fn wait_keep(&self) -> Woken {
        let mut st = self.state.lock();
        loop {
            match &*st {
                SlotState::Done(_) => return Woken::Done(Err(not_written())),
                SlotState::Promoted(_) => return Woken::Promoted,
                _ => self.changed.wait(&mut st),
            }
        }
    }

    fn take_result(&self) -> Option<Written> {
        let mut st = self.state.lock();
        match std::mem::replace(&mut *st, SlotState::Taken) {
            SlotState::Done(r) => Some(r),
            other => {
                *st = other;
                None
            }
        }
    }
}

/// An accepted request of a group, with its final offsets.
struct Accepted {
    slot: Arc<Slot>,
    data: BytesMut,
    headers: Vec<Located>,
    info: AppendInfo,
}

impl Log {
    /// Appends one or more complete record batches and returns once the
    /// durability policy acknowledges them.
    ///
    /// Each batch is validated (framing, magic, CRC, records of uncompressed
    /// batches) before anything is written; one invalid batch rejects the
    /// whole append. Leaders rewrite base offsets and leader epochs in place
    /// (outside the CRC), so the stored bytes are the producer's bytes.
    /// Concurrent appends are written together; see the module docs.
    pub fn append(&self, data: BytesMut, origin: AppendOrigin) -> Result<AppendInfo> {
        let cfg = self.config.read().clone();
        let headers = split_and_validate(&data, cfg.max_message_bytes)?;
        let (data, headers) = match origin {
            AppendOrigin::Leader { .. } => super::admit::admit(data, headers, &cfg, self.clock.now_ms())?,
            AppendOrigin::Replica => (data, headers),
        };
        let slot = Arc::new(Slot::new(Request { data, headers, origin }));
        let lead = {
            let mut q = self.write_queue.lock();
            q.slots.push(slot.clone());
            !std::mem::replace(&mut q.leader, true)
        };
        let result = match lead {
            false => match slot.wait() {
                Woken::Done(r) => r,
                Woken::Promoted => self.lead(&cfg, &slot),
            },
            true => self.lead(&cfg, &slot),
        };
        let (info, generation) = result?;
        if cfg.durability == Durability::GroupCommit {
            self.wait_durable_in(info.last_offset + 1, generation)?;
        }
        Ok(info)
    }

    /// Appends several independent requests (each one or more batches) as
    /// one write group, and waits once for their durability. Each request
    /// gets its own outcome, in order: one invalid request fails alone.
    pub fn append_many(&self, requests: Vec<(BytesMut, AppendOrigin)>) -> Vec<Result<AppendInfo>> {
        let (mut out, mark) = self.write_many(requests);
        if let Some(mark) = mark
            && let Err(e) = self.wait_durable_mark(mark)
        {
            self.fail_unsynced(&mut out, &e);
        }
        out
    }

    /// After a failed wait for durability nothing of the group is
    /// acknowledged: its written requests fail with the wait's error.
    pub fn fail_unsynced(&self, results: &mut [Result<AppendInfo>], e: &LogError) {
        let reason = e.to_string();
        for r in results.iter_mut().filter(|r| r.is_ok()) {
            *r = Err(LogError::Poisoned { path: self.dir.clone(), op: "fsync", reason: reason.clone() });
        }
    }

    /// [`Log::append_many`] without the wait for durability: returns once
    /// the requests are written (to the page cache), with the mark to pass
    /// to [`Log::wait_durable_mark`] when the durability policy wants an
    /// fsync before they are acknowledged (`None`: nothing to wait for).
    ///
    /// For callers that gather appends from many tasks (the broker's
    /// per-partition append queue): one caller writes group after group
    /// while earlier groups wait for their fsync elsewhere, so the next
    /// fsync covers everything written meanwhile.
    pub fn write_many(
        &self,
        requests: Vec<(BytesMut, AppendOrigin)>,
    ) -> (Vec<Result<AppendInfo>>, Option<DurableMark>) {
        let cfg = self.config.read().clone();
        let mut out: Vec<Result<AppendInfo>> = Vec::with_capacity(requests.len());
        let mut queued = Vec::with_capacity(requests.len());
        let now = self.clock.now_ms();
        for (i, (data, origin)) in requests.into_iter().enumerate() {
            let admitted = split_and_validate(&data, cfg.max_message_bytes).and_then(|headers| match origin {
                AppendOrigin::Leader { .. } => super::admit::admit(data, headers, &cfg, now),
                AppendOrigin::Replica => Ok((data, headers)),
            });
            match admitted {
                Ok((data, headers)) => {
                    queued.push((i, Arc::new(Slot::new(Request { data, headers, origin }))));
                    out.push(Err(not_written()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        let Some((_, first)) = queued.first() else { return (out, None) };
        // Queued together under one lock: one leader takes them all.
        let lead = {
            let mut q = self.write_queue.lock();
            q.slots.extend(queued.iter().map(|(_, s)| s.clone()));
            !std::mem::replace(&mut q.leader, true)
        };
        if lead {
            // Leading writes the whole queue; the slots' results are taken below.
            self.lead_group(&cfg);
        } else if let Woken::Promoted = first.wait_keep() {
            self.lead_group(&cfg);
        }
        let mut mark = None;
        for (i, slot) in &queued {
            let written = match slot.wait() {
                Woken::Done(r) => r,
                Woken::Promoted => self.lead(&cfg, slot),
            };
            out[*i] = written.map(|(info, generation)| {
                mark = Some(DurableMark { end: info.last_offset + 1, generation });
                info
            });
        }
        let wait = cfg.durability == Durability::GroupCommit;
        (out, mark.filter(|_| wait))
    }

    /// Waits until the writes behind `mark` are durable (sharing fsyncs with
    /// every other waiter, as appends under group commit do).
    pub fn wait_durable_mark(&self, mark: DurableMark) -> Result<()> {
        self.wait_durable_in(mark.end, mark.generation)
    }

    /// Writes the queue as the leader and hands leadership on; the written
    /// slots keep their results for their owners.
    fn lead_group(&self, cfg: &LogConfig) {
        {
            let _w = self.writer.lock();
            self.write_group(cfg);
        }
        let mut q = self.write_queue.lock();
        match q.slots.first() {
            Some(next) => next.promote(),
            None => q.leader = false,
        }
    }

    /// Writes the queue (which holds `own`) as the leader, then hands
    /// leadership to whoever queued meanwhile.
    fn lead(&self, cfg: &LogConfig, own: &Slot) -> Written {
        self.lead_group(cfg);
        own.take_result().unwrap_or_else(|| Err(not_written()))
    }

    /// Writes every queued append. Called with the writer lock held.
    fn write_group(&self, cfg: &LogConfig) {
        let slots = std::mem::take(&mut self.write_queue.lock().slots);
        if self.check_writable().is_err() {
            for s in slots {
                if s.take_request().is_some() {
                    s.finish(Err(self.refusal()));
                }
            }
            return;
        }
        // Stable while the writer lock is held: recovery takes it too.
        let generation = self.sync.lock().generation;
        let now = self.clock.now_ms();
        let mut next = self.inner.read().log_end;
        let mut group = Vec::with_capacity(slots.len());
        for slot in slots {
            let Some(Request { mut data, mut headers, origin }) = slot.take_request() else { continue };
            match assign(&mut data, &mut headers, origin, cfg, now, &mut next) {
                Ok(info) => group.push(Accepted { slot, data, headers, info }),
                Err(e) => slot.finish(Err(e)),
            }
        }
        let Some(first) = group.first() else { return };
        if let Err(e) = self.write_accepted(cfg, first.info.base_offset, &group, next, now) {
            // The first request gets the original error; the rest the
            // poisoned state it caused.
            let mut e = Some(e);
            for a in group {
                a.slot.finish(Err(e.take().unwrap_or_else(|| self.refusal())));
            }
            return;
        }
        for a in group {
            a.slot.finish(Ok((a.info, generation)));
        }
    }

    /// Why the log refuses writes (closed or poisoned).
    fn refusal(&self) -> LogError {
        match self.check_writable() {
            Err(e) => e,
            Ok(()) => LogError::Internal("append failed together with another in its write group".into()),
        }
    }

    fn write_accepted(&self, cfg: &LogConfig, base: u64, group: &[Accepted], next: u64, now: i64) -> Result<()> {
        let total: usize = group.iter().map(|a| a.data.len()).sum();
        let active = self.maybe_roll(cfg, base, total, next, now)?;
        let parts: Vec<Part<'_>> = group.iter().map(|a| Part { data: &a.data, batches: &a.headers }).collect();
        if let Err(e) = active.append(&parts, cfg.index_interval_bytes, &cfg.key_index, now) {
            return Err(self.poison("write", e));
        }
        {
            let mut inner = self.inner.write();
            for (_, h) in group.iter().flat_map(|a| &a.headers) {
                if let Err(e) = inner.epochs.assign(h.leader_epoch, h.base_offset) {
                    return Err(self.poison("write leader epoch checkpoint", e));
                }
            }
            inner.log_end = next;
        }
        if cfg.durability == Durability::EveryWrite {
            if let Err(e) = active.sync() {
                return Err(self.poison("fsync", LogError::io("fsync segment", &active.log_path, e)));
            }
            let mut s = self.sync.lock();
            s.durable = s.durable.max(next);
            self.synced.notify_all();
        }
        Ok(())
    }
}

/// Where a group of writes ends, and in which generation of the log it was
/// written (a recovery in between fails the wait: it may have cut them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableMark {
    end: u64,
    generation: u64,
}

fn not_written() -> LogError {
    LogError::Internal("append was not written".into())
}

/// Gives one request its offsets (leaders) or checks them (replicas).
fn assign(
    data: &mut BytesMut,
    headers: &mut [Located],
    origin: AppendOrigin,
    cfg: &LogConfig,
    now: i64,
    next: &mut u64,
) -> Result<AppendInfo> {
    let mut cursor = *next;
    let base_offset = match origin {
        AppendOrigin::Leader { .. } => cursor,
        AppendOrigin::Replica => headers.first().map_or(cursor, |(_, h)| h.base_offset),
    };
    let mut log_append_time = None;
    for (off, h) in headers.iter_mut() {
        let bytes = &mut data[*off..*off + h.total_len()];
        match origin {
            AppendOrigin::Leader { epoch } => {
                batch::set_base_offset(bytes, cursor);
                batch::set_leader_epoch(bytes, epoch);
                if cfg.timestamp_type == TimestampType::LogAppendTime {
                    batch::set_log_append_time(bytes, now);
                    log_append_time = Some(now);
                }
                *h = BatchHeader::parse(bytes)?;
            }
            AppendOrigin::Replica => {
                if h.base_offset < cursor {
                    return Err(LogError::InvalidArgument(format!(
                        "replica batch at offset {} does not continue the log ending at {cursor}",
                        h.base_offset
                    )));
                }
            }
        }
        cursor = h.next_offset();
    }
    *next = cursor;
    Ok(AppendInfo {
        base_offset,
        last_offset: cursor - 1,
        batches: headers.len(),
        records: headers.iter().map(|(_, h)| u64::from(h.record_count)).sum(),
        bytes: data.len(),
        max_timestamp: headers.iter().map(|(_, h)| h.max_timestamp).max().unwrap_or(i64::MIN),
        log_append_time,
    })
}

/// Splits `data` into batches, validating each. Returns (position, header).
pub(super) fn split_and_validate(data: &[u8], max_message_bytes: usize) -> Result<Vec<Located>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let total = match batch::peek_total_len(&data[off..]) {
            None => return Err(FormatError::Truncated("batch").into()),
            Some(r) => r?,
        };
        if total > max_message_bytes {
            return Err(LogError::MessageTooLarge { size: total, max: max_message_bytes });
        }
        if total > data.len() - off {
            return Err(FormatError::Truncated("batch").into());
        }
        let h = batch::validate(&data[off..off + total])?;
        if h.record_count == 0 {
            return Err(FormatError::InvalidRecord("batch has no records").into());
        }
        out.push((off, h));
        off += total;
    }
    if out.is_empty() {
        return Err(LogError::InvalidArgument("append of zero batches".into()));
    }
    Ok(out)
}

/// Writes all `bufs` at `pos` with positioned vectored writes, retrying
/// partial writes.
pub(crate) fn pwrite_all(file: &std::fs::File, bufs: &[&[u8]], mut pos: u64) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let offset = i64::try_from(pos).map_err(std::io::Error::other)?;
        match nix::sys::uio::pwritev(file, rest, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                pos += n as u64;
                IoSlice::advance_slices(&mut rest, n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
