//! AMQP messages ↔ Fjord messages (one record each).
//!
//! | AMQP 0-9-1                 | Fjord record (Kafka header / RocketMQ property) |
//! |----------------------------|--------------------------------------------------|
//! | body                       | value                                            |
//! | exchange, routing key      | `amqp.exchange`, `amqp.routing-key`              |
//! | `message-id`               | the message id (`fjord.id`; RocketMQ's msgId)    |
//! | `timestamp` (s)            | `amqp.timestamp` (the record's own is when it was stored) |
//! | other basic properties     | `amqp.<property>` (`amqp.content-type`, `amqp.delivery-mode`, `amqp.priority`, `amqp.expiration`, `amqp.correlation-id`, `amqp.reply-to`, `amqp.type`, `amqp.user-id`, `amqp.app-id`, `amqp.cluster-id`, `amqp.content-encoding`) |
//! | `headers`, string values   | a header per entry, same name                    |
//! | `headers`, other types     | a header per entry (value as text) and the whole table as JSON in `amqp.headers-json` |
//!
//! The other way, a record from Kafka or RocketMQ is delivered with
//! exchange `""`, its tag (else its topic) as routing key, and its
//! headers/properties as long-string headers.

use bytes::Bytes;
use fjord_amqp_codec::{AMQPValue, BasicProperties, FieldTable};
use fjord_messaging::{Message, StoredMessage};

/// Prefix of the properties that carry AMQP's own fields.
pub const PREFIX: &str = "amqp.";
const EXCHANGE: &str = "amqp.exchange";
const ROUTING_KEY: &str = "amqp.routing-key";
const HEADERS_JSON: &str = "amqp.headers-json";

/// A message as published.
#[derive(Debug, Clone)]
pub struct Published {
    /// Exchange it was published to.
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// Properties.
    pub properties: BasicProperties,
    /// Body.
    pub body: Bytes,
}

/// Renders a header value as text for other protocols.
fn value_text(v: &AMQPValue) -> String {
    if let Some(n) = crate::model::value_int(v) {
        return n.to_string();
    }
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::Float(f) => f.to_string(),
        AMQPValue::Double(f) => f.to_string(),
        AMQPValue::Void => String::new(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The Fjord message for a publish routed to `topic`.
pub fn to_message(p: &Published, topic: &str) -> Message {
    let props = &p.properties;
    let mut m = Message::new(topic, p.body.clone());
    let mut add = |k: &str, v: String| m.properties.push((k.to_string(), v));
    if !p.exchange.is_empty() {
        add(EXCHANGE, p.exchange.clone());
    }
    add(ROUTING_KEY, p.routing_key.clone());
    let short = |k: &str, v: &Option<fjord_amqp_codec::ShortString>| {
        v.as_ref().map(|s| (k.to_string(), s.as_str().to_string()))
    };
    let fields = [
        short("amqp.content-type", props.content_type()),
        short("amqp.content-encoding", props.content_encoding()),
        props.delivery_mode().map(|d| ("amqp.delivery-mode".to_string(), d.to_string())),
        props.priority().map(|d| ("amqp.priority".to_string(), d.to_string())),
        short("amqp.correlation-id", props.correlation_id()),
        short("amqp.reply-to", props.reply_to()),
        short("amqp.expiration", props.expiration()),
        short("amqp.type", props.kind()),
        short("amqp.user-id", props.user_id()),
        short("amqp.app-id", props.app_id()),
        short("amqp.cluster-id", props.cluster_id()),
    ];
    m.properties.extend(fields.into_iter().flatten());
    if let Some(h) = props.headers() {
        let mut typed = false;
        for (k, v) in h.inner() {
            typed |= !matches!(v, AMQPValue::LongString(_) | AMQPValue::ShortString(_));
            let name = k.as_str();
            // Names Fjord reserves, or that would read back as AMQP's own
            // fields, travel only in the JSON copy.
            if name.is_empty() || name.starts_with("fjord.") || name.starts_with(PREFIX) {
                typed = true;
                continue;
            }
            m.properties.push((name.to_string(), value_text(v)));
        }
        if typed && let Ok(json) = serde_json::to_string(h) {
            m.properties.push((HEADERS_JSON.to_string(), json));
        }
    }
    if let Some(id) = props.message_id().as_ref().filter(|s| !s.as_str().is_empty()) {
        m.id = Some(id.as_str().to_string());
    }
    if let Some(ts) = props.timestamp() {
        m.properties.push(("amqp.timestamp".to_string(), ts.to_string()));
    }
    m
}

/// A stored message as AMQP delivers it: exchange, routing key,
/// properties (with `headers` extended by `extra`).
pub fn from_stored(m: &StoredMessage) -> (String, String, BasicProperties) {
    let mut props = BasicProperties::default();
    let (mut exchange, mut key) = (String::new(), None);
    let mut headers = FieldTable::default();
    let mut json: Option<FieldTable> = None;
    for (k, v) in &m.properties {
        let short = || fjord_amqp_codec::ShortString::from(truncate(v));
        match k.as_str() {
            EXCHANGE => exchange = v.clone(),
            ROUTING_KEY => key = Some(v.clone()),
            HEADERS_JSON => json = serde_json::from_str(v).ok(),
            "amqp.content-type" => props = props.with_content_type(short()),
            "amqp.content-encoding" => props = props.with_content_encoding(short()),
            "amqp.delivery-mode" => props = props.with_delivery_mode(v.parse().unwrap_or(1)),
            "amqp.priority" => props = props.with_priority(v.parse().unwrap_or(0)),
            "amqp.correlation-id" => props = props.with_correlation_id(short()),
            "amqp.reply-to" => props = props.with_reply_to(short()),
            "amqp.expiration" => props = props.with_expiration(short()),
            "amqp.type" => props = props.with_type(short()),
            "amqp.user-id" => props = props.with_user_id(short()),
            "amqp.app-id" => props = props.with_app_id(short()),
            "amqp.cluster-id" => props = props.with_cluster_id(short()),
            "amqp.timestamp" => {
                if let Ok(ts) = v.parse() {
                    props = props.with_timestamp(ts);
                }
            }
            name if name.starts_with(PREFIX) => {}
            name => {
                headers.insert(truncate(name).into(), AMQPValue::LongString(v.as_str().into()));
            }
        }
    }
    if let Some(j) = json {
        headers = j;
    }
    if !headers.inner().is_empty() {
        props = props.with_headers(headers);
    }
    if let Some(id) = &m.id {
        props = props.with_message_id(truncate(id).into());
    }
    let key = key.or_else(|| m.tag.clone()).unwrap_or_else(|| m.topic.clone());
    (exchange, truncate(&key), props)
}

/// A short string holds at most 255 bytes: `s` cut to that, on a
/// character boundary.
pub(crate) fn truncate(s: &str) -> String {
    if s.len() <= 255 {
        return s.to_string();
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// When a message expires (ms since the epoch): its `expiration` property
/// or the queue's `x-message-ttl`, whichever is sooner, counted from when
/// it was stored.
pub fn expires_at(m: &StoredMessage, queue_ttl: Option<i64>) -> Option<i64> {
    let own = m.property("amqp.expiration").and_then(|e| e.parse::<i64>().ok());
    let ttl = match (own, queue_ttl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }?;
    Some(m.timestamp.saturating_add(ttl))
}
