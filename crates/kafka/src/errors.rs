//! Broker-core errors as Kafka error codes.

use fjord_broker::BrokerError;
use fjord_broker::group::GroupErrorKind;
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
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        BrokerError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
        BrokerError::ElectionNotNeeded(_) => ResponseError::ElectionNotNeeded,
        BrokerError::NoEligibleLeader { preferred: true, .. } => ResponseError::PreferredLeaderNotAvailable,
        BrokerError::NoEligibleLeader { preferred: false, .. } => ResponseError::EligibleLeadersNotAvailable,
        BrokerError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        BrokerError::Group(g) => group_kind(g.kind()),
        BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        BrokerError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        BrokerError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        BrokerError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
        BrokerError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        BrokerError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        BrokerError::NotEnoughReplicas { appended: false, .. } => ResponseError::NotEnoughReplicas,
        BrokerError::NotEnoughReplicas { appended: true, .. } => ResponseError::NotEnoughReplicasAfterAppend,
        // Retriable: the client tries again (Kafka answers topic changes
        // without a controller the same way).
        BrokerError::Unavailable(_) => ResponseError::RequestTimedOut,
        // Possibly written: a client must retry it as such (librdkafka and
        // the Java client treat a timeout so; KAFKA_STORAGE_ERROR would
        // tell them it was not written, and an idempotent producer would
        // re-send it under a bumped epoch, a duplicate).
        BrokerError::NotCommitted { .. } => ResponseError::RequestTimedOut,
        // Its data is on disk but could not be loaded: a storage problem on
        // this broker, not an unknown topic (clients would try to create it).
        BrokerError::TopicOffline { .. } => ResponseError::KafkaStorageError,
        BrokerError::Log { source, .. } => log_kind(source),
        _ => ResponseError::UnknownServerError,
    }
}

/// The Kafka error code for a failed produce. A partition whose log failed
/// (a full disk: poisoned until the broker recovers it) answers as a
/// timeout, not KAFKA_STORAGE_ERROR: librdkafka takes a storage error for
/// "certainly not written" and, when a later pipelined batch then gets
/// OUT_OF_ORDER_SEQUENCE_NUMBER, bumps the producer epoch and re-sends
/// every partition's in-flight batches under it — including batches other
/// partitions had answered "possibly written" for, which are then written
/// twice. A timeout makes it retry the same batch with the same sequence,
/// which the broker recognises. Found by the fault-injection checker.
pub(crate) fn produce_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::Log { source: LogError::Poisoned { .. } | LogError::Io { .. }, .. } => {
            ResponseError::RequestTimedOut.code()
        }
        _ => code(e),
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
        LogError::TimestampOutOfRange { .. } => ResponseError::InvalidTimestamp,
        // Possibly written: a retry of the same batch is recognised.
        LogError::NotCommitted { .. } => ResponseError::RequestTimedOut,
        LogError::Io { .. } => ResponseError::KafkaStorageError,
        LogError::Closed(_) => ResponseError::NotLeaderOrFollower,
        LogError::InvalidArgument(_) => ResponseError::InvalidRequest,
        LogError::Internal(_) => ResponseError::UnknownServerError,
        _ => ResponseError::UnknownServerError,
    }
}

/// KIP-951: the leader a `NOT_LEADER_OR_FOLLOWER` answer points to, so the
/// client can go there without a metadata round trip.
#[derive(Debug, Clone)]
pub(crate) struct MovedTo {
    pub(crate) node_id: i32,
    pub(crate) leader_epoch: i32,
    pub(crate) node: fjord_broker::NodeInfo,
}

pub(crate) fn moved_to(e: &BrokerError) -> Option<MovedTo> {
    match e {
        BrokerError::NotLeader { leader: Some(node), leader_epoch, .. } => {
            Some(MovedTo { node_id: node.node_id, leader_epoch: *leader_epoch, node: node.clone() })
        }
        _ => None,
    }
}

/// The Kafka error code for a group coordinator error.
pub(crate) fn group_code(e: &fjord_broker::group::GroupError) -> i16 {
    group_kind(e.kind()).code()
}

fn group_kind(k: GroupErrorKind) -> ResponseError {
    match k {
        GroupErrorKind::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupErrorKind::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupErrorKind::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupErrorKind::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupErrorKind::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupErrorKind::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupErrorKind::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupErrorKind::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupErrorKind::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupErrorKind::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupErrorKind::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupErrorKind::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupErrorKind::InvalidRequest => ResponseError::InvalidRequest,
        GroupErrorKind::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
        GroupErrorKind::UnreleasedInstanceId => ResponseError::UnreleasedInstanceId,
        GroupErrorKind::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
        GroupErrorKind::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        GroupErrorKind::InvalidRegularExpression => ResponseError::InvalidRegularExpression,
        GroupErrorKind::UnknownServerError => ResponseError::UnknownServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written but not committed is "possibly written" to a Kafka client
    /// (a timeout: retried as the same batch), never a storage error
    /// ("not written", which librdkafka answers with an epoch bump).
    #[test]
    fn a_write_not_committed_is_a_timeout_never_a_storage_error() {
        let source = LogError::Internal("fsync failed".into());
        let e = BrokerError::NotCommitted { tp: "t-0".into(), source };
        assert_eq!(kind(&e), ResponseError::RequestTimedOut);
        let other = BrokerError::Log { context: "t-0".into(), source: LogError::Internal("x".into()) };
        assert_ne!(kind(&other), ResponseError::RequestTimedOut);
        // A produce refused by a failed log: retried as the same batch.
        let io = LogError::Io { op: "write", path: "/d".into(), source: std::io::Error::other("ENOSPC") };
        let refused = BrokerError::Log { context: "t-0".into(), source: io };
        assert_eq!(produce_code(&refused), ResponseError::RequestTimedOut.code());
        assert_eq!(code(&refused), ResponseError::KafkaStorageError.code(), "elsewhere a storage error");
    }

    #[test]
    fn group_errors_get_kafkas_codes() {
        let cases = [
            (GroupErrorKind::InvalidGroupId, 24),
            (GroupErrorKind::UnknownMemberId, 25),
            (GroupErrorKind::IllegalGeneration, 22),
            (GroupErrorKind::RebalanceInProgress, 27),
            (GroupErrorKind::MemberIdRequired, 79),
            (GroupErrorKind::InconsistentGroupProtocol, 23),
            (GroupErrorKind::InvalidSessionTimeout, 26),
            (GroupErrorKind::GroupMaxSizeReached, 81),
            (GroupErrorKind::FencedInstanceId, 82),
            (GroupErrorKind::NonEmptyGroup, 68),
            (GroupErrorKind::GroupIdNotFound, 69),
            (GroupErrorKind::CoordinatorNotAvailable, 15),
            (GroupErrorKind::InvalidRequest, 42),
            (GroupErrorKind::FencedMemberEpoch, 110),
            (GroupErrorKind::UnreleasedInstanceId, 111),
            (GroupErrorKind::UnsupportedAssignor, 112),
            (GroupErrorKind::StaleMemberEpoch, 113),
            (GroupErrorKind::InvalidRegularExpression, 128),
            (GroupErrorKind::UnknownServerError, -1),
        ];
        for (kind, code) in cases {
            assert_eq!(group_kind(kind).code(), code, "{kind:?}");
        }
    }
}
