//! openraft's `RaftStateMachine` over [`Metadata`], kept in memory.
//!
//! `apply` does not touch the disk; durability comes from snapshots and the
//! log. Every snapshot, built here or installed from the leader, is written
//! to `snapshot.bin` (atomically, fsynced) before it is reported, and is
//! the state machine's starting point after a restart; openraft then
//! re-applies the committed entries after it, which the log store keeps
//! (`save_committed`), and it never purges the log past a snapshot it was
//! told about. So the state after a restart is the state before it, up to
//! the last persisted commit.
//!
//! A snapshot's bytes (what travels to followers) are the JSON of
//! `{last_applied, membership, metadata}`; `snapshot.bin` holds the
//! snapshot's metadata and those bytes, under a CRC (a damaged snapshot is
//! an error, never silently an empty state).
//!
//! Every `apply` and `install_snapshot` publishes an [`Applied`] on a
//! `watch` channel: the rest of the node reads the metadata from there.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::files::{blocking, read_file, write_atomic};
use super::log_file::LogEntry;
use crate::{ControllerError, Metadata, NodeAddr, NodeId, Reply, TypeConfig};

/// `[u32 meta_len LE][u32 crc32c of the rest LE][meta JSON][data]`.
pub(super) const SNAPSHOT_FILE: &str = "snapshot.bin";

type Meta = SnapshotMeta<NodeId, NodeAddr>;
type Membership = StoredMembership<NodeId, NodeAddr>;

/// The metadata as of an applied log entry, published after every apply
/// and snapshot install.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Index of the last applied entry (0 before anything is applied; the
    /// first entry, the initial membership, also has index 0).
    pub index: u64,
    /// The last applied entry's id, `None` before anything is applied.
    pub log_id: Option<LogId<NodeId>>,
    /// The metadata after that entry.
    pub metadata: Arc<Metadata>,
}

/// The metadata state machine, for openraft.
#[derive(Debug)]
pub struct StateMachineStore {
    state: State,
    snapshots: Arc<Snapshots>,
    applied: watch::Sender<Applied>,
}

/// Builds a snapshot from the state as it was when the builder was made.
#[derive(Debug)]
pub struct SnapshotBuilder {
    state: State,
    snapshots: Arc<Snapshots>,
}

/// Cheap to clone: the metadata is shared until the next apply changes it.
#[derive(Debug, Clone, Default)]
struct State {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    metadata: Arc<Metadata>,
}

/// The current snapshot, in memory and in `snapshot.bin`. The async lock
/// orders writers (builders run alongside installs).
#[derive(Debug)]
struct Snapshots {
    dir: PathBuf,
    current: tokio::sync::Mutex<Option<Arc<Stored>>>,
}

#[derive(Debug)]
struct Stored {
    meta: Meta,
    data: Vec<u8>,
}

/// A snapshot's bytes, written.
#[derive(Serialize)]
struct BodyRef<'a> {
    last_applied: &'a Option<LogId<NodeId>>,
    membership: &'a Membership,
    metadata: &'a Metadata,
}

/// A snapshot's bytes, read.
#[derive(Deserialize)]
struct Body {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    metadata: Metadata,
}

impl State {
    fn applied(&self) -> Applied {
        Applied {
            index: self.last_applied.map_or(0, |l| l.index),
            log_id: self.last_applied,
            metadata: self.metadata.clone(),
        }
    }

    fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let body = BodyRef { last_applied: &self.last_applied, membership: &self.membership, metadata: &self.metadata };
        serde_json::to_vec(&body)
    }

    /// The state a snapshot holds, checked against its metadata.
    fn decode(meta: &Meta, data: &[u8]) -> Result<State, ControllerError> {
        let body: Body = serde_json::from_slice(data)
            .map_err(|source| ControllerError::BadSnapshot { snapshot_id: meta.snapshot_id.clone(), source })?;
        let mismatch = |reason: &str| ControllerError::SnapshotMismatch {
            snapshot_id: meta.snapshot_id.clone(),
            reason: reason.to_string(),
        };
        if body.last_applied != meta.last_log_id {
            return Err(mismatch("last applied log id differs"));
        }
        if body.membership != meta.last_membership {
            return Err(mismatch("membership differs"));
        }
        Ok(State { last_applied: body.last_applied, membership: body.membership, metadata: Arc::new(body.metadata) })
    }
}

impl Stored {
    fn to_file_bytes(&self, path: &Path) -> Result<Vec<u8>, ControllerError> {
        let meta = serde_json::to_vec(&self.meta).map_err(|e| ControllerError::json("encode", path, e))?;
        let meta_len = u32::try_from(meta.len())
            .map_err(|_| ControllerError::io("write", path, std::io::Error::other("snapshot metadata over 4 GiB")))?;
        let mut out = Vec::with_capacity(8 + meta.len() + self.data.len());
        out.extend_from_slice(&meta_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.data);
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Stored, ControllerError> {
        let corrupt = |reason: &str| ControllerError::corrupt(path, 0, reason);
        let (Some(len), Some(crc), Some(rest)) = (bytes.get(0..4), bytes.get(4..8), bytes.get(8..)) else {
            return Err(corrupt("shorter than its header"));
        };
        let meta_len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if crc32c::crc32c(rest).to_le_bytes() != crc {
            return Err(corrupt("CRC mismatch"));
        }
        let (Some(meta), Some(data)) = (rest.get(..meta_len), rest.get(meta_len..)) else {
            return Err(corrupt("metadata length past the end"));
        };
        let meta = serde_json::from_slice(meta).map_err(|e| ControllerError::json("decode", path, e))?;
        Ok(Stored { meta, data: data.to_vec() })
    }
}

impl Snapshots {
    /// Makes `meta`/`data` the current snapshot, on disk first. Unless
    /// `install`, a snapshot no newer than the current one is not stored
    /// (openraft ignores it too).
    async fn store(&self, meta: Meta, data: Vec<u8>, install: bool) -> Result<(), ControllerError> {
        let mut current = self.current.lock().await;
        if !install && current.as_ref().is_some_and(|c| c.meta.last_log_id >= meta.last_log_id) {
            tracing::debug!(snapshot = %meta, "not storing a snapshot no newer than the current one");
            return Ok(());
        }
        let stored = Arc::new(Stored { meta, data });
        let (dir, s) = (self.dir.clone(), stored.clone());
        blocking(move || write_atomic(&dir, SNAPSHOT_FILE, &s.to_file_bytes(&dir.join(SNAPSHOT_FILE))?)).await?;
        *current = Some(stored);
        Ok(())
    }
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, starting from the persisted
    /// snapshot if there is one (blocking).
    pub(super) fn open(dir: &Path) -> Result<StateMachineStore, ControllerError> {
        let (state, current) = match read_file(&dir.join(SNAPSHOT_FILE))? {
            None => (State::default(), None),
            Some(bytes) => {
                let stored = Stored::from_file_bytes(&dir.join(SNAPSHOT_FILE), &bytes)?;
                let state = State::decode(&stored.meta, &stored.data)?;
                tracing::info!(snapshot = %stored.meta, "controller state machine starts from its snapshot");
                (state, Some(Arc::new(stored)))
            }
        };
        let (applied, _) = watch::channel(state.applied());
        let snapshots = Arc::new(Snapshots { dir: dir.to_path_buf(), current: tokio::sync::Mutex::new(current) });
        Ok(StateMachineStore { state, snapshots, applied })
    }

    /// Watches the applied metadata. Subscribe before handing the store to
    /// `openraft::Raft::new`; receivers can be cloned afterwards.
    pub fn subscribe(&self) -> watch::Receiver<Applied> {
        self.applied.subscribe()
    }

    /// The metadata as of the last applied entry.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.state.metadata.clone()
    }

    fn publish(&self) {
        self.applied.send_replace(self.state.applied());
    }
}

/// Unique per snapshot: its position plus the time and a process counter.
fn snapshot_id(last: &Option<LogId<NodeId>>) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    match last {
        Some(l) => format!("{}-{}-{nanos}-{n}", l.leader_id, l.index),
        None => format!("empty-{nanos}-{n}"),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let state = self.state.clone();
        let meta = Meta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: snapshot_id(&state.last_applied),
        };
        let path = self.snapshots.dir.join(SNAPSHOT_FILE);
        let data =
            blocking(move || state.encode().map_err(|e| ControllerError::json("encode a snapshot for", &path, e)))
                .await
                .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.snapshots
            .store(meta.clone(), data.clone(), false)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        for entry in entries {
            self.state.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::Ok,
                // The first command of a batch copies the metadata if a
                // reader still holds it; later ones change it in place.
                EntryPayload::Normal(cmd) => Arc::make_mut(&mut self.state.metadata).apply(&cmd),
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Reply::Ok
                }
            };
            replies.push(reply);
        }
        if !replies.is_empty() {
            self.publish();
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { state: self.state.clone(), snapshots: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let state =
            State::decode(meta, &data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.snapshots
            .store(meta.clone(), data, true)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.state = state;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = self.snapshots.current.lock().await;
        Ok(current.as_ref().map(|s| Snapshot { meta: s.meta.clone(), snapshot: Box::new(Cursor::new(s.data.clone())) }))
    }
}
