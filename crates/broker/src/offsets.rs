//! Committed consumer-group offsets, stored durably in an internal log.
//!
//! Every commit appends records `key = (group, topic, partition)`,
//! `value = offset, leader epoch, metadata, commit time` (a null value
//! deletes) to a dedicated [`Log`] and updates an in-memory map, which is
//! rebuilt on start by replaying the log. A commit is acknowledged only after
//! the append is durable (group commit), so acknowledged offsets survive a
//! crash.
//!
//! Compaction without a cleaner: when the log has grown past a threshold,
//! the current map is appended again as a snapshot, and once that is durable
//! the log start moves to the snapshot's first offset, letting retention
//! drop every older segment. A crash midway leaves old records plus part of
//! the snapshot, which replays to the same map, because snapshot records
//! only repeat current values.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use fjord_log::batch::{BatchBuilder, NewRecord};
use fjord_log::{AppendOrigin, Clock, Durability, Log, LogConfig, ReadBound};
use parking_lot::Mutex;

use crate::error::{BrokerError, Result};

const KEY_VERSION: u8 = 1;
const VALUE_VERSION: u8 = 1;
/// Records per batch when writing many commits or a snapshot.
const BATCH_RECORDS: usize = 500;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the record before `offset`, or -1.
    pub leader_epoch: i32,
    /// Client-supplied metadata.
    pub metadata: String,
    /// When it was committed (ms since epoch).
    pub commit_timestamp: i64,
}

/// Key of a committed offset.
pub type OffsetKey = (String, String, u32);

fn encode_key(group: &str, topic: &str, partition: u32) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + 4 + group.len() + topic.len() + 4);
    b.put_u8(KEY_VERSION);
    b.put_u16(group.len() as u16);
    b.put_slice(group.as_bytes());
    b.put_u16(topic.len() as u16);
    b.put_slice(topic.as_bytes());
    b.put_u32(partition);
    b.freeze()
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Some(head)
}

fn take_str(b: &mut &[u8], len_bytes: usize) -> Option<String> {
    let len = take(b, len_bytes)?.iter().fold(0usize, |acc, x| (acc << 8) | *x as usize);
    String::from_utf8(take(b, len)?.to_vec()).ok()
}

fn decode_key(mut b: &[u8]) -> Option<OffsetKey> {
    if take(&mut b, 1)? != [KEY_VERSION] {
        return None;
    }
    let group = take_str(&mut b, 2)?;
    let topic = take_str(&mut b, 2)?;
    let p = take(&mut b, 4)?;
    Some((group, topic, u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
}

fn encode_value(v: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + 8 + 4 + 8 + 4 + v.metadata.len());
    b.put_u8(VALUE_VERSION);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    b.put_i64(v.commit_timestamp);
    b.put_u32(v.metadata.len() as u32);
    b.put_slice(v.metadata.as_bytes());
    b.freeze()
}

fn decode_value(mut b: &[u8]) -> Option<CommittedOffset> {
    if take(&mut b, 1)? != [VALUE_VERSION] {
        return None;
    }
    let i64_at = |s: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        i64::from_be_bytes(a)
    };
    let offset = i64_at(take(&mut b, 8)?);
    let e = take(&mut b, 4)?;
    let leader_epoch = i32::from_be_bytes([e[0], e[1], e[2], e[3]]);
    let commit_timestamp = i64_at(take(&mut b, 8)?);
    let metadata = take_str(&mut b, 4)?;
    Some(CommittedOffset { offset, leader_epoch, metadata, commit_timestamp })
}

/// The committed-offsets store.
#[derive(Debug)]
pub struct OffsetStore {
    log: Arc<Log>,
    map: Mutex<BTreeMap<OffsetKey, CommittedOffset>>,
    /// Serialises appends with map updates so the map order matches the log.
    write: Mutex<()>,
    compact_after_bytes: u64,
}

impl OffsetStore {
    /// Opens the store in `dir`, replaying its log.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>, compact_after_bytes: u64) -> Result<OffsetStore> {
        let cfg = LogConfig {
            segment_bytes: (compact_after_bytes / 4).max(64 * 1024),
            retention_ms: None,
            durability: Durability::GroupCommit,
            ..LogConfig::default()
        };
        let log = Log::open(dir, cfg, clock).map_err(|e| BrokerError::log("consumer offsets", e))?;
        let map = replay(&log)?;
        tracing::debug!(entries = map.len(), "consumer offsets recovered");
        Ok(OffsetStore { log: Arc::new(log), map: Mutex::new(map), write: Mutex::new(()), compact_after_bytes })
    }

    /// The backing log (monitoring, fault-injection tests).
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// Why the backing log refuses commits, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.log.poisoned()
    }

    /// Makes a poisoned log accept commits again (see [`Log::recover`]) and
    /// rebuilds the map from what survived. Returns whether it recovered.
    ///
    /// Only commits whose append was fsynced reached the map and recovery
    /// keeps everything fsynced, so the map is still right; replaying also
    /// picks up a commit that became durable but was answered with an error,
    /// so the map is exactly what a restart would rebuild.
    pub fn recover(&self) -> Result<bool> {
        let _w = self.write.lock();
        let recovered = self.log.recover().map_err(|e| BrokerError::log("consumer offsets recovery", e))?;
        let Some(outcome) = recovered else { return Ok(false) };
        let map = replay(&self.log)?;
        tracing::info!(
            entries = map.len(),
            log_end = outcome.log_end,
            "consumer offsets log recovered: commits are accepted again"
        );
        *self.map.lock() = map;
        Ok(true)
    }

    /// The current committed offset of one partition.
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<CommittedOffset> {
        self.map.lock().get(&(group.to_string(), topic.to_string(), partition)).cloned()
    }

    /// Every committed offset of a group.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, u32, CommittedOffset)> {
        let map = self.map.lock();
        map.range((group.to_string(), String::new(), 0)..)
            .take_while(|((g, _, _), _)| g == group)
            .map(|((_, t, p), v)| (t.clone(), *p, v.clone()))
            .collect()
    }

    /// The keys of every committed offset on `topic`, all groups.
    pub fn keys_of_topic(&self, topic: &str) -> Vec<OffsetKey> {
        self.map.lock().keys().filter(|(_, t, _)| t == topic).cloned().collect()
    }

    /// Every group with at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self.map.lock().keys().map(|(g, _, _)| g.clone()).collect();
        out.dedup();
        out
    }

    /// Durably stores offsets (`None` deletes). Blocking: run off the runtime.
    pub fn put(&self, entries: Vec<(OffsetKey, Option<CommittedOffset>)>, now: i64) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let _w = self.write.lock();
        self.append(&entries, now)?;
        let mut map = self.map.lock();
        for (k, v) in entries {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        drop(map);
        if self.log.stats().size_bytes > self.compact_after_bytes
            && let Err(e) = self.compact(now)
        {
            // The commits above are durable and applied: failing them now
            // would make clients retry what succeeded. The next commit
            // tries to compact again.
            tracing::warn!(error = %e, "consumer offsets compaction failed");
        }
        Ok(())
    }

    fn append(&self, entries: &[(OffsetKey, Option<CommittedOffset>)], now: i64) -> Result<()> {
        let mut data = BytesMut::new();
        for chunk in entries.chunks(BATCH_RECORDS) {
            let mut b = BatchBuilder::new(now);
            for ((g, t, p), v) in chunk {
                b.push(&NewRecord {
                    key: Some(encode_key(g, t, *p)),
                    value: v.as_ref().map(encode_value),
                    ..Default::default()
                });
            }
            data.extend_from_slice(&b.build());
        }
        let info = self
            .log
            .append(data, AppendOrigin::Leader { epoch: 0 })
            .map_err(|e| BrokerError::log("consumer offsets", e))?;
        self.log.set_high_watermark(info.last_offset + 1);
        Ok(())
    }

    /// Re-appends the live map and moves the log start past older records.
    /// Called with the write lock held.
    fn compact(&self, now: i64) -> Result<()> {
        let snapshot: Vec<(OffsetKey, Option<CommittedOffset>)> =
            self.map.lock().iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        let start = self.log.log_end_offset();
        if !snapshot.is_empty() {
            self.append(&snapshot, now)?;
        }
        self.log.delete_records_before(start).map_err(|e| BrokerError::log("consumer offsets compaction", e))?;
        self.log.enforce_retention().map_err(|e| BrokerError::log("consumer offsets compaction", e))?;
        tracing::debug!(entries = snapshot.len(), log_start = start, "compacted consumer offsets");
        Ok(())
    }

    /// Size of the backing log in bytes.
    pub fn log_size(&self) -> u64 {
        self.log.stats().size_bytes
    }

    /// Closes the backing log cleanly.
    pub fn close(&self) -> Result<()> {
        self.log.close().map_err(|e| BrokerError::log("consumer offsets", e))
    }
}

/// The committed offsets in `log`, replayed from its start.
fn replay(log: &Log) -> Result<BTreeMap<OffsetKey, CommittedOffset>> {
    log.set_high_watermark(log.log_end_offset());
    let mut map = BTreeMap::new();
    let mut next = log.log_start_offset();
    loop {
        let recs = log
            .read_records(next, 1 << 20, ReadBound::LogEnd)
            .map_err(|e| BrokerError::log("consumer offsets replay", e))?;
        let Some(last) = recs.last() else { break };
        next = last.offset + 1;
        for r in recs {
            let Some(key) = r.key.as_deref().and_then(decode_key) else { continue };
            match r.value.as_deref().map(decode_value) {
                Some(Some(v)) => {
                    map.insert(key, v);
                }
                Some(None) => tracing::warn!(offset = r.offset, "skipping undecodable committed offset"),
                None => {
                    map.remove(&key);
                }
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_log::ManualClock;

    fn off(o: i64) -> Option<CommittedOffset> {
        Some(CommittedOffset { offset: o, leader_epoch: 3, metadata: format!("m{o}"), commit_timestamp: 7 })
    }

    fn key(g: &str, t: &str, p: u32) -> OffsetKey {
        (g.into(), t.into(), p)
    }

    #[test]
    fn commits_survive_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1));
        let store = OffsetStore::open(dir.path(), clock.clone(), 1 << 30).unwrap();
        store.put(vec![(key("g", "t", 0), off(5)), (key("g", "t", 1), off(9)), (key("h", "t", 0), off(1))], 1).unwrap();
        store.put(vec![(key("g", "t", 0), off(6)), (key("h", "t", 0), None)], 2).unwrap();
        drop(store); // no clean close: replay must still be right
        let store = OffsetStore::open(dir.path(), clock, 1 << 30).unwrap();
        assert_eq!(store.get("g", "t", 0), off(6));
        assert_eq!(store.get("g", "t", 1), off(9));
        assert_eq!(store.get("h", "t", 0), None);
        assert_eq!(store.groups(), vec!["g".to_string()]);
        assert_eq!(store.group_offsets("g").len(), 2);
    }

    #[test]
    fn compaction_bounds_the_log_and_keeps_every_live_offset() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1));
        let store = OffsetStore::open(dir.path(), clock.clone(), 256 * 1024).unwrap();
        for round in 0..400i64 {
            let batch = (0..50u32).map(|p| (key("grp", "topic", p), off(round * 100 + i64::from(p)))).collect();
            store.put(batch, round).unwrap();
        }
        assert!(store.log_size() < 2 * 256 * 1024 + 128 * 1024, "log not compacted: {}", store.log_size());
        drop(store);
        let store = OffsetStore::open(dir.path(), clock, 256 * 1024).unwrap();
        for p in 0..50u32 {
            assert_eq!(store.get("grp", "topic", p), off(399 * 100 + i64::from(p)));
        }
    }

    #[test]
    fn codec_rejects_garbage() {
        assert_eq!(decode_key(&encode_key("g", "t", 4)), Some(key("g", "t", 4)));
        assert_eq!(decode_key(b"\x01\x00\x09ab"), None);
        assert_eq!(decode_value(&[]), None);
        assert_eq!(decode_value(&encode_value(&off(3).unwrap())), off(3));
    }
}
