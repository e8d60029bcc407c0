//! Errors of the AMQP gateway itself (as opposed to [`crate::exception`],
//! which are answers to clients).

/// What can go wrong serving AMQP.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// A socket or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A frame could not be decoded or encoded.
    #[error(transparent)]
    Codec(#[from] fjord_amqp_codec::CodecError),
    /// The messaging layer failed.
    #[error(transparent)]
    Messaging(#[from] fjord_messaging::MessagingError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] fjord_broker::BrokerError),
    /// The definitions file is unreadable or could not be written.
    #[error("AMQP definitions: {0}")]
    Definitions(String),
    /// A management request named a user, vhost or permission that does
    /// not exist.
    #[error("{0}")]
    NotFound(String),
    /// A management request was invalid (bad name, bad expression...).
    #[error("{0}")]
    Invalid(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, AmqpError>;
