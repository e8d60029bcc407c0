//! The single error type of the group coordinator and its Kafka error-code mapping.

use std::time::Duration;

/// Every way a group-coordinator operation can fail.
///
/// The variants mirror the Kafka error codes a classic-protocol client understands, so a
/// gateway can translate with [`GroupError::kafka_code`]; other gateways (RocketMQ) map them
/// to their own codes. Variants carry just enough context for a useful log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group id is empty (or otherwise unusable) for an operation that needs a real group.
    #[error("the group id is empty or invalid")]
    InvalidGroupId,

    /// The member id (or the group instance id) is not a current member of the group.
    #[error("member `{member_id}` is not a current member of the group")]
    UnknownMemberId {
        /// The member id named by the request (may be empty).
        member_id: String,
    },

    /// The request names a generation that is not the group's current one.
    #[error("generation {generation} is not the current generation of the group")]
    IllegalGeneration {
        /// The generation the request carried.
        generation: i32,
    },

    /// The group is rebalancing: the member must (re)send JoinGroup.
    #[error("the group is rebalancing, the member must rejoin")]
    RebalanceInProgress,

    /// JoinGroup v4+ without a member id: the client must rejoin with the id it is given here.
    #[error("a member id is required to join the group; rejoin with member id `{member_id}`")]
    MemberIdRequired {
        /// The member id the coordinator generated and registered as pending.
        member_id: String,
    },

    /// The protocol type differs from the group's, no protocol is common to all members, or a
    /// SyncGroup names another protocol type / name than the group selected.
    #[error("the member's protocol type or protocols are incompatible with the group")]
    InconsistentGroupProtocol,

    /// The requested session timeout is outside the coordinator's configured bounds.
    #[error("session timeout {requested:?} is outside the allowed range {min:?}..={max:?}")]
    InvalidSessionTimeout {
        /// The session timeout the member asked for.
        requested: Duration,
        /// `group.min.session.timeout.ms`.
        min: Duration,
        /// `group.max.session.timeout.ms`.
        max: Duration,
    },

    /// The group already holds `group.max.size` members.
    #[error("the group has reached its maximum size of {max_size} members")]
    GroupMaxSizeReached {
        /// The configured maximum group size.
        max_size: usize,
    },

    /// A static member's instance id is now owned by a newer member id (KIP-345).
    #[error("static member `{group_instance_id}` has been fenced by a newer member with the same instance id")]
    FencedInstanceId {
        /// The group instance id whose old member id was fenced.
        group_instance_id: String,
    },

    /// DeleteGroups on a group that still has members.
    #[error("group `{group_id}` is not empty")]
    NonEmptyGroup {
        /// The group that could not be deleted.
        group_id: String,
    },

    /// The group does not exist.
    #[error("group `{group_id}` does not exist")]
    GroupIdNotFound {
        /// The group that was looked up.
        group_id: String,
    },

    /// The coordinator has been shut down, or the group was deleted concurrently with the
    /// request; the client should rediscover the coordinator and retry.
    #[error("the group coordinator is not available")]
    CoordinatorNotAvailable,

    /// A malformed request (Kafka INVALID_REQUEST), e.g. a ConsumerGroupHeartbeat that joins
    /// without a subscription or reports owned partitions while joining.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong with the request.
        reason: String,
    },

    /// KIP-848: the member epoch in the request is neither the member's current epoch nor an
    /// accepted previous one; the member must give up its partitions and rejoin with epoch 0.
    #[error("member `{member_id}` sent epoch {received} but its current epoch is {current}")]
    FencedMemberEpoch {
        /// The member id named by the request.
        member_id: String,
        /// The epoch the request carried.
        received: i32,
        /// The member's epoch known by the coordinator.
        current: i32,
    },

    /// KIP-848: a static member joins while another member still holds its instance id.
    #[error("instance id `{group_instance_id}` is still used by another member of the group")]
    UnreleasedInstanceId {
        /// The instance id that is not released.
        group_instance_id: String,
    },

    /// KIP-848: the member asked for a server-side assignor the coordinator does not offer.
    #[error("server assignor `{assignor}` is not supported")]
    UnsupportedAssignor {
        /// The requested assignor name.
        assignor: String,
    },

    /// KIP-848: an offset commit or fetch carries a member epoch other than the member's current one.
    #[error("member `{member_id}` sent epoch {received} but its current epoch is {current}")]
    StaleMemberEpoch {
        /// The member id named by the request.
        member_id: String,
        /// The epoch the request carried.
        received: i32,
        /// The member's current epoch.
        current: i32,
    },

    /// KIP-848: the subscribed topic regular expression does not compile.
    #[error("invalid regular expression `{regex}`: {reason}")]
    InvalidRegularExpression {
        /// The regular expression as sent.
        regex: String,
        /// Why it was rejected.
        reason: String,
    },

    /// An internal invariant did not hold. This is a bug in the coordinator, reported instead
    /// of panicking so that one bad group cannot take the broker down.
    #[error("internal group coordinator error: {0}")]
    UnknownServerError(String),
}

impl GroupError {
    /// The Kafka protocol error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            GroupError::InvalidGroupId => 24,
            GroupError::UnknownMemberId { .. } => 25,
            GroupError::IllegalGeneration { .. } => 22,
            GroupError::RebalanceInProgress => 27,
            GroupError::MemberIdRequired { .. } => 79,
            GroupError::InconsistentGroupProtocol => 23,
            GroupError::InvalidSessionTimeout { .. } => 26,
            GroupError::GroupMaxSizeReached { .. } => 81,
            GroupError::FencedInstanceId { .. } => 82,
            GroupError::NonEmptyGroup { .. } => 68,
            GroupError::GroupIdNotFound { .. } => 69,
            GroupError::CoordinatorNotAvailable => 15,
            GroupError::InvalidRequest { .. } => 42,
            GroupError::FencedMemberEpoch { .. } => 110,
            GroupError::UnreleasedInstanceId { .. } => 111,
            GroupError::UnsupportedAssignor { .. } => 112,
            GroupError::StaleMemberEpoch { .. } => 113,
            GroupError::InvalidRegularExpression { .. } => 128,
            GroupError::UnknownServerError(_) => -1,
        }
    }

    /// Shorthand used throughout the coordinator.
    pub(crate) fn unknown_member(member_id: &str) -> Self {
        GroupError::UnknownMemberId { member_id: member_id.to_owned() }
    }
}
