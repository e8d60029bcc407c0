//! The consumer-protocol coordinator's deadline queue and the task that drives it.
//!
//! Same design as the classic coordinator's queue: every member session timeout and every
//! rebalance timeout is one entry in an ordered map keyed by `(deadline, sequence)`; the
//! member stores the [`TimerKey`] and cancels it when it reschedules, so the queue holds one
//! entry per live timeout. A single task sleeps until the earliest deadline or until an
//! earlier one is scheduled; it never polls. Handlers re-check that the fired key is still the
//! one the member holds, which makes a firing that raced with a reschedule a no-op.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::coordinator::Inner;

/// Identifies one scheduled timeout. Unique for the lifetime of a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct TimerKey {
    deadline: Instant,
    seq: u64,
}

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

/// A due timeout, handed to the coordinator by the background task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TimerEvent {
    pub(super) group_id: String,
    pub(super) kind: TimerKind,
}

#[derive(Debug, Default)]
struct Queue {
    entries: BTreeMap<TimerKey, TimerEvent>,
    next_seq: u64,
}

/// The deadline queue shared by all consumer groups of one coordinator.
#[derive(Debug)]
pub(super) struct Timers {
    queue: Mutex<Queue>,
    notify: Arc<Notify>,
}

impl Timers {
    pub(super) fn new(notify: Arc<Notify>) -> Self {
        Timers { queue: Mutex::new(Queue::default()), notify }
    }

    /// Schedules `kind` for `group_id` at `deadline`.
    pub(super) fn schedule(&self, deadline: Instant, group_id: &str, kind: TimerKind) -> TimerKey {
        let (key, is_earliest) = {
            let mut queue = self.queue.lock();
            let key = TimerKey { deadline, seq: queue.next_seq };
            queue.next_seq += 1;
            queue.entries.insert(key, TimerEvent { group_id: group_id.to_owned(), kind });
            let is_earliest = queue.entries.keys().next() == Some(&key);
            (key, is_earliest)
        };
        // Only a new earliest deadline needs to wake the task; `notify_one` keeps a permit if
        // the task is not waiting yet, so the wake-up cannot be lost.
        if is_earliest {
            self.notify.notify_one();
        }
        key
    }

    /// Cancels a timeout; cancelling one that already fired is a no-op.
    pub(super) fn cancel(&self, key: TimerKey) {
        self.queue.lock().entries.remove(&key);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.queue.lock().entries.keys().next().map(|key| key.deadline)
    }

    pub(super) fn pop_due(&self, now: Instant) -> Vec<(TimerKey, TimerEvent)> {
        let mut queue = self.queue.lock();
        let mut due = Vec::new();
        while let Some(entry) = queue.entries.first_entry() {
            if entry.key().deadline > now {
                break;
            }
            let key = *entry.key();
            due.push((key, entry.remove()));
        }
        due
    }

    /// Drops every pending timeout (coordinator shutdown).
    pub(super) fn clear(&self) {
        self.queue.lock().entries.clear();
    }

    /// Number of scheduled timeouts (tests check that nothing leaks).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.lock().entries.len()
    }
}

/// The body of the coordinator's background task. It holds only a [`Weak`] reference while
/// sleeping, so dropping the coordinator ends it.
pub(super) async fn run(inner: Weak<Inner>, notify: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            if inner.is_shut_down() {
                return;
            }
            inner.timers.next_deadline()
        };
        match next {
            Some(deadline) if deadline <= Instant::now() => {}
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = notify.notified() => continue,
                }
            }
            None => {
                notify.notified().await;
                continue;
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.fire_due(Instant::now());
    }
}
