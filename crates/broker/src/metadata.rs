//! Cluster metadata as clients need it: nodes, their listeners, and the
//! leader of every partition. A single node leads everything; in a cluster
//! the answer comes from the installed [`crate::placement::Placement`].

use std::collections::BTreeMap;

use crate::broker::Broker;

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised address per listener name (`kafka`, `http`, ...).
    pub listeners: BTreeMap<String, String>,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// A partition's placement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: u32,
    /// Leader node.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// All replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

/// A topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicMetadata {
    /// Name.
    pub name: String,
    /// Stable id.
    pub id: uuid::Uuid,
    /// Whether it is internal.
    pub internal: bool,
    /// Partitions in index order.
    pub partitions: Vec<PartitionMetadata>,
}

/// The cluster as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterMetadata {
    /// Cluster id.
    pub cluster_id: String,
    /// Controller node.
    pub controller_id: i32,
    /// Live nodes.
    pub nodes: Vec<NodeInfo>,
    /// Registered nodes whose lease ran out (paused, cut off, restarting):
    /// they lead nothing, but Kafka clients keep them in their broker
    /// lists (librdkafka ≥ 2.10 drops a broker missing from Metadata, and
    /// a group coordinator it dropped and re-added stays unusable).
    pub fenced: Vec<NodeInfo>,
    /// Requested topics that exist.
    pub topics: Vec<TopicMetadata>,
}

impl Broker {
    /// This node's description.
    pub fn node(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.config.node_id,
            listeners: self.listeners.read().clone(),
            rack: self.config.rack.clone(),
        }
    }

    /// Metadata for `topics` (all when `None`). Unknown names are skipped;
    /// callers that auto-create call [`Broker::partition_or_create`] first.
    pub fn metadata(&self, topics: Option<&[String]>) -> ClusterMetadata {
        let me = self.config.node_id;
        let selected = match topics {
            None => self.topics(),
            Some(names) => names.iter().filter_map(|n| self.topic(n)).collect(),
        };
        let placement = self.placement();
        let place = |name: &str, p: &crate::partition::Partition| match placement.as_ref() {
            None => PartitionMetadata {
                partition: p.id().partition,
                leader: me,
                leader_epoch: p.leader_epoch(),
                replicas: vec![me],
                isr: vec![me],
            },
            Some(pl) => {
                let at = pl.topics.get(name).and_then(|parts| parts.get(p.id().partition as usize));
                // Without a serving leader, clients see -1 and retry.
                let leader = at.map(|a| a.leader).filter(|l| pl.node(*l).is_some() || *l == me).unwrap_or(-1);
                let replicas = at.map(|a| a.replicas.clone()).unwrap_or_default();
                PartitionMetadata {
                    partition: p.id().partition,
                    leader,
                    leader_epoch: at.map_or(0, |a| a.leader_epoch),
                    isr: at.map(|a| a.isr.clone()).unwrap_or_default(),
                    replicas,
                }
            }
        };
        let (controller_id, nodes, fenced) = match placement.as_ref() {
            None => (me, vec![self.node()], Vec::new()),
            Some(pl) => (pl.controller_id, pl.nodes.clone(), pl.fenced.clone()),
        };
        ClusterMetadata {
            cluster_id: self.cluster_id().to_string(),
            controller_id,
            nodes,
            fenced,
            topics: selected
                .iter()
                .map(|t| {
                    let rec = t.record();
                    let partitions = t.partitions().iter().map(|p| place(&rec.name, p)).collect();
                    TopicMetadata { name: rec.name, id: rec.id, internal: rec.internal, partitions }
                })
                .collect(),
        }
    }
}
