//! Reads a replica's records straight from its segment files (after the
//! node stopped cleanly), so divergence is judged on what each node
//! stores, not on what a leader serves.

use std::path::Path;

use anyhow::{Context, Result};
use bytes::Bytes;
use fjord_log::batch::{BatchSplitter, decode_records};

use crate::check::{Log, Written};

/// One replica's files: its records, and who wrote each.
#[derive(Debug, Default)]
pub(crate) struct ReplicaFiles {
    /// (offset, value), in offset order.
    pub(crate) log: Log,
    /// The idempotent producer, epoch and sequence of each record written
    /// by one, by offset.
    pub(crate) writers: Vec<(i64, Written)>,
}

/// The records of the partition directory `dir`, in offset order; a
/// missing directory is an empty log (the node holds no replica).
pub(crate) fn read_replica(dir: &Path) -> Result<ReplicaFiles> {
    let mut segments: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReplicaFiles::default()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    // Segment files are named by their zero-padded base offset.
    segments.sort();
    let mut out = ReplicaFiles::default();
    for seg in segments {
        let bytes = Bytes::from(std::fs::read(&seg).with_context(|| format!("reading {}", seg.display()))?);
        let mut pos = 0usize;
        for batch in BatchSplitter::new(bytes) {
            let batch = batch.with_context(|| format!("the batch at byte {pos} of {}", seg.display()))?;
            pos += batch.len();
            let (header, records) = decode_records(&batch)
                .with_context(|| format!("the batch ending at byte {pos} of {}", seg.display()))?;
            if header.is_control() {
                continue;
            }
            for r in records {
                let value = r.value.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default();
                if header.producer_id >= 0 {
                    let delta = (r.offset - header.base_offset) as i64;
                    let sequence = (i64::from(header.base_sequence) + delta) as i32;
                    let by = Written { producer_id: header.producer_id, epoch: header.producer_epoch, sequence };
                    out.writers.push((r.offset as i64, by));
                }
                out.log.push((r.offset as i64, value));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_log::batch::{BatchBuilder, NewRecord, set_base_offset};

    #[test]
    fn records_come_back_with_their_offsets_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let batch = |base: u64, values: &[&str]| {
            let mut b = BatchBuilder::new(1_700_000_000_000);
            for v in values {
                b.push(&NewRecord { value: Some(Bytes::from(v.to_string())), ..Default::default() });
            }
            let mut bytes = b.try_build().unwrap().to_vec();
            set_base_offset(&mut bytes, base);
            bytes
        };
        let mut first = batch(0, &["a:0", "a:1"]);
        first.extend(batch(2, &["a:2"]));
        std::fs::write(dir.path().join("00000000000000000000.log"), first).unwrap();
        std::fs::write(dir.path().join("00000000000000000003.log"), batch(3, &["b:0"])).unwrap();
        std::fs::write(dir.path().join("00000000000000000000.index"), b"ignored").unwrap();
        let log = read_replica(dir.path()).unwrap().log;
        let want: Log = vec![(0, "a:0".into()), (1, "a:1".into()), (2, "a:2".into()), (3, "b:0".into())];
        assert_eq!(log, want);
        assert!(read_replica(&dir.path().join("absent")).unwrap().log.is_empty());
    }
}
