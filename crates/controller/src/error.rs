//! Errors of the controller's storage.
//!
//! Inside the crate every failure is a [`ControllerError`] carrying the file
//! it concerns. At the openraft boundary it becomes a `StorageError`, which
//! openraft treats as fatal: the Raft node stops (see `store`).

use std::path::{Path, PathBuf};

/// Why the controller store could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds bytes that cannot be ours: a damaged frame followed by
    /// intact ones, an impossible length, entries out of order.
    #[error("{path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A value could not be encoded or an intact file could not be decoded
    /// (written by an incompatible version?).
    #[error("{op} {path}: {source}")]
    Json {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// Entries handed to the log do not continue it: the log would get a
    /// hole or an index twice.
    #[error("log entry {got} cannot be appended: the next index is {expected}")]
    NotContiguous {
        /// The index the log accepts next.
        expected: u64,
        /// The index offered.
        got: u64,
    },
    /// A snapshot's bytes are not a snapshot of ours.
    #[error("snapshot {snapshot_id} cannot be decoded: {source}")]
    BadSnapshot {
        /// The snapshot's id.
        snapshot_id: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A snapshot's contents disagree with its metadata.
    #[error("snapshot {snapshot_id} does not match its metadata: {reason}")]
    SnapshotMismatch {
        /// The snapshot's id.
        snapshot_id: String,
        /// What differs.
        reason: String,
    },
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ControllerError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        ControllerError::Io { op, path: path.to_path_buf(), source }
    }

    /// Whether it failed for want of space (the disk or a quota is full).
    pub(crate) fn is_storage_full(&self) -> bool {
        matches!(self, ControllerError::Io { source, .. } if crate::store::files::is_full(source))
    }

    pub(crate) fn json(op: &'static str, path: &Path, source: serde_json::Error) -> Self {
        ControllerError::Json { op, path: path.to_path_buf(), source }
    }

    pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        ControllerError::Corrupt { path: path.to_path_buf(), offset, reason: reason.into() }
    }
}
