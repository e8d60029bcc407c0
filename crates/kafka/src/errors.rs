//! Broker-core errors as Kafka error codes.

use fjord_broker::BrokerError;
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_log::{FormatError, LogError};

/// The Kafka error code for a broker-core error.
pub(crate) fn code(e: &BrokerError) -> i16 {
    kind(e).code()
}

pub(crate) fn kind(e: &BrokerError) -> ResponseError {
    match e {
        BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        BrokerError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BrokerError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        BrokerError::Group(g) => {
            ResponseError::try_from_code(g.kafka_code()).unwrap_or(ResponseError::UnknownServerError)
        }
        BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        BrokerError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        BrokerError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        BrokerError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        // Its data is on disk but could not be loaded: a storage problem on
        // this broker, not an unknown topic (clients would try to create it).
        BrokerError::TopicOffline { .. } => ResponseError::KafkaStorageError,
        BrokerError::Log { source, .. } => log_kind(source),
        _ => ResponseError::UnknownServerError,
    }
}

fn log_kind(e: &LogError) -> ResponseError {
    match e {
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::InvalidBatch(FormatError::CrcMismatch { .. }) => ResponseError::CorruptMessage,
        LogError::InvalidBatch(FormatError::BadMagic(_)) => ResponseError::UnsupportedForMessageFormat,
        LogError::InvalidBatch(FormatError::DecompressedTooLarge { .. }) => ResponseError::MessageTooLarge,
        LogError::InvalidBatch(_) => ResponseError::CorruptMessage,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Poisoned { .. } => ResponseError::KafkaStorageError,
        LogError::Io { .. } => ResponseError::KafkaStorageError,
        LogError::Closed(_) => ResponseError::NotLeaderOrFollower,
        LogError::InvalidArgument(_) => ResponseError::InvalidRequest,
        _ => ResponseError::UnknownServerError,
    }
}
