//! Errors of the log store.

use std::path::PathBuf;

/// Why a batch's bytes are not a valid record batch.
///
/// Produced by decoders in [`crate::batch`]; input is never trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The buffer ended inside the named structure.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A varint ran past its maximum encoded length or overflowed its type.
    #[error("malformed varint")]
    BadVarint,
    /// Only record batch format v2 (magic 2) is stored.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    BadMagic(i8),
    /// The CRC-32C stored in the batch does not match its contents.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC written in the batch header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
    /// The batch length field is impossible.
    #[error("invalid batch length {0}")]
    BadLength(i64),
    /// A record inside the batch is malformed.
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
    /// The compression codec bits name no known codec.
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    /// Compressed records could not be decompressed.
    #[error("cannot decompress {codec} records: {reason}")]
    Decompression {
        /// Codec name.
        codec: String,
        /// What the decompressor said.
        reason: String,
    },
    /// Decompressed records would exceed the limit (a decompression bomb or
    /// an absurd batch).
    #[error("decompressed records exceed {max} bytes")]
    DecompressedTooLarge {
        /// The limit in bytes.
        max: usize,
    },
}

/// Errors returned by the log store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
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
    /// Appended bytes are not valid record batches.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] FormatError),
    /// A batch is larger than the log's maximum message size.
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Size of the offending batch in bytes.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The requested offset is outside `[log_start, log_end]`.
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: u64,
        /// First offset still in the log.
        log_start: u64,
        /// Next offset to be written.
        log_end: u64,
    },
    /// The log refuses writes after a failed fsync or write: the state of the
    /// file on disk is unknown, so retrying could acknowledge lost data.
    /// [`crate::Log::recover`] (or a restart) makes it writable again.
    #[error("log {path} is poisoned after a failed {op}; writes are refused until it is recovered: {reason}")]
    Poisoned {
        /// Log directory.
        path: PathBuf,
        /// The operation that failed.
        op: &'static str,
        /// The original error message.
        reason: String,
    },
    /// One write's commit was not confirmed (the replica stopped leading,
    /// the log was cut or closed first): the write may or may not survive.
    /// Unlike [`LogError::Poisoned`] the log itself still takes writes.
    #[error("a write to log {path} was not confirmed committed: {reason}")]
    NotCommitted {
        /// Log directory.
        path: PathBuf,
        /// Why the commit was not confirmed.
        reason: String,
    },
    /// A batch's timestamp lies outside the topic's bounds
    /// (`message.timestamp.before.max.ms` / `.after.max.ms`).
    #[error("timestamp {timestamp} is {reason} ({now})")]
    TimestampOutOfRange {
        /// The offending timestamp (ms).
        timestamp: i64,
        /// The broker's time (ms).
        now: i64,
        /// Which bound it passed.
        reason: String,
    },
    /// The log was closed.
    #[error("log {0} is closed")]
    Closed(PathBuf),
    /// An argument is outside what the log accepts (the caller's mistake).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An invariant of the log store did not hold: a bug or a damaged
    /// directory, never the caller's request. Gateways report it as a
    /// server-side error.
    #[error("internal log store error: {0}")]
    Internal(String),
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io { op, path: path.into(), source }
    }
}

/// Result alias for the log store.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
