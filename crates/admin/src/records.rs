//! Raw records of one partition as JSON (UTF-8 keys, values and headers),
//! without the messaging layer's properties: what a Kafka client would
//! produce and fetch.

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use fjord_broker::TopicPartition;
use fjord_log::batch::{BatchBuilder, Header, NewRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiPath, ApiQuery, Obj};
use crate::{AdminState, ApiError, ErrorBody};

/// Most records accepted in one produce request.
const MAX_RECORDS: usize = 10_000;

/// A topic and partition in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PartitionPath {
    /// Topic name.
    pub(crate) topic: String,
    /// Partition index.
    pub(crate) partition: u32,
}

/// A `[name, value]` header pair (documentation only).
pub(crate) struct HeaderPair;

impl utoipa::PartialSchema for HeaderPair {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, Object, Type};
        ArrayBuilder::new()
            .items(Object::with_type(Type::String))
            .min_items(Some(2))
            .max_items(Some(2))
            .description(Some("[name, value]"))
            .into()
    }
}

impl ToSchema for HeaderPair {}

/// A record to append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InRecord {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    /// `[name, value]` pairs, in order.
    #[serde(default)]
    #[schema(value_type = Vec<HeaderPair>)]
    headers: Vec<(String, String)>,
    /// Create time (ms); now when absent.
    #[serde(default)]
    timestamp: Option<i64>,
}

/// Records to append as one batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProduceBody {
    #[schema(min_items = 1, max_items = 10000, value_type = Vec<InRecord>)]
    records: Vec<Obj<InRecord>>,
}

/// Where the batch went.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProduceResponse {
    base_offset: u64,
    last_offset: u64,
    /// Log append time, `null` for create-time topics.
    log_append_time: Option<i64>,
}

/// Appends records to one partition as one batch; answers once the
/// topic's durability policy acknowledged them.
#[utoipa::path(post, path = "/api/v1/topics/{topic}/partitions/{partition}/records", tag = "messages",
    params(PartitionPath), request_body = ProduceBody, responses(
        (status = 200, body = ProduceResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn produce(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<PartitionPath>,
    ApiJson(body): ApiJson<ProduceBody>,
) -> Result<Json<ProduceResponse>, ApiError> {
    if body.records.is_empty() || body.records.len() > MAX_RECORDS {
        return Err(ApiError::bad_request(format!("send between 1 and {MAX_RECORDS} records")));
    }
    let mut b = BatchBuilder::new(s.broker.clock().now_ms());
    for Obj(r) in body.records {
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
    let res = s.broker.produce(&TopicPartition::new(p.topic, p.partition), b.build()).await?;
    Ok(Json(ProduceResponse {
        base_offset: res.base_offset,
        last_offset: res.last_offset,
        log_append_time: res.log_append_time,
    }))
}

/// Where to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsumeQuery {
    /// First offset wanted.
    #[serde(default, deserialize_with = "crate::extract::int64")]
    offset: u64,
    /// About how many bytes of batches to read (default 1 MiB, at most 16 MiB).
    #[serde(default)]
    #[param(minimum = 1, maximum = 16777216)]
    max_bytes: Option<usize>,
}

/// A record read back.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OutRecord {
    offset: u64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    /// `[name, value]` pairs (lossy UTF-8).
    #[schema(value_type = Vec<Vec<Option<String>>>)]
    headers: Vec<(String, Option<String>)>,
}

/// Records read back.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConsumeResponse {
    records: Vec<OutRecord>,
    high_watermark: u64,
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads records of one partition from an offset.
#[utoipa::path(get, path = "/api/v1/topics/{topic}/partitions/{partition}/records", tag = "messages",
    params(PartitionPath, ConsumeQuery), responses(
        (status = 200, body = ConsumeResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody, description = "Offset outside the stored range")))]
pub(crate) async fn consume(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<PartitionPath>,
    ApiQuery(q): ApiQuery<ConsumeQuery>,
) -> Result<Json<ConsumeResponse>, ApiError> {
    let tp = TopicPartition::new(p.topic, p.partition);
    let max_bytes = match q.max_bytes.unwrap_or(1 << 20) {
        n @ 1..=crate::MAX_BODY_BYTES => n,
        _ => return Err(ApiError::bad_request(format!("max_bytes must be between 1 and {}", crate::MAX_BODY_BYTES))),
    };
    let recs = s.broker.peek_records(&tp, q.offset, max_bytes).await?;
    let hw = s.broker.partition(&tp)?.high_watermark();
    let records = recs
        .iter()
        .map(|r| OutRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_ref().map(text),
            value: r.value.as_ref().map(text),
            headers: r.headers.iter().map(|h| (text(&h.key), h.value.as_ref().map(text))).collect(),
        })
        .collect();
    Ok(Json(ConsumeResponse { records, high_watermark: hw }))
}
