//! The definitions table, kept in the broker's document scopes (one per
//! virtual host, `amqp/vhost/<name>`) so that every node of a cluster has
//! the same exchanges, queues and bindings: on a single node the scopes
//! are a file, in a cluster the controller quorum's metadata.
//!
//! A virtual host is stored entity by entity — a marker entry, one entry
//! per exchange (`x/<name>`) and queue (`q/<name>`), and one per binding
//! (`b/<binding as JSON>`) — so a change writes what it changes, not the
//! whole virtual host. Reads are lock-free snapshots rebuilt when the
//! broker's scopes change; a change is computed on a copy of the virtual
//! host, written with the version it was read at, and retried on a fresh
//! copy if another node changed the virtual host first. A change is durable
//! (file or quorum) before it is visible or answered.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use fjord_broker::{Broker, DocumentScope};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{Binding, DEFAULT_VHOST, Exchange, Queue, VHost};
use crate::error::{AmqpError, Result};
use crate::exception::AmqpException;

/// Scopes of virtual hosts: this prefix and the name.
const SCOPE_PREFIX: &str = "amqp/vhost/";
/// The entry that says the virtual host exists.
const MARKER: &str = "vhost";
fn scope(vhost: &str) -> String {
    format!("{SCOPE_PREFIX}{vhost}")
}

/// What `definitions.json` of earlier versions held.
#[derive(Debug, Default, Deserialize)]
struct Saved {
    vhosts: BTreeMap<String, VHost>,
    #[serde(default)]
    transient_topics: Vec<String>,
}

/// A virtual host as built from its scope.
#[derive(Debug, Clone)]
struct Stored {
    scope: Arc<DocumentScope>,
    vhost: VHost,
}

#[derive(Debug, Default)]
struct View {
    /// The broker's document generation this view was built at.
    generation: u64,
    stored: BTreeMap<String, Stored>,
    vhosts: Arc<BTreeMap<String, VHost>>,
}

/// The broker's AMQP definitions.
#[derive(Debug)]
pub struct Model {
    broker: Arc<Broker>,
    view: RwLock<View>,
    /// Serialises this node's changes (others' are caught by the version).
    write: tokio::sync::Mutex<()>,
}

fn to_json<T: Serialize>(x: &T) -> Result<String> {
    serde_json::to_string(x).map_err(|e| AmqpError::Definitions(e.to_string()))
}

/// The entries of a virtual host.
fn entries(v: &VHost) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::from([(MARKER.to_string(), String::new())]);
    for (name, e) in &v.exchanges {
        out.insert(format!("x/{name}"), to_json(e)?);
    }
    for (name, q) in &v.queues {
        out.insert(format!("q/{name}"), to_json(q)?);
    }
    for b in &v.bindings {
        out.insert(format!("b/{}", to_json(b)?), String::new());
    }
    Ok(out)
}

/// The virtual host a scope holds; `None` when it has no marker (deleted).
/// An entry that does not parse is skipped with a warning, not fatal: the
/// rest of the definitions stay usable.
fn from_entries(name: &str, s: &DocumentScope) -> Option<VHost> {
    s.entries.get(MARKER)?;
    let mut v = VHost::default();
    for (key, value) in &s.entries {
        let bad = |e: serde_json::Error| tracing::warn!(vhost = %name, entry = %key, error = %e, "amqp: skipping a malformed definition");
        if let Some(x) = key.strip_prefix("x/") {
            match serde_json::from_str::<Exchange>(value) {
                Ok(e) => drop(v.exchanges.insert(x.to_string(), e)),
                Err(e) => bad(e),
            }
        } else if let Some(q) = key.strip_prefix("q/") {
            match serde_json::from_str::<Queue>(value) {
                Ok(queue) => drop(v.queues.insert(q.to_string(), queue)),
                Err(e) => bad(e),
            }
        } else if let Some(b) = key.strip_prefix("b/") {
            match serde_json::from_str::<Binding>(b) {
                Ok(b) => v.bindings.push(b),
                Err(e) => bad(e),
            }
        }
    }
    v.reindex();
    Some(v)
}

impl Model {
    /// Opens the definitions; on a single node's first start with them
    /// kept in the broker, moves an old `<dir>/definitions.json` over and
    /// returns the topics of the transient queues it listed (only their
    /// data remains; the caller deletes them). Writes nothing otherwise, so
    /// a cluster node opens without the controller quorum: the default
    /// virtual host exists without being stored until it first changes.
    pub async fn open(broker: Arc<Broker>, dir: &Path) -> Result<(Model, Vec<String>)> {
        // Built at the first read (no generation is `u64::MAX`).
        let view = View { generation: u64::MAX, ..View::default() };
        let model = Model { broker, view: RwLock::new(view), write: Default::default() };
        let leftover = model.migrate(dir).await?;
        Ok((model, leftover))
    }

    /// Moves `definitions.json` of earlier versions into the broker's
    /// scopes (a single node; a cluster node leaves it, with a warning:
    /// the cluster's definitions are the ones that count).
    async fn migrate(&self, dir: &Path) -> Result<Vec<String>> {
        let path = dir.join("definitions.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AmqpError::Io { context: "reading the AMQP definitions", source: e }),
        };
        if self.broker.placement().is_some() || self.broker.config().cluster_id.is_some() {
            tracing::warn!(path = %path.display(), "amqp: a cluster node ignores its old node-local definitions file");
            return Ok(Vec::new());
        }
        let saved: Saved =
            serde_json::from_slice(&bytes).map_err(|e| AmqpError::Definitions(format!("{}: {e}", path.display())))?;
        for (name, v) in saved.vhosts {
            self.put_vhost(&name, v).await?;
        }
        std::fs::remove_file(&path)
            .map_err(|e| AmqpError::Io { context: "removing the old definitions", source: e })?;
        tracing::info!(path = %path.display(), "amqp: definitions moved into the broker's documents");
        Ok(saved.transient_topics)
    }

    /// Removes what did not survive this node's restart: non-durable
    /// exchanges it declared, and transient and exclusive queues whose home
    /// it is (their connections are gone). Returns their topics.
    pub(crate) async fn drop_transient(&self) -> Result<Vec<String>> {
        let me = self.broker.config().node_id;
        let here = |q: &Queue| super::queue_home_here(&self.broker, &q.topic);
        let mut topics = Vec::new();
        for (name, v) in self.snapshot().iter() {
            let queues: Vec<Queue> =
                v.queues.values().filter(|q| (!q.durable || q.owner.is_some()) && here(q)).cloned().collect();
            let exchanges: Vec<String> =
                v.exchanges.values().filter(|e| !e.durable && e.home == Some(me)).map(|e| e.name.clone()).collect();
            if queues.is_empty() && exchanges.is_empty() {
                continue;
            }
            topics.extend(queues.iter().filter(|q| !q.adopted).map(|q| q.topic.clone()));
            let outcome = self
                .update(name, |v| {
                    for q in &queues {
                        v.queues.remove(&q.name);
                        v.unbind_where(|b| !b.to_exchange && b.destination == q.name);
                    }
                    for x in &exchanges {
                        v.exchanges.remove(x);
                        v.unbind_where(|b| &b.source == x || (b.to_exchange && &b.destination == x));
                    }
                    Ok(())
                })
                .await?;
            outcome.map_err(|e| AmqpError::Definitions(e.to_string()))?;
        }
        Ok(topics)
    }

    /// A consistent view of every virtual host.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, VHost>> {
        let generation = self.broker.documents_generation();
        {
            let view = self.view.read();
            if view.generation == generation {
                return view.vhosts.clone();
            }
        }
        self.refresh(generation)
    }

    /// Rebuilds the virtual hosts whose scopes changed since the view.
    fn refresh(&self, generation: u64) -> Arc<BTreeMap<String, VHost>> {
        let mut view = self.view.write();
        if view.generation == generation {
            return view.vhosts.clone();
        }
        let mut stored = BTreeMap::new();
        for (scope_name, s) in self.broker.document_scopes(SCOPE_PREFIX) {
            let name = &scope_name[SCOPE_PREFIX.len()..];
            let vhost = match view.stored.get(name) {
                Some(old) if old.scope.version == s.version => old.vhost.clone(),
                _ => match from_entries(name, &s) {
                    Some(v) => v,
                    None => continue,
                },
            };
            stored.insert(name.to_string(), Stored { scope: s, vhost });
        }
        // The default virtual host exists from the start; it is stored
        // with its first change.
        stored
            .entry(DEFAULT_VHOST.to_string())
            .or_insert_with(|| Stored { scope: Arc::new(DocumentScope::default()), vhost: VHost::with_predeclared() });
        view.vhosts = Arc::new(stored.iter().map(|(k, s)| (k.clone(), s.vhost.clone())).collect());
        view.stored = stored;
        view.generation = generation;
        view.vhosts.clone()
    }

    /// Whether a virtual host exists.
    pub fn has_vhost(&self, name: &str) -> bool {
        self.snapshot().contains_key(name)
    }

    /// The stored form of `vhost` (scope version and entries), if it exists.
    fn stored(&self, vhost: &str) -> Option<Stored> {
        self.snapshot();
        self.view.read().stored.get(vhost).cloned()
    }

    /// Applies `change` to a copy of virtual host `vhost` and stores what
    /// it changed; retried on a fresh copy when the virtual host changed
    /// elsewhere meanwhile (so `change` may run more than once).
    pub async fn update<T>(
        &self,
        vhost: &str,
        mut change: impl FnMut(&mut VHost) -> std::result::Result<T, AmqpException>,
    ) -> Result<std::result::Result<T, AmqpException>> {
        let _w = self.write.lock().await;
        self.broker
            .change_documents(&scope(vhost), |s| {
                let Some(mut next) = self.parsed(vhost, s) else {
                    return Ok((None, Err(AmqpException::not_allowed(format!("no access to vhost '{vhost}'")))));
                };
                match change(&mut next) {
                    Ok(out) => Ok((Some(entries(&next)?), Ok(out))),
                    Err(e) => Ok((None, Err(e))),
                }
            })
            .await
    }

    /// Virtual host `name` as stored in `s`: the view's copy when it is of
    /// that version, parsed otherwise. The default virtual host exists
    /// before it is first stored.
    fn parsed(&self, name: &str, s: &DocumentScope) -> Option<VHost> {
        match self.stored(name) {
            Some(st) if st.scope.version == s.version => Some(st.vhost),
            _ if s.version == 0 && name == DEFAULT_VHOST => Some(VHost::with_predeclared()),
            _ => from_entries(name, s),
        }
    }

    /// Stores `v` as virtual host `name` unless one is stored (the
    /// default one is not until it first changes); false when one is.
    async fn put_vhost(&self, name: &str, v: VHost) -> Result<bool> {
        let _w = self.write.lock().await;
        self.broker
            .change_documents(&scope(name), |stored| {
                if stored.entries.contains_key(MARKER) {
                    return Ok((None, false));
                }
                Ok((Some(entries(&v)?), true))
            })
            .await
    }

    /// Creates virtual host `name` with the predeclared exchanges; false
    /// when it already exists.
    pub async fn add_vhost(&self, name: &str) -> Result<bool> {
        if name.is_empty() || name.len() > 255 {
            return Err(AmqpError::Invalid("a vhost name is 1 to 255 bytes".into()));
        }
        if self.has_vhost(name) {
            return Ok(false);
        }
        self.put_vhost(name, VHost::with_predeclared()).await
    }

    /// Removes virtual host `name` and returns what it had (its queues'
    /// topics are the caller's to delete). `/` cannot be deleted.
    pub async fn delete_vhost(&self, name: &str) -> Result<VHost> {
        if name == DEFAULT_VHOST {
            return Err(AmqpError::Invalid("the default vhost '/' cannot be deleted".into()));
        }
        let _w = self.write.lock().await;
        self.broker
            .change_documents(&scope(name), |s| {
                let gone = self.parsed(name, s).ok_or_else(|| AmqpError::NotFound(format!("no vhost '{name}'")))?;
                Ok((Some(BTreeMap::new()), gone))
            })
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::ExchangeKind;

    #[test]
    fn a_vhost_round_trips_through_its_entries() {
        let mut v = VHost::with_predeclared();
        v.bindings.push(Binding::new("amq.topic", "q", false, "a.#", Default::default()));
        v.reindex();
        let e = entries(&v).unwrap();
        assert!(e.contains_key(MARKER) && e.contains_key("x/amq.topic"));
        let back = from_entries("/", &DocumentScope { version: 1, entries: e.clone() }).unwrap();
        assert_eq!(back.exchanges, v.exchanges);
        assert_eq!(back.bindings, v.bindings);
        assert_eq!(entries(&back).unwrap(), e, "entries are deterministic");
        assert_eq!(back.exchanges["amq.topic"].kind, ExchangeKind::Topic);
        // Without its marker a scope is a deleted virtual host.
        assert!(from_entries("/", &DocumentScope { version: 2, entries: BTreeMap::new() }).is_none());
    }

    fn queue(name: &str, durable: bool, owner: Option<u64>) -> Queue {
        Queue {
            name: name.into(),
            topic: name.into(),
            durable,
            owner,
            exclusive: owner.is_some(),
            auto_delete: false,
            arguments: Default::default(),
            adopted: false,
        }
    }

    async fn broker(dir: &Path) -> Arc<Broker> {
        Broker::open(fjord_broker::BrokerConfig::new(dir), Arc::new(fjord_log::SystemClock)).await.unwrap()
    }

    #[tokio::test]
    async fn an_old_definitions_file_is_moved_over_and_transient_ones_go_at_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let amqp = dir.path().join("amqp");
        std::fs::create_dir_all(&amqp).unwrap();
        let mut root = VHost::with_predeclared();
        root.queues.insert("kept".into(), queue("kept", true, None));
        root.bindings.push(Binding::new("amq.direct", "kept", false, "k", Default::default()));
        let old = serde_json::json!({
            "vhosts": { "/": root, "prod": VHost::with_predeclared() },
            "transient_topics": ["gone-before"],
        });
        std::fs::write(amqp.join("definitions.json"), serde_json::to_vec(&old).unwrap()).unwrap();
        let b = broker(dir.path()).await;
        let (model, leftover) = Model::open(b.clone(), &amqp).await.unwrap();
        assert_eq!(leftover, ["gone-before"]);
        assert!(!amqp.join("definitions.json").exists());
        let snap = model.snapshot();
        assert!(snap["/"].queues.contains_key("kept") && snap.contains_key("prod"));
        assert_eq!(snap["/"].route("amq.direct", "k", None).into_iter().collect::<Vec<_>>(), ["kept"]);
        // Transient definitions are stored (other nodes route with them)
        // and go when this node restarts.
        let mut transient = Exchange { home: Some(0), durable: false, ..snap["/"].exchanges["amq.fanout"].clone() };
        transient.name = "tx".into();
        model
            .update("/", |v| {
                v.queues.insert("tq".into(), queue("tq", false, None));
                v.queues.insert("xq".into(), queue("xq", true, Some(7)));
                v.exchanges.insert("tx".into(), transient.clone());
                v.bindings.push(Binding::new("tx", "kept", false, "", Default::default()));
                Ok(())
            })
            .await
            .unwrap()
            .unwrap();
        assert!(model.snapshot()["/"].exchanges.contains_key("tx"));
        b.shutdown().await.unwrap();
        drop((model, b));
        let b = broker(dir.path()).await;
        let (model, leftover) = Model::open(b.clone(), &amqp).await.unwrap();
        assert!(leftover.is_empty());
        assert_eq!(model.snapshot()["/"].queues.len(), 3, "kept until dropped");
        let mut gone = model.drop_transient().await.unwrap();
        gone.sort();
        assert_eq!(gone, ["tq", "xq"]);
        let snap = model.snapshot();
        assert_eq!(snap["/"].queues.keys().collect::<Vec<_>>(), ["kept"]);
        assert!(!snap["/"].exchanges.contains_key("tx") && snap["/"].bindings.iter().all(|b| b.source != "tx"));
        assert!(snap.contains_key("prod"));
        b.shutdown().await.unwrap();
    }
}
