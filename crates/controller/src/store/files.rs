//! Small files replaced atomically, and running blocking I/O off the
//! runtime.
//!
//! A small file (vote, purge point, committed id, snapshot) is replaced by
//! writing `<name>.tmp`, fsyncing it, renaming it over `<name>` and fsyncing
//! the directory: a crash leaves the old or the new contents, never a mix,
//! and the new contents are durable when the call returns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

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

/// Atomically replaces `dir/name` with `bytes`, durably.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ControllerError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| ControllerError::io("create", &tmp, e))?;
    f.write_all(bytes).map_err(|e| ControllerError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| ControllerError::io("fsync", &tmp, e))?;
    drop(f);
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
