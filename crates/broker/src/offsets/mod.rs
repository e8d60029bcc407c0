//! Committed consumer-group offsets, stored on the partitions of the
//! internal topic `__fjord_offsets` (Kafka's `__consumer_offsets`).
//!
//! A group's offsets live on partition `key_hash(group) % partitions`, the
//! same partition whose leader coordinates the group
//! ([`crate::Broker::coordinator`]), so a group's coordinator writes its
//! commits to a partition it leads, and the partition carries them wherever
//! it is placed or, later, replicated. Each partition this node holds is a
//! *shard*: the partition plus an in-memory map rebuilt from it by replaying
//! its records (key `(group, topic, partition)`, value the offset; a null
//! value deletes — see `codec.rs`).
//!
//! The same partition stores each group's settled membership
//! ([`crate::group::StoredGroup`], under its own key version), replayed
//! beside the offsets; a node elected the partition's leader hands the
//! replayed groups to its coordinator before it serves the shard, so a
//! group carries on across a coordinator move with its generation.
//!
//! A commit is acknowledged once its records are committed on the partition
//! (under the topic's `group-commit` durability: fsynced), and only then is
//! it applied to the map, so a reader never sees an offset a crash could
//! take back. Commits to one shard are serialised so the map's order is the
//! log's.
//!
//! A shard's map is *current* only while it holds everything its partition
//! does: after the replay at attach, and after the replay that follows this
//! node's election as the partition's leader. A follower's map is not kept
//! up to date (the leader's records reach its log, not its map), so losing
//! the leadership makes it stale, and until the replay after an election
//! has finished, the group coordinator answers "still loading" (Kafka's
//! `COORDINATOR_LOAD_IN_PROGRESS`) instead of serving offsets an earlier
//! term left behind — that would move a group's committed offsets back.
//!
//! Compaction without a cleaner: when a shard's log has grown past a
//! threshold, its current map is appended again as a snapshot, and once that
//! is committed the log start moves to the snapshot's first offset, letting
//! retention drop every older segment. A crash midway leaves old records
//! plus part of the snapshot, which replays to the same map, because
//! snapshot records only repeat current values (stored groups included).

mod codec;
/// The stored group records' codec, for other modules' tests.
#[cfg(test)]
pub(crate) mod codec_for_tests {
    pub(crate) use super::codec::{decode_group_record, encode_group_record};
}
mod internal;
pub(crate) mod legacy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use fjord_log::batch::{BatchBuilder, NewRecord, Record};
use parking_lot::{Mutex, RwLock};

#[cfg(test)]
use codec::decode_key;
pub use codec::{CommittedOffset, OffsetKey};
use codec::{StoredKey, decode_group_record, decode_stored_key, decode_value, encode_group_key, encode_group_record};
use codec::{encode_key, encode_value};
pub use internal::{is_internal_topic, offsets_topic_config, pop_topic_config, timer_topic_config};

use crate::error::{BrokerError, Result, blocking};
use crate::group::GroupRecord;
use crate::partition::Partition;

/// Records per batch when writing many commits or a snapshot.
const BATCH_RECORDS: usize = 500;

/// The committed-offsets store: one shard per `__fjord_offsets` partition
/// held on this node.
#[derive(Debug)]
pub struct OffsetStore {
    /// By partition index; empty until the topic is attached.
    shards: RwLock<Vec<Arc<Shard>>>,
    compact_after_bytes: u64,
}

/// One `__fjord_offsets` partition and the offsets replayed from it.
#[derive(Debug)]
struct Shard {
    partition: Arc<Partition>,
    map: Mutex<BTreeMap<OffsetKey, CommittedOffset>>,
    /// Stored group states by group id, replayed like `map`.
    groups: Mutex<BTreeMap<String, GroupRecord>>,
    /// Serialises appends with map updates so the map order matches the log.
    write: tokio::sync::Mutex<()>,
    /// Bumped whenever the map may stop matching the partition (leadership
    /// lost, a replay started); `replayed` takes the value a finished
    /// replay started at. Current iff equal (see the module docs).
    generation: AtomicU64,
    replayed: AtomicU64,
}

impl Shard {
    fn is_current(&self) -> bool {
        self.replayed.load(Ordering::Acquire) == self.generation.load(Ordering::Acquire)
    }

    /// Replays the partition into the map (blocking file I/O); the map is
    /// current afterwards unless it went stale again meanwhile. The stored
    /// groups go to `on_groups` before the shard is current, so no request
    /// the shard admits finds a group missing that its log holds.
    fn replay_into_map(&self, on_groups: impl FnOnce(Vec<GroupRecord>)) -> Result<()> {
        let started = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.replay_as(started, on_groups)
    }

    /// [`Shard::replay_into_map`] for the election that made the shard
    /// stale at generation `elected`: nothing if it went stale again since
    /// (a later election or loss of the lead decides).
    fn replay_into_map_since(&self, elected: u64, on_groups: impl FnOnce(Vec<GroupRecord>)) -> Result<()> {
        match self.generation.compare_exchange(elected, elected + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => self.replay_as(elected + 1, on_groups),
            Err(_) => Ok(()),
        }
    }

    fn replay_as(&self, started: u64, on_groups: impl FnOnce(Vec<GroupRecord>)) -> Result<()> {
        let _w = self.write.blocking_lock();
        let (map, groups) = replay(&self.partition)?;
        *self.map.lock() = map;
        on_groups(groups.values().cloned().collect());
        *self.groups.lock() = groups;
        // A `mark_stale` after `started` bumped the generation past it, so
        // this store cannot make that map current.
        self.replayed.store(started, Ordering::Release);
        Ok(())
    }
}

impl OffsetStore {
    pub(crate) fn new(compact_after_bytes: u64) -> OffsetStore {
        OffsetStore { shards: RwLock::new(Vec::new()), compact_after_bytes }
    }

    /// Replays `partitions` (the topic's, in index order) and serves them.
    /// Blocking file I/O.
    pub(crate) fn attach(&self, partitions: &[Arc<Partition>]) -> Result<()> {
        let mut shards = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (map, groups) = replay(p)?;
            tracing::debug!(partition = %p.id(), entries = map.len(), groups = groups.len(), "committed offsets loaded");
            shards.push(Arc::new(Shard {
                partition: p.clone(),
                map: Mutex::new(map),
                groups: Mutex::new(groups),
                write: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                replayed: AtomicU64::new(0),
            }));
        }
        *self.shards.write() = shards;
        Ok(())
    }

    /// Rebuilds a shard's map from its partition, after the partition's log
    /// was cut back to its durable point: exactly what a restart would
    /// rebuild. Blocking file I/O.
    pub(crate) fn reload(&self, index: u32) -> Result<()> {
        let Some(shard) = self.shard_at(index) else { return Ok(()) };
        // The node kept its groups in memory through the recovery.
        shard.replay_into_map(|_| {})
    }

    /// [`OffsetStore::reload`] on the blocking pool, for a shard whose
    /// partition this node just came to lead (its log holds what the old
    /// leader stored); its stored groups go to `on_groups` first. Readers
    /// see the old map until it is replayed.
    ///
    /// The log may end with records the old leader wrote and never
    /// committed: this node's election does not commit them, and another
    /// election before they are could cut them (its winner, in sync, holds
    /// every committed record but not necessarily these). So the replay
    /// waits until this node's high watermark covers the log end it was
    /// elected with, as Kafka's coordinator exposes a loaded partition's
    /// state only up to its last committed offset; until then the group
    /// coordinator answers "still loading". Losing the lead meanwhile ends
    /// the wait: the next election replays again.
    pub(crate) fn reload_in_background(&self, index: u32, on_groups: impl FnOnce(Vec<GroupRecord>) + Send + 'static) {
        let Some(shard) = self.shard_at(index) else { return };
        // Stale from now until the replay finishes.
        let elected = shard.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let p = shard.partition.clone();
        let end = p.log_end_offset();
        let tail = (end > p.high_watermark()).then(|| p.written_at(end - 1));
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        drop(rt.spawn(async move {
            if let Some(tail) = tail
                && let Err(e) = p.committed_while_leading(tail).await
            {
                tracing::info!(partition = %p.id(), error = %e,
                    "committed offsets not replayed: the tail inherited at the election was not committed");
                return;
            }
            let id = p.id().to_string();
            let replayed = tokio::task::spawn_blocking(move || shard.replay_into_map_since(elected, on_groups)).await;
            match replayed {
                Ok(Ok(())) => {}
                // The shard stays stale (clients are told to retry) until
                // the next election or recovery replays it.
                Ok(Err(e)) => {
                    tracing::error!(partition = %id, error = %e, "could not replay committed offsets on becoming leader")
                }
                Err(e) => tracing::error!(partition = %id, error = %e, "the committed offsets replay failed"),
            }
        }));
    }

    /// The shard at `index` stops being current: this node no longer leads
    /// its partition, so later commits reach the log but not the map.
    pub(crate) fn mark_stale(&self, index: u32) {
        if let Some(shard) = self.shard_at(index) {
            shard.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether `group`'s shard is attached and current: its offsets can be
    /// served (see the module docs).
    pub fn is_current(&self, group: &str) -> bool {
        self.shard(group).is_some_and(|s| s.is_current())
    }

    /// Whether the offsets are loaded (the internal topic exists here).
    pub fn is_loaded(&self) -> bool {
        !self.shards.read().is_empty()
    }

    /// The `__fjord_offsets` partition holding `group`'s offsets, once the
    /// topic exists here.
    pub fn shard_of(&self, group: &str) -> Option<u32> {
        let n = self.shards.read().len() as u64;
        (n > 0).then(|| (fjord_log::key_hash(group.as_bytes()) % n) as u32)
    }

    fn shard_at(&self, index: u32) -> Option<Arc<Shard>> {
        self.shards.read().get(index as usize).cloned()
    }

    fn shard(&self, group: &str) -> Option<Arc<Shard>> {
        self.shard_of(group).and_then(|i| self.shard_at(i))
    }

    fn all(&self) -> Vec<Arc<Shard>> {
        self.shards.read().clone()
    }

    /// The current committed offset of one partition.
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<CommittedOffset> {
        self.shard(group)?.map.lock().get(&(group.to_string(), topic.to_string(), partition)).cloned()
    }

    /// Every committed offset of a group.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, u32, CommittedOffset)> {
        let Some(shard) = self.shard(group) else { return Vec::new() };
        let map = shard.map.lock();
        map.range((group.to_string(), String::new(), 0)..)
            .take_while(|((g, _, _), _)| g == group)
            .map(|((_, t, p), v)| (t.clone(), *p, v.clone()))
            .collect()
    }

    /// The keys of every committed offset on `topic` in current shards (all
    /// groups coordinated here).
    pub fn keys_of_topic(&self, topic: &str) -> Vec<OffsetKey> {
        self.all()
            .iter()
            .filter(|s| s.is_current())
            .flat_map(|s| s.map.lock().keys().filter(|(_, t, _)| t == topic).cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Every group with at least one committed offset in a current shard
    /// (the groups this node coordinates; alone, all of them).
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .all()
            .iter()
            .filter(|s| s.is_current())
            .flat_map(|s| s.map.lock().keys().map(|(g, _, _)| g.clone()).collect::<Vec<_>>())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Stores offsets (`None` deletes); returns once they are committed.
    pub async fn put(&self, entries: Vec<(OffsetKey, Option<CommittedOffset>)>, now: i64) -> Result<()> {
        let mut by_shard: BTreeMap<u32, Vec<_>> = BTreeMap::new();
        for e in entries {
            let index = self.shard_of(&e.0.0).ok_or_else(not_loaded)?;
            by_shard.entry(index).or_default().push(e);
        }
        for (index, entries) in by_shard {
            let shard = self.shard_at(index).ok_or_else(not_loaded)?;
            shard.put(entries, now, self.compact_after_bytes).await?;
        }
        Ok(())
    }

    /// The stored groups of every shard, for a coordinator that has just
    /// opened them all (a single node at start).
    pub fn stored_groups(&self) -> Vec<GroupRecord> {
        self.all().iter().flat_map(|s| s.groups.lock().values().cloned().collect::<Vec<_>>()).collect()
    }

    /// Stores a group's state (`None` deletes it); returns once it is
    /// committed. Storing what is stored already writes nothing (every
    /// member's SyncGroup asks for the same record).
    pub async fn put_group(&self, group: &str, stored: Option<GroupRecord>, now: i64) -> Result<()> {
        let index = self.shard_of(group).ok_or_else(not_loaded)?;
        let shard = self.shard_at(index).ok_or_else(not_loaded)?;
        let _w = shard.write.lock().await;
        if shard.groups.lock().get(group) == stored.as_ref() {
            return Ok(());
        }
        let record = NewRecord {
            key: Some(encode_group_key(group)),
            value: stored.as_ref().map(encode_group_record),
            ..Default::default()
        };
        shard.append_records(std::slice::from_ref(&record), now).await?;
        let mut groups = shard.groups.lock();
        match stored {
            Some(g) => groups.insert(group.to_string(), g),
            None => groups.remove(group),
        };
        Ok(())
    }

    /// Size in bytes of every shard's log.
    pub fn log_size(&self) -> u64 {
        self.all().iter().map(|s| s.partition.log_stats().size_bytes).sum()
    }
}

/// The offsets topic is not (yet) here: this node was just told it
/// coordinates the group and has not created or replayed the partition.
/// Kafka's answer for a coordinator that cannot serve a group yet; clients
/// find the coordinator again and retry.
fn not_loaded() -> BrokerError {
    BrokerError::Group(crate::group::GroupError::CoordinatorNotAvailable)
}

impl Shard {
    async fn put(
        &self,
        entries: Vec<(OffsetKey, Option<CommittedOffset>)>,
        now: i64,
        compact_after: u64,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let _w = self.write.lock().await;
        self.append(&entries, now).await?;
        {
            let mut map = self.map.lock();
            for (k, v) in entries {
                match v {
                    Some(v) => map.insert(k, v),
                    None => map.remove(&k),
                };
            }
        }
        if self.partition.log_stats().size_bytes > compact_after
            && let Err(e) = self.compact(now).await
        {
            // The commits above are committed and applied: failing them now
            // would make clients retry what succeeded. The next commit
            // tries to compact again.
            tracing::warn!(partition = %self.partition.id(), error = %e, "committed offsets compaction failed");
        }
        Ok(())
    }

    async fn append(&self, entries: &[(OffsetKey, Option<CommittedOffset>)], now: i64) -> Result<()> {
        let records: Vec<NewRecord> =
            entries.iter().map(|((g, t, p), v)| offset_record(g, t, *p, v.as_ref())).collect();
        self.append_records(&records, now).await
    }

    /// Appends records and returns once they are committed. Called with the
    /// write lock held.
    async fn append_records(&self, records: &[NewRecord], now: i64) -> Result<()> {
        let mut data = BytesMut::new();
        for chunk in records.chunks(BATCH_RECORDS) {
            let mut b = BatchBuilder::new(now);
            for r in chunk {
                b.push(r);
            }
            data.extend_from_slice(&b.build());
        }
        let p = &self.partition;
        let fail = |e| BrokerError::log(p.id().to_string(), e);
        let (_, written) = p.append(data).await?.map_err(fail)?;
        p.committed_while_leading(written).await.map_err(fail)
    }

    /// Re-appends the live map and moves the log start past older records.
    /// Called with the write lock held.
    async fn compact(&self, now: i64) -> Result<()> {
        let mut snapshot: Vec<NewRecord> =
            self.map.lock().iter().map(|((g, t, p), v)| offset_record(g, t, *p, Some(v))).collect();
        snapshot.extend(self.groups.lock().iter().map(|(g, v)| NewRecord {
            key: Some(encode_group_key(g)),
            value: Some(encode_group_record(v)),
            ..Default::default()
        }));
        let start = self.partition.log_end_offset();
        if !snapshot.is_empty() {
            self.append_records(&snapshot, now).await?;
        }
        let p = self.partition.clone();
        blocking(move || {
            p.log().delete_records_before(start)?;
            p.log().enforce_retention()
        })
        .await?
        .map_err(|e| BrokerError::log(format!("{} compaction", self.partition.id()), e))?;
        tracing::debug!(partition = %self.partition.id(), entries = snapshot.len(), log_start = start, "compacted committed offsets");
        Ok(())
    }
}

fn offset_record(group: &str, topic: &str, partition: u32, value: Option<&CommittedOffset>) -> NewRecord {
    NewRecord { key: Some(encode_key(group, topic, partition)), value: value.map(encode_value), ..Default::default() }
}

/// Committed offsets and stored groups, as a shard replays them.
type Replayed = (BTreeMap<OffsetKey, CommittedOffset>, BTreeMap<String, GroupRecord>);

/// The committed offsets and stored groups in `partition`, replayed from
/// its start (all of it: on the node that leads it, everything in its log
/// was committed).
fn replay(partition: &Partition) -> Result<Replayed> {
    replay_from(partition.log_start_offset(), |next| {
        partition.read_appended(next, 1 << 20).map_err(|e| BrokerError::log(format!("{} replay", partition.id()), e))
    })
}

/// The committed offsets in the records `read` returns from `start` on
/// (each call: the records from the offset it is given, none at the end).
fn replay_from(start: u64, mut read: impl FnMut(u64) -> Result<Vec<Record>>) -> Result<Replayed> {
    let mut replayed = Replayed::default();
    let mut next = start;
    loop {
        let recs = read(next)?;
        let Some(last) = recs.last() else { break };
        next = last.offset + 1;
        apply(&mut replayed, recs);
    }
    Ok(replayed)
}

/// Applies stored records to what was replayed so far, in order.
fn apply((map, groups): &mut Replayed, records: Vec<Record>) {
    for r in records {
        match r.key.as_deref().and_then(decode_stored_key) {
            Some(StoredKey::Offset(key)) => match r.value.as_deref().map(decode_value) {
                Some(Some(v)) => {
                    map.insert(key, v);
                }
                Some(None) => tracing::warn!(offset = r.offset, "skipping undecodable committed offset"),
                None => {
                    map.remove(&key);
                }
            },
            Some(StoredKey::Group(id)) => match r.value.as_deref().map(|v| decode_group_record(&id, v)) {
                Some(Some(g)) => {
                    groups.insert(id, g);
                }
                Some(None) => tracing::warn!(offset = r.offset, "skipping undecodable stored group"),
                None => {
                    groups.remove(&id);
                }
            },
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
