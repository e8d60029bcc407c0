//! Cluster and topic endpoints.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fjord_broker::{Topic, TopicConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{AdminState, ApiError};

pub(crate) async fn cluster(State(s): State<AdminState>) -> Json<Value> {
    let b = &s.broker;
    let uptime_ms = b.clock().now_ms() - b.started_ms();
    Json(json!({
        "cluster_id": b.cluster_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_ms": uptime_ms,
        "node": b.node(),
        "topics": b.topics().len(),
    }))
}

#[derive(Serialize)]
struct PartitionView {
    partition: u32,
    log_start_offset: u64,
    log_end_offset: u64,
    high_watermark: u64,
    size_bytes: u64,
    segments: usize,
}

#[derive(Serialize)]
struct TopicView {
    name: String,
    id: String,
    partitions: Vec<PartitionView>,
    config: BTreeMap<String, String>,
}

fn view(t: &Topic) -> TopicView {
    let rec = t.record();
    TopicView {
        name: rec.name,
        id: rec.id.to_string(),
        config: rec.config.0,
        partitions: t
            .partitions()
            .iter()
            .map(|p| {
                let s = p.log().stats();
                PartitionView {
                    partition: p.id().partition,
                    log_start_offset: s.log_start_offset,
                    log_end_offset: s.log_end_offset,
                    high_watermark: s.high_watermark,
                    size_bytes: s.size_bytes,
                    segments: s.segments,
                }
            })
            .collect(),
    }
}

pub(crate) async fn list(State(s): State<AdminState>) -> Json<Value> {
    let topics: Vec<TopicView> = s.broker.topics().iter().map(|t| view(t)).collect();
    Json(json!({ "topics": topics }))
}

pub(crate) async fn describe(State(s): State<AdminState>, Path(topic): Path<String>) -> Result<Json<Value>, ApiError> {
    let t = s.broker.topic(&topic).ok_or(fjord_broker::BrokerError::UnknownTopic(topic))?;
    Ok(Json(json!(view(&t))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTopic {
    name: String,
    #[serde(default)]
    partitions: Option<u32>,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

pub(crate) async fn create(
    State(s): State<AdminState>,
    body: Result<Json<CreateTopic>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let config = TopicConfig::from_entries(req.config.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let partitions = req.partitions.unwrap_or(s.broker.config().default_partitions);
    let t = s.broker.create_topic(&req.name, partitions, config).await?;
    Ok((StatusCode::CREATED, Json(json!(view(&t)))))
}

pub(crate) async fn delete(State(s): State<AdminState>, Path(topic): Path<String>) -> Result<StatusCode, ApiError> {
    s.broker.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT)
}
