//! Topic changes for the whole cluster: the broker's
//! [`MetadataAuthority`], backed by the controller quorum.
//!
//! Placement is decided by the proposing node from the metadata it has
//! applied and written into the command, so applying it is deterministic.
//! Partitions go round-robin over the serving nodes (sorted by id, racks
//! interleaved when racks are set), starting after the node that leads the
//! fewest partitions, so leaders stay spread as topics come and go.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fjord_broker::placement::BoxFuture;
use fjord_broker::{
    BrokerError, CommittedOffset, DocumentChange, DocumentUpdate, MetadataAuthority, TopicConfig, TopicPartition,
};
use fjord_controller::{Command, Metadata, NodeId, NodeState, PartitionAssignment, Rejection, TopicAssignment};

use crate::error::ClusterError;
use crate::node::ClusterNode;

/// How long a topic change may wait for the quorum (a leader election
/// included) before the client gets a retriable error.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The broker's authority in a cluster.
#[derive(Debug)]
pub struct ClusterAuthority {
    pub(crate) node: Weak<ClusterNode>,
}

impl ClusterAuthority {
    /// Proposes a change of topic `name` and waits until this node's
    /// broker reflects it.
    async fn change(&self, name: &str, cmd: Command) -> Result<(), BrokerError> {
        self.change_with(cmd, |e| to_broker(name, e)).await
    }

    /// [`ClusterAuthority::change`] with the command's own rejections
    /// mapped by `fail`.
    async fn change_with(&self, cmd: Command, fail: impl Fn(ClusterError) -> BrokerError) -> Result<(), BrokerError> {
        let node = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        let index = node.propose(cmd, CHANGE_TIMEOUT).await.map_err(&fail)?;
        node.await_reconciled(index, deadline).await.map_err(&fail)
    }
}

/// A cluster failure of a change to topic `name`, as the broker reports it.
pub(crate) fn to_broker(name: &str, e: ClusterError) -> BrokerError {
    match e {
        ClusterError::Rejected { reason: Rejection::TopicExists, .. } => BrokerError::TopicExists(name.to_string()),
        ClusterError::Rejected { reason: Rejection::UnknownTopic, .. } => BrokerError::UnknownTopic(name.to_string()),
        ClusterError::Rejected {
            reason: Rejection::Invalid | Rejection::UnknownNode | Rejection::Conflict,
            message,
        } => BrokerError::InvalidPartitions(message),
        // No quorum, no leader, a lost connection: retriable.
        other => BrokerError::Unavailable(other.to_string()),
    }
}

impl MetadataAuthority for ClusterAuthority {
    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: u32,
        replication_factor: Option<u16>,
        config: &'a TopicConfig,
        here: bool,
    ) -> BoxFuture<'a, fjord_broker::Result<()>> {
        Box::pin(async move {
            let node = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            let m = node.metadata();
            if m.topics.contains_key(name) {
                return Err(BrokerError::TopicExists(name.to_string()));
            }
            let serving = m.nodes.values().filter(|n| n.state == NodeState::Active).count();
            let rf = replication_factor
                .unwrap_or_else(|| node.cfg.default_replication_factor.min(serving.max(1) as u16).max(1));
            let me = node.cfg.node_id;
            let serving_here = m.nodes.get(&me).is_some_and(|n| n.state == NodeState::Active);
            let mut parts = place(&m, partitions, rf)?;
            if here && serving_here {
                // This node first (leading), the others as placed.
                for p in &mut parts {
                    p.replicas.retain(|r| *r != me);
                    p.replicas.insert(0, me);
                    p.replicas.truncate(rf as usize);
                    *p = PartitionAssignment::new(p.replicas.clone(), me);
                }
            }
            let topic =
                TopicAssignment { id: uuid::Uuid::new_v4().to_string(), config: config.0.clone(), partitions: parts };
            self.change(name, Command::CreateTopic { name: name.to_string(), topic }).await
        })
    }

    fn default_replication_factor(&self) -> u16 {
        self.node.upgrade().map_or(1, |n| n.cfg.default_replication_factor)
    }

    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, fjord_broker::Result<()>> {
        Box::pin(async move {
            let node = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            let id = node.metadata().topics.get(name).map(|t| t.id.clone());
            let Some(id) = id else { return Err(BrokerError::UnknownTopic(name.to_string())) };
            self.change(name, Command::DeleteTopic { name: name.to_string(), id: Some(id) }).await
        })
    }

    fn create_partitions<'a>(&'a self, name: &'a str, total: u32) -> BoxFuture<'a, fjord_broker::Result<()>> {
        Box::pin(async move {
            let node = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            let m = node.metadata();
            let have =
                m.topics.get(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?.partitions.len() as u32;
            if total <= have {
                return Err(BrokerError::InvalidPartitions(format!(
                    "topic '{name}' has {have} partitions; the count can only grow"
                )));
            }
            // New partitions get as many replicas as the topic's first.
            let rf = m.topics.get(name).and_then(|t| t.partitions.first()).map_or(1, |p| p.replicas.len() as u16);
            let added = place(&m, total - have, rf)?;
            self.change(name, Command::CreatePartitions { name: name.to_string(), added, from: Some(have) }).await
        })
    }

    fn set_topic_config<'a>(
        &'a self,
        name: &'a str,
        config: &'a TopicConfig,
    ) -> BoxFuture<'a, fjord_broker::Result<()>> {
        Box::pin(self.change(name, Command::AlterTopicConfig { name: name.to_string(), config: config.0.clone() }))
    }

    fn set_group_config<'a>(
        &'a self,
        group: &'a str,
        config: &'a fjord_broker::GroupConfig,
    ) -> BoxFuture<'a, fjord_broker::Result<()>> {
        Box::pin(self.change(group, Command::SetGroupConfig { group: group.to_string(), config: config.clone() }))
    }

    fn update_documents<'a>(
        &'a self,
        scope: &'a str,
        expect: u64,
        change: &'a DocumentChange,
    ) -> BoxFuture<'a, fjord_broker::Result<DocumentUpdate>> {
        Box::pin(async move {
            let cmd = Command::UpdateDocuments {
                scope: scope.to_string(),
                expect,
                set: change.set.clone(),
                remove: change.remove.clone(),
            };
            let node = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
            match node.propose(cmd, CHANGE_TIMEOUT).await {
                Ok(index) => {
                    node.await_reconciled(index, deadline).await.map_err(|e| to_broker(scope, e))?;
                    Ok(DocumentUpdate::Applied)
                }
                Err(ClusterError::Rejected { reason: Rejection::Conflict, .. }) => Ok(DocumentUpdate::Conflict),
                Err(e) => Err(to_broker(scope, e)),
            }
        })
    }

    fn call_service<'a>(
        &'a self,
        node: i32,
        name: &'a str,
        payload: bytes::Bytes,
    ) -> BoxFuture<'a, fjord_broker::Result<bytes::Bytes>> {
        Box::pin(async move {
            let cluster = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            crate::forward::call_service(&cluster, node, name, payload).await
        })
    }

    fn reassign_partition<'a>(
        &'a self,
        tp: &'a TopicPartition,
        target: Option<Vec<i32>>,
    ) -> BoxFuture<'a, fjord_broker::Result<()>> {
        Box::pin(async move {
            let node = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            let target = match target {
                None => None,
                Some(t) => {
                    let m = node.metadata();
                    let mut ids = Vec::with_capacity(t.len());
                    for r in t {
                        let id = u64::try_from(r).ok().filter(|id| m.nodes.contains_key(id)).ok_or_else(|| {
                            BrokerError::InvalidReplicaAssignment(format!("node {r} is not in the cluster"))
                        })?;
                        ids.push(id);
                    }
                    Some(ids)
                }
            };
            let cmd = Command::ReassignPartition { name: tp.topic.to_string(), partition: tp.partition, target };
            self.change_with(cmd, |e| reassign_error(tp, e)).await
        })
    }

    fn decommission_node(&self, id: i32) -> BoxFuture<'_, fjord_broker::Result<()>> {
        Box::pin(async move {
            let id = u64::try_from(id).map_err(|_| BrokerError::InvalidRequest(format!("{id} is not a node id")))?;
            self.change_with(Command::DecommissionNode { id }, |e| match e {
                ClusterError::Rejected { reason: Rejection::UnknownNode, message } => {
                    BrokerError::InvalidRequest(message)
                }
                other => to_broker(&format!("node {id}"), other),
            })
            .await
        })
    }

    fn elect_leader<'a>(&'a self, tp: &'a TopicPartition, unclean: bool) -> BoxFuture<'a, fjord_broker::Result<()>> {
        Box::pin(async move {
            let cmd = Command::ElectLeader { name: tp.topic.to_string(), partition: tp.partition, unclean };
            self.change_with(cmd, |e| match e {
                ClusterError::Rejected { reason: Rejection::ElectionNotNeeded, .. } => {
                    BrokerError::ElectionNotNeeded(tp.to_string())
                }
                ClusterError::Rejected { reason: Rejection::NoEligibleLeader, message } => {
                    BrokerError::NoEligibleLeader { tp: tp.to_string(), reason: message, preferred: !unclean }
                }
                other => to_broker(&tp.topic, other),
            })
            .await
        })
    }

    fn commit_offsets_at<'a>(
        &'a self,
        node: i32,
        group: &'a str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> BoxFuture<'a, fjord_broker::Result<Vec<fjord_broker::Result<()>>>> {
        Box::pin(async move {
            let cluster = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            crate::forward::commit_offsets(&cluster, node, group, offsets).await
        })
    }

    fn fetch_offsets_at<'a>(
        &'a self,
        node: i32,
        group: &'a str,
        partitions: Vec<TopicPartition>,
    ) -> BoxFuture<'a, fjord_broker::Result<Vec<Option<CommittedOffset>>>> {
        Box::pin(async move {
            let cluster = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            crate::forward::fetch_offsets(&cluster, node, group, partitions).await
        })
    }

    fn partition_states_at(
        &self,
        node: i32,
        partitions: Vec<TopicPartition>,
    ) -> BoxFuture<'_, fjord_broker::Result<Vec<Option<fjord_broker::PartitionState>>>> {
        Box::pin(async move {
            let cluster = self.node.upgrade().ok_or(BrokerError::ShuttingDown)?;
            crate::forward::partition_states(&cluster, node, partitions).await
        })
    }
}

/// A cluster failure of a reassignment of `tp`, as the broker reports it.
fn reassign_error(tp: &TopicPartition, e: ClusterError) -> BrokerError {
    match e {
        ClusterError::Rejected { reason: Rejection::NoReassignment, .. } => {
            BrokerError::NoReassignmentInProgress(tp.to_string())
        }
        ClusterError::Rejected { reason: Rejection::Invalid | Rejection::UnknownNode, message } => {
            BrokerError::InvalidReplicaAssignment(message)
        }
        other => to_broker(&tp.topic, other),
    }
}

fn no_nodes() -> BrokerError {
    BrokerError::Unavailable("no node is serving: none can lead new partitions".into())
}

/// Serving nodes in placement order: by rack, interleaved, then by id.
fn serving(m: &Metadata) -> Vec<NodeId> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for n in m.nodes.values().filter(|n| n.state == NodeState::Active) {
        by_rack.entry(n.rack.as_deref()).or_default().push(n.id);
    }
    let mut racks: Vec<Vec<NodeId>> = by_rack.into_values().collect();
    let mut out = Vec::new();
    let longest = racks.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for r in &mut racks {
            if let Some(id) = r.get(i) {
                out.push(*id);
            }
        }
    }
    out
}

/// Places `count` new partitions with `rf` replicas each: leaders
/// round-robin over the serving nodes (racks interleaved), starting at the
/// node leading the fewest partitions; each partition's followers are the
/// nodes after its leader in that order, so replicas of one partition land
/// on distinct nodes (and racks, while there are racks enough).
pub(crate) fn place(m: &Metadata, count: u32, rf: u16) -> Result<Vec<PartitionAssignment>, BrokerError> {
    let nodes = serving(m);
    if nodes.is_empty() {
        return Err(no_nodes());
    }
    if rf == 0 || rf as usize > nodes.len() {
        return Err(BrokerError::InvalidReplicationFactor(format!(
            "replication factor {rf} with {} serving node(s)",
            nodes.len()
        )));
    }
    let mut load: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for t in m.topics.values() {
        for p in &t.partitions {
            if let Some(l) = load.get_mut(&p.leader) {
                *l += 1;
            }
        }
    }
    let start = nodes.iter().enumerate().min_by_key(|(i, n)| (load[n], *i)).map_or(0, |(i, _)| i);
    Ok((0..count as usize)
        .map(|i| {
            let replicas: Vec<NodeId> = (0..rf as usize).map(|k| nodes[(start + i + k) % nodes.len()]).collect();
            PartitionAssignment::new(replicas.clone(), replicas[0])
        })
        .collect())
}

/// Installs the cluster's authority on the node's broker.
pub(crate) fn install(node: &Arc<ClusterNode>) {
    node.broker.set_metadata_authority(Arc::new(ClusterAuthority { node: Arc::downgrade(node) }));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fjord_controller::{Command, Metadata};

    use super::*;

    fn cluster(racks: &[(u64, Option<&str>)]) -> Metadata {
        let mut m = Metadata::default();
        for (id, rack) in racks {
            m.apply(&Command::RegisterNode {
                id: *id,
                internode: String::new(),
                listeners: BTreeMap::new(),
                rack: rack.map(str::to_string),
            });
        }
        m
    }

    #[test]
    fn leaders_alternate_racks_and_start_at_the_least_loaded_node() {
        // Racks a, a, b: consecutive partitions never share a rack where
        // another rack is available.
        let m = cluster(&[(1, Some("a")), (2, Some("a")), (3, Some("b"))]);
        let leaders: Vec<u64> = place(&m, 6, 1).unwrap().iter().map(|p| p.leader).collect();
        assert_eq!(leaders, [1, 3, 2, 1, 3, 2]);
        // With node 1 already leading more, the next topic starts elsewhere.
        let mut m = m;
        let topic = TopicAssignment { id: "x".into(), config: BTreeMap::new(), partitions: place(&m, 2, 1).unwrap() };
        m.apply(&Command::CreateTopic { name: "x".into(), topic });
        let next: Vec<u64> = place(&m, 3, 1).unwrap().iter().map(|p| p.leader).collect();
        assert_eq!(next, [2, 1, 3], "node 2 leads nothing yet");
        // Fenced nodes get nothing; no serving node: no placement.
        m.apply(&Command::FenceNode { id: 2 });
        assert!(place(&m, 4, 1).unwrap().iter().all(|p| p.leader != 2));
        assert!(place(&Metadata::default(), 1, 1).is_err());
        // Replicas of one partition on distinct nodes; too many refused.
        for p in place(&m, 5, 2).unwrap() {
            assert!(p.replicas.len() == 2 && p.replicas[0] != p.replicas[1] && p.leader == p.replicas[0]);
            assert_eq!(p.isr, p.replicas);
        }
        assert!(matches!(place(&m, 1, 9), Err(BrokerError::InvalidReplicationFactor(_))));
    }
}
