//! Committing and fetching consumer-group offsets, checked against group
//! membership.

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::offsets::CommittedOffset;
use crate::partition::TopicPartition;
use crate::placement::Leadership;

fn not_coordinator(group: &str) -> BrokerError {
    BrokerError::Unavailable(format!("this node no longer coordinates group '{group}'"))
}

/// Who is committing: a group member (checked against the current
/// generation) or a standalone consumer (`generation_id < 0`, empty member).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitIdentity {
    /// Member id, empty for standalone commits.
    pub member_id: String,
    /// Generation, -1 for standalone commits.
    pub generation_id: i32,
    /// Static membership instance id.
    pub group_instance_id: Option<String>,
}

impl Broker {
    /// Commits offsets for a group after validating the member. Offsets of
    /// unknown partitions are rejected per partition; the rest are stored
    /// durably before this returns.
    pub async fn commit_offsets(
        &self,
        group: &str,
        who: &CommitIdentity,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        if group.is_empty() {
            return Err(BrokerError::InvalidRequest("group id must not be empty".into()));
        }
        self.groups.validate_member(group, &who.member_id, who.generation_id, who.group_instance_id.as_deref())?;
        self.commit_offsets_unchecked(group, offsets).await
    }

    /// Stores committed offsets without checking membership: for callers
    /// that validated the committer themselves (consumer-protocol groups,
    /// whose members are tracked by their own coordinator, and protocols
    /// whose consumers track their own progress). In a cluster they go to
    /// the group's coordinator, wherever it is.
    pub async fn commit_offsets_unchecked(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        if group.is_empty() {
            return Err(BrokerError::InvalidRequest("group id must not be empty".into()));
        }
        if let Some(node) = self.remote_coordinator(group)? {
            let tps: Vec<TopicPartition> = offsets.iter().map(|(tp, _)| tp.clone()).collect();
            let results = self.forwarder()?.commit_offsets_at(node, group, offsets).await?;
            return Ok(tps.into_iter().zip(results).collect());
        }
        self.store_offsets(group, offsets).await
    }

    /// Stores committed offsets of a group this node coordinates (what a
    /// commit forwarded from another node runs).
    pub async fn commit_offsets_here(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        if self.remote_coordinator(group)?.is_some() {
            return Err(not_coordinator(group));
        }
        self.store_offsets(group, offsets).await
    }

    /// Stores offsets of a group coordinated here; unknown partitions are
    /// refused one by one.
    async fn store_offsets(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        let now = self.clock.now_ms();
        let mut results = Vec::with_capacity(offsets.len());
        let mut entries = Vec::new();
        for (tp, mut off) in offsets {
            match self.partition(&tp) {
                Ok(_) => {
                    // Expiry runs on the broker's clock, never the client's.
                    off.commit_timestamp = now;
                    entries.push(((group.to_string(), tp.topic.clone(), tp.partition), Some(off)));
                    results.push((tp, Ok(())));
                }
                Err(e) => results.push((tp, Err(e))),
            }
        }
        self.offsets.put(entries, now).await?;
        Ok(results)
    }

    /// The committed offset of one partition for `group`, from the group's
    /// coordinator wherever it is (in a cluster, another node may hold it).
    pub async fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Result<Option<CommittedOffset>> {
        match self.remote_coordinator(group)? {
            None if !self.offsets.is_current(group) => Err(BrokerError::Unavailable(format!(
                "group '{group}''s committed offsets are still loading on its new coordinator"
            ))),
            None => Ok(self.offsets.get(group, &tp.topic, tp.partition)),
            Some(node) => {
                let found = self.forwarder()?.fetch_offsets_at(node, group, vec![tp.clone()]).await?;
                Ok(found.into_iter().next().flatten())
            }
        }
    }

    /// The node coordinating `group` when it is another one; an error when
    /// nobody serves it now (retriable).
    fn remote_coordinator(&self, group: &str) -> Result<Option<i32>> {
        match self.coordinator(group) {
            Leadership::Local => Ok(None),
            Leadership::Remote(node) => Ok(Some(node.node_id)),
            Leadership::Unavailable => Err(BrokerError::Unavailable(format!(
                "no node coordinates group '{group}' now (its offsets partition has no serving leader)"
            ))),
        }
    }

    fn forwarder(&self) -> Result<&std::sync::Arc<dyn crate::MetadataAuthority>> {
        self.authority().ok_or_else(|| BrokerError::internal("a remote coordinator without a cluster"))
    }

    /// Committed offsets of a group: for the given partitions, or all.
    pub fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Vec<(TopicPartition, Option<CommittedOffset>)> {
        match partitions {
            Some(ps) => ps.iter().map(|tp| (tp.clone(), self.offsets.get(group, &tp.topic, tp.partition))).collect(),
            None => self
                .offsets
                .group_offsets(group)
                .into_iter()
                .map(|(t, p, o)| (TopicPartition::new(t, p), Some(o)))
                .collect(),
        }
    }

    /// Deletes a group's committed offsets for some partitions (Kafka
    /// OffsetDelete) or all of them (DeleteGroups).
    pub async fn delete_offsets(&self, group: &str, partitions: Option<Vec<TopicPartition>>) -> Result<usize> {
        // Deleting a whole group (DeleteGroups) also deletes its stored
        // membership.
        let whole_group = partitions.is_none();
        let keys: Vec<_> = match partitions {
            Some(ps) => ps
                .into_iter()
                .filter(|tp| self.offsets.get(group, &tp.topic, tp.partition).is_some())
                .map(|tp| ((group.to_string(), tp.topic, tp.partition), None))
                .collect(),
            None => self
                .offsets
                .group_offsets(group)
                .into_iter()
                .map(|(t, p, _)| ((group.to_string(), t, p), None))
                .collect(),
        };
        let n = keys.len();
        self.offsets.put(keys, self.clock.now_ms()).await?;
        if whole_group {
            self.forget_stored_group(group).await?;
        }
        Ok(n)
    }
}
