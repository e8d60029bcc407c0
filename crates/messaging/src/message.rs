//! The message model and its mapping onto stored records.
//!
//! A message is stored as one Kafka v2 record: the body is the record value,
//! the message group (if any) the record key (so Kafka's key partitioning
//! and RocketMQ's sharding key agree), and everything else headers. System
//! properties use the reserved `fjord.` prefix; user properties are headers
//! with their own names, values UTF-8. A Kafka consumer therefore sees every
//! property as a header. (Kafka produce requests are stored as sent: a
//! Kafka producer's `fjord.deliver-at` header does not schedule anything.)

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use fjord_log::batch::{Header, NewRecord, Record};

use crate::error::{MessagingError, Result};

/// Reserved header names.
pub mod headers {
    /// Unique message id, assigned at produce time when the producer did not.
    pub const ID: &str = "fjord.id";
    /// The message's tag (at most one).
    pub const TAG: &str = "fjord.tag";
    /// One business key (repeated for several keys); indexed for queries.
    pub const KEY: &str = "fjord.key";
    /// Message group (FIFO sharding key).
    pub const GROUP: &str = "fjord.group";
    /// Scheduled delivery time, ms since the epoch, decimal.
    pub const DELIVER_AT: &str = "fjord.deliver-at";
    /// Delivery attempts already made before this copy (0 on first send).
    pub const ATTEMPT: &str = "fjord.attempt";
    /// Topic a retried, dead-lettered or scheduled copy came from / goes to.
    pub const ORIGIN_TOPIC: &str = "fjord.origin-topic";
    /// Partition of that topic.
    pub const ORIGIN_PARTITION: &str = "fjord.origin-partition";
    /// Offset in that partition (absent for scheduled messages, which have
    /// none yet).
    pub const ORIGIN_OFFSET: &str = "fjord.origin-offset";
    /// Target topic of a message waiting in the timer.
    pub const TIMER_TOPIC: &str = "fjord.timer-topic";
    /// Target partition of a message waiting in the timer.
    pub const TIMER_PARTITION: &str = "fjord.timer-partition";
    /// Identifies one timer entry in a delivered copy, so that delivery
    /// after a crash can tell whether it happened already.
    pub const TIMER_REF: &str = "fjord.timer-ref";
    /// The half-message (transaction) a committed copy comes from.
    pub const HALF_REF: &str = "fjord.half-ref";
    /// Producer group of a half message (for transaction check-back).
    pub const PRODUCER_GROUP: &str = "fjord.producer-group";
    /// Prefix of every reserved header.
    pub const RESERVED_PREFIX: &str = "fjord.";
}

/// The header names a broker should index as keys (with the record key):
/// message keys and ids, which [`crate::Messaging::query_by_key`] and
/// [`crate::Messaging::query_by_id`] look up.
pub fn indexed_headers() -> Vec<Vec<u8>> {
    [headers::KEY, headers::ID, headers::TIMER_REF, headers::HALF_REF].iter().map(|h| h.as_bytes().to_vec()).collect()
}

/// RocketMQ 4.x delay levels (1-based): 1s 5s 10s 30s 1m 2m ... 2h.
pub const DELAY_LEVELS_MS: [i64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000, 480_000, 540_000,
    600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// When a message becomes visible to consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Delivery {
    /// As soon as it is stored.
    #[default]
    Immediate,
    /// After a RocketMQ delay level (1..=18), counted from the send.
    DelayLevel(u8),
    /// At an absolute time, ms since the epoch.
    At(i64),
}

impl Delivery {
    /// The absolute delivery time for a send at `now_ms`, `None` when
    /// immediate. Levels outside 1..=18 are refused, as are times further
    /// than `max_delay_ms` ahead.
    pub fn deliver_at(self, now_ms: i64, max_delay_ms: i64) -> Result<Option<i64>> {
        let at = match self {
            Delivery::Immediate => return Ok(None),
            Delivery::DelayLevel(l) => {
                let Some(d) = DELAY_LEVELS_MS.get(usize::from(l).wrapping_sub(1)) else {
                    return Err(MessagingError::InvalidMessage(format!("delay level {l} is outside 1..=18")));
                };
                now_ms.saturating_add(*d)
            }
            Delivery::At(t) => t,
        };
        if at.saturating_sub(now_ms) > max_delay_ms {
            return Err(MessagingError::InvalidMessage(format!(
                "delivery time {at} is more than {max_delay_ms} ms ahead (messaging.max_delay)"
            )));
        }
        // In the past or now: deliver immediately.
        Ok((at > now_ms).then_some(at))
    }
}

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// Destination topic.
    pub topic: String,
    /// Payload.
    #[serde(with = "crate::forward::b64")]
    pub body: Bytes,
    /// Tag, for tag filtering.
    pub tag: Option<String>,
    /// Business keys, for query by key.
    pub keys: Vec<String>,
    /// Unique id; assigned by the broker when `None`.
    pub id: Option<String>,
    /// Message group (FIFO): all messages of a group go to one partition
    /// and are consumed in order.
    pub group: Option<String>,
    /// User properties, in order.
    pub properties: Vec<(String, String)>,
    /// When it becomes visible.
    pub delivery: Delivery,
    /// Creation time at the producer (ms); the broker's clock when `None`.
    pub born_timestamp: Option<i64>,
}

impl Message {
    /// A message with a body and nothing else.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message { topic: topic.into(), body: body.into(), ..Default::default() }
    }

    /// Checks what the broker cannot store faithfully.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(MessagingError::InvalidMessage(m));
        for (k, _) in &self.properties {
            if k.is_empty() {
                return bad("a property name is empty".into());
            }
            if k.starts_with(headers::RESERVED_PREFIX) {
                return bad(format!("property name `{k}` uses the reserved prefix `fjord.`"));
            }
        }
        if self.tag.as_deref().is_some_and(|t| t.is_empty() || t.contains("||")) {
            return bad("a tag must be non-empty and must not contain `||`".into());
        }
        if self.keys.iter().any(String::is_empty) {
            return bad("a message key is empty".into());
        }
        Ok(())
    }

    /// The stored record (the id must be assigned already).
    pub(crate) fn to_record(&self, id: &str, deliver_at: Option<i64>, extra: &[(&str, String)]) -> NewRecord {
        let mut h = Vec::with_capacity(4 + self.keys.len() + self.properties.len() + extra.len());
        let mut push = |k: &str, v: &str| {
            h.push(Header {
                key: Bytes::copy_from_slice(k.as_bytes()),
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
            })
        };
        push(headers::ID, id);
        if let Some(t) = &self.tag {
            push(headers::TAG, t);
        }
        for k in &self.keys {
            push(headers::KEY, k);
        }
        if let Some(g) = &self.group {
            push(headers::GROUP, g);
        }
        if let Some(at) = deliver_at {
            push(headers::DELIVER_AT, &at.to_string());
        }
        for (k, v) in extra {
            push(k, v);
        }
        for (k, v) in &self.properties {
            push(k, v);
        }
        NewRecord {
            timestamp: self.born_timestamp,
            key: self.group.as_ref().map(|g| Bytes::copy_from_slice(g.as_bytes())),
            value: Some(self.body.clone()),
            headers: h,
        }
    }
}

/// A stored message as consumers see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredMessage {
    /// Topic it is stored in.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// Record timestamp (born time, or append time for log-append-time topics).
    pub timestamp: i64,
    /// The record key (the message group for messages sent through this
    /// layer; anything for Kafka records).
    #[serde(with = "crate::forward::b64_opt")]
    pub record_key: Option<Bytes>,
    /// Payload (`None` for a Kafka tombstone).
    #[serde(with = "crate::forward::b64_opt")]
    pub body: Option<Bytes>,
    /// Unique id (`None` for records not sent through this layer).
    pub id: Option<String>,
    /// Tag.
    pub tag: Option<String>,
    /// Keys.
    pub keys: Vec<String>,
    /// Message group.
    pub group: Option<String>,
    /// Delivery attempts made before this copy was stored (retries).
    pub attempt: u32,
    /// Scheduled delivery time, if it was scheduled.
    pub deliver_at: Option<i64>,
    /// Where a retried or dead-lettered copy came from: topic, partition,
    /// offset.
    pub origin: Option<(String, u32, Option<u64>)>,
    /// User properties (headers outside the reserved prefix, lossy UTF-8).
    pub properties: Vec<(String, String)>,
}

impl StoredMessage {
    /// Interprets a record read from `topic`/`partition`.
    pub fn from_record(topic: &str, partition: u32, r: &Record) -> StoredMessage {
        let mut m = StoredMessage {
            topic: topic.to_string(),
            partition,
            offset: r.offset,
            timestamp: r.timestamp,
            record_key: r.key.clone(),
            body: r.value.clone(),
            id: None,
            tag: None,
            keys: Vec::new(),
            group: None,
            attempt: 0,
            deliver_at: None,
            origin: None,
            properties: Vec::new(),
        };
        let (mut ot, mut op, mut oo) = (None, None, None);
        for h in &r.headers {
            let k = String::from_utf8_lossy(&h.key);
            let v = h.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
            match k.as_ref() {
                headers::ID => m.id = Some(v),
                headers::TAG => m.tag = Some(v),
                headers::KEY => m.keys.push(v),
                headers::GROUP => m.group = Some(v),
                headers::DELIVER_AT => m.deliver_at = v.parse().ok(),
                headers::ATTEMPT => m.attempt = v.parse().unwrap_or(0),
                headers::ORIGIN_TOPIC => ot = Some(v),
                headers::ORIGIN_PARTITION => op = v.parse().ok(),
                headers::ORIGIN_OFFSET => oo = v.parse().ok(),
                k if k.starts_with(headers::RESERVED_PREFIX) => {}
                _ => m.properties.push((k.into_owned(), v)),
            }
        }
        if let (Some(t), Some(p)) = (ot, op) {
            m.origin = Some((t, p, oo));
        }
        m
    }

    /// A user property by name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The message to send again: same body, id, tag, keys, group and
    /// properties, immediate delivery.
    pub fn resend_as(&self, topic: &str) -> Message {
        Message {
            topic: topic.to_string(),
            body: self.body.clone().unwrap_or_default(),
            tag: self.tag.clone(),
            keys: self.keys.clone(),
            id: self.id.clone(),
            group: self.group.clone(),
            properties: self.properties.clone(),
            delivery: Delivery::Immediate,
            born_timestamp: Some(self.timestamp),
        }
    }
}

impl fjord_filter::MessageView for StoredMessage {
    fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    fn property(&self, name: &str) -> Option<&str> {
        // RocketMQ's SQL filters see the tag as property `TAGS`.
        if name == "TAGS" {
            return self.tag.as_deref();
        }
        StoredMessage::property(self, name)
    }
}

/// The value of a record's first `name` header, when it is UTF-8.
pub(crate) fn header<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    header_in(&r.headers, name)
}

/// The value of the first `name` header among `headers` (a stored or a new
/// record's), when it is UTF-8.
pub(crate) fn header_in<'a>(headers: &'a [fjord_log::batch::Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.key.as_ref() == name.as_bytes())
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A new unique message id: 32 upper-case hex digits (as RocketMQ's), made
/// of a random per-process prefix, the time in ms and a counter, so ids
/// sort roughly by creation time and never repeat within a process.
pub fn new_message_id(now_ms: i64) -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let b = uuid::Uuid::new_v4().into_bytes();
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:012X}{:012X}{n:08X}", (now_ms as u64) & 0xFFFF_FFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_keeps_every_property() {
        let m = Message {
            topic: "t".into(),
            body: Bytes::from_static(b"hello"),
            tag: Some("TagA".into()),
            keys: vec!["k1".into(), "k2".into()],
            id: None,
            group: Some("order-7".into()),
            properties: vec![("a".into(), "5".into()), ("b".into(), "x".into())],
            delivery: Delivery::Immediate,
            born_timestamp: Some(1234),
        };
        let nr = m.to_record("ID1", Some(99), &[(headers::ATTEMPT, "2".into())]);
        let rec = Record { offset: 7, timestamp: 1234, key: nr.key, value: nr.value, headers: nr.headers };
        let s = StoredMessage::from_record("t", 3, &rec);
        assert_eq!(s.id.as_deref(), Some("ID1"));
        assert_eq!(s.tag.as_deref(), Some("TagA"));
        assert_eq!(s.keys, vec!["k1", "k2"]);
        assert_eq!(s.group.as_deref(), Some("order-7"));
        assert_eq!(s.record_key.as_deref(), Some(&b"order-7"[..]));
        assert_eq!(s.deliver_at, Some(99));
        assert_eq!(s.attempt, 2);
        assert_eq!(s.properties, vec![("a".to_string(), "5".to_string()), ("b".to_string(), "x".to_string())]);
        assert_eq!((s.partition, s.offset, s.timestamp), (3, 7, 1234));
        let again = s.resend_as("u");
        assert_eq!((again.id.as_deref(), again.keys.len(), again.body.as_ref()), (Some("ID1"), 2, &b"hello"[..]));
    }

    #[test]
    fn reserved_property_names_and_bad_tags_are_refused() {
        let mut m = Message::new("t", "x");
        m.properties.push(("fjord.id".into(), "spoof".into()));
        assert!(m.validate().unwrap_err().to_string().contains("reserved prefix"));
        let mut m = Message::new("t", "x");
        m.tag = Some("a||b".into());
        assert!(m.validate().is_err());
    }

    #[test]
    fn delay_levels_and_limits() {
        let max = 40 * 86_400_000;
        assert_eq!(Delivery::DelayLevel(1).deliver_at(1000, max).unwrap(), Some(2000));
        assert_eq!(Delivery::DelayLevel(18).deliver_at(0, max).unwrap(), Some(7_200_000));
        assert!(Delivery::DelayLevel(0).deliver_at(0, max).is_err());
        assert!(Delivery::DelayLevel(19).deliver_at(0, max).is_err());
        assert_eq!(Delivery::At(500).deliver_at(1000, max).unwrap(), None);
        assert_eq!(Delivery::At(30 * 86_400_000).deliver_at(0, max).unwrap(), Some(30 * 86_400_000));
        assert!(Delivery::At(41 * 86_400_000).deliver_at(0, max).is_err());
    }

    #[test]
    fn message_ids_are_unique_and_fixed_width() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| new_message_id(1_700_000_000_000)).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| i.len() == 32 && i.chars().all(|c| c.is_ascii_hexdigit())));
    }
}
