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
//! A follower the leader proposes for the in-sync set counts towards the
//! commit from the moment of the proposal (KIP-497's *maximal* in-sync
//! set), not from the moment the placement names it: otherwise the leader
//! commits records the follower lacks while the proposal is on its way, the
//! placement then names a member without them, and an election of that
//! member (the preferred replica is given the lead back as soon as it is in
//! sync) cuts acknowledged records from every log (the checker's seed 5,
//! 2026-12-07). It joins only if it holds everything committed at that
//! moment, and stops counting once the placement has decided (its
//! partition epoch moved past the proposal's), the proposal was refused,
//! or [`JOIN_LIMIT`] passed.
//!
//! Invariants: the high watermark never passes any in-sync or joining
//! replica's reported durable end at the time it moved (an in-sync
//! follower that has not reported yet counts as holding nothing); a
//! replica the placement names in sync held everything committed when it
//! was proposed and counted from then on; the high watermark never moves
//! backwards except by a cut of the log ([`crate::commit`]).

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

/// How long a proposed member counts towards the commit without the
/// placement deciding (a proposal whose outcome stayed unknown).
pub(crate) const JOIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A follower proposed for the in-sync set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Joining {
    node: i32,
    /// The partition epoch the proposal was made from.
    epoch: i32,
    since: Instant,
}

/// A replica's role and, leading, its followers' progress.
#[derive(Debug)]
pub(crate) struct Replicas {
    leading: bool,
    /// The other in-sync replicas (leading only).
    in_sync: Vec<i32>,
    /// Followers proposed for the in-sync set, not yet decided (leading
    /// only): they count towards the commit as members do.
    joining: Vec<Joining>,
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
            joining: Vec::new(),
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
        let members = self.in_sync.iter().copied().chain(self.joining.iter().map(|j| j.node));
        let followers = members.map(|n| self.followers.get(&n).map_or(0, |f| f.durable));
        Some(followers.fold(self.local, u64::min))
    }

    /// Leading: counts `node` towards the commit from now on, as proposed
    /// for the in-sync set from partition epoch `epoch`, if it holds
    /// durably everything that may be committed now; false (nothing
    /// changed) if it does not, or this replica does not lead.
    pub(crate) fn propose_joining(&mut self, node: i32, epoch: i32) -> bool {
        let Some(commit) = self.commit() else { return false };
        if self.in_sync.contains(&node) {
            return true;
        }
        if self.followers.get(&node).is_none_or(|f| f.durable < commit) {
            return false;
        }
        self.joining.retain(|j| j.node != node);
        self.joining.push(Joining { node, epoch, since: Instant::now() });
        true
    }

    /// The proposal of `node` from `epoch` was refused: it stops counting.
    /// Returns the commit point, which may move on without it.
    pub(crate) fn refused_joining(&mut self, node: i32, epoch: i32) -> Option<u64> {
        self.joining.retain(|j| !(j.node == node && j.epoch == epoch));
        self.commit()
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
        // Never past this log's end: a report read before a cut of this
        // log (an in-place recovery) names records the cut removed.
        at.log_end = log_end;
        at.durable = durable.min(log_end).min(leader_end);
        if log_end >= leader_end {
            at.caught_up_at = Some(Instant::now());
        }
        self.commit()
    }

    /// Leading with `in_sync` others, or following, as the placement
    /// describes the partition at `partition_epoch`. Returns the commit
    /// point and whether this replica just became leader. Proposed members
    /// stop counting once the placement has decided on their proposal.
    pub(crate) fn set_role(&mut self, leading: bool, in_sync: &[i32], partition_epoch: i32) -> (Option<u64>, bool) {
        let elected = leading && !self.leading;
        if elected {
            // A new term: progress seen in an earlier one may be stale.
            self.followers.clear();
            self.since = Instant::now();
        }
        self.leading = leading;
        self.in_sync = if leading { in_sync.to_vec() } else { Vec::new() };
        if elected || !leading {
            self.joining.clear();
        }
        let in_sync = &self.in_sync;
        self.joining
            .retain(|j| !in_sync.contains(&j.node) && partition_epoch <= j.epoch && j.since.elapsed() < JOIN_LIMIT);
        (self.commit(), elected)
    }

    /// The log was cut at `end`. What followers reported past it names
    /// records that are gone here: rewritten, those offsets hold others,
    /// which a follower's stale report must not count towards committing.
    pub(crate) fn cut(&mut self, end: u64) {
        self.local = self.local.min(end);
        for f in self.followers.values_mut() {
            f.log_end = f.log_end.min(end);
            f.durable = f.durable.min(end);
        }
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
        assert_eq!(r.set_role(true, &[2, 3], 0), (Some(0), false), "followers that have not reported hold nothing");
        assert_eq!(r.follower_fetched(2, 5, 4, 5), Some(0));
        assert_eq!(r.follower_fetched(3, 5, 5, 5), Some(4));
        assert_eq!(
            r.set_role(true, &[3], 0),
            (Some(5), false),
            "node 2 out of sync: it no longer holds the commit back"
        );
        assert_eq!(r.set_role(false, &[], 0), (None, false), "a follower never commits by itself");
        assert_eq!(r.local_durable(9), None);
        assert_eq!(r.set_role(true, &[2], 0), (Some(0), true), "a new term forgets progress seen before");
    }

    /// The race the checker's seed 5 found: a follower proposed for the
    /// in-sync set holds the commit back from the proposal on, so the
    /// placement never names a member that lacks a committed record.
    #[test]
    fn a_follower_proposed_for_the_in_sync_set_holds_the_commit_back_at_once() {
        let mut r = Replicas::sole(0);
        r.set_role(true, &[2], 5);
        r.local_durable(10);
        assert_eq!(r.follower_fetched(2, 10, 10, 10), Some(10));
        r.follower_fetched(3, 8, 8, 10);
        assert!(!r.propose_joining(3, 5), "behind the commit point: it may not join");
        r.follower_fetched(3, 10, 10, 10);
        assert!(r.propose_joining(3, 5));
        // Records written while the proposal is on its way wait for it too.
        r.local_durable(12);
        assert_eq!(r.follower_fetched(2, 12, 12, 12), Some(10), "node 3 lacks 10 and 11");
        assert_eq!(r.follower_fetched(3, 12, 12, 12), Some(12));
        // A placement that has not decided yet keeps it counting...
        r.set_role(true, &[2], 5);
        r.local_durable(14);
        r.follower_fetched(2, 14, 14, 14);
        assert_eq!(r.commit(), Some(12));
        // ...one that has (it is a member now) counts it as a member.
        r.set_role(true, &[2, 3], 6);
        assert_eq!(r.follower_fetched(3, 14, 14, 14), Some(14));
    }

    #[test]
    fn a_refused_or_superseded_proposal_stops_holding_the_commit_back() {
        let mut r = Replicas::sole(0);
        r.set_role(true, &[2], 5);
        r.local_durable(10);
        r.follower_fetched(2, 10, 10, 10);
        r.follower_fetched(3, 10, 10, 10);
        assert!(r.propose_joining(3, 5));
        r.local_durable(20);
        r.follower_fetched(2, 20, 20, 20);
        assert_eq!(r.commit(), Some(10), "node 3, proposed, has not fetched since");
        assert_eq!(r.refused_joining(3, 5), Some(20), "refused: the commit goes on without it");
        assert!(!r.propose_joining(3, 5), "behind now: not proposed again");
        r.follower_fetched(3, 20, 20, 20);
        assert!(r.propose_joining(3, 5));
        r.local_durable(30);
        r.follower_fetched(2, 30, 30, 30);
        assert_eq!(r.commit(), Some(20));
        r.set_role(true, &[2], 6);
        assert_eq!(r.commit(), Some(30), "the placement moved on without it: decided, not a member");
        r.set_role(false, &[], 7);
        assert_eq!(r.commit(), None);
    }

    /// A cut of the leader's log (an in-place recovery) forgets what
    /// followers reported past it, and a report read before the cut but
    /// applied after it counts only up to the log's end: those offsets
    /// will hold other records.
    #[test]
    fn followers_progress_past_a_cut_of_the_leaders_log_does_not_count() {
        let mut r = Replicas::sole(0);
        r.set_role(true, &[2], 0);
        r.local_durable(10);
        assert_eq!(r.follower_fetched(2, 12, 12, 12), Some(10));
        r.cut(10);
        assert_eq!(r.followers(), vec![(2, FollowerProgress { log_end: 10, durable: 10, ..r.followers()[0].1 })]);
        assert_eq!(r.follower_fetched(2, 12, 12, 10), Some(10), "a stale report is clamped to the log end");
        // The leader writes 10 and 11 anew: the follower's old 10 and 11
        // do not commit them.
        assert_eq!(r.local_durable(12), Some(10));
    }

    proptest! {
        /// Whatever the order of reports, the commit point is never above
        /// any in-sync member's durable end.
        #[test]
        fn commit_never_passes_an_in_sync_replica(
            steps in proptest::collection::vec((0u8..3, 0u64..100, 0u64..100), 1..40),
        ) {
            let mut r = Replicas::sole(0);
            r.set_role(true, &[1, 2], 0);
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
