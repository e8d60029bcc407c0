//! The definitions table: reads are lock-free snapshots, changes are
//! serialized, and a change touching durable definitions is on disk
//! before it is visible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_VHOST, VHost};
use crate::error::{AmqpError, Result};

/// What `definitions.json` holds: the durable part of every virtual host.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    vhosts: BTreeMap<String, VHost>,
    /// Topics of the transient queues that exist: deleted at the next start.
    #[serde(default)]
    transient_topics: Vec<String>,
}

/// The broker's AMQP definitions.
#[derive(Debug)]
pub struct Model {
    path: PathBuf,
    vhosts: RwLock<Arc<BTreeMap<String, VHost>>>,
    write: tokio::sync::Mutex<()>,
}

impl Model {
    /// Loads `<dir>/definitions.json` (creating the default virtual host
    /// when there is none). Returns the model and the topics of the
    /// transient queues the previous run had: only their data remains,
    /// and the caller deletes them.
    pub fn open(dir: &Path) -> Result<(Model, Vec<String>)> {
        let path = dir.join("definitions.json");
        let mut saved: Saved = match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| AmqpError::Definitions(format!("{}: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(AmqpError::Io { context: "reading the AMQP definitions", source: e }),
        };
        saved.vhosts.entry(DEFAULT_VHOST.to_string()).or_insert_with(VHost::with_predeclared);
        saved.vhosts.values_mut().for_each(VHost::reindex);
        let model = Model { path, vhosts: RwLock::new(Arc::new(saved.vhosts)), write: Default::default() };
        Ok((model, saved.transient_topics))
    }

    /// A consistent view of every virtual host.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, VHost>> {
        self.vhosts.read().clone()
    }

    /// Whether a virtual host exists.
    pub fn has_vhost(&self, name: &str) -> bool {
        self.vhosts.read().contains_key(name)
    }

    /// Applies `change` to a copy of virtual host `vhost`; when it
    /// succeeds the copy is written to disk, then replaces the original.
    /// Changes are serialized.
    pub async fn update<T>(
        &self,
        vhost: &str,
        change: impl FnOnce(&mut VHost) -> std::result::Result<T, crate::exception::AmqpException>,
    ) -> Result<std::result::Result<T, crate::exception::AmqpException>> {
        let _w = self.write.lock().await;
        let mut next = (**self.vhosts.read()).clone();
        let Some(v) = next.get_mut(vhost) else {
            return Ok(Err(crate::exception::AmqpException::not_allowed(format!("no access to vhost '{vhost}'"))));
        };
        let out = match change(v) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        v.reindex();
        self.save(&next).await?;
        *self.vhosts.write() = Arc::new(next);
        Ok(Ok(out))
    }

    /// Creates virtual host `name` with the predeclared exchanges; false
    /// when it already exists.
    pub async fn add_vhost(&self, name: &str) -> Result<bool> {
        if name.is_empty() || name.len() > 255 {
            return Err(AmqpError::Invalid("a vhost name is 1 to 255 bytes".into()));
        }
        let _w = self.write.lock().await;
        let mut next = (**self.vhosts.read()).clone();
        if next.contains_key(name) {
            return Ok(false);
        }
        next.insert(name.to_string(), VHost::with_predeclared());
        self.save(&next).await?;
        *self.vhosts.write() = Arc::new(next);
        Ok(true)
    }

    /// Removes virtual host `name` and returns what it had (its queues'
    /// topics are the caller's to delete). `/` cannot be deleted.
    pub async fn delete_vhost(&self, name: &str) -> Result<VHost> {
        if name == DEFAULT_VHOST {
            return Err(AmqpError::Invalid("the default vhost '/' cannot be deleted".into()));
        }
        let _w = self.write.lock().await;
        let mut next = (**self.vhosts.read()).clone();
        let gone = next.remove(name).ok_or_else(|| AmqpError::NotFound(format!("no vhost '{name}'")))?;
        self.save(&next).await?;
        *self.vhosts.write() = Arc::new(next);
        Ok(gone)
    }

    async fn save(&self, all: &BTreeMap<String, VHost>) -> Result<()> {
        let mut saved = Saved::default();
        for (name, v) in all {
            let mut d = VHost::default();
            d.exchanges = v.exchanges.iter().filter(|(_, e)| e.durable).map(|(k, e)| (k.clone(), e.clone())).collect();
            d.queues = v.queues.iter().filter(|(_, q)| q.durable).map(|(k, q)| (k.clone(), q.clone())).collect();
            d.bindings = v
                .bindings
                .iter()
                .filter(|b| {
                    d.exchanges.contains_key(&b.source)
                        && if b.to_exchange {
                            d.exchanges.contains_key(&b.destination)
                        } else {
                            d.queues.contains_key(&b.destination)
                        }
                })
                .cloned()
                .collect();
            saved.vhosts.insert(name.clone(), d);
            saved
                .transient_topics
                .extend(v.queues.values().filter(|q| !q.durable && !q.adopted).map(|q| q.topic.clone()));
        }
        let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| AmqpError::Definitions(e.to_string()))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            fjord_log::write_atomic(&path, &bytes).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| AmqpError::Definitions(format!("writing definitions: {e}")))?
        .map_err(|e| AmqpError::Definitions(format!("writing definitions: {e}")))
    }
}
