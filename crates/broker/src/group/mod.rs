//! Consumer-group membership and assignment: a protocol-agnostic implementation of Apache
//! Kafka's classic group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup /
//! DescribeGroups / ListGroups / DeleteGroups), plus server-side assignors in [`assign`].
//!
//! Gateways translate their wire protocol into the plain structs of this module; member
//! protocol metadata and assignments are opaque [`bytes::Bytes`] the coordinator never
//! parses. Committed offsets live elsewhere: the offsets layer calls
//! [`GroupCoordinator::validate_member`] before storing a commit and deletes a group's
//! offsets after [`GroupCoordinator::delete_groups`] succeeded for it. Beside them, the
//! broker stores each group's settled membership ([`StoredGroup`], see `stored.rs`), which
//! a coordinator taking the group over restores with [`GroupCoordinator::restore`].
//!
//! # State machine
//!
//! ```text
//!            first join                 join phase complete            leader syncs
//!   Empty ─────────────▶ PreparingRebalance ─────────────▶ CompletingRebalance ─────────▶ Stable
//!     ▲                      ▲   │  (nobody left)              │                            │
//!     │                      │   └──────────▶ Empty            │ join / leave / expiry      │
//!     │                      └─────────────────────────────────┴────────────────────────────┘
//!     └── DeleteGroups (Empty only) ──▶ Dead (removed from the coordinator)
//! ```
//!
//! * **PreparingRebalance** parks every JoinGroup. The phase ends when every member has
//!   rejoined and no MEMBER_ID_REQUIRED reservation is outstanding, or when the rebalance
//!   timeout (the largest among the members) expires; dynamic members that did not rejoin
//!   are then removed, static ones are kept (their session timeout still applies). A group
//!   leaving Empty instead waits `initial_rebalance_delay` (never completing early),
//!   extended by one more delay whenever new members arrived meanwhile, within the rebalance
//!   timeout, so a starting fleet of consumers lands in one generation.
//! * Completing the phase increments the generation (also when the group ends up Empty),
//!   selects the protocol by member vote, and answers every parked JoinGroup; only the
//!   leader (the oldest member that rejoined) receives the member list.
//! * **CompletingRebalance** parks followers' SyncGroups until the leader's SyncGroup
//!   delivers the assignments; then every member gets its own and the group is **Stable**.
//!   Members that do not send SyncGroup within the rebalance timeout are removed.
//! * A join with new metadata, a leader rejoin, a leave, or a session expiry moves a
//!   settled group back to PreparingRebalance; parked SyncGroups then fail with
//!   REBALANCE_IN_PROGRESS, and heartbeats answer REBALANCE_IN_PROGRESS so members rejoin.
//! * Static members (KIP-345): a known `group_instance_id` joining with an empty member id
//!   takes over the old member under a new id. In a Stable group whose selected protocol
//!   would not change this happens without a rebalance (the member keeps the previous
//!   assignment); requests with the old id then fail with FENCED_INSTANCE_ID.
//!
//! # Invariants (hold whenever a group's lock is released)
//!
//! * `members` has a leader iff it is non-empty; `static_members` maps each instance id to
//!   the member carrying it.
//! * Every member shares at least one protocol with all others, so protocol selection
//!   cannot fail; the protocol type is fixed by the first member of an empty group.
//! * Parked JoinGroups exist only in PreparingRebalance, parked SyncGroups only in
//!   CompletingRebalance; each parked request is answered exactly once (a response, an
//!   error, or CoordinatorNotAvailable at shutdown).
//! * Each live timeout (member session, pending member, join phase, sync phase) has exactly
//!   one entry in the deadline queue, and its owner holds the key.
//!
//! # Concurrency and timers
//!
//! Each group is behind its own mutex inside a map of groups, so unrelated groups do not
//! contend; handlers are synchronous and never block while holding a lock. Requests that
//! must wait return a [`PendingResponse`] backed by a oneshot channel that the group
//! completes later, so no task is spawned per request.
//!
//! All timeouts use `tokio::time` and live in one deadline queue (an ordered map keyed by
//! deadline) served by a single background task per coordinator. The task sleeps until the
//! earliest deadline or until an earlier one is scheduled; it never polls. Rescheduling
//! cancels the old entry, and a firing that raced with a reschedule is recognised by its key
//! and ignored. [`GroupCoordinator::shutdown`] (also run on drop) fails parked requests,
//! clears the queue and aborts the task; the task holds only a weak reference meanwhile.
//!
//! # Deliberate deviations from Kafka
//!
//! * A restarting static member counts as the member it replaces in the `max_group_size`
//!   check; Kafka checks the empty member id and would reject it when the group is full.
//! * A superseded parked request (a client re-sending JoinGroup / SyncGroup) is answered
//!   with REBALANCE_IN_PROGRESS instead of never being answered.
//! * Selection ties between protocols with equal votes go to the protocol voted first in
//!   join order (Kafka leaves it to hash-map order).

pub mod assign;
pub mod consumer;
mod coordinator;
mod error;
mod join;
mod membership;
mod state;
mod stored;
mod sync;
mod timer;
mod types;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use consumer::{ConsumerGroupConfig, ConsumerGroups, TopicMetadataSource};
pub use coordinator::GroupCoordinator;
pub use error::{GroupError, GroupErrorKind};
pub use stored::{GroupRecord, StoredGroup, StoredMember};
pub use types::{
    GroupDescription, GroupListing, GroupState, HeartbeatRequest, JoinGroupMember, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupMember, LeaveGroupMemberResult, LeaveGroupRequest, MemberDescription, PendingResponse, SyncGroupRequest,
    SyncGroupResponse,
};

/// Coordinator settings (Kafka broker configs of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`: smallest session timeout a member may ask for.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`: largest session timeout a member may ask for.
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms`: how long a group leaving Empty waits for more
    /// members before completing its first join phase.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`: maximum members per group.
    pub max_group_size: usize,
    /// How long a new member's JoinGroup may stay parked before the member is dropped
    /// (Kafka's internal 5-minute `NewMemberJoinTimeoutMs`).
    pub new_member_join_timeout: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout: Duration::from_millis(6_000),
            max_session_timeout: Duration::from_millis(1_800_000),
            initial_rebalance_delay: Duration::from_millis(3_000),
            max_group_size: i32::MAX as usize,
            new_member_join_timeout: Duration::from_secs(300),
        }
    }
}
