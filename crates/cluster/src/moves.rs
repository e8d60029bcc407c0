//! What the controller leader does for partitions on the move: it
//! completes a reassignment once every target replica is in sync, empties
//! a decommissioning node by reassigning each of its replicas to the
//! serving node holding the fewest (one move per partition at a time), and
//! hands each partition back to its preferred replica once that one is in
//! sync again (Kafka's `auto.leader.rebalance.enable`), so leaders spread
//! again after a failover.

use std::collections::BTreeMap;

use fjord_controller::{Command, NodeId, NodeState};

use crate::node::ClusterNode;

/// Completes the reassignments whose target replicas are all in sync.
pub(crate) async fn complete_reassignments(node: &ClusterNode) {
    let m = node.metadata();
    let mut done = Vec::new();
    for (name, t) in &m.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.adding.is_empty() && p.removing.is_empty() {
                continue;
            }
            let isr = p.in_sync();
            if p.replicas.iter().filter(|r| !p.removing.contains(r)).all(|r| isr.contains(r)) {
                done.push(Command::CompleteReassignment {
                    name: name.clone(),
                    partition: i as u32,
                    partition_epoch: p.partition_epoch,
                });
            }
        }
    }
    for cmd in done {
        tracing::info!(?cmd, "reassignment complete");
        if let Err(e) = node.propose(cmd, node.cfg.lease).await {
            tracing::debug!(error = %e, "completing a reassignment failed; will retry");
        }
    }
}

/// Moves the replicas of decommissioning nodes to serving ones.
pub(crate) async fn drain_decommissioning(node: &ClusterNode) {
    let m = node.metadata();
    let leaving: Vec<NodeId> =
        m.nodes.values().filter(|n| n.state == NodeState::Decommissioning).map(|n| n.id).collect();
    if leaving.is_empty() {
        return;
    }
    // Replicas each serving node holds, to pick the least loaded.
    let mut load: BTreeMap<NodeId, usize> =
        m.nodes.values().filter(|n| n.state == NodeState::Active).map(|n| (n.id, 0)).collect();
    for p in m.topics.values().flat_map(|t| &t.partitions) {
        for r in &p.replicas {
            if let Some(l) = load.get_mut(r) {
                *l += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for (name, t) in &m.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let pending = !p.adding.is_empty() || !p.removing.is_empty();
            if pending || !p.replicas.iter().any(|r| leaving.contains(r)) {
                continue;
            }
            let mut target = p.replicas.clone();
            for k in 0..target.len() {
                if !leaving.contains(&target[k]) {
                    continue;
                }
                let to =
                    load.iter().filter(|(n, _)| !target.contains(n)).min_by_key(|(n, l)| (**l, **n)).map(|(n, _)| *n);
                let Some(to) = to else { break };
                *load.entry(to).or_default() += 1;
                target[k] = to;
            }
            if target.iter().any(|r| leaving.contains(r)) {
                tracing::warn!(topic = %name, partition = i, "no serving node can take this replica of a decommissioning node");
                continue;
            }
            moves.push(Command::ReassignPartition { name: name.clone(), partition: i as u32, target: Some(target) });
        }
    }
    for cmd in moves {
        tracing::info!(?cmd, "moving a replica off a decommissioning node");
        if let Err(e) = node.propose(cmd, node.cfg.lease).await {
            tracing::debug!(error = %e, "moving a replica failed; will retry");
        }
    }
}

/// Gives partitions back to their preferred replica (the first) once it is
/// in sync and serving again.
pub(crate) async fn rebalance_leaders(node: &ClusterNode) {
    let m = node.metadata();
    let serving = |id: &NodeId| m.nodes.get(id).is_some_and(|n| n.state == NodeState::Active);
    let mut elect = Vec::new();
    for (name, t) in &m.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(preferred) = p.replicas.first() else { continue };
            let moving = !p.adding.is_empty() || !p.removing.is_empty();
            if moving || *preferred == p.leader || !p.in_sync().contains(preferred) || !serving(preferred) {
                continue;
            }
            elect.push(Command::ElectLeader { name: name.clone(), partition: i as u32, unclean: false });
        }
    }
    for cmd in elect {
        tracing::info!(?cmd, "leadership back to the preferred replica");
        if let Err(e) = node.propose(cmd, node.cfg.lease).await {
            tracing::debug!(error = %e, "preferred leader election failed; will retry");
        }
    }
}
