//! State snapshots beside the segments: `<offset>.snapshot` holds an
//! owner's state (the broker's producer state) as of `offset`, that is
//! derived from the batches below `offset`. The log stores the bytes and
//! keeps the files true to the log; what they mean is the owner's
//! business (as Kafka's `ProducerStateManager` snapshots live in its log
//! directory).
//!
//! Invariant: every snapshot on disk lies within `[.., log end]` and
//! describes the batches the log holds below its offset. So a snapshot
//! past a cut goes with the cut (truncation, reset, recovery of a
//! poisoned log, and at open what a crash cut from the tail), before
//! anything can be written at those offsets again; and a snapshot is only
//! saved at an offset the log still reaches, under the writer lock that
//! cuts take too. Retention keeps the newest snapshot at or below the log
//! start (the state of producers whose batches retention deleted) and
//! deletes older ones.

use std::path::{Path, PathBuf};

use super::Log;
use crate::checkpoint::{sync_dir, write_atomic};
use crate::error::{LogError, Result};

const EXT: &str = "snapshot";

fn path_of(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{offset:020}.{EXT}"))
}

/// The snapshot offsets in `dir`, ascending.
pub(super) fn list(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io("list log directory", dir, e))? {
        let entry = entry.map_err(|e| LogError::io("list log directory", dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|s| s.to_str()) != Some(EXT) {
            continue;
        }
        if let Some(offset) = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok()) {
            out.push(offset);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Deletes the snapshots past `end` (made durable before returning: a
/// write at those offsets may follow). Returns how many went.
pub(super) fn delete_after(dir: &Path, end: u64) -> Result<usize> {
    let victims: Vec<u64> = list(dir)?.into_iter().filter(|o| *o > end).collect();
    remove(dir, &victims)
}

/// Deletes every snapshot (the log starts over).
pub(super) fn delete_all(dir: &Path) -> Result<usize> {
    let victims = list(dir)?;
    remove(dir, &victims)
}

/// Deletes the snapshots older than the newest one at or below
/// `log_start`.
pub(super) fn delete_before(dir: &Path, log_start: u64) -> Result<usize> {
    let all = list(dir)?;
    let Some(keep) = all.iter().copied().filter(|o| *o <= log_start).max() else { return Ok(0) };
    let victims: Vec<u64> = all.into_iter().filter(|o| *o < keep).collect();
    remove(dir, &victims)
}

fn remove(dir: &Path, victims: &[u64]) -> Result<usize> {
    for &o in victims {
        let path = path_of(dir, o);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("delete snapshot", &path, e)),
        }
    }
    if !victims.is_empty() {
        sync_dir(dir)?;
    }
    Ok(victims.len())
}

impl Log {
    /// Saves `state` as the snapshot at `offset` (atomically and durably).
    /// Refused (false) when the log no longer reaches `offset` (cut since
    /// the state was taken) or starts past it. Blocking file I/O.
    pub fn save_snapshot(&self, offset: u64, state: &[u8]) -> Result<bool> {
        let _w = self.writer.lock();
        {
            let inner = self.inner.read();
            if offset > inner.log_end || offset < inner.log_start {
                return Ok(false);
            }
        }
        write_atomic(&path_of(&self.dir, offset), state)?;
        Ok(true)
    }

    /// The newest snapshot at or below `at_most`, with its offset; `None`
    /// when there is none. Blocking file I/O.
    pub fn latest_snapshot(&self, at_most: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(offset) = list(&self.dir)?.into_iter().rev().find(|o| *o <= at_most) else { return Ok(None) };
        let path = path_of(&self.dir, offset);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some((offset, bytes))),
            // Deleted by a retention pass meanwhile: an older one would be
            // older still, so the caller starts from the log start.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::io("read snapshot", &path, e)),
        }
    }

    /// The offsets of the snapshots on disk, ascending (tests, inspection).
    pub fn snapshot_offsets(&self) -> Result<Vec<u64>> {
        list(&self.dir)
    }
}
