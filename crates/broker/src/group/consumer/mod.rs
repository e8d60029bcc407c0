//! The KIP-848 "consumer" group protocol: server-side assignment with incremental,
//! cooperative reconciliation, driven by ConsumerGroupHeartbeat.
//!
//! This coordinator lives beside the classic one ([`super::GroupCoordinator`]); group ids are
//! shared between them, so a gateway checks [`ConsumerGroups::contains`] /
//! [`super::GroupCoordinator::describe_group`] to answer GROUP_ID_NOT_FOUND or
//! INCONSISTENT_GROUP_PROTOCOL when a request of one protocol hits a group of the other.
//! Everything here is protocol-agnostic: gateways decode ConsumerGroupHeartbeat into a
//! [`ConsumerHeartbeat`] and encode the [`ConsumerHeartbeatResponse`] (or the
//! [`super::GroupError`], via [`super::GroupError::kind`]) back.
//!
//! Partition counts and topic ids come from a [`TopicMetadataSource`] the gateway provides;
//! it is consulted on every heartbeat, so topic creation (for regex subscriptions) and
//! partition-count changes are noticed by the next heartbeat of any member.
//!
//! # Epochs and the heartbeat
//!
//! * The **group epoch** is bumped whenever the group's input to the assignor changes: a
//!   member joins, leaves or is fenced, a member changes its subscription (topic names or
//!   regex), or the metadata of a subscribed topic changes (created, deleted, re-created,
//!   partitions added, a regex matching a new topic).
//! * When the group epoch is ahead of the **target assignment epoch**, the next heartbeat
//!   recomputes the target assignment of every member with the group's preferred server
//!   assignor (`uniform`, sticky and balanced; or `range`, Kafka's co-partitioning range
//!   assignor) and sets the assignment epoch to the group epoch.
//! * Each heartbeat then moves the sending member one step from its current assignment
//!   towards its target (Kafka's `CurrentAssignmentBuilder`), see the member state machine.
//! * The response carries the member's epoch, the heartbeat interval and, when the member's
//!   assigned partitions changed or the request was a full one (joining, or carrying
//!   rebalance timeout, subscription and owned partitions), its whole assignment.
//!
//! # Member state machine
//!
//! ```text
//!                 target epoch moved: partitions to revoke
//!     Stable ────────────────────────────────────────────▶ UnrevokedPartitions
//!       ▲  ▲   (epoch unchanged, revoked partitions leave the      │ heartbeat no longer reports
//!       │  │    assignment but stay "pending revocation")          │ any pending partition
//!       │  │                                                       ▼
//!       │  └──────────── all target partitions free ◀──── epoch := target epoch, take every
//!       │                                                 target partition that is free
//!       │                                                          │ some are still owned by
//!       │                                                          ▼ another member
//!       └──────── the last owner revoked them ─────────── UnreleasedPartitions
//! ```
//!
//! A partition is added to a member's assignment only while no other member has it assigned
//! or pending revocation, so a partition is never handed out twice: the previous owner must
//! first acknowledge the revocation by omitting it from the `owned_partitions` of a heartbeat.
//!
//! # Timeouts
//!
//! * **Session timeout** (broker config): restarted by every successful heartbeat; on expiry
//!   the member is removed, its partitions become free and the group epoch is bumped.
//! * **Rebalance timeout** (sent by the member when joining): armed whenever a member enters
//!   (or is given more to revoke in) UnrevokedPartitions; if the member is still at that epoch
//!   when it fires, the member is fenced (removed) so its partitions can move on.
//!
//! # Leaving and static membership
//!
//! * Epoch `-1` leaves the group for good (the member is removed, the group epoch bumped).
//! * A static member (`instance_id`) leaving with epoch `-2` stays in the group at epoch -2
//!   with its assigned partitions (partitions pending revocation are released); its session
//!   timeout keeps running. A new member joining with the same instance id within that time
//!   takes over the old one's member state and target assignment without a group epoch bump
//!   and gets the same partitions back. Joining with an instance id whose holder has not left
//!   fails with UNRELEASED_INSTANCE_ID; using the old member id afterwards fails with
//!   FENCED_INSTANCE_ID.
//!
//! # Invariants (hold whenever a group's lock is released)
//!
//! * Every partition `(topic id, partition)` is in at most one member's assigned-or-pending-
//!   revocation set, and the group's owner index maps exactly those partitions to their member.
//! * `assignment epoch <= group epoch`; every member epoch is `<= assignment epoch` (or -2 for
//!   a static member that left temporarily). Pending revocations exist only in
//!   UnrevokedPartitions.
//! * The instance-id index maps each static member's instance id to its member id.
//! * Every member has exactly one session timeout in the deadline queue; a rebalance timeout
//!   exists only for members that were put in UnrevokedPartitions and have not moved on.
//! * The subscription reference counts (topic names, regexes) are the sums over the members.
//!
//! # Concurrency and timers
//!
//! As in the classic coordinator: one mutex per group inside a map of groups, synchronous
//! handlers that never block, and one deadline queue served by a single background task per
//! coordinator that sleeps until the earliest deadline (no polling, no task per request). The
//! [`TopicMetadataSource`] is called with a group lock held, so it must not call back into
//! [`ConsumerGroups`].
//!
//! # Deliberate deviations from Kafka
//!
//! * Metadata and regexes are resolved synchronously on every heartbeat (Kafka refreshes them
//!   periodically and resolves regexes asynchronously), so a matching topic is picked up by
//!   the next heartbeat.
//! * A new member always bumps the group epoch, even when it joins with an empty subscription.
//! * A static member that replaces a temporarily departed one (epoch -2) does not count as a
//!   new member in the `max_group_size` check (the classic coordinator does the same).
//! * The uniform assignor is a simpler sticky heuristic than Kafka's: members keep their
//!   previous target partitions when still subscribed, free partitions go to the least-loaded
//!   subscriber, then partitions move from the most to the least loaded member while the
//!   difference is at least two. Homogeneous groups end up balanced to within one partition.
//! * Commits are validated against the member epoch only (STALE_MEMBER_EPOCH on mismatch);
//!   Kafka's OffsetCommit version check belongs to the gateway.

mod coordinator;
mod group;
mod heartbeat;
mod member;
mod reconcile;
mod stored;
mod target;
mod timer;
mod types;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use coordinator::ConsumerGroups;
pub use stored::StoredConsumerGroup;

/// Group config overriding [`ConsumerGroupConfig::session_timeout`] for one
/// group (milliseconds, Kafka's name).
pub const SESSION_TIMEOUT_CONFIG: &str = "consumer.session.timeout.ms";
/// Group config overriding [`ConsumerGroupConfig::heartbeat_interval`] for
/// one group (milliseconds, Kafka's name).
pub const HEARTBEAT_INTERVAL_CONFIG: &str = "consumer.heartbeat.interval.ms";
pub use types::{
    ConsumerGroupDescription, ConsumerGroupListing, ConsumerGroupState, ConsumerHeartbeat, ConsumerHeartbeatResponse,
    ConsumerMemberDescription, LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH, NamedTopicPartitions,
    ServerAssignor, TopicPartitions,
};

/// Where the coordinator learns topic ids and partition counts. The Kafka gateway implements
/// it over the broker's topic table; tests use an in-memory map.
///
/// Both methods are called with a group lock held and must not call into [`ConsumerGroups`].
pub trait TopicMetadataSource: Send + Sync {
    /// The id and partition count of `name`, or `None` if the topic does not exist.
    fn topic(&self, name: &str) -> Option<(uuid::Uuid, u32)>;

    /// Every topic name a regex subscription may match (internal topics should be left out).
    fn topic_names(&self) -> Vec<String>;

    /// `group`'s own value of the group config `name` (Kafka's `GROUP`
    /// config resources: [`SESSION_TIMEOUT_CONFIG`],
    /// [`HEARTBEAT_INTERVAL_CONFIG`]), if it has one.
    fn group_setting(&self, _group: &str, _name: &str) -> Option<String> {
        None
    }
}

/// Coordinator settings (Kafka broker configs `group.consumer.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`: how long a member may stay silent before it is
    /// removed.
    pub session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`: the interval members are told to heartbeat at.
    pub heartbeat_interval: Duration,
    /// `group.consumer.max.size`: maximum members per group.
    pub max_group_size: usize,
    /// `group.consumer.assignors`: the server assignors members may ask for; the first one is
    /// the default for groups whose members name none. An empty list means `[Uniform]`.
    pub assignors: Vec<ServerAssignor>,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval: Duration::from_millis(5_000),
            max_group_size: i32::MAX as usize,
            assignors: vec![ServerAssignor::Uniform, ServerAssignor::Range],
        }
    }
}

impl ConsumerGroupConfig {
    /// The assignor used when no member names one.
    pub fn default_assignor(&self) -> ServerAssignor {
        self.assignors.first().copied().unwrap_or(ServerAssignor::Uniform)
    }

    /// The configured assignor called `name`, if members may use it.
    pub fn assignor(&self, name: &str) -> Option<ServerAssignor> {
        let assignor = ServerAssignor::from_name(name)?;
        let offered = if self.assignors.is_empty() {
            assignor == ServerAssignor::Uniform
        } else {
            self.assignors.contains(&assignor)
        };
        offered.then_some(assignor)
    }
}
