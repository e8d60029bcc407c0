//! The pop service: the queues this node serves, where their state is kept
//! (a `__fjord_pop` shard each, see [`super::shard`]), and the maintenance
//! task (dead-lettering, progress commits).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fjord_broker::{Broker, CommittedOffset, Leadership, TopicPartition};
use fjord_log::Clock;
use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use super::progress;
use super::shard::PopShards;
use super::state::{InFlight, QueueState};
use super::writer::Writers;
use crate::Messaging;
use crate::error::Result;

/// A queue: a group (or broadcasting instance) on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct QueueId {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: u32,
}

impl QueueId {
    pub(crate) fn tp(&self) -> TopicPartition {
        TopicPartition::new(&self.topic, self.partition)
    }
}

/// A change of one queue's state, as its shard records it (and as an
/// earlier version's node-local journal did): replaying them in order
/// rebuilds the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum PopEntry {
    Open {
        q: QueueId,
        start: u64,
        /// Offsets above `start` acked already (the committed progress's
        /// metadata, for a queue the shard did not know).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        acked: Vec<(u64, u64)>,
        /// Deliveries made of offsets above `start`: ranges with their
        /// attempt count.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        delivered: Vec<(u64, u64, u32)>,
    },
    Pop {
        q: QueueId,
        upto: u64,
        delivered: Vec<(u64, InFlight)>,
        held: Vec<(u64, u64)>,
        unheld: Vec<u64>,
        /// In flight, but the record is gone (retention): acked.
        dropped: Vec<u64>,
    },
    Ack {
        q: QueueId,
        offset: u64,
        seq: u64,
    },
    Acks {
        q: QueueId,
        acks: Vec<(u64, u64)>,
    },
    Invisible {
        q: QueueId,
        offset: u64,
        f: InFlight,
    },
    Reset {
        q: QueueId,
        offset: u64,
    },
    /// The topic was deleted: every queue on it goes (an earlier version's
    /// journal only; a shard has its own record for it).
    Forget {
        topic: String,
    },
    /// Another node led the partition meanwhile (an earlier version's
    /// journal only).
    Drop {
        topic: String,
        partition: u32,
    },
}

impl PopEntry {
    /// The queue it changes (`None`: it names a topic or partition).
    pub(crate) fn queue(&self) -> Option<&QueueId> {
        match self {
            PopEntry::Open { q, .. }
            | PopEntry::Pop { q, .. }
            | PopEntry::Ack { q, .. }
            | PopEntry::Acks { q, .. }
            | PopEntry::Invisible { q, .. }
            | PopEntry::Reset { q, .. } => Some(q),
            PopEntry::Forget { .. } | PopEntry::Drop { .. } => None,
        }
    }

    /// About how many bytes it takes encoded (to bound a write).
    pub(crate) fn weight(&self) -> usize {
        let n = match self {
            PopEntry::Open { acked, delivered, .. } => acked.len() + delivered.len(),
            PopEntry::Pop { delivered, held, unheld, dropped, .. } => {
                delivered.len() + held.len() + unheld.len() + dropped.len()
            }
            PopEntry::Acks { acks, .. } => acks.len(),
            _ => 1,
        };
        128 + 96 * n
    }

    /// Applies a change of one queue to its state (`None`: not opened).
    pub(crate) fn apply_to(self, slot: &mut Option<QueueState>) {
        match self {
            PopEntry::Open { start, acked, delivered, .. } => {
                if slot.is_none() {
                    *slot = Some(QueueState::opened(start, &acked, &delivered));
                }
            }
            PopEntry::Pop { upto, delivered, held, unheld, dropped, .. } => {
                let Some(s) = slot else { return };
                for o in dropped {
                    s.inflight.remove(&o);
                    s.acked.insert(o);
                }
                for o in unheld {
                    s.held.remove(&o);
                }
                s.inflight.extend(delivered);
                s.held.extend(held);
                s.advance(upto);
            }
            PopEntry::Ack { offset, seq, .. } => {
                if let Some(s) = slot {
                    s.ack(offset, seq);
                }
            }
            PopEntry::Acks { acks, .. } => {
                if let Some(s) = slot {
                    for (offset, seq) in acks {
                        s.ack(offset, seq);
                    }
                }
            }
            PopEntry::Invisible { offset, f, .. } => {
                if let Some(s) = slot {
                    s.inflight.insert(offset, f);
                }
            }
            PopEntry::Reset { offset, .. } => slot.get_or_insert_with(|| QueueState::new(offset)).reset(offset),
            PopEntry::Forget { .. } | PopEntry::Drop { .. } => {}
        }
    }
}

/// A queue this node serves: its state, and the shard's token for it.
#[derive(Debug)]
pub(crate) struct Served {
    state: Mutex<QueueState>,
    /// Names this node's hold on the queue at its shard (the offset of
    /// the shard's load record): changes under another token are refused
    /// there, so a deposed server cannot change what its successor loaded.
    pub(crate) token: u64,
    /// The partition's leader epoch it was loaded in: used in that epoch
    /// only.
    pub(crate) epoch: i32,
}

impl Served {
    pub(crate) fn new(state: QueueState, token: u64, epoch: i32) -> Served {
        Served { state: Mutex::new(state), token, epoch }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock()
    }
}

/// Every pop queue this node serves, and the shards it leads.
#[derive(Debug)]
pub(crate) struct PopService {
    pub(crate) queues: Mutex<HashMap<QueueId, Arc<Served>>>,
    pub(crate) next_seq: AtomicU64,
    /// Progress last committed to the broker's offsets, per queue: the
    /// offset and its metadata (the acked offsets above it, see
    /// [`super::progress`]).
    committed: Mutex<HashMap<QueueId, (u64, String)>>,
    /// Rotates partitions for pops that name none.
    pub(crate) rotate: AtomicU64,
    pub(crate) clock: Arc<dyn Clock>,
    /// Where an earlier version kept its node-local pop journal.
    pub(crate) legacy_dir: PathBuf,
    broker: Arc<Broker>,
    /// The `__fjord_pop` shards this node leads.
    pub(crate) shards: PopShards,
    /// Changes on their way to their shards.
    pub(crate) writers: Writers,
    /// One load at a time per queue.
    pub(crate) opening: Mutex<HashMap<QueueId, Arc<tokio::sync::Mutex<()>>>>,
    /// Pops taken back (by holder and name), until when (ms) they are
    /// remembered: a pop still running here when its caller gave up takes
    /// back what it took itself (see `Messaging::abandon_pop`).
    pub(crate) abandoned: Mutex<HashMap<(super::Holder, u64), i64>>,
}

/// Whether this node may serve its queues on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lead {
    /// A single node, in this leader epoch of the partition.
    Alone(i32),
    /// Leading, in this epoch.
    Leading(i32),
    /// Another node leads, or none does.
    NotLeading,
}

impl PopService {
    pub(crate) fn new(broker: &Arc<Broker>, legacy_dir: &Path) -> PopService {
        PopService {
            queues: Default::default(),
            next_seq: AtomicU64::new(1),
            committed: Default::default(),
            rotate: AtomicU64::new(0),
            clock: broker.clock().clone(),
            legacy_dir: legacy_dir.to_path_buf(),
            broker: broker.clone(),
            shards: Default::default(),
            writers: Default::default(),
            opening: Default::default(),
            abandoned: Default::default(),
        }
    }

    /// Remembers that `holder`'s pop `id` was given up (for two minutes,
    /// longer than any pop runs).
    pub(crate) fn abandon(&self, holder: super::Holder, id: u64) {
        let now = self.clock.now_ms();
        let mut a = self.abandoned.lock();
        a.retain(|_, until| *until > now);
        a.insert((holder, id), now + 120_000);
    }

    /// Whether `holder`'s pop `id` was given up.
    pub(crate) fn is_abandoned(&self, holder: super::Holder, id: Option<u64>) -> bool {
        id.is_some_and(|id| self.abandoned.lock().contains_key(&(holder, id)))
    }

    pub(crate) fn seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The queue, if this node serves it now: loaded while leading the
    /// partition in its present epoch.
    pub(crate) fn queue(&self, q: &QueueId) -> Option<Arc<Served>> {
        let s = self.queues.lock().get(q).cloned()?;
        match self.lead(&q.tp()) {
            Lead::Alone(_) => Some(s),
            Lead::Leading(epoch) if s.epoch == epoch => Some(s),
            _ => None,
        }
    }

    /// Stops serving `q` from the hold named `token` (its shard refused a
    /// change, or a change's outcome is unknown): its next use loads it
    /// again from the shard, the truth.
    pub(crate) fn unserve(&self, q: &QueueId, token: u64) {
        let mut queues = self.queues.lock();
        if queues.get(q).is_some_and(|s| s.token == token) {
            queues.remove(q);
            self.committed.lock().remove(q);
        }
    }

    /// Whether this node may serve queues on `tp`, and in which epoch.
    ///
    /// Only the partition's leader pops (it alone reads the messages
    /// committed there first); its queues come from their shards, which a
    /// later leader loads them from. A queue loaded in an earlier epoch is
    /// loaded again: another node may have served it meanwhile.
    pub(crate) fn lead(&self, tp: &TopicPartition) -> Lead {
        let placed = self.broker.placement().is_some();
        if !placed && self.broker.config().cluster_id.is_none() {
            return Lead::Alone(self.broker.partition(tp).map_or(0, |p| p.leader_epoch()));
        }
        if !placed || self.broker.leadership(tp) != Leadership::Local {
            return Lead::NotLeading;
        }
        match self.broker.partition(tp) {
            Ok(p) if p.is_leading() => Lead::Leading(p.leader_epoch()),
            _ => Lead::NotLeading,
        }
    }

    /// Stops serving every queue on `topic` (deleted).
    pub(crate) fn drop_topic(&self, topic: &str) {
        self.queues.lock().retain(|q, _| q.topic != topic);
        self.committed.lock().retain(|q, _| q.topic != topic);
    }

    /// Bumps the delivery sequence past every one `state` holds, so a
    /// receipt a consumer got from an earlier server is never issued again.
    pub(crate) fn seen(&self, state: &QueueState) {
        let max = state.inflight.values().map(|f| f.seq).max().unwrap_or(0);
        self.next_seq.fetch_max(max + 1, Ordering::Relaxed);
    }
}

/// Once a second: dead-letters messages out of attempts, commits each
/// queue's progress to the broker's offsets. Also follows the leadership
/// of the `__fjord_pop` shards (at once on a placement change) and trims
/// them every `snapshot_interval`.
pub(crate) fn spawn_maintenance(m: Arc<Messaging>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let clock = m.pop.clock.clone();
        let (mut last_trim, mut last_round) = (clock.now_ms(), clock.now_ms());
        let mut placement = m.broker.subscribe_placement();
        loop {
            let changed = tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                changed = placement.changed() => changed.is_ok(),
                _ = m.stopping() => return,
            };
            m.reconcile_pop_shards().await;
            if changed && clock.now_ms() - last_round < 1000 {
                continue;
            }
            last_round = clock.now_ms();
            if let Err(e) = m.pop_maintenance().await {
                tracing::error!(error = %e, "pop maintenance failed");
            }
            m.release_lost_holds().await;
            if clock.now_ms() - last_trim >= m.config.snapshot_interval.as_millis() as i64 {
                last_trim = clock.now_ms();
                for s in m.pop.shards.serving() {
                    if let Err(e) = s.trim(&m).await {
                        tracing::warn!(shard = %s.tp, error = %e, "pop shard trim failed");
                    }
                }
            }
        }
    })
}

impl Messaging {
    /// Dead-letters expired messages that used up their attempts and
    /// commits queue progress. Runs every second; public for tests and
    /// tools.
    pub async fn pop_maintenance(&self) -> Result<()> {
        let now = self.pop.clock.now_ms();
        let queues: Vec<_> = self.pop.queues.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut commits: HashMap<String, Vec<(TopicPartition, CommittedOffset)>> = HashMap::new();
        for (q, state) in queues {
            // A queue loaded in an earlier leader epoch is stale: another
            // node may have moved the group on since (see `PopService::lead`).
            if self.pop.queue(&q).is_none() {
                continue;
            }
            let max_attempts = self.max_attempts(&q.group);
            let exhausted: Vec<(u64, InFlight)> = state
                .lock()
                .inflight
                .iter()
                .filter(|(_, f)| f.visible_at <= now && f.attempt >= max_attempts)
                .map(|(o, f)| (*o, *f))
                .collect();
            for (offset, f) in exhausted {
                self.dead_letter_popped(&q, offset, f).await?;
            }
            let progress = {
                let s = state.lock();
                let base = s.ack_base();
                let acked = s.acked.ranges(base, s.next, progress::MAX_LEN / 4);
                let delivered = s.delivered_runs(progress::MAX_LEN / 6);
                (base, progress::encode(base, &acked, &delivered))
            };
            if self.pop.committed.lock().get(&q) != Some(&progress) {
                let off = CommittedOffset {
                    offset: progress.0 as i64,
                    leader_epoch: -1,
                    metadata: progress.1.clone(),
                    commit_timestamp: now,
                };
                commits.entry(q.group.clone()).or_default().push((q.tp(), off));
                self.pop.committed.lock().insert(q.clone(), progress);
            }
        }
        for (group, offsets) in commits {
            self.broker.commit_offsets_unchecked(&group, offsets).await?;
        }
        Ok(())
    }
}
