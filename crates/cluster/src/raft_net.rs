//! openraft's network over the internode transport.
//!
//! Raft messages travel as JSON bodies (openraft's own serde types) in
//! [`Kind::RaftVote`], [`Kind::RaftAppend`] and [`Kind::RaftSnapshot`]
//! frames; the receiving node hands them to its local `Raft` and sends back
//! the whole `Result`. The metadata log is small and infrequent, so JSON's
//! cost does not matter here; data replication (issue 17) gets binary
//! frames of its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_cluster_codec::Kind;
use fjord_controller::{NodeAddr, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ClusterError;
use crate::transport::Peers;

/// Makes one [`RaftPeer`] per target; connections are pooled in [`Peers`].
#[derive(Debug, Clone)]
pub struct RaftNet {
    peers: Arc<Peers>,
    /// This controller's storage directory: while a write there waits for
    /// space, nothing is sent (see [`fjord_controller::store::stalled`]).
    dir: Arc<PathBuf>,
    /// How soon a peer that could not be reached is tried again.
    retry: Duration,
}

impl RaftNet {
    /// A factory sending through `peers` for the controller storing in
    /// `dir`, trying an unreachable peer again after `retry`.
    pub fn new(peers: Arc<Peers>, dir: PathBuf, retry: Duration) -> RaftNet {
        RaftNet { peers, dir: Arc::new(dir), retry }
    }
}

/// The network to one Raft peer.
#[derive(Debug)]
pub struct RaftPeer {
    peers: Arc<Peers>,
    dir: Arc<PathBuf>,
    target: NodeId,
    addr: String,
    retry: Duration,
}

impl RaftNetworkFactory<TypeConfig> for RaftNet {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> RaftPeer {
        RaftPeer {
            peers: self.peers.clone(),
            dir: self.dir.clone(),
            target,
            addr: node.addr.clone(),
            retry: self.retry,
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>;

impl RaftPeer {
    async fn send<Req, Resp, E>(&self, kind: Kind, req: &Req, option: &RPCOption) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        // A controller that cannot store falls silent: a leader's
        // heartbeats (sent beside its stalled storage calls) would keep
        // followers from electing one that can commit.
        if fjord_controller::store::stalled(&self.dir) {
            let e = ClusterError::Unreachable {
                addr: self.addr.clone(),
                reason: "this controller's storage is full; silent until it has space".into(),
            };
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self.peers.call(self.target, &self.addr, kind, Bytes::from(body), option.hard_ttl()).await;
        let bytes = match reply {
            Ok(b) => b,
            // Down or not yet up: openraft backs off before retrying.
            Err(
                e @ (ClusterError::Unreachable { .. } | ClusterError::Refused { .. } | ClusterError::ConnectionLost(_)),
            ) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let answer: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.send(Kind::RaftAppend, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.send(Kind::RaftSnapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.send(Kind::RaftVote, &rpc, &option).await
    }

    /// A peer that was down is tried again after one Raft heartbeat, not
    /// openraft's 500 ms: a restarted controller must hear from the leader
    /// before its own election timer fires, or its campaign (a higher term,
    /// bound to lose for its shorter log) deposes the leader and every
    /// node's lease lapses while the quorum elects again.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry))
    }
}

/// Serves a Raft message from a peer with the local `raft`: the JSON of the
/// whole result, errors included (openraft's peer interprets them).
pub async fn serve(raft: &openraft::Raft<TypeConfig>, kind: Kind, body: &[u8]) -> Result<Bytes, String> {
    fn reply<T: Serialize>(r: &T) -> Result<Bytes, String> {
        serde_json::to_vec(r).map(Bytes::from).map_err(|e| e.to_string())
    }
    let bad = |e: serde_json::Error| format!("malformed Raft message: {e}");
    match kind {
        Kind::RaftVote => reply(&raft.vote(serde_json::from_slice(body).map_err(bad)?).await),
        Kind::RaftAppend => reply(&raft.append_entries(serde_json::from_slice(body).map_err(bad)?).await),
        Kind::RaftSnapshot => reply(&raft.install_snapshot(serde_json::from_slice(body).map_err(bad)?).await),
        other => Err(format!("{other:?} is not a Raft message")),
    }
}
