//! A topic's partitions and their logs.

use std::path::PathBuf;
use std::sync::Arc;

use fjord_log::batch::Record;
use fjord_log::{Log, LogError, ReadBound};
use parking_lot::RwLock;
use tokio::sync::watch;

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

/// One partition: its log and a signal that fires when its high watermark
/// moves, which long-polling fetches wait on instead of polling.
#[derive(Debug)]
pub struct Partition {
    id: TopicPartition,
    log: Arc<Log>,
    leader_epoch: i32,
    high_watermark: watch::Sender<u64>,
    pub(crate) producers: crate::producers::ProducerTable,
    pub(crate) traffic: crate::traffic::Traffic,
    pub(crate) appends: Arc<crate::append_queue::AppendQueue>,
}

impl Partition {
    pub(crate) fn new(id: TopicPartition, log: Log, leader_epoch: i32) -> Partition {
        let (high_watermark, _) = watch::channel(log.high_watermark());
        Partition {
            id,
            log: Arc::new(log),
            leader_epoch,
            high_watermark,
            producers: Default::default(),
            traffic: Default::default(),
            appends: Default::default(),
        }
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
    /// after), about `max_bytes` of them, never past the high watermark.
    /// Blocking file I/O: call it from the blocking pool.
    pub fn read_committed(&self, offset: u64, max_bytes: usize) -> Result<Vec<Record>, LogError> {
        self.log.read_records(offset, max_bytes, ReadBound::HighWatermark)
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
        let hw = self.high_watermark();
        let mut recs = self.log.lookup_key(key, limit)?;
        recs.retain(|r| r.offset < hw);
        Ok(recs)
    }

    /// The first offset whose timestamp is at or after `ts` (ms), with that
    /// timestamp; `None` when every record is older. Blocking file I/O.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(u64, i64)>, LogError> {
        self.log.offset_for_timestamp(ts)
    }

    /// The high watermark: offsets below it are committed and readable.
    pub fn high_watermark(&self) -> u64 {
        self.log.high_watermark()
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
        self.leader_epoch
    }

    /// Records and bytes produced to and fetched from this partition since
    /// the broker started.
    pub fn traffic(&self) -> crate::traffic::TrafficSnapshot {
        self.traffic.snapshot()
    }

    /// Watches the high watermark.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// After [`Log::recover`] cut the log (its high watermark can only have
    /// dropped under interval durability): the watched value follows it, so
    /// waiting fetches are woken by the next append rather than only once
    /// the old value is passed.
    pub(crate) fn after_recovery(&self) {
        self.high_watermark.send_replace(self.log.high_watermark());
    }

    /// Makes offsets below `offset` visible and wakes waiting fetches.
    pub(crate) fn advance_high_watermark(&self, offset: u64) {
        self.log.set_high_watermark(offset);
        let hw = self.log.high_watermark();
        self.high_watermark.send_if_modified(|cur| {
            let changed = *cur < hw;
            *cur = (*cur).max(hw);
            changed
        });
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
