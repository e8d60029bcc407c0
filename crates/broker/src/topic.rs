//! Topics: names, per-topic configuration overrides, and their on-disk record.
//!
//! Per-topic settings use Kafka's configuration names (`retention.ms`,
//! `segment.bytes`, ...) so the Kafka admin APIs map onto them one to one;
//! Fjord-specific ones are prefixed `fjord.`. Only overrides are stored; the
//! effective log configuration is the broker defaults with overrides applied.

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_log::batch::{Compression, TimestampType};
use fjord_log::{Durability, LogConfig, Recompress};
use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name: 1..=249 of `[A-Za-z0-9._-%]`, not `.` or `..`.
/// `%` is allowed for RocketMQ's `%RETRY%group` and `%DLQ%group` topics.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason| Err(BrokerError::InvalidTopicName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'%')) {
        return bad("only ASCII letters, digits, '.', '_', '-' and '%' are allowed");
    }
    Ok(())
}

/// Cleanup policy of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Delete old segments by retention time and size.
    Delete,
    /// Keep the latest record per key. Compaction is not implemented yet:
    /// compacted topics keep all data (no time or size retention).
    Compact,
}

/// A topic's configuration overrides (Kafka names, string values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TopicConfig(pub BTreeMap<String, String>);

impl TopicConfig {
    /// Validates one entry.
    pub fn validate_entry(key: &str, value: &str) -> Result<()> {
        match crate::topic_keys::spec(key) {
            Some(spec) => spec.validate(value),
            None => {
                Err(BrokerError::InvalidConfig { key: key.into(), reason: "unknown topic configuration key".into() })
            }
        }
    }

    /// Builds a validated configuration from entries.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<TopicConfig> {
        let mut map = BTreeMap::new();
        for (k, v) in entries {
            Self::validate_entry(k, v)?;
            map.insert(k.to_string(), v.to_string());
        }
        Ok(TopicConfig(map))
    }

    /// `min.insync.replicas`, when set.
    pub fn min_insync_replicas(&self) -> Option<usize> {
        self.0.get("min.insync.replicas").and_then(|v| v.parse().ok())
    }

    /// The codec (and level) the broker stores this topic's batches with:
    /// `None` keeps the producer's (`compression.type=producer`, the
    /// default), else every batch a client writes is recompressed.
    pub fn recompression(&self, defaults: &LogConfig) -> Option<Recompress> {
        let level = |k: &str| self.0.get(k).and_then(|v| v.trim().parse::<i32>().ok());
        let codec = match self.0.get("compression.type").map(String::as_str) {
            None => return defaults.recompress,
            Some("producer") => return None,
            Some("uncompressed") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("snappy") => Compression::Snappy,
            Some("lz4") => Compression::Lz4,
            Some("zstd") => Compression::Zstd,
            Some(_) => return None,
        };
        let level = match codec {
            Compression::Gzip => level("compression.gzip.level").filter(|l| *l != -1),
            Compression::Zstd => level("compression.zstd.level"),
            _ => None,
        };
        Some(Recompress { codec, level })
    }

    /// The cleanup policy.
    pub fn cleanup_policy(&self) -> CleanupPolicy {
        match self.0.get("cleanup.policy").map(String::as_str) {
            Some(p) if p.contains("compact") && !p.contains("delete") => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        }
    }

    /// Every topic configuration key with its effective value and whether
    /// it is overridden for this topic (`true`) or the broker default.
    pub fn effective_entries(&self, defaults: &LogConfig) -> Vec<(&'static str, String, bool)> {
        let effective = self.apply(defaults);
        crate::topic_keys::KEYS
            .iter()
            .map(|k| match self.0.get(k.name) {
                Some(v) => (k.name, v.clone(), true),
                None => (k.name, k.default_value(defaults, &effective), false),
            })
            .collect()
    }

    /// The effective log configuration: `defaults` with these overrides.
    pub fn apply(&self, defaults: &LogConfig) -> LogConfig {
        let mut c = defaults.clone();
        let num = |k: &str| self.0.get(k).and_then(|v| v.parse::<i64>().ok());
        if let Some(v) = num("retention.ms") {
            c.retention_ms = (v >= 0).then_some(v);
        }
        if let Some(v) = num("retention.bytes") {
            c.retention_bytes = (v >= 0).then_some(v as u64);
        }
        if let Some(v) = num("segment.bytes") {
            c.segment_bytes = v as u64;
        }
        if let Some(v) = num("segment.ms") {
            c.segment_ms = v;
        }
        if let Some(v) = num("max.message.bytes") {
            c.max_message_bytes = v as usize;
        }
        if let Some(v) = num("index.interval.bytes") {
            c.index_interval_bytes = v.clamp(0, i64::from(u32::MAX)) as u32;
        }
        match self.0.get("message.timestamp.type").map(String::as_str) {
            Some("LogAppendTime") => c.timestamp_type = TimestampType::LogAppendTime,
            Some("CreateTime") => c.timestamp_type = TimestampType::CreateTime,
            _ => {}
        }
        match self.0.get("fjord.key.index").map(String::as_str) {
            Some("true") => c.key_index.enabled = true,
            Some("false") => c.key_index.enabled = false,
            _ => {}
        }
        if let Some(names) = self.0.get("fjord.key.index.headers") {
            c.key_index.header_keys = names.split(',').map(|h| h.trim().as_bytes().to_vec()).collect();
        }
        let interval = num("fjord.flush.interval.ms").map(|ms| Duration::from_millis(ms as u64));
        // Kafka's flush settings, unless Fjord's own policy is set:
        // `flush.messages=1` fsyncs every write, `flush.ms` on a period
        // (acks not waiting for it, as Kafka's do not).
        if !self.0.contains_key("fjord.durability") {
            if num("flush.messages") == Some(1) || num("flush.ms") == Some(0) {
                c.durability = Durability::EveryWrite;
            } else if let Some(ms) = num("flush.ms").filter(|ms| *ms > 0 && *ms < i64::MAX) {
                c.durability = Durability::Interval(Duration::from_millis(ms as u64));
            }
        }
        match self.0.get("fjord.durability").map(String::as_str) {
            Some("every-write") => c.durability = Durability::EveryWrite,
            Some("group-commit") => c.durability = Durability::GroupCommit,
            Some("interval") => {
                let default = match defaults.durability {
                    Durability::Interval(d) => d,
                    _ => Duration::from_secs(1),
                };
                c.durability = Durability::Interval(interval.unwrap_or(default));
            }
            _ => {
                if let (Some(i), Durability::Interval(_)) = (interval, c.durability) {
                    c.durability = Durability::Interval(i);
                }
            }
        }
        if let Some(v) = num("segment.jitter.ms") {
            c.segment_jitter_ms = v.max(0);
        }
        if let Some(v) = num("message.timestamp.before.max.ms") {
            c.timestamp_before_max_ms = v.max(0);
        }
        if let Some(v) = num("message.timestamp.after.max.ms") {
            c.timestamp_after_max_ms = v.max(0);
        }
        c.recompress = self.recompression(defaults);
        if self.cleanup_policy() == CleanupPolicy::Compact {
            c.retention_ms = None;
            c.retention_bytes = None;
        }
        c
    }
}

pub(crate) fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

pub(crate) fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::EveryWrite => "every-write",
        Durability::GroupCommit => "group-commit",
        Durability::Interval(_) => "interval",
    }
}

/// The fsync period in effect: the topic's own under interval durability,
/// else the broker's (1 s when the broker's policy is not interval).
pub(crate) fn flush_interval_ms(defaults: &LogConfig, effective: &LogConfig) -> u128 {
    match (effective.durability, defaults.durability) {
        (Durability::Interval(i), _) | (_, Durability::Interval(i)) => i.as_millis(),
        _ => 1000,
    }
}

/// What is stored in `topics/<name>/topic.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Stable topic id (Kafka topic ids are UUIDs).
    pub id: uuid::Uuid,
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Configuration overrides.
    #[serde(default)]
    pub config: TopicConfig,
    /// Internal topics are hidden from ordinary listings.
    #[serde(default)]
    pub internal: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "orders.v1", "%RETRY%group-1", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn overrides_apply_on_top_of_defaults() {
        let c = TopicConfig::from_entries([
            ("retention.ms", "-1"),
            ("segment.bytes", "4096"),
            ("message.timestamp.type", "LogAppendTime"),
            ("fjord.durability", "interval"),
            ("fjord.flush.interval.ms", "250"),
        ])
        .unwrap();
        let log = c.apply(&LogConfig::default());
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.segment_bytes, 4096);
        assert_eq!(log.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(log.durability, Durability::Interval(Duration::from_millis(250)));
        assert_eq!(log.max_message_bytes, LogConfig::default().max_message_bytes);
    }

    #[test]
    fn kafka_flush_and_compression_settings_map_onto_fjords() {
        let d = LogConfig::default();
        let apply = |entries: &[(&str, &str)]| TopicConfig::from_entries(entries.iter().copied()).unwrap().apply(&d);
        assert_eq!(apply(&[("flush.messages", "1")]).durability, Durability::EveryWrite);
        assert_eq!(apply(&[("flush.ms", "0")]).durability, Durability::EveryWrite);
        assert_eq!(apply(&[("flush.ms", "250")]).durability, Durability::Interval(Duration::from_millis(250)));
        assert_eq!(apply(&[("flush.messages", "1000")]).durability, d.durability);
        let own = apply(&[("flush.ms", "250"), ("fjord.durability", "group-commit")]);
        assert_eq!(own.durability, Durability::GroupCommit, "Fjord's own policy wins");
        let zstd = apply(&[("compression.type", "zstd"), ("compression.zstd.level", "7")]);
        assert_eq!(zstd.recompress, Some(Recompress { codec: Compression::Zstd, level: Some(7) }));
        let gzip = apply(&[("compression.type", "gzip"), ("compression.gzip.level", "-1")]);
        assert_eq!(gzip.recompress, Some(Recompress { codec: Compression::Gzip, level: None }));
        assert_eq!(apply(&[("compression.type", "uncompressed")]).recompress.map(|r| r.codec), Some(Compression::None));
        assert_eq!(apply(&[("compression.type", "producer")]).recompress, None);
        let bounded = apply(&[("message.timestamp.after.max.ms", "60000"), ("segment.jitter.ms", "5000")]);
        assert_eq!((bounded.timestamp_after_max_ms, bounded.segment_jitter_ms), (60_000, 5_000));
    }

    #[test]
    fn every_kafka_topic_config_is_described() {
        let entries = TopicConfig::default().effective_entries(&LogConfig::default());
        for key in
            ["compression.type", "delete.retention.ms", "min.cleanable.dirty.ratio", "unclean.leader.election.enable"]
        {
            assert!(entries.iter().any(|(k, _, overridden)| *k == key && !overridden), "{key} missing");
        }
    }

    #[test]
    fn invalid_entries_are_rejected_with_the_key() {
        let e = TopicConfig::from_entries([("retention.ms", "soon")]).unwrap_err();
        assert!(e.to_string().contains("retention.ms"), "{e}");
        assert!(TopicConfig::from_entries([("no.such.key", "1")]).is_err());
        assert!(TopicConfig::from_entries([("segment.bytes", "1")]).is_err());
        assert!(TopicConfig::from_entries([("cleanup.policy", "forever")]).is_err());
    }
}
