//! Per-log configuration and the durability policy.

use std::time::Duration;

use crate::batch::TimestampType;
use crate::segment::KeyIndexConfig;

/// When an append is acknowledged relative to reaching stable storage.
///
/// Whatever the policy, a record is acknowledged only after it is fully
/// written to the segment file, and recovery never keeps a partial batch.
/// The policies differ in what a *machine* crash (power loss, kernel panic)
/// can take away; a *process* crash (kill -9) loses nothing acknowledged
/// under any of them because written data is already in the OS page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Each append calls `fdatasync` before it returns, while holding the
    /// partition's writer lock. Acknowledged ⇒ on disk. Lowest throughput.
    EveryWrite,
    /// Appends are written, then wait for an `fdatasync` that covers them;
    /// concurrent appends share one fsync (the first waiter syncs for all
    /// whose data was written before the sync began). Acknowledged ⇒ on
    /// disk, at a fraction of the fsync cost under concurrency.
    #[default]
    GroupCommit,
    /// Appends return once written to the page cache; the owner calls
    /// [`crate::Log::flush`] every `interval`. A machine crash can lose up to
    /// `interval` of acknowledged appends.
    Interval(Duration),
}

/// Settings of one partition log. May be changed while the log is open with
/// [`crate::Log::set_config`]; changes apply to subsequent operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would exceed this size.
    pub segment_bytes: u64,
    /// Roll to a new segment when the active one is older than this (ms since its first append).
    pub segment_ms: i64,
    /// Bytes of data between sparse index entries.
    pub index_interval_bytes: u32,
    /// Largest accepted batch, in bytes.
    pub max_message_bytes: usize,
    /// Delete segments whose newest record is older than this (ms); `None` keeps them.
    pub retention_ms: Option<i64>,
    /// Delete the oldest segments while the log is larger than this; `None` disables.
    pub retention_bytes: Option<u64>,
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Whether producer timestamps are kept or replaced by the append time.
    pub timestamp_type: TimestampType,
    /// Key index settings.
    pub key_index: KeyIndexConfig,
    /// The codec a leader stores client batches with (`None`: the
    /// producer's, Kafka's `compression.type=producer`).
    pub recompress: Option<Recompress>,
    /// Up to this much (ms) is taken off `segment_ms` for each segment,
    /// spread evenly by its base offset, so partitions created together do
    /// not all roll at once (Kafka's `segment.jitter.ms`).
    pub segment_jitter_ms: i64,
    /// CreateTime batches whose first timestamp is more than this (ms)
    /// before the broker's clock are refused.
    pub timestamp_before_max_ms: i64,
    /// CreateTime batches whose largest timestamp is more than this (ms)
    /// after the broker's clock are refused. Unlimited by default (Kafka
    /// 4's default is an hour): Fjord's topics are written by RocketMQ and
    /// AMQP clients too, whose brokers never judge a producer's clock.
    pub timestamp_after_max_ms: i64,
}

/// A codec, and its level where it has one (gzip, zstd), that batches are
/// stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recompress {
    /// The codec.
    pub codec: crate::batch::Compression,
    /// Its level (`None`: the codec's default).
    pub level: Option<i32>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            durability: Durability::GroupCommit,
            timestamp_type: TimestampType::CreateTime,
            key_index: KeyIndexConfig::default(),
            recompress: None,
            segment_jitter_ms: 0,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
        }
    }
}
