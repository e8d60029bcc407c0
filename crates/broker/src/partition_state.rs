//! A partition's offsets and size as its leader reports them, for views
//! that cover the whole cluster (the admin API's topics and group lag): on
//! a node that does not lead a partition its local log is empty or stale,
//! so the figures come from the leader.

use std::collections::BTreeMap;

use crate::broker::Broker;
use crate::partition::TopicPartition;
use crate::placement::Leadership;

/// Offsets and size of one partition, from its leader (serde: how nodes
/// report them to each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PartitionState {
    /// First offset still stored.
    pub log_start_offset: u64,
    /// Next offset to be written.
    pub log_end_offset: u64,
    /// Offsets below this are committed and readable.
    pub high_watermark: u64,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// When its leader last acknowledged an append (ms; 0: not since that
    /// node started).
    pub last_append_ms: i64,
    /// The node that reported it.
    pub leader: i32,
}

impl Broker {
    /// The state of a partition this node holds, as this node sees it
    /// (authoritative only where it leads the partition).
    pub fn local_partition_state(&self, tp: &TopicPartition) -> Option<PartitionState> {
        let p = self.partition(tp).ok()?;
        let s = p.log_stats();
        Some(PartitionState {
            log_start_offset: s.log_start_offset,
            log_end_offset: s.log_end_offset,
            high_watermark: s.high_watermark,
            size_bytes: s.size_bytes,
            segments: s.segments as u64,
            last_append_ms: p.traffic().last_append_ms,
            leader: self.config.node_id,
        })
    }

    /// The states of `tps`, each from its leader (one request per other
    /// node); `None` for a partition whose leader is unknown, down or did
    /// not answer.
    pub async fn partition_states(&self, tps: &[TopicPartition]) -> Vec<Option<PartitionState>> {
        let mut out = vec![None; tps.len()];
        let mut remote: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, tp) in tps.iter().enumerate() {
            match self.leadership(tp) {
                Leadership::Local => out[i] = self.local_partition_state(tp),
                Leadership::Remote(node) => remote.entry(node.node_id).or_default().push(i),
                Leadership::Unavailable => {}
            }
        }
        let Some(authority) = self.authority() else { return out };
        let asked = remote.into_iter().map(|(node, idx)| {
            let wanted: Vec<TopicPartition> = idx.iter().map(|i| tps[*i].clone()).collect();
            async move { (idx, node, authority.partition_states_at(node, wanted).await) }
        });
        for (idx, node, answer) in futures_util::future::join_all(asked).await {
            match answer {
                Ok(states) => {
                    for (i, s) in idx.into_iter().zip(states) {
                        out[i] = s;
                    }
                }
                Err(e) => tracing::debug!(node, error = %e, "a node did not report its partitions"),
            }
        }
        out
    }
}
