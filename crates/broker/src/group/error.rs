//! The single error type of the group coordinator.

use std::time::Duration;

/// Every way a group-coordinator operation can fail.
///
/// The variants mirror the errors a Kafka group client understands; gateways map
/// [`GroupError::kind`] to their protocol's codes (the Kafka gateway in its `errors` module). Variants carry just enough context for a useful log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group id is empty (or otherwise unusable) for an operation that needs a real group.
    #[error("the group id is empty or invalid")]
    /// See [`GroupError::InvalidGroupId`].
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
    /// See [`GroupError::RebalanceInProgress`].
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
    /// See [`GroupError::InconsistentGroupProtocol`].
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
    /// See [`GroupError::CoordinatorNotAvailable`].
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
    /// Which error this is, without its details: what a gateway maps to
    /// its protocol's error code (the Kafka gateway to Kafka's codes).
    pub fn kind(&self) -> GroupErrorKind {
        match self {
            GroupError::InvalidGroupId => GroupErrorKind::InvalidGroupId,
            GroupError::UnknownMemberId { .. } => GroupErrorKind::UnknownMemberId,
            GroupError::IllegalGeneration { .. } => GroupErrorKind::IllegalGeneration,
            GroupError::RebalanceInProgress => GroupErrorKind::RebalanceInProgress,
            GroupError::MemberIdRequired { .. } => GroupErrorKind::MemberIdRequired,
            GroupError::InconsistentGroupProtocol => GroupErrorKind::InconsistentGroupProtocol,
            GroupError::InvalidSessionTimeout { .. } => GroupErrorKind::InvalidSessionTimeout,
            GroupError::GroupMaxSizeReached { .. } => GroupErrorKind::GroupMaxSizeReached,
            GroupError::FencedInstanceId { .. } => GroupErrorKind::FencedInstanceId,
            GroupError::NonEmptyGroup { .. } => GroupErrorKind::NonEmptyGroup,
            GroupError::GroupIdNotFound { .. } => GroupErrorKind::GroupIdNotFound,
            GroupError::CoordinatorNotAvailable => GroupErrorKind::CoordinatorNotAvailable,
            GroupError::InvalidRequest { .. } => GroupErrorKind::InvalidRequest,
            GroupError::FencedMemberEpoch { .. } => GroupErrorKind::FencedMemberEpoch,
            GroupError::UnreleasedInstanceId { .. } => GroupErrorKind::UnreleasedInstanceId,
            GroupError::UnsupportedAssignor { .. } => GroupErrorKind::UnsupportedAssignor,
            GroupError::StaleMemberEpoch { .. } => GroupErrorKind::StaleMemberEpoch,
            GroupError::InvalidRegularExpression { .. } => GroupErrorKind::InvalidRegularExpression,
            GroupError::UnknownServerError(_) => GroupErrorKind::UnknownServerError,
        }
    }

    /// Shorthand used throughout the coordinator.
    pub(crate) fn unknown_member(member_id: &str) -> Self {
        GroupError::UnknownMemberId { member_id: member_id.to_owned() }
    }
}

/// The variants of [`GroupError`] without their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupErrorKind {
    /// See [`GroupError::InvalidGroupId`].
    InvalidGroupId,
    /// See [`GroupError::UnknownMemberId`].
    UnknownMemberId,
    /// See [`GroupError::IllegalGeneration`].
    IllegalGeneration,
    /// See [`GroupError::RebalanceInProgress`].
    RebalanceInProgress,
    /// See [`GroupError::MemberIdRequired`].
    MemberIdRequired,
    /// See [`GroupError::InconsistentGroupProtocol`].
    InconsistentGroupProtocol,
    /// See [`GroupError::InvalidSessionTimeout`].
    InvalidSessionTimeout,
    /// See [`GroupError::GroupMaxSizeReached`].
    GroupMaxSizeReached,
    /// See [`GroupError::FencedInstanceId`].
    FencedInstanceId,
    /// See [`GroupError::NonEmptyGroup`].
    NonEmptyGroup,
    /// See [`GroupError::GroupIdNotFound`].
    GroupIdNotFound,
    /// See [`GroupError::CoordinatorNotAvailable`].
    CoordinatorNotAvailable,
    /// See [`GroupError::InvalidRequest`].
    InvalidRequest,
    /// See [`GroupError::FencedMemberEpoch`].
    FencedMemberEpoch,
    /// See [`GroupError::UnreleasedInstanceId`].
    UnreleasedInstanceId,
    /// See [`GroupError::UnsupportedAssignor`].
    UnsupportedAssignor,
    /// See [`GroupError::StaleMemberEpoch`].
    StaleMemberEpoch,
    /// See [`GroupError::InvalidRegularExpression`].
    InvalidRegularExpression,
    /// See [`GroupError::UnknownServerError`].
    UnknownServerError,
}
