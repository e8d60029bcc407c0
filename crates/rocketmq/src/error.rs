//! Errors of the RocketMQ gateway.

use fjord_broker::BrokerError;
use fjord_messaging::MessagingError;
use fjord_rocketmq_codec::CodecError;
use fjord_rocketmq_codec::codes::response;

/// Errors that end a listener or a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RocketMqError {
    /// Socket I/O failed.
    #[error("I/O error on {context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The peer sent bytes that are not a remoting frame (or one too big).
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A request answered with an error code: the response code and the remark
/// the client shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub(crate) code: i32,
    pub(crate) remark: String,
}

impl Reject {
    pub(crate) fn new(code: i32, remark: impl Into<String>) -> Reject {
        Reject { code, remark: remark.into() }
    }
}

impl From<CodecError> for Reject {
    fn from(e: CodecError) -> Reject {
        Reject::new(response::SYSTEM_ERROR, e.to_string())
    }
}

impl From<BrokerError> for Reject {
    fn from(e: BrokerError) -> Reject {
        let code = match &e {
            BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => response::TOPIC_NOT_EXIST,
            BrokerError::TopicExists(_) => response::TOPIC_EXIST_ALREADY,
            BrokerError::InvalidTopicName { .. } | BrokerError::InvalidConfig { .. } => response::MESSAGE_ILLEGAL,
            // Retriable for producers and consumers: they refresh the
            // route and try again (another broker, or later).
            BrokerError::ShuttingDown
            | BrokerError::NotLeader { .. }
            | BrokerError::Unavailable(_)
            | BrokerError::NotEnoughReplicas { .. } => response::SERVICE_NOT_AVAILABLE,
            _ => response::SYSTEM_ERROR,
        };
        Reject::new(code, e.to_string())
    }
}

impl From<MessagingError> for Reject {
    fn from(e: MessagingError) -> Reject {
        let code = match e {
            MessagingError::Broker(b) => return b.into(),
            MessagingError::Filter(_) => response::SUBSCRIPTION_PARSE_FAILED,
            MessagingError::InvalidMessage(_) => response::MESSAGE_ILLEGAL,
            MessagingError::NotFound(_) => response::QUERY_NOT_FOUND,
            MessagingError::ShuttingDown => response::SERVICE_NOT_AVAILABLE,
            _ => response::SYSTEM_ERROR,
        };
        Reject::new(code, e.to_string())
    }
}

/// A handler's result.
pub(crate) type Handled = Result<fjord_rocketmq_codec::RemotingCommand, Reject>;
