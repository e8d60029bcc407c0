//! JSON errors with stable codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fjord_broker::BrokerError;
use fjord_log::LogError;
use serde::Serialize;

/// An API error: HTTP status, stable machine code, human message.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// A 400 for a malformed parameter or body.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Body { code: self.code, message: &self.message })).into_response()
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let (status, code) = match &e {
            BrokerError::UnknownTopic(_) => (StatusCode::NOT_FOUND, "unknown_topic"),
            BrokerError::UnknownPartition { .. } => (StatusCode::NOT_FOUND, "unknown_partition"),
            BrokerError::TopicExists(_) => (StatusCode::CONFLICT, "topic_exists"),
            BrokerError::InvalidTopicName { .. } => (StatusCode::BAD_REQUEST, "invalid_topic_name"),
            BrokerError::InvalidPartitions(_) => (StatusCode::BAD_REQUEST, "invalid_partitions"),
            BrokerError::InvalidConfig { .. } => (StatusCode::BAD_REQUEST, "invalid_config"),
            BrokerError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            BrokerError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            BrokerError::Log { source, .. } => match source {
                LogError::MessageTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"),
                LogError::OffsetOutOfRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "offset_out_of_range"),
                LogError::InvalidBatch(_) => (StatusCode::BAD_REQUEST, "invalid_batch"),
                LogError::Poisoned { .. } | LogError::Closed(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
            },
            BrokerError::Group(_) => (StatusCode::CONFLICT, "group_error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError { status, code, message: e.to_string() }
    }
}
