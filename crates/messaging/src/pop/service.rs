//! The pop service: queue states, the pop journal, snapshots, recovery and
//! the maintenance task (dead-lettering, progress commits, snapshots).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fjord_broker::{Broker, CommittedOffset, Leadership, TopicPartition};
use fjord_log::Clock;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::progress;
use super::state::{InFlight, QueueState};
use crate::error::{MessagingError, Result, blocking};
use crate::journal::Journal;
use crate::{Messaging, MessagingConfig};

const SNAPSHOT: &str = "snapshot.json";

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

/// A pop journal record: replaying them in order rebuilds every queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PopEntry {
    Open {
        q: QueueId,
        start: u64,
        /// Offsets above `start` acked already (the committed progress's
        /// metadata: acked on the node that led before).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        acked: Vec<(u64, u64)>,
        /// Deliveries that node made of offsets above `start`: ranges with
        /// their attempt count.
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
    /// The topic was deleted: every queue on it goes.
    Forget {
        topic: String,
    },
    /// Another node led the partition meanwhile: its queues here are stale.
    Drop {
        topic: String,
        partition: u32,
    },
}

impl PopEntry {
    fn apply(self, queues: &mut HashMap<QueueId, QueueState>) {
        match self {
            PopEntry::Open { q, start, acked, delivered } => {
                queues.entry(q).or_insert_with(|| QueueState::opened(start, &acked, &delivered));
            }
            PopEntry::Pop { q, upto, delivered, held, unheld, dropped } => {
                let Some(s) = queues.get_mut(&q) else { return };
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
            PopEntry::Ack { q, offset, seq } => {
                if let Some(s) = queues.get_mut(&q) {
                    s.ack(offset, seq);
                }
            }
            PopEntry::Acks { q, acks } => {
                if let Some(s) = queues.get_mut(&q) {
                    for (offset, seq) in acks {
                        s.ack(offset, seq);
                    }
                }
            }
            PopEntry::Invisible { q, offset, f } => {
                if let Some(s) = queues.get_mut(&q) {
                    s.inflight.insert(offset, f);
                }
            }
            PopEntry::Reset { q, offset } => {
                queues.entry(q).or_insert_with(|| QueueState::new(offset)).reset(offset);
            }
            PopEntry::Forget { topic } => queues.retain(|q, _| q.topic != topic),
            PopEntry::Drop { topic, partition } => queues.retain(|q, _| q.topic != topic || q.partition != partition),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    journal_from: u64,
    next_seq: u64,
    queues: Vec<(QueueId, QueueState)>,
}

/// Every pop queue of the broker.
#[derive(Debug)]
pub(crate) struct PopService {
    pub(crate) queues: Mutex<HashMap<QueueId, Arc<Mutex<QueueState>>>>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) next_seq: AtomicU64,
    /// Progress last committed to the broker's offsets, per queue: the
    /// offset and its metadata (the acked offsets above it, see
    /// [`super::progress`]).
    committed: Mutex<HashMap<QueueId, (u64, String)>>,
    /// Rotates partitions for pops that name none.
    pub(crate) rotate: AtomicU64,
    /// Held while snapshotting, shared by journal writers, so a snapshot's
    /// journal offset covers exactly the state it saves.
    pub(crate) cut: Arc<parking_lot::RwLock<()>>,
    pub(crate) clock: Arc<dyn Clock>,
    dir: PathBuf,
    /// One past the last journal record written without waiting for it
    /// (0: none pending); the maintenance syncs up to it.
    unsynced: AtomicU64,
    broker: Arc<Broker>,
    /// In a cluster: the leader epoch of each partition in which this
    /// node's queues on it were (re)loaded. They are used only while the
    /// node leads the partition in that epoch (see [`PopService::lead`]).
    loaded: Mutex<HashMap<TopicPartition, i32>>,
}

/// Whether this node may use its queues on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lead {
    /// A single node: its queues are always current.
    Alone,
    /// Leading, in this epoch.
    Leading(i32),
    /// Another node leads, or none does.
    NotLeading,
}

impl PopService {
    pub(crate) async fn open(broker: &Arc<Broker>, dir: &Path, config: &MessagingConfig) -> Result<PopService> {
        let (b, dir, durability) = (broker.clone(), dir.to_path_buf(), config.durability);
        let clock = broker.clock().clone();
        blocking(move || -> Result<PopService> {
            std::fs::create_dir_all(&dir).map_err(|e| MessagingError::io("create pop directory", &dir, e))?;
            let journal = Journal::open(
                &dir.join("journal"),
                "pop journal",
                &b.config().log_defaults,
                durability,
                clock.clone(),
            )?;
            let snap = read_snapshot(&dir.join(SNAPSHOT))?;
            let (mut queues, journal_from, mut next_seq) = match snap {
                Some(s) => (s.queues.into_iter().collect::<HashMap<_, _>>(), s.journal_from, s.next_seq),
                None => (HashMap::new(), 0, 0),
            };
            let mut replayed = 0u64;
            journal.scan(journal_from, |r| {
                let e: PopEntry = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                    .map_err(|e| MessagingError::Corrupt { what: "pop journal", detail: e.to_string() })?;
                next_seq = next_seq.max(max_seq(&e) + 1);
                e.apply(&mut queues);
                replayed += 1;
                Ok(())
            })?;
            tracing::info!(queues = queues.len(), replayed, "pop state opened");
            Ok(PopService {
                queues: Mutex::new(queues.into_iter().map(|(k, v)| (k, Arc::new(Mutex::new(v)))).collect()),
                journal: Arc::new(journal),
                next_seq: AtomicU64::new(next_seq),
                committed: Default::default(),
                rotate: AtomicU64::new(0),
                cut: Default::default(),
                clock,
                dir,
                unsynced: AtomicU64::new(0),
                broker: b,
                loaded: Default::default(),
            })
        })
        .await?
    }

    pub(crate) fn seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The queue's state, if this node has it and it is current: in a
    /// cluster, loaded while leading the partition in its present epoch.
    pub(crate) fn queue(&self, q: &QueueId) -> Option<Arc<Mutex<QueueState>>> {
        let s = self.queues.lock().get(q).cloned()?;
        self.current(&q.tp()).then_some(s)
    }

    /// Whether this node may use its queues on `tp` now.
    pub(crate) fn current(&self, tp: &TopicPartition) -> bool {
        match self.lead(tp) {
            Lead::Alone => true,
            Lead::Leading(epoch) => self.loaded.lock().get(tp) == Some(&epoch),
            Lead::NotLeading => false,
        }
    }

    /// Whether this node leads `tp`, and in which epoch.
    ///
    /// The pop state is node-local (its move onto replicated partitions is
    /// planned, `docs/design/replication.md` §4): while a node does not
    /// lead a partition, another one pops and acks its messages and
    /// commits the group's progress. So a node uses its queues on a
    /// partition only in the leader epoch it loaded them in; in a later
    /// one (it leads again, or restarted) they are dropped and reopened at
    /// the group's committed offset ([`PopService::reload`]), which
    /// delivers again what was in flight or acked above it — never skips
    /// a message, and never commits a stale position over a newer one.
    pub(crate) fn lead(&self, tp: &TopicPartition) -> Lead {
        let placed = self.broker.placement().is_some();
        if !placed && self.broker.config().cluster_id.is_none() {
            return Lead::Alone;
        }
        if !placed || self.broker.leadership(tp) != Leadership::Local {
            return Lead::NotLeading;
        }
        match self.broker.partition(tp) {
            Ok(p) if p.is_leading() => Lead::Leading(p.leader_epoch()),
            _ => Lead::NotLeading,
        }
    }

    /// Called with the queue map locked, before opening a queue on `tp`:
    /// when this node's queues there are stale (loaded in an earlier epoch,
    /// or before a restart), drops them (journaled) and records `epoch`.
    /// The drop is written, not synced: the queue opened next syncs it.
    pub(crate) fn reload(
        &self,
        queues: &mut HashMap<QueueId, Arc<Mutex<QueueState>>>,
        tp: &TopicPartition,
        epoch: i32,
    ) -> Result<()> {
        let mut loaded = self.loaded.lock();
        if loaded.get(tp) == Some(&epoch) {
            return Ok(());
        }
        loaded.insert(tp.clone(), epoch);
        let stale = |q: &QueueId| q.topic == tp.topic && q.partition == tp.partition;
        if !queues.keys().any(stale) {
            return Ok(());
        }
        queues.retain(|q, _| !stale(q));
        self.committed.lock().retain(|q, _| !stale(q));
        tracing::info!(%tp, epoch, "pop queues reloaded from the committed offsets (led elsewhere meanwhile)");
        let e = PopEntry::Drop { topic: tp.topic.clone(), partition: tp.partition };
        self.write(&e).map(drop)
    }

    /// Appends a journal entry (not yet durable); returns its offset.
    pub(crate) fn write(&self, e: &PopEntry) -> Result<u64> {
        let v = serde_json::to_vec(e).map_err(|e| MessagingError::Internal(format!("encode pop entry: {e}")))?;
        self.journal.append_value(v, self.clock.now_ms())
    }

    /// Drops every queue on `topic` (deleted), durably.
    pub(crate) fn forget_topic(&self, topic: &str) -> Result<()> {
        let off = {
            let _cut = self.cut.read();
            let mut queues = self.queues.lock();
            let before = queues.len();
            queues.retain(|q, _| q.topic != topic);
            if queues.len() == before {
                return Ok(());
            }
            self.committed.lock().retain(|q, _| q.topic != topic);
            self.write(&PopEntry::Forget { topic: topic.to_string() })?
        };
        self.journal.sync(off)
    }

    /// After writing journal records up to `offset` (if any): waits until
    /// they are durable when `durable`, else leaves them to the next
    /// [`PopService::sync_unsynced`].
    pub(crate) fn settle(&self, offset: Option<u64>, durable: bool) -> Result<()> {
        match offset {
            Some(off) if durable => self.journal.sync(off),
            Some(off) => {
                self.unsynced.fetch_max(off + 1, Ordering::AcqRel);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Syncs the records written without a sync, if any.
    pub(crate) fn sync_unsynced(&self) -> Result<()> {
        let end = self.unsynced.swap(0, Ordering::AcqRel);
        if end > 0
            && let Err(e) = self.journal.sync(end - 1)
        {
            self.unsynced.fetch_max(end, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    /// Recovers the journal after a failed write poisoned it (a full disk:
    /// every pop and ack failed from then on, and the queues with them).
    /// Records past its durable point are cut; the state they described is
    /// still applied here (a failed pop or ack was reported as such, and
    /// at worst delivers again), and a snapshot saves it at once, so a
    /// restart does not fall back to the cut journal. Blocking file I/O.
    pub(crate) fn recover(&self) -> Result<()> {
        if self.journal.recover()?.is_some() {
            self.unsynced.store(0, Ordering::Release);
            self.snapshot()?;
        }
        Ok(())
    }

    /// Saves every queue and trims the journal before the cut.
    pub(crate) fn snapshot(&self) -> Result<()> {
        let snap = {
            let _cut = self.cut.write();
            let queues: Vec<_> = self.queues.lock().iter().map(|(k, v)| (k.clone(), v.lock().clone())).collect();
            Snapshot { journal_from: self.journal.end(), next_seq: self.next_seq.load(Ordering::Relaxed), queues }
        };
        let bytes =
            serde_json::to_vec(&snap).map_err(|e| MessagingError::Internal(format!("encode pop snapshot: {e}")))?;
        fjord_log::write_atomic(&self.dir.join(SNAPSHOT), &bytes)
            .map_err(|e| MessagingError::log("pop snapshot", e))?;
        self.journal.trim_before(snap.journal_from)
    }

    pub(crate) async fn close(&self) -> Result<()> {
        let journal = self.journal.clone();
        // The snapshot needs &self; it is cheap enough to run inline.
        self.snapshot()?;
        blocking(move || journal.close()).await?
    }
}

fn max_seq(e: &PopEntry) -> u64 {
    match e {
        PopEntry::Pop { delivered, .. } => delivered.iter().map(|(_, f)| f.seq).max().unwrap_or(0),
        PopEntry::Invisible { f, .. } => f.seq,
        PopEntry::Ack { seq, .. } => *seq,
        PopEntry::Acks { acks, .. } => acks.iter().map(|(_, s)| *s).max().unwrap_or(0),
        _ => 0,
    }
}

fn read_snapshot(path: &Path) -> Result<Option<Snapshot>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| MessagingError::Corrupt { what: "pop snapshot", detail: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MessagingError::io("read pop snapshot", path, e)),
    }
}

/// Once a second: dead-letters messages out of attempts, commits each
/// queue's progress to the broker's offsets; snapshots every
/// `snapshot_interval`.
pub(crate) fn spawn_maintenance(m: Arc<Messaging>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_snapshot = m.pop.clock.now_ms();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = m.stopping() => return,
            }
            if let Err(e) = m.pop_maintenance().await {
                tracing::error!(error = %e, "pop maintenance failed");
            }
            m.release_lost_holds().await;
            let mm = m.clone();
            match blocking(move || mm.recover_journals()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => tracing::warn!(error = %e, "a messaging journal is not writable yet"),
            }
            if m.pop.clock.now_ms() - last_snapshot >= m.config.snapshot_interval.as_millis() as i64 {
                last_snapshot = m.pop.clock.now_ms();
                let mm = m.clone();
                match blocking(move || mm.pop.snapshot()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => tracing::error!(error = %e, "pop snapshot failed"),
                }
            }
        }
    })
}

impl Messaging {
    /// Recovers the node-local pop journal a failed write poisoned, once
    /// it can be written again; called every second by the maintenance.
    /// Blocking file I/O.
    pub(crate) fn recover_journals(&self) -> Result<()> {
        self.pop.recover()
    }

    /// Dead-letters expired messages that used up their attempts, commits
    /// queue progress and syncs journal records written without a wait.
    /// Runs every second; public for tests and tools.
    pub async fn pop_maintenance(&self) -> Result<()> {
        let now = self.pop.clock.now_ms();
        let queues: Vec<_> = self.pop.queues.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut commits: HashMap<String, Vec<(TopicPartition, CommittedOffset)>> = HashMap::new();
        for (q, state) in queues {
            // A queue loaded in an earlier leader epoch is stale: another
            // node has moved the group on since (see `PopService::lead`).
            if !self.pop.current(&q.tp()) {
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
        // What pops and acks wrote without waiting becomes durable now.
        let me = self.self_ref()?;
        blocking(move || me.pop.sync_unsynced()).await?
    }
}
