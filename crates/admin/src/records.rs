//! Producing and consuming records as JSON (UTF-8 keys, values and headers).

use axum::Json;
use axum::extract::{Path, Query, State};
use bytes::Bytes;
use fjord_broker::TopicPartition;
use fjord_log::batch::{BatchBuilder, Header, NewRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{AdminState, ApiError};

/// Most records accepted in one produce request.
const MAX_RECORDS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InRecord {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProduceBody {
    records: Vec<InRecord>,
}

pub(crate) async fn produce(
    State(s): State<AdminState>,
    Path((topic, partition)): Path<(String, u32)>,
    body: Result<Json<ProduceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if body.records.is_empty() || body.records.len() > MAX_RECORDS {
        return Err(ApiError::bad_request(format!("send between 1 and {MAX_RECORDS} records")));
    }
    let mut b = BatchBuilder::new(s.broker.clock().now_ms());
    for r in body.records {
        b.push(&NewRecord {
            timestamp: r.timestamp,
            key: r.key.map(Bytes::from),
            value: r.value.map(Bytes::from),
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| Header { key: Bytes::from(k), value: Some(Bytes::from(v)) })
                .collect(),
        });
    }
    let res = s.broker.produce(&TopicPartition::new(topic, partition), b.build()).await?;
    Ok(Json(json!({
        "base_offset": res.base_offset,
        "last_offset": res.last_offset,
        "log_append_time": res.log_append_time,
    })))
}

#[derive(Deserialize)]
pub(crate) struct ConsumeQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    max_bytes: Option<usize>,
}

#[derive(Serialize)]
struct OutRecord {
    offset: u64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) async fn consume(
    State(s): State<AdminState>,
    Path((topic, partition)): Path<(String, u32)>,
    query: Result<Query<ConsumeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let tp = TopicPartition::new(topic, partition);
    let max_bytes = q.max_bytes.unwrap_or(1 << 20).clamp(1, crate::MAX_BODY_BYTES);
    let recs = s.broker.read_records(&tp, q.offset, max_bytes).await?;
    let hw = s.broker.partition(&tp)?.log().high_watermark();
    let out: Vec<OutRecord> = recs
        .iter()
        .map(|r| OutRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_ref().map(text),
            value: r.value.as_ref().map(text),
            headers: r.headers.iter().map(|h| (text(&h.key), h.value.as_ref().map(text))).collect(),
        })
        .collect();
    Ok(Json(json!({ "records": out, "high_watermark": hw })))
}
