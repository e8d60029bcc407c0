//! The internal topics: `__fjord_offsets`, `__fjord_timer` and `__fjord_pop`, created on
//! a single node when the broker opens (in a cluster the controller creates
//! them and every node gets them like any other topic). The offsets topic
//! is attached to the store whenever it appears here, and fed once with the
//! offsets of the node-local log earlier versions kept; the timer topic is
//! the messaging layer's.

use std::sync::Arc;

use crate::broker::Broker;
use crate::error::{BrokerError, Result, blocking};
use crate::partition::Topic;
use crate::placement::{OFFSETS_TOPIC, POP_TOPIC, TIMER_TOPIC};
use crate::topic::{TopicConfig, TopicRecord};

/// Whether `name` is a topic the broker keeps for itself: clients may read
/// it but never write, delete or grow it.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TIMER_TOPIC || name == POP_TOPIC
}

/// The settings `__fjord_offsets` is created with: commits are fsynced
/// before they are acknowledged whatever the broker's default durability,
/// never expire by time (the store compacts them), and segments stay small
/// enough for compaction to free space early.
pub fn offsets_topic_config(compact_after_bytes: u64) -> TopicConfig {
    let segment = (compact_after_bytes / 4).max(1 << 20).min(i32::MAX as u64).to_string();
    TopicConfig(
        [
            ("fjord.durability", "group-commit".to_string()),
            ("retention.ms", "-1".to_string()),
            ("retention.bytes", "-1".to_string()),
            ("segment.bytes", segment),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )
}

/// The settings `__fjord_timer` is created with: schedules and the
/// timer's journal are fsynced before they are acknowledged, never expire
/// by time (the timer moves the log start past delivered messages), and
/// its records are indexed by the messaging layer's key, id and reference
/// headers (lookups of scheduled messages; `fjord-messaging` checks that
/// the list matches its own).
pub fn timer_topic_config() -> TopicConfig {
    const TIMER_INDEXED_HEADERS: &str = "fjord.key,fjord.id,fjord.timer-ref,fjord.half-ref";
    // Small segments: the active one keeps its key index in memory (a
    // pending message's id costs some 50 bytes until its segment is
    // sealed), and trimming frees whole segments.
    state_topic_config(&[("fjord.key.index", "true"), ("fjord.key.index.headers", TIMER_INDEXED_HEADERS)])
}

/// The settings `__fjord_pop` is created with: pop/ack changes are fsynced
/// before they are acknowledged, never expire by time (each shard's leader
/// writes its queues' whole state now and then and moves the log start to
/// it), and records may hold a shard's queue states.
pub fn pop_topic_config() -> TopicConfig {
    state_topic_config(&[])
}

/// What the messaging layer's state topics share: fsynced before
/// acknowledged, no retention (their state machines move the log start),
/// 16 MB segments and records; plus `extra`.
fn state_topic_config(extra: &[(&str, &str)]) -> TopicConfig {
    let base = [
        ("fjord.durability", "group-commit"),
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("segment.bytes", "16777216"),
        ("max.message.bytes", "16777216"),
    ];
    TopicConfig(base.iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

impl Broker {
    /// At open: attaches `__fjord_offsets` if it was loaded, creates it on
    /// a single node, and moves the offsets of an old node-local log onto
    /// it.
    pub(crate) async fn open_offsets(&self) -> Result<()> {
        match self.topic(OFFSETS_TOPIC) {
            Some(t) => self.topic_added(&t).await?,
            // A single node creates it (the creation attaches it); in a
            // cluster the controller does, and it is attached on arrival.
            None if self.config.cluster_id.is_none() => {
                let record = TopicRecord {
                    id: uuid::Uuid::new_v4(),
                    name: OFFSETS_TOPIC.to_string(),
                    partitions: self.config.offsets_partitions.max(1),
                    config: offsets_topic_config(self.config.offsets_compact_bytes),
                    internal: true,
                };
                self.create_topic_local(record).await?;
            }
            None => {}
        }
        // The messaging layer's state topics, on a single node.
        let state_topics = [
            (TIMER_TOPIC, self.config.timer_partitions, timer_topic_config()),
            (POP_TOPIC, self.config.pop_partitions, pop_topic_config()),
        ];
        for (name, partitions, config) in state_topics {
            if self.config.cluster_id.is_none() && self.topic(name).is_none() {
                let record = TopicRecord {
                    id: uuid::Uuid::new_v4(),
                    name: name.to_string(),
                    partitions: partitions.max(1),
                    config,
                    internal: true,
                };
                self.create_topic_local(record).await?;
            }
        }
        self.migrate_legacy_offsets().await
    }

    /// Called whenever a topic is created or loaded here: the offsets topic
    /// is replayed into the store.
    pub(crate) async fn topic_added(&self, topic: &Arc<Topic>) -> Result<()> {
        if topic.name() != OFFSETS_TOPIC {
            return Ok(());
        }
        let (store, partitions) = (self.offsets.clone(), topic.partitions());
        blocking(move || store.attach(&partitions)).await??;
        // Alone, this node coordinates every group from the start; in a
        // cluster it takes a shard's groups over when elected its leader.
        let restored = if self.config.cluster_id.is_none() { self.restore_stored_groups() } else { 0 };
        tracing::info!(partitions = topic.partitions().len(), groups = restored, "committed offsets loaded");
        Ok(())
    }

    /// Moves the offsets of the node-local log earlier versions kept (under
    /// `internal/consumer-offsets`) onto `__fjord_offsets`, then deletes it.
    /// A crash midway leaves the old log, and the move runs again: the
    /// same values written twice replay to the same map.
    async fn migrate_legacy_offsets(&self) -> Result<()> {
        let dir = self.config.data_dir.join(super::legacy::LEGACY_DIR);
        if !dir.exists() {
            return Ok(());
        }
        if !self.offsets.is_loaded() {
            // A cluster node before its metadata arrived: moved on a later
            // start, once the topic exists here.
            tracing::warn!(dir = %dir.display(), "committed offsets of an earlier version wait for __fjord_offsets to exist on this node");
            return Ok(());
        }
        let (d, clock) = (dir.clone(), self.clock.clone());
        let map = blocking(move || super::legacy::read(&d, clock)).await??;
        let n = map.len();
        let now = self.clock.now_ms();
        self.offsets.put(map.into_iter().map(|(k, v)| (k, Some(v))).collect(), now).await?;
        let d = dir.clone();
        blocking(move || std::fs::remove_dir_all(&d))
            .await?
            .map_err(|e| BrokerError::internal_from(format!("removing {}", dir.display()), e))?;
        tracing::info!(offsets = n, "moved committed offsets of an earlier version onto __fjord_offsets");
        Ok(())
    }
}
