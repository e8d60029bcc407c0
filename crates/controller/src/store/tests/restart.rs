//! What survives a restart, and what opening does with damage on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{Entry, EntryPayload, LogState, Membership, RaftLogReader, RaftSnapshotBuilder, StoredMembership, Vote};

use super::{blank, log_id, normal, register};
use crate::store::log_file::{LOG_FILE, LogEntry, MAX_FRAME};
use crate::store::{LogStore, StateMachineStore, open};
use crate::{Command, ControllerError, NodeAddr};

async fn reopen(dir: &Path) -> (LogStore, StateMachineStore) {
    let (log, sm, _) = open(dir).await.unwrap();
    (log, sm)
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id.index).collect()
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// The bytes `append` writes for `entry`.
fn frame(entry: &LogEntry) -> Vec<u8> {
    let body = serde_json::to_vec(entry).unwrap();
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    f.extend_from_slice(&body);
    f
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let f = OpenOptions::new().append(true).open(path).unwrap();
    std::io::Write::write_all(&mut &f, bytes).unwrap();
}

#[tokio::test]
async fn log_vote_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 2);
    {
        let (mut log, _) = reopen(dir.path()).await;
        log.blocking_append((1..=10).map(|i| normal(1, i, register(i)))).await.unwrap();
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(log_id(1, 6))).await.unwrap();
        log.purge(log_id(1, 3)).await.unwrap();
        log.truncate(log_id(1, 8)).await.unwrap();
        assert_eq!(indexes(&mut log).await, vec![4, 5, 6, 7]);
        let mut reader = log.get_log_reader().await;
        assert_eq!(reader.try_get_log_entries(5..7).await.unwrap().len(), 2);
        assert!(reader.try_get_log_entries(8..).await.unwrap().is_empty(), "truncated entries are gone");
    }
    // A crash in the middle of replacing the vote leaves its temp file.
    fs::write(dir.path().join("vote.json.tmp"), b"{\"half").unwrap();
    let (mut log, _) = reopen(dir.path()).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state, LogState { last_purged_log_id: Some(log_id(1, 3)), last_log_id: Some(log_id(1, 7)) });
    let expected: Vec<_> = (4..=7).map(|i| normal(1, i, register(i))).collect();
    assert_eq!(log.try_get_log_entries(0..100).await.unwrap(), expected);
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert!(!dir.path().join("vote.json.tmp").exists(), "the unfinished write is removed");
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 6)));

    // The log continues where it was cut, in a later term.
    log.blocking_append([blank(2, 8)]).await.unwrap();
    drop(log);
    let (mut log, _) = reopen(dir.path()).await;
    assert_eq!(indexes(&mut log).await, vec![4, 5, 6, 7, 8]);
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(log_id(2, 8)));
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_earlier_entries_survive() {
    let half = frame(&blank(1, 6));
    let mut bad_crc = frame(&blank(1, 6));
    *bad_crc.last_mut().unwrap() ^= 0xff;
    let tails: [(&str, Vec<u8>); 5] = [
        ("half a frame", half[..half.len() / 2].to_vec()),
        ("part of a header", vec![7, 0, 0]),
        ("garbage", b"\xde\xad\xbe\xef is not a frame".to_vec()),
        ("zeros", vec![0; 4096]),
        ("a CRC-bad last frame", bad_crc),
    ];
    for (what, tail) in tails {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path()).await;
        log.blocking_append((1..=5).map(|i| blank(1, i))).await.unwrap();
        drop(log);
        let intact = fs::metadata(log_path(dir.path())).unwrap().len();
        append_bytes(&log_path(dir.path()), &tail);

        let (mut log, _) = reopen(dir.path()).await;
        assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4, 5], "{what}");
        assert_eq!(fs::metadata(log_path(dir.path())).unwrap().len(), intact, "{what} is cut off");
        log.blocking_append([blank(1, 6)]).await.unwrap();
        drop(log);
        let (mut log, _) = reopen(dir.path()).await;
        assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4, 5, 6], "{what}");
    }
}

#[tokio::test]
async fn damage_before_intact_frames_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = reopen(dir.path()).await;
    log.blocking_append((1..=5).map(|i| blank(1, i))).await.unwrap();
    drop(log);
    // Flip the last byte of entry 2's body.
    let second_end = (frame(&blank(1, 1)).len() + frame(&blank(1, 2)).len()) as u64;
    let f = OpenOptions::new().read(true).write(true).open(log_path(dir.path())).unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, second_end - 1).unwrap();
    f.write_all_at(&[byte[0] ^ 0xff], second_end - 1).unwrap();
    drop(f);
    let err = open(dir.path()).await.unwrap_err();
    assert!(
        matches!(err, ControllerError::Corrupt { offset, .. } if offset == frame(&blank(1, 1)).len() as u64),
        "{err}"
    );
}

#[tokio::test]
async fn a_length_over_the_limit_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = reopen(dir.path()).await;
    log.blocking_append([blank(1, 1)]).await.unwrap();
    drop(log);
    let path = log_path(dir.path());
    let at = fs::metadata(&path).unwrap().len();
    append_bytes(&path, &(MAX_FRAME as u32 + 1).to_le_bytes());
    append_bytes(&path, &[0; 4]);
    // The claimed body fits in the (sparse) file: not a torn tail.
    OpenOptions::new().write(true).open(&path).unwrap().set_len(at + 8 + MAX_FRAME + 1).unwrap();
    let err = open(dir.path()).await.unwrap_err();
    assert!(matches!(err, ControllerError::Corrupt { offset, .. } if offset == at), "{err}");
}

#[tokio::test]
async fn purge_past_the_end_then_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = reopen(dir.path()).await;
    log.blocking_append((1..=5).map(|i| blank(1, i))).await.unwrap();
    // As after installing a snapshot up to 20.
    log.purge(log_id(2, 20)).await.unwrap();
    let purged = LogState { last_purged_log_id: Some(log_id(2, 20)), last_log_id: Some(log_id(2, 20)) };
    assert_eq!(log.get_log_state().await.unwrap(), purged);
    assert!(indexes(&mut log).await.is_empty());
    let gap = log.blocking_append([blank(2, 22)]).await;
    assert!(gap.is_err(), "a hole after the purge point is refused");
    drop(log);

    let (mut log, _) = reopen(dir.path()).await;
    assert_eq!(log.get_log_state().await.unwrap(), purged);
    log.blocking_append([blank(2, 21), blank(2, 22)]).await.unwrap();
    drop(log);
    let (mut log, _) = reopen(dir.path()).await;
    assert_eq!(indexes(&mut log).await, vec![21, 22]);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state, LogState { last_purged_log_id: Some(log_id(2, 20)), last_log_id: Some(log_id(2, 22)) });
}

#[tokio::test]
async fn purging_most_of_the_log_reclaims_its_space() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = reopen(dir.path()).await;
    let big = |i: u64| {
        let cmd = Command::RegisterNode { id: i, internode: "x".repeat(8192), listeners: BTreeMap::new(), rack: None };
        normal(1, i, cmd)
    };
    log.blocking_append((1..=20).map(big)).await.unwrap();
    let full = log.file_len();
    log.purge(log_id(1, 16)).await.unwrap();
    assert!(log.file_len() < full / 4, "{} of {full} bytes left", log.file_len());
    assert_eq!(fs::metadata(log_path(dir.path())).unwrap().len(), log.file_len());
    // Appending and truncating still find their frames in the new file.
    log.blocking_append([big(21)]).await.unwrap();
    log.truncate(log_id(1, 19)).await.unwrap();
    drop(log);
    let (mut log, _) = reopen(dir.path()).await;
    assert_eq!(log.try_get_log_entries(..).await.unwrap(), vec![big(17), big(18)]);
}

fn membership(voters: &[u64]) -> Membership<u64, NodeAddr> {
    let nodes: BTreeMap<u64, NodeAddr> =
        voters.iter().map(|id| (*id, NodeAddr { addr: format!("127.0.0.1:{}", 9000 + id) })).collect();
    Membership::new(vec![voters.iter().copied().collect::<BTreeSet<_>>()], nodes)
}

#[tokio::test]
async fn a_snapshot_survives_restart_and_installs() {
    let dir = tempfile::tempdir().unwrap();
    let members = membership(&[1, 2, 3]);
    let snap = {
        let (_, mut sm) = reopen(dir.path()).await;
        let applied = sm.subscribe();
        let entries = vec![
            Entry { log_id: log_id(1, 1), payload: EntryPayload::Membership(members.clone()) },
            normal(1, 2, register(1)),
            normal(1, 3, register(2)),
        ];
        assert_eq!(sm.apply(entries).await.unwrap().len(), 3, "one reply per entry");
        assert_eq!(applied.borrow().index, 3);
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        // Applied after the snapshot: in the log only, not in the snapshot.
        sm.apply([normal(1, 4, register(3))]).await.unwrap();
        snap
    };
    let stored = StoredMembership::new(Some(log_id(1, 1)), members);
    let (_, mut sm) = reopen(dir.path()).await;
    assert_eq!(sm.applied_state().await.unwrap(), (Some(log_id(1, 3)), stored.clone()));
    assert_eq!(sm.metadata().nodes.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(sm.subscribe().borrow().index, 3);
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    assert_eq!(current.snapshot.get_ref(), snap.snapshot.get_ref());

    // Installed on another node: replaces its state, and survives too.
    let dir2 = tempfile::tempdir().unwrap();
    let (_, mut follower) = reopen(dir2.path()).await;
    let applied = follower.subscribe();
    follower.apply([blank(1, 1)]).await.unwrap();
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    receiving.get_mut().extend_from_slice(snap.snapshot.get_ref());
    follower.install_snapshot(&snap.meta, receiving).await.unwrap();
    assert_eq!(applied.borrow().metadata.nodes.len(), 2);
    drop(follower);
    let (_, mut follower) = reopen(dir2.path()).await;
    assert_eq!(follower.applied_state().await.unwrap(), (Some(log_id(1, 3)), stored));
    assert_eq!(follower.get_current_snapshot().await.unwrap().unwrap().meta, snap.meta);

    // A snapshot whose bytes contradict its metadata is refused.
    let mut wrong = snap.meta.clone();
    wrong.last_log_id = Some(log_id(1, 9));
    let data = Box::new(Cursor::new(snap.snapshot.get_ref().clone()));
    assert!(follower.install_snapshot(&wrong, data).await.is_err());
}

#[tokio::test]
async fn a_damaged_snapshot_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut sm) = reopen(dir.path()).await;
    sm.apply([normal(1, 1, register(1))]).await.unwrap();
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    drop(sm);
    let path = dir.path().join("snapshot.bin");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let err = open(dir.path()).await.unwrap_err();
    assert!(matches!(err, ControllerError::Corrupt { .. }), "{err}");
}
