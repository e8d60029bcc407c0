//! Errors of the Kafka gateway.

/// Errors that stop a listener or a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// Socket I/O failed.
    #[error("I/O error on {context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The client sent a frame larger than allowed.
    #[error("request of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Declared size.
        size: i64,
        /// Applicable limit.
        limit: usize,
    },
    /// A request was decoded for an API without a handler (a bug: the
    /// codec only decodes advertised APIs).
    #[error("no handler for request {0}")]
    Unhandled(String),
    /// A response piece referred to record data that is not there (a bug).
    #[error("fetch response refers to missing records of partition {0}")]
    MissingRecords(usize),
    /// The task finishing a response (a Produce's acknowledgement) failed
    /// (a bug).
    #[error("the task answering a request failed: {0}")]
    Answering(#[source] tokio::task::JoinError),
    /// The client sent something that cannot be answered.
    #[error(transparent)]
    Codec(#[from] fjord_kafka_codec::CodecError),
}
