//! Background work: interval flushing and retention.

use std::sync::Arc;
use std::time::Duration;

use fjord_log::Durability;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::error::{Result, blocking};
use crate::group::{GroupError, GroupState};

impl Broker {
    /// Starts the background tasks; they stop when shutdown begins.
    ///
    /// - Interval flushing runs at the shortest interval configured for
    ///   any topic (re-read each round, so topic changes apply).
    /// - Retention runs every `retention_check_interval`.
    pub fn start_background_tasks(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let flusher = {
            let broker = Arc::clone(self);
            tokio::spawn(async move {
                let mut stop = broker.shutdown_signal();
                loop {
                    let interval = broker.shortest_flush_interval().unwrap_or(Duration::from_secs(1));
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = stop.changed() => return,
                    }
                    if let Err(e) = broker.flush_interval_logs().await {
                        tracing::error!(error = %e, "interval flush failed");
                    }
                }
            })
        };
        let retention = {
            let broker = Arc::clone(self);
            tokio::spawn(async move {
                let mut stop = broker.shutdown_signal();
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(broker.config.retention_check_interval) => {}
                        _ = stop.changed() => return,
                    }
                    broker.enforce_retention().await;
                    if let Err(e) = broker.expire_offsets().await {
                        tracing::error!(error = %e, "offset expiry failed");
                    }
                }
            })
        };
        vec![flusher, retention]
    }

    fn shortest_flush_interval(&self) -> Option<Duration> {
        self.topics()
            .iter()
            .flat_map(|t| t.partitions())
            .filter_map(|p| match p.log().config().durability {
                Durability::Interval(d) => Some(d),
                _ => None,
            })
            .min()
    }

    /// Runs retention over every partition once.
    pub async fn enforce_retention(&self) {
        let logs: Vec<_> = self.topics().iter().flat_map(|t| t.partitions()).map(|p| p.log().clone()).collect();
        let result = blocking(move || {
            for log in logs {
                if let Err(e) = log.enforce_retention() {
                    tracing::error!(dir = %log.dir().display(), error = %e, "retention failed");
                }
            }
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "retention task failed");
        }
    }
}

impl Broker {
    /// Deletes committed offsets older than `offsets_retention` for groups
    /// that have no members (Empty, Dead or unknown to the coordinator), and
    /// then forgets groups left with no offsets. Groups with members keep
    /// their offsets however old. Returns how many offsets expired.
    pub async fn expire_offsets(&self) -> Result<usize> {
        let cutoff = self.clock.now_ms().saturating_sub(self.config.offsets_retention.as_millis() as i64);
        let mut expired = 0;
        for group in self.offsets.groups() {
            let idle = match self.groups.describe_group(&group) {
                Ok(d) => matches!(d.state, GroupState::Empty | GroupState::Dead),
                Err(GroupError::GroupIdNotFound { .. }) => true,
                Err(_) => false,
            };
            if !idle {
                continue;
            }
            let old: Vec<_> = self
                .offsets
                .group_offsets(&group)
                .into_iter()
                .filter(|(_, _, o)| o.commit_timestamp < cutoff)
                .map(|(t, p, _)| crate::TopicPartition::new(t, p))
                .collect();
            if old.is_empty() {
                continue;
            }
            expired += self.delete_offsets(&group, Some(old)).await?;
            if self.offsets.group_offsets(&group).is_empty() {
                let _ = self.groups.delete_groups(std::slice::from_ref(&group));
            }
            tracing::info!(group, "expired committed offsets of an idle group");
        }
        Ok(expired)
    }
}
