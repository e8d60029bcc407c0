//! Leader epoch cache: which leader epoch started at which offset.
//!
//! Replication uses it to find where a follower's log diverges from the
//! leader's (the end offset of the follower's last epoch as the leader knows
//! it), then truncates the follower there. Persisted atomically as text lines
//! `epoch start_offset` whenever it changes, which is rare.

use std::path::PathBuf;

use crate::checkpoint::write_atomic;
use crate::error::Result;

/// One epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// Leader epoch.
    pub epoch: i32,
    /// First offset appended by the leader of this epoch.
    pub start_offset: u64,
}

#[derive(Debug)]
pub(crate) struct EpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    pub(crate) fn load(path: PathBuf) -> EpochCache {
        let entries = std::fs::read_to_string(&path)
            .ok()
            .map(|s| {
                s.lines()
                    .filter_map(|l| {
                        let mut it = l.split_whitespace();
                        Some(EpochEntry { epoch: it.next()?.parse().ok()?, start_offset: it.next()?.parse().ok()? })
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut cache = EpochCache { path, entries: Vec::new() };
        // Keep only a strictly increasing prefix: anything else is damage.
        for e in entries {
            if cache.entries.last().is_none_or(|l| e.epoch > l.epoch && e.start_offset >= l.start_offset) {
                cache.entries.push(e);
            }
        }
        cache
    }

    fn persist(&self) -> Result<()> {
        let text: String = self.entries.iter().map(|e| format!("{} {}\n", e.epoch, e.start_offset)).collect();
        write_atomic(&self.path, text.as_bytes())
    }

    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// Records that `epoch` starts at `offset` if it is newer than the latest.
    pub(crate) fn assign(&mut self, epoch: i32, offset: u64) -> Result<()> {
        if epoch < 0 || self.latest().is_some_and(|l| epoch <= l.epoch) {
            return Ok(());
        }
        self.entries.push(EpochEntry { epoch, start_offset: offset });
        self.persist()
    }

    /// The largest epoch `<= epoch` and the offset where the next epoch
    /// starts (or `log_end` if it is the latest): Kafka's
    /// OffsetsForLeaderEpoch answer.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end: u64) -> Option<(i32, u64)> {
        let i = self.entries.partition_point(|e| e.epoch <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.entries[i - 1];
        let end = self.entries.get(i).map_or(log_end, |n| n.start_offset);
        Some((found.epoch, end))
    }

    /// Drops epochs starting at or after `offset` (after truncation).
    pub(crate) fn truncate_from_end(&mut self, offset: u64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < offset);
        if self.entries.len() != before { self.persist() } else { Ok(()) }
    }

    /// Removes epochs wholly before `offset` (after the log start moved),
    /// keeping the one that covers `offset`.
    pub(crate) fn truncate_from_start(&mut self, offset: u64) -> Result<()> {
        let covering = self.entries.partition_point(|e| e.start_offset <= offset);
        if covering > 1 {
            self.entries.drain(..covering - 1);
            if let Some(first) = self.entries.first_mut() {
                first.start_offset = first.start_offset.max(offset);
            }
            self.persist()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leader-epoch-checkpoint");
        let mut c = EpochCache::load(path.clone());
        c.assign(0, 0).unwrap();
        c.assign(0, 5).unwrap(); // not newer: ignored
        c.assign(2, 10).unwrap();
        c.assign(5, 20).unwrap();
        assert_eq!(c.end_offset_for(0, 30), Some((0, 10)));
        assert_eq!(c.end_offset_for(1, 30), Some((0, 10)));
        assert_eq!(c.end_offset_for(2, 30), Some((2, 20)));
        assert_eq!(c.end_offset_for(9, 30), Some((5, 30)));
        assert_eq!(c.end_offset_for(-1, 30), None);
        let reloaded = EpochCache::load(path.clone());
        assert_eq!(reloaded.entries(), c.entries());
        c.truncate_from_end(20).unwrap();
        assert_eq!(EpochCache::load(path.clone()).latest(), Some(EpochEntry { epoch: 2, start_offset: 10 }));
        c.truncate_from_start(15).unwrap();
        assert_eq!(c.entries(), &[EpochEntry { epoch: 2, start_offset: 15 }]);
    }
}
