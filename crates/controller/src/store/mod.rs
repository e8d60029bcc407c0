//! The controller quorum's storage: openraft's v2 log store ([`LogStore`])
//! and state machine ([`StateMachineStore`]), both in one directory.
//!
//! ```text
//! <dir>/raft.log        log entries as frames [len][crc32c][JSON entry]
//! <dir>/vote.json       the vote
//! <dir>/purged.json     the last purged log id
//! <dir>/committed.json  the last committed log id
//! <dir>/snapshot.bin    the current snapshot (meta + data, CRC)
//! ```
//!
//! ## Durability order
//! openraft's rules (`docs/design/openraft-0.9-notes.md`), as kept here:
//! - the vote is on disk (temp file, fsync, rename, directory fsync) before
//!   `save_vote` returns;
//! - appended entries are readable when `append` returns and fsynced before
//!   the flush callback is called; the callback is called on every path,
//!   with the error on failure;
//! - `truncate` cuts the file at a frame boundary and fsyncs: no hole, and
//!   cut entries never come back;
//! - `purge` persists the purge point before forgetting entries; it may name
//!   an index past the last entry (after a snapshot install), then the log
//!   is empty and continues at that index + 1;
//! - the state machine lives in memory; every snapshot is fsynced before it
//!   is reported, and openraft purges only up to a snapshot, so the log
//!   plus the snapshot always hold every committed entry. The committed id
//!   is persisted, so a restart re-applies the entries after the snapshot.
//!
//! Any storage error is fatal to the Raft node (openraft stops it): a
//! controller whose disk fails leaves the quorum rather than lie.
//!
//! ## Why not the `fjord-log` crate
//! `fjord-log` stores Kafka record batches at Kafka offsets. The Raft log is
//! keyed by Raft indexes that openraft chooses, is cut from its end on a
//! conflict, and is purged up to an index that may lie past its last entry
//! when a snapshot is installed (the log then restarts after that index).
//! The metadata log is small (thousands of entries between snapshots), so a
//! single file with an in-memory index, rewritten when purged bytes
//! dominate, does all that in a few hundred lines we can reason about.

pub(crate) mod files;
mod log_file;
mod log_store;
mod state_machine;

use std::path::Path;

use tokio::sync::watch;

#[cfg(feature = "fault-injection")]
pub use files::inject_full;
pub use files::stalled;
pub use log_store::{LogReader, LogStore};
pub use state_machine::{Applied, SnapshotBuilder, StateMachineStore};

use crate::ControllerError;

/// Whether `dir` holds Raft state (a vote or log entries) from an earlier
/// run: a node that had some and lost it must not vote as if it never
/// voted.
pub fn has_state(dir: &Path) -> bool {
    [log_file::VOTE_FILE, log_file::LOG_FILE].iter().any(|f| dir.join(f).exists())
}

/// Opens (or creates) the controller store in `dir`: the Raft log, the state
/// machine started from its last snapshot, and a watch of the applied
/// metadata (the same as [`StateMachineStore::subscribe`]).
///
/// A torn tail of the log (a crash during an append) is cut off with a
/// warning; other damage is an error.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore, watch::Receiver<Applied>), ControllerError> {
    let dir = dir.to_path_buf();
    files::blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| ControllerError::io("create directory", &dir, e))?;
        files::remove_leftovers(&dir, &log_file::FILES)?;
        files::remove_leftovers(&dir, &[state_machine::SNAPSHOT_FILE])?;
        let log = LogStore::open(&dir)?;
        let sm = StateMachineStore::open(&dir)?;
        let applied = sm.subscribe();
        Ok((log, sm, applied))
    })
    .await
}

#[cfg(test)]
mod tests;
