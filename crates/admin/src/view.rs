//! Response shapes shared by several endpoints.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use fjord_log::batch::Record;
use fjord_messaging::StoredMessage;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a byte field is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Encoding {
    /// The bytes were valid UTF-8 and are shown as text.
    Utf8,
    /// Anything else, base64 (standard alphabet, padded).
    Base64,
}

/// Bytes as JSON text, UTF-8 when possible.
pub(crate) fn encode(b: &[u8]) -> (String, Encoding) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_string(), Encoding::Utf8),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(b), Encoding::Base64),
    }
}

/// One record header.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct HeaderView {
    /// Header name (lossy UTF-8).
    key: String,
    /// Value; absent for a null header value.
    value: Option<String>,
    /// How `value` is encoded.
    value_encoding: Encoding,
}

/// A message (a stored record) with what the messaging layer knows of it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MessageView {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    /// Record timestamp (ms since the epoch).
    pub(crate) timestamp_ms: i64,
    /// Message id (`fjord.id`), when the message has one.
    pub(crate) message_id: Option<String>,
    /// Tag (`fjord.tag`).
    pub(crate) tag: Option<String>,
    /// Business keys (`fjord.key`).
    pub(crate) keys: Vec<String>,
    /// Record key.
    pub(crate) key: Option<String>,
    pub(crate) key_encoding: Encoding,
    /// Record value (absent for a tombstone).
    pub(crate) value: Option<String>,
    pub(crate) value_encoding: Encoding,
    /// Key, value and header bytes.
    pub(crate) size_bytes: u64,
    /// Every header, in order, reserved `fjord.*` ones included.
    pub(crate) headers: Vec<HeaderView>,
    /// User properties (headers outside the reserved `fjord.` prefix).
    pub(crate) properties: BTreeMap<String, String>,
    /// Delivery attempts made before this copy (retries).
    pub(crate) attempt: u32,
    /// Where a retried or dead-lettered copy came from.
    pub(crate) origin_topic: Option<String>,
}

fn opt(b: Option<&Bytes>) -> (Option<String>, Encoding) {
    match b {
        Some(b) => {
            let (s, e) = encode(b);
            (Some(s), e)
        }
        None => (None, Encoding::Utf8),
    }
}

impl MessageView {
    pub(crate) fn of(topic: &str, partition: u32, r: &Record) -> MessageView {
        let m = StoredMessage::from_record(topic, partition, r);
        let (key, key_encoding) = opt(r.key.as_ref());
        let (value, value_encoding) = opt(r.value.as_ref());
        let size = r.key.as_ref().map_or(0, Bytes::len)
            + r.value.as_ref().map_or(0, Bytes::len)
            + r.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len)).sum::<usize>();
        MessageView {
            topic: topic.to_string(),
            partition,
            offset: r.offset,
            timestamp_ms: r.timestamp,
            message_id: m.id,
            tag: m.tag,
            keys: m.keys,
            key,
            key_encoding,
            value,
            value_encoding,
            size_bytes: size as u64,
            headers: r
                .headers
                .iter()
                .map(|h| {
                    let (value, value_encoding) = opt(h.value.as_ref());
                    HeaderView { key: String::from_utf8_lossy(&h.key).into_owned(), value, value_encoding }
                })
                .collect(),
            properties: m.properties.into_iter().collect(),
            attempt: m.attempt,
            origin_topic: m.origin.map(|(t, _, _)| t),
        }
    }
}

impl MessageView {
    /// A message found by a query (ids, keys and times come back decoded,
    /// so only user properties are listed as headers).
    pub(crate) fn from_stored(m: &StoredMessage) -> MessageView {
        let (key, key_encoding) = opt(m.record_key.as_ref());
        let (value, value_encoding) = opt(m.body.as_ref());
        let size = m.record_key.as_ref().map_or(0, Bytes::len)
            + m.body.as_ref().map_or(0, Bytes::len)
            + m.properties.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        MessageView {
            topic: m.topic.clone(),
            partition: m.partition,
            offset: m.offset,
            timestamp_ms: m.timestamp,
            message_id: m.id.clone(),
            tag: m.tag.clone(),
            keys: m.keys.clone(),
            key,
            key_encoding,
            value,
            value_encoding,
            size_bytes: size as u64,
            headers: m
                .properties
                .iter()
                .map(|(k, v)| HeaderView { key: k.clone(), value: Some(v.clone()), value_encoding: Encoding::Utf8 })
                .collect(),
            properties: m.properties.iter().cloned().collect(),
            attempt: m.attempt,
            origin_topic: m.origin.as_ref().map(|(t, _, _)| t.clone()),
        }
    }
}

/// `{messages: [...]}` with continuation details.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MessageList {
    pub(crate) messages: Vec<MessageView>,
    /// Where to continue browsing (browse endpoints) or `null`.
    pub(crate) next_offset: Option<u64>,
    /// The partition's high watermark (browse endpoints) or `null`.
    pub(crate) high_watermark: Option<u64>,
    /// Records examined (tag and time queries) or `null`.
    pub(crate) scanned: Option<u64>,
}
