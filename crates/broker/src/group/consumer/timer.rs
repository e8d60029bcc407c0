//! What the consumer-protocol coordinator's timeouts are for: member sessions and rebalance
//! timeouts. The deadline queue and its task are shared with the classic coordinator
//! ([`crate::group::timer`]); each member stores the [`TimerKey`] of its live timeouts and
//! handlers ignore keys that are no longer current.

pub(super) use crate::group::timer::TimerKey;

/// What a timeout is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TimerKind {
    /// A member's session timeout.
    Session {
        /// The member id.
        member_id: String,
    },
    /// A member's rebalance timeout: it must have revoked its partitions by then.
    Rebalance {
        /// The member id.
        member_id: String,
        /// The member epoch the member had to leave.
        member_epoch: i32,
    },
}

/// The consumer-protocol coordinator's deadline queue.
pub(super) type Timers = crate::group::timer::Timers<TimerKind>;
