//! Document scopes: definitions the layers above keep for the whole
//! broker — AMQP's virtual hosts (exchanges, queues, bindings) and users —
//! as named scopes of small entries, each scope changed by compare-and-set
//! on its version.
//!
//! Every node reads them on its hot paths (routing a publish), so every
//! node holds all of them: a single node in `<data>/documents.json`
//! (rewritten atomically on each change, so a change is durable before it
//! is visible), a cluster in the controller quorum's metadata
//! (`UpdateDocuments`), installed on every node as it applies the metadata.
//! The broker does not interpret entries; their owners do.
//!
//! *Invariants*: a scope's version only grows; a change applies only to the
//! version its proposer read ([`DocumentUpdate::Conflict`] otherwise, and by
//! then this node holds the newer version, so the caller reads and retries).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::broker::{Broker, io_err};
use crate::error::{BrokerError, Result, blocking};

const FILE: &str = "documents.json";

/// Longest scope name or entry key, and largest value, in bytes (the
/// controller enforces the same).
pub const MAX_KEY: usize = 16 * 1024;
/// Largest entry value, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

/// How often [`Broker::change_documents`] retries an edit that lost a race
/// before giving up.
const CHANGE_ATTEMPTS: usize = 16;

/// How long a change that lost a race waits for the winner to arrive here.
const CATCH_UP: Duration = Duration::from_secs(15);

/// One scope: its entries and version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentScope {
    /// Bumped by every applied change; 0 for a scope never written.
    pub version: u64,
    /// Entries by key.
    pub entries: BTreeMap<String, String>,
}

/// What a change adds, replaces and removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentChange {
    /// Entries to add or replace.
    pub set: BTreeMap<String, String>,
    /// Keys to remove.
    pub remove: Vec<String>,
}

impl DocumentChange {
    /// The change that turns `from` into `to`.
    pub fn between(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> DocumentChange {
        let set = to.iter().filter(|(k, v)| from.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let remove = from.keys().filter(|k| !to.contains_key(*k)).cloned().collect();
        DocumentChange { set, remove }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    fn validate(&self, scope: &str) -> Result<()> {
        if scope.is_empty() || scope.len() > MAX_KEY {
            return Err(BrokerError::InvalidRequest(format!("a scope name has 1 to {MAX_KEY} bytes")));
        }
        if self.set.iter().any(|(k, v)| k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_VALUE) {
            return Err(BrokerError::InvalidRequest(format!(
                "scope '{scope}': keys have 1 to {MAX_KEY} bytes, values at most {MAX_VALUE}"
            )));
        }
        Ok(())
    }
}

/// The outcome of [`Broker::update_documents`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentUpdate {
    /// Applied, and visible on this node.
    Applied,
    /// The scope moved past the version read; this node now holds a newer
    /// version: read again and retry.
    Conflict,
}

/// Every scope, by name.
pub type DocumentTable = BTreeMap<String, Arc<DocumentScope>>;

#[derive(Debug)]
pub(crate) struct Documents {
    /// `None` in a cluster: the metadata holds them.
    path: Option<PathBuf>,
    all: RwLock<Arc<DocumentTable>>,
    /// Bumped whenever any scope changes here: readers that derive views
    /// from scopes compare it to rebuild only when something changed.
    generation: watch::Sender<u64>,
    /// Serialises changes on a single node (read, change, write the file).
    write: tokio::sync::Mutex<()>,
}

impl Documents {
    /// Loads a single node's scopes from `dir`; a cluster node starts empty
    /// and gets them with the metadata.
    pub(crate) fn load(dir: &Path, cluster: bool) -> Result<Documents> {
        let path = (!cluster).then(|| dir.join(FILE));
        let mut all = DocumentTable::new();
        if let Some(path) = &path {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let saved: BTreeMap<String, DocumentScope> = serde_json::from_slice(&bytes).map_err(|e| {
                        BrokerError::internal_from(format!("{} is not a valid document table", path.display()), e)
                    })?;
                    all = saved.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("read documents", path, e)),
            }
        }
        Ok(Documents {
            path,
            all: RwLock::new(Arc::new(all)),
            generation: watch::Sender::new(0),
            write: Default::default(),
        })
    }

    fn publish(&self, next: DocumentTable) {
        *self.all.write() = Arc::new(next);
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Broker {
    /// Scope `scope`, if it was ever written.
    pub fn documents(&self, scope: &str) -> Option<Arc<DocumentScope>> {
        self.documents.all.read().get(scope).cloned()
    }

    /// Every scope whose name starts with `prefix`.
    pub fn document_scopes(&self, prefix: &str) -> Vec<(String, Arc<DocumentScope>)> {
        let all = self.documents.all.read().clone();
        all.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A counter bumped whenever any scope changes on this node.
    pub fn documents_generation(&self) -> u64 {
        *self.documents.generation.borrow()
    }

    /// Applies `change` to `scope` if it is still at version `expect`,
    /// durably: on a single node in its file, in a cluster through the
    /// controller quorum. Returns once this node holds the outcome.
    pub async fn update_documents(&self, scope: &str, expect: u64, change: DocumentChange) -> Result<DocumentUpdate> {
        change.validate(scope)?;
        if let Some(authority) = self.authority() {
            let outcome = authority.update_documents(scope, expect, &change).await?;
            if outcome == DocumentUpdate::Conflict {
                // The winner's change is committed; wait until it is here so
                // the caller's next read sees it.
                let mut rx = self.documents.generation.subscribe();
                let newer = rx.wait_for(|_| self.documents(scope).is_some_and(|s| s.version > expect));
                if tokio::time::timeout(CATCH_UP, newer).await.is_err() {
                    return Err(BrokerError::Unavailable(format!("scope '{scope}' changed elsewhere; not here yet")));
                }
            }
            return Ok(outcome);
        }
        let Some(path) = self.documents.path.clone() else {
            return Err(BrokerError::Unavailable("documents are kept by the cluster, not reachable yet".into()));
        };
        let _w = self.documents.write.lock().await;
        let mut next = DocumentTable::clone(&self.documents.all.read());
        let current = next.get(scope).map_or(0, |s| s.version);
        if current != expect {
            return Ok(DocumentUpdate::Conflict);
        }
        let mut s = next.get(scope).map(|s| DocumentScope::clone(s)).unwrap_or_default();
        for k in &change.remove {
            s.entries.remove(k);
        }
        s.entries.extend(change.set);
        s.version += 1;
        next.insert(scope.to_string(), Arc::new(s));
        let saved: BTreeMap<&String, &DocumentScope> = next.iter().map(|(k, v)| (k, &**v)).collect();
        let bytes =
            serde_json::to_vec(&saved).map_err(|e| BrokerError::internal_from("encode the document table", e))?;
        blocking(move || fjord_log::write_atomic(&path, &bytes))
            .await?
            .map_err(|e| BrokerError::Log { context: "documents".into(), source: e })?;
        self.documents.publish(next);
        Ok(DocumentUpdate::Applied)
    }

    /// Changes `scope` by compare-and-set: `edit` gets the scope as stored
    /// here (empty at version 0 if never written) and returns the entries it
    /// should hold (`None` to leave it) with its result; when another node
    /// changed the scope first, `edit` runs again on the newer version (so
    /// it may run more than once). An edit that changes nothing writes
    /// nothing.
    pub async fn change_documents<T, E: From<BrokerError>>(
        &self,
        scope: &str,
        mut edit: impl FnMut(&DocumentScope) -> std::result::Result<(Option<BTreeMap<String, String>>, T), E>,
    ) -> std::result::Result<T, E> {
        for _ in 0..CHANGE_ATTEMPTS {
            let current = self.documents(scope).unwrap_or_default();
            let (next, out) = edit(&current)?;
            let diff = next.map(|n| DocumentChange::between(&current.entries, &n)).unwrap_or_default();
            if diff.is_empty() {
                return Ok(out);
            }
            match self.update_documents(scope, current.version, diff).await? {
                DocumentUpdate::Applied => return Ok(out),
                DocumentUpdate::Conflict => continue,
            }
        }
        Err(BrokerError::Unavailable(format!("scope '{scope}' kept changing elsewhere; try again")).into())
    }

    /// Installs the cluster's scopes (the cluster layer calls this as it
    /// applies the metadata); only scopes at a new version are copied.
    pub fn install_documents<'a>(
        &self,
        scopes: impl IntoIterator<Item = (&'a String, u64, &'a BTreeMap<String, String>)>,
    ) {
        let current = self.documents.all.read().clone();
        let mut next: Option<DocumentTable> = None;
        for (name, version, entries) in scopes {
            if current.get(name).is_some_and(|s| s.version == version) {
                continue;
            }
            let scope = Arc::new(DocumentScope { version, entries: entries.clone() });
            next.get_or_insert_with(|| DocumentTable::clone(&current)).insert(name.clone(), scope);
        }
        if let Some(next) = next {
            self.documents.publish(next);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn change(set: &[(&str, &str)], remove: &[&str]) -> DocumentChange {
        DocumentChange {
            set: set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn a_single_node_applies_at_the_version_read_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let open = || crate::Broker::open(crate::BrokerConfig::new(dir.path()), Arc::new(fjord_log::SystemClock));
        let b = open().await.unwrap();
        let g0 = b.documents_generation();
        assert_eq!(
            b.update_documents("s", 0, change(&[("a", "1"), ("b", "2")], &[])).await.unwrap(),
            DocumentUpdate::Applied
        );
        assert!(b.documents_generation() > g0);
        assert_eq!(b.update_documents("s", 0, change(&[("a", "x")], &[])).await.unwrap(), DocumentUpdate::Conflict);
        assert_eq!(b.update_documents("s", 1, change(&[("c", "3")], &["b"])).await.unwrap(), DocumentUpdate::Applied);
        b.update_documents("t", 0, change(&[("x", "")], &[])).await.unwrap();
        assert!(b.update_documents("", 0, change(&[("x", "")], &[])).await.is_err());
        assert!(b.update_documents("s", 2, change(&[("big", &"v".repeat(MAX_VALUE + 1))], &[])).await.is_err());
        b.shutdown().await.unwrap();
        drop(b);
        let b = open().await.unwrap();
        let s = b.documents("s").unwrap();
        assert_eq!(s.version, 2);
        assert_eq!(s.entries, BTreeMap::from([("a".into(), "1".into()), ("c".into(), "3".into())]));
        assert_eq!(b.document_scopes("s").len(), 1);
        assert_eq!(b.document_scopes("").len(), 2);
        b.shutdown().await.unwrap();
    }

    #[test]
    fn a_change_between_two_maps() {
        let m = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let c = DocumentChange::between(&m(&[("a", "1"), ("b", "2")]), &m(&[("b", "3"), ("c", "4")]));
        assert_eq!(c, change(&[("b", "3"), ("c", "4")], &["a"]));
        assert!(DocumentChange::between(&m(&[("a", "1")]), &m(&[("a", "1")])).is_empty());
    }
}
