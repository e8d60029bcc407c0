//! The Raft log on disk: one file of frames, and the vote, the purge point
//! and the committed log id as small atomically replaced files.
//!
//! `raft.log` is a sequence of frames
//! `[u32 len LE][u32 crc32c(body) LE][body]`, the body being one openraft
//! `Entry` as JSON. Frames are only ever appended at the end, cut off the
//! end (`truncate`, a Raft conflict) or dropped from the front by rewriting
//! the file (after `purge`). So the live entries are consecutive frames with
//! consecutive indexes, preceded by purged frames not yet reclaimed.
//!
//! Durability, in the order the Raft log needs it:
//! - `append` writes the frames and fsyncs before it returns.
//! - `truncate` cuts at a frame boundary and fsyncs: no hole, no partial
//!   frame, and the cut entries cannot come back after a crash.
//! - `purge` persists the purge point first (`purged.json`), then forgets
//!   the entries; a crash in between leaves frames that opening skips. The
//!   file is rewritten (copy, fsync, rename, fsync the directory) when
//!   purged bytes dominate; a crash leaves the old or the new file, both
//!   consistent with the purge point.
//!
//! Opening scans every frame. A damaged frame (short, zero length, CRC
//! mismatch, running past the end) with no intact frame after it is a torn
//! tail of a write the crash interrupted, never acknowledged: it is cut off
//! with a warning. A damaged frame followed by an intact one, a length
//! above [`MAX_FRAME`], an undecodable body or indexes out of order are
//! corruption: opening fails rather than guess.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::{LogId, Vote};

use super::files::{TMP_SUFFIX, read_json, sync_dir, write_json};
use crate::{ControllerError, NodeId, TypeConfig};

/// One Raft log entry.
pub(super) type LogEntry = openraft::Entry<TypeConfig>;

/// The frames file.
pub(super) const LOG_FILE: &str = "raft.log";
pub(super) const VOTE_FILE: &str = "vote.json";
/// Every file of the log (for removing unfinished writes on open).
pub(super) const FILES: [&str; 4] = [LOG_FILE, VOTE_FILE, PURGED_FILE, COMMITTED_FILE];
const PURGED_FILE: &str = "purged.json";
const COMMITTED_FILE: &str = "committed.json";

/// The largest frame body accepted (a metadata command is a few KiB).
pub(super) const MAX_FRAME: u64 = 64 << 20;
const HEADER: u64 = 8;
/// Purged bytes below this are not worth a rewrite.
const RECLAIM_MIN: u64 = 64 << 10;
const COPY_CHUNK: u64 = 1 << 20;

/// What was on disk when the log was opened.
#[derive(Debug)]
pub(super) struct Opened {
    pub(super) last_purged: Option<LogId<NodeId>>,
    /// The live entries, consecutive, all after `last_purged`.
    pub(super) entries: Vec<LogEntry>,
}

/// The log's files, owned by the single writer.
#[derive(Debug)]
pub(super) struct LogDisk {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Bytes of intact frames: where the next frame goes.
    len: u64,
    /// Where each live entry's frame starts, by Raft index.
    offsets: BTreeMap<u64, u64>,
    pub(super) vote: Option<Vote<NodeId>>,
    pub(super) committed: Option<LogId<NodeId>>,
}

enum Frame {
    Intact(Vec<u8>),
    /// Not a frame we wrote completely; `next` is where the following frame
    /// would start if the length field can be believed.
    Damaged {
        reason: String,
        next: Option<u64>,
    },
    Oversized(u64),
}

impl LogDisk {
    /// Opens (or creates) the log in `dir`: reads the vote, the purge point
    /// and the committed id, then scans the frames (cutting a torn tail).
    pub(super) fn open(dir: &Path) -> Result<(LogDisk, Opened), ControllerError> {
        let vote = read_json::<Vote<NodeId>>(dir, VOTE_FILE)?;
        let last_purged = read_json::<LogId<NodeId>>(dir, PURGED_FILE)?;
        let committed = read_json::<Option<LogId<NodeId>>>(dir, COMMITTED_FILE)?.flatten();
        let path = dir.join(LOG_FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ControllerError::io("open", &path, e))?;
        if !existed {
            sync_dir(dir)?;
        }
        let mut disk =
            LogDisk { dir: dir.to_path_buf(), path, file, len: 0, offsets: BTreeMap::new(), vote, committed };
        let entries = disk.scan(last_purged.map(|l| l.index))?;
        Ok((disk, Opened { last_purged, entries }))
    }

    fn scan(&mut self, purged: Option<u64>) -> Result<Vec<LogEntry>, ControllerError> {
        let file_len = self.file.metadata().map_err(|e| ControllerError::io("stat", &self.path, e))?.len();
        let mut entries: Vec<LogEntry> = Vec::new();
        let mut pos = 0;
        while pos < file_len {
            let body = match self.read_frame(pos, file_len)? {
                Frame::Intact(body) => body,
                Frame::Oversized(len) => {
                    return Err(ControllerError::corrupt(
                        &self.path,
                        pos,
                        format!("frame length {len} exceeds the limit of {MAX_FRAME}"),
                    ));
                }
                Frame::Damaged { reason, next } => {
                    if let Some(next) = next
                        && matches!(self.read_frame(next, file_len)?, Frame::Intact(_))
                    {
                        return Err(ControllerError::corrupt(
                            &self.path,
                            pos,
                            format!("{reason}, followed by intact frames"),
                        ));
                    }
                    tracing::warn!(
                        path = %self.path.display(),
                        offset = pos,
                        dropped_bytes = file_len - pos,
                        reason = %reason,
                        "cutting a torn tail off the controller's Raft log"
                    );
                    self.file
                        .set_len(pos)
                        .and_then(|()| self.file.sync_data())
                        .map_err(|e| ControllerError::io("cut the torn tail of", &self.path, e))?;
                    break;
                }
            };
            let entry: LogEntry = serde_json::from_slice(&body)
                .map_err(|e| ControllerError::corrupt(&self.path, pos, format!("undecodable entry: {e}")))?;
            let index = entry.log_id.index;
            if purged.is_some_and(|p| index <= p) {
                if !entries.is_empty() {
                    let reason = format!("entry {index}, at or below the purge point, follows live entries");
                    return Err(ControllerError::corrupt(&self.path, pos, reason));
                }
            } else {
                if let Some(prev) = entries.last()
                    && index != prev.log_id.index + 1
                {
                    let reason = format!("entry {index} follows entry {}", prev.log_id.index);
                    return Err(ControllerError::corrupt(&self.path, pos, reason));
                }
                self.offsets.insert(index, pos);
                entries.push(entry);
            }
            pos += HEADER + body.len() as u64;
        }
        self.len = pos;
        Ok(entries)
    }

    /// Reads the frame at `pos`; allocates only for a length that fits the
    /// file and the limit.
    fn read_frame(&self, pos: u64, file_len: u64) -> Result<Frame, ControllerError> {
        let remaining = file_len - pos;
        if remaining < HEADER {
            return Ok(Frame::Damaged { reason: format!("{remaining}-byte partial frame header"), next: None });
        }
        let mut header = [0u8; HEADER as usize];
        self.read_at(&mut header, pos)?;
        let len = u64::from(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
        let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 {
            return Ok(Frame::Damaged { reason: "zero-length frame".into(), next: Some(pos + HEADER) });
        }
        if len > remaining - HEADER {
            let reason = format!("frame of {len} bytes runs past the end of the file");
            return Ok(Frame::Damaged { reason, next: None });
        }
        if len > MAX_FRAME {
            return Ok(Frame::Oversized(len));
        }
        let mut body = vec![0u8; len as usize];
        self.read_at(&mut body, pos + HEADER)?;
        let computed = crc32c::crc32c(&body);
        if computed != stored {
            let reason = format!("CRC mismatch (stored {stored:#010x}, computed {computed:#010x})");
            return Ok(Frame::Damaged { reason, next: Some(pos + HEADER + len) });
        }
        Ok(Frame::Intact(body))
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<(), ControllerError> {
        self.file.read_exact_at(buf, pos).map_err(|e| ControllerError::io("read", &self.path, e))
    }

    /// Appends `entries` (which the caller checked continue the log) as
    /// frames and fsyncs.
    pub(super) fn append(&mut self, entries: &[LogEntry]) -> Result<(), ControllerError> {
        let mut buf = Vec::new();
        let mut starts = Vec::with_capacity(entries.len());
        for entry in entries {
            let body =
                serde_json::to_vec(entry).map_err(|e| ControllerError::json("encode an entry for", &self.path, e))?;
            let len = u32::try_from(body.len()).ok().filter(|l| u64::from(*l) <= MAX_FRAME).ok_or_else(|| {
                let msg = format!("log entry {} of {} bytes exceeds {MAX_FRAME} bytes", entry.log_id.index, body.len());
                ControllerError::io("append to", &self.path, std::io::Error::new(std::io::ErrorKind::InvalidInput, msg))
            })?;
            starts.push((entry.log_id.index, self.len + buf.len() as u64));
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            buf.extend_from_slice(&body);
        }
        let at = self.len;
        let file = &self.file;
        let written = super::files::while_full("an append", &self.path, || {
            let r = file.write_all_at(&buf, at).and_then(|()| file.sync_data());
            if r.is_err() {
                // Leave no partial frame behind (best effort on other
                // errors: the node's Raft stops).
                let _ = file.set_len(at);
            }
            r
        });
        if let Err(e) = written {
            return Err(ControllerError::io("append to", &self.path, e));
        }
        self.len = at + buf.len() as u64;
        self.offsets.extend(starts);
        Ok(())
    }

    /// Removes the entries at `index` and after, durably.
    pub(super) fn truncate(&mut self, index: u64) -> Result<(), ControllerError> {
        let Some(&cut) = self.offsets.range(index..).next().map(|(_, at)| at) else {
            return Ok(());
        };
        self.file
            .set_len(cut)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| ControllerError::io("truncate", &self.path, e))?;
        self.len = cut;
        self.offsets.split_off(&index);
        Ok(())
    }

    /// Persists `log_id` as the purge point, then forgets the entries up to
    /// it (it may lie past the last entry: then none are left), and rewrites
    /// the file when purged bytes dominate.
    pub(super) fn purge(&mut self, log_id: &LogId<NodeId>) -> Result<(), ControllerError> {
        write_json(&self.dir, PURGED_FILE, log_id)?;
        self.offsets = self.offsets.split_off(&log_id.index.saturating_add(1));
        let live_start = self.offsets.values().next().copied().unwrap_or(self.len);
        if live_start >= RECLAIM_MIN && live_start > self.len - live_start {
            match self.rewrite(live_start) {
                // Reclaiming can wait for space; the log stays as it is.
                Err(e) if e.is_storage_full() => {
                    let _ = std::fs::remove_file(self.dir.join(format!("{LOG_FILE}{TMP_SUFFIX}")));
                    tracing::warn!(path = %self.path.display(), error = %e, "the controller's Raft log is not compacted: no space");
                }
                r => r?,
            }
        }
        Ok(())
    }

    /// Replaces the file by a copy of its bytes from `live_start` on.
    fn rewrite(&mut self, live_start: u64) -> Result<(), ControllerError> {
        let tmp = self.dir.join(format!("{LOG_FILE}{TMP_SUFFIX}"));
        let out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| ControllerError::io("create", &tmp, e))?;
        let mut buf = vec![0u8; COPY_CHUNK.min(self.len - live_start) as usize];
        let mut from = live_start;
        while from < self.len {
            let n = COPY_CHUNK.min(self.len - from) as usize;
            self.read_at(&mut buf[..n], from)?;
            out.write_all_at(&buf[..n], from - live_start).map_err(|e| ControllerError::io("write", &tmp, e))?;
            from += n as u64;
        }
        out.sync_all().map_err(|e| ControllerError::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| ControllerError::io("rename over", &self.path, e))?;
        sync_dir(&self.dir)?;
        tracing::debug!(path = %self.path.display(), reclaimed_bytes = live_start, "rewrote the controller's Raft log");
        self.file = out;
        self.len -= live_start;
        self.offsets.values_mut().for_each(|at| *at -= live_start);
        Ok(())
    }

    /// Persists the vote.
    pub(super) fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), ControllerError> {
        write_json(&self.dir, VOTE_FILE, vote)?;
        self.vote = Some(*vote);
        Ok(())
    }

    /// Persists the committed log id (skipped when unchanged).
    pub(super) fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), ControllerError> {
        if self.committed != committed {
            write_json(&self.dir, COMMITTED_FILE, &committed)?;
            self.committed = committed;
        }
        Ok(())
    }

    /// Bytes of frames in the file (tests check that purging reclaims).
    #[cfg(test)]
    pub(super) fn file_len(&self) -> u64 {
        self.len
    }
}
