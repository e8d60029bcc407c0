//! The topic configuration keys: every topic-level configuration Apache
//! Kafka 4.1 documents, with its type, valid values and default, and
//! Fjord's own (`fjord.`); each says how it takes effect here.
//!
//! A key Kafka documents is always accepted when its value is valid —
//! tools and clients (Kafka Streams, Connect, Terraform providers) set
//! them as a matter of course — even where Fjord has nothing it could
//! change; [`Effect`] says which, and the README's table is generated from
//! the same list (`effects_table`), so the two cannot drift.
//!
//! Valid values are Kafka's, with two deliberate differences:
//! `segment.bytes` accepts down to 14 bytes (Kafka: 1 MiB; small segments
//! make retention testable), and `retention.bytes` any integer (as Kafka,
//! where a negative value means no limit).

use fjord_log::LogConfig;

use crate::error::{BrokerError, Result};

/// A key's value type, as Kafka's DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `true` / `false`.
    Boolean,
    /// Free text (checked against a set of values where one exists).
    String,
    /// A 32-bit integer.
    Int,
    /// A 64-bit integer.
    Long,
    /// A floating-point number.
    Double,
    /// A comma-separated list.
    List,
}

/// How a key takes effect in Fjord.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Does what Kafka documents.
    Honoured,
    /// Does part of what Kafka documents; the text says which part.
    Partly(&'static str),
    /// Accepted and reported, changes nothing; the text says why.
    NoEffect(&'static str),
}

/// What a value must be.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// An integer in `min..=max` (`Int` keys also fit an i32).
    Integer { min: i64, max: i64 },
    /// -1, or an integer in `min..=max` (the gzip level).
    IntegerOrMinusOne { min: i64, max: i64 },
    /// A number in `min..=max`.
    Number { min: f64, max: f64 },
    /// `true` or `false`.
    Bool,
    /// One of these.
    OneOf(&'static [&'static str]),
    /// A non-empty list of these.
    ListOf(&'static [&'static str]),
    /// Kafka's throttled-replicas list: `*`, or `partition:broker` pairs.
    ThrottledReplicas,
    /// A non-empty comma-separated list of names.
    Names,
}

/// Where a key's default comes from.
#[derive(Debug, Clone, Copy)]
enum DefaultFrom {
    /// Always this.
    Fixed(&'static str),
    /// From the broker's log defaults (first) and the topic's effective log
    /// configuration (second).
    Log(fn(&LogConfig, &LogConfig) -> std::string::String),
}

/// One topic configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The key.
    pub name: &'static str,
    /// Its type.
    pub value_type: ValueType,
    /// How it takes effect.
    pub effect: Effect,
    check: Check,
    default: DefaultFrom,
}

const NO_COMPACTION: &str = "log compaction is not built yet (a compacted topic keeps every record)";
const NO_TIERED: &str = "no tiered storage: every segment stays on the broker's disk";
const NO_THROTTLE: &str = "replication traffic is not throttled";

const fn key(name: &'static str, value_type: ValueType, check: Check, default: DefaultFrom, effect: Effect) -> KeySpec {
    KeySpec { name, value_type, effect, check, default }
}

const INT_MAX: i64 = i32::MAX as i64;

use Check::*;
use Effect::*;
use ValueType::*;

/// Every key, Kafka's (alphabetical) then Fjord's.
pub const KEYS: &[KeySpec] = &[
    key(
        "cleanup.policy",
        List,
        ListOf(&["compact", "delete"]),
        DefaultFrom::Fixed("delete"),
        Partly(
            "`delete` is honoured; `compact` keeps every record until log compaction is built (no retention applies)",
        ),
    ),
    key("compression.gzip.level", Int, IntegerOrMinusOne { min: 1, max: 9 }, DefaultFrom::Fixed("-1"), Honoured),
    key(
        "compression.lz4.level",
        Int,
        Integer { min: 1, max: 17 },
        DefaultFrom::Fixed("9"),
        NoEffect("Fjord's LZ4 encoder has a single level"),
    ),
    key(
        "compression.type",
        String,
        OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        DefaultFrom::Fixed("producer"),
        Honoured,
    ),
    key("compression.zstd.level", Int, Integer { min: -131_072, max: 22 }, DefaultFrom::Fixed("3"), Honoured),
    key(
        "delete.retention.ms",
        Long,
        Integer { min: 0, max: i64::MAX },
        DefaultFrom::Fixed("86400000"),
        NoEffect(NO_COMPACTION),
    ),
    key(
        "file.delete.delay.ms",
        Long,
        Integer { min: 0, max: i64::MAX },
        DefaultFrom::Fixed("60000"),
        NoEffect("a deleted segment's files go as soon as no read uses them"),
    ),
    key(
        "flush.messages",
        Long,
        Integer { min: 1, max: i64::MAX },
        DefaultFrom::Fixed("9223372036854775807"),
        Partly(
            "1 makes the topic's writes durable one by one (`fjord.durability=every-write`); other values leave the fsync policy to `fjord.durability`",
        ),
    ),
    key(
        "flush.ms",
        Long,
        Integer { min: 0, max: i64::MAX },
        DefaultFrom::Fixed("9223372036854775807"),
        Partly(
            "sets an interval fsync policy with that period (`fjord.durability=interval`; 0: every write) unless `fjord.durability` is set",
        ),
    ),
    key(
        "follower.replication.throttled.replicas",
        List,
        ThrottledReplicas,
        DefaultFrom::Fixed(""),
        NoEffect(NO_THROTTLE),
    ),
    key(
        "index.interval.bytes",
        Int,
        Integer { min: 0, max: INT_MAX },
        DefaultFrom::Log(|d, _| d.index_interval_bytes.to_string()),
        Honoured,
    ),
    key(
        "leader.replication.throttled.replicas",
        List,
        ThrottledReplicas,
        DefaultFrom::Fixed(""),
        NoEffect(NO_THROTTLE),
    ),
    key(
        "local.retention.bytes",
        Long,
        Integer { min: -2, max: i64::MAX },
        DefaultFrom::Fixed("-2"),
        NoEffect(NO_TIERED),
    ),
    key("local.retention.ms", Long, Integer { min: -2, max: i64::MAX }, DefaultFrom::Fixed("-2"), NoEffect(NO_TIERED)),
    key(
        "max.compaction.lag.ms",
        Long,
        Integer { min: 1, max: i64::MAX },
        DefaultFrom::Fixed("9223372036854775807"),
        NoEffect(NO_COMPACTION),
    ),
    key(
        "max.message.bytes",
        Int,
        Integer { min: 0, max: INT_MAX },
        DefaultFrom::Log(|d, _| d.max_message_bytes.to_string()),
        Honoured,
    ),
    key(
        "message.timestamp.after.max.ms",
        Long,
        Integer { min: 0, max: i64::MAX },
        DefaultFrom::Log(|d, _| d.timestamp_after_max_ms.to_string()),
        Partly("checked against each batch's largest timestamp (CreateTime topics)"),
    ),
    key(
        "message.timestamp.before.max.ms",
        Long,
        Integer { min: 0, max: i64::MAX },
        DefaultFrom::Log(|d, _| d.timestamp_before_max_ms.to_string()),
        Partly("checked against each batch's first timestamp (CreateTime topics)"),
    ),
    key(
        "message.timestamp.type",
        String,
        OneOf(&["CreateTime", "LogAppendTime"]),
        DefaultFrom::Log(|d, _| crate::topic::timestamp_type_name(d.timestamp_type).to_string()),
        Honoured,
    ),
    key(
        "min.cleanable.dirty.ratio",
        Double,
        Number { min: 0.0, max: 1.0 },
        DefaultFrom::Fixed("0.5"),
        NoEffect(NO_COMPACTION),
    ),
    key(
        "min.compaction.lag.ms",
        Long,
        Integer { min: 0, max: i64::MAX },
        DefaultFrom::Fixed("0"),
        NoEffect(NO_COMPACTION),
    ),
    // Kafka's default; with three or more replicas a topic that sets
    // nothing requires two (see `check_in_sync`).
    key("min.insync.replicas", Int, Integer { min: 1, max: INT_MAX }, DefaultFrom::Fixed("1"), Honoured),
    key("preallocate", Boolean, Bool, DefaultFrom::Fixed("false"), NoEffect("segment files grow as they are written")),
    key("remote.log.copy.disable", Boolean, Bool, DefaultFrom::Fixed("false"), NoEffect(NO_TIERED)),
    key("remote.log.delete.on.disable", Boolean, Bool, DefaultFrom::Fixed("false"), NoEffect(NO_TIERED)),
    key("remote.storage.enable", Boolean, Bool, DefaultFrom::Fixed("false"), NoEffect(NO_TIERED)),
    key(
        "retention.bytes",
        Long,
        Integer { min: i64::MIN, max: i64::MAX },
        DefaultFrom::Log(|d, _| d.retention_bytes.map_or(-1, |v| v as i64).to_string()),
        Honoured,
    ),
    key(
        "retention.ms",
        Long,
        Integer { min: -1, max: i64::MAX },
        DefaultFrom::Log(|d, _| d.retention_ms.unwrap_or(-1).to_string()),
        Honoured,
    ),
    key(
        "segment.bytes",
        Int,
        Integer { min: 14, max: INT_MAX },
        DefaultFrom::Log(|d, _| d.segment_bytes.to_string()),
        Honoured,
    ),
    key(
        "segment.index.bytes",
        Int,
        Integer { min: 4, max: INT_MAX },
        DefaultFrom::Fixed("10485760"),
        NoEffect("a segment's indexes grow as needed; nothing is preallocated"),
    ),
    key(
        "segment.jitter.ms",
        Long,
        Integer { min: 0, max: i64::MAX },
        DefaultFrom::Log(|d, _| d.segment_jitter_ms.to_string()),
        Honoured,
    ),
    key(
        "segment.ms",
        Long,
        Integer { min: 1, max: i64::MAX },
        DefaultFrom::Log(|d, _| d.segment_ms.to_string()),
        Honoured,
    ),
    key("unclean.leader.election.enable", Boolean, Bool, DefaultFrom::Fixed("false"), Honoured),
    key(
        "fjord.durability",
        String,
        OneOf(&["every-write", "group-commit", "interval"]),
        DefaultFrom::Log(|d, _| crate::topic::durability_name(d.durability).to_string()),
        Honoured,
    ),
    key(
        "fjord.flush.interval.ms",
        Long,
        Integer { min: 1, max: i64::MAX },
        DefaultFrom::Log(|d, c| crate::topic::flush_interval_ms(d, c).to_string()),
        Honoured,
    ),
    key("fjord.key.index", Boolean, Bool, DefaultFrom::Log(|d, _| d.key_index.enabled.to_string()), Honoured),
    key(
        "fjord.key.index.headers",
        List,
        Names,
        DefaultFrom::Log(|d, _| {
            d.key_index
                .header_keys
                .iter()
                .map(|h| std::string::String::from_utf8_lossy(h))
                .collect::<Vec<_>>()
                .join(",")
        }),
        Honoured,
    ),
];

/// The spec of `name`, if it is a topic configuration key.
pub fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

impl KeySpec {
    /// Checks a value for this key.
    pub fn validate(&self, value: &str) -> Result<()> {
        let invalid = |reason: std::string::String| Err(BrokerError::InvalidConfig { key: self.name.into(), reason });
        let integer = || -> std::result::Result<i64, std::string::String> {
            let v: i64 = value.trim().parse().map_err(|_| format!("'{value}' is not an integer"))?;
            if self.value_type == Int && i32::try_from(v).is_err() {
                return Err(format!("'{value}' does not fit a 32-bit integer"));
            }
            Ok(v)
        };
        match self.check {
            Integer { min, max } => match integer() {
                Ok(v) if (min..=max).contains(&v) => Ok(()),
                Ok(_) if max == i64::MAX || max == INT_MAX => invalid(format!("must be at least {min}")),
                Ok(_) => invalid(format!("must be between {min} and {max}")),
                Err(e) => invalid(e),
            },
            IntegerOrMinusOne { min, max } => match integer() {
                Ok(v) if v == -1 || (min..=max).contains(&v) => Ok(()),
                Ok(_) => invalid(format!("must be -1 or between {min} and {max}")),
                Err(e) => invalid(e),
            },
            Number { min, max } => match value.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(()),
                Ok(_) => invalid(format!("must be between {min} and {max}")),
                Err(_) => invalid(format!("'{value}' is not a number")),
            },
            Bool => match value.trim() {
                "true" | "false" => Ok(()),
                _ => invalid("must be 'true' or 'false'".into()),
            },
            OneOf(allowed) if allowed.contains(&value) => Ok(()),
            OneOf(allowed) => invalid(format!("must be one of {}", quoted(allowed))),
            ListOf(allowed) => {
                let items: Vec<&str> = value.split(',').map(str::trim).collect();
                if items.iter().all(|i| allowed.contains(i)) {
                    Ok(())
                } else {
                    invalid(format!("must be a list of {}", quoted(allowed)))
                }
            }
            ThrottledReplicas => {
                let pair = |s: &str| {
                    s.split_once(':')
                        .is_some_and(|(p, b)| p.trim().parse::<u32>().is_ok() && b.trim().parse::<i32>().is_ok())
                };
                let v = value.trim();
                if v.is_empty() || v == "*" || v.split(',').all(pair) {
                    Ok(())
                } else {
                    invalid("must be '*' or a list of partition:broker pairs".into())
                }
            }
            Names if value.split(',').all(|h| !h.trim().is_empty()) => Ok(()),
            Names => invalid("must be a comma-separated list of names".into()),
        }
    }

    /// The value in effect when a topic does not set this key: from the
    /// broker's log `defaults` and the topic's `effective` configuration.
    pub fn default_value(&self, defaults: &LogConfig, effective: &LogConfig) -> std::string::String {
        match self.default {
            DefaultFrom::Fixed(v) => v.to_string(),
            DefaultFrom::Log(f) => f(defaults, effective),
        }
    }
}

fn quoted(values: &[&str]) -> std::string::String {
    values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ")
}

/// The README's table of keys that are not fully honoured, as markdown
/// rows (`| key | effect |`); a test keeps the README in step.
pub fn effects_table() -> std::string::String {
    KEYS.iter()
        .filter_map(|k| match k.effect {
            Honoured => None,
            Partly(why) => Some(format!("| `{}` | partly: {why} |\n", k.name)),
            NoEffect(why) => Some(format!("| `{}` | no effect: {why} |\n", k.name)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_accepts_its_own_default() {
        let d = LogConfig::default();
        for k in KEYS {
            let v = k.default_value(&d, &d);
            if v.is_empty() && matches!(k.check, Names) {
                continue;
            }
            k.validate(&v).unwrap_or_else(|e| panic!("{}'s default '{v}' is refused: {e}", k.name));
        }
    }

    #[test]
    fn kafka_values_are_checked_as_kafka_checks_them() {
        let ok = |k: &str, v: &str| spec(k).unwrap().validate(v).is_ok();
        assert!(ok("compression.type", "lz4") && !ok("compression.type", "brotli"));
        assert!(ok("compression.gzip.level", "-1") && ok("compression.gzip.level", "9"));
        assert!(!ok("compression.gzip.level", "0") && !ok("compression.gzip.level", "10"));
        assert!(ok("compression.zstd.level", "-131072") && !ok("compression.zstd.level", "23"));
        assert!(ok("delete.retention.ms", "900") && !ok("delete.retention.ms", "-1"));
        assert!(ok("min.cleanable.dirty.ratio", "0.01") && !ok("min.cleanable.dirty.ratio", "1.5"));
        assert!(ok("cleanup.policy", "compact,delete") && !ok("cleanup.policy", "compact,forever"));
        assert!(ok("leader.replication.throttled.replicas", "*"));
        assert!(ok("leader.replication.throttled.replicas", "0:1,1:2"));
        assert!(!ok("leader.replication.throttled.replicas", "0-1"));
        assert!(ok("local.retention.ms", "-2") && !ok("local.retention.ms", "-3"));
        assert!(ok("retention.bytes", "-5"));
        assert!(!ok("max.message.bytes", "4294967296"), "an int must fit 32 bits");
        assert!(ok("preallocate", "true") && !ok("preallocate", "yes"));
    }

    #[test]
    fn the_readme_lists_every_key_not_fully_honoured() {
        let readme = include_str!("../../../README.md");
        for row in effects_table().lines() {
            assert!(readme.contains(row), "README.md lacks the row:\n{row}\n(generate the table with `effects_table`)");
        }
    }
}
