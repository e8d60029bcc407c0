//! A partition's replication API: what the cluster layer calls as a
//! follower (copying the leader's batches, cutting a diverged tail,
//! following the leader's commit point) and as a leader (serving those
//! batches, hearing each follower's progress). The rules that decide the
//! commit point live in [`crate::replicas`]; the protocol in
//! `docs/design/replication.md`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_log::{AppendInfo, AppendOrigin, LogError, ReadBound};

use crate::error::{BrokerError, Result};
use crate::partition::{Partition, TopicPartition};
pub use crate::replicas::FollowerProgress;

/// Batches read for a follower, with the leader's offsets at the time.
#[derive(Debug, Clone)]
pub struct ReplicaRead {
    /// Whole batches (the last may be cut by the byte budget, as Kafka
    /// allows), as stored.
    pub records: Bytes,
    /// The leader's high watermark.
    pub high_watermark: u64,
    /// The leader's log start.
    pub log_start: u64,
    /// The leader's log end.
    pub log_end: u64,
}

impl Partition {
    /// Appends batches fetched from the leader with their offsets and
    /// epochs; returns once written (the follower's durability follows its
    /// policy and is reported with its next fetch).
    /// Refused once this replica leads: a fetch from the old leader that
    /// was in flight when it was elected must not add to its log. The
    /// batches go into the producer state as they are written, so an
    /// elected follower knows its producers (a retry after a failover is
    /// recognised).
    pub async fn append_replica(&self, data: BytesMut) -> Result<std::result::Result<AppendInfo, LogError>> {
        if self.commit.leading() {
            return Err(BrokerError::InvalidRequest(format!("{} is led here: no replica appends", self.id())));
        }
        Ok(self.appends.append(data, AppendOrigin::Replica).await?.map(|(info, _)| info))
    }

    /// Whole batches from `offset`, up to `max_bytes` (at least one batch),
    /// below the log end rather than the commit point: what a follower
    /// copies. Blocking file I/O.
    pub fn read_for_replica(&self, offset: u64, max_bytes: usize) -> std::result::Result<ReplicaRead, LogError> {
        let read = self.log().read(offset, max_bytes, ReadBound::LogEnd)?;
        let records = match read.slice {
            Some(s) => s.to_bytes()?,
            None => Bytes::new(),
        };
        Ok(ReplicaRead {
            records,
            high_watermark: self.high_watermark(),
            log_start: read.log_start_offset,
            log_end: read.log_end_offset,
        })
    }

    /// The leader epoch of the last batch in the log (-1: none).
    pub fn last_epoch(&self) -> i32 {
        self.log().latest_epoch().map_or(-1, |e| e.epoch)
    }

    /// The largest epoch at or below `epoch` in this log, and where it ends
    /// (KIP-101's `OffsetForLeaderEpoch`).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        self.log().end_offset_for_epoch(epoch)
    }

    /// What this replica holds durably under its policy (reported to the
    /// leader with each fetch).
    pub fn replica_durable_end(&self) -> u64 {
        self.commit.replicas.lock().local()
    }

    /// Leading: a follower fetched at `log_end`, holding `durable`.
    pub fn follower_fetched(&self, node: i32, log_end: u64, durable: u64) {
        self.commit.follower_fetched(node, log_end, durable);
    }

    /// Following: the leader's high watermark and log start, from a fetch
    /// answer. The log start follows only below the commit point.
    pub fn follow_leader(&self, high_watermark: u64, log_start: u64) -> std::result::Result<(), LogError> {
        self.commit.follow(high_watermark);
        if log_start > self.log_start_offset() && log_start <= self.high_watermark() {
            self.log().delete_records_before(log_start)?;
        }
        Ok(())
    }

    /// Following: empties this replica's log and starts it at `offset`, the
    /// leader's log start, when all it holds lies below it. Blocking file
    /// I/O.
    pub fn reset_replica(&self, offset: u64) -> std::result::Result<(), LogError> {
        self.commit.before_reset();
        let reset = self.log().reset_to(offset);
        self.commit.after_cut();
        self.producers.reset();
        if reset.is_ok() {
            // The emptied log is durable at its new start (the reset synced
            // it): reported so with the next fetch. Left where a cut before
            // it put it, the leader of an idle partition would never see
            // this replica catch up (a restarted node stayed out of an
            // internal partition's in-sync set until its next write).
            self.commit.locally_durable(self.log().durable_offset());
        }
        reset
    }

    /// Whether this replica has taken the leader's role (the placement may
    /// name this node a moment before it does).
    pub fn is_leading(&self) -> bool {
        self.commit.leading()
    }

    /// Leading: each follower's progress, and when this term began.
    pub fn followers(&self) -> (tokio::time::Instant, Vec<(i32, FollowerProgress)>) {
        let r = self.commit.replicas.lock();
        (r.leading_since(), r.followers())
    }

    /// Leading: `node` is about to be proposed for the in-sync set from
    /// `partition_epoch`. True if it holds durably everything that may be
    /// committed now; it then counts towards the commit until the
    /// placement decides (KIP-497's maximal in-sync set: records committed
    /// while the proposal is on its way are on it too, so the placement
    /// never names a member that lacks a committed record). False: do not
    /// propose it.
    pub fn propose_in_sync(&self, node: i32, partition_epoch: i32) -> bool {
        self.commit.propose_joining(node, partition_epoch)
    }

    /// The controller refused the proposal of `node` from
    /// `partition_epoch`: it stops holding the commit back.
    pub fn in_sync_refused(&self, node: i32, partition_epoch: i32) {
        self.commit.refused_joining(node, partition_epoch);
    }

    /// Waits until the log ends past `offset`, at most `timeout` (a
    /// follower's long poll).
    pub async fn wait_log_end_past(&self, offset: u64, timeout: Duration) {
        let mut rx = self.commit.subscribe_log_end();
        if self.log_end_offset() > offset {
            return;
        }
        let _ = tokio::time::timeout(timeout, rx.wait_for(|end| *end > offset)).await;
    }

    /// Waits until this replica holds everything below `end` durably under
    /// its policy, at most `timeout` (a follower, before reporting it).
    pub async fn wait_replica_durable(&self, end: u64, timeout: Duration) {
        let mut rx = self.commit.subscribe_durable();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|d| *d >= end)).await;
    }

    /// Watches the log end (tests).
    #[doc(hidden)]
    pub fn subscribe_log_end_for_tests(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commit.subscribe_log_end()
    }

    /// Leading with `in_sync` (the other in-sync replicas), or following;
    /// true when it became leader. Its producer state needs nothing: it
    /// is that of its log, leader's or follower's.
    #[doc(hidden)]
    pub fn set_replica_role(&self, leading: bool, in_sync: &[i32]) -> bool {
        self.set_replica_role_at(leading, in_sync, i32::MAX)
    }

    /// [`Partition::set_replica_role`] as the placement describes the
    /// partition at `partition_epoch` (proposed in-sync members stop
    /// counting once it has decided on them: see
    /// [`Partition::propose_in_sync`]).
    pub fn set_replica_role_at(&self, leading: bool, in_sync: &[i32], partition_epoch: i32) -> bool {
        self.commit.set_role(leading, in_sync, partition_epoch)
    }
}

/// Partitions whose replication needs attention, as the placement shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// Partitions this node leads with fewer in-sync replicas than
    /// replicas.
    pub under_replicated: Vec<TopicPartition>,
    /// Partitions of the cluster with no serving leader.
    pub offline: Vec<TopicPartition>,
}

impl crate::Broker {
    /// Under-replicated partitions led here and offline ones in the
    /// cluster (none on a single node).
    pub fn replication_status(&self) -> ReplicationStatus {
        let mut out = ReplicationStatus::default();
        let Some(placement) = self.placement() else { return out };
        let me = self.config().node_id;
        let mut names: Vec<&String> = placement.topics.keys().collect();
        names.sort();
        for name in names {
            for (i, a) in placement.topics[name].iter().enumerate() {
                let tp = TopicPartition::new(name.as_str(), i as u32);
                if a.leader != me && placement.node(a.leader).is_none() {
                    out.offline.push(tp);
                } else if a.leader == me && a.isr.len() < a.replicas.len() {
                    out.under_replicated.push(tp);
                }
            }
        }
        out
    }

    /// Leader elections this node won since it started.
    pub fn elections_won(&self) -> u64 {
        self.elections.load(std::sync::atomic::Ordering::Relaxed)
    }
}
