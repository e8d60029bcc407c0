//! Per-group settings (RocketMQ's subscription group config): how many
//! deliveries a message gets before it is dead-lettered, and whether the
//! group consumes in order. Kept in
//! `<data>/messaging/groups.json`, rewritten atomically on change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};

/// `max_attempts` of a group whose messages are redelivered for ever and
/// never dead-lettered by the pop service (AMQP queues: the gateway
/// applies a queue's own delivery limit).
pub const UNLIMITED_ATTEMPTS: u32 = u32::MAX;

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

#[derive(Debug)]
pub(crate) struct GroupTable {
    path: PathBuf,
    groups: RwLock<BTreeMap<String, GroupSettings>>,
    write: tokio::sync::Mutex<()>,
}

impl GroupTable {
    pub(crate) fn open(dir: &Path) -> Result<GroupTable> {
        let path = dir.join("groups.json");
        let groups = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| MessagingError::Corrupt { what: "group settings", detail: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(MessagingError::io("read group settings", &path, e)),
        };
        Ok(GroupTable { path, groups: RwLock::new(groups), write: Default::default() })
    }
}

impl Messaging {
    /// The group's settings, if it has its own.
    pub fn group_settings(&self, group: &str) -> Option<GroupSettings> {
        self.groups.groups.read().get(group).copied()
    }

    /// Every group that has its own settings (RocketMQ subscription groups).
    pub fn configured_groups(&self) -> Vec<String> {
        self.groups.groups.read().keys().cloned().collect()
    }

    /// Deliveries a message of `group` gets before the dead-letter queue.
    pub fn max_attempts(&self, group: &str) -> u32 {
        self.group_settings(crate::pull::ConsumeModel::base_group(group))
            .map_or(self.config.max_attempts, |s| s.max_attempts)
    }

    /// Sets (or with `None` removes) a group's own settings, durably.
    pub async fn set_group_settings(&self, group: &str, settings: Option<GroupSettings>) -> Result<()> {
        if let Some(s) = settings
            && !(1..=64).contains(&s.max_attempts)
            && s.max_attempts != UNLIMITED_ATTEMPTS
        {
            return Err(MessagingError::InvalidRequest(format!("max_attempts {} is outside 1..=64", s.max_attempts)));
        }
        let _w = self.groups.write.lock().await;
        let mut next = self.groups.groups.read().clone();
        match settings {
            Some(s) => next.insert(group.to_string(), s),
            None => next.remove(group),
        };
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| MessagingError::Internal(format!("encode group settings: {e}")))?;
        let path = self.groups.path.clone();
        blocking(move || fjord_log::write_atomic(&path, &bytes))
            .await?
            .map_err(|e| MessagingError::log("group settings", e))?;
        *self.groups.groups.write() = next;
        Ok(())
    }
}
