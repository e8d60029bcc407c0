//! Topic endpoints: list, create, describe, alter, delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use fjord_broker::{Topic, TopicConfig, TopicPartition};
use fjord_messaging::retry::{DLQ_PREFIX, RETRY_PREFIX};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{AdminState, ApiError, ErrorBody};

/// What a topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TopicKind {
    /// Created by users or clients.
    Normal,
    /// A consumer group's retry topic (`%RETRY%<group>`).
    Retry,
    /// A consumer group's dead-letter queue (`%DLQ%<group>`).
    Dlq,
    /// The broker's own bookkeeping.
    Internal,
}

pub(crate) fn kind(t: &Topic) -> TopicKind {
    let r = t.record();
    if r.internal {
        TopicKind::Internal
    } else if r.name.starts_with(RETRY_PREFIX) {
        TopicKind::Retry
    } else if r.name.starts_with(DLQ_PREFIX) {
        TopicKind::Dlq
    } else {
        TopicKind::Normal
    }
}

/// One partition of a topic.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PartitionView {
    partition: u32,
    /// First offset still stored.
    log_start_offset: u64,
    /// Next offset to be written.
    log_end_offset: u64,
    /// Offsets below this are visible to consumers.
    high_watermark: u64,
    /// Messages stored (`log_end_offset - log_start_offset`).
    messages: u64,
    size_bytes: u64,
    segments: u64,
    /// When the last append was acknowledged since its leader started.
    last_append_ms: Option<i64>,
    /// The node whose figures these are (the partition's leader); absent
    /// when no leader answered (its figures are then zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<i32>,
    /// Nodes holding a replica, preferred leader first.
    replicas: Vec<i32>,
    /// Replicas holding everything committed (the leader included).
    isr: Vec<i32>,
    /// Replicas a reassignment in progress adds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    adding: Vec<i32>,
    /// Replicas a reassignment in progress removes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removing: Vec<i32>,
}

/// A topic with its partitions and configuration overrides.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopicDetail {
    name: String,
    id: String,
    kind: TopicKind,
    partitions: Vec<PartitionView>,
    /// Configuration overrides (Kafka names, e.g. `retention.ms`).
    config: BTreeMap<String, String>,
}

/// A topic in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopicSummary {
    name: String,
    kind: TopicKind,
    partitions: u32,
    /// Messages stored over all partitions.
    messages: u64,
    size_bytes: u64,
    last_append_ms: Option<i64>,
}

/// `{topics: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopicList {
    topics: Vec<TopicSummary>,
}

/// Each partition's figures from its leader (in a cluster, other nodes
/// are asked for theirs).
async fn partitions(s: &AdminState, topics: &[Arc<Topic>]) -> Vec<Vec<PartitionView>> {
    let tps: Vec<Vec<TopicPartition>> =
        topics.iter().map(|t| t.partitions().iter().map(|p| p.id().clone()).collect()).collect();
    let flat: Vec<TopicPartition> = tps.iter().flatten().cloned().collect();
    let mut states = s.broker.partition_states(&flat).await.into_iter();
    let placement = s.broker.placement();
    let me = s.broker.config().node_id;
    tps.iter()
        .map(|ps| {
            ps.iter()
                .map(|tp| {
                    let st = states.next().flatten();
                    let v = st.unwrap_or_default();
                    let placed = placement.as_ref().and_then(|p| p.partition(tp));
                    PartitionView {
                        partition: tp.partition,
                        log_start_offset: v.log_start_offset,
                        log_end_offset: v.log_end_offset,
                        high_watermark: v.high_watermark,
                        messages: v.log_end_offset.saturating_sub(v.log_start_offset),
                        size_bytes: v.size_bytes,
                        segments: v.segments,
                        last_append_ms: (v.last_append_ms > 0).then_some(v.last_append_ms),
                        leader: st.map(|s| s.leader),
                        replicas: placed.map_or_else(|| vec![me], |a| a.replicas.clone()),
                        isr: placed.map_or_else(|| vec![me], |a| a.isr.clone()),
                        adding: placed.map(|a| a.adding.clone()).unwrap_or_default(),
                        removing: placed.map(|a| a.removing.clone()).unwrap_or_default(),
                    }
                })
                .collect()
        })
        .collect()
}

pub(crate) async fn detail(s: &AdminState, t: &Arc<Topic>) -> TopicDetail {
    let rec = t.record();
    TopicDetail {
        name: rec.name,
        id: rec.id.to_string(),
        kind: kind(t),
        config: rec.config.0,
        partitions: partitions(s, std::slice::from_ref(t)).await.pop().unwrap_or_default(),
    }
}

/// Filters of the topic listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// List internal topics too.
    #[serde(default)]
    internal: bool,
}

/// Every topic, with sizes and message counts.
#[utoipa::path(get, path = "/api/v1/topics", tag = "topics", params(ListQuery), responses(
    (status = 200, body = TopicList),
    (status = 400, body = ErrorBody)))]
pub(crate) async fn list(State(s): State<AdminState>, ApiQuery(q): ApiQuery<ListQuery>) -> Json<TopicList> {
    let listed: Vec<Arc<Topic>> =
        s.broker.topics().into_iter().filter(|t| q.internal || kind(t) != TopicKind::Internal).collect();
    let views = partitions(&s, &listed).await;
    let topics = listed
        .iter()
        .zip(views)
        .map(|(t, ps)| TopicSummary {
            name: t.name(),
            kind: kind(t),
            partitions: ps.len() as u32,
            messages: ps.iter().map(|p| p.messages).sum(),
            size_bytes: ps.iter().map(|p| p.size_bytes).sum(),
            last_append_ms: ps.iter().filter_map(|p| p.last_append_ms).max(),
        })
        .collect();
    Json(TopicList { topics })
}

/// A topic name in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TopicPath {
    /// Topic name.
    pub(crate) topic: String,
}

/// One topic: partitions with offsets and sizes, configuration.
#[utoipa::path(get, path = "/api/v1/topics/{topic}", tag = "topics", params(TopicPath), responses(
    (status = 200, body = TopicDetail),
    (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
pub(crate) async fn describe(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<TopicPath>,
) -> Result<Json<TopicDetail>, ApiError> {
    let t = s.broker.topic(&p.topic).ok_or(fjord_broker::BrokerError::UnknownTopic(p.topic))?;
    Ok(Json(detail(&s, &t).await))
}

/// A topic to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTopic {
    name: String,
    /// Partitions (the broker default when absent).
    #[serde(default)]
    #[schema(minimum = 1)]
    partitions: Option<u32>,
    /// Replicas per partition (the cluster default when absent; a single
    /// node has one).
    #[serde(default)]
    #[schema(minimum = 1)]
    replication_factor: Option<u16>,
    /// Configuration overrides.
    #[serde(default)]
    config: BTreeMap<String, String>,
}

/// Creates a topic.
#[utoipa::path(post, path = "/api/v1/topics", tag = "topics", request_body = CreateTopic, responses(
    (status = 201, body = TopicDetail),
    (status = 400, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "The topic exists"),
    (status = 503, body = ErrorBody)))]
pub(crate) async fn create(
    State(s): State<AdminState>,
    ApiJson(req): ApiJson<CreateTopic>,
) -> Result<(StatusCode, Json<TopicDetail>), ApiError> {
    let config = TopicConfig::from_entries(req.config.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let partitions = req.partitions.unwrap_or(s.broker.config().default_partitions);
    let t = s.broker.create_topic_replicated(&req.name, partitions, req.replication_factor, config).await?;
    Ok((StatusCode::CREATED, Json(detail(&s, &t).await)))
}

/// Changes to a topic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlterTopic {
    /// New total partition count (can only grow).
    #[serde(default)]
    #[schema(minimum = 1)]
    partitions: Option<u32>,
    /// Overrides to set.
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Overrides to remove (back to the broker default).
    #[serde(default)]
    reset_config: Vec<String>,
}

/// Adds partitions and changes configuration overrides.
#[utoipa::path(patch, path = "/api/v1/topics/{topic}", tag = "topics", params(TopicPath), request_body = AlterTopic,
    responses(
        (status = 200, body = TopicDetail),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn alter(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<TopicPath>,
    ApiJson(req): ApiJson<AlterTopic>,
) -> Result<Json<TopicDetail>, ApiError> {
    let t = s.broker.topic(&p.topic).ok_or_else(|| fjord_broker::BrokerError::UnknownTopic(p.topic.clone()))?;
    let mut config = t.record().config;
    for k in &req.reset_config {
        config.0.remove(k);
    }
    for (k, v) in &req.config {
        TopicConfig::validate_entry(k, v)?;
        config.0.insert(k.clone(), v.clone());
    }
    // Validate everything before changing anything.
    if let Some(n) = req.partitions {
        let current = t.partitions().len() as u32;
        if n < current {
            return Err(ApiError::bad_request(format!(
                "topic '{}' has {current} partitions; partitions can be added, not removed",
                p.topic
            )));
        }
    }
    if !req.config.is_empty() || !req.reset_config.is_empty() {
        s.broker.set_topic_config(&p.topic, config).await?;
    }
    if let Some(n) = req.partitions.filter(|&n| n > t.partitions().len() as u32) {
        s.broker.create_partitions(&p.topic, n).await?;
    }
    Ok(Json(detail(&s, &t).await))
}

/// Deletes a topic and its data.
#[utoipa::path(delete, path = "/api/v1/topics/{topic}", tag = "topics", params(TopicPath), responses(
    (status = 204, description = "Deleted"),
    (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody),
    (status = 503, body = ErrorBody)))]
pub(crate) async fn delete(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<TopicPath>,
) -> Result<StatusCode, ApiError> {
    s.broker.delete_topic(&p.topic).await?;
    Ok(StatusCode::NO_CONTENT)
}
