//! Offset-based consumption with broker-side filtering, clustering vs
//! broadcasting progress, and offset resets.

use std::time::Duration;

use fjord_broker::{CommittedOffset, OffsetSpec, TopicPartition};
use fjord_filter::Filter;

use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::message::StoredMessage;

/// Separates a group from a broadcasting instance in progress keys.
pub const BROADCAST_SEPARATOR: &str = "%BROADCAST%";

/// How a group's consumers share messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ConsumeModel {
    /// Each message to one consumer of the group; one progress per group.
    #[default]
    Clustering,
    /// Each message to every consumer instance; each instance keeps its own
    /// progress (under `<group>%BROADCAST%<instance>`).
    Broadcasting {
        /// The consumer instance (client id).
        instance: String,
    },
}

impl ConsumeModel {
    /// The key progress is stored under.
    pub fn group_key(&self, group: &str) -> String {
        match self {
            ConsumeModel::Clustering => group.to_string(),
            ConsumeModel::Broadcasting { instance } => format!("{group}{BROADCAST_SEPARATOR}{instance}"),
        }
    }

    /// The group of a progress key.
    pub fn base_group(key: &str) -> &str {
        key.split_once(BROADCAST_SEPARATOR).map_or(key, |(g, _)| g)
    }
}

/// Where to move a group's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The oldest retained message.
    Earliest,
    /// After the newest message.
    Latest,
    /// The first message at or after this time (ms); the end when none.
    Timestamp(i64),
    /// This offset (clamped to the retained range).
    Offset(u64),
}

/// An offset-based read.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// Consumer group.
    pub group: String,
    /// Clustering or broadcasting.
    pub model: ConsumeModel,
    /// Partition.
    pub partition: TopicPartition,
    /// Where to read from; the committed progress (or the log start) when
    /// `None`.
    pub offset: Option<u64>,
    /// Most messages returned.
    pub max_messages: usize,
    /// Broker-side filter: non-matching messages are skipped, never sent.
    pub filter: Filter,
    /// Long-poll this long when there is nothing new.
    pub wait: Duration,
}

/// What a pull returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Matching messages, in offset order.
    pub messages: Vec<StoredMessage>,
    /// Where the next pull continues (after every message scanned,
    /// including filtered-out ones).
    pub next_offset: u64,
    /// The partition's high watermark.
    pub high_watermark: u64,
}

/// Bytes scanned per pull at most, so a filter that matches nothing
/// cannot make one pull read a whole partition.
const MAX_SCAN_BYTES: usize = 4 << 20;

/// The first read of a pull or pop: this much per wanted message (a small
/// message in its own batch takes ~170 bytes), within these bounds.
const READ_BYTES_PER_MESSAGE: usize = 256;
const MIN_READ_BYTES: usize = 4 << 10;
const MAX_READ_BYTES: usize = 256 << 10;

/// How much to read first for `max` messages: about what is wanted, not a
/// fixed 256 KiB, since every record read is decoded and checked (a
/// RocketMQ pull of 32 small messages used to decode ~1,500 to return 32:
/// 20 µs of broker CPU per message pulled).
pub(crate) fn first_read(max: usize) -> usize {
    max.saturating_mul(READ_BYTES_PER_MESSAGE).clamp(MIN_READ_BYTES, MAX_READ_BYTES)
}

/// The next read after one that did not fill the request (a filter skipped
/// records): twice as much, up to the cap.
pub(crate) fn next_read(chunk: usize) -> usize {
    chunk.saturating_mul(2).min(MAX_READ_BYTES)
}

impl Messaging {
    /// Reads matching messages from an offset.
    pub async fn pull(&self, req: PullRequest) -> Result<Pulled> {
        let p = self.broker.partition(&req.partition)?;
        let start = match req.offset {
            Some(o) => o,
            None => self.committed(&req.group, &req.model, &req.partition).await?.unwrap_or(p.log_start_offset()),
        };
        if p.high_watermark() <= start && !req.wait.is_zero() {
            let mut w = p.subscribe();
            let _ = tokio::time::timeout(req.wait, w.wait_for(|hw| *hw > start)).await;
        }
        let (log, tp, max, filter) = (p.clone(), req.partition.clone(), req.max_messages.max(1), req.filter);
        blocking(move || -> Result<Pulled> {
            let ctx = |e| MessagingError::log(tp.to_string(), e);
            let hw = log.high_watermark();
            let mut offset = start.max(log.log_start_offset());
            let (mut out, mut scanned) = (Vec::new(), 0usize);
            let mut chunk = first_read(max);
            'scan: while offset < hw && scanned < MAX_SCAN_BYTES {
                let recs = log.read_committed(offset, chunk).map_err(ctx)?;
                chunk = next_read(chunk);
                let Some(last) = recs.last().map(|r| r.offset) else { break };
                for r in recs {
                    scanned += r.value.as_ref().map_or(0, |v| v.len()) + 64;
                    let m = StoredMessage::from_record(&tp.topic, tp.partition, &r);
                    if filter.matches(&m) {
                        out.push(m);
                    }
                    offset = r.offset + 1;
                    if out.len() >= max {
                        break 'scan;
                    }
                }
                offset = offset.max(last + 1);
            }
            Ok(Pulled { messages: out, next_offset: offset, high_watermark: hw })
        })
        .await?
    }

    /// The stored progress of a group (or broadcasting instance), from
    /// its coordinator wherever it is.
    pub async fn committed(&self, group: &str, model: &ConsumeModel, tp: &TopicPartition) -> Result<Option<u64>> {
        let found = self.broker.committed_offset(&model.group_key(group), tp).await?;
        Ok(found.map(|c| c.offset.max(0) as u64))
    }

    /// Stores progress durably (at-most-once consumers commit before
    /// processing, at-least-once ones after).
    pub async fn commit(&self, group: &str, model: &ConsumeModel, tp: &TopicPartition, offset: u64) -> Result<()> {
        let off =
            CommittedOffset { offset: offset as i64, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 };
        for (_, r) in self.broker.commit_offsets_unchecked(&model.group_key(group), vec![(tp.clone(), off)]).await? {
            r?;
        }
        Ok(())
    }

    /// Moves a group's progress on every partition of `topic` (and its pop
    /// queues there, dropping in-flight and held messages). Returns the
    /// new offset per partition.
    pub async fn reset_offsets(
        &self,
        group: &str,
        model: &ConsumeModel,
        topic: &str,
        to: OffsetReset,
    ) -> Result<Vec<(u32, u64)>> {
        let t = self.broker.topic(topic).ok_or_else(|| fjord_broker::BrokerError::UnknownTopic(topic.to_string()))?;
        let mut out = Vec::new();
        for p in t.partitions() {
            let tp = p.id().clone();
            let (start, end) = (p.log_start_offset(), p.high_watermark());
            let offset = match to {
                OffsetReset::Earliest => start,
                OffsetReset::Latest => end,
                OffsetReset::Offset(o) => o.clamp(start, end),
                OffsetReset::Timestamp(ts) => {
                    self.broker.list_offset(&tp, OffsetSpec::Timestamp(ts)).await?.map_or(end, |l| l.offset)
                }
            };
            self.set_offset(group, model, &tp, offset).await?;
            out.push((tp.partition, offset));
        }
        Ok(out)
    }

    /// Moves a group's progress on one partition to `offset` (not clamped),
    /// resetting its pop queue there if it has one (in-flight and held
    /// messages are dropped).
    pub async fn set_offset(&self, group: &str, model: &ConsumeModel, tp: &TopicPartition, offset: u64) -> Result<()> {
        self.commit(group, model, tp, offset).await?;
        let q = self.queue_id(group, model, tp);
        // A queue served elsewhere or by nobody now is reset at its shard.
        if self.broker.topic(fjord_broker::placement::POP_TOPIC).is_some() {
            self.reset_pop_queue(q, offset).await?;
        }
        Ok(())
    }
}
