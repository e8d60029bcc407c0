//! Consumer groups' own settings (Kafka's `GROUP` config resources,
//! RocketMQ's subscription group config): per group, a map of names to
//! values that the layers above define and interpret (the messaging layer's
//! delivery attempts and ordered consumption).
//!
//! Every node reads them on its hot paths, so every node holds all of
//! them: a single node keeps them in `<data>/group-configs.json` (rewritten
//! atomically on each change); in a cluster they are part of the controller
//! quorum's metadata, changed through the [`MetadataAuthority`] and
//! installed on every node as the metadata is applied — nothing node-local
//! then, so a node that is lost takes nothing with it.
//!
//! [`MetadataAuthority`]: crate::MetadataAuthority

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::broker::{Broker, io_err};
use crate::error::{BrokerError, Result, blocking};

/// One group's settings: names to values.
pub type GroupConfig = BTreeMap<String, String>;

/// Every group's settings, by group name.
pub type GroupConfigTable = BTreeMap<String, GroupConfig>;

const FILE: &str = "group-configs.json";

/// Most settings one group may have, and their sizes: the table is held
/// by every node and sent whole in metadata snapshots.
const MAX_ENTRIES: usize = 64;
const MAX_NAME: usize = 255;
const MAX_VALUE: usize = 4096;

#[derive(Debug)]
pub(crate) struct GroupConfigs {
    /// `None` in a cluster: the metadata holds them.
    path: Option<PathBuf>,
    all: RwLock<Arc<GroupConfigTable>>,
    /// Serialises changes on a single node (read, change, write the file).
    write: tokio::sync::Mutex<()>,
}

impl GroupConfigs {
    /// Loads a single node's table from `dir`; a cluster node starts empty
    /// and gets the table with the metadata.
    pub(crate) fn load(dir: &Path, cluster: bool) -> Result<GroupConfigs> {
        let mut all = GroupConfigTable::new();
        let path = (!cluster).then(|| dir.join(FILE));
        if let Some(path) = &path {
            match std::fs::read(path) {
                Ok(bytes) => {
                    all = serde_json::from_slice(&bytes).map_err(|e| {
                        BrokerError::internal_from(format!("{} is not a valid group config table", path.display()), e)
                    })?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("read group configs", path, e)),
            }
        }
        Ok(GroupConfigs { path, all: RwLock::new(Arc::new(all)), write: Default::default() })
    }
}

/// Checks a group's settings against the limits.
fn validate(group: &str, config: &GroupConfig) -> Result<()> {
    let bad = |why: String| Err(BrokerError::InvalidRequest(why));
    if group.is_empty() || group.len() > MAX_NAME {
        return bad(format!("a group name must have 1 to {MAX_NAME} bytes"));
    }
    if config.len() > MAX_ENTRIES {
        return bad(format!("group '{group}' has {} settings; at most {MAX_ENTRIES}", config.len()));
    }
    for (k, v) in config {
        if k.is_empty() || k.len() > MAX_NAME || v.len() > MAX_VALUE {
            return bad(format!(
                "group '{group}': setting names have 1 to {MAX_NAME} bytes, values at most {MAX_VALUE}"
            ));
        }
    }
    Ok(())
}

impl Broker {
    /// `group`'s own settings, if it has any.
    pub fn group_config(&self, group: &str) -> Option<GroupConfig> {
        self.group_configs.all.read().get(group).cloned()
    }

    /// One setting of `group`, if set.
    pub fn group_setting(&self, group: &str, name: &str) -> Option<String> {
        self.group_configs.all.read().get(group)?.get(name).cloned()
    }

    /// `f` of `group`'s settings, if it has any, read in place (for hot
    /// paths that need a few values, not a copy of the map).
    pub fn with_group_config<T>(&self, group: &str, f: impl FnOnce(&GroupConfig) -> T) -> Option<T> {
        self.group_configs.all.read().get(group).map(f)
    }

    /// Every group's settings.
    pub fn group_configs(&self) -> Arc<GroupConfigTable> {
        self.group_configs.all.read().clone()
    }

    /// Replaces `group`'s settings (an empty map removes them), durably:
    /// on a single node in its file, in a cluster through the controller
    /// quorum (returning once this node has applied it).
    pub async fn set_group_config(&self, group: &str, config: GroupConfig) -> Result<()> {
        validate(group, &config)?;
        if let Some(authority) = self.authority() {
            return authority.set_group_config(group, &config).await;
        }
        let Some(path) = self.group_configs.path.clone() else {
            return Err(BrokerError::Unavailable("group configs are kept by the cluster, not reachable yet".into()));
        };
        let _w = self.group_configs.write.lock().await;
        let mut next = GroupConfigTable::clone(&self.group_configs.all.read());
        if config.is_empty() {
            next.remove(group);
        } else {
            next.insert(group.to_string(), config);
        }
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| BrokerError::internal_from("encode the group config table", e))?;
        blocking(move || fjord_log::write_atomic(&path, &bytes))
            .await?
            .map_err(|e| BrokerError::Log { context: "group configs".into(), source: e })?;
        *self.group_configs.all.write() = Arc::new(next);
        Ok(())
    }

    /// Installs the cluster's table (the cluster layer calls this as it
    /// applies the metadata).
    pub fn install_group_configs(&self, table: &GroupConfigTable) {
        if **self.group_configs.all.read() != *table {
            *self.group_configs.all.write() = Arc::new(table.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_single_node_keeps_them_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let open = || crate::Broker::open(crate::BrokerConfig::new(dir.path()), Arc::new(fjord_log::SystemClock));
        let b = open().await.unwrap();
        let cfg = GroupConfig::from([("fjord.max.attempts".to_string(), "5".to_string())]);
        b.set_group_config("g1", cfg.clone()).await.unwrap();
        b.set_group_config("g2", cfg.clone()).await.unwrap();
        b.set_group_config("g2", GroupConfig::new()).await.unwrap();
        assert!(b.set_group_config("", cfg.clone()).await.is_err());
        b.shutdown().await.unwrap();
        drop(b);
        let b = open().await.unwrap();
        assert_eq!(b.group_config("g1"), Some(cfg));
        assert_eq!(b.group_setting("g1", "fjord.max.attempts").as_deref(), Some("5"));
        assert_eq!(b.group_config("g2"), None, "an empty config removed it");
        assert_eq!(b.group_configs().len(), 1);
        b.shutdown().await.unwrap();
    }

    #[test]
    fn limits_are_checked() {
        let one = |k: &str, v: &str| GroupConfig::from([(k.to_string(), v.to_string())]);
        assert!(validate("g", &one("a", "1")).is_ok());
        assert!(validate("", &one("a", "1")).is_err());
        assert!(validate(&"g".repeat(256), &one("a", "1")).is_err());
        assert!(validate("g", &one("", "1")).is_err());
        assert!(validate("g", &one("a", &"v".repeat(4097))).is_err());
        let many: GroupConfig = (0..65).map(|i| (i.to_string(), String::new())).collect();
        assert!(validate("g", &many).is_err());
    }
}
