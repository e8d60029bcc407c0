//! Sparse offset and time indexes of one segment.
//!
//! Every `index_interval_bytes` of appended data, one entry maps a batch's
//! relative offset to its byte position, and one records the largest
//! timestamp of everything *before* that batch. Both sequences are
//! non-decreasing, so lookups are binary searches followed by a scan of at
//! most one interval.
//!
//! Indexes live in memory while a segment is active and are written to a
//! `.index` file when it is sealed or the log is closed cleanly. The file
//! header records the log size it covers and a CRC, so a stale or damaged
//! file is detected and rebuilt from the log instead of being trusted.

use std::path::Path;

use crate::checkpoint::write_atomic;
use crate::error::{LogError, Result};

const MAGIC: &[u8; 4] = b"FJIX";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 3 + 8 + 4 + 4 + 4;
const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 16;

/// Offset index entry: relative offset of a batch's base and its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) rel_offset: u32,
    pub(crate) pos: u32,
}

/// Time index entry: every batch before `pos` has a timestamp `<= ts_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) ts_before: i64,
    pub(crate) rel_offset: u32,
    pub(crate) pos: u32,
}

/// Both indexes of a segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    pub(crate) offsets: Vec<OffsetEntry>,
    pub(crate) times: Vec<TimeEntry>,
}

impl SegmentIndex {
    /// Position of the last indexed batch whose relative offset is `<= rel`.
    pub(crate) fn lookup_offset(&self, rel: u32) -> OffsetEntry {
        let i = self.offsets.partition_point(|e| e.rel_offset <= rel);
        if i == 0 { OffsetEntry { rel_offset: 0, pos: 0 } } else { self.offsets[i - 1] }
    }

    /// Position from which a scan finds the first batch with a timestamp
    /// `>= ts`: everything before it is older than `ts`.
    pub(crate) fn lookup_time(&self, ts: i64) -> OffsetEntry {
        let i = self.times.partition_point(|e| e.ts_before < ts);
        if i == 0 {
            OffsetEntry { rel_offset: 0, pos: 0 }
        } else {
            let e = self.times[i - 1];
            OffsetEntry { rel_offset: e.rel_offset, pos: e.pos }
        }
    }

    /// Encodes the index for a segment whose log file is `log_size` bytes.
    pub(crate) fn encode(&self, log_size: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY + self.times.len() * TIME_ENTRY);
        for e in &self.offsets {
            body.extend_from_slice(&e.rel_offset.to_be_bytes());
            body.extend_from_slice(&e.pos.to_be_bytes());
        }
        for e in &self.times {
            body.extend_from_slice(&e.ts_before.to_be_bytes());
            body.extend_from_slice(&e.rel_offset.to_be_bytes());
            body.extend_from_slice(&e.pos.to_be_bytes());
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&log_size.to_be_bytes());
        out.extend_from_slice(&(self.offsets.len() as u32).to_be_bytes());
        out.extend_from_slice(&(self.times.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes an index file, returning `None` if it is damaged, of another
    /// version, covers a different log size, or is internally inconsistent.
    pub(crate) fn decode(bytes: &[u8], log_size: u64) -> Option<SegmentIndex> {
        let header = bytes.get(..HEADER_LEN)?;
        if &header[..4] != MAGIC || header[4] != VERSION || header[5..8] != [0, 0, 0] {
            return None;
        }
        let u32_at = |p: usize| u32::from_be_bytes([header[p], header[p + 1], header[p + 2], header[p + 3]]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&header[8..16]);
        if u64::from_be_bytes(size) != log_size {
            return None;
        }
        let (n_off, n_time, crc) = (u32_at(16) as usize, u32_at(20) as usize, u32_at(24));
        let body = &bytes[HEADER_LEN..];
        if body.len() != n_off.checked_mul(OFFSET_ENTRY)?.checked_add(n_time.checked_mul(TIME_ENTRY)?)? {
            return None;
        }
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let rd32 = |b: &[u8], p: usize| u32::from_be_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]);
        let offsets: Vec<OffsetEntry> = body[..n_off * OFFSET_ENTRY]
            .chunks_exact(OFFSET_ENTRY)
            .map(|c| OffsetEntry { rel_offset: rd32(c, 0), pos: rd32(c, 4) })
            .collect();
        let times: Vec<TimeEntry> = body[n_off * OFFSET_ENTRY..]
            .chunks_exact(TIME_ENTRY)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                TimeEntry { ts_before: i64::from_be_bytes(ts), rel_offset: rd32(c, 8), pos: rd32(c, 12) }
            })
            .collect();
        let sorted_off = offsets.windows(2).all(|w| w[0].rel_offset < w[1].rel_offset && w[0].pos < w[1].pos);
        let sorted_time = times.windows(2).all(|w| w[0].ts_before <= w[1].ts_before && w[0].pos < w[1].pos);
        let in_bounds =
            offsets.iter().all(|e| u64::from(e.pos) < log_size) && times.iter().all(|e| u64::from(e.pos) < log_size);
        (sorted_off && sorted_time && in_bounds).then_some(SegmentIndex { offsets, times })
    }

    /// Writes the index file atomically.
    pub(crate) fn write(&self, path: &Path, log_size: u64) -> Result<()> {
        write_atomic(path, &self.encode(log_size))
    }

    /// Loads an index file if it exists and is valid for `log_size`.
    pub(crate) fn load(path: &Path, log_size: u64) -> Result<Option<SegmentIndex>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Self::decode(&b, log_size)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::io("read index", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(gaps: &[(u32, u32, i64)]) -> SegmentIndex {
        let (mut rel, mut pos, mut ts) = (0u32, 0u32, i64::MIN);
        let mut idx = SegmentIndex::default();
        for &(drel, dpos, t) in gaps {
            rel += drel + 1;
            pos += dpos + 1;
            ts = ts.max(t);
            idx.offsets.push(OffsetEntry { rel_offset: rel, pos });
            idx.times.push(TimeEntry { ts_before: ts, rel_offset: rel, pos });
        }
        idx
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(gaps in proptest::collection::vec((0u32..1000, 0u32..5000, any::<i64>()), 0..200)) {
            let idx = build(&gaps);
            let size = u64::from(idx.offsets.last().map_or(0, |e| e.pos)) + 1;
            let bytes = idx.encode(size);
            prop_assert_eq!(SegmentIndex::decode(&bytes, size), Some(idx.clone()));
            // A stale index (covering another size) is never trusted.
            prop_assert_eq!(SegmentIndex::decode(&bytes, size + 1), None);
        }

        #[test]
        fn offset_lookup_finds_the_floor_entry(
            gaps in proptest::collection::vec((0u32..1000, 0u32..5000, any::<i64>()), 1..200),
            target in 0u32..300_000,
        ) {
            let idx = build(&gaps);
            let got = idx.lookup_offset(target);
            let expect = idx.offsets.iter().rev().find(|e| e.rel_offset <= target).copied()
                .unwrap_or(OffsetEntry { rel_offset: 0, pos: 0 });
            prop_assert_eq!(got, expect);
        }

        #[test]
        fn time_lookup_starts_before_every_newer_batch(
            gaps in proptest::collection::vec((0u32..1000, 0u32..5000, -1000i64..1000), 1..200),
            target in -1200i64..1200,
        ) {
            let idx = build(&gaps);
            let got = idx.lookup_time(target);
            // Everything before the returned position is older than target ...
            for e in idx.times.iter().filter(|e| e.pos <= got.pos) {
                prop_assert!(e.ts_before < target);
            }
            // ... and it is the latest such entry.
            let expect = idx.times.iter().rev().find(|e| e.ts_before < target).map_or(0, |e| e.pos);
            prop_assert_eq!(got.pos, expect);
        }

        #[test]
        fn damaged_index_bytes_are_rejected_or_consistent(
            gaps in proptest::collection::vec((0u32..10, 0u32..50, any::<i64>()), 1..20),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let idx = build(&gaps);
            let size = 1 << 20;
            let mut bytes = idx.encode(size);
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert_ne!(SegmentIndex::decode(&bytes, size), Some(idx));
        }
    }
}
