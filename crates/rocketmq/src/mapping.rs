//! RocketMQ messages ↔ Fjord messages, and "commit log offsets".
//!
//! ## Positions
//! RocketMQ brokers write every message to one commit log and identify a
//! message broker-wide by its byte position there: offset message ids
//! encode it, VIEW_MESSAGE_BY_ID and CONSUMER_SEND_MSG_BACK look messages
//! up by it. Fjord has one log per partition, so a [`Position`] packs the
//! partition's identity and the offset into the same 63 bits:
//! ```text
//! bit 63     0 (positions are non-negative)
//! bits 47-62 topic tag: the first 16 bits of the topic's UUID
//! bits 37-46 partition (queue id), below 1024
//! bits 0-36  offset in the partition, below 2^37
//! ```
//! A lookup tries every topic with that tag (almost always one) and takes
//! the one holding that offset. Messages outside those ranges get no
//! position (`-1`): they are still consumed and queried by key or unique
//! id, only the offset-id lookups miss them. Half messages of
//! transactions use their handle as position; only END_TRANSACTION and
//! check-backs see those.

use std::net::SocketAddr;

use bytes::Bytes;
use fjord_broker::{Broker, TopicPartition};
use fjord_messaging::{Delivery, Message, StoredMessage};
use fjord_rocketmq_codec::MessageExt;
use fjord_rocketmq_codec::codes::response;
use fjord_rocketmq_codec::message::property as p;

use crate::error::Reject;

const PARTITION_BITS: u32 = 10;
const OFFSET_BITS: u32 = 37;

/// A message's broker-wide position (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position(pub i64);

impl Position {
    /// The position of `offset` in `partition` of the topic with `topic_id`,
    /// `None` outside the encodable ranges.
    pub fn of(topic_id: &[u8; 16], partition: u32, offset: u64) -> Option<Position> {
        if partition >= 1 << PARTITION_BITS || offset >= 1 << OFFSET_BITS {
            return None;
        }
        let tag = u64::from(u16::from_be_bytes([topic_id[0], topic_id[1]])) & 0x7FFF;
        let v = tag << (PARTITION_BITS + OFFSET_BITS) | u64::from(partition) << OFFSET_BITS | offset;
        Some(Position(v as i64))
    }

    /// The position of a stored message, `-1` when it has none.
    pub fn of_message(broker: &Broker, topic: &str, partition: u32, offset: u64) -> i64 {
        broker.topic(topic).and_then(|t| Position::of(t.id().as_bytes(), partition, offset)).map_or(-1, |p| p.0)
    }

    /// The partition and offset a position names, if a topic holds it.
    pub fn resolve(self, broker: &Broker) -> Option<(TopicPartition, u64)> {
        if self.0 < 0 {
            return None;
        }
        let v = self.0 as u64;
        let tag = v >> (PARTITION_BITS + OFFSET_BITS);
        let partition = ((v >> OFFSET_BITS) & ((1 << PARTITION_BITS) - 1)) as u32;
        let offset = v & ((1 << OFFSET_BITS) - 1);
        broker.topics().into_iter().find_map(|t| {
            let id = t.id();
            let b = id.as_bytes();
            if u64::from(u16::from_be_bytes([b[0], b[1]])) & 0x7FFF != tag {
                return None;
            }
            let part = t.partition(partition)?;
            let log = &part;
            (offset >= log.log_start_offset() && offset < log.high_watermark())
                .then(|| (TopicPartition::new(t.name(), partition), offset))
        })
    }
}

/// Properties that are client bookkeeping, not message data: consumed by
/// the mapping or meaningless once stored.
const NOT_STORED: [&str; 22] = [
    p::TAGS,
    p::KEYS,
    p::UNIQ_KEY,
    p::SHARDING_KEY,
    p::DELAY,
    p::START_DELIVER_TIME,
    p::TIMER_DELIVER_MS,
    p::TIMER_DELAY_SEC,
    p::TIMER_DELAY_MS,
    p::WAIT,
    p::TRAN_MSG,
    p::PGROUP,
    p::MSG_REGION,
    p::TRACE_ON,
    p::MIN_OFFSET,
    p::MAX_OFFSET,
    p::CONSUME_START_TIME,
    p::REAL_TOPIC,
    p::REAL_QID,
    p::RECONSUME_TIME,
    p::MAX_RECONSUME_TIMES,
    p::TRANSACTION_CHECK_TIMES,
];

fn illegal(m: String) -> Reject {
    Reject::new(response::MESSAGE_ILLEGAL, m)
}

/// A message as a RocketMQ producer sent it.
pub(crate) fn to_message(
    topic: &str,
    body: Bytes,
    props: &[(String, String)],
    born_ms: Option<i64>,
    now_ms: i64,
) -> Result<Message, Reject> {
    let get = |n: &str| fjord_rocketmq_codec::message::prop(props, n).filter(|v| !v.is_empty());
    let num = |n: &'static str| -> Result<Option<i64>, Reject> {
        get(n)
            .map(|v| v.trim().parse::<i64>().map_err(|_| illegal(format!("property {n} is not a number: {v}"))))
            .transpose()
    };
    let delivery = if let Some(at) = num(p::TIMER_DELIVER_MS)?.or(num(p::START_DELIVER_TIME)?) {
        Delivery::At(at)
    } else if let Some(s) = num(p::TIMER_DELAY_SEC)? {
        Delivery::At(now_ms.saturating_add(s.saturating_mul(1000)))
    } else if let Some(ms) = num(p::TIMER_DELAY_MS)? {
        Delivery::At(now_ms.saturating_add(ms))
    } else {
        match num(p::DELAY)? {
            None | Some(0) => Delivery::Immediate,
            // RocketMQ clamps levels above the table to its last level.
            Some(l) if l > 0 => Delivery::DelayLevel(l.min(18) as u8),
            Some(l) => return Err(illegal(format!("delay level {l} is negative"))),
        }
    };
    Ok(Message {
        topic: topic.to_string(),
        body,
        tag: get(p::TAGS).map(str::to_string),
        keys: get(p::KEYS)
            .map(|k| k.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
        id: get(p::UNIQ_KEY).map(str::to_string),
        group: get(p::SHARDING_KEY).map(str::to_string),
        properties: props
            .iter()
            .filter(|(k, _)| !NOT_STORED.contains(&k.as_str()) && !k.starts_with("fjord."))
            .cloned()
            .collect(),
        delivery,
        born_timestamp: born_ms.filter(|t| *t > 0),
    })
}

/// Properties a consumer sees for a stored message.
pub(crate) fn properties_of(m: &StoredMessage) -> Vec<(String, String)> {
    let mut props = m.properties.clone();
    let mut put = |k: &str, v: String| props.push((k.to_string(), v));
    if let Some(t) = &m.tag {
        put(p::TAGS, t.clone());
    }
    if !m.keys.is_empty() {
        put(p::KEYS, m.keys.join(" "));
    } else if m.group.is_none()
        && let Some(k) = m.record_key.as_ref().and_then(|k| std::str::from_utf8(k).ok())
    {
        // A Kafka record's key, shown as RocketMQ's message key.
        put(p::KEYS, k.to_string());
    }
    if let Some(id) = &m.id {
        put(p::UNIQ_KEY, id.clone());
    }
    if let Some(g) = &m.group {
        put(p::SHARDING_KEY, g.clone());
    }
    if let Some((origin_topic, _, _)) = &m.origin
        && m.topic.starts_with(fjord_messaging::retry::RETRY_PREFIX)
    {
        // The consumer shows a retried message under its original topic.
        put(p::RETRY_TOPIC, origin_topic.clone());
        if let Some(id) = &m.id {
            put(p::ORIGIN_MESSAGE_ID, id.clone());
        }
    }
    if let Some(at) = m.deliver_at {
        put(p::TIMER_DELIVER_MS, at.to_string());
    }
    props
}

/// The commitlog form of a stored message, in queue `queue_id` of this
/// broker.
pub(crate) fn to_ext(m: &StoredMessage, queue_id: i32, position: i64, store_host: SocketAddr) -> MessageExt {
    MessageExt {
        topic: m.topic.clone(),
        queue_id,
        flag: 0,
        queue_offset: m.offset as i64,
        commit_log_offset: position,
        sys_flag: 0,
        born_timestamp: m.timestamp,
        born_host: store_host,
        store_timestamp: m.timestamp,
        store_host,
        reconsume_times: m.attempt as i32,
        prepared_transaction_offset: 0,
        body: m.body.clone().unwrap_or_default(),
        properties: properties_of(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_their_fields() {
        let id = [0xAB, 0xCD, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
        let pos = Position::of(&id, 1023, (1 << 37) - 1).expect("in range");
        assert!(pos.0 >= 0);
        assert_eq!(pos.0 as u64 >> 47, 0x2BCD);
        assert_eq!(Position::of(&id, 1024, 0), None);
        assert_eq!(Position::of(&id, 0, 1 << 37), None);
    }

    #[test]
    fn producer_properties_map_to_the_message_model() {
        let props: Vec<(String, String)> = [
            ("TAGS", "TagA"),
            ("KEYS", "order-1 order-2"),
            ("UNIQ_KEY", "0A0B0C"),
            ("DELAY", "3"),
            ("WAIT", "true"),
            ("color", "red"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let m = to_message("t", Bytes::from_static(b"x"), &props, Some(5), 100).expect("valid");
        assert_eq!(m.tag.as_deref(), Some("TagA"));
        assert_eq!(m.keys, vec!["order-1", "order-2"]);
        assert_eq!(m.id.as_deref(), Some("0A0B0C"));
        assert_eq!(m.delivery, Delivery::DelayLevel(3));
        assert_eq!(m.properties, vec![("color".to_string(), "red".to_string())]);
        assert_eq!(m.born_timestamp, Some(5));
        let timed = [("TIMER_DELAY_SEC".to_string(), "10".to_string())];
        assert_eq!(to_message("t", Bytes::new(), &timed, None, 100).expect("ok").delivery, Delivery::At(10_100));
        let bad = [("DELAY".to_string(), "x".to_string())];
        assert_eq!(to_message("t", Bytes::new(), &bad, None, 0).expect_err("refused").code, response::MESSAGE_ILLEGAL);
    }
}
