//! Reads: byte ranges for zero-copy serving, decoded records for protocols
//! that need them, and lookups by timestamp and key.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

use super::Log;
use crate::batch::{self, BatchSplitter, Record};
use crate::error::{LogError, Result};
use crate::segment::Segment;

/// Upper bound of what a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// Consumers: only offsets below the high watermark.
    HighWatermark,
    /// Replicas and tools: everything written.
    LogEnd,
    /// `read_committed` consumers: only offsets below this one (their last
    /// stable offset) and below the high watermark.
    Below(u64),
}

/// A byte range of a segment file holding whole batches (the last one may
/// be cut by `max_bytes`, as Kafka allows). Keeps the file open, so it stays
/// readable even if retention deletes the segment meanwhile.
#[derive(Debug, Clone)]
pub struct LogSlice {
    file: Arc<File>,
    position: u64,
    len: usize,
    /// Base offset of the first batch in the slice.
    pub first_offset: u64,
    /// The offset after the last whole batch in the slice (a slice cut by
    /// `max_bytes` may end inside a batch, which consumers discard).
    pub end_offset: u64,
}

impl LogSlice {
    /// The segment file, for `sendfile`-style zero-copy transfer.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Position of the slice in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the bytes into memory.
    pub fn to_bytes(&self) -> Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut b = bytes::BytesMut::zeroed(self.len);
        self.file.read_exact_at(&mut b, self.position).map_err(|e| LogError::io("read segment", "<slice>", e))?;
        Ok(b.freeze())
    }
}

/// Result of [`Log::read`].
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Data, `None` when nothing is available at the offset yet.
    pub slice: Option<LogSlice>,
    /// High watermark at the time of the read.
    pub high_watermark: u64,
    /// Log start offset at the time of the read.
    pub log_start_offset: u64,
    /// Log end offset at the time of the read.
    pub log_end_offset: u64,
}

/// The offset after the last batch that lies wholly within `len` bytes from
/// `pos`: one header read per batch, only for slices cut by `max_bytes`.
fn whole_batches_end(seg: &Segment, pos: u64, len: usize) -> Result<u64> {
    let (end, mut at) = (pos + len as u64, pos);
    let mut next = seg.read_header(pos)?.base_offset;
    while at < end {
        let h = seg.read_header(at)?;
        if at + h.total_len() as u64 > end {
            break;
        }
        next = h.last_offset() + 1;
        at += h.total_len() as u64;
    }
    Ok(next)
}

impl Log {
    /// Reads whole batches starting with the one containing `offset`, up to
    /// `max_bytes` (but always at least one whole batch, so a batch larger
    /// than `max_bytes` can still be consumed).
    pub fn read(&self, offset: u64, max_bytes: usize, bound: ReadBound) -> Result<ReadResult> {
        let (segments, hw, start, end) = {
            let inner = self.inner.read();
            let segs: Vec<Arc<Segment>> = inner
                .segments
                .range(..=offset)
                .next_back()
                .into_iter()
                .chain(inner.segments.range(offset + 1..))
                // The floor segment holds `offset` unless it ends exactly
                // there; a couple more cover that without cloning them all.
                .take(3)
                .map(|(_, s)| s.clone())
                .collect();
            (segs, inner.high_watermark, inner.log_start, inner.log_end)
        };
        let mut result = ReadResult { slice: None, high_watermark: hw, log_start_offset: start, log_end_offset: end };
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, log_start: start, log_end: end });
        }
        let upper = match bound {
            ReadBound::HighWatermark => hw,
            ReadBound::LogEnd => end,
            ReadBound::Below(o) => o.min(hw),
        };
        for seg in segments {
            if offset >= upper || seg.base_offset >= upper {
                break;
            }
            let size = seg.size();
            // Batches at or past `upper` are invisible: find where they begin.
            let (limit, limit_offset) = if upper >= seg.next_offset() {
                (size, seg.next_offset())
            } else {
                seg.translate_offset(upper, size)?.map_or((size, seg.next_offset()), |(pos, h)| (pos, h.base_offset))
            };
            if let Some((pos, h)) = seg.translate_offset(offset, limit)? {
                let available = (limit - pos) as usize;
                let len = available.min(max_bytes.max(h.total_len()));
                let end_offset = if len == available { limit_offset } else { whole_batches_end(&seg, pos, len)? };
                result.slice = Some(LogSlice {
                    file: seg.file.clone(),
                    position: pos,
                    len,
                    first_offset: h.base_offset,
                    end_offset,
                });
                return Ok(result);
            }
        }
        Ok(result)
    }

    /// Reads and decodes records with offsets `>= offset`, up to about
    /// `max_bytes` of batches. Batch CRCs are verified: a corrupt batch is
    /// an error, never data.
    pub fn read_records(&self, offset: u64, max_bytes: usize, bound: ReadBound) -> Result<Vec<Record>> {
        let r = self.read(offset, max_bytes, bound)?;
        let Some(slice) = r.slice else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for b in BatchSplitter::new(slice.to_bytes()?) {
            let b = b?;
            batch::validate(&b)?;
            let (h, recs) = batch::decode_records(&b)?;
            if h.is_control() {
                continue;
            }
            out.extend(recs.into_iter().filter(|r| r.offset >= offset));
        }
        Ok(out)
    }

    /// Reads and decodes records with offsets `>= offset`, as
    /// [`Log::read_records`], leaving out those of the `aborted`
    /// transactions (a transactional batch of an entry's producer whose
    /// base offset lies in its `[first, last]`); returns them with the
    /// offset after the last whole batch read (past control batches and
    /// aborted ones too: where a reader goes on from).
    pub fn read_records_skipping(
        &self,
        offset: u64,
        max_bytes: usize,
        bound: ReadBound,
        aborted: &[crate::AbortedTxn],
    ) -> Result<(Vec<Record>, u64)> {
        let r = self.read(offset, max_bytes, bound)?;
        let Some(slice) = r.slice else { return Ok((Vec::new(), offset)) };
        let mut out = Vec::new();
        let mut next = offset;
        for b in BatchSplitter::new(slice.to_bytes()?) {
            let b = b?;
            let h = batch::validate(&b)?;
            next = next.max(h.next_offset());
            let aborted_batch = h.is_transactional()
                && aborted.iter().any(|a| {
                    a.producer_id == h.producer_id && (a.first_offset..=a.last_offset).contains(&h.base_offset)
                });
            if h.is_control() || aborted_batch {
                continue;
            }
            let (_, recs) = batch::decode_records(&b)?;
            out.extend(recs.into_iter().filter(|r| r.offset >= offset));
        }
        Ok((out, next))
    }

    /// The earliest offset whose timestamp is `>= ts`, with that
    /// batch's max timestamp; `None` if every record is older.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(u64, i64)>> {
        let (segments, start) = {
            let inner = self.inner.read();
            (inner.segments.values().cloned().collect::<Vec<_>>(), inner.log_start)
        };
        for seg in segments {
            if seg.meta.read().max_timestamp < ts {
                continue;
            }
            if let Some((_, h)) = seg.find_by_time(ts, seg.size())? {
                // Precise within the batch for uncompressed data.
                if let Ok(Some(slice)) =
                    self.read(h.base_offset.max(start), h.total_len(), ReadBound::LogEnd).map(|r| r.slice)
                {
                    let bytes = slice.to_bytes()?;
                    if let Ok((_, recs)) = batch::decode_records(&bytes)
                        && let Some(r) = recs.iter().find(|r| r.timestamp >= ts && r.offset >= start)
                    {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
                return Ok(Some((h.base_offset.max(start), h.max_timestamp)));
            }
        }
        Ok(None)
    }

    /// The offset and timestamp of the record with the largest timestamp
    /// (Kafka's `MAX_TIMESTAMP` list-offsets query).
    pub fn max_timestamp_offset(&self) -> Result<Option<(u64, i64)>> {
        let Some(ts) = self.stats().max_timestamp else { return Ok(None) };
        self.offset_for_timestamp(ts)
    }

    /// Records whose key, or an indexed header value, equals `key`, oldest
    /// first, at most `limit`. Requires the key index; without it this
    /// returns an error rather than scanning the partition.
    pub fn lookup_key(&self, key: &[u8], limit: usize) -> Result<Vec<Record>> {
        let (segments, start, end) = {
            let inner = self.inner.read();
            (inner.segments.values().cloned().collect::<Vec<_>>(), inner.log_start, inner.log_end)
        };
        let header_keys = self.config.read().key_index.header_keys.clone();
        let mut out = Vec::new();
        for seg in segments {
            if !seg.has_key_index() {
                return Err(LogError::InvalidArgument(format!(
                    "key index is disabled for {} (segment {} has none): enable it with the topic config \
                     fjord.key.index=true (`fjord topic alter <topic> -c fjord.key.index=true`; segments \
                     written before keep none) or for every topic with storage.key_index = true",
                    self.dir.display(),
                    seg.base_offset
                )));
            }
            let mut offsets = seg.lookup_key(key)?;
            offsets.sort_unstable();
            offsets.dedup();
            for offset in offsets {
                if out.len() >= limit {
                    return Ok(out);
                }
                if offset < start || offset >= end {
                    continue;
                }
                let recs = self.read_records(offset, 1, super::ReadBound::LogEnd)?;
                if let Some(r) = recs.into_iter().find(|r| r.offset == offset) {
                    let hit = r.key.as_deref() == Some(key)
                        || r.headers.iter().any(|h| {
                            h.value.as_deref() == Some(key)
                                && header_keys.iter().any(|k| k.as_slice() == h.key.as_ref())
                        });
                    if hit {
                        out.push(r);
                    }
                }
            }
        }
        Ok(out)
    }
}
