//! Delayed messages waiting in the timer, and dead-letter queues: list,
//! browse, resend.

use axum::Json;
use axum::extract::State;
use fjord_broker::TopicPartition;
use fjord_messaging::retry::{DLQ_PREFIX, dlq_topic};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiPath, ApiQuery, limit};
use crate::view::{MessageList, MessageView};
use crate::{AdminState, ApiError, ErrorBody, MAX_LIMIT};

/// Which delayed messages.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DelayedQuery {
    /// Only messages for this topic.
    topic: Option<String>,
    /// Most messages (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// A message waiting for its time.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DelayedMessage {
    /// When it becomes visible (ms since the epoch).
    deliver_at_ms: i64,
    /// The message; `topic`/`partition` are its target, `offset` is the
    /// timer log's.
    message: MessageView,
}

/// Pending delayed messages.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DelayedList {
    /// Every message waiting (all topics).
    pending: u64,
    messages: Vec<DelayedMessage>,
}

/// Delayed and scheduled messages not yet delivered, earliest first.
#[utoipa::path(get, path = "/api/v1/delayed", tag = "delayed", params(DelayedQuery), responses(
    (status = 200, body = DelayedList),
    (status = 400, body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<DelayedQuery>,
) -> Result<Json<DelayedList>, ApiError> {
    let limit = limit(q.limit)?;
    let found = s.messaging.delayed_messages(q.topic.as_deref(), limit).await?;
    Ok(Json(DelayedList {
        pending: s.messaging.timer_stats().pending as u64,
        messages: found
            .iter()
            .map(|(at, m)| DelayedMessage { deliver_at_ms: *at, message: MessageView::from_stored(m) })
            .collect(),
    }))
}

/// One consumer group's dead-letter queue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DlqView {
    group: String,
    topic: String,
    /// Messages stored in it.
    messages: u64,
}

/// `{queues: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DlqList {
    queues: Vec<DlqView>,
}

/// Every dead-letter queue and how many messages it holds.
#[utoipa::path(get, path = "/api/v1/dlq", tag = "dlq", responses((status = 200, body = DlqList)))]
pub(crate) async fn dlq_list(State(s): State<AdminState>) -> Json<DlqList> {
    let queues = s
        .broker
        .topics()
        .iter()
        .filter_map(|t| {
            let name = t.name();
            let group = name.strip_prefix(DLQ_PREFIX)?.to_string();
            let messages = t.partitions().iter().map(|p| p.high_watermark().saturating_sub(p.log_start_offset())).sum();
            Some(DlqView { group, topic: name, messages })
        })
        .collect();
    Json(DlqList { queues })
}

/// A group name in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct DlqPath {
    /// Consumer group.
    group: String,
}

/// Where to start reading a dead-letter queue.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DlqBrowse {
    /// First offset (default: the oldest stored).
    #[serde(default, deserialize_with = "crate::extract::opt_int64")]
    offset: Option<u64>,
    /// Most messages (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

fn unknown_dlq(group: &str) -> ApiError {
    ApiError::not_found("unknown_dlq", format!("consumer group '{group}' has no dead-letter queue"))
}

/// Messages in a group's dead-letter queue.
#[utoipa::path(get, path = "/api/v1/dlq/{group}/messages", tag = "dlq", params(DlqPath, DlqBrowse), responses(
    (status = 200, body = MessageList),
    (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody),
    (status = 416, body = ErrorBody, description = "Offset outside the stored range")))]
pub(crate) async fn dlq_browse(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<DlqPath>,
    ApiQuery(q): ApiQuery<DlqBrowse>,
) -> Result<Json<MessageList>, ApiError> {
    let limit = limit(q.limit)?;
    let topic = dlq_topic(&p.group);
    let tp = TopicPartition::new(&topic, 0);
    let part = s.broker.partition(&tp).map_err(|_| unknown_dlq(&p.group))?;
    let hw = part.high_watermark();
    let mut offset = q.offset.unwrap_or_else(|| part.log_start_offset());
    let mut messages = Vec::new();
    while offset < hw && messages.len() < limit {
        let recs = s.broker.peek_records(&tp, offset, 1 << 20).await?;
        if recs.is_empty() {
            break;
        }
        for r in recs.iter().take(limit - messages.len()) {
            messages.push(MessageView::of(&topic, 0, r));
            offset = r.offset + 1;
        }
    }
    if offset > hw {
        s.broker.peek_records(&tp, offset, 1).await?;
    }
    Ok(Json(MessageList { messages, next_offset: Some(offset), high_watermark: Some(hw), scanned: None }))
}

/// Messages to send back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResendRequest {
    /// Message ids in the dead-letter queue.
    #[schema(min_items = 1, max_items = 10000)]
    ids: Vec<String>,
}

/// Where one message went back to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Resent {
    message_id: String,
    topic: String,
    partition: u32,
    offset: Option<u64>,
}

/// `{resent: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResendResponse {
    resent: Vec<Resent>,
}

/// Sends dead-lettered messages back to the topic they came from, with
/// their attempts reset. Every id is checked before any is sent.
#[utoipa::path(post, path = "/api/v1/dlq/{group}/resend", tag = "dlq", params(DlqPath), request_body = ResendRequest,
    responses(
        (status = 200, body = ResendResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn dlq_resend(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<DlqPath>,
    ApiJson(req): ApiJson<ResendRequest>,
) -> Result<Json<ResendResponse>, ApiError> {
    if req.ids.is_empty() || req.ids.len() > MAX_LIMIT {
        return Err(ApiError::bad_request(format!("give between 1 and {MAX_LIMIT} ids")));
    }
    let topic = dlq_topic(&p.group);
    if s.broker.topic(&topic).is_none() {
        return Err(unknown_dlq(&p.group));
    }
    for id in &req.ids {
        s.messaging.query_by_id(&topic, id).await.map_err(crate::messages::index_error)?;
    }
    let mut resent = Vec::with_capacity(req.ids.len());
    for id in req.ids {
        let r = s.messaging.dlq_resend(&p.group, &id).await?;
        resent.push(Resent {
            message_id: id,
            topic: r.partition.topic,
            partition: r.partition.partition,
            offset: r.offset,
        });
    }
    Ok(Json(ResendResponse { resent }))
}
