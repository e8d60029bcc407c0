//! The coordinators' deadline queue and the single background task that drives it. Both the
//! classic coordinator and the consumer-protocol one ([`super::consumer`]) use it, each with
//! its own [`TimerOwner::Kind`] of timeouts.
//!
//! Every timeout of every group (member sessions, pending-member expiry, the join phase and
//! the pending-sync phase) is one entry in an ordered map keyed by `(deadline, sequence)`.
//! The owner of a timeout stores its [`TimerKey`] and cancels it explicitly when it is
//! rescheduled, so the queue holds exactly one entry per live timeout (no garbage from
//! heartbeats). The task sleeps until the earliest deadline, or until [`Timers::schedule`]
//! inserts an earlier one and wakes it through a [`Notify`]; it never polls.
//!
//! Firing is done outside the queue lock: the task pops the due entries, releases the queue,
//! then locks each group. Handlers re-check that the key they fire for is still the one the
//! group holds, which makes a firing that raced with a reschedule a no-op.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Groups that timeouts changed (a session expired, a join phase ended):
/// what a request-driven change stores before it answers, a timeout's
/// change is stored by the broker's task that waits here.
#[derive(Debug, Default)]
pub(crate) struct TimerChanges {
    groups: Mutex<std::collections::BTreeSet<String>>,
    notify: Notify,
}

impl TimerChanges {
    pub(crate) fn mark(&self, group_id: &str) {
        self.groups.lock().insert(group_id.to_owned());
        self.notify.notify_one();
    }

    /// Waits until some group was changed by a timeout; returns them all.
    pub(crate) async fn next(&self) -> Vec<String> {
        loop {
            let groups: Vec<String> = std::mem::take(&mut *self.groups.lock()).into_iter().collect();
            if !groups.is_empty() {
                return groups;
            }
            self.notify.notified().await;
        }
    }
}

/// Identifies one scheduled timeout. Unique for the lifetime of a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TimerKey {
    deadline: Instant,
    seq: u64,
}

/// What a timeout is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// The session (or new-member join, or pending-member) deadline of one member.
    Session {
        /// The member (or pending member) id.
        member_id: String,
    },
    /// The end of the current join phase (initial delay or rebalance timeout).
    Join,
    /// The deadline for all members to send SyncGroup after a join phase.
    PendingSync,
}

/// A due timeout, handed to the coordinator by the background task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimerEvent<K> {
    pub(crate) group_id: String,
    pub(crate) kind: K,
}

#[derive(Debug)]
struct Queue<K> {
    entries: BTreeMap<TimerKey, TimerEvent<K>>,
    next_seq: u64,
}

/// The deadline queue shared by all groups of one coordinator; `K` says what a timeout is for.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    queue: Mutex<Queue<K>>,
    notify: Arc<Notify>,
}

/// A coordinator driven by [`run`].
pub(crate) trait TimerOwner: Send + Sync + 'static {
    /// What its timeouts are for.
    type Kind: Send;
    /// Its deadline queue.
    fn timers(&self) -> &Timers<Self::Kind>;
    /// Whether it was shut down (the task then ends).
    fn is_shut_down(&self) -> bool;
    /// Handles a due timeout; handlers ignore keys that are no longer current.
    fn fire(&self, key: TimerKey, event: TimerEvent<Self::Kind>);
}

impl<K> Timers<K> {
    pub(crate) fn new(notify: Arc<Notify>) -> Self {
        Timers { queue: Mutex::new(Queue { entries: BTreeMap::new(), next_seq: 0 }), notify }
    }

    /// Schedules `kind` for `group_id` at `deadline`.
    pub(crate) fn schedule(&self, deadline: Instant, group_id: &str, kind: K) -> TimerKey {
        let (key, is_earliest) = {
            let mut queue = self.queue.lock();
            let key = TimerKey { deadline, seq: queue.next_seq };
            queue.next_seq += 1;
            queue.entries.insert(key, TimerEvent { group_id: group_id.to_owned(), kind });
            let is_earliest = queue.entries.keys().next() == Some(&key);
            (key, is_earliest)
        };
        // Only an entry that moves the earliest deadline forward needs to wake the task;
        // `notify_one` stores a permit if the task is between reading the deadline and
        // starting to wait, so the wake-up cannot be lost.
        if is_earliest {
            self.notify.notify_one();
        }
        key
    }

    /// Cancels a timeout; cancelling one that already fired is a no-op.
    pub(crate) fn cancel(&self, key: TimerKey) {
        self.queue.lock().entries.remove(&key);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.queue.lock().entries.keys().next().map(|key| key.deadline)
    }

    fn pop_due(&self, now: Instant) -> Vec<(TimerKey, TimerEvent<K>)> {
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
    pub(crate) fn clear(&self) {
        self.queue.lock().entries.clear();
    }

    /// Number of scheduled timeouts (tests check that nothing leaks).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.lock().entries.len()
    }
}

/// The body of the coordinator's background task.
///
/// It only holds a [`Weak`] reference to the coordinator while sleeping, so dropping the
/// coordinator ends it even if the explicit abort in `shutdown` were missed.
pub(crate) async fn run<O: TimerOwner>(inner: Weak<O>, notify: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            if inner.is_shut_down() {
                return;
            }
            inner.timers().next_deadline()
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
        for (key, event) in inner.timers().pop_due(Instant::now()) {
            inner.fire(key, event);
        }
    }
}
