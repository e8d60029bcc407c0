//! Pop-state shards: the partitions of `__fjord_pop`, each led by some
//! node, which keep the state of every pop queue hashed to them.
//!
//! A queue is *served* by the node leading its data partition (it reads
//! the messages); its state is *kept* by its shard's leader, which applies
//! every committed change of every queue of the shard to a copy in memory
//! and rebuilds that copy from the shard's log when it comes to lead it
//! (KIP-932's share-group state, with `__share_group_state`'s role).
//!
//! - **Load**: a node that comes to serve a queue asks the shard for it
//!   with its leader epoch of the data partition; the shard writes a load
//!   record, whose offset becomes the queue's *token*, and answers the
//!   state as of that record. A load from an older epoch than the queue's
//!   last is refused (its sender is deposed).
//! - **Changes** (pops, acks, invisibility changes, resets) come from the
//!   serving node's writer ([`super::writer`]) with the token they were
//!   made under; a change under any other token is refused before it is
//!   written, so once a successor loaded a queue nothing its deposed server
//!   does reaches the shard, and what the successor loaded is what the
//!   shard holds.
//! - One write at a time per shard (check, append, commit, apply): the
//!   copy in memory is always the committed log's. A write whose outcome
//!   is unknown stops the shard; it is loaded again from its log.
//! - **Trim**: every `snapshot_interval` the leader writes every queue's
//!   whole state and moves the log start to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use fjord_broker::placement::POP_TOPIC;
use fjord_broker::{Broker, BrokerError, Leadership, Partition, TopicPartition};
use fjord_log::batch::{BatchBuilder, NewRecord};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::service::{PopEntry, QueueId};
use super::state::QueueState;
use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};

/// Longest wait for a shard write to commit.
const WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

/// Most bytes of queue states in one record (a trim writes several).
const STATES_RECORD_BYTES: usize = 1 << 20;

/// A record of a shard.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ShardRecord {
    /// `q` is served from here on under this record's offset (its token),
    /// in `epoch` of its partition.
    Load { q: QueueId, epoch: i32 },
    /// Changes, each checked against its queue's token when written.
    Changes(Vec<PopEntry>),
    /// Queues' whole states (a trim, or an earlier version's node-local
    /// state moved here).
    States(Vec<Kept>),
    /// The group's progress was reset (by an operator, on any node): the
    /// queue's server must load it again.
    Reset { q: QueueId, offset: u64 },
    /// The topic was deleted.
    Forget { topic: String },
}

/// A queue as its shard keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Kept {
    pub(crate) q: QueueId,
    /// The leader epoch of the partition it was last loaded in.
    pub(crate) epoch: i32,
    /// The token of its last load (`None`: not loaded since it came here
    /// some other way, an earlier version's state).
    pub(crate) token: Option<u64>,
    /// `None`: loaded, not opened yet.
    pub(crate) state: Option<QueueState>,
}

type Kept_ = HashMap<QueueId, Kept>;

/// A queue handed to the node that serves it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Loaded {
    /// Names its hold: its changes must carry it.
    pub(crate) token: u64,
    /// `None`: never opened.
    pub(crate) state: Option<QueueState>,
    /// The partition's leader epoch of the load before (`None`: none):
    /// another epoch means another server (another node, or this one
    /// before a restart).
    #[serde(default)]
    pub(crate) previous_epoch: Option<i32>,
}

/// Applies a committed record at `offset`.
fn apply(queues: &mut Kept_, rec: ShardRecord, offset: u64) {
    match rec {
        ShardRecord::Load { q, epoch } => {
            let k = queues.entry(q.clone()).or_insert(Kept { q, epoch, token: None, state: None });
            k.epoch = epoch;
            k.token = Some(offset);
        }
        ShardRecord::Changes(entries) => {
            for e in entries {
                let Some(k) = e.queue().and_then(|q| queues.get_mut(q)) else { continue };
                e.apply_to(&mut k.state);
            }
        }
        ShardRecord::States(kept) => {
            for k in kept {
                queues.insert(k.q.clone(), k);
            }
        }
        ShardRecord::Reset { q, offset: to } => {
            if let Some(k) = queues.get_mut(&q)
                && let Some(s) = &mut k.state
            {
                s.reset(to);
                k.token = Some(offset);
            }
        }
        ShardRecord::Forget { topic } => queues.retain(|q, _| q.topic != topic),
    }
}

fn encode(rec: &ShardRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(rec).map_err(|e| MessagingError::Internal(format!("encode pop shard record: {e}")))
}

/// The shard index of `q` among `count`.
pub(crate) fn shard_of(q: &QueueId, count: usize) -> u32 {
    let key = format!("{}\0{}\0{}", q.group, q.topic, q.partition);
    (fjord_log::key_hash(key.as_bytes()) % count.max(1) as u64) as u32
}

/// A shard this node leads.
#[derive(Debug)]
pub(crate) struct PopShard {
    pub(crate) tp: TopicPartition,
    partition: Arc<Partition>,
    /// The leader epoch it was replayed in: it serves in that term only.
    epoch: i32,
    active: AtomicBool,
    queues: tokio::sync::Mutex<Kept_>,
    /// The log end after the last trim (nothing to do while unchanged).
    trimmed_end: AtomicU64,
}

impl PopShard {
    /// Rebuilds the shard's queues from its log (this node leads it).
    /// Blocking file I/O.
    fn replay(index: u32, partition: Arc<Partition>) -> Result<PopShard> {
        let tp = TopicPartition::new(POP_TOPIC, index);
        let epoch = partition.leader_epoch();
        let mut queues = Kept_::new();
        let mut next = partition.log_start_offset();
        loop {
            let recs = partition.read_appended(next, 1 << 20).map_err(|e| MessagingError::log(tp.to_string(), e))?;
            let Some(last) = recs.last().map(|r| r.offset) else { break };
            for r in recs.into_iter().filter(|r| r.offset >= next) {
                match serde_json::from_slice::<ShardRecord>(r.value.as_deref().unwrap_or_default()) {
                    Ok(rec) => apply(&mut queues, rec, r.offset),
                    Err(e) => return Err(MessagingError::Corrupt { what: "pop shard", detail: e.to_string() }),
                }
            }
            next = last + 1;
        }
        tracing::debug!(%tp, epoch, queues = queues.len(), "pop shard loaded");
        Ok(PopShard {
            tp,
            partition,
            epoch,
            active: AtomicBool::new(true),
            queues: tokio::sync::Mutex::new(queues),
            trimmed_end: AtomicU64::new(u64::MAX),
        })
    }

    pub(crate) fn serving(&self) -> bool {
        self.active.load(Ordering::Acquire)
            && self.partition.is_leading()
            && self.partition.leader_epoch() == self.epoch
    }

    fn check(&self) -> Result<()> {
        if self.serving() {
            return Ok(());
        }
        Err(BrokerError::NotLeader { tp: self.tp.to_string(), leader: None, leader_epoch: self.epoch }.into())
    }

    /// Appends records, one batch; returns the first one's offset once
    /// committed. An unknown outcome stops the shard (loaded again: its
    /// log is the truth). Called with the queues locked.
    async fn append(&self, m: &Messaging, recs: &[Vec<u8>]) -> Result<u64> {
        let mut b = BatchBuilder::new(m.broker.clock().now_ms());
        for v in recs {
            b.push(&NewRecord { value: Some(Bytes::from(v.clone())), ..Default::default() });
        }
        let data: BytesMut = b.try_build().map_err(|e| MessagingError::Internal(format!("pop shard batch: {e}")))?;
        let written = match tokio::time::timeout(WRITE_DEADLINE, m.broker.append_internal(&self.tp, data)).await {
            Ok(Ok(w)) => return Ok(w.base_offset),
            Ok(Err(e)) => MessagingError::from(e),
            Err(_) => MessagingError::PossiblyWritten(format!("{} did not commit in time", self.tp)),
        };
        if !written.surely_unwritten() {
            tracing::warn!(shard = %self.tp, error = %written, "a pop shard write's outcome is unknown; reloading it");
            self.active.store(false, Ordering::Release);
        }
        Err(written)
    }

    /// Hands `q` to a node serving its partition in `epoch`.
    pub(crate) async fn load(&self, m: &Messaging, q: QueueId, epoch: i32) -> Result<Loaded> {
        let mut queues = self.queues.lock().await;
        self.check()?;
        if let Some(k) = queues.get(&q).filter(|k| k.epoch > epoch) {
            return Err(BrokerError::NotLeader { tp: q.tp().to_string(), leader: None, leader_epoch: k.epoch }.into());
        }
        let previous_epoch = queues.get(&q).filter(|k| k.token.is_some()).map(|k| k.epoch);
        let rec = ShardRecord::Load { q: q.clone(), epoch };
        let offset = self.append(m, &[encode(&rec)?]).await?;
        apply(&mut queues, rec, offset);
        Ok(Loaded { token: offset, state: queues.get(&q).and_then(|k| k.state.clone()), previous_epoch })
    }

    /// Writes the changes whose token is their queue's; returns the
    /// queues (with the token) whose changes were refused.
    pub(crate) async fn write(&self, m: &Messaging, changes: Vec<(u64, PopEntry)>) -> Result<Vec<(QueueId, u64)>> {
        let mut queues = self.queues.lock().await;
        self.check()?;
        let mut refused: Vec<(QueueId, u64)> = Vec::new();
        let mut kept = Vec::with_capacity(changes.len());
        for (token, e) in changes {
            let Some(q) = e.queue() else { continue };
            if queues.get(q).is_some_and(|k| k.token == Some(token)) {
                kept.push(e);
            } else if !refused.iter().any(|(r, t)| r == q && *t == token) {
                refused.push((q.clone(), token));
            }
        }
        if !kept.is_empty() {
            let rec = ShardRecord::Changes(kept);
            let offset = self.append(m, &[encode(&rec)?]).await?;
            apply(&mut queues, rec, offset);
        }
        Ok(refused)
    }

    /// Resets `q` to `offset` if the shard knows it.
    pub(crate) async fn reset(&self, m: &Messaging, q: QueueId, offset: u64) -> Result<()> {
        let mut queues = self.queues.lock().await;
        self.check()?;
        if queues.get(&q).is_none_or(|k| k.state.is_none()) {
            return Ok(());
        }
        let rec = ShardRecord::Reset { q, offset };
        let at = self.append(m, &[encode(&rec)?]).await?;
        apply(&mut queues, rec, at);
        Ok(())
    }

    /// Drops the queues of a deleted topic.
    pub(crate) async fn forget(&self, m: &Messaging, topic: &str) -> Result<()> {
        let mut queues = self.queues.lock().await;
        self.check()?;
        if !queues.keys().any(|q| q.topic == topic) {
            return Ok(());
        }
        let rec = ShardRecord::Forget { topic: topic.to_string() };
        let at = self.append(m, &[encode(&rec)?]).await?;
        apply(&mut queues, rec, at);
        Ok(())
    }

    /// Stores whole queue states (an earlier version's, moved here).
    pub(crate) async fn restore(&self, m: &Messaging, kept: Vec<Kept>) -> Result<()> {
        let mut queues = self.queues.lock().await;
        self.check()?;
        for rec in states_records(kept) {
            let at = self.append(m, &[encode(&rec)?]).await?;
            apply(&mut queues, rec, at);
        }
        Ok(())
    }

    /// Writes every queue's state (of topics that still exist) and moves
    /// the log start to the first of them: what came before is in them.
    pub(crate) async fn trim(&self, m: &Messaging) -> Result<()> {
        let queues = self.queues.lock().await;
        self.check()?;
        let end = self.partition.log_end_offset();
        if self.trimmed_end.load(Ordering::Acquire) == end || end == self.partition.log_start_offset() {
            return Ok(());
        }
        let live: Vec<Kept> = queues.values().filter(|k| m.broker.topic(&k.q.topic).is_some()).cloned().collect();
        let (mut first, mut batch, mut bytes) = (None, Vec::new(), 0);
        for rec in states_records(live) {
            let v = encode(&rec)?;
            bytes += v.len();
            batch.push(v);
            if bytes >= 4 * STATES_RECORD_BYTES {
                first.get_or_insert(self.append(m, &batch).await?);
                batch.clear();
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            first.get_or_insert(self.append(m, &batch).await?);
        }
        // The states equal the copy in memory: nothing to apply.
        let low = first.unwrap_or(end);
        if low > self.partition.log_start_offset() {
            m.broker.delete_records(&self.tp, low).await?;
        }
        self.trimmed_end.store(self.partition.log_end_offset(), Ordering::Release);
        Ok(())
    }
}

/// `kept` in records of at most about [`STATES_RECORD_BYTES`] each.
fn states_records(kept: Vec<Kept>) -> Vec<ShardRecord> {
    let mut out = Vec::new();
    let mut cur: Vec<Kept> = Vec::new();
    let mut bytes = 0;
    for k in kept {
        let size = k.state.as_ref().map_or(128, QueueState::weight);
        if !cur.is_empty() && bytes + size > STATES_RECORD_BYTES {
            out.push(ShardRecord::States(std::mem::take(&mut cur)));
            bytes = 0;
        }
        bytes += size;
        cur.push(k);
    }
    if !cur.is_empty() {
        out.push(ShardRecord::States(cur));
    }
    out
}

/// The shards this node leads.
#[derive(Debug, Default)]
pub(crate) struct PopShards {
    shards: RwLock<BTreeMap<u32, Arc<PopShard>>>,
    reconciling: tokio::sync::Mutex<()>,
}

impl PopShards {
    pub(crate) fn serving(&self) -> Vec<Arc<PopShard>> {
        self.shards.read().values().filter(|s| s.serving()).cloned().collect()
    }

    pub(crate) fn get(&self, index: u32) -> Option<Arc<PopShard>> {
        self.shards.read().get(&index).filter(|s| s.serving()).cloned()
    }

    /// Loads the shards this node came to lead, drops those it no longer
    /// leads (or that stopped).
    pub(crate) async fn reconcile(&self, broker: &Arc<Broker>) {
        let _r = self.reconciling.lock().await;
        let Some(topic) = broker.topic(POP_TOPIC) else { return };
        for (index, partition) in topic.partitions().into_iter().enumerate() {
            let index = index as u32;
            let tp = TopicPartition::new(POP_TOPIC, index);
            let leads = partition.is_leading() && matches!(broker.leadership(&tp), Leadership::Local);
            let current = self.shards.read().get(&index).cloned();
            if let Some(s) = &current {
                if leads && s.serving() {
                    continue;
                }
                // A write in progress ends before the shard is replayed.
                s.active.store(false, Ordering::Release);
                drop(s.queues.lock().await);
                self.shards.write().remove(&index);
            }
            if !leads {
                continue;
            }
            match blocking(move || PopShard::replay(index, partition)).await {
                Ok(Ok(s)) => {
                    self.shards.write().insert(index, Arc::new(s));
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::error!(%tp, error = %e, "could not load a pop shard; retried at the next change")
                }
            }
        }
    }

    pub(crate) fn close(&self) {
        for s in self.shards.write().values() {
            s.active.store(false, Ordering::Release);
        }
        self.shards.write().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(g: &str) -> QueueId {
        QueueId { group: g.into(), topic: "t".into(), partition: 0 }
    }

    #[test]
    fn a_reset_or_a_load_moves_the_token_and_changes_apply_to_the_state() {
        let mut kept = Kept_::new();
        apply(&mut kept, ShardRecord::Load { q: q("g"), epoch: 3 }, 10);
        assert_eq!((kept[&q("g")].epoch, kept[&q("g")].token), (3, Some(10)));
        assert!(kept[&q("g")].state.is_none());
        let open = PopEntry::Open { q: q("g"), start: 5, acked: vec![], delivered: vec![] };
        apply(&mut kept, ShardRecord::Changes(vec![open]), 11);
        assert_eq!(kept[&q("g")].state.as_ref().map(|s| s.next), Some(5));
        apply(&mut kept, ShardRecord::Reset { q: q("g"), offset: 9 }, 12);
        assert_eq!(kept[&q("g")].token, Some(12), "the server must load it again");
        assert_eq!(kept[&q("g")].state.as_ref().map(|s| s.next), Some(9));
        apply(&mut kept, ShardRecord::Forget { topic: "t".into() }, 13);
        assert!(kept.is_empty());
    }

    #[test]
    fn queues_spread_over_the_shards_the_same_way_everywhere() {
        let counts = (0..400).fold([0usize; 4], |mut c, i| {
            c[shard_of(&q(&format!("g{i}")), 4) as usize] += 1;
            c
        });
        assert!(counts.iter().all(|n| *n > 50), "{counts:?}");
        assert_eq!(shard_of(&q("g1"), 4), shard_of(&q("g1"), 4));
    }
}
