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
        BrokerError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        BrokerError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        BrokerError::NotEnoughReplicas { appended: false, .. } => ResponseError::NotEnoughReplicas,
        BrokerError::NotEnoughReplicas { appended: true, .. } => ResponseError::NotEnoughReplicasAfterAppend,
        // Retriable: the client tries again (Kafka answers topic changes
        // without a controller the same way).
        BrokerError::Unavailable(_) => ResponseError::RequestTimedOut,
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
