//! One timer shard: a partition of `__fjord_timer` this node leads, with
//! the wheel of its pending messages, rebuilt from the partition when this
//! node takes it over (see the module docs of [`super`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use fjord_broker::{BrokerError, Partition, TopicPartition};
use fjord_log::batch::{BatchBuilder, Header, NewRecord, Record};
use parking_lot::Mutex;

use super::halves::{self, OpenHalf};
use super::wheel::TimingWheel;
use super::{Entry, IntentTarget, decode, deliver_at_of, delivered_copy, encode, timer_ref};
use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::message::{header, headers};

/// Marks a record of the timer's journal (intents and completions) among
/// the scheduled messages of a shard.
pub(super) const JOURNAL_HEADER: &str = "fjord.timer-journal";

/// Each target with the copies to append to it.
pub(super) type Targets = Vec<(IntentTarget, Vec<NewRecord>)>;

/// A delivery under way: its intent's offset, the copies for each target,
/// and the entries dropped because their topic is gone.
#[derive(Debug)]
pub(super) struct Begun {
    pub(super) intent: u64,
    pub(super) targets: Targets,
    pub(super) dropped: Vec<u64>,
}

/// A delivery whose outcome is not recorded yet: found unresolved by the
/// replay (its targets are searched for the copies), or whose completion
/// record could not be written (written again).
#[derive(Debug)]
pub(super) enum Unfinished {
    Resolve { intent: u64, targets: Vec<IntentTarget>, deadlines: BTreeMap<u64, i64> },
    Finish { intent: u64, offsets: Vec<u64> },
}

impl Unfinished {
    fn intent(&self) -> u64 {
        match self {
            Unfinished::Resolve { intent, .. } | Unfinished::Finish { intent, .. } => *intent,
        }
    }
}

/// A timer shard this node leads.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(super) tp: TopicPartition,
    pub(super) partition: Arc<Partition>,
    /// The leader epoch the shard was replayed in: it serves in that term
    /// only (a later term may hold writes its wheel does not know).
    pub(super) epoch: i32,
    active: AtomicBool,
    pub(super) wheel: Mutex<TimingWheel<u64>>,
    pub(super) unfinished: Mutex<Vec<Unfinished>>,
    /// Half messages whose transaction is open, by offset (see
    /// [`halves`]).
    pub(super) halves: Mutex<BTreeMap<u64, OpenHalf>>,
    /// Held by a transaction's decision and a round of check-backs, so a
    /// transaction is decided once.
    pub(super) deciding: tokio::sync::Mutex<()>,
    /// Shared by schedules (append, commit, file in the wheel: many at
    /// once, so they share fsyncs), exclusive for a trim and a
    /// deactivation: a trim never cuts an append not yet in the wheel, and
    /// a replay after a deactivation sees every append the shard made.
    pub(super) writers: tokio::sync::RwLock<()>,
    /// Held by a delivery, a trim and a deactivation.
    pub(super) gate: tokio::sync::Mutex<()>,
}

impl Shard {
    /// Replays `partition` (this node leads it): the scheduled messages
    /// without a completion are pending, intents without one unfinished,
    /// half messages without a decision open (committed ones pending).
    /// Blocking file I/O.
    pub(super) fn replay(index: u32, partition: Arc<Partition>, now_ms: i64, tick_ms: u64) -> Result<Shard> {
        let tp = TopicPartition::new(fjord_broker::placement::TIMER_TOPIC, index);
        let epoch = partition.leader_epoch();
        let mut pending: BTreeMap<u64, i64> = BTreeMap::new();
        let mut intents: BTreeMap<u64, Vec<IntentTarget>> = BTreeMap::new();
        let mut open: BTreeMap<u64, OpenHalf> = BTreeMap::new();
        let mut next = partition.log_start_offset();
        loop {
            let recs = partition.read_appended(next, 1 << 20).map_err(|e| MessagingError::log(tp.to_string(), e))?;
            let Some(last) = recs.last().map(|r| r.offset) else { break };
            for r in &recs {
                if header(r, JOURNAL_HEADER).is_some() {
                    match decode(r.value.as_deref().unwrap_or_default()) {
                        Ok(Entry::Intent(t)) => {
                            intents.insert(r.offset, t);
                        }
                        Ok(Entry::Done { intent, offsets }) => {
                            intents.remove(&intent);
                            for o in offsets {
                                pending.remove(&o);
                            }
                        }
                        Ok(Entry::Decided { offsets, outcome }) => {
                            halves::replay_decided(&mut open, &mut pending, &offsets, outcome)
                        }
                        Ok(Entry::Checked { offsets }) => halves::replay_checked(&mut open, &offsets, r.timestamp),
                        // Skipped rather than refusing the shard forever:
                        // its entries are delivered (again, at worst).
                        Err(e) => {
                            tracing::error!(%tp, offset = r.offset, error = %e, "unreadable timer journal record")
                        }
                    }
                } else if let Some(half) = OpenHalf::of_record(r) {
                    open.insert(r.offset, half);
                } else if header(r, headers::TIMER_TOPIC).is_some() {
                    pending.insert(r.offset, deliver_at_of(r));
                }
            }
            next = last + 1;
        }
        let mut unfinished = Vec::new();
        for (intent, targets) in intents {
            let deadlines =
                targets.iter().flat_map(|t| t.offsets.iter()).filter_map(|o| Some((*o, pending.remove(o)?))).collect();
            unfinished.push(Unfinished::Resolve { intent, targets, deadlines });
        }
        let mut wheel = TimingWheel::new(now_ms, tick_ms);
        for (o, at) in pending {
            wheel.insert(at, o);
        }
        tracing::info!(
            %tp,
            epoch,
            pending = wheel.len(),
            unfinished = unfinished.len(),
            transactions = open.len(),
            "timer shard loaded"
        );
        Ok(Shard {
            tp,
            partition,
            epoch,
            active: AtomicBool::new(true),
            wheel: Mutex::new(wheel),
            unfinished: Mutex::new(unfinished),
            halves: Mutex::new(open),
            deciding: Default::default(),
            writers: Default::default(),
            gate: Default::default(),
        })
    }

    /// Whether the shard still serves: not deactivated, and its partition
    /// still in the term it was replayed in.
    pub(super) fn serving(&self) -> bool {
        self.active.load(Ordering::Acquire)
            && self.partition.is_leading()
            && self.partition.leader_epoch() == self.epoch
    }

    /// Stops the shard now (shutdown, or a write with an unknown outcome:
    /// the dispatcher then loads it again).
    pub(super) fn stop(&self) {
        self.active.store(false, Ordering::Release);
    }

    /// Stops the shard once the delivery or schedule in progress is done.
    pub(super) async fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
        let _w = self.writers.write().await;
        let _g = self.gate.lock().await;
    }

    pub(super) fn not_serving(&self) -> MessagingError {
        BrokerError::NotLeader { tp: self.tp.to_string(), leader: None, leader_epoch: self.epoch }.into()
    }

    /// Stores scheduled messages (committed on the shard's replicas when
    /// this returns) and files them in the wheel, or half messages among
    /// the open transactions; returns the first one's offset. Runs in a
    /// task of its own: a caller that goes away (its client gone) must not
    /// leave a message written but never filed.
    pub(super) async fn schedule(self: &Arc<Self>, m: &Arc<Messaging>, recs: Vec<NewRecord>) -> Result<u64> {
        let (shard, m) = (self.clone(), m.clone());
        tokio::spawn(async move { shard.schedule_now(&m, &recs).await })
            .await
            .map_err(|e| MessagingError::Internal(format!("scheduling task failed: {e}")))?
    }

    async fn schedule_now(&self, m: &Messaging, recs: &[NewRecord]) -> Result<u64> {
        let _w = self.writers.read().await;
        if !self.serving() {
            return Err(self.not_serving());
        }
        let now = m.broker.clock().now_ms();
        let first = match self.append(m, recs, now).await {
            Ok(first) => first,
            Err(e) => {
                // Refused before anything was written, or perhaps written
                // (not committed in time, deposed while waiting): then the
                // shard stops and is loaded again, which files whatever
                // its log holds.
                self.stop_unless_unwritten(&e, "a schedule");
                return Err(e);
            }
        };
        let mut wheel = self.wheel.lock();
        let mut open = self.halves.lock();
        for (i, r) in recs.iter().enumerate() {
            let offset = first + i as u64;
            match OpenHalf::of_new(r, now) {
                Some(half) => {
                    open.insert(offset, half);
                }
                None => wheel.insert(super::deliver_at_of_new(r), offset),
            }
        }
        Ok(first)
    }

    /// After a failed write: unless it was refused before anything was
    /// written, its outcome is unknown and the shard stops, to be loaded
    /// again (its log is the truth).
    pub(super) fn stop_unless_unwritten(&self, e: &MessagingError, what: &str) {
        if !e.surely_unwritten() {
            tracing::warn!(shard = %self.tp, error = %e, "the outcome of {what} is unknown; reloading the shard");
            self.stop();
        }
    }

    async fn append(&self, m: &Messaging, recs: &[NewRecord], now: i64) -> Result<u64> {
        let mut b = BatchBuilder::new(now);
        for r in recs {
            b.push(r);
        }
        let data: BytesMut = b.try_build().map_err(|e| MessagingError::InvalidMessage(e.to_string()))?;
        let append = m.broker.append_internal(&self.tp, data);
        match tokio::time::timeout(super::WRITE_DEADLINE, append).await {
            Ok(written) => Ok(written?.base_offset),
            Err(_) => Err(MessagingError::PossiblyWritten(format!("{} did not commit in time", self.tp))),
        }
    }

    /// Appends a journal record; returns its offset once committed.
    pub(super) async fn journal(&self, m: &Messaging, entry: &Entry) -> Result<u64> {
        let rec = NewRecord {
            value: Some(Bytes::from(encode(entry)?)),
            headers: vec![Header {
                key: Bytes::from_static(JOURNAL_HEADER.as_bytes()),
                value: Some(Bytes::from_static(b"1")),
            }],
            ..Default::default()
        };
        self.append(m, &[rec], m.broker.clock().now_ms()).await
    }

    /// Delivers what is due; returns how many entries were taken.
    pub(super) async fn dispatch_due(&self, m: &Messaging) -> Result<usize> {
        let _g = self.gate.lock().await;
        if !self.serving() {
            return Ok(0);
        }
        self.settle_unfinished(m).await;
        let mut due = Vec::new();
        {
            let mut wheel = self.wheel.lock();
            wheel.advance(m.broker.clock().now_ms(), &mut due);
            // Entries replayed from a tail this leader inherited but has
            // not committed yet wait for their commit: another election
            // could still cut them (their sends were never acknowledged),
            // and a delivery then would be a message nobody sent. What
            // this leader schedules is filed only once committed.
            let committed = self.partition.high_watermark();
            if due.iter().any(|(_, o)| *o >= committed) {
                let (now, later): (Vec<_>, Vec<_>) = due.into_iter().partition(|(_, o)| *o < committed);
                for (at, o) in later {
                    wheel.insert(at, o);
                }
                due = now;
            }
        }
        if due.is_empty() {
            return Ok(0);
        }
        let n = due.len();
        let deadlines: BTreeMap<u64, i64> = due.into_iter().map(|(at, o)| (o, at)).collect();
        let Some(begun) = self.begin(m, deadlines.clone()).await? else { return Ok(n) };
        let intent_targets: Vec<IntentTarget> = begun.targets.iter().map(|(t, _)| t.clone()).collect();
        let (mut delivered, failed) = self.append_targets(m, begun.targets).await;
        if failed.is_empty() {
            delivered.extend(begun.dropped);
            self.finish(m, begun.intent, delivered).await?;
        } else {
            // A failed append may still have landed (a timeout, a leader
            // deposed while it waited): delivering again blindly could
            // write a copy twice. The intent stays open and is resolved as
            // one found after a crash — its targets searched for the copies
            // above the recorded high watermarks — at the next tick.
            // (Entries dropped with their topic are simply not delivered.)
            let entries: std::collections::HashSet<u64> =
                intent_targets.iter().flat_map(|t| t.offsets.iter().copied()).collect();
            let deadlines = deadlines.into_iter().filter(|(o, _)| entries.contains(o)).collect();
            self.unfinished.lock().push(Unfinished::Resolve {
                intent: begun.intent,
                targets: intent_targets,
                deadlines,
            });
        }
        Ok(n)
    }

    /// Reads the due entries' messages, learns each target's high
    /// watermark and writes the intent. Entries whose target cannot answer
    /// are filed again; on failure all are.
    pub(super) async fn begin(&self, m: &Messaging, due: BTreeMap<u64, i64>) -> Result<Option<Begun>> {
        let offsets: Vec<u64> = due.keys().copied().collect();
        let p = self.partition.clone();
        let records = match blocking(move || read_offsets(&p, &offsets)).await? {
            Ok(r) => r,
            Err(e) => {
                self.refile(m, due.keys().copied(), &due);
                return Err(e);
            }
        };
        let mut by_target: BTreeMap<(String, u32), Vec<(u64, NewRecord)>> = BTreeMap::new();
        for r in records {
            let (Some(t), Some(p)) = (
                header(&r, headers::TIMER_TOPIC).map(str::to_string),
                header(&r, headers::TIMER_PARTITION).and_then(|p| p.parse::<u32>().ok()),
            ) else {
                tracing::error!(shard = %self.tp, offset = r.offset, "timer entry without a target; dropped");
                continue;
            };
            let copy = delivered_copy(&r, &timer_ref(self.tp.partition, r.offset));
            by_target.entry((t, p)).or_default().push((r.offset, copy));
        }
        let mut targets = Vec::new();
        let mut dropped = Vec::new();
        for ((topic, partition), recs) in by_target {
            let offsets: Vec<u64> = recs.iter().map(|(o, _)| *o).collect();
            match m.target_probe(&TopicPartition::new(&topic, partition), None, Vec::new()).await {
                Ok(Some((high_watermark, _))) => targets.push((
                    IntentTarget { topic, partition, log_end: high_watermark, offsets },
                    recs.into_iter().map(|(_, r)| r).collect(),
                )),
                Ok(None) => {
                    tracing::warn!(%topic, partition, count = offsets.len(), "scheduled messages dropped: their topic no longer exists");
                    dropped.extend(offsets);
                }
                Err(e) => {
                    tracing::warn!(%topic, partition, error = %e, "target of scheduled messages unavailable; retrying in 1 s");
                    self.refile(m, offsets.into_iter(), &due);
                }
            }
        }
        if targets.is_empty() {
            if !dropped.is_empty() {
                let intent = self.journal(m, &Entry::Intent(Vec::new())).await?;
                self.journal(m, &Entry::Done { intent, offsets: dropped }).await?;
            }
            return Ok(None);
        }
        let entry = Entry::Intent(targets.iter().map(|(t, _)| t.clone()).collect());
        match self.journal(m, &entry).await {
            // The dropped entries are recorded with the completion.
            Ok(intent) => Ok(Some(Begun { intent, targets, dropped })),
            Err(e) => {
                let all = targets.iter().flat_map(|(t, _)| t.offsets.iter().copied()).chain(dropped);
                self.refile(m, all, &due);
                Err(e)
            }
        }
    }

    /// Appends each target's copies; returns the entries delivered (or
    /// dropped with their topic) and those whose append failed (maybe
    /// landed: resolved by searching the target, never simply repeated).
    pub(super) async fn append_targets(&self, m: &Messaging, targets: Targets) -> (Vec<u64>, Vec<u64>) {
        let (mut delivered, mut retry) = (Vec::new(), Vec::new());
        for (target, recs) in targets {
            let tp = TopicPartition::new(&target.topic, target.partition);
            match m.target_append(&tp, recs).await {
                Ok(true) => delivered.extend(&target.offsets),
                Ok(false) => {
                    tracing::warn!(%tp, count = target.offsets.len(), "scheduled messages dropped: their topic no longer exists");
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

    /// Records the delivery as done (kept to write again if that fails).
    pub(super) async fn finish(&self, m: &Messaging, intent: u64, delivered: Vec<u64>) -> Result<()> {
        if let Err(e) = self.journal(m, &Entry::Done { intent, offsets: delivered.clone() }).await {
            self.unfinished.lock().push(Unfinished::Finish { intent, offsets: delivered });
            return Err(e);
        }
        Ok(())
    }

    /// Entries taken for a delivery that did not start go back, a second
    /// from now (their deadlines are past).
    fn refile(&self, m: &Messaging, offsets: impl Iterator<Item = u64>, due: &BTreeMap<u64, i64>) {
        let at = m.broker.clock().now_ms() + 1000;
        let mut wheel = self.wheel.lock();
        for o in offsets {
            wheel.insert(due.get(&o).copied().unwrap_or(at).max(at), o);
        }
    }

    /// Resolves interrupted deliveries whose targets answer: the entries
    /// whose copies are in their target after the recorded high watermark
    /// were delivered, the others go back to the wheel. Called under the
    /// gate; what cannot be settled now waits for the next tick.
    async fn settle_unfinished(&self, m: &Messaging) {
        let work = std::mem::take(&mut *self.unfinished.lock());
        let mut left = Vec::new();
        for u in work {
            match self.settle(m, &u).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(shard = %self.tp, intent = u.intent(), error = %e, "interrupted timer delivery not settled yet");
                    left.push(u);
                }
            }
        }
        self.unfinished.lock().extend(left);
    }

    async fn settle(&self, m: &Messaging, u: &Unfinished) -> Result<()> {
        match u {
            Unfinished::Finish { intent, offsets } => {
                self.journal(m, &Entry::Done { intent: *intent, offsets: offsets.clone() }).await?;
            }
            Unfinished::Resolve { intent, targets, deadlines } => {
                let mut found = Vec::new();
                for t in targets {
                    let refs: Vec<String> = t.offsets.iter().map(|o| timer_ref(self.tp.partition, *o)).collect();
                    let tp = TopicPartition::new(&t.topic, t.partition);
                    match m.target_probe(&tp, Some(t.log_end), refs).await? {
                        Some((_, there)) => {
                            let there: std::collections::HashSet<String> = there.into_iter().collect();
                            found.extend(
                                t.offsets.iter().copied().filter(|o| there.contains(&timer_ref(self.tp.partition, *o))),
                            );
                        }
                        // The topic is gone: nothing left to deliver.
                        None => found.extend(t.offsets.iter().copied()),
                    }
                }
                self.journal(m, &Entry::Done { intent: *intent, offsets: found.clone() }).await?;
                tracing::info!(shard = %self.tp, intent, delivered = found.len(), "timer: resolved an interrupted delivery");
                let mut wheel = self.wheel.lock();
                for (o, at) in deadlines {
                    if !found.contains(o) {
                        wheel.insert(*at, *o);
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves the partition's start past everything delivered: to the
    /// oldest pending or unfinished entry or open transaction.
    pub(super) async fn trim(&self, m: &Messaging) -> Result<()> {
        let _w = self.writers.write().await;
        let _g = self.gate.lock().await;
        if !self.serving() {
            return Ok(());
        }
        let mut low = self.wheel.lock().iter().map(|(_, o)| *o).min().unwrap_or(u64::MAX);
        low = low.min(self.halves.lock().keys().next().copied().unwrap_or(u64::MAX));
        for u in self.unfinished.lock().iter() {
            low = low.min(u.intent());
            if let Unfinished::Resolve { deadlines, .. } = u {
                low = low.min(deadlines.keys().next().copied().unwrap_or(u64::MAX));
            }
        }
        let low = low.min(self.partition.log_end_offset());
        if low > self.partition.log_start_offset() {
            m.broker.delete_records(&self.tp, low).await?;
        }
        Ok(())
    }

    /// Pending entries (the wheel and unfinished resolutions).
    pub(super) fn pending(&self) -> usize {
        let unresolved: usize = self
            .unfinished
            .lock()
            .iter()
            .map(|u| match u {
                Unfinished::Resolve { deadlines, .. } => deadlines.len(),
                Unfinished::Finish { .. } => 0,
            })
            .sum();
        self.wheel.lock().len() + unresolved
    }
}

/// Records at the given ascending offsets of `p`, reading runs of nearby
/// offsets with one read.
pub(super) fn read_offsets(p: &Partition, offsets: &[u64]) -> Result<Vec<Record>> {
    read_offsets_with(offsets, &p.id().to_string(), |o| {
        p.read_appended(o, 256 << 10).map_err(|e| MessagingError::log(p.id().to_string(), e))
    })
}

/// Records at the given ascending offsets, `read` giving the records from
/// an offset on; `what` names the log in errors.
pub(super) fn read_offsets_with(
    offsets: &[u64],
    what: &str,
    mut read: impl FnMut(u64) -> Result<Vec<Record>>,
) -> Result<Vec<Record>> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut buf: std::collections::VecDeque<Record> = Default::default();
    for &o in offsets {
        while buf.front().is_some_and(|r| r.offset < o) {
            buf.pop_front();
        }
        if buf.front().is_none_or(|r| r.offset != o) {
            buf = read(o)?.into();
            while buf.front().is_some_and(|r| r.offset < o) {
                buf.pop_front();
            }
        }
        match buf.front() {
            Some(r) if r.offset == o => out.push(r.clone()),
            _ => tracing::error!(log = what, offset = o, "timer entry missing; dropped"),
        }
    }
    Ok(out)
}
