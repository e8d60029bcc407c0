//! JSON errors with stable codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fjord_broker::BrokerError;
use fjord_log::LogError;
use fjord_messaging::MessagingError;
use serde::Serialize;

/// An API error: HTTP status, stable machine code, human message.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_topic`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    /// A 400 for a malformed parameter or body.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A 404 for something that does not exist.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A 409 for a request the current state forbids.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "admin API request failed");
        }
        (self.status, Json(ErrorBody { code: self.code.to_string(), message: self.message })).into_response()
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
            BrokerError::InvalidReplicationFactor(_) => (StatusCode::BAD_REQUEST, "invalid_replication_factor"),
            BrokerError::InvalidReplicaAssignment(_) => (StatusCode::BAD_REQUEST, "invalid_replica_assignment"),
            BrokerError::NoReassignmentInProgress(_) => (StatusCode::CONFLICT, "no_reassignment_in_progress"),
            BrokerError::ElectionNotNeeded(_) => (StatusCode::CONFLICT, "election_not_needed"),
            BrokerError::NoEligibleLeader { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no_eligible_leader"),
            BrokerError::InvalidConfig { .. } => (StatusCode::BAD_REQUEST, "invalid_config"),
            BrokerError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            BrokerError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            BrokerError::NotEnoughReplicas { .. } => (StatusCode::SERVICE_UNAVAILABLE, "not_enough_replicas"),
            BrokerError::TopicOffline { .. } => (StatusCode::SERVICE_UNAVAILABLE, "topic_offline"),
            BrokerError::Log { source, .. } => match source {
                LogError::MessageTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"),
                LogError::OffsetOutOfRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "offset_out_of_range"),
                LogError::InvalidBatch(_) => (StatusCode::BAD_REQUEST, "invalid_batch"),
                LogError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                LogError::TimestampOutOfRange { .. } => (StatusCode::BAD_REQUEST, "invalid_timestamp"),
                LogError::Poisoned { .. } | LogError::NotCommitted { .. } | LogError::Closed(_) => {
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

impl From<MessagingError> for ApiError {
    fn from(e: MessagingError) -> Self {
        let (status, code) = match e {
            MessagingError::Broker(b) => return b.into(),
            MessagingError::Filter(_) => (StatusCode::BAD_REQUEST, "invalid_filter"),
            MessagingError::InvalidMessage(_) => (StatusCode::BAD_REQUEST, "invalid_message"),
            MessagingError::InvalidRequest(_) | MessagingError::InvalidReceipt(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            MessagingError::NotFound(_) => (StatusCode::NOT_FOUND, "unknown_message"),
            MessagingError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError { status, code, message: e.to_string() }
    }
}
