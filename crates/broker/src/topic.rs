//! Topics: names, per-topic configuration overrides, and their on-disk record.
//!
//! Per-topic settings use Kafka's configuration names (`retention.ms`,
//! `segment.bytes`, ...) so the Kafka admin APIs map onto them one to one;
//! Fjord-specific ones are prefixed `fjord.`. Only overrides are stored; the
//! effective log configuration is the broker defaults with overrides applied.

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_log::batch::TimestampType;
use fjord_log::{Durability, LogConfig};
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

/// The configuration keys a topic accepts, with a validator for each.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "index.interval.bytes",
    "message.timestamp.type",
    "fjord.durability",
    "fjord.flush.interval.ms",
    "fjord.key.index",
    "fjord.key.index.headers",
    "min.insync.replicas",
];

/// A topic's configuration overrides (Kafka names, string values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TopicConfig(pub BTreeMap<String, String>);

fn parse_i64(key: &str, value: &str, min: i64) -> Result<i64> {
    let v: i64 = value.parse().map_err(|_| BrokerError::InvalidConfig {
        key: key.to_string(),
        reason: format!("'{value}' is not an integer"),
    })?;
    if v < min {
        return Err(BrokerError::InvalidConfig { key: key.to_string(), reason: format!("must be at least {min}") });
    }
    Ok(v)
}

impl TopicConfig {
    /// Validates one entry.
    pub fn validate_entry(key: &str, value: &str) -> Result<()> {
        let invalid = |reason: &str| Err(BrokerError::InvalidConfig { key: key.into(), reason: reason.into() });
        match key {
            "cleanup.policy" => match value {
                "delete" | "compact" | "compact,delete" | "delete,compact" => Ok(()),
                _ => invalid("must be 'delete', 'compact' or both"),
            },
            "retention.ms" | "retention.bytes" => parse_i64(key, value, -1).map(drop),
            "segment.bytes" => parse_i64(key, value, 14).map(drop),
            "segment.ms" | "fjord.flush.interval.ms" => parse_i64(key, value, 1).map(drop),
            "max.message.bytes" | "index.interval.bytes" => parse_i64(key, value, 0).map(drop),
            "min.insync.replicas" => parse_i64(key, value, 1).map(drop),
            "message.timestamp.type" => match value {
                "CreateTime" | "LogAppendTime" => Ok(()),
                _ => invalid("must be 'CreateTime' or 'LogAppendTime'"),
            },
            "fjord.durability" => match value {
                "every-write" | "group-commit" | "interval" => Ok(()),
                _ => invalid("must be 'every-write', 'group-commit' or 'interval'"),
            },
            "fjord.key.index" => match value {
                "true" | "false" => Ok(()),
                _ => invalid("must be 'true' or 'false'"),
            },
            "fjord.key.index.headers" if value.split(',').all(|h| !h.trim().is_empty()) => Ok(()),
            "fjord.key.index.headers" => invalid("must be a comma-separated list of header names"),
            _ => invalid("unknown topic configuration key"),
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
        let c = self.apply(defaults);
        let d = defaults;
        TOPIC_CONFIG_KEYS
            .iter()
            .map(|&key| {
                let default = match key {
                    "cleanup.policy" => "delete".to_string(),
                    "retention.ms" => d.retention_ms.unwrap_or(-1).to_string(),
                    "retention.bytes" => d.retention_bytes.map_or(-1, |v| v as i64).to_string(),
                    "segment.bytes" => d.segment_bytes.to_string(),
                    "segment.ms" => d.segment_ms.to_string(),
                    "max.message.bytes" => d.max_message_bytes.to_string(),
                    "index.interval.bytes" => d.index_interval_bytes.to_string(),
                    "message.timestamp.type" => timestamp_type_name(d.timestamp_type).to_string(),
                    "fjord.durability" => durability_name(d.durability).to_string(),
                    // Kafka's default; with three or more replicas a topic
                    // that sets nothing requires two (see `check_in_sync`).
                    "min.insync.replicas" => "1".to_string(),
                    "fjord.key.index" => d.key_index.enabled.to_string(),
                    "fjord.key.index.headers" => {
                        d.key_index.header_keys.iter().map(|h| String::from_utf8_lossy(h)).collect::<Vec<_>>().join(",")
                    }
                    "fjord.flush.interval.ms" => match c.durability {
                        Durability::Interval(i) => i.as_millis().to_string(),
                        _ => match d.durability {
                            Durability::Interval(i) => i.as_millis().to_string(),
                            _ => "1000".to_string(),
                        },
                    },
                    _ => String::new(),
                };
                match self.0.get(key) {
                    Some(v) => (key, v.clone(), true),
                    None => (key, default, false),
                }
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
        if self.cleanup_policy() == CleanupPolicy::Compact {
            c.retention_ms = None;
            c.retention_bytes = None;
        }
        c
    }
}

fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::EveryWrite => "every-write",
        Durability::GroupCommit => "group-commit",
        Durability::Interval(_) => "interval",
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
    fn invalid_entries_are_rejected_with_the_key() {
        let e = TopicConfig::from_entries([("retention.ms", "soon")]).unwrap_err();
        assert!(e.to_string().contains("retention.ms"), "{e}");
        assert!(TopicConfig::from_entries([("no.such.key", "1")]).is_err());
        assert!(TopicConfig::from_entries([("segment.bytes", "1")]).is_err());
        assert!(TopicConfig::from_entries([("cleanup.policy", "forever")]).is_err());
    }
}
