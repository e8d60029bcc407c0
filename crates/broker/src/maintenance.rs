//! Background work: interval flushing, retention, and recovery of logs
//! poisoned by a failed write or fsync.

use std::sync::Arc;
use std::time::Duration;

use fjord_log::Durability;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::error::{Result, blocking};
use crate::group::{GroupError, GroupState};

/// A log that refuses writes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoisonedLog {
    /// `<topic>-<partition>` (committed offsets: `__fjord_offsets-<n>`).
    pub log: String,
    /// The failure that poisoned it.
    pub reason: String,
}

impl Broker {
    /// Starts the background tasks; they stop when shutdown begins.
    ///
    /// - Interval flushing runs at the shortest interval configured for
    ///   any topic (re-read each round, so topic changes apply).
    /// - Retention runs every `retention_check_interval`.
    /// - Poisoned logs are recovered every `log_recovery_interval`.
    /// - Groups changed by timeouts (expired sessions) are stored as
    ///   requests' changes are.
    pub fn start_background_tasks(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let flusher = self.every(
            |b| b.shortest_flush_interval().unwrap_or(Duration::from_secs(1)),
            |b| async move {
                if let Err(e) = b.flush_interval_logs().await {
                    tracing::error!(error = %e, "interval flush failed");
                }
            },
        );
        let retention = self.every(
            |b| b.config.retention_check_interval,
            |b| async move {
                b.enforce_retention().await;
                b.expire_producers();
                if let Err(e) = b.expire_offsets().await {
                    tracing::error!(error = %e, "offset expiry failed");
                }
            },
        );
        let recovery = self.every(
            |b| b.config.log_recovery_interval,
            |b| async move {
                b.recover_poisoned_logs().await;
            },
        );
        let groups = {
            let broker = Arc::clone(self);
            tokio::spawn(async move {
                let mut stop = broker.shutdown_signal();
                loop {
                    tokio::select! {
                        g = broker.groups.changed_by_timeouts() => broker.store_changed_by_timeouts(false, g).await,
                        g = broker.consumer_groups.changed_by_timeouts() => {
                            broker.store_changed_by_timeouts(true, g).await
                        }
                        _ = stop.changed() => return,
                    }
                }
            })
        };
        vec![flusher, retention, recovery, groups]
    }

    /// Runs `work` after each `interval` (re-read every round) until
    /// shutdown begins.
    fn every<W, F>(self: &Arc<Self>, interval: fn(&Broker) -> Duration, work: W) -> JoinHandle<()>
    where
        W: Fn(Arc<Broker>) -> F + Send + 'static,
        F: std::future::Future<Output = ()> + Send,
    {
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let mut stop = broker.shutdown_signal();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval(&broker)) => {}
                    _ = stop.changed() => return,
                }
                work(broker.clone()).await;
            }
        })
    }

    /// The logs that refuse writes after a failed write or fsync, named
    /// (`<topic>-<partition>`, committed offsets' `__fjord_offsets-<n>`
    /// included), with the failure. They
    /// are retried every `log_recovery_interval` until the cause is gone.
    pub fn poisoned_logs(&self) -> Vec<PoisonedLog> {
        self.topics()
            .into_iter()
            .flat_map(|t| t.partitions())
            .filter_map(|p| p.log().poisoned().map(|reason| PoisonedLog { log: p.id().to_string(), reason }))
            .collect()
    }

    /// Tries once to recover every poisoned log: each is cut back to what
    /// its last successful fsync covered and reopened in place (see
    /// `fjord_log::Log::recover`); a failure leaves it poisoned for the
    /// next round. Returns how many logs recovered.
    ///
    /// A partition with other replicas first stops taking writes in the
    /// epochs of the tail it may lose: led here, it resigns (it serves
    /// nothing until the cluster hands the lead over or renews its
    /// epoch), and it appends as leader only in a newer epoch (see
    /// [`crate::Partition::needs_new_epoch`]). Followers may hold that
    /// tail; records written again at its offsets in its epoch would pass
    /// for it.
    pub async fn recover_poisoned_logs(&self) -> usize {
        let poisoned = self.poisoned_logs();
        if poisoned.is_empty() {
            return 0;
        }
        let offsets = self.offsets.clone();
        let partitions: Vec<_> =
            self.topics().into_iter().flat_map(|t| t.partitions()).filter(|p| p.log().poisoned().is_some()).collect();
        if let Some(placement) = self.placement() {
            for p in &partitions {
                if placement.partition(p.id()).is_some_and(|a| a.replicas.len() > 1) {
                    p.fence_epochs_through(p.leader_epoch().max(p.last_epoch()));
                    self.resign(p.id());
                }
            }
        }
        let result = blocking(move || {
            let mut recovered = 0;
            for p in partitions {
                match p.recover() {
                    Ok(Some(outcome)) => {
                        recovered += 1;
                        if p.id().topic == crate::placement::OFFSETS_TOPIC
                            && let Err(e) = offsets.reload(p.id().partition)
                        {
                            tracing::error!(partition = %p.id(), error = %e, "committed offsets could not be replayed after recovery");
                        }
                        if outcome.log_end < outcome.previous_high_watermark {
                            tracing::warn!(partition = %p.id(), dropped_from = outcome.log_end, high_watermark = outcome.previous_high_watermark, "recovery dropped acknowledged records that were never flushed (interval durability)");
                        }
                        tracing::info!(partition = %p.id(), log_end = outcome.log_end, "poisoned partition recovered: writes are accepted again");
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(partition = %p.id(), error = %e, "poisoned log not recovered yet; retrying later"),
                }
            }
            recovered
        })
        .await;
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "log recovery task failed");
            0
        })
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
    /// Forgets idempotent producers idle for longer than
    /// [`crate::producers::PRODUCER_ID_EXPIRATION`] (Kafka's
    /// `producer.id.expiration.ms`), partition by partition; returns how
    /// many went.
    pub fn expire_producers(&self) -> usize {
        let before = self.clock.now_ms().saturating_sub(crate::producers::PRODUCER_ID_EXPIRATION.as_millis() as i64);
        let mut expired = 0;
        for t in self.topics() {
            for p in t.partitions() {
                expired += p.producers.expire(before);
            }
        }
        if expired > 0 {
            tracing::debug!(expired, "expired idle producers");
        }
        expired
    }

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
                // Not a classic group: a KIP-848 group with members keeps
                // its offsets too.
                Err(GroupError::GroupIdNotFound { .. }) => !self.consumer_group_has_members(&group),
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
                self.forget_stored_group(&group).await?;
            }
            tracing::info!(group, "expired committed offsets of an idle group");
        }
        Ok(expired)
    }

    fn consumer_group_has_members(&self, group: &str) -> bool {
        let found = self.consumer_groups.describe(std::slice::from_ref(&group.to_string()));
        found.into_iter().any(|d| d.is_ok_and(|d| !d.members.is_empty()))
    }
}
