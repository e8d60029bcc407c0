//! A partition's producer table: the producer states its log makes, kept
//! exact by applying every write group in log order (see the `producers`
//! module docs for why and how).
//!
//! Invariants:
//! - loaded, the table holds exactly the state of the log's batches below
//!   its `end`; the append queue applies each group it wrote before it
//!   answers the group's writers, so a write that returned is in the
//!   table (or the table is unloaded and a load will replay it);
//! - a cut of the log (truncation, reset, recovery) unloads the table and
//!   bumps its generation, so a load begun before the cut never installs;
//! - a snapshot is saved only at the table's `end`, which the log still
//!   reaches (the log refuses it otherwise), so a snapshot never describes
//!   batches the log does not hold.
//!
//! Transactions (`docs/design/transactions.md` §3): a transactional batch
//! opens its producer's transaction at its offset, a marker (control
//! batch) closes it; an abort marker makes an aborted-transaction entry
//! for the log's index, derived here as the marker is applied (by the
//! append queue's drain, or by a replay, which adds the same entries
//! again: the index ignores an entry it holds). The last stable offset is
//! the least of the high watermark, the first offset of the oldest open
//! transaction and that of the oldest completed one whose marker the high
//! watermark does not cover yet.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use fjord_log::batch::{BatchHeader, TimestampType};
use fjord_log::control::{TxnMarker, read_marker};
use fjord_log::{AbortedTxn, AppendInfo, AppendOrigin, Log, ReadBound};
use parking_lot::Mutex;

use super::{Check, ProducerEntry, Sequenced, Stamped};
use crate::error::{BrokerError, Result, blocking};

/// The snapshot format's version (a JSON object: `version`, `producers`
/// and, from version 2, `completed`; version 1 — no transactions yet —
/// still loads).
const SNAPSHOT_VERSION: u32 = 2;

/// Bytes read at a time while replaying batch headers.
const REPLAY_READ: usize = 8 << 20;

/// Per-partition producer states; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct ProducerTable {
    state: Mutex<State>,
    /// One load at a time.
    loading: tokio::sync::Mutex<()>,
    /// One lock per producer: its check and its write are serialised.
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every cut: a load begun before it is stale.
    generation: u64,
    /// `None` until loaded, and again after a cut.
    loaded: Option<Loaded>,
}

#[derive(Debug)]
pub(super) struct Loaded {
    /// The states are those of the batches below this offset.
    end: u64,
    entries: HashMap<i64, ProducerEntry>,
    /// The offset of the newest snapshot saved or loaded (0: none).
    snapshot: u64,
    /// Open transactions: (first offset, producer id), from `entries`.
    open: BTreeSet<(u64, i64)>,
    /// Completed transactions whose marker the high watermark may not
    /// cover yet: (first offset, marker offset), in marker order.
    completed: VecDeque<(u64, u64)>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Snapshot {
    version: u32,
    producers: HashMap<i64, ProducerEntry>,
    #[serde(default)]
    completed: VecDeque<(u64, u64)>,
}

/// What applying a write needs to know of one of its batches, read from
/// its bytes before the write (the write takes them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchFacts {
    /// The producer's identity and sequences; `None` for batches of no
    /// idempotent producer, and for control batches.
    sequenced: Option<Sequenced>,
    /// The producer's id and epoch (any batch that names one).
    producer: Option<(i64, i16)>,
    transactional: bool,
    /// The transaction marker a control batch holds.
    marker: Option<TxnMarker>,
    /// The base offset the bytes carry (a replica's write keeps it).
    base_offset: u64,
    last_offset_delta: u32,
    max_timestamp: i64,
}

/// The batches of an append's bytes. Bytes the log will refuse may end
/// the list early; the write then fails, or the apply sees too few
/// batches and unloads the table.
pub(crate) fn facts_of(data: &[u8]) -> Vec<BatchFacts> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < data.len() {
        let Ok(h) = BatchHeader::parse(&data[pos..]) else { break };
        let whole = &data[pos..(pos + h.total_len()).min(data.len())];
        out.push(BatchFacts {
            sequenced: if h.is_control() { None } else { Sequenced::of(&h) },
            producer: (h.producer_id >= 0).then_some((h.producer_id, h.producer_epoch)),
            // A control batch opens nothing (one without a readable
            // marker changes nothing but the table's end).
            transactional: h.is_transactional() && !h.is_control(),
            marker: if h.is_control() { read_marker(whole).ok().flatten() } else { None },
            base_offset: h.base_offset,
            last_offset_delta: h.last_offset_delta,
            max_timestamp: h.max_timestamp,
        });
        pos += h.total_len();
    }
    out
}

impl ProducerTable {
    /// Whether the table is loaded.
    pub(crate) fn is_loaded(&self) -> bool {
        self.state.lock().loaded.is_some()
    }

    /// Loads the table unless it is: from the newest snapshot at or below
    /// the log end and the batch headers after it.
    pub(crate) async fn ensure_loaded(&self, log: &Arc<Log>) -> Result<()> {
        if self.is_loaded() {
            return Ok(());
        }
        let _one = self.loading.lock().await;
        loop {
            let generation = {
                let st = self.state.lock();
                if st.loaded.is_some() {
                    return Ok(());
                }
                st.generation
            };
            let from = log.clone();
            let mut loaded = blocking(move || load(&from)).await??;
            let mut st = self.state.lock();
            if st.generation != generation {
                // Cut while loading: load from what the log holds now.
                drop(st);
                continue;
            }
            if st.loaded.is_some() {
                // A blocking reader loaded it meanwhile.
                return Ok(());
            }
            // What was written while loading (the appends skipped it, as
            // the table was not loaded): a short tail, read under the lock
            // so no write group applies in between.
            let aborted = replay(log, &mut loaded)?;
            add_aborted(log, &aborted)?;
            st.loaded = Some(loaded);
            return Ok(());
        }
    }

    /// [`ProducerTable::ensure_loaded`] for readers on the blocking pool
    /// (the messaging layer's reads need the last stable offset). Blocking
    /// file I/O.
    pub(crate) fn ensure_loaded_blocking(&self, log: &Log) -> Result<()> {
        loop {
            let generation = {
                let st = self.state.lock();
                if st.loaded.is_some() {
                    return Ok(());
                }
                st.generation
            };
            let mut loaded = load(log)?;
            let mut st = self.state.lock();
            if st.loaded.is_some() {
                return Ok(());
            }
            if st.generation != generation {
                continue;
            }
            let aborted = replay(log, &mut loaded)?;
            add_aborted(log, &aborted)?;
            st.loaded = Some(loaded);
            return Ok(());
        }
    }

    /// Forgets the states (the log was cut): the next use loads them again
    /// from what the log holds.
    pub(crate) fn reset(&self) {
        let mut st = self.state.lock();
        st.generation += 1;
        st.loaded = None;
    }

    /// The lock that serialises `producer_id`'s check and write.
    pub(crate) fn producer_lock(&self, producer_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(producer_id).or_default().clone()
    }

    /// Checks a marker of `producer_id` at `epoch` from `coordinator_epoch`
    /// against the producer's state (`docs/design/transactions.md` §3): an
    /// older producer epoch is INVALID_PRODUCER_EPOCH, an older coordinator
    /// epoch TRANSACTION_COORDINATOR_FENCED; a newer producer epoch passes
    /// (TV2 markers carry the next one). `None` while not loaded.
    pub(crate) fn check_marker(&self, producer_id: i64, epoch: i16, coordinator_epoch: i32) -> Option<Result<()>> {
        let st = self.state.lock();
        let loaded = st.loaded.as_ref()?;
        let Some(e) = loaded.entries.get(&producer_id) else { return Some(Ok(())) };
        Some(e.check_marker(producer_id, epoch, coordinator_epoch))
    }

    /// Checks `b` against its producer's state; `None` while the table is
    /// not loaded.
    pub(crate) fn check(&self, b: &Sequenced) -> Option<Result<Check>> {
        let st = self.state.lock();
        let loaded = st.loaded.as_ref()?;
        Some(ProducerEntry::check(loaded.entries.get(&b.producer_id), b))
    }

    /// Applies a written group, in log order: each write's batch facts, its
    /// origin and what the log says it wrote (failed writes wrote nothing
    /// and are left out). Returns the aborted transactions its markers
    /// ended, for the log's index (the caller adds them before it answers
    /// the group).
    pub(crate) fn apply<'a>(
        &self,
        writes: impl IntoIterator<Item = (&'a [BatchFacts], AppendOrigin, &'a AppendInfo)>,
    ) -> Vec<AbortedTxn> {
        let mut aborted = Vec::new();
        let mut st = self.state.lock();
        let Some(loaded) = st.loaded.as_mut() else { return aborted };
        for (facts, origin, info) in writes {
            if !loaded.apply(facts, origin, info, &mut aborted) {
                tracing::warn!(
                    base_offset = info.base_offset,
                    batches = info.batches,
                    "a write's batches differ from the bytes read before it: reloading the producer state"
                );
                st.generation += 1;
                st.loaded = None;
                // The load replays these batches and derives their entries.
                return Vec::new();
            }
        }
        aborted
    }

    /// The last stable offset under high watermark `hw` (see the module
    /// docs); `None` while the table is not loaded.
    pub(crate) fn last_stable_offset(&self, hw: u64) -> Option<u64> {
        let mut st = self.state.lock();
        let loaded = st.loaded.as_mut()?;
        while loaded.completed.front().is_some_and(|(_, marker)| *marker < hw) {
            loaded.completed.pop_front();
        }
        let open = loaded.open.first().map(|(first, _)| *first);
        let unreplicated = loaded.completed.iter().map(|(first, _)| *first).min();
        Some([open, unreplicated].into_iter().flatten().fold(hw, u64::min))
    }

    /// A snapshot to save when the log rolled a segment since the last one
    /// (`active_base`: the active segment's base offset): its offset and
    /// bytes.
    pub(crate) fn snapshot_due(&self, active_base: u64) -> Option<(u64, Vec<u8>)> {
        let mut st = self.state.lock();
        let loaded = st.loaded.as_mut()?;
        if loaded.snapshot >= active_base || loaded.end < active_base {
            return None;
        }
        loaded.take_snapshot()
    }

    /// Saves a snapshot at the log end, if the table reaches it and none
    /// was saved there (a clean shutdown: the next open loads it without a
    /// replay). Blocking file I/O.
    pub(crate) fn save_at_end(&self, log: &Log) -> Result<()> {
        let due = {
            let mut st = self.state.lock();
            let Some(loaded) = st.loaded.as_mut() else { return Ok(()) };
            if loaded.end != log.log_end_offset() || loaded.snapshot == loaded.end {
                return Ok(());
            }
            loaded.take_snapshot()
        };
        if let Some((offset, bytes)) = due {
            log.save_snapshot(offset, &bytes).map_err(|e| BrokerError::log("saving producer state", e))?;
        }
        Ok(())
    }

    /// Forgets producers whose last batch is older than `before_ms` and
    /// that are not writing now; returns how many went.
    pub(crate) fn expire(&self, before_ms: i64) -> usize {
        let mut st = self.state.lock();
        let Some(loaded) = st.loaded.as_mut() else { return 0 };
        let mut locks = self.locks.lock();
        let busy = |pid: &i64| locks.get(pid).is_some_and(|l| Arc::strong_count(l) > 1);
        let before = loaded.entries.len();
        // A producer with an open transaction stays: its transaction
        // holds the last stable offset until its coordinator ends it.
        loaded.entries.retain(|pid, e| e.last_timestamp >= before_ms || busy(pid) || e.txn_first.is_some());
        locks.retain(|pid, l| Arc::strong_count(l) > 1 || loaded.entries.contains_key(pid));
        before - loaded.entries.len()
    }

    /// The states and the offset they reach, if loaded (tests).
    #[cfg(test)]
    pub(crate) fn snapshot_for_tests(&self) -> Option<(u64, HashMap<i64, ProducerEntry>)> {
        let st = self.state.lock();
        st.loaded.as_ref().map(|l| (l.end, l.entries.clone()))
    }
}

impl Loaded {
    #[cfg(test)]
    pub(super) fn empty_at(start: u64) -> Loaded {
        Loaded::new(start, HashMap::new(), 0, VecDeque::new())
    }

    fn new(end: u64, entries: HashMap<i64, ProducerEntry>, snapshot: u64, completed: VecDeque<(u64, u64)>) -> Loaded {
        let open = entries.iter().filter_map(|(pid, e)| e.txn_first.map(|first| (first, *pid))).collect();
        Loaded { end, entries, snapshot, open, completed }
    }

    #[cfg(test)]
    pub(super) fn into_parts(self) -> (u64, HashMap<i64, ProducerEntry>) {
        (self.end, self.entries)
    }

    /// The snapshot of the states at `end`, recorded as taken (a failed
    /// save is not retried before the next roll or shutdown).
    fn take_snapshot(&mut self) -> Option<(u64, Vec<u8>)> {
        self.snapshot = self.end;
        encode(&self.entries, &self.completed).map(|bytes| (self.end, bytes))
    }

    /// Applies one write; false when its batches do not match what it
    /// wrote (the table must be reloaded).
    fn apply(
        &mut self,
        facts: &[BatchFacts],
        origin: AppendOrigin,
        info: &AppendInfo,
        aborted: &mut Vec<AbortedTxn>,
    ) -> bool {
        if facts.len() != info.batches {
            return false;
        }
        let mut next = info.base_offset;
        for f in facts {
            let base = match origin {
                AppendOrigin::Replica => f.base_offset,
                AppendOrigin::Leader { .. } => next,
            };
            let last = base + u64::from(f.last_offset_delta);
            next = last + 1;
            let stamped = Stamped {
                max_timestamp: info.log_append_time.unwrap_or(f.max_timestamp),
                log_append_time: info.log_append_time,
            };
            let Batch { sequenced, producer, transactional, marker, .. } = Batch::of(f);
            self.batch(Batch { base, last, sequenced, producer, transactional, marker, stamped }, aborted);
        }
        true
    }

    /// Applies one batch, written or read back, in log order.
    fn batch(&mut self, b: Batch, aborted: &mut Vec<AbortedTxn>) {
        // Already in the table: a load replayed it.
        if b.base < self.end {
            return;
        }
        if let Some(s) = &b.sequenced {
            self.entries.entry(s.producer_id).or_default().record(s, b.base, b.last, b.stamped);
        }
        if let Some((pid, epoch)) = b.producer {
            match b.marker {
                Some(m) => self.end_transaction(pid, epoch, m, b.last, b.stamped, aborted),
                None if b.transactional => {
                    let e = self.entries.entry(pid).or_default();
                    if e.txn_first.is_none() {
                        e.txn_first = Some(b.base);
                        self.open.insert((b.base, pid));
                    }
                }
                None => {}
            }
        }
        self.end = b.last + 1;
    }

    /// `pid`'s marker at offset `at` ends its open transaction, if any
    /// (a marker for none changes nothing else); an abort makes an entry
    /// whose last stable offset is the first offset of the oldest other
    /// open transaction, else `at + 1` (Kafka's
    /// `ProducerStateManager.lastStableOffset`).
    fn end_transaction(
        &mut self,
        pid: i64,
        epoch: i16,
        m: TxnMarker,
        at: u64,
        stamped: Stamped,
        aborted: &mut Vec<AbortedTxn>,
    ) {
        let e = self.entries.entry(pid).or_default();
        e.marker_epoch(epoch, stamped);
        e.coordinator_epoch = Some(m.coordinator_epoch);
        let Some(first) = e.txn_first.take() else { return };
        self.open.remove(&(first, pid));
        if !m.commit {
            let lso = self.open.first().map_or(at + 1, |(f, _)| *f);
            aborted.push(AbortedTxn {
                producer_id: pid,
                first_offset: first,
                last_offset: at,
                last_stable_offset: lso,
            });
        }
        self.completed.push_back((first, at));
    }
}

/// One batch as the table applies it.
struct Batch {
    base: u64,
    last: u64,
    sequenced: Option<Sequenced>,
    producer: Option<(i64, i16)>,
    transactional: bool,
    marker: Option<TxnMarker>,
    stamped: Stamped,
}

impl Batch {
    /// What the facts read from a write's bytes say (offsets and stamps
    /// are the log's: the caller sets them).
    fn of(f: &BatchFacts) -> Batch {
        Batch {
            base: f.base_offset,
            last: f.base_offset + u64::from(f.last_offset_delta),
            sequenced: f.sequenced,
            producer: f.producer,
            transactional: f.transactional,
            marker: f.marker,
            stamped: Stamped { max_timestamp: f.max_timestamp, log_append_time: None },
        }
    }

    /// A batch read back from the log (`whole`: its bytes, when the read
    /// holds all of them; a marker needs its record).
    fn read(h: &BatchHeader, whole: Option<&[u8]>) -> Batch {
        let append_time = (h.timestamp_type() == TimestampType::LogAppendTime).then_some(h.max_timestamp);
        Batch {
            base: h.base_offset,
            last: h.last_offset(),
            sequenced: Sequenced::of(h).filter(|_| !h.is_control()),
            producer: (h.producer_id >= 0).then_some((h.producer_id, h.producer_epoch)),
            // A control batch opens nothing (one without a readable
            // marker changes nothing but the table's end).
            transactional: h.is_transactional() && !h.is_control(),
            marker: if h.is_control() { whole.and_then(|b| read_marker(b).ok().flatten()) } else { None },
            stamped: Stamped { max_timestamp: h.max_timestamp, log_append_time: append_time },
        }
    }
}

/// Adds derived aborted-transaction entries to the log's index.
fn add_aborted(log: &Log, aborted: &[AbortedTxn]) -> Result<()> {
    if aborted.is_empty() {
        return Ok(());
    }
    log.add_aborted(aborted).map_err(|e| BrokerError::log("indexing aborted transactions", e))
}

fn encode(entries: &HashMap<i64, ProducerEntry>, completed: &VecDeque<(u64, u64)>) -> Option<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        version: u32,
        producers: &'a HashMap<i64, ProducerEntry>,
        completed: &'a VecDeque<(u64, u64)>,
    }
    match serde_json::to_vec(&Out { version: SNAPSHOT_VERSION, producers: entries, completed }) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::error!(error = %e, "encoding a producer-state snapshot failed");
            None
        }
    }
}

/// The table as the log makes it: the newest snapshot at or below its end
/// (one that cannot be read is skipped, with a warning: the state then
/// starts at the log start), then the batches after it. After an unclean
/// open, from one at or below the point the log rescanned from: a crash
/// may have lost the index entries of aborts in the rescanned tail, and
/// the replay derives them again.
fn load(log: &Log) -> Result<Loaded> {
    let ctx = |e| BrokerError::log(format!("loading the producer state of {}", log.dir().display()), e);
    let start = log.log_start_offset();
    // (A recovery point below the log start — retention moved on since it
    // was checkpointed — rescanned from the log start.)
    let at_most = log.rescanned_from().map_or(log.log_end_offset(), |r| r.max(start).min(log.log_end_offset()));
    let found = log.latest_snapshot(at_most).map_err(ctx)?;
    let mut loaded = Loaded::new(start, HashMap::new(), 0, VecDeque::new());
    if let Some((offset, bytes)) = found {
        match serde_json::from_slice::<Snapshot>(&bytes) {
            Ok(s) if (1..=SNAPSHOT_VERSION).contains(&s.version) => {
                // Below the log start, it still holds the producers of
                // batches retention deleted.
                loaded = Loaded::new(offset.max(start), s.producers, offset, s.completed);
            }
            Ok(s) => {
                tracing::warn!(dir = %log.dir().display(), offset, version = s.version, "producer-state snapshot of an unknown version: replaying the log instead")
            }
            Err(e) => {
                tracing::warn!(dir = %log.dir().display(), offset, error = %e, "unreadable producer-state snapshot: replaying the log instead")
            }
        }
    }
    let aborted = replay(log, &mut loaded)?;
    add_aborted(log, &aborted)?;
    Ok(loaded)
}

/// Applies the batches from the table's end to the log end (their
/// headers; a marker's record too); returns the aborted transactions
/// their markers ended.
pub(super) fn replay(log: &Log, loaded: &mut Loaded) -> Result<Vec<AbortedTxn>> {
    let mut aborted = Vec::new();
    let ctx = |e| BrokerError::log(format!("replaying the producer state of {}", log.dir().display()), e);
    let mut offset = loaded.end;
    while offset < log.log_end_offset() {
        let read = log.read(offset, REPLAY_READ, ReadBound::LogEnd).map_err(ctx)?;
        let Some(slice) = read.slice else { break };
        let bytes = slice.to_bytes().map_err(ctx)?;
        let before = offset;
        let mut pos = 0;
        while pos < bytes.len() {
            // A batch cut short by the read's budget still has its header;
            // a marker needs its record: read again from it.
            let Ok(h) = BatchHeader::parse(&bytes[pos..]) else { break };
            let whole = bytes.get(pos..pos + h.total_len());
            if h.is_control() && whole.is_none() && pos > 0 {
                break;
            }
            loaded.batch(Batch::read(&h, whole), &mut aborted);
            offset = h.next_offset();
            pos += h.total_len();
        }
        if offset == before {
            break;
        }
    }
    Ok(aborted)
}
