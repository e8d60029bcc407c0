//! The aborted-transaction index: `<base>.txnindex` beside a segment,
//! Kafka's format (34-byte big-endian entries: version 0, producer id,
//! first offset, last offset, last stable offset), one entry per abort
//! marker in the segment, in marker order.
//!
//! The log store owns the file; what makes an abort is its owner's business
//! (the broker derives entries from its producer state and hands them in,
//! again after a crash: see `docs/design/transactions.md`). Adding is
//! idempotent by marker offset, so a replay may hand the same entries in
//! again. The file is fsynced with its segment, so an entry is durable
//! once its marker is; a crash may still leave a marker without its entry
//! (the segment's pages written back, the index's not), which the owner's
//! replay after an unclean open repairs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{LogError, Result};

/// Bytes per entry.
pub(crate) const ENTRY_LEN: usize = 34;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The transactional producer.
    pub producer_id: i64,
    /// The transaction's first offset in this partition.
    pub first_offset: u64,
    /// The abort marker's offset.
    pub last_offset: u64,
    /// The partition's last stable offset when the abort was written: no
    /// transaction open then started before it.
    pub last_stable_offset: u64,
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&(self.first_offset as i64).to_be_bytes());
        out.extend_from_slice(&(self.last_offset as i64).to_be_bytes());
        out.extend_from_slice(&(self.last_stable_offset as i64).to_be_bytes());
    }

    /// Decodes one entry; `None` for an unknown version or negative
    /// offsets (a damaged entry).
    fn decode(b: &[u8; ENTRY_LEN]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        if i16::from_be_bytes([b[0], b[1]]) != 0 {
            return None;
        }
        let offset = |at| u64::try_from(i64_at(at)).ok();
        Some(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: offset(10)?,
            last_offset: offset(18)?,
            last_stable_offset: offset(26)?,
        })
    }
}

/// A segment's aborted transactions, in memory and in their file.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Appended to since the last fsync.
    dirty: bool,
}

impl TxnIndex {
    pub(crate) fn path_for(dir: &Path, stem: &str) -> PathBuf {
        dir.join(format!("{stem}.txnindex"))
    }

    /// An empty index for a new segment (a stale file of the same name is
    /// removed).
    pub(crate) fn create(path: PathBuf) -> TxnIndex {
        let _ = std::fs::remove_file(&path);
        TxnIndex { path, entries: Vec::new(), dirty: false }
    }

    /// A placeholder until [`TxnIndex::open`] has read the file.
    pub(crate) fn create_in_memory(path: PathBuf) -> TxnIndex {
        TxnIndex { path, entries: Vec::new(), dirty: false }
    }

    /// Loads the index of an existing segment whose batches end at `end`:
    /// entries for markers at or past it (cut by a crash) and a torn or
    /// damaged tail are dropped, and the file rewritten without them.
    pub(crate) fn open(path: PathBuf, end: u64) -> Result<TxnIndex> {
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(|e| LogError::io("read transaction index", &path, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("open transaction index", &path, e)),
        }
        let mut entries = Vec::with_capacity(bytes.len() / ENTRY_LEN);
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            let mut a = [0u8; ENTRY_LEN];
            a.copy_from_slice(chunk);
            match AbortedTxn::decode(&a) {
                Some(e)
                    if e.last_offset < end
                        && entries.last().is_none_or(|l: &AbortedTxn| l.last_offset < e.last_offset) =>
                {
                    entries.push(e)
                }
                _ => break,
            }
        }
        let mut index = TxnIndex { path, entries, dirty: false };
        if index.entries.len() * ENTRY_LEN != bytes.len() {
            index.rewrite()?;
        }
        Ok(index)
    }

    /// Adds `e` unless an entry for its marker is here already; false when
    /// it was. Entries come in marker order; one older than the last is
    /// refused as a caller's bug.
    pub(crate) fn add(&mut self, e: AbortedTxn) -> Result<bool> {
        if self.entries.iter().any(|x| x.last_offset == e.last_offset) {
            return Ok(false);
        }
        if self.entries.last().is_some_and(|l| l.last_offset > e.last_offset) {
            return Err(LogError::Internal(format!(
                "aborted transaction at {} added after one at a later offset in {}",
                e.last_offset,
                self.path.display()
            )));
        }
        let mut buf = Vec::with_capacity(ENTRY_LEN);
        e.encode(&mut buf);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|err| LogError::io("open transaction index", &self.path, err))?;
        f.write_all(&buf).map_err(|err| LogError::io("write transaction index", &self.path, err))?;
        self.entries.push(e);
        self.dirty = true;
        Ok(true)
    }

    /// Fsyncs the file if entries were added since the last fsync.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let f = File::open(&self.path)?;
        crate::instrument::fsync(|| f.sync_all())?;
        self.dirty = false;
        Ok(())
    }

    /// Drops the entries for markers at or past `end` (the segment was cut
    /// there).
    pub(crate) fn truncate(&mut self, end: u64) -> Result<()> {
        let keep = self.entries.iter().take_while(|e| e.last_offset < end).count();
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.rewrite()?;
        }
        Ok(())
    }

    /// Kafka's `collectAbortedTxns`: the entries overlapping
    /// `[from, to)` (marker at or past `from`, first offset before `to`),
    /// appended to `out`; true once an entry shows no later one can
    /// overlap (its last stable offset is at or past `to`).
    pub(crate) fn collect(&self, from: u64, to: u64, out: &mut Vec<AbortedTxn>) -> bool {
        for e in &self.entries {
            if e.last_offset >= from && e.first_offset < to {
                out.push(*e);
            }
            if e.last_stable_offset >= to {
                return true;
            }
        }
        false
    }

    fn rewrite(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("delete transaction index", &self.path, e)),
            }
            self.dirty = false;
            return Ok(());
        }
        let mut buf = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            e.encode(&mut buf);
        }
        crate::checkpoint::write_atomic(&self.path, &buf)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn txn(first: u64, last: u64, lso: u64) -> AbortedTxn {
        AbortedTxn { producer_id: 7, first_offset: first, last_offset: last, last_stable_offset: lso }
    }

    #[test]
    fn entries_survive_a_reopen_and_lose_what_a_cut_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = TxnIndex::path_for(dir.path(), "00000000000000000000");
        let mut ix = TxnIndex::create(path.clone());
        assert!(ix.add(txn(0, 5, 0)).unwrap());
        assert!(!ix.add(txn(0, 5, 0)).unwrap(), "added again by a replay: kept once");
        assert!(ix.add(txn(3, 9, 3)).unwrap());
        assert!(ix.add(txn(10, 20, 10)).unwrap());
        assert!(ix.add(txn(0, 4, 0)).is_err(), "out of marker order");
        ix.sync().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * ENTRY_LEN as u64);
        // A crash cut the segment at 15: the entry for the marker at 20 goes.
        let reopened = TxnIndex::open(path.clone(), 15).unwrap();
        assert_eq!(reopened.entries, vec![txn(0, 5, 0), txn(3, 9, 3)]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * ENTRY_LEN as u64);
        // A torn entry at the end is dropped.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0u8; 7]).unwrap();
        let mut torn = TxnIndex::open(path.clone(), 100).unwrap();
        assert_eq!(torn.entries.len(), 2);
        torn.truncate(6).unwrap();
        assert_eq!(TxnIndex::open(path, 100).unwrap().entries, vec![txn(0, 5, 0)]);
    }

    #[test]
    fn collect_finds_overlapping_aborts_and_stops_at_the_last_stable_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = TxnIndex::create(TxnIndex::path_for(dir.path(), "x"));
        for e in [txn(0, 5, 0), txn(3, 9, 3), txn(12, 30, 12), txn(40, 50, 40)] {
            ix.add(e).unwrap();
        }
        let mut out = Vec::new();
        // Fetching [6, 13): the abort at 9 (3..9) and the one at 30
        // (12..30) overlap; the one at 50 starts later, and its entry's
        // last stable offset (40 >= 13) says none after it can overlap.
        assert!(ix.collect(6, 13, &mut out));
        assert_eq!(out, vec![txn(3, 9, 3), txn(12, 30, 12)]);
        out.clear();
        assert!(!ix.collect(45, 100, &mut out), "later segments may hold more");
        assert_eq!(out, vec![txn(40, 50, 40)]);
    }
}
