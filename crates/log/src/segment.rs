//! One segment: a log file named after its base offset, plus its indexes.
//!
//! Invariants worth naming:
//! - the file holds only whole, CRC-valid batches up to `size`; bytes past
//!   `size` (a write in progress, or a torn tail after a crash) are never read;
//! - only the log's single writer appends, so `size` changes under the
//!   writer lock and readers see a batch only after it is fully written;
//! - index entries always point at batch starts below `size`.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::error::{LogError, Result};
use crate::index::{OffsetEntry, SegmentIndex, TimeEntry};
use crate::key_index::{KeyIndex, key_hash};
use crate::txn_index::TxnIndex;

/// A batch's position in its request buffer and its header.
pub(crate) type Located = (usize, BatchHeader);

/// The batches of one append request, ready to be written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) batches: &'a [Located],
}

/// How records are indexed by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndexConfig {
    /// Whether the key index is maintained at all.
    pub enabled: bool,
    /// Header keys whose values are indexed as keys too (the record key is
    /// always indexed when enabled).
    pub header_keys: Vec<Vec<u8>>,
}

#[derive(Debug)]
pub(crate) struct SegMeta {
    pub(crate) size: u64,
    pub(crate) next_offset: u64,
    /// Largest batch timestamp in the segment, `i64::MIN` when empty.
    pub(crate) max_timestamp: i64,
    /// Wall-clock time of the first append (segment age for rolling).
    pub(crate) first_append_ms: Option<i64>,
    index: SegmentIndex,
    bytes_since_entry: u64,
    keys: KeyIndex,
}

/// What a recovery scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    /// Bytes removed from the tail (torn or corrupt).
    pub(crate) truncated_bytes: u64,
    /// Whether the scan stopped at a corrupt batch rather than a clean end.
    pub(crate) stopped_early: bool,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    pub(crate) log_path: PathBuf,
    index_path: PathBuf,
    keys_path: PathBuf,
    pub(crate) file: Arc<File>,
    pub(crate) meta: RwLock<SegMeta>,
    /// Its aborted transactions (`<base>.txnindex`).
    pub(crate) txn: Mutex<TxnIndex>,
}

pub(crate) fn file_stem(base: u64) -> String {
    format!("{base:020}")
}

fn index_keys(batch_bytes: &[u8], cfg: &KeyIndexConfig) -> Vec<(u64, u32)> {
    // Unreadable batches (bad codec payload) simply contribute no keys.
    let Ok((header, body)) = batch::records_slice(batch_bytes) else { return Vec::new() };
    if header.is_control() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for rec in batch::RecordIter::new(header, &body).flatten() {
        let rel = rec.offset_delta as u32;
        if let Some(k) = rec.key {
            out.push((key_hash(k), rel));
        }
        for (hk, hv) in &rec.headers {
            if let Some(v) = hv
                && cfg.header_keys.iter().any(|want| want.as_slice() == *hk)
            {
                out.push((key_hash(v), rel));
            }
        }
    }
    out
}

impl Segment {
    fn paths(dir: &Path, base: u64) -> (PathBuf, PathBuf, PathBuf) {
        let stem = file_stem(base);
        (dir.join(format!("{stem}.log")), dir.join(format!("{stem}.index")), dir.join(format!("{stem}.keys")))
    }

    fn new_meta(base: u64, key_index: bool) -> SegMeta {
        SegMeta {
            size: 0,
            next_offset: base,
            max_timestamp: i64::MIN,
            first_append_ms: None,
            index: SegmentIndex::default(),
            bytes_since_entry: 0,
            keys: KeyIndex::new(key_index),
        }
    }

    /// Creates a new, empty segment.
    pub(crate) fn create(dir: &Path, base: u64, key_index: bool) -> Result<Segment> {
        let (log_path, index_path, keys_path) = Self::paths(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| LogError::io("create segment", &log_path, e))?;
        for stale in [&index_path, &keys_path] {
            let _ = std::fs::remove_file(stale);
        }
        Ok(Segment {
            base_offset: base,
            log_path,
            index_path,
            keys_path,
            file: Arc::new(file),
            meta: RwLock::new(Self::new_meta(base, key_index)),
            txn: Mutex::new(TxnIndex::create(TxnIndex::path_for(dir, &file_stem(base)))),
        })
    }

    /// Opens an existing segment. With `trust_index`, valid index files are
    /// used as they are; otherwise (or when they are missing or stale) the
    /// segment is scanned batch by batch, which validates every CRC and cuts
    /// off a torn or corrupt tail.
    pub(crate) fn open(
        dir: &Path,
        base: u64,
        trust_index: bool,
        index_interval: u32,
        keys: &KeyIndexConfig,
    ) -> Result<(Segment, ScanOutcome)> {
        let (log_path, index_path, keys_path) = Self::paths(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| LogError::io("open segment", &log_path, e))?;
        let size = file.metadata().map_err(|e| LogError::io("stat segment", &log_path, e))?.len();
        let seg = Segment {
            base_offset: base,
            log_path,
            index_path,
            keys_path,
            file: Arc::new(file),
            meta: RwLock::new(Self::new_meta(base, keys.enabled)),
            // Loaded below, once the scan knows where the batches end.
            txn: Mutex::new(TxnIndex::create_in_memory(TxnIndex::path_for(dir, &file_stem(base)))),
        };
        let outcome = match trust_index {
            true => match seg.try_load_indexes(size, keys)? {
                Some(outcome) => outcome,
                None => seg.rebuild(index_interval, keys)?,
            },
            false => seg.rebuild(index_interval, keys)?,
        };
        *seg.txn.lock() = TxnIndex::open(TxnIndex::path_for(dir, &file_stem(base)), seg.next_offset())?;
        // Age for rolling survives restarts: like Kafka, it counts from the
        // first batch's timestamp.
        if seg.size() > 0 {
            let first = seg.read_header(0)?;
            seg.meta.write().first_append_ms = Some(first.max_timestamp);
        }
        Ok((seg, outcome))
    }

    fn try_load_indexes(&self, size: u64, keys: &KeyIndexConfig) -> Result<Option<ScanOutcome>> {
        let Some(index) = SegmentIndex::load(&self.index_path, size)? else { return Ok(None) };
        let key_index = if keys.enabled {
            match KeyIndex::load(&self.keys_path, size)? {
                Some(k) => k,
                None => return Ok(None),
            }
        } else {
            KeyIndex::Disabled
        };
        // The last batch gives the next offset; the time index the max timestamp
        // of everything before the last entry, so read the tail batches.
        let start = index.offsets.last().map_or(0, |e| u64::from(e.pos));
        let mut pos = start;
        let mut next = self.base_offset;
        let mut max_ts = index.times.last().map_or(i64::MIN, |e| e.ts_before);
        while pos < size {
            let h = self.read_header(pos)?;
            next = h.next_offset();
            max_ts = max_ts.max(h.max_timestamp);
            pos += h.total_len() as u64;
        }
        if pos != size {
            return Ok(None);
        }
        let mut m = self.meta.write();
        m.size = size;
        m.next_offset = next;
        m.max_timestamp = max_ts;
        m.index = index;
        m.keys = key_index;
        Ok(Some(ScanOutcome::default()))
    }

    /// Scans the whole file, rebuilding indexes and truncating at the first
    /// incomplete or invalid batch.
    fn rebuild(&self, index_interval: u32, keys: &KeyIndexConfig) -> Result<ScanOutcome> {
        let file_len = self.file.metadata().map_err(|e| LogError::io("stat segment", &self.log_path, e))?.len();
        // Positioned reads from byte 0: the file's shared cursor is wherever
        // an earlier scan of this segment left it (a truncation rescans the
        // segment while it is open), and reading from there would take the
        // tail of the file for its head and cut the segment short.
        let mut reader = BufReader::with_capacity(1 << 20, ReadAt { file: &self.file, pos: 0 });
        {
            let mut m = self.meta.write();
            *m = Self::new_meta(self.base_offset, keys.enabled);
        }
        let mut pos = 0u64;
        let mut stopped_early = false;
        let mut buf = Vec::new();
        loop {
            let mut head = [0u8; LOG_OVERHEAD];
            match read_full(&mut reader, &mut head) {
                Ok(0) => break,
                Ok(n) if n < LOG_OVERHEAD => {
                    stopped_early = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => return Err(LogError::io("read segment", &self.log_path, e)),
            }
            let total = match batch::peek_total_len(&head) {
                Some(Ok(t)) if (t as u64) <= file_len - pos => t,
                _ => {
                    stopped_early = true;
                    break;
                }
            };
            buf.clear();
            buf.extend_from_slice(&head);
            buf.resize(total, 0);
            let n = read_full(&mut reader, &mut buf[LOG_OVERHEAD..])
                .map_err(|e| LogError::io("read segment", &self.log_path, e))?;
            if n < total - LOG_OVERHEAD {
                stopped_early = true;
                break;
            }
            let next_offset = self.meta.read().next_offset;
            let problem = match batch::validate(&buf) {
                Err(e) => Some(e.to_string()),
                Ok(h) if h.base_offset < next_offset => Some(format!("offset {} goes backwards", h.base_offset)),
                // Relative offsets in the indexes are 32-bit.
                Ok(h) if h.last_offset() - self.base_offset > u64::from(u32::MAX) => {
                    Some(format!("offset {} is beyond the segment's range", h.last_offset()))
                }
                Ok(h) => {
                    let key_entries = if keys.enabled { index_keys(&buf, keys) } else { Vec::new() };
                    self.account_batch(pos, &h, &key_entries, index_interval, None);
                    None
                }
            };
            if let Some(problem) = problem {
                tracing::warn!(segment = %self.log_path.display(), pos, problem, "invalid batch; truncating");
                stopped_early = true;
                break;
            }
            pos += total as u64;
        }
        let truncated = file_len - pos;
        if truncated > 0 {
            tracing::warn!(segment = %self.log_path.display(), valid_bytes = pos, truncated, "truncating torn or corrupt segment tail");
            self.file.set_len(pos).map_err(|e| LogError::io("truncate segment", &self.log_path, e))?;
            crate::instrument::fsync(|| self.file.sync_all())
                .map_err(|e| LogError::io("fsync segment", &self.log_path, e))?;
        }
        Ok(ScanOutcome { truncated_bytes: truncated, stopped_early })
    }

    /// Records a batch written at `pos` in the in-memory metadata.
    fn account_batch(&self, pos: u64, h: &BatchHeader, keys: &[(u64, u32)], interval: u32, now: Option<i64>) {
        let mut m = self.meta.write();
        let rel = (h.base_offset - self.base_offset) as u32;
        if pos > 0 && m.bytes_since_entry >= u64::from(interval) {
            let ts_before = m.max_timestamp;
            m.index.offsets.push(OffsetEntry { rel_offset: rel, pos: pos as u32 });
            m.index.times.push(TimeEntry { ts_before, rel_offset: rel, pos: pos as u32 });
            m.bytes_since_entry = 0;
        }
        m.bytes_since_entry += h.total_len() as u64;
        for &(hash, r) in keys {
            m.keys.insert(hash, rel + r);
        }
        m.size = pos + h.total_len() as u64;
        m.next_offset = h.next_offset();
        m.max_timestamp = m.max_timestamp.max(h.max_timestamp);
        if m.first_append_ms.is_none() {
            m.first_append_ms = now;
        }
    }

    /// Appends validated batches (already carrying their final offsets) of
    /// several requests with one vectored write. Only the log's writer calls
    /// this; readers see the batches once `size` moves past them.
    pub(crate) fn append(&self, parts: &[Part<'_>], interval: u32, keys: &KeyIndexConfig, now: i64) -> Result<()> {
        let pos = self.meta.read().size;
        let bufs: Vec<&[u8]> = parts.iter().map(|p| p.data).collect();
        crate::log::pwrite_all(&self.file, &bufs, pos).map_err(|e| LogError::io("write segment", &self.log_path, e))?;
        let mut at = pos;
        for Part { data, batches } in parts {
            for &(off, ref h) in *batches {
                let key_entries =
                    if keys.enabled { index_keys(&data[off..off + h.total_len()], keys) } else { Vec::new() };
                self.account_batch(at + off as u64, h, &key_entries, interval, Some(now));
            }
            at += data.len() as u64;
        }
        Ok(())
    }

    pub(crate) fn size(&self) -> u64 {
        self.meta.read().size
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.meta.read().next_offset
    }

    pub(crate) fn read_header(&self, pos: u64) -> Result<BatchHeader> {
        let mut h = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut h, pos).map_err(|e| LogError::io("read segment", &self.log_path, e))?;
        Ok(BatchHeader::parse(&h)?)
    }

    /// Finds the first batch whose last offset is `>= offset`, scanning from
    /// the nearest index entry. Returns its position and header, or `None`
    /// if no batch below `limit` qualifies.
    pub(crate) fn translate_offset(&self, offset: u64, limit: u64) -> Result<Option<(u64, BatchHeader)>> {
        let start = {
            let m = self.meta.read();
            let rel = offset.saturating_sub(self.base_offset).min(u64::from(u32::MAX)) as u32;
            u64::from(m.index.lookup_offset(rel).pos)
        };
        self.scan_from(start, limit, |h| h.last_offset() >= offset)
    }

    /// Finds the first batch with `max_timestamp >= ts`.
    pub(crate) fn find_by_time(&self, ts: i64, limit: u64) -> Result<Option<(u64, BatchHeader)>> {
        let start = u64::from(self.meta.read().index.lookup_time(ts).pos);
        self.scan_from(start, limit, |h| h.max_timestamp >= ts)
    }

    fn scan_from(
        &self,
        mut pos: u64,
        limit: u64,
        found: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>> {
        while pos < limit {
            let h = self.read_header(pos)?;
            if found(&h) {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Relative offsets of records whose key (or indexed header) hashes like `key`.
    pub(crate) fn lookup_key(&self, key: &[u8]) -> Result<Vec<u64>> {
        let m = self.meta.read();
        let rels = m.keys.lookup(key_hash(key), &self.keys_path)?;
        Ok(rels.into_iter().map(|r| self.base_offset + u64::from(r)).collect())
    }

    pub(crate) fn has_key_index(&self) -> bool {
        self.meta.read().keys.is_enabled()
    }

    /// Fsyncs the segment's data and its aborted-transaction entries.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        crate::instrument::fsync(|| self.file.sync_data())?;
        self.txn.lock().sync()
    }

    /// Writes the index files for the current contents (at seal or clean close).
    pub(crate) fn write_indexes(&self) -> Result<()> {
        let mut m = self.meta.write();
        let size = m.size;
        m.index.write(&self.index_path, size)?;
        m.keys.seal(&self.keys_path, size)
    }

    /// Cuts the segment at `pos` (a batch boundary) and rebuilds its metadata.
    pub(crate) fn truncate_to(&self, pos: u64, interval: u32, keys: &KeyIndexConfig) -> Result<()> {
        self.file.set_len(pos).map_err(|e| LogError::io("truncate segment", &self.log_path, e))?;
        crate::instrument::fsync(|| self.file.sync_all())
            .map_err(|e| LogError::io("fsync segment", &self.log_path, e))?;
        for stale in [&self.index_path, &self.keys_path] {
            let _ = std::fs::remove_file(stale);
        }
        self.rebuild(interval, keys)?;
        self.txn.lock().truncate(self.next_offset())
    }

    /// Deletes the segment's files. Readers that still hold the file handle
    /// keep reading the unlinked data safely.
    pub(crate) fn delete_files(&self) -> Result<()> {
        Self::delete_files_at(self.log_path.parent().unwrap_or(Path::new(".")), self.base_offset)
    }

    /// Deletes the files of the segment at `base` in `dir`.
    pub(crate) fn delete_files_at(dir: &Path, base: u64) -> Result<()> {
        let (log, index, keys) = Self::paths(dir, base);
        let txn = TxnIndex::path_for(dir, &file_stem(base));
        for p in [&log, &index, &keys, &txn] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("delete segment file", p, e)),
            }
        }
        Ok(())
    }
}

/// Reads until `buf` is full or EOF; returns the bytes read.
/// Sequential reads of a file through positioned reads (`pread`), which
/// never touch the file's shared cursor.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
