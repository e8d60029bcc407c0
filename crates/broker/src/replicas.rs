//! What moves a partition's commit point when it has several replicas
//! (`docs/design/replication.md` §3).
//!
//! A leader's high watermark is the least, over the in-sync replicas (this
//! one included), of what each holds *durably* under the topic's policy:
//! a follower reports its durable end with every fetch, so an
//! acknowledged write survives the loss of un-fsynced data on any one
//! node. A follower does not commit by itself: it takes the leader's high
//! watermark from each fetch answer. With no other in-sync replica (a
//! single node, replication factor 1, or every follower dropped out of
//! sync) the leader's own durable end commits, as before replication.
//!
//! Invariants: the high watermark never passes any in-sync replica's
//! reported durable end at the time it moved (an in-sync follower that has
//! not reported yet counts as holding nothing); it never moves backwards
//! except by a cut of the log ([`crate::commit`]).

use std::collections::HashMap;

use tokio::time::Instant;

/// One follower as its leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end at its last fetch.
    pub log_end: u64,
    /// What it held durably at its last fetch.
    pub durable: u64,
    /// When a fetch last found it at the leader's log end (it held
    /// everything the leader had); `None` if never since this leader took
    /// over.
    pub caught_up_at: Option<Instant>,
}

/// A replica's role and, leading, its followers' progress.
#[derive(Debug)]
pub(crate) struct Replicas {
    leading: bool,
    /// The other in-sync replicas (leading only).
    in_sync: Vec<i32>,
    followers: HashMap<i32, FollowerProgress>,
    /// This replica's durable end under its policy.
    local: u64,
    /// When this replica last became leader.
    since: Instant,
}

impl Replicas {
    /// A sole leader (a single node, or a partition not yet placed), whose
    /// log holds `durable` durably.
    pub(crate) fn sole(durable: u64) -> Replicas {
        Replicas {
            leading: true,
            in_sync: Vec::new(),
            followers: HashMap::new(),
            local: durable,
            since: Instant::now(),
        }
    }

    pub(crate) fn leading(&self) -> bool {
        self.leading
    }

    /// The durable end this replica reports to its leader.
    pub(crate) fn local(&self) -> u64 {
        self.local
    }

    /// When this replica became leader.
    pub(crate) fn leading_since(&self) -> Instant {
        self.since
    }

    /// Followers' progress (leading).
    pub(crate) fn followers(&self) -> Vec<(i32, FollowerProgress)> {
        self.followers.iter().map(|(n, p)| (*n, *p)).collect()
    }

    /// What may be committed now, when leading.
    fn commit(&self) -> Option<u64> {
        if !self.leading {
            return None;
        }
        let followers = self.in_sync.iter().map(|n| self.followers.get(n).map_or(0, |f| f.durable));
        Some(followers.fold(self.local, u64::min))
    }

    /// This replica holds `end` durably; returns the new commit point.
    pub(crate) fn local_durable(&mut self, end: u64) -> Option<u64> {
        self.local = self.local.max(end);
        self.commit()
    }

    /// A follower fetched at `log_end` holding `durable`, while the
    /// leader's log ended at `leader_end`.
    pub(crate) fn follower_fetched(&mut self, node: i32, log_end: u64, durable: u64, leader_end: u64) -> Option<u64> {
        let at = self.followers.entry(node).or_insert(FollowerProgress { log_end, durable, caught_up_at: None });
        at.log_end = log_end;
        at.durable = durable.min(log_end);
        if log_end >= leader_end {
            at.caught_up_at = Some(Instant::now());
        }
        self.commit()
    }

    /// Leading with `in_sync` others, or following. Returns the commit
    /// point and whether this replica just became leader.
    pub(crate) fn set_role(&mut self, leading: bool, in_sync: &[i32]) -> (Option<u64>, bool) {
        let elected = leading && !self.leading;
        if elected {
            // A new term: progress seen in an earlier one may be stale.
            self.followers.clear();
            self.since = Instant::now();
        }
        self.leading = leading;
        self.in_sync = if leading { in_sync.to_vec() } else { Vec::new() };
        (self.commit(), elected)
    }

    /// The log was cut at `end`.
    pub(crate) fn cut(&mut self, end: u64) {
        self.local = self.local.min(end);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_leader_commits_what_every_in_sync_replica_holds_durably() {
        let mut r = Replicas::sole(0);
        assert_eq!(r.local_durable(5), Some(5), "alone, its own durable end commits");
        assert_eq!(r.set_role(true, &[2, 3]), (Some(0), false), "followers that have not reported hold nothing");
        assert_eq!(r.follower_fetched(2, 5, 4, 5), Some(0));
        assert_eq!(r.follower_fetched(3, 5, 5, 5), Some(4));
        assert_eq!(r.set_role(true, &[3]), (Some(5), false), "node 2 out of sync: it no longer holds the commit back");
        assert_eq!(r.set_role(false, &[]), (None, false), "a follower never commits by itself");
        assert_eq!(r.local_durable(9), None);
        assert_eq!(r.set_role(true, &[2]), (Some(0), true), "a new term forgets progress seen before");
    }

    proptest! {
        /// Whatever the order of reports, the commit point is never above
        /// any in-sync member's durable end.
        #[test]
        fn commit_never_passes_an_in_sync_replica(
            steps in proptest::collection::vec((0u8..3, 0u64..100, 0u64..100), 1..40),
        ) {
            let mut r = Replicas::sole(0);
            r.set_role(true, &[1, 2]);
            let mut durable = [0u64; 3];
            for (who, end, d) in steps {
                let c = if who == 0 {
                    durable[0] = durable[0].max(end);
                    r.local_durable(end)
                } else {
                    durable[who as usize] = d.min(end);
                    r.follower_fetched(i32::from(who), end, d, 100)
                };
                let c = c.expect("leading");
                prop_assert!(durable.iter().all(|d| c <= *d), "{c} above one of {durable:?}");
            }
        }
    }
}
