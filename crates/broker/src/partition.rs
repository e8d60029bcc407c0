//! A topic's partitions and their logs.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use fjord_log::batch::Record;
use fjord_log::{AppendInfo, AppendOrigin, Log, LogError, ReadBound};
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::append_queue::AppendQueue;
use crate::commit::{CommitPoint, Until, Written};

use crate::topic::TopicRecord;

/// Identifies a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
}

impl TopicPartition {
    /// A topic-partition pair.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// One partition: its log, its commit point (the high watermark, which
/// long-polling fetches wait on instead of polling) and its append queue.
///
/// Writes go through [`Partition::append`], which returns once the batch is
/// written, and [`Partition::committed`], which resolves once the high
/// watermark covers it; readers see committed records only.
#[derive(Debug)]
pub struct Partition {
    id: TopicPartition,
    log: Arc<Log>,
    /// The epoch this node leads the partition in (stamped on every batch
    /// it appends); raised when the cluster's placement gives it a newer
    /// one, never lowered.
    leader_epoch: std::sync::atomic::AtomicI32,
    /// The newest leader epoch of a tail this replica's log lost to an
    /// in-place recovery (-1: none): it appends as leader only in a newer
    /// epoch (see [`Partition::fence_epochs_through`]).
    lost_tail_epoch: std::sync::atomic::AtomicI32,
    pub(crate) commit: Arc<CommitPoint>,
    pub(crate) appends: Arc<AppendQueue>,
    pub(crate) producers: Arc<crate::producers::ProducerTable>,
    pub(crate) traffic: crate::traffic::Traffic,
}

impl Partition {
    pub(crate) fn new(id: TopicPartition, log: Log, leader_epoch: i32) -> Partition {
        let log = Arc::new(log);
        let commit = Arc::new(CommitPoint::new(log.clone()));
        let producers = Arc::<crate::producers::ProducerTable>::default();
        Partition {
            id,
            appends: Arc::new(AppendQueue::new(log.clone(), commit.clone(), producers.clone())),
            log,
            leader_epoch: std::sync::atomic::AtomicI32::new(leader_epoch),
            lost_tail_epoch: std::sync::atomic::AtomicI32::new(-1),
            commit,
            producers,
            traffic: Default::default(),
        }
    }

    /// Writes record batches (offsets assigned, stamped with this leader's
    /// epoch); returns once they are in the log, before they are committed:
    /// wait for that with [`Partition::committed`].
    /// Refused (NOT_LEADER, no leader named) while this replica needs a
    /// new leader epoch (see [`Partition::needs_new_epoch`]).
    pub(crate) async fn append(&self, data: BytesMut) -> crate::error::Result<Result<(AppendInfo, Written), LogError>> {
        let epoch = self.leader_epoch();
        if self.needs_new_epoch() {
            return Err(crate::BrokerError::NotLeader { tp: self.id.to_string(), leader: None, leader_epoch: epoch });
        }
        self.appends.append(data, AppendOrigin::Leader { epoch }).await
    }

    /// The write that ended at `last_offset`, as of the log's current
    /// generation: a batch recorded in the producer state (which is
    /// forgotten whenever the log is cut) that a retry waits for.
    pub(crate) fn written_at(&self, last_offset: u64) -> Written {
        CommitPoint::written(self.commit.stamp(), last_offset)
    }

    /// Resolves once the high watermark covers a client's write; fails when
    /// it never will (the log failed before, or was cut after, the write).
    /// Outlasts a change of leader (see [`crate::commit`]).
    pub(crate) async fn committed(&self, written: Written) -> Result<(), LogError> {
        self.commit.committed(written, Until::Committed).await
    }

    /// Whether `written` was cut from this log since it was written (see
    /// [`CommitPoint::cut_since`]).
    pub(crate) fn cut_since(&self, written: Written) -> bool {
        self.commit.cut_since(written)
    }

    /// As [`Partition::committed`], for the broker's own writes: also fails
    /// once this replica stops leading.
    pub(crate) async fn committed_while_leading(&self, written: Written) -> Result<(), LogError> {
        self.commit.committed(written, Until::CommittedWhileLeading).await
    }

    /// Resolves once this replica holds a write durably under the topic's
    /// policy (Kafka's `acks=1`), whether or not the high watermark covers
    /// it yet; fails when it never will (the log failed, or was cut).
    pub(crate) async fn locally_durable(&self, written: Written) -> Result<(), LogError> {
        self.commit.locally_durable_wait(written).await
    }

    /// Waits until every offset below `offset` is on stable storage,
    /// whatever the durability policy (which decides only when a write
    /// counts as committed). Blocking: call it from the blocking pool.
    pub fn wait_durable(&self, offset: u64) -> Result<(), LogError> {
        self.log.wait_durable(offset)
    }

    /// Why this replica cannot write (a write or fsync failed: a full or
    /// failing disk) until it is recovered; `None` while it can.
    pub fn write_failure(&self) -> Option<String> {
        self.log.poisoned()
    }

    /// Whether this replica's log lost, to an in-place recovery, a tail
    /// written in the leader epoch it would lead in now or a later one: it
    /// must not append as leader until the cluster gives it a newer epoch
    /// (following, it copies its leader's batches as ever). A
    /// rewrite of the lost offsets in the epoch they were written in
    /// would look, to a follower that copied them, like the same records
    /// (same offsets, same epoch: `OffsetForLeaderEpoch` finds no
    /// divergence), and that follower's progress would count towards
    /// committing records it does not hold (the checker's seed 10).
    pub fn needs_new_epoch(&self) -> bool {
        self.leader_epoch() <= self.lost_tail_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Before an in-place recovery of a replicated partition's log: the
    /// tail it may cut was written in `epoch` at the newest, so this
    /// replica appends as leader only in a newer one. (A single replica
    /// has no follower to mislead: it writes on in its epoch.)
    pub(crate) fn fence_epochs_through(&self, epoch: i32) {
        self.lost_tail_epoch.fetch_max(epoch, std::sync::atomic::Ordering::AcqRel);
    }

    /// Makes a poisoned log writable again by cutting it back to its
    /// durable point (see [`Log::recover`]); writes waiting for their commit
    /// past that point fail. Blocking file I/O.
    pub(crate) fn recover(&self) -> Result<Option<fjord_log::RecoveryOutcome>, LogError> {
        if self.log.poisoned().is_none() {
            return Ok(None);
        }
        self.commit.before_recovery();
        let outcome = self.log.recover();
        self.commit.after_cut();
        // Batches the producer state holds may be gone with the cut.
        self.producers.reset();
        outcome
    }

    /// Cuts the log at `offset` (a tail that diverged from the leader's;
    /// the cut lands on a batch boundary at or below it) and returns the
    /// new log end. The high watermark moves back with it (and its
    /// checkpoint), and writes waiting for a commit past the cut fail.
    /// Blocking file I/O.
    pub fn truncate_to(&self, offset: u64) -> Result<u64, LogError> {
        self.commit.before_truncation(offset);
        let end = self.log.truncate_to(offset);
        self.commit.after_cut();
        self.producers.reset();
        end
    }

    /// The partition's identity.
    pub fn id(&self) -> &TopicPartition {
        &self.id
    }

    /// The partition's log: the broker's own business (appends, retention,
    /// truncation); everyone else reads through the methods below, which
    /// stop at the commit point.
    pub(crate) fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The log, for tests that inject storage faults or inspect it.
    #[cfg(feature = "fault-injection")]
    pub fn log_for_tests(&self) -> &Arc<Log> {
        &self.log
    }

    /// Committed records from `offset` (the batch holding it and those
    /// after), about `max_bytes` of them, as Kafka's `read_committed`
    /// consumers see them: never past the last stable offset, without
    /// markers or the records of aborted transactions. Empty only when
    /// nothing readable lies between `offset` and the last stable offset:
    /// batches that hold no record to return (markers, aborted
    /// transactions) are read past, so callers may take "empty" for "the
    /// end for now". Blocking file I/O: call it from the blocking pool.
    pub fn read_committed(&self, offset: u64, max_bytes: usize) -> Result<Vec<Record>, LogError> {
        let end = self.stable_end()?;
        let mut from = offset;
        loop {
            let aborted = self.log.aborted(from, end);
            let (records, next) = self.log.read_records_skipping(from, max_bytes, ReadBound::Below(end), &aborted)?;
            if !records.is_empty() || next <= from || next >= end {
                return Ok(records);
            }
            from = next;
        }
    }

    /// The last stable offset, for readers on the blocking pool (loads
    /// the producer state if need be).
    fn stable_end(&self) -> Result<u64, LogError> {
        for _ in 0..8 {
            let hw = self.high_watermark();
            if let Some(lso) = self.producers.last_stable_offset(hw) {
                return Ok(lso.max(self.log_start_offset()).min(hw));
            }
            self.producers
                .ensure_loaded_blocking(&self.log)
                .map_err(|e| LogError::Internal(format!("{}: loading the producer state: {e}", self.id)))?;
        }
        Err(LogError::Internal(format!("{}: its producer state keeps being cut while loading", self.id)))
    }

    /// Records from `offset` up to the log end, including appended ones the
    /// high watermark does not cover yet. Only for recovery, which must see
    /// what an interrupted write left (e.g. the timer checking which of its
    /// deliveries landed); consumers use [`Partition::read_committed`].
    /// Blocking file I/O.
    pub fn read_appended(&self, offset: u64, max_bytes: usize) -> Result<Vec<Record>, LogError> {
        self.log.read_records(offset, max_bytes, ReadBound::LogEnd)
    }

    /// Committed records whose key (or indexed header) hashes to `key`'s,
    /// at most `limit` (callers check the key itself: the index holds
    /// hashes). Needs the topic's key index. Blocking file I/O.
    pub fn lookup_key(&self, key: &[u8], limit: usize) -> Result<Vec<Record>, LogError> {
        // Below the last stable offset, as the other reads (records of
        // aborted transactions are not told apart here yet: the key index
        // returns records without their batch).
        let end = self.stable_end()?;
        let mut recs = self.log.lookup_key(key, limit)?;
        recs.retain(|r| r.offset < end);
        Ok(recs)
    }

    /// The first offset whose timestamp is at or after `ts` (ms), with that
    /// timestamp; `None` when every record is older. Blocking file I/O.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(u64, i64)>, LogError> {
        self.log.offset_for_timestamp(ts)
    }

    /// The high watermark: offsets below it are committed and readable.
    pub fn high_watermark(&self) -> u64 {
        self.commit.high_watermark()
    }

    /// The last stable offset (`docs/design/transactions.md` §3): below
    /// it, every record is committed and no transaction is open — what
    /// `read_committed` readers see. Never past the high watermark, never
    /// below the log start. Loads the producer state first if a cut or an
    /// open left it unloaded (after an unclean open, the replay that
    /// re-derives the aborted transactions of the rescanned tail).
    pub async fn last_stable_offset(&self) -> crate::error::Result<u64> {
        for _ in 0..8 {
            self.producers.ensure_loaded(&self.log).await?;
            let hw = self.high_watermark();
            if let Some(lso) = self.producers.last_stable_offset(hw) {
                return Ok(lso.max(self.log_start_offset()).min(hw));
            }
        }
        Err(crate::BrokerError::Unavailable(format!("{}: its producer state keeps being cut while loading", self.id)))
    }

    /// The aborted transactions with records in `[from, to)`, for a
    /// `read_committed` reader of that range (Kafka's
    /// `collectAbortedTxns`, `to` being the last stable offset).
    pub fn aborted_transactions(&self, from: u64, to: u64) -> Vec<fjord_log::AbortedTxn> {
        self.log.aborted(from, to)
    }

    /// The first offset still retained.
    pub fn log_start_offset(&self) -> u64 {
        self.log.log_start_offset()
    }

    /// The next offset to be written (appended, maybe not yet committed).
    pub fn log_end_offset(&self) -> u64 {
        self.log.log_end_offset()
    }

    /// Sizes and offsets of the partition's log.
    pub fn log_stats(&self) -> fjord_log::LogStats {
        self.log.stats()
    }

    /// Current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Adopts the leader epoch the cluster gives this node's leadership
    /// (ignored when not newer): later appends are stamped with it, and
    /// requests naming an older one are fenced.
    pub(crate) fn raise_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.fetch_max(epoch, std::sync::atomic::Ordering::AcqRel);
    }

    /// Records and bytes produced to and fetched from this partition since
    /// the broker started.
    pub fn traffic(&self) -> crate::traffic::TrafficSnapshot {
        self.traffic.snapshot()
    }

    /// Watches the high watermark.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.commit.subscribe()
    }
}

/// A topic: its stored record and partitions.
#[derive(Debug)]
pub struct Topic {
    pub(crate) dir: PathBuf,
    pub(crate) record: RwLock<TopicRecord>,
    pub(crate) partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    /// The stored description (id, partition count, config overrides).
    pub fn record(&self) -> TopicRecord {
        self.record.read().clone()
    }

    /// Topic id.
    pub fn id(&self) -> uuid::Uuid {
        self.record.read().id
    }

    /// Topic name.
    pub fn name(&self) -> String {
        self.record.read().name.clone()
    }

    /// The partitions, in index order.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().clone()
    }

    /// One partition.
    pub fn partition(&self, index: u32) -> Option<Arc<Partition>> {
        self.partitions.read().get(index as usize).cloned()
    }
}
