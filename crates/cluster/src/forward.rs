//! Requests one node hands to another that can serve them
//! ([`Kind::Forward`] frames, JSON bodies): committed offsets read and
//! written at a group's coordinator for clients connected elsewhere (a
//! RocketMQ consumer commits to the broker of each queue it consumes, which
//! need not coordinate its group), and partition states from their leaders
//! for cluster-wide views.
//!
//! The serving node only ever answers from its own state
//! ([`fjord_broker::Broker::commit_offsets_here`]): a request that reaches
//! a node that no longer coordinates the group fails (retriable) instead of
//! being forwarded again, so placement changes cannot make requests loop.

use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{Broker, BrokerError, CommittedOffset, PartitionState, TopicPartition};
use fjord_cluster_codec::Kind;
use serde::{Deserialize, Serialize};

use crate::node::ClusterNode;

/// How long a forwarded request may take before the client's request fails
/// (retriable).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// A forwarded request.
#[derive(Debug, Serialize, Deserialize)]
enum Forwarded {
    /// Store offsets of a group (reply: one error message or `null` per
    /// offset, in order).
    CommitOffsets { group: String, offsets: Vec<(String, u32, CommittedOffset)> },
    /// Read offsets of a group (reply: one offset or `null` per partition).
    FetchOffsets { group: String, partitions: Vec<(String, u32)> },
    /// Report partitions this node leads (reply: one state or `null` per
    /// partition).
    PartitionStates { partitions: Vec<(String, u32)> },
}

/// Serves a forwarded request on this node.
pub(crate) async fn serve(broker: &Broker, body: &[u8]) -> Result<Bytes, String> {
    let req: Forwarded = serde_json::from_slice(body).map_err(|e| format!("malformed forwarded request: {e}"))?;
    let reply = match req {
        Forwarded::CommitOffsets { group, offsets } => {
            let offsets = offsets.into_iter().map(|(t, p, o)| (TopicPartition::new(t, p), o)).collect();
            let results = broker.commit_offsets_here(&group, offsets).await.map_err(|e| e.to_string())?;
            let errors: Vec<Option<String>> =
                results.into_iter().map(|(_, r)| r.err().map(|e| e.to_string())).collect();
            serde_json::to_vec(&errors)
        }
        Forwarded::FetchOffsets { group, partitions } => {
            if broker.coordinator(&group) != fjord_broker::Leadership::Local {
                return Err(format!("this node no longer coordinates group '{group}'"));
            }
            if !broker.offsets().is_current(&group) {
                return Err(format!("group '{group}''s committed offsets are still loading here"));
            }
            let found: Vec<Option<CommittedOffset>> =
                partitions.iter().map(|(t, p)| broker.offsets().get(&group, t, *p)).collect();
            serde_json::to_vec(&found)
        }
        Forwarded::PartitionStates { partitions } => {
            let states: Vec<Option<PartitionState>> = partitions
                .into_iter()
                .map(|(t, p)| {
                    let tp = TopicPartition::new(t, p);
                    // Only a leader's figures are the partition's.
                    if broker.leadership(&tp) != fjord_broker::Leadership::Local {
                        return None;
                    }
                    broker.local_partition_state(&tp)
                })
                .collect();
            serde_json::to_vec(&states)
        }
    };
    reply.map(Bytes::from).map_err(|e| e.to_string())
}

/// Calls service `name` on `node` ([`Kind::Service`]).
pub(crate) async fn call_service(
    cluster: &ClusterNode,
    node: i32,
    name: &str,
    payload: Bytes,
) -> Result<Bytes, BrokerError> {
    let unavailable = |what: String| BrokerError::Unavailable(format!("node {node}: {what}"));
    let id = u64::try_from(node).map_err(|_| unavailable("not a node id".into()))?;
    let addr = cluster.address_of(id).ok_or_else(|| unavailable("address unknown".into()))?;
    let body = fjord_cluster_codec::ServiceCall { service: name.to_string(), payload }
        .encode()
        .map_err(|e| BrokerError::internal_from("encoding a service call", e))?;
    cluster.peers.call(id, &addr, Kind::Service, body, FORWARD_TIMEOUT).await.map_err(|e| unavailable(e.to_string()))
}

/// Sends `req` to `node` and decodes its reply.
async fn call<T: serde::de::DeserializeOwned>(
    cluster: &ClusterNode,
    node: i32,
    req: &Forwarded,
) -> Result<T, BrokerError> {
    let unavailable = |what: String| BrokerError::Unavailable(format!("node {node}: {what}"));
    let id = u64::try_from(node).map_err(|_| unavailable("not a node id".into()))?;
    let addr = cluster.address_of(id).ok_or_else(|| unavailable("address unknown".into()))?;
    let body = serde_json::to_vec(req).map_err(|e| BrokerError::internal_from("encoding a forwarded request", e))?;
    let reply = cluster
        .peers
        .call(id, &addr, Kind::Forward, Bytes::from(body), FORWARD_TIMEOUT)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    serde_json::from_slice(&reply).map_err(|e| BrokerError::internal_from(format!("a reply of node {node}"), e))
}

/// Commits offsets at `node` (see [`fjord_broker::MetadataAuthority::commit_offsets_at`]).
pub(crate) async fn commit_offsets(
    cluster: &ClusterNode,
    node: i32,
    group: &str,
    offsets: Vec<(TopicPartition, CommittedOffset)>,
) -> Result<Vec<fjord_broker::Result<()>>, BrokerError> {
    let n = offsets.len();
    let req = Forwarded::CommitOffsets {
        group: group.to_string(),
        offsets: offsets.into_iter().map(|(tp, o)| (tp.topic, tp.partition, o)).collect(),
    };
    let errors: Vec<Option<String>> = call(cluster, node, &req).await?;
    if errors.len() != n {
        return Err(BrokerError::internal(format!("node {node} answered {} of {n} offsets", errors.len())));
    }
    Ok(errors.into_iter().map(|e| e.map_or(Ok(()), |m| Err(BrokerError::InvalidRequest(m)))).collect())
}

/// Reads offsets at `node`.
pub(crate) async fn fetch_offsets(
    cluster: &ClusterNode,
    node: i32,
    group: &str,
    partitions: Vec<TopicPartition>,
) -> Result<Vec<Option<CommittedOffset>>, BrokerError> {
    let n = partitions.len();
    let req = Forwarded::FetchOffsets {
        group: group.to_string(),
        partitions: partitions.into_iter().map(|tp| (tp.topic, tp.partition)).collect(),
    };
    let found: Vec<Option<CommittedOffset>> = call(cluster, node, &req).await?;
    if found.len() != n {
        return Err(BrokerError::internal(format!("node {node} answered {} of {n} offsets", found.len())));
    }
    Ok(found)
}

/// Partition states from `node`, their leader.
pub(crate) async fn partition_states(
    cluster: &ClusterNode,
    node: i32,
    partitions: Vec<TopicPartition>,
) -> Result<Vec<Option<PartitionState>>, BrokerError> {
    let n = partitions.len();
    let req =
        Forwarded::PartitionStates { partitions: partitions.into_iter().map(|tp| (tp.topic, tp.partition)).collect() };
    let found: Vec<Option<PartitionState>> = call(cluster, node, &req).await?;
    if found.len() != n {
        return Err(BrokerError::internal(format!("node {node} answered {} of {n} partitions", found.len())));
    }
    Ok(found)
}
