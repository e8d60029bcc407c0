//! Idempotent producers: durable producer-id allocation and per-partition
//! sequence checks (Kafka's KIP-98 idempotence, without transactions).
//!
//! ## Producer ids
//! Ids are handed out from blocks of [`ID_BLOCK`]; the end of the current
//! block is written to `<data>/producer-ids.json` (atomically, fsynced)
//! *before* any id of the block is given out, so a restart never reissues
//! an id, whatever happens in between.
//!
//! ## Sequence checks
//! Each partition remembers, per producer id, its epoch and its last
//! [`CACHED_BATCHES`] batches (first and last sequence, offsets). An append
//! from an idempotent producer is checked against that entry under the
//! producer's own lock, held until the append is written, so checks and
//! appends of one producer are serialised while different producers still
//! share group commits:
//! - a batch equal to a cached one is a duplicate (a retry): it is not
//!   written again and the original offsets are returned;
//! - an older epoch is fenced (`INVALID_PRODUCER_EPOCH`);
//! - a new epoch must start at sequence 0;
//! - otherwise the first sequence must follow the last one (wrapping at
//!   `i32::MAX`), else `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//! - an unknown producer may start anywhere (its state may have expired,
//!   or gone with old data), as in Kafka.
//!
//! ## The state is exact, on every replica ([`table`])
//! The table is a function of the log: the state the batches below its
//! `end` make, applied in log order by the partition's append queue as
//! each write group is written, whoever wrote it (the leader's clients or
//! a follower copying the leader). So a follower holds its producers'
//! states when it is elected, and a retry after a failover is recognised.
//! It is loaded, before the partition's first append after it opened or
//! after a cut, from the newest snapshot at or below the log end (the log
//! store keeps `<offset>.snapshot` files true to the log: a cut deletes
//! those past it) plus the batch headers after it; a snapshot is saved at
//! each segment roll and at a clean shutdown. Producers idle for
//! `producer.id.expiration.ms` (a day, as in Kafka) are forgotten.

mod table;

pub(crate) use table::{ProducerTable, facts_of};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use fjord_log::batch::BatchHeader;
use parking_lot::Mutex;

use crate::error::{BrokerError, Result};

/// Producer ids reserved durably at a time.
pub const ID_BLOCK: i64 = 1000;
/// Batches remembered per producer (Kafka's `max.in.flight` limit for
/// idempotence is 5).
pub const CACHED_BATCHES: usize = 5;
/// How long a producer's state is kept after its last batch (Kafka's
/// `producer.id.expiration.ms` default).
pub const PRODUCER_ID_EXPIRATION: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

const IDS_FILE: &str = "producer-ids.json";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct IdsFile {
    next_block: i64,
}

/// Allocates producer ids that are never reused. In a cluster every node
/// allocates from its own range (`node_id << NODE_ID_SHIFT` onwards), so
/// two nodes never hand out the same id without asking each other (a
/// producer may write to partitions on every node with one id).
#[derive(Debug)]
pub struct ProducerIds {
    dir: PathBuf,
    /// First id of this node's range (0 on a single node).
    base: i64,
    /// (next id to give out, end of the durably reserved block), relative
    /// to `base`
    state: Mutex<(i64, i64)>,
}

/// Ids per node in a cluster: 2^40 (a million producers a second for
/// twelve days before a node's range runs out).
pub const NODE_ID_SHIFT: u32 = 40;

impl ProducerIds {
    /// Opens the allocator; `node` is this node's id in a cluster.
    pub(crate) fn open(dir: &Path, node: Option<i32>) -> Result<ProducerIds> {
        let base = match node {
            None => 0,
            // 2^22 node ids fit below i64::MAX with 2^40 ids each.
            Some(id) if (0..1 << 22).contains(&id) => i64::from(id) << NODE_ID_SHIFT,
            Some(id) => return Err(BrokerError::internal(format!("node id {id} leaves no producer id range"))),
        };
        let path = dir.join(IDS_FILE);
        let next_block = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<IdsFile>(&bytes)
                    .map_err(|e| BrokerError::internal_from(format!("{} is unreadable", path.display()), e))?
                    .next_block
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(BrokerError::internal_from(format!("reading {}", path.display()), e)),
        };
        Ok(ProducerIds { dir: dir.to_path_buf(), base, state: Mutex::new((next_block, next_block)) })
    }

    /// A fresh producer id. Blocks briefly (an fsync) once per [`ID_BLOCK`].
    pub(crate) fn allocate(&self) -> Result<i64> {
        let mut s = self.state.lock();
        if s.0 >= 1 << NODE_ID_SHIFT {
            return Err(BrokerError::internal("this node's producer id range is used up"));
        }
        if s.0 >= s.1 {
            let end = s.1 + ID_BLOCK;
            let json = serde_json::to_vec(&IdsFile { next_block: end })
                .map_err(|e| BrokerError::internal_from("encoding the producer id block", e))?;
            fjord_log::write_atomic(&self.dir.join(IDS_FILE), &json).map_err(|e| BrokerError::log(IDS_FILE, e))?;
            s.1 = end;
        }
        let id = self.base + s.0;
        s.0 += 1;
        Ok(id)
    }
}

/// Where a batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    pub(crate) base_offset: u64,
    pub(crate) last_offset: u64,
    pub(crate) log_append_time: Option<i64>,
}

/// One producer's state in one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// The largest timestamp of its last batch (expiry, as Kafka's
    /// `lastTimestamp`).
    last_timestamp: i64,
    /// The first offset of its transaction open in this partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) txn_first: Option<u64>,
    /// The coordinator epoch of the last marker it got here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) coordinator_epoch: Option<i32>,
}

/// Outcome of a sequence check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Append it.
    Append,
    /// Already appended: answer with these offsets.
    Duplicate(BatchMeta),
}

/// The identity and sequence range of an idempotent batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sequenced {
    pub(crate) producer_id: i64,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
}

impl Sequenced {
    pub(crate) fn of(h: &BatchHeader) -> Option<Sequenced> {
        (h.producer_id >= 0).then(|| Sequenced {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq: add_seq(h.base_sequence, h.last_offset_delta as i32),
        })
    }
}

fn add_seq(seq: i32, delta: i32) -> i32 {
    // Sequences wrap from i32::MAX to 0.
    ((i64::from(seq) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerEntry {
    /// Checks `b` against this state (`None`: an unknown producer).
    pub(crate) fn check(this: Option<&ProducerEntry>, b: &Sequenced) -> Result<Check> {
        let Some(this) = this else { return Ok(Check::Append) };
        this.check_known(b)
    }

    fn check_known(&self, b: &Sequenced) -> Result<Check> {
        if b.epoch < self.epoch {
            return Err(BrokerError::InvalidProducerEpoch {
                producer_id: b.producer_id,
                epoch: b.epoch,
                current: self.epoch,
            });
        }
        if b.epoch > self.epoch {
            return if b.first_seq == 0 { Ok(Check::Append) } else { Err(out_of_order(b, None)) };
        }
        if let Some(m) = self.batches.iter().find(|m| m.first_seq == b.first_seq && m.last_seq == b.last_seq) {
            return Ok(Check::Duplicate(*m));
        }
        match self.batches.back() {
            Some(last) if add_seq(last.last_seq, 1) == b.first_seq => Ok(Check::Append),
            None => Ok(Check::Append),
            Some(last) => Err(out_of_order(b, Some(last.last_seq))),
        }
    }

    /// See [`ProducerTable::check_marker`].
    pub(crate) fn check_marker(&self, producer_id: i64, epoch: i16, coordinator_epoch: i32) -> Result<()> {
        if epoch < self.epoch {
            return Err(BrokerError::InvalidProducerEpoch { producer_id, epoch, current: self.epoch });
        }
        match self.coordinator_epoch {
            Some(current) if coordinator_epoch < current => {
                Err(BrokerError::CoordinatorFenced { producer_id, coordinator_epoch, current })
            }
            _ => Ok(()),
        }
    }

    /// A marker of `epoch` (TV2 markers carry the next epoch: the batches
    /// of the epoch before are forgotten, as a new epoch's first batch
    /// does).
    pub(crate) fn marker_epoch(&mut self, epoch: i16, written: Stamped) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        self.last_timestamp = self.last_timestamp.max(written.max_timestamp);
    }

    /// Records a batch of this producer written at `base_offset..=last_offset`.
    pub(crate) fn record(&mut self, b: &Sequenced, base_offset: u64, last_offset: u64, written: Stamped) {
        if b.epoch != self.epoch {
            self.epoch = b.epoch;
            self.batches.clear();
        }
        self.last_timestamp = written.max_timestamp;
        self.batches.push_back(BatchMeta::new(
            b.first_seq,
            b.last_seq,
            base_offset,
            last_offset,
            written.log_append_time,
        ));
        while self.batches.len() > CACHED_BATCHES {
            self.batches.pop_front();
        }
    }
}

/// What the log says of a written batch beyond its offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamped {
    /// Its largest timestamp.
    pub(crate) max_timestamp: i64,
    /// The append time stamped on it, for log-append-time topics.
    pub(crate) log_append_time: Option<i64>,
}

impl BatchMeta {
    fn new(first_seq: i32, last_seq: i32, base_offset: u64, last_offset: u64, t: Option<i64>) -> Self {
        BatchMeta { first_seq, last_seq, base_offset, last_offset, log_append_time: t }
    }
}

fn out_of_order(b: &Sequenced, last: Option<i32>) -> BrokerError {
    BrokerError::OutOfOrderSequence { producer_id: b.producer_id, expected_after: last, got: b.first_seq }
}

#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod txn_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(pid: i64, epoch: i16, first: i32, count: i32) -> Sequenced {
        Sequenced { producer_id: pid, epoch, first_seq: first, last_seq: add_seq(first, count - 1) }
    }

    fn append(e: &mut ProducerEntry, s: &Sequenced, base: u64) {
        let last = base + (s.last_seq - s.first_seq) as u64;
        e.record(s, base, last, Stamped { max_timestamp: 0, log_append_time: None });
    }

    fn check(e: &ProducerEntry, s: &Sequenced) -> Result<Check> {
        ProducerEntry::check(Some(e), s)
    }

    #[test]
    fn in_order_duplicates_gaps_and_epochs() {
        let mut e = ProducerEntry::default();
        let b0 = seq(7, 0, 0, 10);
        assert_eq!(ProducerEntry::check(None, &b0).unwrap(), Check::Append);
        append(&mut e, &b0, 100);
        let b1 = seq(7, 0, 10, 5);
        assert_eq!(check(&e, &b1).unwrap(), Check::Append);
        append(&mut e, &b1, 110);
        // A retry of an acknowledged batch returns its original offsets.
        match check(&e, &b0).unwrap() {
            Check::Duplicate(m) => assert_eq!((m.base_offset, m.last_offset), (100, 109)),
            other => panic!("expected duplicate, got {other:?}"),
        }
        // A gap is refused.
        assert!(matches!(check(&e, &seq(7, 0, 16, 1)), Err(BrokerError::OutOfOrderSequence { .. })));
        // A new epoch restarts at 0; anything else is out of order.
        assert!(matches!(check(&e, &seq(7, 1, 3, 1)), Err(BrokerError::OutOfOrderSequence { .. })));
        assert_eq!(check(&e, &seq(7, 1, 0, 1)).unwrap(), Check::Append);
        append(&mut e, &seq(7, 1, 0, 1), 200);
        // The old epoch is fenced.
        assert!(matches!(check(&e, &seq(7, 0, 15, 1)), Err(BrokerError::InvalidProducerEpoch { .. })));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut e = ProducerEntry::default();
        let b = seq(1, 0, i32::MAX - 1, 2);
        append(&mut e, &b, 0);
        assert_eq!(check(&e, &seq(1, 0, 0, 3)).unwrap(), Check::Append);
        assert!(check(&e, &seq(1, 0, 1, 3)).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut e = ProducerEntry::default();
        for i in 0..7 {
            append(&mut e, &seq(1, 0, i, 1), i as u64);
        }
        assert_eq!(e.batches.len(), CACHED_BATCHES);
        assert!(matches!(check(&e, &seq(1, 0, 6, 1)).unwrap(), Check::Duplicate(_)));
        // Too old to be recognised, and not next in sequence.
        assert!(check(&e, &seq(1, 0, 0, 1)).is_err());
    }

    #[test]
    fn producer_ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIds::open(dir.path(), None).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let b = ProducerIds::open(dir.path(), None).unwrap();
        assert_eq!(b.allocate().unwrap(), ID_BLOCK);
    }

    /// Nodes of a cluster never hand out the same id: each has its range.
    #[test]
    fn cluster_nodes_allocate_from_ranges_of_their_own() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut seen = std::collections::BTreeSet::new();
        for (i, d) in dirs.iter().enumerate() {
            let ids = ProducerIds::open(d.path(), Some(i as i32 + 1)).unwrap();
            for _ in 0..5 {
                let id = ids.allocate().unwrap();
                assert_eq!(id >> NODE_ID_SHIFT, i as i64 + 1, "{id} outside node {}'s range", i + 1);
                assert!(seen.insert(id), "{id} handed out twice");
            }
        }
        assert!(ProducerIds::open(dirs[0].path(), Some(1 << 22)).is_err());
    }
}
