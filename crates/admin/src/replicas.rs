//! Moving replicas: `PUT|DELETE /api/v1/topics/{topic}/partitions/{partition}/replicas`
//! (`fjord topic reassign`) and `POST /api/v1/cluster/nodes/{id}/decommission`
//! (`fjord cluster decommission`). Both return once the move started: the
//! new replicas copy the log while the partition keeps serving, and the
//! controller finishes the move once they are in sync (the topic's
//! `adding`/`removing` show it in progress).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use fjord_broker::{BrokerError, TopicPartition};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiPath};
use crate::topics::{TopicDetail, detail};
use crate::{AdminState, ApiError, ErrorBody};

/// A partition in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PartitionPath {
    /// Topic name.
    topic: String,
    /// Partition index.
    partition: u32,
}

/// The replicas a partition should have.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reassign {
    /// Node ids, preferred leader first.
    #[schema(min_items = 1)]
    replicas: Vec<i32>,
}

/// Moves a partition to other nodes while it keeps serving.
#[utoipa::path(put, path = "/api/v1/topics/{topic}/partitions/{partition}/replicas", tag = "topics",
    params(PartitionPath), request_body = Reassign, responses(
        (status = 202, body = TopicDetail, description = "The move started"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn reassign(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<PartitionPath>,
    ApiJson(req): ApiJson<Reassign>,
) -> Result<(StatusCode, Json<TopicDetail>), ApiError> {
    if req.replicas.is_empty() {
        return Err(ApiError::bad_request("name at least one replica"));
    }
    let t = s.broker.topic(&p.topic).ok_or_else(|| BrokerError::UnknownTopic(p.topic.clone()))?;
    s.broker.reassign_partition(&TopicPartition::new(p.topic.as_str(), p.partition), Some(req.replicas)).await?;
    Ok((StatusCode::ACCEPTED, Json(detail(&s, &t).await)))
}

/// Cancels a move in progress: the replicas it added go.
#[utoipa::path(delete, path = "/api/v1/topics/{topic}/partitions/{partition}/replicas", tag = "topics",
    params(PartitionPath), responses(
        (status = 200, body = TopicDetail),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "No move in progress"),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<PartitionPath>,
) -> Result<Json<TopicDetail>, ApiError> {
    let t = s.broker.topic(&p.topic).ok_or_else(|| BrokerError::UnknownTopic(p.topic.clone()))?;
    s.broker.reassign_partition(&TopicPartition::new(p.topic.as_str(), p.partition), None).await?;
    Ok(Json(detail(&s, &t).await))
}

/// A node in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct NodePath {
    /// Node id.
    id: i32,
}

/// Starts emptying a node: every replica it holds moves to other serving
/// nodes, and it gets no new ones.
#[utoipa::path(post, path = "/api/v1/cluster/nodes/{id}/decommission", tag = "cluster", params(NodePath), responses(
    (status = 202, description = "Decommissioning started"),
    (status = 400, body = ErrorBody),
    (status = 503, body = ErrorBody)))]
pub(crate) async fn decommission(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<NodePath>,
) -> Result<StatusCode, ApiError> {
    s.broker.decommission_node(p.id).await?;
    Ok(StatusCode::ACCEPTED)
}
