//! Partition replication between nodes (`docs/design/replication.md`):
//! leader/ISR with leader epochs, decided by the controller quorum.
//!
//! - [`serve`]: the leader side of a replica fetch — fences by leader
//!   epoch, detects a follower's diverged tail (KIP-320), hands out raw
//!   batches from the log (not bounded by the commit point), records each
//!   follower's progress (which moves the commit point, see
//!   `fjord_broker::replica_partition`), and long-polls when there is
//!   nothing to send.
//! - [`fetcher`]: the follower side — one task per leader node, fetching
//!   every partition this node follows there in one request, appending
//!   with the leader's offsets and epochs, cutting a diverged tail,
//!   following the leader's high watermark and log start.
//! - [`isr`]: the leader's in-sync set — a follower that has not been at
//!   the leader's log end for `replica_lag` leaves it, one whose durable
//!   end reached the high watermark joins it again, each change proposed to
//!   the controller with the epochs it read (`AlterIsr`).
//!
//! Invariants: a follower appends only batches the leader of the epoch it
//! knows sent it, at the offsets the leader gave them; a leader answers
//! only for partitions it leads in the epoch the follower names; nothing
//! here elects leaders (the controller does, from the in-sync set).

pub(crate) mod fetcher;
pub(crate) mod isr;
pub(crate) mod serve;

use std::time::Duration;

/// How long a leader holds a fetch that finds nothing new.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(500);
/// Byte budget of one fetch's records.
pub(crate) const MAX_BYTES: u32 = 8 << 20;

#[cfg(test)]
mod tests;
