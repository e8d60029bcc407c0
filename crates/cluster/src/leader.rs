//! What the controller leader does besides Raft: it keeps node leases in
//! memory (heartbeats never touch the log, as in KRaft), fences nodes whose
//! lease ran out and unfences them when they come back, and makes every
//! registered node a Raft learner so it follows the metadata log.
//!
//! Leases live only on the leader: a new leader starts every registered
//! node with a fresh lease (a full lease of grace), so a leader change
//! never fences a node that was heartbeating to the old leader.
//!
//! A lease is renewed only for a node that serves from recent metadata:
//! its heartbeat says which metadata index it has applied, and one that
//! has not applied what this leader had applied half a lease earlier is
//! refused (as KRaft keeps a broker fenced until it has caught up). A node
//! whose metadata stopped moving — its Raft storage failed, its applier is
//! stuck — would otherwise keep heartbeating and keep leading partitions
//! the others have moved on from; refused, it stops serving after a lease
//! and is fenced, and its partitions fail over.
//!
//! A node whose process is gone (its cluster listener refuses
//! connections) is fenced without waiting for its lease: the leader probes
//! a node when its connection ends or its heartbeats are overdue. A node
//! that is alive but silent keeps its lease, so a pause or a partition
//! still fences only after the lease.
//!
//! A node shutting down cleanly says so ([`Command::ShutdownNode`], Kafka's
//! controlled shutdown): it is fenced at once and its partitions get new
//! leaders while it still answers their clients (who are told
//! NOT_LEADER_OR_FOLLOWER and move, instead of timing out on a node that
//! stops answering); its incarnation's heartbeats renew nothing after
//! that, so it is not unfenced before it is gone.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::offsets::{offsets_topic_config, pop_topic_config, timer_topic_config};
use fjord_broker::placement::{OFFSETS_TOPIC, POP_TOPIC, TIMER_TOPIC};
use fjord_controller::{Command, NodeAddr, NodeId, NodeState};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::node::ClusterNode;

/// Leader-side liveness: the last heartbeat of each node, and when this
/// leader had applied which metadata index (to tell a node that lags).
#[derive(Debug, Default)]
pub(crate) struct Leases {
    seen: Mutex<HashMap<NodeId, Instant>>,
    /// Nodes that announced a clean shutdown, with the incarnation that
    /// did: that incarnation's heartbeats renew nothing any more, so it
    /// stays fenced (its next incarnation registers and heartbeats anew).
    shut_down: Mutex<HashMap<NodeId, u64>>,
    /// (when, index applied then), oldest first, a few leases' worth.
    applied: Mutex<VecDeque<(Instant, u64)>>,
    /// Nodes whose connection to this node ended since they were last
    /// probed, and the signal that there are some.
    suspects: Mutex<BTreeSet<NodeId>>,
    suspected: tokio::sync::Notify,
    /// Nodes found gone (their listener refuses connections): their lease
    /// counts as run out until they heartbeat again.
    down: Mutex<BTreeSet<NodeId>>,
}

impl Leases {
    pub(crate) fn renew(&self, node: NodeId) {
        self.seen.lock().insert(node, Instant::now());
        self.down.lock().remove(&node);
    }

    /// `node`'s connection ended: the leader probes it soon.
    pub(crate) fn suspect(&self, node: NodeId) {
        self.suspects.lock().insert(node);
        self.suspected.notify_one();
    }

    /// Every one of `nodes` is probed at the next round (no wake-up: the
    /// caller probes right away).
    fn suspect_all(&self, nodes: impl Iterator<Item = NodeId>) {
        self.suspects.lock().extend(nodes);
    }

    /// `node` refused a connection: its lease counts as run out until it
    /// heartbeats again.
    fn mark_down(&self, node: NodeId) {
        self.down.lock().insert(node);
    }

    fn take_suspects(&self) -> BTreeSet<NodeId> {
        std::mem::take(&mut *self.suspects.lock())
    }

    fn is_down(&self, node: NodeId) -> bool {
        self.down.lock().contains(&node)
    }

    /// `node`'s incarnation `incarnation` is shutting down.
    pub(crate) fn shut_down(&self, node: NodeId, incarnation: u64) {
        self.shut_down.lock().insert(node, incarnation);
    }

    /// Whether that incarnation of `node` announced its shutdown.
    pub(crate) fn is_shut_down(&self, node: NodeId, incarnation: u64) -> bool {
        self.shut_down.lock().get(&node) == Some(&incarnation)
    }

    /// When `node` last heartbeated; a node never seen (it registered
    /// since this leader took over) gets a full lease from now.
    fn last_seen(&self, node: NodeId) -> Instant {
        *self.seen.lock().entry(node).or_insert_with(Instant::now)
    }

    fn grant_all(&self, nodes: impl Iterator<Item = NodeId>) {
        let now = Instant::now();
        let mut m = self.seen.lock();
        m.clear();
        m.extend(nodes.map(|n| (n, now)));
        self.applied.lock().clear();
        self.down.lock().clear();
    }

    /// Notes that this leader has applied `index` by now; forgets what is
    /// older than `keep`.
    pub(crate) fn note_applied(&self, index: u64, keep: Duration) {
        let now = Instant::now();
        let mut a = self.applied.lock();
        if a.back().is_none_or(|(_, i)| *i != index) {
            a.push_back((now, index));
        }
        // Keep the newest sample older than `keep`: it answers questions
        // about exactly that age.
        while a.len() > 1 && a.get(1).is_some_and(|(t, _)| now.duration_since(*t) > keep) {
            a.pop_front();
        }
    }

    /// The highest index this leader had applied at least `age` ago (0 if
    /// it has not been leading that long): what a node that keeps up must
    /// have applied by now.
    pub(crate) fn applied_before(&self, age: Duration) -> u64 {
        let now = Instant::now();
        self.applied.lock().iter().rev().find(|(t, _)| now.duration_since(*t) >= age).map_or(0, |(_, i)| *i)
    }
}

/// Runs the leader's duties on a controller node until `stop`.
pub(crate) async fn run(node: Arc<ClusterNode>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut was_leader = false;
    let mut since = Instant::now();
    let tick = node.cfg.heartbeat_interval.min(Duration::from_millis(500));
    loop {
        let suspects = tokio::select! {
            _ = tokio::time::sleep(tick) => false,
            _ = node.leases.suspected.notified() => true,
            _ = stop.wait_for(|s| *s) => return,
        };
        let leader = node.controller_leader() == Some(node.cfg.node_id);
        if !leader {
            was_leader = false;
            node.leases.take_suspects();
            continue;
        }
        if !was_leader {
            node.leases.grant_all(node.metadata().nodes.keys().copied());
            // Whoever led before may be gone (that is often why this node
            // leads now): every node is probed at once rather than after
            // two heartbeat intervals of the fresh leases.
            node.leases.suspect_all(node.metadata().nodes.keys().copied());
            was_leader = true;
            since = Instant::now();
            tracing::info!(node = node.cfg.node_id, "became the controller leader");
        }
        let gone = probe_silent_nodes(&node).await;
        if suspects {
            if gone {
                fence_and_unfence(&node).await;
            }
            continue;
        }
        add_learners(&node).await;
        fence_and_unfence(&node).await;
        ensure_internal_topics(&node, since).await;
        crate::moves::complete_reassignments(&node).await;
        crate::moves::drain_decommissioning(&node).await;
        crate::moves::rebalance_leaders(&node).await;
    }
}

/// Creates the internal topics once the cluster has formed (when as many
/// nodes serve as there are voters, or a while after this leader took over:
/// a cluster whose other nodes are down still gets them): the group
/// coordinators' `__fjord_offsets`, the timer shards' `__fjord_timer` and
/// the pop queues' `__fjord_pop`.
async fn ensure_internal_topics(node: &ClusterNode, leader_since: Instant) {
    let m = node.metadata();
    let internal = [
        (OFFSETS_TOPIC, node.cfg.offsets_partitions, offsets_topic_config(node.broker.config().offsets_compact_bytes)),
        (TIMER_TOPIC, node.broker.config().timer_partitions.max(1), timer_topic_config()),
        (POP_TOPIC, node.broker.config().pop_partitions.max(1), pop_topic_config()),
    ];
    if internal.iter().all(|(name, _, _)| m.topics.contains_key(*name)) {
        return;
    }
    let serving = m.nodes.values().filter(|n| n.state == NodeState::Active).count();
    if serving < node.cfg.controllers.len() && leader_since.elapsed() < node.cfg.lease * 2 {
        return;
    }
    let rf = node.cfg.default_replication_factor.min(serving as u16).max(1);
    for (name, count, config) in internal {
        if m.topics.contains_key(name) {
            continue;
        }
        let Ok(partitions) = crate::authority::place(&m, count, rf) else { return };
        let topic =
            fjord_controller::TopicAssignment { id: uuid::Uuid::new_v4().to_string(), config: config.0, partitions };
        match node.propose(Command::CreateTopic { name: name.into(), topic }, node.cfg.lease).await {
            Ok(_) => tracing::info!(topic = name, partitions = count, "internal topic placed"),
            Err(e) => tracing::debug!(topic = name, error = %e, "placing an internal topic failed; will retry"),
        }
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

/// How long a probe of a silent node's listener may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Probes the nodes whose connection to this node ended and those whose
/// heartbeats are overdue (two intervals): a node whose cluster listener
/// refuses connections has no process behind it (killed, crashed,
/// restarting), so its lease counts as run out now rather than after the
/// lease, and its partitions fail over within about a heartbeat of its
/// death. A node that is alive but silent (paused, cut off by the network)
/// accepts or times out, and keeps its lease as before. True when one was
/// found gone.
async fn probe_silent_nodes(node: &ClusterNode) -> bool {
    let me = node.cfg.node_id;
    let overdue = node.cfg.heartbeat_interval * 2;
    let now = Instant::now();
    let suspects = node.leases.take_suspects();
    let m = node.metadata();
    let probes = m
        .nodes
        .values()
        .filter(|n| n.id != me && n.state == NodeState::Active && !node.leases.is_down(n.id))
        .filter(|n| suspects.contains(&n.id) || now.duration_since(node.leases.last_seen(n.id)) > overdue)
        .map(|n| async move { (n.id, refuses_connections(&n.internode).await) });
    let mut gone = false;
    for (id, refused) in futures_util::future::join_all(probes).await {
        if refused {
            tracing::info!(node = id, "node's cluster listener refuses connections: its process is gone; fencing it");
            node.leases.mark_down(id);
            gone = true;
        }
    }
    gone
}

/// Whether nothing listens at `addr` (connections refused, not timed out).
async fn refuses_connections(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

async fn fence_and_unfence(node: &ClusterNode) {
    let lease = node.cfg.lease;
    let now = Instant::now();
    let changes: Vec<Command> = node
        .metadata()
        .nodes
        .values()
        .filter_map(|n| {
            let fresh = now.duration_since(node.leases.last_seen(n.id)) < lease
                && !node.leases.is_shut_down(n.id, n.incarnation)
                && !node.leases.is_down(n.id);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a listener that refuses connections counts as gone: one that
    /// is bound but never answers (a paused process; its kernel still
    /// completes the handshake) is alive as far as a probe can tell.
    #[tokio::test]
    async fn only_a_refused_connection_means_the_process_is_gone() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        assert!(!refuses_connections(&addr).await, "a bound listener, even one never accepting, is alive");
        drop(silent);
        assert!(refuses_connections(&addr).await, "nothing listens any more");
    }

    /// A node must have applied what the leader had applied `age` ago; a
    /// leader that has not led that long asks nothing.
    #[tokio::test(start_paused = true)]
    async fn the_index_a_node_must_have_applied_is_the_leaders_from_half_a_lease_ago() {
        let leases = Leases::default();
        let keep = Duration::from_secs(4);
        let age = Duration::from_secs(1);
        leases.note_applied(10, keep);
        assert_eq!(leases.applied_before(age), 0, "no sample that old yet");
        tokio::time::advance(Duration::from_millis(600)).await;
        leases.note_applied(12, keep);
        tokio::time::advance(Duration::from_millis(600)).await;
        leases.note_applied(20, keep);
        assert_eq!(leases.applied_before(age), 10, "applied 1.2 s ago");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(leases.applied_before(age), 12);
        tokio::time::advance(Duration::from_secs(10)).await;
        leases.note_applied(20, keep);
        assert_eq!(leases.applied_before(age), 20, "old samples are dropped, the newest old one kept");
        leases.grant_all(std::iter::empty());
        assert_eq!(leases.applied_before(age), 0, "a new term asks nothing at first");
    }
}
