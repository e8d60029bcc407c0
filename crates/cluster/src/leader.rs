//! What the controller leader does besides Raft: it keeps node leases in
//! memory (heartbeats never touch the log, as in KRaft), fences nodes whose
//! lease ran out and unfences them when they come back, and makes every
//! registered node a Raft learner so it follows the metadata log.
//!
//! Leases live only on the leader: a new leader starts every registered
//! node with a fresh lease (a full lease of grace), so a leader change
//! never fences a node that was heartbeating to the old leader.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::placement::OFFSETS_TOPIC;
use fjord_controller::{Command, NodeAddr, NodeId, NodeState};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::node::ClusterNode;

/// Leader-side liveness: the last heartbeat of each node.
#[derive(Debug, Default)]
pub(crate) struct Leases(Mutex<HashMap<NodeId, Instant>>);

impl Leases {
    pub(crate) fn renew(&self, node: NodeId) {
        self.0.lock().insert(node, Instant::now());
    }

    /// When `node` last heartbeated; a node never seen (it registered
    /// since this leader took over) gets a full lease from now.
    fn last_seen(&self, node: NodeId) -> Instant {
        *self.0.lock().entry(node).or_insert_with(Instant::now)
    }

    fn grant_all(&self, nodes: impl Iterator<Item = NodeId>) {
        let now = Instant::now();
        let mut m = self.0.lock();
        m.clear();
        m.extend(nodes.map(|n| (n, now)));
    }
}

/// Runs the leader's duties on a controller node until `stop`.
pub(crate) async fn run(node: Arc<ClusterNode>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut was_leader = false;
    let mut since = Instant::now();
    let tick = node.cfg.heartbeat_interval.min(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let leader = node.controller_leader() == Some(node.cfg.node_id);
        if !leader {
            was_leader = false;
            continue;
        }
        if !was_leader {
            node.leases.grant_all(node.metadata().nodes.keys().copied());
            was_leader = true;
            since = Instant::now();
            tracing::info!(node = node.cfg.node_id, "became the controller leader");
        }
        add_learners(&node).await;
        fence_and_unfence(&node).await;
        ensure_offsets_topic(&node, since).await;
        crate::moves::complete_reassignments(&node).await;
        crate::moves::drain_decommissioning(&node).await;
        crate::moves::rebalance_leaders(&node).await;
    }
}

/// Creates the coordinator placement topic once the cluster has formed:
/// when as many nodes serve as there are voters, or a while after this
/// leader took over (a cluster whose other nodes are down still gets
/// coordinators).
async fn ensure_offsets_topic(node: &ClusterNode, leader_since: Instant) {
    let m = node.metadata();
    if m.topics.contains_key(OFFSETS_TOPIC) {
        return;
    }
    let serving = m.nodes.values().filter(|n| n.state == NodeState::Active).count();
    if serving < node.cfg.controllers.len() && leader_since.elapsed() < node.cfg.lease * 2 {
        return;
    }
    let serving = m.nodes.values().filter(|n| n.state == NodeState::Active).count();
    let rf = node.cfg.default_replication_factor.min(serving as u16).max(1);
    let Ok(partitions) = crate::authority::place(&m, node.cfg.offsets_partitions, rf) else { return };
    let topic = fjord_controller::TopicAssignment {
        id: uuid::Uuid::new_v4().to_string(),
        config: fjord_broker::offsets::offsets_topic_config(node.broker.config().offsets_compact_bytes).0,
        partitions,
    };
    match node.propose(Command::CreateTopic { name: OFFSETS_TOPIC.into(), topic }, node.cfg.lease).await {
        Ok(_) => tracing::info!(partitions = node.cfg.offsets_partitions, "group coordinators placed"),
        Err(e) => tracing::debug!(error = %e, "placing group coordinators failed; will retry"),
    }
}

/// Registered nodes that are not in the Raft membership become learners.
async fn add_learners(node: &ClusterNode) {
    let members: BTreeSet<NodeId> = {
        let m = node.raft.metrics().borrow().membership_config.clone();
        m.nodes().map(|(id, _)| *id).collect()
    };
    let wanted: Vec<(NodeId, String)> = node
        .metadata()
        .nodes
        .values()
        .filter(|n| !members.contains(&n.id))
        .map(|n| (n.id, n.internode.clone()))
        .collect();
    for (id, addr) in wanted {
        // Not blocking: the learner catches up in the background; the node
        // itself waits until it sees its own registration.
        match node.raft.add_learner(id, NodeAddr { addr }, false).await {
            Ok(_) => tracing::info!(node = id, "added as a metadata learner"),
            Err(e) => tracing::debug!(node = id, error = %e, "adding a learner failed; will retry"),
        }
    }
}

async fn fence_and_unfence(node: &ClusterNode) {
    let lease = node.cfg.lease;
    let now = Instant::now();
    let changes: Vec<Command> = node
        .metadata()
        .nodes
        .values()
        .filter_map(|n| {
            let fresh = now.duration_since(node.leases.last_seen(n.id)) < lease;
            match (n.state, fresh) {
                (NodeState::Active, false) => Some(Command::FenceNode { id: n.id }),
                (NodeState::Fenced, true) => Some(Command::UnfenceNode { id: n.id }),
                _ => None,
            }
        })
        .collect();
    for cmd in changes {
        tracing::info!(?cmd, "node liveness changed");
        if let Err(e) = node.propose(cmd, lease).await {
            tracing::warn!(error = %e, "could not record a node's liveness");
        }
    }
}
