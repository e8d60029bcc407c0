//! Tests of the controller store: openraft's storage suite, restarts and
//! damage on disk, and a single-node Raft over the store.

mod raft;
mod restart;

use std::collections::BTreeMap;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StorageError, StorageIOError};
use tempfile::TempDir;

use super::log_file::LogEntry;
use super::{LogStore, StateMachineStore, open};
use crate::{Command, NodeId, TypeConfig};

/// A fresh store in a temporary directory per suite case.
struct TempStore;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStore {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let (log, sm, _) = open(dir.path()).await.map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

/// openraft's own storage suite (it builds a runtime per case, so this is
/// a plain test).
#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempStore).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn blank(term: u64, index: u64) -> LogEntry {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Blank }
}

fn normal(term: u64, index: u64, cmd: Command) -> LogEntry {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(cmd) }
}

fn register(id: NodeId) -> Command {
    Command::RegisterNode { id, internode: format!("127.0.0.1:{}", 7000 + id), listeners: BTreeMap::new(), rack: None }
}

/// Replication tasks read through their own readers while the log grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_consistent_prefixes_while_the_log_grows() {
    use openraft::RaftLogReader;
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};

    let dir = tempfile::tempdir().unwrap();
    let (mut log, _, _) = open(dir.path()).await.unwrap();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut reader = log.get_log_reader().await;
        readers.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < 100 {
                let got: Vec<u64> =
                    reader.try_get_log_entries(1..).await.unwrap().iter().map(|e| e.log_id.index).collect();
                assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "a prefix without holes");
                assert!(got.len() >= seen, "entries never disappear");
                seen = got.len();
                tokio::task::yield_now().await;
            }
        }));
    }
    for i in 1..=100 {
        log.blocking_append([blank(1, i)]).await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
}
