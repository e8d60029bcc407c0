//! # fjord-log: the partition log store
//!
//! Every partition of every topic is one [`Log`]: an append-only sequence of
//! record batches stored in segment files on local disk. Storage knows
//! nothing of protocols; gateways map their messages to records with keys,
//! values and headers.
//!
//! ## Layout on disk
//! ```text
//! <dir>/00000000000000000000.log     batches, Kafka RecordBatch v2 bytes
//!       00000000000000000000.index   sparse offset + time index (sealed segments)
//!       00000000000000000000.keys    key index, sorted by key hash (sealed, optional)
//!       00000000000000000000.txnindex  aborted transactions whose markers are in the segment
//!       recovery-point                segments below this base are fsynced and indexed
//!       high-watermark                the high watermark at the last checkpoint (clean close)
//!       log-start-offset              first readable offset (retention, DeleteRecords)
//!       leader-epoch-checkpoint       epoch -> first offset, for replica divergence
//!       .clean-shutdown               present only between a clean close and the next open
//!       00000000000000001234.snapshot  an owner's state as of offset 1234 (producer state)
//! ```
//!
//! ## Design
//! - **Format**: batches are Kafka v2 record batches with a CRC-32C ([`batch`]),
//!   so Kafka produce bytes are stored as received and fetched zero-copy
//!   ([`LogSlice`]). Other protocols build batches with [`batch::BatchBuilder`].
//! - **Writes** are serialised per log. A leader assigns offsets by rewriting
//!   the base offset and leader epoch in place (both outside the CRC).
//! - **Durability** is an explicit [`Durability`] policy; an append returns
//!   only once its policy acknowledges it. A failed write or fsync
//!   *poisons* the log: every later append fails with [`LogError::Poisoned`]
//!   until [`Log::recover`] (or a restart) cuts it back to what the last
//!   successful fsync covered; the failed fsync is never retried, because
//!   retrying an fsync can falsely report success.
//! - **Reads** never take the writer lock; they see a batch only after it
//!   has been fully written, and never past the high watermark unless asked.
//! - **Indexes** are sparse and in memory for the active segment, written to
//!   files when a segment is sealed; lookups by offset and time are binary
//!   searches plus a scan of at most `index_interval_bytes`.
//! - **Recovery**: after an unclean shutdown every segment after the recovery
//!   point is scanned batch by batch, CRCs are checked, and the first torn or
//!   invalid batch and everything after it is truncated; index files that are
//!   missing, damaged or stale (they record the log size they cover) are
//!   rebuilt.
//! - **Replication-ready**: per-batch leader epochs with an epoch cache,
//!   a high watermark separate from the log end, replica appends that keep
//!   the leader's offsets, and [`Log::truncate_to`].
//!
//! ## Invariants worth naming
//! - offsets in a log strictly increase; segment base offsets too;
//! - `log_start <= high_watermark <= log_end` and `durable <= log_end`;
//! - nothing at or after a failed write is ever acknowledged.
//!
//! ## Metrics
//! Every fsync is timed into `fjord_fsync_duration_seconds` and failures
//! are counted in `fjord_fsync_errors_total`; `fjord_poisoned_logs` gauges
//! the live logs refusing writes. All go through the `metrics` facade
//! (no-ops unless the process installs a recorder).

pub mod batch;
mod checkpoint;
pub mod clock;
pub mod compression;
mod config;
pub mod control;
mod epoch;
mod error;
mod index;
mod instrument;
mod key_index;
mod log;
mod segment;
mod txn_index;
pub mod varint;

pub use checkpoint::write_atomic;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Durability, LogConfig, Recompress};
pub use epoch::EpochEntry;
pub use error::{FormatError, LogError, Result};
pub use key_index::key_hash;
pub use log::{
    AppendInfo, AppendOrigin, DurableMark, Log, LogSlice, LogStats, LogSummary, ReadBound, ReadResult, RecoveryOutcome,
    RetentionOutcome, inspect,
};
pub use segment::KeyIndexConfig;
pub use txn_index::AbortedTxn;
