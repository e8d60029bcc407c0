//! A cluster node: the Raft member (a voter on controller nodes, a learner
//! on the others), its internode server, its registration and heartbeats,
//! and the way metadata changes are proposed from any node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::Broker;
use fjord_cluster_codec::{Heartbeat, HeartbeatAck, Kind};
use fjord_controller::{Command, Metadata, NodeAddr, NodeId, Reply, TypeConfig};
use openraft::Raft;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{ClusterError, Result};
use crate::transport::{Handler, Identity, Peers};

/// The `[cluster]` settings of one node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id (also its Kafka broker id): 1..=i32::MAX.
    pub node_id: NodeId,
    /// The cluster's id, the same on every node.
    pub cluster_id: String,
    /// The controller quorum's voters: node id → internode address.
    pub controllers: BTreeMap<NodeId, String>,
    /// The internode address other nodes reach this one at.
    pub advertised: String,
    /// Rack, for rack-aware placement.
    pub rack: Option<String>,
    /// Where the controller's Raft log and snapshots live.
    pub dir: PathBuf,
    /// How often a node tells the controller leader it is alive.
    pub heartbeat_interval: Duration,
    /// A node silent this long is fenced: its partitions become unavailable.
    pub lease: Duration,
    /// Raft election timeout (the heartbeat is a fifth of it).
    pub election_timeout: Duration,
    /// Partitions of the internal topic that places group coordinators.
    pub offsets_partitions: u32,
    /// Raft snapshots are taken after this many metadata log entries (and
    /// sent to nodes too far behind to catch up from the log).
    pub snapshot_every: u64,
    /// Replicas per partition of a topic created without saying (Kafka's
    /// `default.replication.factor`); capped by the serving nodes.
    pub default_replication_factor: u16,
    /// A follower this long behind its leader's log end leaves the
    /// in-sync replicas.
    pub replica_lag: Duration,
}

impl ClusterConfig {
    /// Checks the settings that would otherwise fail late.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ClusterError::Config(m));
        if self.node_id == 0 || self.node_id > i32::MAX as u64 {
            return bad(format!("node_id {} is outside 1..={}", self.node_id, i32::MAX));
        }
        if self.controllers.is_empty() {
            return bad("controllers is empty: list the voters as \"id@host:port\"".into());
        }
        if self.controllers.len().is_multiple_of(2) {
            tracing::warn!(
                voters = self.controllers.len(),
                "an even number of controllers tolerates no more failures than one fewer"
            );
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > 255 {
            return bad("cluster_id must be 1 to 255 bytes".into());
        }
        if self.heartbeat_interval.is_zero() || self.lease <= self.heartbeat_interval * 2 {
            return bad("the lease must be longer than two heartbeat intervals".into());
        }
        // A node's lease must outlast the controller's failover plus the
        // heartbeat that finds the new leader, or the loss of the
        // controller leader makes every node stop serving for a moment.
        let failover = controller_failover_bound(self.election_timeout) + self.heartbeat_interval;
        if self.lease <= failover {
            return bad(format!(
                "the lease ({} ms) must be longer than a controller failover (3 x the election timeout) \
                 plus a heartbeat interval: {} ms",
                self.lease.as_millis(),
                failover.as_millis()
            ));
        }
        Ok(())
    }

    /// Whether this node votes in the controller quorum.
    pub fn is_controller(&self) -> bool {
        self.controllers.contains_key(&self.node_id)
    }
}

/// A metadata write as it travels to the controller leader.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Written {
    /// The log index the command was committed at.
    pub(crate) index: u64,
    /// What applying it said.
    pub(crate) reply: Reply,
}

/// One node of the cluster.
pub struct ClusterNode {
    pub(crate) cfg: ClusterConfig,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) peers: Arc<Peers>,
    pub(crate) metadata: watch::Receiver<fjord_controller::store::Applied>,
    pub(crate) broker: Arc<Broker>,
    /// This node's registration's incarnation, once registered.
    pub(crate) incarnation: AtomicU64,
    /// The metadata index the broker has been brought up to.
    pub(crate) reconciled: watch::Sender<u64>,
    /// Set once this incarnation is registered. Until then the broker
    /// serves nothing: the metadata this node holds from before a restart
    /// may name it leader in an epoch its former incarnation led, and
    /// taking writes in that epoch again (with a log that may have lost
    /// its unsynced tail, or a sole-leader commit point) forks the log
    /// under one epoch. Registering bumps those epochs first.
    pub(crate) registered: watch::Sender<bool>,
    /// Leader side: when each node last heartbeated.
    pub(crate) leases: crate::leader::Leases,
    /// Set while no controller leader answers this node's heartbeats: it
    /// serves nothing then. The lock orders placement installs with it.
    pub(crate) isolated: parking_lot::Mutex<bool>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node_id", &self.cfg.node_id)
            .field("cluster_id", &self.cfg.cluster_id)
            .finish()
    }
}

/// Serves internode requests with a node.
#[derive(Debug)]
pub(crate) struct NodeHandler(pub(crate) Arc<ClusterNode>);

impl Handler for NodeHandler {
    fn handle(
        &self,
        from: u64,
        kind: Kind,
        body: Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<Bytes, String>> + Send + '_>> {
        Box::pin(async move {
            let node = &self.0;
            match kind {
                Kind::RaftVote | Kind::RaftAppend | Kind::RaftSnapshot => {
                    crate::raft_net::serve(&node.raft, kind, &body).await
                }
                Kind::ControllerWrite => {
                    let cmd: Command = serde_json::from_slice(&body).map_err(|e| format!("malformed command: {e}"))?;
                    let written = node.write_here(cmd).await.map_err(|e| e.to_string())?;
                    serde_json::to_vec(&written).map(Bytes::from).map_err(|e| e.to_string())
                }
                Kind::Heartbeat => {
                    let hb = Heartbeat::decode(body).map_err(|e| e.to_string())?;
                    if hb.node_id != from {
                        return Err(format!("node {from} heartbeated for node {}", hb.node_id));
                    }
                    let ack = node.heartbeat_here(hb).map_err(|e| e.to_string())?;
                    Ok(ack.encode())
                }
                Kind::Forward => crate::forward::serve(&node.broker, &body).await,
                Kind::ReplicaFetch => {
                    let req = fjord_cluster_codec::ReplicaFetch::decode(body).map_err(|e| e.to_string())?;
                    let resp = crate::replication::serve::serve(&node.broker, from, req).await?;
                    resp.encode().map_err(|e| e.to_string())
                }
                Kind::Service => {
                    let call = fjord_cluster_codec::ServiceCall::decode(body).map_err(|e| e.to_string())?;
                    let caller = i32::try_from(from).map_err(|_| format!("node id {from} out of range"))?;
                    node.broker.serve_service(&call.service, caller, call.payload).await
                }
                other => Err(format!("{other:?} is not served yet")),
            }
        })
    }

    fn disconnected(&self, from: u64) {
        self.0.leases.suspect(from);
    }
}

impl ClusterNode {
    /// The metadata as this node last applied it.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata.borrow().metadata.clone()
    }

    /// Watches applied metadata.
    pub fn subscribe(&self) -> watch::Receiver<fjord_controller::store::Applied> {
        self.metadata.clone()
    }

    /// The node's settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// The controller leader this node knows of.
    pub fn controller_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this node stopped serving because no controller leader
    /// answered its heartbeats for a lease.
    pub fn isolated(&self) -> bool {
        *self.isolated.lock()
    }

    /// The Raft handle (status and tests).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Writes `cmd` with the local Raft: only succeeds on the leader.
    async fn write_here(&self, cmd: Command) -> Result<Written> {
        if let Command::ShutdownNode { id } = &cmd
            && let Some(n) = self.metadata().nodes.get(id)
        {
            // Before the write: a heartbeat racing it must not unfence the
            // node once it is fenced (see `crate::leader`).
            self.leases.shut_down(*id, n.incarnation);
        }
        // Its storage waits for space: it commits nothing, and its peers
        // are electing another leader (see `crate::raft_net`).
        if fjord_controller::store::stalled(&self.cfg.dir) {
            return Err(ClusterError::NoLeader(format!(
                "node {}'s controller storage is full: it commits nothing until it has space",
                self.cfg.node_id
            )));
        }
        match self.raft.client_write(cmd).await {
            Ok(r) => Ok(Written { index: r.log_id.index, reply: r.data }),
            Err(e) => match e.forward_to_leader() {
                Some(f) => Err(ClusterError::NoLeader(format!(
                    "node {} is not the controller leader (leader: {:?})",
                    self.cfg.node_id, f.leader_id
                ))),
                None => Err(ClusterError::Raft(e.to_string())),
            },
        }
    }

    fn heartbeat_here(&self, hb: Heartbeat) -> Result<HeartbeatAck> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.cfg.node_id) {
            return Err(ClusterError::NoLeader(format!("node {} is not the controller leader", self.cfg.node_id)));
        }
        // A leader whose storage waits for space commits nothing and its
        // peers elect another: its metrics (frozen with its core) are no
        // evidence it still leads, and it must not renew leases — its own
        // least of all, or it would keep serving what the new leader hands
        // to others.
        if fjord_controller::store::stalled(&self.cfg.dir) {
            return Err(ClusterError::NoLeader(format!(
                "node {}'s controller storage is full: it renews no lease",
                self.cfg.node_id
            )));
        }
        // A leader cut off from its quorum is no authority on leases.
        let quorum_ms = m.millis_since_quorum_ack.unwrap_or(u64::MAX);
        if self.cfg.controllers.len() > 1 && quorum_ms > self.cfg.lease.as_millis() as u64 {
            return Err(ClusterError::NoLeader(format!(
                "no quorum has answered node {} for {quorum_ms} ms",
                self.cfg.node_id
            )));
        }
        let index = m.last_applied.map_or(0, |l| l.index);
        self.leases.note_applied(index, self.cfg.lease * 2);
        // Caught up with what this leader had applied half a lease ago, or
        // no renewal (see `crate::leader`).
        let needed = self.leases.applied_before(self.cfg.lease / 2);
        if let Some(applied) = hb.applied
            && applied < needed
        {
            return Err(ClusterError::Behind { node: hb.node_id, applied, needed });
        }
        if self.leases.is_shut_down(hb.node_id, hb.incarnation) {
            return Err(ClusterError::ShuttingDown(hb.node_id));
        }
        self.leases.renew(hb.node_id);
        Ok(HeartbeatAck { lease_ms: self.cfg.lease.as_millis().min(u32::MAX as u128) as u32, metadata_index: index })
    }

    /// Where a node's internode listener is: the Raft membership knows
    /// voters and learners, the config knows the voters before that.
    pub(crate) fn address_of(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.nodes()
            .find(|(n, _)| **n == id)
            .map(|(_, a)| a.addr.clone())
            .or_else(|| self.cfg.controllers.get(&id).cloned())
            .or_else(|| self.metadata().nodes.get(&id).map(|n| n.internode.clone()))
    }

    /// Proposes `cmd` to the controller quorum from any node, retrying
    /// through the known leader and the configured voters until `timeout`,
    /// then waits until this node has applied it. A rejection by the state
    /// machine is an error; so is no leader within the time.
    pub async fn propose(&self, cmd: Command, timeout: Duration) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        let body = Bytes::from(serde_json::to_vec(&cmd)?);
        let mut last = String::from("no controller answered");
        let mut round = 0u32;
        let written = 'found: loop {
            let leader = self.controller_leader();
            let mut targets: Vec<NodeId> = leader.into_iter().collect();
            targets.extend(self.cfg.controllers.keys().filter(|c| Some(**c) != leader));
            for target in targets {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ClusterError::NoLeader(last));
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let write = async {
                    if target == self.cfg.node_id {
                        // Bounded: a leader without a quorum would wait forever.
                        match tokio::time::timeout(left, self.write_here(cmd.clone())).await {
                            Ok(r) => r,
                            Err(_) => Err(ClusterError::NoLeader(format!(
                                "node {} could not commit a change in time (no quorum?)",
                                self.cfg.node_id
                            ))),
                        }
                    } else {
                        let Some(addr) = self.address_of(target) else {
                            return Err(ClusterError::NoLeader(format!("no address for node {target}")));
                        };
                        match self.peers.call(target, &addr, Kind::ControllerWrite, body.clone(), left).await {
                            Ok(b) => serde_json::from_slice::<Written>(&b).map_err(ClusterError::from),
                            Err(e) => Err(e),
                        }
                    }
                };
                // A leader that stalls (its disk full) keeps the write
                // waiting until the deadline; once another node leads, the
                // write goes there instead. (Like any retry after a lost
                // answer, the first attempt may still commit.)
                let attempt = tokio::select! {
                    r = write => r,
                    () = self.leads_elsewhere_than(target) => {
                        Err(ClusterError::NoLeader(format!("node {target} no longer leads the controller quorum")))
                    }
                };
                match attempt {
                    Ok(w) => break 'found w,
                    Err(e) => last = e.to_string(),
                }
            }
            round += 1;
            // An election takes a few hundred milliseconds.
            let pause = Duration::from_millis((50 * u64::from(round)).min(500));
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
        };
        if let Reply::Rejected { reason, message } = written.reply {
            return Err(ClusterError::Rejected { reason, message });
        }
        self.await_applied(written.index, deadline).await?;
        Ok(written.index)
    }

    /// Resolves once this node knows of a controller leader other than
    /// `node`.
    async fn leads_elsewhere_than(&self, node: NodeId) {
        let mut rx = self.raft.metrics();
        if rx.wait_for(|m| m.current_leader.is_some_and(|l| l != node)).await.is_err() {
            // Raft stopped: nothing will change any more.
            std::future::pending::<()>().await;
        }
    }

    /// Waits until this node applied the metadata log up to `index`.
    pub(crate) async fn await_applied(&self, index: u64, deadline: tokio::time::Instant) -> Result<()> {
        let mut rx = self.metadata.clone();
        let reached = rx.wait_for(|a| a.index >= index);
        until(deadline, reached, "the metadata state machine stopped", || {
            format!("metadata index {index} did not reach this node in time")
        })
        .await
    }

    /// Waits until the broker reflects the metadata up to `index`.
    pub(crate) async fn await_reconciled(&self, index: u64, deadline: tokio::time::Instant) -> Result<()> {
        let mut rx = self.reconciled.subscribe();
        let reached = rx.wait_for(|r| *r >= index);
        until(deadline, reached, "the reconciler stopped", || {
            format!("this node did not apply metadata index {index} in time")
        })
        .await
    }

    /// Registers this node (again, after a restart: a new incarnation).
    pub(crate) async fn register(&self, listeners: BTreeMap<String, String>) -> Result<()> {
        let cmd = Command::RegisterNode {
            id: self.cfg.node_id,
            internode: self.cfg.advertised.clone(),
            listeners,
            rack: self.cfg.rack.clone(),
        };
        // Generous: the quorum may be forming (other voters still starting).
        self.propose(cmd, Duration::from_secs(120)).await?;
        let incarnation = self.metadata().nodes.get(&self.cfg.node_id).map_or(0, |n| n.incarnation);
        self.incarnation.store(incarnation, Ordering::Relaxed);
        {
            // Under the lock the reconciler installs with: it cannot
            // empty the placement after this (it reads `registered` there).
            let isolated = self.isolated.lock();
            self.registered.send_replace(true);
            if !*isolated {
                crate::reconcile::install_placement(self, &self.metadata());
            }
        }
        tracing::info!(node = self.cfg.node_id, incarnation, "registered with the cluster");
        Ok(())
    }

    /// Kafka's controlled shutdown: asks the controller to fence this node
    /// now, so that its partitions get new leaders (those it is the last
    /// in-sync replica of keep it) while it still answers their clients,
    /// and waits until this node's broker has stepped down. Writes waiting
    /// here for their commit are then answered NOT_LEADER_OR_FOLLOWER and
    /// retried at the new leaders rather than timing out on a node that
    /// is about to close their connections.
    /// Bounded by the lease: without a controller quorum (the last nodes of
    /// a cluster being stopped) it gives up, and the node stops anyway.
    pub async fn controlled_shutdown(&self) -> Result<()> {
        let timeout = self.cfg.lease;
        let deadline = tokio::time::Instant::now() + timeout;
        let index = self.propose(Command::ShutdownNode { id: self.cfg.node_id }, timeout).await?;
        self.await_reconciled(index, deadline).await?;
        tracing::info!(node = self.cfg.node_id, "controlled shutdown: fenced, partitions handed over");
        Ok(())
    }

    /// Sends one heartbeat to the controller leader.
    pub(crate) async fn heartbeat(&self) -> Result<HeartbeatAck> {
        let hb = Heartbeat {
            node_id: self.cfg.node_id,
            incarnation: self.incarnation.load(Ordering::Relaxed),
            applied: Some(*self.reconciled.borrow()),
        };
        let leader = self.controller_leader().ok_or_else(|| ClusterError::NoLeader("no leader known".into()))?;
        if leader == self.cfg.node_id {
            return self.heartbeat_here(hb);
        }
        let addr = self.address_of(leader).ok_or_else(|| ClusterError::NoLeader(format!("no address for {leader}")))?;
        let b = self.peers.call(leader, &addr, Kind::Heartbeat, hb.encode(), self.cfg.heartbeat_interval * 2).await?;
        HeartbeatAck::decode(b).map_err(ClusterError::Codec)
    }
}

/// Awaits a watch condition until `deadline`: a closed watch is `stopped`,
/// the deadline a retriable "no leader" error saying `late`.
async fn until<T>(
    deadline: tokio::time::Instant,
    reached: impl std::future::Future<Output = std::result::Result<T, watch::error::RecvError>>,
    stopped: &str,
    late: impl FnOnce() -> String,
) -> Result<()> {
    match tokio::time::timeout_at(deadline, reached).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(ClusterError::Raft(stopped.into())),
        Err(_) => Err(ClusterError::NoLeader(late())),
    }
}

/// Builds the openraft configuration from the node's timings.
///
/// openraft's followers wait out the leader's lease (its
/// `election_timeout_max`) and then a random election timeout before they
/// campaign, so a controller leader's loss is replaced within about
/// `max + max` of its last heartbeat. The maximum is one and a half times
/// the minimum (openraft's default ratio is two): that bound, 3 × the
/// election timeout, must stay inside a node's lease (see
/// [`controller_failover_bound`]), or every node stops serving for a
/// moment whenever the controller leader goes away.
pub(crate) fn raft_config(cfg: &ClusterConfig) -> Result<openraft::Config> {
    let election = cfg.election_timeout.as_millis().max(300) as u64;
    let c = openraft::Config {
        cluster_name: cfg.cluster_id.clone(),
        election_timeout_min: election,
        election_timeout_max: election_timeout_max(cfg.election_timeout).as_millis() as u64,
        heartbeat_interval: (election / 5).max(50),
        install_snapshot_timeout: 5_000,
        snapshot_max_chunk_size: 1 << 20,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_every.max(1)),
        max_in_snapshot_log_to_keep: cfg.snapshot_every.clamp(1, 100),
        ..Default::default()
    };
    c.validate().map_err(|e| ClusterError::Config(e.to_string()))
}

/// How long the controller quorum can take to replace a lost leader (see
/// [`raft_config`]): the leader's lease plus the longest election timeout.
pub(crate) fn controller_failover_bound(election_timeout: Duration) -> Duration {
    election_timeout_max(election_timeout) * 2
}

/// openraft's longest election timeout, which is also the leader's lease
/// its followers wait out: one and a half times the configured minimum
/// (at least 300 ms).
fn election_timeout_max(election_timeout: Duration) -> Duration {
    election_timeout.max(Duration::from_millis(300)) * 3 / 2
}

/// The identity this node shows its peers.
pub(crate) fn identity(cfg: &ClusterConfig) -> Identity {
    Identity {
        cluster_id: cfg.cluster_id.clone(),
        node_id: cfg.node_id,
        max_frame: fjord_cluster_codec::DEFAULT_MAX_FRAME,
    }
}

/// The voters as openraft's initial membership.
pub(crate) fn voters(cfg: &ClusterConfig) -> BTreeMap<NodeId, NodeAddr> {
    cfg.controllers.iter().map(|(id, addr)| (*id, NodeAddr { addr: addr.clone() })).collect()
}
