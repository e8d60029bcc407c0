//! Protobuf ↔ messaging-layer conversions, statuses and time types.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::BrokerError;
use fjord_messaging::{Delivery, Message, MessagingError, StoredMessage};
use fjord_rocketmq_proto::prost_types;
use fjord_rocketmq_proto::v2::{self, Code};

/// A request that fails with a RocketMQ status code (in the response
/// body, as RocketMQ proxies answer; the gRPC status stays OK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail(pub(crate) Code, pub(crate) String);

impl Fail {
    pub(crate) fn new(code: Code, msg: impl Into<String>) -> Fail {
        Fail(code, msg.into())
    }

    pub(crate) fn status(&self) -> v2::Status {
        status(self.0, self.1.clone())
    }
}

impl From<BrokerError> for Fail {
    fn from(e: BrokerError) -> Fail {
        let code = match &e {
            BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => Code::TopicNotFound,
            BrokerError::InvalidTopicName { .. } => Code::IllegalTopic,
            BrokerError::ShuttingDown => Code::InternalServerError,
            // Led by another node (or none now): the client refreshes its
            // route and retries.
            BrokerError::NotLeader { .. } | BrokerError::Unavailable(_) | BrokerError::NotEnoughReplicas { .. } => {
                Code::HaNotAvailable
            }
            _ => Code::InternalServerError,
        };
        Fail(code, e.to_string())
    }
}

impl From<MessagingError> for Fail {
    fn from(e: MessagingError) -> Fail {
        let code = match e {
            // Stored, not confirmed: what the RocketMQ proxy answers for a
            // message its store could not flush in time.
            ref e if e.possibly_written() => Code::MasterPersistenceTimeout,
            MessagingError::Broker(b) => return b.into(),
            MessagingError::Filter(_) => Code::IllegalFilterExpression,
            MessagingError::InvalidMessage(_) => Code::BadRequest,
            MessagingError::InvalidRequest(_) => Code::BadRequest,
            MessagingError::InvalidReceipt(_) => Code::InvalidReceiptHandle,
            MessagingError::NotFound(_) => Code::NotFound,
            _ => Code::InternalServerError,
        };
        Fail(code, e.to_string())
    }
}

pub(crate) fn status(code: Code, message: impl Into<String>) -> v2::Status {
    v2::Status { code: code as i32, message: message.into() }
}

pub(crate) fn ok() -> v2::Status {
    status(Code::Ok, "OK")
}

pub(crate) fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

pub(crate) fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos) / 1_000_000)
}

pub(crate) fn duration(d: &prost_types::Duration) -> Duration {
    if d.seconds < 0 || d.nanos < 0 {
        return Duration::ZERO;
    }
    Duration::new(d.seconds as u64, d.nanos as u32)
}

pub(crate) fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// RocketMQ 5's body digest: CRC-32 (IEEE) as 8 upper-case hex digits.
pub(crate) fn crc32_digest(body: &[u8]) -> v2::Digest {
    v2::Digest { r#type: v2::DigestType::Crc32 as i32, checksum: format!("{:08X}", crc32fast::hash(body)) }
}

/// A message as a 5.x producer sent it, with the queue the producer chose.
pub(crate) fn to_message(m: v2::Message, max_body: usize) -> Result<(Message, v2::MessageType), Fail> {
    let topic = m.topic.map(|t| t.name).filter(|t| !t.is_empty()).ok_or(Fail::new(Code::IllegalTopic, "no topic"))?;
    let sp = m.system_properties.unwrap_or_default();
    let body = if sp.body_encoding == v2::Encoding::Gzip as i32 {
        let mut out = Vec::new();
        let n = flate2::read::GzDecoder::new(&m.body[..])
            .take(max_body as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Fail::new(Code::MessageCorrupted, format!("gzip body does not inflate: {e}")))?;
        if n > max_body {
            return Err(Fail::new(Code::MessageBodyTooLarge, format!("the inflated body exceeds {max_body} bytes")));
        }
        Bytes::from(out)
    } else {
        Bytes::from(m.body)
    };
    let kind = v2::MessageType::try_from(sp.message_type).unwrap_or(v2::MessageType::Normal);
    let delivery = match sp.delivery_timestamp.as_ref() {
        Some(t) => Delivery::At(millis(t)),
        None => Delivery::Immediate,
    };
    if kind == v2::MessageType::Fifo && sp.message_group.as_deref().is_none_or(str::is_empty) {
        return Err(Fail::new(Code::IllegalMessageGroup, "a FIFO message needs a message group"));
    }
    let mut properties: Vec<(String, String)> = m.user_properties.into_iter().collect();
    properties.sort();
    let msg = Message {
        topic,
        body,
        tag: sp.tag.filter(|t| !t.is_empty()),
        keys: sp.keys.into_iter().filter(|k| !k.is_empty()).collect(),
        id: Some(sp.message_id).filter(|id| !id.is_empty()),
        group: sp.message_group.filter(|g| !g.is_empty()),
        properties,
        delivery,
        born_timestamp: sp.born_timestamp.as_ref().map(millis),
    };
    Ok((msg, kind))
}

/// Delivery details of a received message.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    pub(crate) receipt_handle: Option<String>,
    pub(crate) attempt: Option<u32>,
    pub(crate) invisible: Option<Duration>,
}

/// A stored message as 5.x consumers see it.
/// `queue_id`: the message's queue on this broker (its partition alone).
pub(crate) fn to_proto(m: &StoredMessage, queue_id: i32, store_host: &str, d: Delivered) -> v2::Message {
    let body = m.body.clone().unwrap_or_default();
    let kind = if m.group.is_some() {
        v2::MessageType::Fifo
    } else if m.deliver_at.is_some() {
        v2::MessageType::Delay
    } else {
        v2::MessageType::Normal
    };
    let mut keys = m.keys.clone();
    if keys.is_empty()
        && m.group.is_none()
        && let Some(k) = m.record_key.as_ref().and_then(|k| std::str::from_utf8(k).ok())
    {
        // A Kafka record's key, shown as the message key.
        keys.push(k.to_string());
    }
    let id = m
        .id
        .clone()
        .unwrap_or_else(|| format!("{:016X}{:08X}{:08X}", m.offset, m.partition, crc32fast::hash(m.topic.as_bytes())));
    v2::Message {
        topic: Some(v2::Resource { resource_namespace: String::new(), name: origin_topic(m).to_string() }),
        user_properties: m.properties.iter().cloned().collect(),
        system_properties: Some(v2::SystemProperties {
            tag: m.tag.clone(),
            keys,
            message_id: id,
            body_digest: Some(crc32_digest(&body)),
            body_encoding: v2::Encoding::Identity as i32,
            message_type: kind as i32,
            born_timestamp: Some(timestamp(m.timestamp)),
            born_host: store_host.to_string(),
            store_timestamp: Some(timestamp(m.timestamp)),
            store_host: store_host.to_string(),
            delivery_timestamp: m.deliver_at.map(timestamp),
            receipt_handle: d.receipt_handle,
            queue_id,
            queue_offset: Some(m.offset as i64),
            invisible_duration: d.invisible.map(proto_duration),
            delivery_attempt: d.attempt.map(|a| a as i32),
            message_group: m.group.clone(),
            ..Default::default()
        }),
        body: body.to_vec(),
    }
}

/// A retried copy shows the topic its consumer subscribed to.
fn origin_topic(m: &StoredMessage) -> &str {
    match &m.origin {
        Some((t, _, _)) if m.topic.starts_with(fjord_messaging::retry::RETRY_PREFIX) => t,
        _ => &m.topic,
    }
}
