//! Errors of the Kafka codec.

use kafka_protocol::messages::ApiKey;

/// Why a frame could not be decoded or a response encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame is shorter than a request header's fixed part.
    #[error("frame of {0} bytes is shorter than a request header")]
    FrameTooShort(usize),
    /// The API key is not one Fjord serves; the connection should be closed.
    #[error("unsupported API key {0}")]
    UnknownApiKey(i16),
    /// The API is served but not in this version. For `ApiVersions` the
    /// gateway answers with `UNSUPPORTED_VERSION` and the supported list.
    #[error("{api:?} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// Version the client asked for.
        version: i16,
        /// Lowest supported version.
        min: i16,
        /// Highest supported version.
        max: i16,
        /// Correlation id, so the gateway can answer.
        correlation_id: i32,
    },
    /// The bytes do not follow the request's schema (rejected by the guard or
    /// by `kafka-protocol`).
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// What was wrong.
        reason: String,
    },
    /// The request would decode into more memory than its size justifies.
    #[error("{api:?} v{version} request would need {needed} bytes of collections, more than the budget of {budget}")]
    OverBudget {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// Bytes the declared counts would allocate.
        needed: u64,
        /// Allowed bytes.
        budget: u64,
    },
    /// A response could not be encoded (a bug: responses are built by Fjord).
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// Why.
        reason: String,
    },
}
