//! Delayed and scheduled messages: a durable, replicated timer.
//!
//! ## Design
//! - **Shards** ([`shard::Shard`]): scheduled messages are stored on the
//!   partitions of the internal topic `__fjord_timer`, replicated like any
//!   partition. Each partition is a timer shard, run by the node that leads
//!   it; a node schedules into a shard it leads (round robin), or asks a
//!   node that leads one when it leads none. The send is acknowledged once
//!   the append is committed (acks=all under the topic's `group-commit`
//!   durability): a delay survives the loss of the node that accepted it.
//! - **Wheel** ([`wheel::TimingWheel`]): in memory, per shard, a
//!   hierarchical timing wheel holds only `(deadline, shard offset)` pairs,
//!   16 bytes per pending message, O(1) to insert and to expire. The
//!   message bodies stay on disk until they are due.
//! - **Delivery**: one dispatcher task takes each shard's due entries,
//!   reads their messages, learns each target partition's high watermark
//!   (from its leader, here or on another node), writes an *intent* (the
//!   entries and those high watermarks) to the shard, appends the messages
//!   to their targets, and then writes a *done* record. Journal records are
//!   marked by the `fjord.timer-journal` header. Every delivered copy
//!   carries a `fjord.timer-ref` header naming its shard and offset.
//! - **Exactly once across crashes and failovers**: a node that comes to
//!   lead a shard replays it (scheduled messages without a done record are
//!   pending); an intent without a done record is resolved by searching its
//!   targets from the recorded high watermarks (committed records are never
//!   cut, and the copies were written above them): entries whose reference
//!   is there were delivered, the others are delivered again. A shard
//!   serves only in the leader epoch it was replayed in.
//! - **Transactions** ([`halves`]): a half message is stored on a shard
//!   like a schedule and kept out of the wheel until its transaction is
//!   committed (a journal record of the same shard); check-backs and
//!   rollbacks are records there too.
//! - **Trimming**: every `snapshot_interval` a shard moves its partition's
//!   start to its oldest pending entry or open transaction, so a replay
//!   reads only what may still matter.
//!
//! ## Limits
//! - Memory: ~16 bytes per pending message in the wheels (plus Vec slack);
//!   one million pending messages cost about 20-40 MB.
//! - Disk and failover time: a message scheduled far ahead keeps its
//!   shard's log from its offset on until it is delivered, and a new leader
//!   replays all of it.
//! - The admin API's list of scheduled messages shows the shards this node
//!   leads; lookups by id and by transaction reference ask every shard's
//!   leader (`lookup`).
//! - Precision: the wheel ticks every `timer_tick` (100 ms by default).

pub(crate) mod halves;
mod legacy;
mod lookup;
mod remote;
pub(crate) mod shard;
#[cfg(test)]
mod tests;
pub mod wheel;

pub(crate) use remote::Answer;
pub(crate) use remote::Call;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::placement::TIMER_TOPIC;
use fjord_broker::{Broker, BrokerError, Leadership, TopicPartition};
use fjord_log::batch::{Header, NewRecord, Record};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{MessagingError, Result, blocking};
use crate::message::{StoredMessage, header, header_in, headers};
use crate::{Messaging, MessagingConfig};
use shard::Shard;

/// Longest wait for a shard's write or a delivery's append to commit (a
/// replica set that stalls must not hold up the other shards; what was
/// not written in time is retried). Under the node-to-node call timeout,
/// so a forwarded delivery answers before its caller gives up.
const WRITE_DEADLINE: Duration = Duration::from_secs(8);

/// A journal record of a shard.
#[derive(Debug, Serialize, Deserialize)]
enum Entry {
    /// About to append these shard entries to these partitions, whose high
    /// watermarks were as recorded.
    Intent(Vec<IntentTarget>),
    /// These entries are in their targets (or were dropped because the
    /// target no longer exists); `intent` is the journal offset resolved.
    Done { intent: u64, offsets: Vec<u64> },
    /// These half messages' transactions ended: committed ones are
    /// scheduled from here on (see [`halves`]).
    Decided { offsets: Vec<u64>, outcome: crate::tx::TxOutcome },
    /// These open transactions were checked back with their producers.
    Checked { offsets: Vec<u64> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IntentTarget {
    topic: String,
    partition: u32,
    /// The target's high watermark before the append (the copies are above
    /// it).
    log_end: u64,
    offsets: Vec<u64>,
}

/// Where a timer shard is served.
pub(crate) enum ShardAt {
    Here(Arc<Shard>),
    Node(i32),
}

/// The durable timer: the shards this node leads.
#[derive(Debug)]
pub(crate) struct TimerService {
    shards: RwLock<BTreeMap<u32, Arc<Shard>>>,
    /// One reconciliation at a time (they replay and deactivate shards).
    reconciling: tokio::sync::Mutex<()>,
    wake: Notify,
    next: AtomicUsize,
    tick_ms: u64,
}

/// Statistics of the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerStats {
    /// Messages waiting for their time (in the shards this node leads).
    pub pending: usize,
    /// Heap bytes held by the wheels.
    pub wheel_bytes: usize,
    /// Offsets held by the shards' logs (messages waiting, delivered ones
    /// not yet trimmed, and the journal records among them).
    pub schedule_log_end: u64,
    /// Transactions open (half messages stored, not yet decided) in the
    /// shards this node leads.
    pub open_transactions: usize,
}

impl TimerService {
    pub(crate) fn new(config: &MessagingConfig) -> TimerService {
        TimerService {
            shards: Default::default(),
            reconciling: Default::default(),
            wake: Default::default(),
            next: AtomicUsize::new(0),
            tick_ms: (config.timer_tick.as_millis() as u64).max(1),
        }
    }

    fn all(&self) -> Vec<Arc<Shard>> {
        self.shards.read().values().cloned().collect()
    }

    /// The shards this node leads and serves.
    fn serving(&self) -> Vec<Arc<Shard>> {
        self.all().into_iter().filter(|s| s.serving()).collect()
    }

    /// Serves the shards this node leads, replaying those it just came to
    /// lead, and stops those it no longer does.
    pub(crate) async fn reconcile(&self, broker: &Arc<Broker>) {
        let _r = self.reconciling.lock().await;
        let Some(topic) = broker.topic(TIMER_TOPIC) else { return };
        for (index, partition) in topic.partitions().into_iter().enumerate() {
            let index = index as u32;
            let tp = TopicPartition::new(TIMER_TOPIC, index);
            let leads = partition.is_leading() && matches!(broker.leadership(&tp), Leadership::Local);
            let current = self.shards.read().get(&index).cloned();
            if let Some(s) = &current {
                if leads && s.serving() {
                    continue;
                }
                s.deactivate().await;
                self.shards.write().remove(&index);
            }
            if !leads {
                continue;
            }
            let (now, tick) = (broker.clock().now_ms(), self.tick_ms);
            match blocking(move || Shard::replay(index, partition, now, tick)).await {
                Ok(Ok(s)) => {
                    self.shards.write().insert(index, Arc::new(s));
                    self.wake.notify_one();
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::error!(%tp, error = %e, "could not load a timer shard; retried at the next change")
                }
            }
        }
    }

    /// Stops every shard (shutdown). Does not wait for writes still
    /// waiting for their commit: the broker's shutdown ends those.
    pub(crate) async fn close(&self) -> Result<()> {
        for s in self.all() {
            s.stop();
        }
        self.shards.write().clear();
        Ok(())
    }

    /// Pending count and memory.
    pub(crate) fn stats(&self) -> TimerStats {
        let mut out = TimerStats { pending: 0, wheel_bytes: 0, schedule_log_end: 0, open_transactions: 0 };
        for s in self.all() {
            out.pending += s.pending();
            out.open_transactions += s.open_transactions();
            out.wheel_bytes += s.wheel.lock().heap_bytes();
            out.schedule_log_end += s.partition.log_end_offset() - s.partition.log_start_offset();
        }
        out
    }
}

impl Messaging {
    /// Stores scheduled-message records durably (committed on their shard's
    /// replicas) and files them in the shard's wheel.
    pub(crate) async fn schedule(&self, recs: Vec<NewRecord>) -> Result<()> {
        if self.timer.serving().is_empty() {
            return self.schedule_remote(recs).await;
        }
        self.schedule_here(recs).await
    }

    /// [`Messaging::schedule`] into a shard this node leads only (a call
    /// from another node).
    pub(crate) async fn schedule_here(&self, recs: Vec<NewRecord>) -> Result<()> {
        self.store_here(recs).await.map(|_| ())
    }

    /// Stores records (scheduled or half messages) in a shard this node
    /// leads; returns the shard and the first record's offset there.
    pub(crate) async fn store_here(&self, recs: Vec<NewRecord>) -> Result<(u32, u64)> {
        let local = self.timer.serving();
        if local.is_empty() {
            return Err(BrokerError::Unavailable("this node leads no timer shard now".into()).into());
        }
        let i = self.timer.next.fetch_add(1, Ordering::Relaxed) % local.len();
        let first = local[i].schedule(&self.self_ref()?, recs).await?;
        self.timer.wake.notify_one();
        Ok((local[i].tp.partition, first))
    }

    /// Shard `index` served here, or "unavailable" (retriable).
    pub(crate) fn serving_or_unavailable(&self, index: u32) -> Result<Arc<Shard>> {
        self.serving_shard(index).ok_or_else(|| {
            let tp = TopicPartition::new(TIMER_TOPIC, index);
            BrokerError::Unavailable(format!("{tp} is not served here now")).into()
        })
    }

    /// Where shard `index` is led: here (alone, every shard is), or the
    /// node to ask; "unavailable" when it has no leader, or its leader here
    /// has not loaded it yet.
    pub(crate) fn shard_at(&self, index: u32) -> Result<ShardAt> {
        match self.internal_leader(&TopicPartition::new(TIMER_TOPIC, index))? {
            Some(node) => Ok(ShardAt::Node(node)),
            None => Ok(ShardAt::Here(self.serving_or_unavailable(index)?)),
        }
    }

    /// Whether this node serves a timer shard now.
    pub(crate) fn serves_a_timer_shard(&self) -> bool {
        !self.timer.serving().is_empty()
    }

    /// The shard `index` when this node serves it now.
    pub(crate) fn serving_shard(&self, index: u32) -> Option<Arc<Shard>> {
        self.timer.serving().into_iter().find(|s| s.tp.partition == index)
    }

    /// Pending scheduled messages and the wheels' memory (the shards this
    /// node leads).
    pub fn timer_stats(&self) -> TimerStats {
        self.timer.stats()
    }

    /// Scheduled messages still waiting in the shards this node leads,
    /// earliest first, with their delivery times: at most `limit`, only
    /// those for `topic` when given. Each message shows its target topic
    /// and partition; its offset is its shard's. Costs a copy of the
    /// pending (time, offset) pairs (16 bytes each) and one read per
    /// message listed.
    pub async fn delayed_messages(&self, topic: Option<&str>, limit: usize) -> Result<Vec<(i64, StoredMessage)>> {
        let mut pending: Vec<(i64, u64, Arc<Shard>)> = Vec::new();
        for s in self.timer.serving() {
            let w = s.wheel.lock();
            pending.extend(w.iter().map(|(d, o)| (d, *o, s.clone())));
        }
        pending.sort_unstable_by_key(|(d, o, s)| (*d, s.tp.partition, *o));
        let topic = topic.map(str::to_string);
        blocking(move || {
            let mut out = Vec::new();
            for (at, o, s) in pending {
                let recs = shard::read_offsets(&s.partition, &[o])?;
                let Some(r) = recs.first() else { continue };
                let target = header(r, headers::TIMER_TOPIC).unwrap_or_default();
                if topic.as_deref().is_some_and(|t| t != target) {
                    continue;
                }
                let partition = header(r, headers::TIMER_PARTITION).and_then(|p| p.parse().ok()).unwrap_or(0);
                out.push((at, StoredMessage::from_record(target, partition, r)));
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await?
    }

    /// Delivers every due scheduled message of the shards led here now
    /// (tests and tools; the dispatcher does this on its own). Returns how
    /// many were taken.
    pub async fn deliver_due(&self) -> Result<usize> {
        let mut total = 0;
        for s in self.timer.serving() {
            loop {
                match s.dispatch_due(self).await? {
                    0 => break,
                    n => total += n,
                }
            }
        }
        Ok(total)
    }

    /// Moves an earlier version's node-local timer onto the shards.
    pub(crate) async fn migrate_legacy_timer(&self) -> Result<()> {
        legacy::migrate(self).await
    }

    /// Loads the shards this node leads (at open on a single node, and on
    /// every placement change in a cluster).
    pub(crate) async fn reconcile_timer(&self) {
        self.timer.reconcile(&self.broker).await;
    }
}

/// The dispatcher: wakes at the next deadline (at least every tick), on new
/// schedules and on shutdown; trims the shards every `snapshot_interval`,
/// and follows leadership changes of the shards.
pub(crate) fn spawn_dispatcher(m: Arc<Messaging>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let timer = &m.timer;
        let tick = Duration::from_millis(timer.tick_ms);
        let clock = m.broker.clock().clone();
        let mut last_trim = clock.now_ms();
        let mut last_reconcile = clock.now_ms();
        let mut placement = m.broker.subscribe_placement();
        loop {
            let now = clock.now_ms();
            let next = timer.all().iter().filter_map(|s| s.wheel.lock().next_deadline()).min();
            let wait = next.map_or(tick, |d| {
                Duration::from_millis(d.saturating_sub(now).clamp(0, tick.as_millis() as i64) as u64)
            });
            let changed = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = timer.wake.notified() => false,
                changed = placement.changed() => changed.is_ok(),
                _ = m.stopping() => return,
            };
            // Also once a second: a shard whose load failed is tried again,
            // and a role taken after the placement's notice is seen.
            let changed = changed || clock.now_ms() - last_reconcile >= 1000;
            if changed {
                last_reconcile = clock.now_ms();
            }
            // Cut short by shutdown: a delivery stopped midway is resolved
            // by the shard's next load, as after a crash.
            tokio::select! {
                _ = run_once(&m, changed, &mut last_trim) => {}
                _ = m.stopping() => return,
            }
        }
    })
}

/// One round of the dispatcher: follows leadership changes, delivers what
/// is due, trims when it is time.
async fn run_once(m: &Arc<Messaging>, placement_changed: bool, last_trim: &mut i64) {
    let clock = m.broker.clock();
    if placement_changed {
        m.reconcile_timer().await;
    }
    for s in m.timer.serving() {
        loop {
            match s.dispatch_due(m).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(shard = %s.tp, error = %e, "timer dispatch failed");
                    break;
                }
            }
        }
    }
    if clock.now_ms() - *last_trim >= m.config.snapshot_interval.as_millis() as i64 {
        *last_trim = clock.now_ms();
        for s in m.timer.serving() {
            if let Err(e) = s.trim(m).await {
                tracing::warn!(shard = %s.tp, error = %e, "timer shard trim failed");
            }
        }
    }
}

/// The value of a delivered copy's `fjord.timer-ref` header: its shard and
/// offset there.
fn timer_ref(shard: u32, offset: u64) -> String {
    format!("{shard}:{offset}")
}

fn deliver_at_of_new(r: &NewRecord) -> i64 {
    header_in(&r.headers, headers::DELIVER_AT).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub(crate) fn deliver_at_of(r: &Record) -> i64 {
    header(r, headers::DELIVER_AT).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The copy appended to the target: the timer's routing headers (and a
/// committed half message's producer group) replaced by the timer
/// reference.
fn delivered_copy(r: &Record, reference: &str) -> NewRecord {
    let mut hs: Vec<Header> = r
        .headers
        .iter()
        .filter(|h| {
            h.key.as_ref() != headers::TIMER_TOPIC.as_bytes()
                && h.key.as_ref() != headers::TIMER_PARTITION.as_bytes()
                && h.key.as_ref() != headers::PRODUCER_GROUP.as_bytes()
        })
        .cloned()
        .collect();
    hs.push(Header {
        key: Bytes::from_static(headers::TIMER_REF.as_bytes()),
        value: Some(Bytes::from(reference.to_string())),
    });
    NewRecord { timestamp: Some(r.timestamp), key: r.key.clone(), value: r.value.clone(), headers: hs }
}

fn encode(e: &Entry) -> Result<Vec<u8>> {
    serde_json::to_vec(e).map_err(|e| MessagingError::Internal(format!("encode timer journal entry: {e}")))
}

fn decode(v: &[u8]) -> Result<Entry> {
    serde_json::from_slice(v).map_err(|e| MessagingError::Corrupt { what: "timer journal", detail: e.to_string() })
}
