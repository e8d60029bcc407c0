//! Per-group settings (RocketMQ's subscription group config): how many
//! deliveries a message gets before it is dead-lettered, and whether the
//! group consumes in order. Stored as the broker's group configs
//! ([`fjord_broker::group_config`]) under the names [`MAX_ATTEMPTS`] and
//! [`FIFO`], so a cluster keeps them in its metadata and every node
//! applies the same ones; settings a gateway builds in (AMQP's unlimited
//! requeues) are held in memory and never stored.
//!
//! Earlier versions kept `<data>/messaging/groups.json`; a single node
//! moves it into the broker's table on its first start.

use std::collections::BTreeMap;
use std::path::Path;

use fjord_broker::{Broker, GroupConfig};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::Messaging;
use crate::error::{MessagingError, Result};

/// `max_attempts` of a group whose messages are redelivered for ever and
/// never dead-lettered by the pop service (AMQP queues: the gateway
/// applies a queue's own delivery limit).
pub const UNLIMITED_ATTEMPTS: u32 = u32::MAX;

/// Group config name of [`GroupSettings::max_attempts`].
pub const MAX_ATTEMPTS: &str = "fjord.max.attempts";
/// Group config name of [`GroupSettings::fifo`] (`true`/`false`).
pub const FIFO: &str = "fjord.fifo";

/// Settings of one consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Deliveries before the dead-letter queue (1..=64, or
    /// [`UNLIMITED_ATTEMPTS`]).
    pub max_attempts: u32,
    /// Ordered consumption (RocketMQ's `consumeMessageOrderly`): pop
    /// consumers of the group get a message group's messages one at a time.
    #[serde(default)]
    pub fifo: bool,
}

impl GroupSettings {
    /// Reads the settings from a group's config; `None` when it has no
    /// delivery-attempts setting (or a malformed one: it is then as if
    /// unset, and the broker default applies).
    fn from_config(config: &GroupConfig) -> Option<GroupSettings> {
        let max_attempts = config.get(MAX_ATTEMPTS)?.parse().ok()?;
        Some(GroupSettings { max_attempts, fifo: config.get(FIFO).is_some_and(|v| v == "true") })
    }

    /// Writes the settings into a group's config, keeping other names.
    fn write_into(self, config: &mut GroupConfig) {
        config.insert(MAX_ATTEMPTS.to_string(), self.max_attempts.to_string());
        config.insert(FIFO.to_string(), self.fifo.to_string());
    }
}

/// Settings built into gateways, by group.
#[derive(Debug, Default)]
pub(crate) struct GroupTable {
    builtin: RwLock<BTreeMap<String, GroupSettings>>,
    /// Groups whose deliveries are held by client connections.
    connection_bound: RwLock<std::collections::BTreeSet<String>>,
}

/// Moves the settings of `<dir>/groups.json` (earlier versions) into the
/// broker's group configs, on a single node; groups that have settings
/// there already keep them. A cluster node leaves the file (with a
/// warning): its groups' settings belong to the cluster.
pub(crate) async fn migrate_legacy(broker: &Broker, dir: &Path) -> Result<()> {
    let path = dir.join("groups.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(MessagingError::io("read group settings", &path, e)),
    };
    if broker.config().cluster_id.is_some() {
        tracing::warn!(path = %path.display(), "ignoring group settings of an earlier version on a cluster node; set them again (they are now cluster-wide)");
        return Ok(());
    }
    let old: BTreeMap<String, GroupSettings> = serde_json::from_slice(&bytes)
        .map_err(|e| MessagingError::Corrupt { what: "group settings", detail: e.to_string() })?;
    for (group, settings) in old {
        let mut config = broker.group_config(&group).unwrap_or_default();
        if GroupSettings::from_config(&config).is_none() {
            settings.write_into(&mut config);
            broker.set_group_config(&group, config).await?;
        }
    }
    std::fs::remove_file(&path).map_err(|e| MessagingError::io("remove old group settings", &path, e))?;
    tracing::info!("moved the group settings of an earlier version into the broker's group configs");
    Ok(())
}

impl Messaging {
    /// The group's settings, if it has its own.
    pub fn group_settings(&self, group: &str) -> Option<GroupSettings> {
        if let Some(s) = self.groups.builtin.read().get(group) {
            return Some(*s);
        }
        self.broker.with_group_config(group, GroupSettings::from_config)?
    }

    /// Every group that has stored settings of its own (RocketMQ
    /// subscription groups); groups with built-in settings only are not
    /// listed: nothing about them can be deleted.
    pub fn configured_groups(&self) -> Vec<String> {
        self.configured_group_settings().into_iter().map(|(g, _)| g).collect()
    }

    /// [`Messaging::configured_groups`] with their settings, by name.
    pub fn configured_group_settings(&self) -> Vec<(String, GroupSettings)> {
        self.broker
            .group_configs()
            .iter()
            .filter_map(|(g, c)| Some((g.clone(), GroupSettings::from_config(c)?)))
            .collect()
    }

    /// Deliveries a message of `group` gets before the dead-letter queue.
    pub fn max_attempts(&self, group: &str) -> u32 {
        self.group_settings(crate::pull::ConsumeModel::base_group(group))
            .map_or(self.config.max_attempts, |s| s.max_attempts)
    }

    /// Sets (or with `None` removes) a group's own settings, durably (in a
    /// cluster, for every node).
    pub async fn set_group_settings(&self, group: &str, settings: Option<GroupSettings>) -> Result<()> {
        if let Some(s) = settings
            && !(1..=64).contains(&s.max_attempts)
            && s.max_attempts != UNLIMITED_ATTEMPTS
        {
            return Err(MessagingError::InvalidRequest(format!("max_attempts {} is outside 1..=64", s.max_attempts)));
        }
        let mut config = self.broker.group_config(group).unwrap_or_default();
        match settings {
            Some(s) => s.write_into(&mut config),
            None => {
                config.remove(MAX_ATTEMPTS);
                config.remove(FIFO);
            }
        }
        Ok(self.broker.set_group_config(group, config).await?)
    }

    /// Gives `group` settings that a gateway builds in: held in memory,
    /// never stored, ahead of any stored ones.
    pub fn set_builtin_group_settings(&self, group: &str, settings: GroupSettings) {
        self.groups.builtin.write().insert(group.to_string(), settings);
    }

    /// Marks `group`'s pop deliveries as held by client connections (AMQP:
    /// a channel's unacked messages go back to their queue when it closes,
    /// and no connection outlives its node): a node that comes to serve one
    /// of its queues (a restart, a failover) makes every delivery in flight
    /// visible at once instead of waiting out its invisibility. Each keeps
    /// its receipt, so a consumer still connected can ack it until it is
    /// delivered again. Not stored: each node's gateway says so at start.
    pub fn set_connection_bound(&self, group: &str) {
        self.groups.connection_bound.write().insert(group.to_string());
    }

    pub(crate) fn is_connection_bound(&self, group: &str) -> bool {
        self.groups.connection_bound.read().contains(crate::pull::ConsumeModel::base_group(group))
    }
}
