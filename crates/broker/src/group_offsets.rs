//! Committing and fetching consumer-group offsets, checked against group
//! membership.

use crate::broker::Broker;
use crate::error::{BrokerError, Result, blocking};
use crate::offsets::CommittedOffset;
use crate::partition::TopicPartition;

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
    /// whose members are tracked by their own coordinator).
    pub async fn commit_offsets_unchecked(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<Vec<(TopicPartition, Result<()>)>> {
        if group.is_empty() {
            return Err(BrokerError::InvalidRequest("group id must not be empty".into()));
        }
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
        let store = self.offsets.clone();
        blocking(move || store.put(entries, now)).await??;
        Ok(results)
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
        let store = self.offsets.clone();
        let now = self.clock.now_ms();
        blocking(move || store.put(keys, now)).await??;
        Ok(n)
    }
}
