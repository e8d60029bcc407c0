//! Delayed and scheduled messages: a durable timer.
//!
//! ## Design
//! - **Timer log** (`schedule/`): a scheduled message is appended, in full,
//!   to an internal log, with its target topic and partition as headers.
//!   The send is acknowledged once that append is durable.
//! - **Wheel** ([`wheel::TimingWheel`]): in memory, a hierarchical timing
//!   wheel holds only `(deadline, timer-log offset)` pairs, 16 bytes per
//!   pending message, O(1) to insert and to expire. The message bodies stay
//!   on disk until they are due.
//! - **Delivery** is done by one dispatcher task: it takes the due entries,
//!   reads their messages from the timer log, writes an *intent* (the timer
//!   offsets and each target partition's log end) to the timer journal,
//!   appends the messages to their targets, and then writes a *done*
//!   record listing what was delivered. Every delivered copy carries a
//!   `fjord.timer-ref` header naming its timer offset.
//! - **Exactly once across crashes**: after a restart, an intent without a
//!   done record is resolved by reading its target partitions from the
//!   recorded log ends: entries whose `fjord.timer-ref` is there were
//!   delivered, the others are delivered again. Overdue messages are
//!   delivered at the first tick after the restart.
//! - **Snapshots**: every `snapshot_interval` the dispatcher writes the
//!   pending pairs (16 bytes each), the timer-log offset from which entries
//!   may be missing from it and the journal offset it covers, then trims the
//!   journal and the timer log below the oldest pending entry. Restart =
//!   snapshot + timer-log tail + journal tail, never the whole history.
//!
//! ## Limits
//! - Memory: ~16 bytes per pending message in the wheel (plus Vec slack);
//!   one million pending messages cost about 20-40 MB.
//! - Disk: a message scheduled far ahead keeps its timer-log segment (and
//!   every later one) until it is delivered.
//! - Precision: the wheel ticks every `timer_tick` (100 ms by default).

mod recover;
#[cfg(test)]
mod tests;
pub mod wheel;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{Broker, BrokerError, TopicPartition};
use fjord_log::Clock;
use fjord_log::batch::{Header, NewRecord, Record};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{MessagingError, Result, blocking};
use crate::journal::Journal;
use crate::message::{StoredMessage, header, headers};
use crate::{Messaging, MessagingConfig};
use wheel::TimingWheel;

/// A journal record of the dispatcher.
#[derive(Debug, Serialize, Deserialize)]
enum Entry {
    /// About to append these timer entries to these partitions, whose log
    /// ends were as recorded.
    Intent(Vec<IntentTarget>),
    /// These timer entries are in their targets (or were dropped because the
    /// target no longer exists); `intent` is the journal offset resolved.
    Done { intent: u64, offsets: Vec<u64> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IntentTarget {
    topic: String,
    partition: u32,
    log_end: u64,
    offsets: Vec<u64>,
}

/// Each target with the copies to append to it.
type Targets = Vec<(IntentTarget, Vec<NewRecord>)>;

#[derive(Debug)]
pub(crate) struct TimerState {
    wheel: TimingWheel<u64>,
    /// In-flight schedule appends: token -> timer-log end before the append.
    appending: BTreeMap<u64, u64>,
    next_token: u64,
}

/// The durable timer.
#[derive(Debug)]
pub(crate) struct TimerService {
    schedule: Arc<Journal>,
    journal: Arc<Journal>,
    state: Arc<Mutex<TimerState>>,
    wake: Notify,
    /// Held while delivering and while snapshotting, so a snapshot never
    /// cuts through a delivery.
    gate: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    dir: std::path::PathBuf,
    tick_ms: u64,
}

/// Statistics of the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerStats {
    /// Messages waiting for their time.
    pub pending: usize,
    /// Heap bytes held by the wheel.
    pub wheel_bytes: usize,
    /// Bytes of the timer log on disk (messages waiting, and delivered ones
    /// not yet trimmed).
    pub schedule_log_end: u64,
}

impl TimerService {
    pub(crate) async fn open(broker: &Arc<Broker>, dir: &Path, config: &MessagingConfig) -> Result<TimerService> {
        recover::open(broker, dir, config).await
    }

    /// Stores scheduled-message records durably and files them in the wheel.
    pub(crate) async fn schedule(&self, recs: Vec<NewRecord>) -> Result<()> {
        let token = {
            let mut s = self.state.lock();
            let t = s.next_token;
            s.next_token += 1;
            s.appending.insert(t, self.schedule.end());
            t
        };
        let (schedule, state, now) = (self.schedule.clone(), self.state.clone(), self.clock.now_ms());
        let result = blocking(move || -> Result<()> {
            let deadlines: Vec<i64> = recs.iter().map(deliver_at_of_new).collect();
            let first = schedule.append_many(&recs, now)?;
            schedule.sync(first + recs.len() as u64 - 1)?;
            let mut s = state.lock();
            for (i, at) in deadlines.into_iter().enumerate() {
                s.wheel.insert(at, first + i as u64);
            }
            Ok(())
        })
        .await;
        self.state.lock().appending.remove(&token);
        self.wake.notify_one();
        result?
    }

    /// A still-scheduled message of `topic` with this id.
    pub(crate) async fn find_scheduled(&self, topic: &str, id: &str) -> Result<Option<StoredMessage>> {
        let (schedule, t, i) = (self.schedule.clone(), topic.to_string(), id.to_string());
        blocking(move || -> Result<Option<StoredMessage>> {
            for r in schedule.lookup(i.as_bytes(), 16)? {
                let m = StoredMessage::from_record(&t, 0, &r);
                if m.id.as_deref() == Some(i.as_str()) && header(&r, headers::TIMER_TOPIC) == Some(t.as_str()) {
                    let partition = header(&r, headers::TIMER_PARTITION).and_then(|p| p.parse().ok()).unwrap_or(0);
                    return Ok(Some(StoredMessage { partition, ..m }));
                }
            }
            Ok(None)
        })
        .await?
    }

    /// Whether the timer log holds a record whose (indexed) `name` header
    /// is `value`.
    pub(crate) fn has_record_with(&self, name: &str, value: &str) -> Result<bool> {
        Ok(self.schedule.lookup(value.as_bytes(), 16)?.iter().any(|r| header(r, name) == Some(value)))
    }

    /// Pending count and memory.
    pub(crate) fn stats(&self) -> TimerStats {
        let s = self.state.lock();
        TimerStats { pending: s.wheel.len(), wheel_bytes: s.wheel.heap_bytes(), schedule_log_end: self.schedule.end() }
    }

    /// Final snapshot; closes the logs.
    pub(crate) async fn close(&self) -> Result<()> {
        let _gate = self.gate.lock().await;
        let (schedule, journal, state, dir) =
            (self.schedule.clone(), self.journal.clone(), self.state.clone(), self.dir.clone());
        blocking(move || -> Result<()> {
            recover::write_snapshot(&dir, &schedule, &journal, &state)?;
            schedule.close()?;
            journal.close()
        })
        .await?
    }

    /// Takes the due entries and delivers them; failures are retried a
    /// second later.
    async fn dispatch_due(&self, broker: &Arc<Broker>) -> Result<usize> {
        let _gate = self.gate.lock().await;
        let Some((n, intent, targets)) = self.begin_delivery(broker).await? else { return Ok(0) };
        let (delivered, retry) = self.append_targets(broker, targets).await;
        self.finish_delivery(intent, delivered, retry).await?;
        Ok(n)
    }

    /// Takes the due entries, reads their messages and writes the intent.
    async fn begin_delivery(&self, broker: &Arc<Broker>) -> Result<Option<(usize, u64, Targets)>> {
        let now = self.clock.now_ms();
        let mut due = Vec::new();
        self.state.lock().wheel.advance(now, &mut due);
        if due.is_empty() {
            return Ok(None);
        }
        let n = due.len();
        let (schedule, journal, b) = (self.schedule.clone(), self.journal.clone(), broker.clone());
        let (intent, targets) = blocking(move || -> Result<(u64, Targets)> {
            let mut offsets: Vec<u64> = due.into_iter().map(|(_, o)| o).collect();
            offsets.sort_unstable();
            let mut by_target: BTreeMap<(String, u32), Vec<(u64, NewRecord)>> = BTreeMap::new();
            for r in read_offsets(&schedule, &offsets)? {
                let (Some(t), Some(p)) = (
                    header(&r, headers::TIMER_TOPIC).map(str::to_string),
                    header(&r, headers::TIMER_PARTITION).and_then(|p| p.parse::<u32>().ok()),
                ) else {
                    tracing::error!(offset = r.offset, "timer entry without a target; dropped");
                    continue;
                };
                by_target.entry((t, p)).or_default().push((r.offset, delivered_copy(&r)));
            }
            let mut targets = Vec::new();
            for ((topic, partition), recs) in by_target {
                let log_end = match b.partition(&TopicPartition::new(&topic, partition)) {
                    Ok(p) => p.log_end_offset(),
                    Err(_) => 0,
                };
                let offsets = recs.iter().map(|(o, _)| *o).collect();
                targets.push((
                    IntentTarget { topic, partition, log_end, offsets },
                    recs.into_iter().map(|(_, r)| r).collect(),
                ));
            }
            let entry = Entry::Intent(targets.iter().map(|(t, _)| t.clone()).collect());
            let intent = journal.append_value(encode(&entry)?, 0)?;
            journal.sync(intent)?;
            Ok((intent, targets))
        })
        .await??;
        Ok(Some((n, intent, targets)))
    }

    /// Appends each target's messages; returns the timer offsets delivered
    /// (or dropped with their topic) and those to retry.
    async fn append_targets(&self, broker: &Arc<Broker>, targets: Targets) -> (Vec<u64>, Vec<u64>) {
        let (mut delivered, mut retry) = (Vec::new(), Vec::new());
        for (target, recs) in targets {
            let tp = TopicPartition::new(&target.topic, target.partition);
            match self.append(broker, &tp, &recs).await {
                Ok(()) => delivered.extend(&target.offsets),
                Err(MessagingError::Broker(BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. })) => {
                    tracing::warn!(%tp, count = recs.len(), "scheduled messages dropped: their topic no longer exists");
                    delivered.extend(&target.offsets);
                }
                Err(e) => {
                    tracing::warn!(%tp, error = %e, "delivering scheduled messages failed; retrying in 1 s");
                    retry.extend(&target.offsets);
                }
            }
        }
        (delivered, retry)
    }

    /// Records the delivery as done; files failed entries again.
    async fn finish_delivery(&self, intent: u64, delivered: Vec<u64>, retry: Vec<u64>) -> Result<()> {
        let journal = self.journal.clone();
        blocking(move || -> Result<()> {
            let done = journal.append_value(encode(&Entry::Done { intent, offsets: delivered })?, 0)?;
            journal.sync(done)
        })
        .await??;
        if !retry.is_empty() {
            let at = self.clock.now_ms() + 1000;
            let mut s = self.state.lock();
            for o in retry {
                s.wheel.insert(at, o);
            }
        }
        Ok(())
    }

    async fn append(&self, broker: &Arc<Broker>, tp: &TopicPartition, recs: &[NewRecord]) -> Result<()> {
        // No auto-creation: a topic deleted meanwhile stays deleted.
        broker.partition(tp)?;
        let mut b = fjord_log::batch::BatchBuilder::new(self.clock.now_ms());
        for r in recs {
            b.push(r);
        }
        let data = b.try_build().map_err(|e| MessagingError::InvalidMessage(e.to_string()))?;
        broker.produce(tp, data).await?;
        Ok(())
    }
}

/// The dispatcher: wakes at the next deadline (at least every tick), on new
/// schedules and on shutdown; snapshots every `snapshot_interval`.
pub(crate) fn spawn_dispatcher(m: Arc<Messaging>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let timer = &m.timer;
        let tick = Duration::from_millis(timer.tick_ms);
        let mut last_snapshot = timer.clock.now_ms();
        loop {
            let now = timer.clock.now_ms();
            let next = timer.state.lock().wheel.next_deadline();
            let wait = next.map_or(tick, |d| {
                Duration::from_millis(d.saturating_sub(now).clamp(0, tick.as_millis() as i64) as u64)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = timer.wake.notified() => {}
                _ = m.stopping() => return,
            }
            loop {
                match timer.dispatch_due(&m.broker).await {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "timer dispatch failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
            if timer.clock.now_ms() - last_snapshot >= m.config.snapshot_interval.as_millis() as i64 {
                last_snapshot = timer.clock.now_ms();
                let _gate = timer.gate.lock().await;
                let (s, j, st, d) =
                    (timer.schedule.clone(), timer.journal.clone(), timer.state.clone(), timer.dir.clone());
                match blocking(move || recover::write_snapshot(&d, &s, &j, &st)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => tracing::error!(error = %e, "timer snapshot failed"),
                }
            }
        }
    })
}

impl Messaging {
    /// Pending scheduled messages and the wheel's memory.
    pub fn timer_stats(&self) -> TimerStats {
        self.timer.stats()
    }

    /// Scheduled messages still waiting, earliest first, with their
    /// delivery times: at most `limit`, only those for `topic` when given.
    /// Each message shows its target topic and partition; its offset is
    /// the timer log's. Costs a copy of the pending (time, offset) pairs
    /// (16 bytes each) and one read per message listed.
    pub async fn delayed_messages(&self, topic: Option<&str>, limit: usize) -> Result<Vec<(i64, StoredMessage)>> {
        let mut pending: Vec<(i64, u64)> = self.timer.state.lock().wheel.iter().map(|(d, o)| (d, *o)).collect();
        pending.sort_unstable();
        let (schedule, topic) = (self.timer.schedule.clone(), topic.map(str::to_string));
        blocking(move || {
            let mut out = Vec::new();
            for chunk in pending.chunks(256) {
                let mut offsets: Vec<u64> = chunk.iter().map(|(_, o)| *o).collect();
                offsets.sort_unstable();
                let recs = read_offsets(&schedule, &offsets)?;
                for (at, o) in chunk {
                    let Some(r) = recs.iter().find(|r| r.offset == *o) else { continue };
                    let target = header(r, headers::TIMER_TOPIC).unwrap_or_default();
                    if topic.as_deref().is_some_and(|t| t != target) {
                        continue;
                    }
                    let partition = header(r, headers::TIMER_PARTITION).and_then(|p| p.parse().ok()).unwrap_or(0);
                    out.push((*at, StoredMessage::from_record(target, partition, r)));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            Ok(out)
        })
        .await?
    }

    /// Delivers every due scheduled message now (tests and tools; the
    /// dispatcher does this on its own). Returns how many were taken.
    pub async fn deliver_due(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            match self.timer.dispatch_due(&self.broker).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }
}

fn deliver_at_of_new(r: &NewRecord) -> i64 {
    r.headers
        .iter()
        .find(|h| h.key.as_ref() == headers::DELIVER_AT.as_bytes())
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn deliver_at_of(r: &Record) -> i64 {
    header(r, headers::DELIVER_AT).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The copy appended to the target: the timer's routing headers replaced
/// by the timer reference.
fn delivered_copy(r: &Record) -> NewRecord {
    let mut hs: Vec<Header> = r
        .headers
        .iter()
        .filter(|h| {
            h.key.as_ref() != headers::TIMER_TOPIC.as_bytes() && h.key.as_ref() != headers::TIMER_PARTITION.as_bytes()
        })
        .cloned()
        .collect();
    hs.push(Header {
        key: Bytes::from_static(headers::TIMER_REF.as_bytes()),
        value: Some(Bytes::from(r.offset.to_string())),
    });
    NewRecord { timestamp: Some(r.timestamp), key: r.key.clone(), value: r.value.clone(), headers: hs }
}

/// Records at the given ascending offsets, reading runs of nearby offsets
/// with one read.
fn read_offsets(log: &Journal, offsets: &[u64]) -> Result<Vec<Record>> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut buf: std::collections::VecDeque<Record> = Default::default();
    for &o in offsets {
        while buf.front().is_some_and(|r| r.offset < o) {
            buf.pop_front();
        }
        if buf.front().is_none_or(|r| r.offset != o) {
            buf = log.read(o, 256 << 10)?.into();
            while buf.front().is_some_and(|r| r.offset < o) {
                buf.pop_front();
            }
        }
        match buf.front() {
            Some(r) if r.offset == o => out.push(r.clone()),
            _ => tracing::error!(offset = o, "timer entry missing from the timer log; dropped"),
        }
    }
    Ok(out)
}

fn encode(e: &Entry) -> Result<Vec<u8>> {
    serde_json::to_vec(e).map_err(|e| MessagingError::Internal(format!("encode timer journal entry: {e}")))
}

fn decode(v: &[u8]) -> Result<Entry> {
    serde_json::from_slice(v).map_err(|e| MessagingError::Corrupt { what: "timer journal", detail: e.to_string() })
}
