//! # fjord-cluster: several `fjord serve` nodes acting as one broker
//!
//! Each node runs one [`ClusterNode`]: a member of the metadata Raft group
//! (`fjord-controller`; a voter on the configured controllers, a learner
//! elsewhere) reached over the internode transport ([`transport`], frames
//! from `fjord-cluster-codec`), plus three loops:
//! - the **reconciler** ([`reconcile`]) turns applied metadata into the
//!   broker's state: local topics with the cluster's ids, and the
//!   [`fjord_broker::Placement`] that tells gateways who leads what;
//! - **heartbeats** to the controller leader, whose **leader duties**
//!   ([`leader`]) fence nodes that go silent, unfence them when they come
//!   back and make every registered node a Raft learner;
//! - topic changes from any gateway go through [`authority`], which places
//!   partitions and proposes them to the quorum.
//!
//! ## Invariants
//! - Before it has applied metadata, a node serves no partition (its
//!   placement is empty, so every partition is "unavailable" rather than
//!   wrongly led here).
//! - A topic change returns to its caller only once this node's broker
//!   reflects it (read-your-writes across gateways on one node).
//! - The cluster id is checked in every internode handshake, and the node
//!   id of the answering peer against the one the caller meant.
//! - Metadata changes are proposed with the placement already decided, so
//!   applying them is deterministic on every node.

pub mod authority;
mod error;
mod forward;
pub(crate) mod leader;
mod moves;
pub mod node;
pub mod raft_net;
pub mod reconcile;
mod replication;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use fjord_broker::{Broker, Placement};
use fjord_net::{Acceptor, serve_connections};
use openraft::Raft;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::{ClusterError, Result};
pub use node::{ClusterConfig, ClusterNode};

/// Starts this node's part of the cluster: opens the controller store,
/// starts Raft and the internode server on `internode`, forms the quorum
/// on first start, and installs the cluster's authority on `broker` (which
/// serves nothing until [`ClusterNode::join`] brought it up to date).
pub async fn start(
    cfg: ClusterConfig,
    broker: Arc<Broker>,
    internode: TcpListener,
    stop: watch::Receiver<bool>,
) -> Result<Arc<ClusterNode>> {
    cfg.validate()?;
    // Nothing is served until the metadata says what this node leads.
    broker.set_placement(Placement::default());
    // A voter that lost its Raft state but not its data (a wiped or
    // restored-from-old-backup controller directory) would vote as if it
    // had never voted, and the quorum could lose committed metadata.
    // (A learner is caught up from scratch; a brand-new node holds no
    // topics.)
    if cfg.is_controller() && !fjord_controller::store::has_state(&cfg.dir) && !broker.topics().is_empty() {
        return Err(ClusterError::Config(format!(
            "node {} is a controller, its controller state ({}) is missing, and its data directory holds topics: \
             restore that directory, or take node {} out of `cluster.controllers` on every node before it rejoins",
            cfg.node_id,
            cfg.dir.display(),
            cfg.node_id
        )));
    }
    let identity = node::identity(&cfg);
    let peers = transport::Peers::new(identity.clone());
    let (log, sm, metadata) = fjord_controller::store::open(&cfg.dir).await?;
    let config = Arc::new(node::raft_config(&cfg)?);
    // An unreachable peer is tried again after one Raft heartbeat.
    let retry = Duration::from_millis(config.heartbeat_interval);
    let net = raft_net::RaftNet::new(peers.clone(), cfg.dir.clone(), retry);
    let raft = Raft::new(cfg.node_id, config, net, log, sm).await.map_err(|e| ClusterError::Raft(e.to_string()))?;
    let (reconciled, _) = watch::channel(0);
    let node = Arc::new(ClusterNode {
        cfg,
        raft,
        peers,
        metadata,
        broker,
        incarnation: AtomicU64::new(0),
        reconciled,
        registered: watch::channel(false).0,
        leases: Default::default(),
        isolated: parking_lot::Mutex::new(false),
    });

    let handler: Arc<dyn transport::Handler> = Arc::new(node::NodeHandler(node.clone()));
    let acceptor = Acceptor::with_default_caps(internode, "internode");
    let serve_stop = stop.clone();
    tokio::spawn(serve_connections("internode", acceptor, stop.clone(), Duration::from_secs(2), move |s, _| {
        transport::serve_peer(s, identity.clone(), handler.clone(), serve_stop.clone())
    }));

    if node.cfg.is_controller() {
        let initialized = node.raft.is_initialized().await.map_err(|e| ClusterError::Raft(e.to_string()))?;
        if !initialized {
            // Every voter proposes the same membership: safe to race.
            match node.raft.initialize(node::voters(&node.cfg)).await {
                Ok(()) => {
                    tracing::info!(voters = ?node.cfg.controllers.keys().collect::<Vec<_>>(), "controller quorum initialized")
                }
                Err(e) => tracing::debug!(error = %e, "quorum already initialized"),
            }
        }
        tokio::spawn(leader::run(node.clone(), stop.clone()));
    }
    authority::install(&node);
    tokio::spawn(reconcile::run(node.clone(), stop.clone()));
    tokio::spawn(replication::fetcher::run(node.clone(), stop.clone()));
    tokio::spawn(replication::isr::run(node.clone(), stop.clone()));
    Ok(node)
}

impl ClusterNode {
    /// Registers this node with its client listeners (call once they are
    /// bound), waits until its broker reflects the metadata, then keeps
    /// heartbeating to the controller leader until `stop`.
    pub async fn join(
        self: &Arc<Self>,
        listeners: BTreeMap<String, String>,
        stop: watch::Receiver<bool>,
    ) -> Result<()> {
        self.register(listeners).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let index = self.metadata.borrow().index;
        self.await_reconciled(index, deadline).await?;
        tokio::spawn(heartbeats(self.clone(), stop));
        Ok(())
    }

    /// Stops Raft (the internode server stops with the shutdown signal),
    /// waiting at most a few seconds: a stop must not hang on a Raft core
    /// busy with peers it cannot reach.
    pub async fn shutdown(&self) {
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "controller shutdown"),
            Err(_) => tracing::warn!("the controller's Raft did not stop within 5 s; leaving it"),
        }
    }
}

/// Heartbeats to the controller leader until `stop`. A node whose
/// heartbeats have gone unanswered for a whole lease stops serving (the
/// controller fences it at about the same time, and may hand its
/// partitions to others once they have replicas): its placement is
/// emptied until heartbeats are answered again. The lease is counted from
/// when the last answered heartbeat was *sent*, before the controller
/// leader renewed it, and the node stops serving the moment it runs out
/// (not at its next heartbeat): so it has stopped before the controller
/// can fence it and let another node lead what it led — two nodes never
/// serve one partition or group at once, not even stale reads.
///
/// A heartbeat also goes out the moment this node learns of a new
/// controller leader, not at the next interval: after the leader's loss the
/// lease has already been running through the election.
async fn heartbeats(node: Arc<ClusterNode>, mut stop: watch::Receiver<bool>) {
    let mut last_ok = tokio::time::Instant::now();
    let mut leaders = node.raft.metrics();
    let mut raft_gone = false;
    loop {
        let sent = tokio::time::Instant::now();
        let addressed = leaders.borrow_and_update().current_leader;
        let answered = tokio::select! {
            r = node.heartbeat() => Some(r),
            // The lease runs out while the heartbeat is still on its way.
            _ = tokio::time::sleep_until(last_ok + node.cfg.lease), if !*node.isolated.lock() => None,
        };
        match answered {
            Some(Ok(_)) => {
                last_ok = sent;
                node.broker.renew_lease(sent + node.cfg.lease);
                let mut isolated = node.isolated.lock();
                if *isolated {
                    *isolated = false;
                    tracing::info!("heartbeats reach the controller leader again; serving");
                    reconcile::install_placement(&node, &node.metadata());
                }
            }
            Some(Err(e)) if last_ok.elapsed() >= node.cfg.lease => isolate(&node, &e.to_string()),
            None => isolate(&node, "no answer yet"),
            Some(Err(e)) => tracing::debug!(error = %e, "heartbeat to the controller leader failed"),
        }
        // The next heartbeat, or the moment the lease runs out if sooner.
        let (every, expiry) = (sent + node.cfg.heartbeat_interval, last_ok + node.cfg.lease);
        let next = if expiry > tokio::time::Instant::now() { every.min(expiry) } else { every };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            r = leaders.wait_for(|m| m.current_leader.is_some() && m.current_leader != addressed), if !raft_gone => {
                // Raft stopped (the node is stopping): heartbeats keep
                // their interval, and fail, until `stop`.
                raft_gone = r.is_err();
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Stops serving until heartbeats are answered again (see [`heartbeats`]).
fn isolate(node: &ClusterNode, error: &str) {
    let mut isolated = node.isolated.lock();
    if !*isolated {
        *isolated = true;
        tracing::warn!(
            error,
            lease_ms = node.cfg.lease.as_millis() as u64,
            "no controller leader answered for a whole lease; serving nothing until one does"
        );
        let known = node.broker.placement().map(|p| p.nodes.iter().chain(&p.fenced).cloned().collect());
        reconcile::serve_nothing(&node.broker, known.unwrap_or_default());
    }
}
