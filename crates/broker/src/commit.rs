//! A partition's commit point: the high watermark, and the appends waiting
//! for it to cover them.
//!
//! An append is *written* when its batch is in the log with offsets
//! assigned, and *committed* when the high watermark passes it; only then is
//! it acknowledged to its producer and shown to consumers. The two are
//! separate steps so that a leader can hand written batches to followers
//! while its own fsync runs, and acknowledge once the replicas the topic
//! requires hold them. What moves the commit point is the partition's
//! replica policy; with one replica (the only policy so far) it is the
//! local durability policy: the end of what was written under `interval`
//! durability, the end of what was fsynced under `group-commit`.
//!
//! Invariants:
//! - the high watermark never passes the log end, and moves back only when
//!   the log is cut ([`CommitPoint::after_cut`]);
//! - a waiter is released with success only if the high watermark covered
//!   its write *in the log generation it was written in*: a cut followed by
//!   new writes at the same offsets must not acknowledge the lost write;
//! - every waiter is woken when its write can no longer commit (the log was
//!   poisoned or cut), so no producer hangs on a failed fsync; otherwise a
//!   waiter is woken once, when the high watermark reaches its end (waiters
//!   are kept by that offset), so many producers on one partition cost one
//!   wake-up each per commit, not one per move of the high watermark;
//! - a leader that is deposed keeps its clients' writes waiting
//!   ([`Until::Committed`]): as a follower it learns the new leader's high
//!   watermark only from fetches whose offset and epoch the leader checked,
//!   so a write it still holds below that mark is in the new leader's log,
//!   and a write the new leader lacks is cut here first (and fails). A
//!   client thus hears "written" or "not written", not "not leader" for a
//!   write that survived: an idempotent producer that takes the latter at
//!   its word re-sends the batch under a new epoch, a duplicate no broker
//!   can recognise. The wait lasts at most [`DEPOSED_GRACE`] after the
//!   deposition (a deposed node cut off from the new leader never learns;
//!   its clients hear "request timed out" then: possibly written, which
//!   is the truth, and what librdkafka expects of an unknown outcome).
//!   The broker's own writers ([`Until::CommittedWhileLeading`]) fail at
//!   once instead: they hold locks and have no client timeout.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_log::{Log, LogError};
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tokio::time::{Duration, Instant};

/// How long a deposed leader keeps a client's write waiting to learn, as a
/// follower, whether the new leader holds it: a healthy node learns within
/// a fetch or two of its new leader; one that is cut off never does.
pub(crate) const DEPOSED_GRACE: Duration = Duration::from_secs(3);

/// The high watermark of one partition, the signal long-polling fetches
/// wait on, and the writes waiting for it.
#[derive(Debug)]
pub(crate) struct CommitPoint {
    log: Arc<Log>,
    high_watermark: watch::Sender<u64>,
    /// The log end after each written group: what replica fetches
    /// long-poll on.
    log_end: watch::Sender<u64>,
    /// This replica's durable end under its policy: what a follower
    /// waits for before reporting it.
    local_durable: watch::Sender<u64>,
    /// This replica's role and, leading, what its followers hold (see
    /// [`crate::replicas`]).
    pub(crate) replicas: Mutex<crate::replicas::Replicas>,
    cuts: Mutex<Cuts>,
    /// Writes waiting for their commit, by the high watermark that covers
    /// them: each is woken once, when it is reached (or when a failure or
    /// a cut may have decided its fate), not on every move.
    waiters: Mutex<BTreeMap<u64, Vec<oneshot::Sender<()>>>>,
}

/// Cuts of the log below what was written.
#[derive(Debug, Default, Clone)]
struct Cuts {
    /// Bumped when a cut begins: writes of an older generation may be gone.
    generation: u64,
    /// The last [`MAX_CUTS`] cuts, oldest first.
    recent: std::collections::VecDeque<Cut>,
    /// Bumped each time this replica stops leading.
    depositions: u64,
    /// When it last stopped leading.
    deposed_at: Option<Instant>,
}

/// One cut of the log.
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// The generation it began.
    generation: u64,
    /// The high watermark when it began: a write ending below it was
    /// committed before the cut.
    committed_before: u64,
    /// A write ending below this is still in the log after the cut (a
    /// diverged tail cut above it leaves it, to be committed or cut later).
    kept_below: u64,
}

/// Cuts remembered for the writes still waiting; a write older than all of
/// them counts as lost to one.
const MAX_CUTS: usize = 64;

/// What the cuts since a write did to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutFate {
    /// Still in the log (no cut, or none reached it).
    Kept,
    /// Committed before a cut began.
    Committed,
    /// Cut from the log.
    Lost,
}

impl Cuts {
    fn fate(&self, written: Written) -> CutFate {
        let since = self.generation - written.stamp.generation;
        if since == 0 {
            return CutFate::Kept;
        }
        if since > self.recent.len() as u64 {
            return CutFate::Lost;
        }
        for cut in self.recent.iter().filter(|c| c.generation > written.stamp.generation) {
            if written.last_offset < cut.committed_before {
                return CutFate::Committed;
            }
            if written.last_offset >= cut.kept_below {
                return CutFate::Lost;
            }
        }
        CutFate::Kept
    }
}

/// What a wait for a commit outlasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Until the high watermark covers the write, or the write is lost (the
    /// log was poisoned, or cut below it), even if this replica stops
    /// leading meanwhile: a client's write, bounded by its request timeout.
    Committed,
    /// As [`Until::Committed`], but failing as soon as this replica stops
    /// leading: the broker's own writes.
    CommittedWhileLeading,
}

/// A written append, waiting to be committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    last_offset: u64,
    stamp: Stamp,
}

/// The log's generation and this replica's depositions when a write began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    generation: u64,
    depositions: u64,
}

impl CommitPoint {
    pub(crate) fn new(log: Arc<Log>) -> CommitPoint {
        let (high_watermark, _) = watch::channel(log.high_watermark());
        let (log_end, _) = watch::channel(log.log_end_offset());
        let replicas = Mutex::new(crate::replicas::Replicas::sole(log.high_watermark()));
        let (local_durable, _) = watch::channel(log.high_watermark());
        CommitPoint {
            log,
            high_watermark,
            log_end,
            local_durable,
            replicas,
            cuts: Mutex::default(),
            waiters: Mutex::default(),
        }
    }

    /// A group was written up to `end`.
    pub(crate) fn appended(&self, end: u64) {
        self.log_end.send_if_modified(|cur| std::mem::replace(cur, end) != end);
    }

    /// Watches the log end.
    pub(crate) fn subscribe_log_end(&self) -> watch::Receiver<u64> {
        self.log_end.subscribe()
    }

    /// Watches this replica's durable end.
    pub(crate) fn subscribe_durable(&self) -> watch::Receiver<u64> {
        self.local_durable.subscribe()
    }

    /// The committed end: offsets below it are readable.
    pub(crate) fn high_watermark(&self) -> u64 {
        self.log.high_watermark()
    }

    /// Watches the high watermark.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// The generation a write about to start belongs to (and the
    /// depositions so far). Read *before* writing: a cut between the read
    /// and the write can then only make the write fail, never let it pass
    /// for one of a later generation.
    pub(crate) fn stamp(&self) -> Stamp {
        let cuts = self.cuts.lock();
        Stamp { generation: cuts.generation, depositions: cuts.depositions }
    }

    /// Whether a cut since `written` was written removed it from the log
    /// (a write that failed to commit is then gone, not of unknown fate).
    pub(crate) fn cut_since(&self, written: Written) -> bool {
        self.cuts.lock().fate(written) == CutFate::Lost
    }

    /// Marks an append stamped `stamp` that was written up to `last_offset`.
    pub(crate) fn written(stamp: Stamp, last_offset: u64) -> Written {
        Written { last_offset, stamp }
    }

    /// The local replica holds everything below `end` as its durability
    /// policy requires. A leader commits what every in-sync replica holds
    /// so (with one replica: this); a follower learns its commit point
    /// from the leader ([`CommitPoint::follow`]).
    pub(crate) fn locally_durable(&self, end: u64) {
        // The replica state first, then the signal: a follower woken by the
        // signal reports `replicas.local()` with its next fetch, and a
        // stale value there leaves its leader's commit point waiting for
        // the fetch after (a whole long poll when nothing else is written).
        let commit = self.replicas.lock().local_durable(end);
        self.local_durable.send_if_modified(|cur| {
            let grew = *cur < end;
            *cur = (*cur).max(end);
            grew
        });
        if let Some(commit) = commit {
            self.advance(commit);
        }
    }

    /// A follower's fetch reported how far it holds the log (`log_end`)
    /// and durably (`durable`); a leader's commit point may move.
    pub(crate) fn follower_fetched(&self, node: i32, log_end: u64, durable: u64) {
        let leader_end = self.log.log_end_offset();
        let commit = self.replicas.lock().follower_fetched(node, log_end, durable, leader_end);
        if let Some(commit) = commit {
            self.advance(commit);
        }
    }

    /// Leading with `in_sync` (the other in-sync replicas), or following;
    /// true when this replica just became leader.
    pub(crate) fn set_role(&self, leading: bool, in_sync: &[i32], partition_epoch: i32) -> bool {
        let (commit, elected, deposed) = {
            let mut r = self.replicas.lock();
            let was = r.leading();
            let (commit, elected) = r.set_role(leading, in_sync, partition_epoch);
            (commit, elected, was && !leading)
        };
        if let Some(commit) = commit {
            self.advance(commit);
        }
        if deposed {
            // Writes not committed yet are committed, if at all, by the new
            // leader: the broker's own writers hear so now; clients' writes
            // wait for the high watermark this replica learns as a follower,
            // or for the cut that removes them (see the module's invariants).
            {
                let mut cuts = self.cuts.lock();
                cuts.depositions += 1;
                cuts.deposed_at = Some(Instant::now());
            }
            self.wake_everyone();
        }
        elected
    }

    /// Leading: counts `node` towards the commit from now on, proposed for
    /// the in-sync set from `partition_epoch`, if it holds everything that
    /// may be committed now (see [`crate::replicas`]).
    pub(crate) fn propose_joining(&self, node: i32, partition_epoch: i32) -> bool {
        self.replicas.lock().propose_joining(node, partition_epoch)
    }

    /// The proposal of `node` was refused: the commit goes on without it.
    pub(crate) fn refused_joining(&self, node: i32, partition_epoch: i32) {
        let commit = self.replicas.lock().refused_joining(node, partition_epoch);
        if let Some(commit) = commit {
            self.advance(commit);
        }
    }

    /// Whether this replica leads.
    pub(crate) fn leading(&self) -> bool {
        self.replicas.lock().leading()
    }

    /// A follower: the leader's high watermark (never past this log's end).
    pub(crate) fn follow(&self, leader_high_watermark: u64) {
        if !self.replicas.lock().leading() {
            self.advance(leader_high_watermark);
        }
    }

    /// A write or a wait for durability failed (the log is now poisoned):
    /// whatever an earlier fsync covered is still committed, and the writes
    /// past it never will be, so their waiters are woken to fail.
    pub(crate) fn durability_failed(&self) {
        // Wakes acks=1 waiters to see the poison.
        self.local_durable.send_modify(|_| {});
        let commit = self.replicas.lock().local_durable(self.log.durable_offset());
        if let Some(commit) = commit {
            self.advance(commit);
        }
        self.wake_all();
    }

    /// Makes offsets below `offset` visible and wakes the writes it
    /// commits and waiting fetches.
    fn advance(&self, offset: u64) {
        self.log.set_high_watermark(offset);
        let hw = self.log.high_watermark();
        let changed = self.high_watermark.send_if_modified(|cur| {
            let changed = *cur < hw;
            *cur = (*cur).max(hw);
            changed
        });
        if changed {
            let covered = {
                let mut waiters = self.waiters.lock();
                let rest = waiters.split_off(&(hw + 1));
                std::mem::replace(&mut *waiters, rest)
            };
            covered.into_values().flatten().for_each(|w| {
                let _ = w.send(());
            });
        }
    }

    /// Wakes every waiting write to look again (a failure or a cut).
    fn wake_all(&self) {
        let all = std::mem::take(&mut *self.waiters.lock());
        all.into_values().flatten().for_each(|w| {
            let _ = w.send(());
        });
    }

    /// A poisoned log is about to be cut back to its durable point: what
    /// is durable stays committed (a sole replica commits what it holds
    /// durably), writes waiting past it will fail. Call
    /// [`CommitPoint::after_cut`] once the log is cut.
    pub(crate) fn before_recovery(&self) {
        let durable = self.log.durable_offset();
        let commit = self.replicas.lock().local_durable(durable);
        if let Some(commit) = commit {
            self.advance(commit);
        }
        self.begin_cut(self.log.high_watermark(), durable);
    }

    /// The log is about to be cut at `offset` (a tail that diverged from
    /// the leader's; the cut lands on the batch boundary at or below it, so
    /// a batch ending below `offset` stays): writes below both the cut and
    /// the high watermark stay committed, writes below the cut go on
    /// waiting, writes past it fail. Call [`CommitPoint::after_cut`] once
    /// the log is cut.
    pub(crate) fn before_truncation(&self, offset: u64) {
        self.begin_cut(self.log.high_watermark().min(offset), offset);
    }

    /// The whole log is about to be emptied (a follower starting over at
    /// its leader's log start): committed writes stay so, the rest fail.
    pub(crate) fn before_reset(&self) {
        self.begin_cut(self.log.high_watermark(), 0);
    }

    fn begin_cut(&self, committed_before: u64, kept_below: u64) {
        {
            let mut cuts = self.cuts.lock();
            cuts.generation += 1;
            let generation = cuts.generation;
            cuts.recent.push_back(Cut { generation, committed_before, kept_below });
            if cuts.recent.len() > MAX_CUTS {
                cuts.recent.pop_front();
            }
        }
        self.wake_everyone();
    }

    /// Wakes every waiter, acks=1 ones included, to look at its write's
    /// fate again (a deposition or a cut decided it, or will).
    fn wake_everyone(&self) {
        self.local_durable.send_modify(|_| {});
        self.wake_all();
    }

    /// The log was cut: the high watermark follows it down (fetches
    /// watching it are woken).
    pub(crate) fn after_cut(&self) {
        let end = self.log.log_end_offset();
        self.replicas.lock().cut(end);
        self.local_durable.send_if_modified(|cur| {
            let was = *cur;
            *cur = was.min(end);
            was != *cur
        });
        self.log_end.send_replace(end);
        self.high_watermark.send_replace(self.log.high_watermark());
        self.wake_all();
    }

    /// Waits until the high watermark covers `written`; fails when it never
    /// will (the log was poisoned before, or cut after, the write) or, with
    /// [`Until::CommittedWhileLeading`], once this replica stops leading.
    pub(crate) async fn committed(&self, written: Written, until: Until) -> Result<(), LogError> {
        loop {
            let deadline = self.deposed_deadline(written);
            let woken = {
                // Decided under the waiters' lock: whatever decides this
                // write's fate afterwards (a high watermark past it, a
                // failure, a cut, a deposition) takes the lock to wake it.
                let mut waiters = self.waiters.lock();
                if let Some(decided) = self.decided(written, until) {
                    return decided;
                }
                let (tx, rx) = oneshot::channel();
                waiters.entry(written.last_offset + 1).or_default().push(tx);
                rx
            };
            // A dropped sender (the partition went away) also means: look
            // again; the log then reports itself closed or the cut.
            match deadline {
                None => {
                    let _ = woken.await;
                }
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, woken).await.is_err() {
                        let unknown = "this replica stopped leading and did not learn whether the write was committed";
                        return self.decided(written, until).unwrap_or_else(|| Err(self.lost(unknown.into())));
                    }
                }
            }
        }
    }

    /// Until when a write waits here after this replica stopped leading
    /// (see [`DEPOSED_GRACE`]); `None` while it leads or never was deposed
    /// since the write.
    fn deposed_deadline(&self, written: Written) -> Option<Instant> {
        let (depositions, deposed_at) = {
            let cuts = self.cuts.lock();
            (cuts.depositions, cuts.deposed_at)
        };
        if depositions == written.stamp.depositions || self.leading() {
            return None;
        }
        deposed_at.map(|at| at + DEPOSED_GRACE)
    }

    /// Waits until this replica holds `written` durably under its policy;
    /// fails when it never will (the log was poisoned, or cut, first).
    pub(crate) async fn locally_durable_wait(&self, written: Written) -> Result<(), LogError> {
        let mut rx = self.local_durable.subscribe();
        loop {
            match self.cuts.lock().fate(written) {
                CutFate::Kept => {}
                CutFate::Committed => return Ok(()),
                CutFate::Lost => return Err(self.lost("the log was cut before this write was durable".into())),
            }
            if *rx.borrow_and_update() > written.last_offset {
                return Ok(());
            }
            if let Some(reason) = self.log.poisoned() {
                return Err(self.poisoned(reason));
            }
            if rx.changed().await.is_err() {
                return Err(self.lost("the partition was closed".into()));
            }
        }
    }

    /// The outcome of a write if it is known now.
    fn decided(&self, written: Written, until: Until) -> Option<Result<(), LogError>> {
        let (fate, depositions) = {
            let cuts = self.cuts.lock();
            (cuts.fate(written), cuts.depositions)
        };
        match fate {
            // Committed before a cut began, or lost to it; a write a cut
            // left in the log is decided as any other.
            CutFate::Committed => return Some(Ok(())),
            CutFate::Lost => {
                return Some(Err(self.lost("the log was cut before this write was committed; it is gone".into())));
            }
            CutFate::Kept => {}
        }
        // Checked before the poison: a commit that covered the write
        // before the failure stands.
        if self.log.high_watermark() > written.last_offset {
            return Some(Ok(()));
        }
        if until == Until::CommittedWhileLeading && depositions != written.stamp.depositions {
            return Some(Err(self.lost("this replica stopped leading before the write was committed".into())));
        }
        if let Some(reason) = self.log.poisoned() {
            return Some(Err(self.poisoned(reason)));
        }
        None
    }

    /// The log failed (a write or fsync): the write's fate is unknown.
    fn poisoned(&self, reason: String) -> LogError {
        LogError::Poisoned { path: self.log.dir().to_path_buf(), op: "commit", reason }
    }

    /// This write's commit is not confirmed; the log still takes writes.
    fn lost(&self, reason: String) -> LogError {
        LogError::NotCommitted { path: self.log.dir().to_path_buf(), reason }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use fjord_log::batch::{BatchBuilder, NewRecord};
    use fjord_log::{Durability, LogConfig, SystemClock};

    use crate::partition::{Partition, TopicPartition};

    fn one(value: &str) -> BytesMut {
        let mut b = BatchBuilder::new(1_700_000_000_000);
        b.push(&NewRecord { value: Some(Bytes::from(value.to_string())), ..Default::default() });
        b.build()
    }

    fn partition(dir: &std::path::Path) -> Partition {
        let cfg = LogConfig { durability: Durability::GroupCommit, ..LogConfig::default() };
        let log = fjord_log::Log::open(dir, cfg, std::sync::Arc::new(SystemClock)).expect("open");
        Partition::new(TopicPartition::new("t", 0), log, 0)
    }

    /// A deposed leader keeps a client's write waiting for the high
    /// watermark it learns as a follower (the write survived in the new
    /// leader's log), while the broker's own write fails at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deposed_leader_keeps_clients_writes_waiting_but_not_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = std::sync::Arc::new(partition(dir.path()));
        p.set_replica_role(true, &[2]);
        let (_, client) = p.append(one("client")).await.expect("queued").expect("written");
        let (_, own) = p.append(one("own")).await.expect("queued").expect("written");
        let waits = |w, client: bool| {
            let p = p.clone();
            tokio::spawn(async move { if client { p.committed(w).await } else { p.committed_while_leading(w).await } })
        };
        let (mut client, own) = (waits(client, true), waits(own, false));
        p.set_replica_role(false, &[]);
        assert!(own.await.expect("joined").is_err(), "the broker's own write fails when deposed");
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), &mut client).await;
        assert!(pending.is_err(), "a client's write waits for the new leader's high watermark");
        p.follow_leader(1, 0).expect("followed");
        client.await.expect("joined").expect("committed by the new leader");
    }

    /// A cut above a waiting write leaves it in the log: it goes on waiting
    /// and commits when the high watermark reaches it; the write past the
    /// cut is lost (chaos seed 13: a deposed leader cut its diverged tail
    /// above a write, answered it "not leader", and the write survived).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_below_a_cut_goes_on_waiting_and_one_past_it_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = std::sync::Arc::new(partition(dir.path()));
        p.set_replica_role(true, &[2]);
        let (_, kept) = p.append(one("kept")).await.expect("queued").expect("written");
        let (_, cut) = p.append(one("cut")).await.expect("queued").expect("written");
        p.log_for_tests().flush().expect("flushed");
        let waits = |w| {
            let p = p.clone();
            tokio::spawn(async move { p.committed(w).await })
        };
        let (mut kept_wait, cut_wait) = (waits(kept), waits(cut));
        p.set_replica_role(false, &[]);
        assert_eq!(p.truncate_to(1).expect("cut"), 1);
        assert!(cut_wait.await.expect("joined").is_err(), "past the cut: lost");
        assert!(p.cut_since(cut) && !p.cut_since(kept));
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), &mut kept_wait).await;
        assert!(pending.is_err(), "below the cut: still waiting");
        p.follow_leader(1, 0).expect("followed");
        kept_wait.await.expect("joined").expect("committed by the new leader");
    }

    /// A deposed leader that learns nothing (cut off from the new leader)
    /// answers a client's write as not committed here once its grace ends.
    #[tokio::test(start_paused = true)]
    async fn a_deposed_leader_that_learns_nothing_gives_up_after_its_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = std::sync::Arc::new(partition(dir.path()));
        p.set_replica_role(true, &[2]);
        let (_, w) = p.append(one("w")).await.expect("queued").expect("written");
        let mut wait = {
            let p = p.clone();
            tokio::spawn(async move { p.committed(w).await })
        };
        p.set_replica_role(false, &[]);
        let early = tokio::time::timeout(super::DEPOSED_GRACE - std::time::Duration::from_millis(100), &mut wait).await;
        assert!(early.is_err(), "still waiting within the grace");
        assert!(wait.await.expect("joined").is_err(), "not known to be committed");
    }

    /// Written is not committed: with fsyncs failing the append still gets
    /// its offset, but its commit fails, the high watermark stays and no
    /// reader sees it; after the log is cut and rewritten at the same
    /// offset, the lost write still reports failure while a write committed
    /// before the cut reports success.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_commits_only_when_the_high_watermark_covers_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        let (info, first) = p.append(one("durable")).await.expect("queued").expect("written");
        assert_eq!(info.base_offset, 0);
        p.committed(first).await.expect("committed");
        assert_eq!(p.high_watermark(), 1);

        p.log_for_tests().inject_fsync_failure(true);
        let (info, lost) = p.append(one("lost")).await.expect("queued").expect("written before its fsync");
        assert_eq!(info.base_offset, 1, "offsets are assigned at write");
        assert!(p.committed(lost).await.is_err(), "a write whose fsync failed must not commit");
        assert_eq!(p.high_watermark(), 1);
        assert_eq!(p.read_committed(0, 1 << 20).expect("read").len(), 1);

        p.log_for_tests().inject_fsync_failure(false);
        assert!(p.recover().expect("recovered").is_some());
        let (info, again) = p.append(one("rewritten")).await.expect("queued").expect("written");
        assert_eq!(info.base_offset, 1, "the cut tail's offset is reused");
        p.committed(again).await.expect("committed");
        assert_eq!(p.high_watermark(), 2);
        assert!(p.committed(lost).await.is_err(), "a cut write must not pass for the one rewritten at its offset");
        p.committed(first).await.expect("a write committed before the cut stays committed");
    }

    /// A follower woken by its durable end reaching a write reports at
    /// least that much: reporting less left its leader's commit point
    /// waiting for the next fetch, a whole long poll when nothing more was
    /// written (every acks=all write then took ~500 ms).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_reports_what_it_was_woken_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        p.set_replica_role(false, &[]);
        for i in 0..1000 {
            let mut b = BatchBuilder::new(1_700_000_000_000);
            b.push(&NewRecord { value: Some(Bytes::from(format!("r{i}"))), ..Default::default() });
            let mut batch = b.build();
            fjord_log::batch::set_base_offset(&mut batch, i);
            let info = p.append_replica(batch).await.expect("queued").expect("written");
            let end = info.last_offset + 1;
            p.wait_replica_durable(end, std::time::Duration::from_secs(5)).await;
            assert!(p.replica_durable_end() >= end, "woken for {end}, reports {}", p.replica_durable_end());
        }
    }

    /// A truncation moves the high watermark back with the log, wakes
    /// fetches watching it, and fails writes waiting past the cut.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncation_moves_the_high_watermark_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        let mut written = Vec::new();
        for v in ["a", "b", "c", "d"] {
            let (_, w) = p.append(one(v)).await.expect("queued").expect("written");
            p.committed(w).await.expect("committed");
            written.push(w);
        }
        let mut watch = p.subscribe();
        watch.borrow_and_update();
        assert_eq!(p.truncate_to(2).expect("truncated"), 2);
        assert_eq!(p.high_watermark(), 2);
        assert_eq!(p.log_end_offset(), 2);
        assert!(watch.has_changed().expect("open"), "watchers see the high watermark move");
        assert_eq!(*watch.borrow(), 2);
        p.committed(written[1]).await.expect("below the cut: still committed");
        assert!(p.committed(written[3]).await.is_err(), "past the cut: lost");
        let texts: Vec<_> =
            p.read_committed(0, 1 << 20).expect("read").iter().filter_map(|r| r.value.clone()).collect();
        assert_eq!(texts, vec![bytes::Bytes::from("a"), bytes::Bytes::from("b")]);
    }
}
