//! Messages: send through the messaging layer (tags, keys, delays), query
//! by key, id, tag or time, browse a partition, view one message.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use bytes::Bytes;
use fjord_broker::{OffsetSpec, TopicPartition};
use fjord_messaging::{Delivery, Message, Partitioning, StoredMessage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiPath, ApiQuery, Obj, limit};
use crate::records::PartitionPath;
use crate::topics::TopicPath;
use crate::view::{MessageList, MessageView};
use crate::{AdminState, ApiError, ErrorBody};

/// Most messages in one send request.
const MAX_SEND: usize = 10_000;
/// Default and largest number of records a tag query examines per partition.
const DEFAULT_MAX_SCAN: u64 = 10_000;
const MAX_SCAN: u64 = 1_000_000;
/// Bytes read per step while scanning or browsing.
const READ_STEP: usize = 1 << 20;

/// A message to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutgoingMessage {
    /// Body (UTF-8).
    value: String,
    /// Message group / record key: messages with the same key go to the
    /// same partition, in order.
    #[serde(default)]
    key: Option<String>,
    /// User properties (stored as headers).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tag: Option<String>,
    /// Business keys, for query by key.
    #[serde(default)]
    keys: Vec<String>,
    /// A partition chosen by the caller.
    #[serde(default)]
    partition: Option<u32>,
    /// Deliver this many milliseconds from now.
    #[serde(default, deserialize_with = "crate::extract::opt_int64")]
    delay_ms: Option<u64>,
}

/// Messages to send to one topic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendBody {
    #[schema(min_items = 1, max_items = 10000, value_type = Vec<OutgoingMessage>)]
    messages: Vec<Obj<OutgoingMessage>>,
}

/// Where one message went.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SendResult {
    message_id: String,
    partition: Option<u32>,
    /// `null` for a delayed message until it is delivered.
    offset: Option<u64>,
    deliver_at_ms: Option<i64>,
}

/// Receipts in input order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SendResponse {
    results: Vec<SendResult>,
}

/// Sends messages (with tags, keys, properties, delays); answers once
/// they are durable.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/messages", tag = "messages", params(TopicPath),
    request_body = SendBody, responses(
        (status = 200, body = SendResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn send(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<TopicPath>,
    ApiJson(body): ApiJson<SendBody>,
) -> Result<Json<SendResponse>, ApiError> {
    if body.messages.is_empty() || body.messages.len() > MAX_SEND {
        return Err(ApiError::bad_request(format!("send between 1 and {MAX_SEND} messages")));
    }
    let topic = s.broker.topic(&p.topic).ok_or_else(|| fjord_broker::BrokerError::UnknownTopic(p.topic.clone()))?;
    let partitions = topic.partitions().len() as u32;
    let now = s.broker.clock().now_ms();
    // Messages for an explicit partition are sent on their own; the rest
    // together (the messaging layer batches them per partition).
    let mut results: Vec<Option<SendResult>> = body.messages.iter().map(|_| None).collect();
    let (mut auto, mut auto_idx) = (Vec::new(), Vec::new());
    for (i, Obj(m)) in body.messages.into_iter().enumerate() {
        let delivery = match m.delay_ms {
            Some(d) if d > 0 => Delivery::At(now.saturating_add(i64::try_from(d).unwrap_or(i64::MAX))),
            _ => Delivery::Immediate,
        };
        let explicit = m.partition;
        let msg = Message {
            topic: p.topic.clone(),
            body: Bytes::from(m.value),
            tag: m.tag,
            keys: m.keys,
            id: None,
            group: m.key,
            properties: m.headers.into_iter().collect(),
            delivery,
            born_timestamp: None,
        };
        match explicit {
            Some(part) if part >= partitions => {
                return Err(ApiError::not_found(
                    "unknown_partition",
                    format!("topic '{}' has no partition {part} (it has {partitions})", p.topic),
                ));
            }
            Some(part) => {
                let r = s.messaging.send(msg, Partitioning::Explicit(part)).await?;
                results[i] = Some(receipt(r));
            }
            None => {
                auto.push(msg);
                auto_idx.push(i);
            }
        }
    }
    if !auto.is_empty() {
        for (i, r) in auto_idx.into_iter().zip(s.messaging.send_batch(auto, Partitioning::Auto).await?) {
            results[i] = Some(receipt(r));
        }
    }
    Ok(Json(SendResponse { results: results.into_iter().flatten().collect() }))
}

fn receipt(r: fjord_messaging::SendReceipt) -> SendResult {
    let delayed = r.deliver_at.is_some();
    SendResult {
        message_id: r.id,
        partition: (!delayed).then_some(r.partition.partition),
        offset: r.offset,
        deliver_at_ms: r.deliver_at,
    }
}

/// What to look for: exactly one of `key`, `id`, `tag`, `start_ms`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueryParams {
    /// A message key (or Kafka record key); needs the topic's key index.
    key: Option<String>,
    /// A message id; needs the topic's key index.
    id: Option<String>,
    /// A tag: scans up to `max_scan` records per partition from `start_ms`
    /// (or the oldest message).
    tag: Option<String>,
    /// Messages stored at or after this time (ms).
    start_ms: Option<i64>,
    /// With `start_ms`: up to this time (ms, inclusive; default now).
    end_ms: Option<i64>,
    /// Most messages returned (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Tag queries: most records examined per partition (default 10000).
    #[param(minimum = 1, maximum = 1000000)]
    max_scan: Option<u32>,
    /// `cluster` (default): search every node's partitions; `node`: the
    /// partitions the node asked leads.
    scope: Option<String>,
}

/// Finds messages of a topic by key, id, tag or time (in a cluster, on
/// every node's partitions).
#[utoipa::path(get, path = "/api/v1/topics/{topic}/messages", tag = "messages", params(TopicPath, QueryParams),
    responses(
        (status = 200, body = MessageList),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn query(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<TopicPath>,
    ApiQuery(q): ApiQuery<QueryParams>,
    RawQuery(raw): RawQuery,
) -> Result<Json<MessageList>, ApiError> {
    let whole = crate::forward::whole_cluster(q.scope.as_deref())?;
    let mut found = local_query(&s, &p, &q).await?;
    let Some(placement) = s.broker.placement().filter(|_| whole) else { return Ok(Json(found)) };
    // Every other node searches the partitions it leads.
    let path =
        format!("/api/v1/topics/{}/messages?{}&scope=node", crate::forward::segment(&p.topic), raw.unwrap_or_default());
    let me = s.broker.config().node_id;
    for (node, answer) in crate::forward::ask_others::<MessageList>(&placement, me, &path).await {
        match answer {
            Ok(theirs) => {
                found.messages.extend(theirs.messages);
                found.scanned = match (found.scanned, theirs.scanned) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
            }
            Err(e) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("node {} could not search its partitions: {e}", node.node_id),
                ));
            }
        }
    }
    found.messages.sort_by_key(|m| (m.partition, m.offset));
    found.messages.dedup_by_key(|m| (m.partition, m.offset));
    found.messages.truncate(limit(q.limit)?);
    Ok(Json(found))
}

/// What this node finds (on a single node, everything).
async fn local_query(s: &AdminState, p: &TopicPath, q: &QueryParams) -> Result<MessageList, ApiError> {
    let limit = limit(q.limit)?;
    let chosen = [q.key.is_some(), q.id.is_some(), q.tag.is_some(), q.start_ms.is_some() && q.tag.is_none()];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err(ApiError::bad_request("give exactly one of key, id, tag or start_ms"));
    }
    if s.broker.topic(&p.topic).is_none() {
        return Err(fjord_broker::BrokerError::UnknownTopic(p.topic.clone()).into());
    }
    let list = |messages: Vec<MessageView>, scanned| MessageList {
        messages,
        next_offset: None,
        high_watermark: None,
        scanned,
    };
    if let Some(key) = &q.key {
        let found = s.messaging.query_by_key(&p.topic, key, limit).await.map_err(index_error)?;
        return Ok(list(found.iter().map(MessageView::from_stored).collect(), None));
    }
    if let Some(id) = &q.id {
        let found = match s.messaging.query_by_id(&p.topic, id).await.map_err(index_error) {
            Ok(m) => vec![MessageView::from_stored(&m)],
            Err(e) if e.status() == axum::http::StatusCode::NOT_FOUND => Vec::new(),
            Err(e) => return Err(e),
        };
        return Ok(list(found, None));
    }
    if let Some(tag) = &q.tag {
        let max_scan = match q.max_scan.map_or(DEFAULT_MAX_SCAN, u64::from) {
            n @ 1..=MAX_SCAN => n,
            _ => return Err(ApiError::bad_request(format!("max_scan must be between 1 and {MAX_SCAN}"))),
        };
        let (found, scanned) = scan_tag(s, &p.topic, tag, q.start_ms, limit, max_scan).await?;
        return Ok(list(found, Some(scanned)));
    }
    let start = q.start_ms.unwrap_or_default();
    let end = q.end_ms.unwrap_or_else(|| s.broker.clock().now_ms().max(start));
    let found = s.messaging.query_by_time(&p.topic, start, end, limit).await?;
    Ok(list(found.iter().map(MessageView::from_stored).collect(), None))
}

/// A topic without the key index cannot be queried by key or id: that is
/// the caller's mistake to fix (topic config `fjord.key.index`), not ours.
pub(crate) fn index_error(e: fjord_messaging::MessagingError) -> ApiError {
    match e {
        fjord_messaging::MessagingError::Log { source: fjord_log::LogError::InvalidArgument(m), context } => {
            ApiError::bad_request(format!("{context}: {m} (set the topic config fjord.key.index=true)"))
        }
        e => e.into(),
    }
}

async fn scan_tag(
    s: &AdminState,
    topic: &str,
    tag: &str,
    start_ms: Option<i64>,
    limit: usize,
    max_scan: u64,
) -> Result<(Vec<MessageView>, u64), ApiError> {
    let t = s.broker.topic(topic).ok_or_else(|| fjord_broker::BrokerError::UnknownTopic(topic.to_string()))?;
    let (mut out, mut scanned) = (Vec::new(), 0);
    for part in t.partitions() {
        let tp = part.id().clone();
        let mut offset = match start_ms {
            Some(ts) => match s.broker.list_offset(&tp, OffsetSpec::Timestamp(ts)).await? {
                Some(l) => l.offset,
                None => continue,
            },
            None => part.log_start_offset(),
        };
        let (hw, mut budget) = (part.high_watermark(), max_scan);
        while offset < hw && budget > 0 && out.len() < limit {
            let recs = s.broker.peek_records(&tp, offset, READ_STEP).await?;
            let Some(last) = recs.last().map(|r| r.offset) else { break };
            for r in recs.iter().take(budget as usize) {
                scanned += 1;
                budget -= 1;
                let m = StoredMessage::from_record(topic, tp.partition, r);
                if m.tag.as_deref() == Some(tag) && out.len() < limit {
                    out.push(MessageView::of(topic, tp.partition, r));
                }
            }
            offset = last + 1;
        }
    }
    Ok((out, scanned))
}

/// Where to start browsing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BrowseParams {
    /// First offset (default: the oldest stored).
    #[serde(default, deserialize_with = "crate::extract::opt_int64")]
    offset: Option<u64>,
    /// Only messages stored at or after this time (ms); with `offset`,
    /// browsing starts at whichever comes later.
    start_ms: Option<i64>,
    /// Most messages (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// Browses one partition from an offset or a time.
#[utoipa::path(get, path = "/api/v1/topics/{topic}/partitions/{partition}/messages", tag = "messages",
    params(PartitionPath, BrowseParams), responses(
        (status = 200, body = MessageList),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody, description = "Offset outside the stored range")))]
pub(crate) async fn browse(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<PartitionPath>,
    ApiQuery(q): ApiQuery<BrowseParams>,
) -> Result<Json<MessageList>, ApiError> {
    let limit = limit(q.limit)?;
    let tp = TopicPartition::new(p.topic, p.partition);
    let part = s.broker.partition(&tp)?;
    let hw = part.high_watermark();
    let by_time = match q.start_ms {
        Some(ts) => Some(s.broker.list_offset(&tp, OffsetSpec::Timestamp(ts)).await?.map_or(hw, |l| l.offset)),
        None => None,
    };
    let mut offset = match (q.offset, by_time) {
        (Some(o), Some(t)) => o.max(t),
        (Some(o), None) => o,
        (None, Some(t)) => t,
        (None, None) => part.log_start_offset(),
    };
    let mut messages = Vec::new();
    while offset < hw && messages.len() < limit {
        let recs = s.broker.peek_records(&tp, offset, READ_STEP).await?;
        let Some(last) = recs.last().map(|r| r.offset) else { break };
        for r in recs.iter().take(limit - messages.len()) {
            messages.push(MessageView::of(&tp.topic, tp.partition, r));
            offset = r.offset + 1;
        }
        if messages.len() < limit {
            offset = last + 1;
        }
    }
    if offset > hw {
        // An offset past the end is out of range, as a fetch would say.
        s.broker.peek_records(&tp, offset, 1).await?;
    }
    Ok(Json(MessageList { messages, next_offset: Some(offset), high_watermark: Some(hw), scanned: None }))
}

/// A partition and an offset in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct OffsetPath {
    /// Topic name.
    topic: String,
    /// Partition index.
    partition: u32,
    /// Offset of the message.
    #[serde(deserialize_with = "crate::extract::int64")]
    offset: u64,
}

/// One message, with every header.
#[utoipa::path(get, path = "/api/v1/topics/{topic}/partitions/{partition}/messages/{offset}", tag = "messages",
    params(OffsetPath), responses(
        (status = 200, body = MessageView),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody, description = "Offset outside the stored range")))]
pub(crate) async fn get_one(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<OffsetPath>,
) -> Result<Json<MessageView>, ApiError> {
    let tp = TopicPartition::new(p.topic, p.partition);
    let recs = s.broker.peek_records(&tp, p.offset, 1).await?;
    match recs.iter().find(|r| r.offset == p.offset) {
        Some(r) => Ok(Json(MessageView::of(&tp.topic, tp.partition, r))),
        None => Err(ApiError::not_found("unknown_message", format!("no message at offset {} of {tp}", p.offset))),
    }
}
