//! Small files replaced atomically, running blocking I/O off the runtime,
//! and waiting out a full disk.
//!
//! A write that fails for want of space is retried (after undoing what it
//! half did) until space is back, rather than failed: openraft treats any
//! storage error as fatal for the node's Raft, so a full disk would stop
//! this controller for good; stalled, it merely stops answering its peers
//! (the others elect and commit without it) and carries on once an
//! operator frees space. A stalled *leader* would still be heard, though:
//! openraft's heartbeats run beside the storage calls, so its followers
//! would keep it while it commits nothing. Hence [`stalled`], which the
//! cluster's Raft network checks to fall silent meanwhile, so that the
//! others elect a leader that can write.
//!
//! A small file (vote, purge point, committed id, snapshot) is replaced by
//! writing `<name>.tmp`, fsyncing it, renaming it over `<name>` and fsyncing
//! the directory: a crash leaves the old or the new contents, never a mix,
//! and the new contents are durable when the call returns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ControllerError;

/// Suffix of files being written; leftovers are removed on open.
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// Runs blocking file I/O on tokio's blocking pool.
pub(super) async fn blocking<T, F>(f: F) -> Result<T, ControllerError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ControllerError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Whether an I/O error means the disk (or a quota) is full.
pub(crate) fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Files whose writes wait for space now (one entry per waiting write).
static STALLED: parking_lot::Mutex<Vec<PathBuf>> = parking_lot::Mutex::new(Vec::new());

/// Whether a write under `dir` (a controller's directory) waits for space
/// now: that controller's Raft commits nothing until it is done.
pub fn stalled(dir: &Path) -> bool {
    STALLED.lock().iter().any(|p| p.starts_with(dir))
}

/// One write waiting for space, listed in [`STALLED`] while it lives.
struct Stall(PathBuf);

impl Stall {
    fn new(path: &Path) -> Stall {
        STALLED.lock().push(path.to_path_buf());
        Stall(path.to_path_buf())
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        let mut stalled = STALLED.lock();
        if let Some(i) = stalled.iter().position(|p| *p == self.0) {
            stalled.swap_remove(i);
        }
    }
}

/// Directories whose writes fail as if the disk were full (tests).
#[cfg(feature = "fault-injection")]
static FULL: parking_lot::Mutex<Vec<PathBuf>> = parking_lot::Mutex::new(Vec::new());

/// Makes every later write under `dir` fail for want of space (`full`),
/// or succeed again: a full disk for one controller of an in-process
/// cluster.
#[cfg(feature = "fault-injection")]
pub fn inject_full(dir: &Path, full: bool) {
    let mut dirs = FULL.lock();
    dirs.retain(|d| d != dir);
    if full {
        dirs.push(dir.to_path_buf());
    }
}

#[cfg(feature = "fault-injection")]
fn injected_full(path: &Path) -> bool {
    FULL.lock().iter().any(|d| path.starts_with(d))
}

#[cfg(not(feature = "fault-injection"))]
fn injected_full(_: &Path) -> bool {
    false
}

/// Runs `op` again and again while it fails for want of space (blocking:
/// call it on the blocking pool), with a warning every so often; any
/// other outcome is returned. `op` must leave nothing half done when it
/// fails.
pub(super) fn while_full<T>(what: &str, path: &Path, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut wait = Duration::from_millis(20);
    let mut warned: Option<Instant> = None;
    let mut stall = None;
    loop {
        let outcome = if injected_full(path) { Err(io::Error::from(io::ErrorKind::StorageFull)) } else { op() };
        match outcome {
            Err(e) if is_full(&e) => {
                stall.get_or_insert_with(|| Stall::new(path));
                if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(path = %path.display(), error = %e,
                        "controller storage is full: {what} waits for space (this controller stalls meanwhile)");
                    warned = Some(Instant::now());
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Atomically replaces `dir/name` with `bytes`, durably (waiting for
/// space if the disk is full).
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ControllerError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let written = while_full("replacing a file", &path, || {
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        let r = write();
        if r.is_err() {
            // Frees what the partial copy took; `<name>` is untouched.
            let _ = fs::remove_file(&tmp);
        }
        r
    });
    written.map_err(|e| ControllerError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| ControllerError::io("rename over", &path, e))?;
    sync_dir(dir)
}

/// Serializes `value` as JSON into `dir/name`, atomically and durably.
pub(super) fn write_json<T: Serialize + ?Sized>(dir: &Path, name: &str, value: &T) -> Result<(), ControllerError> {
    let bytes = serde_json::to_vec(value).map_err(|e| ControllerError::json("encode", &dir.join(name), e))?;
    write_atomic(dir, name, &bytes)
}

/// Reads `dir/name` as JSON; `None` if the file does not exist.
pub(super) fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, ControllerError> {
    let path = dir.join(name);
    let Some(bytes) = read_file(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| ControllerError::json("decode", &path, e))
}

/// Reads a whole file; `None` if it does not exist.
pub(super) fn read_file(path: &Path) -> Result<Option<Vec<u8>>, ControllerError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ControllerError::io("read", path, e)),
    }
}

/// Fsyncs a directory so that creations, renames and unlinks in it are
/// durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), ControllerError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ControllerError::io("fsync directory", dir, e))
}

/// Removes `<name>.tmp` leftovers of writes a crash interrupted, for the
/// store's own file `names` only.
pub(super) fn remove_leftovers(dir: &Path, names: &[&str]) -> Result<(), ControllerError> {
    for name in names {
        let path = dir.join(format!("{name}{TMP_SUFFIX}"));
        match fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed an unfinished write left by a crash"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ControllerError::io("remove", &path, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_waited_out_and_other_errors_are_not() {
        let mut calls = 0;
        let r = while_full("a test", Path::new("/x"), || {
            calls += 1;
            if calls < 3 { Err(io::Error::from(io::ErrorKind::StorageFull)) } else { Ok(7) }
        });
        assert_eq!(r.ok(), Some(7));
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: io::Result<()> = while_full("a test", Path::new("/x"), || {
            calls += 1;
            Err(io::Error::other("an I/O error"))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1, "only a full disk is waited out");
    }
}
