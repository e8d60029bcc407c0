//! Brings this node's broker in line with the applied metadata: topics the
//! cluster has are created here (with the cluster's topic id), grown and
//! reconfigured; topics the cluster deleted are deleted; and the broker's
//! placement (who leads what, which nodes serve), the consumer groups'
//! settings and the document scopes are replaced.
//!
//! Every node holds a log for every partition of every topic (empty where
//! it neither leads nor replicates: a replica moved away is emptied).
//! A topic found on disk but absent from the metadata the node first sees
//! is deleted if the metadata lists its id among deleted topics (it was
//! deleted while this node was down), and otherwise kept and not served (a
//! warning says so): data is never deleted on a guess.

use std::collections::BTreeSet;
use std::sync::Arc;

use fjord_broker::{BrokerError, NodeInfo, PartitionPlacement, Placement, TopicConfig, TopicPartition, TopicRecord};
use fjord_controller::{Metadata, NodeState};

use crate::node::ClusterNode;

/// Follows the metadata until `stop`.
pub(crate) async fn run(node: Arc<ClusterNode>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut rx = node.subscribe();
    let mut seen: Option<BTreeSet<String>> = None;
    let mut leader_rx = node.raft.metrics();
    let mut registered = node.registered.subscribe();
    loop {
        // Read before the metadata: registered then means this snapshot
        // is at least as new as the registration (see below).
        let current = *registered.borrow();
        let applied = rx.borrow_and_update().clone();
        {
            // Not while isolated: the heartbeat loop reinstalls it then.
            // Not before this incarnation is registered: what this node
            // applied before a restart may make it leader in the epoch its
            // former incarnation led (see `ClusterNode::registered`).
            let isolated = node.isolated.lock();
            if !*registered.borrow_and_update() {
                let known = applied.metadata.nodes.values().map(node_info).collect();
                serve_nothing(&node.broker, known);
            } else if !*isolated {
                install_placement(&node, &applied.metadata);
            }
        }
        match apply(&node, &applied.metadata, seen.as_ref()).await {
            Ok(()) => {
                // Only with metadata at least as new as anything applied
                // before a restart (this incarnation's registration is
                // applied): replaying older entries at start could show
                // the node out of a partition it was added back to since,
                // and holds in sync.
                if current {
                    free_removed_replicas(&node, &applied.metadata).await;
                }
                node.reconciled.send_replace(applied.index);
                seen = Some(applied.metadata.topics.keys().cloned().collect());
            }
            Err(e) => {
                tracing::warn!(error = %e, index = applied.index, "could not apply cluster metadata here; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            // The controller leader is part of the placement clients see.
            r = leader_rx.changed() => if r.is_err() { return },
            r = registered.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Empties the broker's placement: no partitions and nobody serving, but
/// the `known` nodes stay listed (as fenced): Kafka clients drop brokers
/// missing from Metadata, and librdkafka, given an empty list, loses its
/// group coordinator for good.
pub(crate) fn serve_nothing(broker: &fjord_broker::Broker, known: Vec<NodeInfo>) {
    broker.set_placement(Placement { controller_id: -1, fenced: known, ..Placement::default() });
}

fn node_info(n: &fjord_controller::NodeRecord) -> NodeInfo {
    NodeInfo { node_id: n.id as i32, listeners: n.listeners.clone(), rack: n.rack.clone() }
}

/// Replaces the broker's placement with the one `m` describes.
pub(crate) fn install_placement(node: &ClusterNode, m: &Metadata) {
    let nodes: Vec<NodeInfo> = m.nodes.values().filter(|n| n.state != NodeState::Fenced).map(node_info).collect();
    let fenced: Vec<NodeInfo> = m.nodes.values().filter(|n| n.state == NodeState::Fenced).map(node_info).collect();
    let topics = m
        .topics
        .iter()
        .map(|(name, t)| {
            let parts = t
                .partitions
                .iter()
                .map(|p| PartitionPlacement {
                    leader: p.leader as i32,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.iter().map(|r| *r as i32).collect(),
                    isr: p.in_sync().iter().map(|r| *r as i32).collect(),
                    partition_epoch: p.partition_epoch,
                    adding: p.adding.iter().map(|r| *r as i32).collect(),
                    removing: p.removing.iter().map(|r| *r as i32).collect(),
                })
                .collect();
            (name.clone(), parts)
        })
        .collect();
    let controller_id = node.controller_leader().map_or(-1, |l| l as i32);
    let controllers = node.cfg.controllers.keys().map(|c| *c as i32).collect();
    node.broker.set_placement(Placement { controller_id, nodes, fenced, controllers, topics });
}

async fn apply(node: &ClusterNode, m: &Metadata, seen: Option<&BTreeSet<String>>) -> Result<(), BrokerError> {
    let broker = &node.broker;
    broker.install_group_configs(&m.group_configs);
    broker.install_documents(m.documents.iter().map(|(name, s)| (name, s.version, &s.entries)));
    for (name, t) in &m.topics {
        let id = uuid::Uuid::parse_str(&t.id)
            .map_err(|e| BrokerError::internal_from(format!("topic '{name}' has a malformed id in the metadata"), e))?;
        let config = TopicConfig(t.config.clone());
        let partitions = t.partitions.len() as u32;
        match broker.topic(name) {
            Some(local) if local.id() != id => {
                // Deleted and created again while this node was away.
                tracing::info!(topic = %name, "replacing an older topic of the same name");
                broker.delete_topic_local(name).await?;
                create(broker, id, name, partitions, config).await?;
            }
            Some(local) => {
                let rec = local.record();
                if rec.partitions < partitions {
                    broker.create_partitions_local(name, partitions).await?;
                }
                if rec.config != config {
                    broker.set_topic_config_local(name, config).await?;
                }
            }
            None => create(broker, id, name, partitions, config).await?,
        }
    }
    let unknown: Vec<_> = broker.topics().into_iter().filter(|t| !m.topics.contains_key(&t.name())).collect();
    for t in unknown {
        let name = t.name();
        // Deleted since this node last looked (seen it go), or while it was
        // away (its id is among the deleted ones): its data goes too.
        let seen_go = seen.is_some_and(|before| before.contains(&name));
        let id = t.id().to_string();
        if seen_go || m.deleted_topic_ids.contains(&id) {
            if !seen_go {
                tracing::info!(topic = %name, "deleting a topic the cluster deleted while this node was away");
            }
            match broker.delete_topic_local(&name).await {
                Ok(()) | Err(BrokerError::UnknownTopic(_)) => {}
                Err(e) => return Err(e),
            }
        } else if seen.is_none() {
            tracing::warn!(topic = %name, "this node holds a topic the cluster does not know; it is kept but not served");
        }
    }
    Ok(())
}

/// Empties the logs of partitions this node does not replicate (any more:
/// moved away by a reassignment or a decommission). The metadata saying so
/// is committed, and a move completes only once every new replica is in
/// sync, so nothing acknowledged depends on these copies; Kafka deletes a
/// removed replica too. The log itself stays, empty at offset 0 as a new
/// replica's (every node keeps a log for every partition): added back
/// later, it copies the partition from the leader's log start, as any new
/// replica does, before it counts as in sync. Called only once this
/// incarnation is registered, with metadata at least that new: entries
/// replayed at start are older than what the node knew before it stopped.
/// A failure is logged and tried again at the next metadata change.
async fn free_removed_replicas(node: &ClusterNode, m: &Metadata) {
    let me = node.cfg.node_id;
    for (name, t) in &m.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.replicas.contains(&me) {
                continue;
            }
            let tp = TopicPartition::new(name, i as u32);
            let Ok(part) = node.broker.partition(&tp) else { continue };
            let (start, end) = (part.log_start_offset(), part.log_end_offset());
            if start == 0 && end == 0 {
                continue;
            }
            match tokio::task::spawn_blocking(move || part.reset_replica(0)).await {
                Ok(Ok(())) => {
                    tracing::info!(partition = %tp, start, end, "emptied a log this node no longer replicates")
                }
                Ok(Err(e)) => tracing::warn!(partition = %tp, error = %e, "could not empty a removed replica's log"),
                Err(e) => tracing::warn!(partition = %tp, error = %e, "emptying a removed replica's log failed"),
            }
        }
    }
}

async fn create(
    broker: &fjord_broker::Broker,
    id: uuid::Uuid,
    name: &str,
    partitions: u32,
    config: TopicConfig,
) -> Result<(), BrokerError> {
    let internal = fjord_broker::offsets::is_internal_topic(name);
    let record = TopicRecord { id, name: name.to_string(), partitions, config, internal };
    match broker.create_topic_local(record).await {
        Ok(_) | Err(BrokerError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
