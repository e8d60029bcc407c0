//! Read-only inspection of a log directory that may belong to a stopped
//! broker (`fjord topic list --data-dir`): no recovery, no index rebuild,
//! no file is created, changed or removed, so it is safe next to a running
//! broker too (its answer is then a moment's picture).

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{CLEAN_SHUTDOWN, LOG_START};
use crate::batch::{BatchHeader, HEADER_LEN};
use crate::checkpoint::read_u64;
use crate::error::{LogError, Result};

/// What a log directory holds, read from its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    /// First readable offset: the `log-start-offset` checkpoint or the first
    /// segment's base, whichever is later.
    pub log_start_offset: u64,
    /// The offset after the last whole batch of the last segment (a torn
    /// tail is not counted: recovery would cut it).
    pub log_end_offset: u64,
    /// Bytes in segment files.
    pub size_bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// Largest timestamp of the last whole batch, if any.
    pub last_batch_max_timestamp: Option<i64>,
    /// The log was closed cleanly (and not opened since).
    pub clean_shutdown: bool,
}

/// Summarises the log in `dir` without opening it. Reads one batch header
/// per batch of the last segment only.
pub fn inspect(dir: &Path) -> Result<LogSummary> {
    let mut bases: Vec<(u64, u64)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io("list log directory", dir, e))? {
        let entry = entry.map_err(|e| LogError::io("list log directory", dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        if let Some(base) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()) {
            let len = entry.metadata().map_err(|e| LogError::io("stat segment", &path, e))?.len();
            bases.push((base, len));
        }
    }
    bases.sort_unstable();
    let first = bases.first().map_or(0, |(b, _)| *b);
    let mut summary = LogSummary {
        log_start_offset: read_u64(&dir.join(LOG_START)).unwrap_or(0).max(first),
        log_end_offset: first,
        size_bytes: bases.iter().map(|(_, len)| len).sum(),
        segments: bases.len(),
        last_batch_max_timestamp: None,
        clean_shutdown: dir.join(CLEAN_SHUTDOWN).exists(),
    };
    let Some(&(base, len)) = bases.last() else { return Ok(summary) };
    summary.log_end_offset = base;
    let path = dir.join(format!("{base:020}.log"));
    let file = std::fs::File::open(&path).map_err(|e| LogError::io("open segment", &path, e))?;
    let (mut pos, mut header) = (0u64, [0u8; HEADER_LEN]);
    while pos + HEADER_LEN as u64 <= len {
        if file.read_exact_at(&mut header, pos).is_err() {
            break;
        }
        let Ok(h) = BatchHeader::parse(&header) else { break };
        let end = pos + h.total_len() as u64;
        if end > len || h.total_len() < HEADER_LEN {
            break;
        }
        summary.log_end_offset = h.last_offset() + 1;
        summary.last_batch_max_timestamp = Some(h.max_timestamp);
        pos = end;
    }
    summary.log_end_offset = summary.log_end_offset.max(summary.log_start_offset);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::batch::{BatchBuilder, NewRecord};
    use crate::{AppendOrigin, Log, LogConfig, ManualClock};

    fn append(log: &Log, n: usize) {
        let mut b = BatchBuilder::new(1_000);
        for i in 0..n {
            b.push(&NewRecord {
                timestamp: Some(1_000 + i as i64),
                key: None,
                value: Some(Bytes::from("v")),
                headers: vec![],
            });
        }
        log.append(b.build(), AppendOrigin::Leader { epoch: 0 }).unwrap();
    }

    #[test]
    fn summarises_without_opening_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes: 200, ..LogConfig::default() };
        let log = Log::open(dir.path(), cfg, Arc::new(ManualClock::new(1_000))).unwrap();
        for _ in 0..5 {
            append(&log, 3);
        }
        log.set_high_watermark(15);
        log.delete_records_before(4).unwrap();
        log.close().unwrap();
        let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();

        let s = inspect(dir.path()).unwrap();
        assert_eq!((s.log_start_offset, s.log_end_offset), (4, 15));
        assert!(s.segments > 1 && s.clean_shutdown);
        assert_eq!(s.last_batch_max_timestamp, Some(1_002));
        let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(before, after, "inspection creates and removes nothing");

        // Half a batch at the end is not counted.
        let last = after.iter().filter(|p| p.extension().is_some_and(|e| e == "log")).max().unwrap();
        let mut bytes = std::fs::read(last).unwrap();
        let whole = bytes.clone();
        bytes.extend_from_slice(&whole[..whole.len() / 2]);
        std::fs::write(last, &bytes).unwrap();
        assert_eq!(inspect(dir.path()).unwrap().log_end_offset, 15);
    }
}
