//! Aborted transactions: the log keeps each segment's entries beside it
//! (`crate::txn_index`) and answers a `read_committed` fetch's question
//! "which aborted transactions overlap what I read".

use super::Log;
use crate::error::{LogError, Result};
use crate::txn_index::AbortedTxn;

impl Log {
    /// Adds aborted transactions, in marker order, to the index of the
    /// segment holding each one's marker; an entry the index holds already
    /// (a replay) is skipped, one whose marker the log does not hold is
    /// refused. An entry added to a sealed segment is fsynced at once, one
    /// of the active segment with the segment's next fsync. Blocking file
    /// I/O.
    pub fn add_aborted(&self, entries: &[AbortedTxn]) -> Result<()> {
        let _w = self.writer.lock();
        let inner = self.inner.read();
        let active = inner.segments.keys().next_back().copied();
        for e in entries {
            if e.last_offset >= inner.log_end || e.first_offset > e.last_offset {
                return Err(LogError::Internal(format!(
                    "aborted transaction {}..={} of producer {} is not in {} (log end {})",
                    e.first_offset,
                    e.last_offset,
                    e.producer_id,
                    self.dir.display(),
                    inner.log_end
                )));
            }
            // Below the log start: deleted with its segment already.
            let Some((base, seg)) = inner.segments.range(..=e.last_offset).next_back() else { continue };
            let mut ix = seg.txn.lock();
            if ix.add(*e)? && Some(*base) != active {
                ix.sync().map_err(|err| LogError::io("fsync transaction index", &seg.log_path, err))?;
            }
        }
        Ok(())
    }

    /// The aborted transactions overlapping `[from, to)`: those whose
    /// marker is at or past `from` and that began before `to` (Kafka's
    /// `collectAbortedTxns` for a `read_committed` fetch from `from` up to
    /// the last stable offset `to`).
    pub fn aborted(&self, from: u64, to: u64) -> Vec<AbortedTxn> {
        let inner = self.inner.read();
        let mut out = Vec::new();
        let first = inner.segments.range(..=from).next_back().map_or(0, |(base, _)| *base);
        for seg in inner.segments.range(first..).map(|(_, s)| s) {
            if seg.txn.lock().collect(from, to, &mut out) {
                break;
            }
        }
        out
    }

    /// Where the last open rescanned the log from (its recovery point)
    /// after an unclean shutdown; `None` after a clean one. An owner that
    /// derives sidecar entries from the log (aborted transactions) replays
    /// from here: entries for markers in a rescanned tail may have been
    /// lost with the crash.
    pub fn rescanned_from(&self) -> Option<u64> {
        self.rescanned_from
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use bytes::Bytes;

    use crate::batch::{BatchBuilder, NewRecord};
    use crate::{AbortedTxn, AppendOrigin, Log, LogConfig, SystemClock};

    fn one(log: &Log) -> u64 {
        let mut b = BatchBuilder::new(1_700_000_000_000);
        b.push(&NewRecord { value: Some(Bytes::from_static(&[7u8; 100])), ..Default::default() });
        log.append(b.build(), AppendOrigin::Leader { epoch: 0 }).unwrap().base_offset
    }

    fn txn(first: u64, last: u64) -> AbortedTxn {
        AbortedTxn { producer_id: 1, first_offset: first, last_offset: last, last_stable_offset: first }
    }

    fn files(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
    }

    #[test]
    fn entries_live_with_their_segments_through_reopens_truncation_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes: 400, retention_ms: None, ..LogConfig::default() };
        let log = Log::open(dir.path(), cfg.clone(), Arc::new(SystemClock)).unwrap();
        for _ in 0..12 {
            one(&log);
        }
        assert!(log.stats().segments >= 3);
        log.add_aborted(&[txn(0, 2), txn(1, 5), txn(6, 9)]).unwrap();
        log.add_aborted(&[txn(6, 9)]).unwrap();
        assert!(log.add_aborted(&[txn(10, 12)]).is_err(), "no marker at 12 yet");
        assert_eq!(log.aborted(3, 7), vec![txn(1, 5), txn(6, 9)]);
        log.close().unwrap();
        drop(log);
        let log = Log::open(dir.path(), cfg.clone(), Arc::new(SystemClock)).unwrap();
        assert_eq!(log.rescanned_from(), None, "closed cleanly");
        assert_eq!(log.aborted(0, 12), vec![txn(0, 2), txn(1, 5), txn(6, 9)]);
        log.truncate_to(7).unwrap();
        assert_eq!(log.aborted(0, 12), vec![txn(0, 2), txn(1, 5)], "the cut took the abort at 9");
        drop(log);
        let log = Log::open(dir.path(), cfg, Arc::new(SystemClock)).unwrap();
        assert!(log.rescanned_from().is_some(), "dropped without a close");
        assert_eq!(log.aborted(0, 12), vec![txn(0, 2), txn(1, 5)]);
        log.delete_records_before(6).unwrap();
        log.enforce_retention().unwrap();
        let names = files(dir.path());
        let bases: Vec<u64> = names.iter().filter_map(|n| n.strip_suffix(".log")).map(|s| s.parse().unwrap()).collect();
        let first = *bases.iter().min().unwrap();
        assert!(first > 0, "retention deleted segments");
        assert!(log.aborted(0, 12).iter().all(|e| e.last_offset >= first), "entries went with their segments");
        let indexes = names.iter().filter(|n| n.ends_with(".txnindex")).count();
        assert!(indexes <= bases.len(), "no index outlives its segment: {names:?}");
    }
}
