//! Small files replaced atomically: write a temporary file, fsync it, rename
//! it over the old one and fsync the directory. A crash leaves either the old
//! or the new contents, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{LogError, Result};

/// Atomically replaces `path` with `contents` (for small metadata files).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| LogError::io("create", &tmp, e))?;
    f.write_all(contents).map_err(|e| LogError::io("write", &tmp, e))?;
    crate::instrument::fsync(|| f.sync_all()).map_err(|e| LogError::io("fsync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| LogError::io("rename", path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory so that renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| crate::instrument::fsync(|| d.sync_all()))
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

/// Reads a checkpoint holding one decimal `u64`; a missing or unreadable file
/// is `None` (checkpoints are hints that recovery can do without).
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes a checkpoint holding one decimal `u64`.
pub(crate) fn write_u64(path: &Path, v: u64) -> Result<()> {
    write_atomic(path, format!("{v}\n").as_bytes())
}
