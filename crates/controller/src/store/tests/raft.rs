//! A single-node openraft `Raft` over the store, across a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{Config, Raft};
use tokio::sync::watch;

use super::register;
use crate::store::{Applied, LogStore, StateMachineStore, open};
use crate::{NodeAddr, NodeId, Reply, TypeConfig};

/// A network to nowhere: a single node never sends.
struct NoPeers;

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, NodeAddr, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other("single-node test has no peers")))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: NodeId, _node: &NodeAddr) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId, InstallSnapshotError>>>
    {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn start(log: LogStore, sm: StateMachineStore) -> Raft<TypeConfig> {
    let config = Config { cluster_name: "test".into(), ..Default::default() }.validate().unwrap();
    Raft::new(1, Arc::new(config), NoPeers, log, sm).await.unwrap()
}

async fn wait_for_node(applied: &mut watch::Receiver<Applied>, id: NodeId) -> Applied {
    let wait = applied.wait_for(|a| a.metadata.nodes.contains_key(&id));
    tokio::time::timeout(WAIT, wait).await.unwrap().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_raft_keeps_its_state_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, sm, mut applied) = open(dir.path()).await.unwrap();
        let raft = start(log, sm).await;
        let members = BTreeMap::from([(1, NodeAddr { addr: "127.0.0.1:9001".into() })]);
        raft.initialize(members).await.unwrap();
        raft.wait(Some(WAIT)).current_leader(1, "leader after initialize").await.unwrap();

        let written = raft.client_write(register(1)).await.unwrap();
        assert_eq!(written.data, Reply::Ok);
        let seen = wait_for_node(&mut applied, 1).await;
        assert!(seen.index >= written.log_id.index);

        // Snapshot and purge what it covers, then write one more entry that
        // only the log holds: a restart needs both.
        raft.trigger().snapshot().await.unwrap();
        raft.wait(Some(WAIT)).snapshot(written.log_id, "snapshot").await.unwrap();
        raft.trigger().purge_log(written.log_id.index).await.unwrap();
        raft.wait(Some(WAIT)).purged(Some(written.log_id), "purged").await.unwrap();
        let second = raft.client_write(register(2)).await.unwrap();
        assert_eq!(second.data, Reply::Ok);
        wait_for_node(&mut applied, 2).await;
        raft.shutdown().await.unwrap();
    }

    let (log, sm, mut applied) = open(dir.path()).await.unwrap();
    // The state machine starts from the snapshot (node 1 only); Raft then
    // re-applies the committed entry after it (node 2).
    assert!(applied.borrow().metadata.nodes.contains_key(&1));
    assert!(!applied.borrow().metadata.nodes.contains_key(&2));
    let raft = start(log, sm).await;
    let seen = wait_for_node(&mut applied, 2).await;
    assert_eq!(seen.metadata.nodes[&1].incarnation, 1);
    assert!(raft.is_initialized().await.unwrap());
    raft.wait(Some(WAIT)).current_leader(1, "leader again after restart").await.unwrap();
    let again = raft.client_write(register(1)).await.unwrap();
    assert_eq!(again.data, Reply::Ok);
    let wait = applied.wait_for(|a| a.metadata.nodes.get(&1).is_some_and(|n| n.incarnation == 2));
    tokio::time::timeout(WAIT, wait).await.unwrap().unwrap();
    raft.shutdown().await.unwrap();
}
