//! Who may connect, to which virtual hosts, and what they may do there.
//!
//! As RabbitMQ's internal backend:
//! - **Users** have a password stored salted and hashed the way RabbitMQ
//!   stores it (`rabbit_password_hashing_sha256`: base64 of a 4-byte salt
//!   followed by SHA-256(salt ‖ password)), so a user exported from
//!   RabbitMQ's definitions imports unchanged; the clear password is never
//!   written anywhere.
//! - **Permissions** are per virtual host and user: three regular
//!   expressions, *configure*, *write* and *read*, searched (not anchored)
//!   in a resource's name; the empty expression matches nothing. A user
//!   with no entry for a vhost cannot open it. The default exchange is the
//!   resource `amq.default`.
//! - Users named in `loopback_users` (default `guest`) log in only from a
//!   loopback address.
//!
//! Everything is kept in the broker's document scope `amqp/users` (a file
//! on a single node, the controller quorum's metadata in a cluster, so a
//! user created through one node logs in on every node), one entry per
//! user (`user/<name>`) and per permission (`perm/<[vhost, user]>`),
//! durable before a change is answered. Until the scope is first written
//! the database is the default one: the default user (`guest`/`guest`
//! unless configured) with every permission on `/`. Reads are lock-free
//! snapshots with the expressions compiled once per version.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use fjord_broker::{Broker, DocumentScope};
use parking_lot::RwLock;
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AmqpError, Result};
use crate::exception::{AmqpException, MethodResult};

/// The hashing algorithm of every stored password (RabbitMQ's name).
pub const HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// base64(salt ‖ SHA-256(salt ‖ password)); empty = no password login.
    pub password_hash: String,
    /// Always [`HASHING_ALGORITHM`].
    pub hashing_algorithm: String,
    /// Free-form tags (`administrator`, `monitoring`...), kept for tools.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One user's rights in one virtual host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// Declare and delete resources whose names match.
    pub configure: String,
    /// Publish to exchanges, bind to queues whose names match.
    pub write: String,
    /// Consume from queues, bind from exchanges whose names match.
    pub read: String,
}

impl Permission {
    /// Every right (`.*` three times).
    pub fn all() -> Permission {
        Permission { configure: ".*".into(), write: ".*".into(), read: ".*".into() }
    }
}

/// What a permission check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Declare or delete.
    Configure,
    /// Publish to, or bind to.
    Write,
    /// Consume, get, purge, or bind from.
    Read,
}

/// What `users.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    users: BTreeMap<String, User>,
    /// vhost → user → permission.
    permissions: BTreeMap<String, BTreeMap<String, Permission>>,
}

/// A permission with its expressions compiled (`None` matches nothing).
#[derive(Debug, Clone)]
struct Compiled {
    configure: Option<Regex>,
    write: Option<Regex>,
    read: Option<Regex>,
}

impl Compiled {
    fn new(p: &Permission) -> Result<Compiled> {
        let re = |s: &str| -> Result<Option<Regex>> {
            if s.is_empty() {
                return Ok(None);
            }
            Regex::new(s).map(Some).map_err(|e| AmqpError::Invalid(format!("permission expression '{s}': {e}")))
        };
        Ok(Compiled { configure: re(&p.configure)?, write: re(&p.write)?, read: re(&p.read)? })
    }
}

#[derive(Debug, Default)]
struct State {
    /// The broker's document generation and the scope version this state
    /// was built from.
    generation: u64,
    version: u64,
    saved: Saved,
    compiled: BTreeMap<(String, String), Compiled>,
}

impl State {
    fn new(saved: Saved) -> Result<State> {
        let mut compiled = BTreeMap::new();
        for (vhost, users) in &saved.permissions {
            for (user, p) in users {
                compiled.insert((vhost.clone(), user.clone()), Compiled::new(p)?);
            }
        }
        Ok(State { generation: 0, version: 0, saved, compiled })
    }
}

/// The users' scope.
const SCOPE: &str = "amqp/users";

impl Saved {
    fn entries(&self) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (name, u) in &self.users {
            out.insert(format!("user/{name}"), json(u)?);
        }
        for (vhost, users) in &self.permissions {
            for (user, p) in users {
                out.insert(format!("perm/{}", json(&(vhost, user))?), json(p)?);
            }
        }
        Ok(out)
    }

    /// What a scope holds; entries that do not parse are skipped with a
    /// warning.
    fn from_entries(s: &DocumentScope) -> Saved {
        let mut saved = Saved::default();
        for (key, value) in &s.entries {
            let parsed = if let Some(name) = key.strip_prefix("user/") {
                serde_json::from_str::<User>(value).map(|u| drop(saved.users.insert(name.to_string(), u)))
            } else if let Some(k) = key.strip_prefix("perm/") {
                serde_json::from_str::<(String, String)>(k).and_then(|(vhost, user)| {
                    let p = serde_json::from_str::<Permission>(value)?;
                    saved.permissions.entry(vhost).or_default().insert(user, p);
                    Ok(())
                })
            } else {
                Ok(())
            };
            if let Err(e) = parsed {
                tracing::warn!(entry = %key, error = %e, "amqp: skipping a malformed user entry");
            }
        }
        saved
    }
}

fn json<T: Serialize>(x: &T) -> Result<String> {
    serde_json::to_string(x).map_err(|e| AmqpError::Definitions(e.to_string()))
}

/// The user database.
#[derive(Debug)]
pub struct Users {
    broker: Arc<Broker>,
    /// The database before the scope is first written.
    default: Saved,
    state: RwLock<Arc<State>>,
    write: tokio::sync::Mutex<()>,
    loopback_users: Vec<String>,
}

/// Hashes a password as RabbitMQ does, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 4];
    getrandom::fill(&mut salt).map_err(|e| AmqpError::Invalid(format!("no randomness for a salt: {e}")))?;
    Ok(salted_hash(&salt, password))
}

fn salted_hash(salt: &[u8], password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut out = salt.to_vec();
    out.extend_from_slice(&h.finalize());
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// Whether `password` matches a stored hash (compared in constant time).
pub fn verify_password(stored: &str, password: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(stored) else { return false };
    if raw.len() != 4 + 32 {
        return false;
    }
    let Ok(computed) = base64::engine::general_purpose::STANDARD.decode(salted_hash(&raw[..4], password)) else {
        return false;
    };
    raw.iter().zip(&computed).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

impl Users {
    /// Opens the user database; on a single node's first start with it
    /// kept in the broker, moves an old `<dir>/users.json` over. `default`
    /// (user, password) is allowed everything on `/` until the database is
    /// first changed.
    pub async fn open(
        broker: Arc<Broker>,
        dir: &Path,
        default: (&str, &str),
        loopback_users: Vec<String>,
    ) -> Result<Users> {
        let mut initial = Saved::default();
        let (user, password) = default;
        let u = User {
            password_hash: hash_password(password)?,
            hashing_algorithm: HASHING_ALGORITHM.into(),
            tags: vec!["administrator".into()],
        };
        initial.users.insert(user.to_string(), u);
        initial
            .permissions
            .entry(crate::model::DEFAULT_VHOST.into())
            .or_default()
            .insert(user.into(), Permission::all());
        let users = Users {
            broker,
            default: initial,
            state: RwLock::new(Arc::new(State { generation: u64::MAX, ..State::default() })),
            write: Default::default(),
            loopback_users,
        };
        users.migrate(dir).await?;
        Ok(users)
    }

    /// Moves `users.json` of earlier versions into the broker's scope (a
    /// single node; a cluster node leaves it, with a warning).
    async fn migrate(&self, dir: &Path) -> Result<()> {
        let path = dir.join("users.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(AmqpError::Io { context: "reading the AMQP users", source: e }),
        };
        if self.broker.config().cluster_id.is_some() {
            tracing::warn!(path = %path.display(), "amqp: a cluster node ignores its old node-local users file");
            return Ok(());
        }
        let saved: Saved =
            serde_json::from_slice(&bytes).map_err(|e| AmqpError::Definitions(format!("{}: {e}", path.display())))?;
        if self.broker.documents(SCOPE).is_none() {
            self.change(|s| {
                *s = saved.clone();
                Ok(())
            })
            .await?;
        }
        std::fs::remove_file(&path).map_err(|e| AmqpError::Io { context: "removing the old users file", source: e })?;
        tracing::info!(path = %path.display(), "amqp: users moved into the broker's documents");
        Ok(())
    }

    /// The current database, rebuilt when its scope changed.
    fn state(&self) -> Arc<State> {
        let generation = self.broker.documents_generation();
        let current = self.state.read().clone();
        if current.generation == generation {
            return current;
        }
        let scope = self.broker.documents(SCOPE);
        let version = scope.as_ref().map_or(0, |s| s.version);
        let next = if current.generation != u64::MAX && current.version == version {
            State { generation, version, saved: current.saved.clone(), compiled: current.compiled.clone() }
        } else {
            let saved = match &scope {
                Some(s) => Saved::from_entries(s),
                None => self.default.clone(),
            };
            match State::new(saved) {
                Ok(s) => State { generation, version, ..s },
                Err(e) => {
                    tracing::warn!(error = %e, "amqp: the stored permissions do not compile; keeping the last good ones");
                    return current;
                }
            }
        };
        let next = Arc::new(next);
        *self.state.write() = next.clone();
        next
    }

    /// Checks a login: the user exists, the password matches, and a
    /// loopback-only user comes from loopback.
    pub fn authenticate(&self, user: &str, password: &str, from_loopback: bool) -> bool {
        if !from_loopback && self.loopback_users.iter().any(|u| u == user) {
            return false;
        }
        let state = self.state();
        state
            .saved
            .users
            .get(user)
            .is_some_and(|u| !u.password_hash.is_empty() && verify_password(&u.password_hash, password))
    }

    /// Whether `user` has any permission entry on `vhost`.
    pub fn may_open(&self, user: &str, vhost: &str) -> bool {
        self.state().compiled.contains_key(&(vhost.to_string(), user.to_string()))
    }

    /// Checks `right` on the resource `kind` (`queue` or `exchange`) named
    /// `name`; the refusal is RabbitMQ's 403 text.
    pub fn check(&self, user: &str, vhost: &str, right: Right, kind: &str, name: &str) -> MethodResult<()> {
        let resource = if kind == "exchange" && name.is_empty() { "amq.default" } else { name };
        let state = self.state();
        let allowed = state.compiled.get(&(vhost.to_string(), user.to_string())).is_some_and(|c| {
            let re = match right {
                Right::Configure => &c.configure,
                Right::Write => &c.write,
                Right::Read => &c.read,
            };
            re.as_ref().is_some_and(|r| r.is_match(resource))
        });
        if allowed {
            Ok(())
        } else {
            Err(AmqpException::access_refused(format!(
                "access to {kind} '{resource}' in vhost '{vhost}' refused for user '{user}'"
            )))
        }
    }

    /// Every user (name, tags), without hashes.
    pub fn users(&self) -> Vec<(String, User)> {
        self.state().saved.users.iter().map(|(k, u)| (k.clone(), u.clone())).collect()
    }

    /// Every permission: (vhost, user, permission).
    pub fn permissions(&self) -> Vec<(String, String, Permission)> {
        let state = self.state();
        let mut out = Vec::new();
        for (vhost, users) in &state.saved.permissions {
            for (user, p) in users {
                out.push((vhost.clone(), user.clone(), p.clone()));
            }
        }
        out
    }

    /// Creates or replaces a user. `password` is hashed here; a
    /// `password_hash` (RabbitMQ's format) is taken as it is.
    pub async fn put_user(
        &self,
        name: &str,
        password: Option<&str>,
        hash: Option<&str>,
        tags: Vec<String>,
    ) -> Result<()> {
        if name.is_empty() || name.len() > 255 {
            return Err(AmqpError::Invalid("a user name is 1 to 255 bytes".into()));
        }
        let password_hash = match (password, hash) {
            (Some(p), None) => hash_password(p)?,
            (None, Some(h)) => {
                let ok = base64::engine::general_purpose::STANDARD.decode(h).is_ok_and(|r| r.len() == 36);
                if !ok && !h.is_empty() {
                    return Err(AmqpError::Invalid(format!("password_hash is not a {HASHING_ALGORITHM} hash")));
                }
                h.to_string()
            }
            (None, None) => String::new(),
            (Some(_), Some(_)) => return Err(AmqpError::Invalid("give password or password_hash, not both".into())),
        };
        let user = User { password_hash, hashing_algorithm: HASHING_ALGORITHM.into(), tags };
        self.change(|s| {
            s.users.insert(name.to_string(), user.clone());
            Ok(())
        })
        .await
    }

    /// Deletes a user and every permission it had.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        self.change(|s| {
            s.users.remove(name).ok_or_else(|| AmqpError::NotFound(format!("no user '{name}'")))?;
            for users in s.permissions.values_mut() {
                users.remove(name);
            }
            Ok(())
        })
        .await
    }

    /// Sets a user's permission on a vhost (`None` clears it).
    pub async fn set_permission(&self, vhost: &str, user: &str, p: Option<Permission>) -> Result<()> {
        if let Some(p) = &p {
            Compiled::new(p)?;
        }
        self.change(|s| {
            if !s.users.contains_key(user) {
                return Err(AmqpError::NotFound(format!("no user '{user}'")));
            }
            match &p {
                Some(p) => {
                    s.permissions.entry(vhost.to_string()).or_default().insert(user.to_string(), p.clone());
                }
                None => {
                    let gone = s.permissions.get_mut(vhost).and_then(|u| u.remove(user));
                    if gone.is_none() {
                        return Err(AmqpError::NotFound(format!("user '{user}' has no permission on vhost '{vhost}'")));
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Forgets every permission on a deleted vhost.
    pub async fn forget_vhost(&self, vhost: &str) -> Result<()> {
        self.change(|s| {
            s.permissions.remove(vhost);
            Ok(())
        })
        .await
    }

    /// Applies `f` to a copy of the database and stores what it changed;
    /// retried on a fresh copy when another node changed it first (so `f`
    /// may run more than once).
    async fn change(&self, mut f: impl FnMut(&mut Saved) -> Result<()>) -> Result<()> {
        let _w = self.write.lock().await;
        self.broker
            .change_documents(SCOPE, |stored| {
                let current = self.state();
                let mut next = if current.version == stored.version {
                    current.saved.clone()
                } else if stored.version == 0 {
                    self.default.clone()
                } else {
                    Saved::from_entries(stored)
                };
                f(&mut next)?;
                State::new(next.clone())?;
                Ok((Some(next.entries()?), ()))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_match_rabbitmq() {
        // From RabbitMQ's docs ("Computing Password Hash"): salt 908DC60A,
        // password "test12".
        let salt = [0x90, 0x8D, 0xC6, 0x0A];
        assert_eq!(salted_hash(&salt, "test12"), "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR");
        let h = hash_password("s3cret").expect("hash");
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cret "));
        assert!(!verify_password("not base64!", "x"));
    }

    #[tokio::test]
    async fn permissions_are_searched_and_empty_matches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open_broker =
            || Broker::open(fjord_broker::BrokerConfig::new(dir.path()), Arc::new(fjord_log::SystemClock));
        let broker = open_broker().await.expect("broker");
        let users =
            Users::open(broker.clone(), dir.path(), ("guest", "guest"), vec!["guest".into()]).await.expect("open");
        assert!(users.authenticate("guest", "guest", true));
        assert!(!users.authenticate("guest", "guest", false), "loopback only");
        users.put_user("app", Some("pw"), None, vec![]).await.expect("put");
        assert!(users.authenticate("app", "pw", false));
        assert!(users.authenticate("guest", "guest", true), "the default user was stored with the first change");
        assert!(!users.may_open("app", "/"));
        let p = Permission { configure: "^app\\.".into(), write: "".into(), read: "app".into() };
        users.set_permission("/", "app", Some(p)).await.expect("set");
        assert!(users.may_open("app", "/"));
        assert!(users.check("app", "/", Right::Configure, "queue", "app.q").is_ok());
        assert!(users.check("app", "/", Right::Configure, "queue", "x.app.q").is_err());
        assert!(users.check("app", "/", Right::Read, "queue", "x.app.q").is_ok(), "unanchored");
        let e = users.check("app", "/", Right::Write, "exchange", "").expect_err("empty matches nothing");
        assert_eq!(e.text, "access to exchange 'amq.default' in vhost '/' refused for user 'app'");
        assert!(
            users
                .set_permission("/", "app", Some(Permission { configure: "(".into(), ..Permission::all() }))
                .await
                .is_err()
        );
        // Survives a restart; the password is not stored in clear.
        broker.shutdown().await.expect("shutdown");
        drop((users, broker));
        let broker = open_broker().await.expect("broker");
        let again = Users::open(broker.clone(), dir.path(), ("guest", "other"), vec![]).await.expect("reopen");
        assert!(again.authenticate("app", "pw", false));
        assert!(again.authenticate("guest", "guest", false), "the stored default user, not the new default");
        let file = std::fs::read_to_string(dir.path().join("documents.json")).expect("file");
        assert!(file.contains("user/app") && !file.contains("\"pw\""));
        again.delete_user("app").await.expect("delete");
        assert!(!again.authenticate("app", "pw", true));
        assert!(!again.may_open("app", "/"));
        broker.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn an_old_users_file_is_moved_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let amqp = dir.path().join("amqp");
        std::fs::create_dir_all(&amqp).expect("dir");
        let mut old = Saved::default();
        let hash = hash_password("pw").expect("hash");
        old.users.insert(
            "app".into(),
            User { password_hash: hash, hashing_algorithm: HASHING_ALGORITHM.into(), tags: vec![] },
        );
        old.permissions.entry("/".into()).or_default().insert("app".into(), Permission::all());
        std::fs::write(amqp.join("users.json"), serde_json::to_vec(&old).expect("json")).expect("write");
        let broker = Broker::open(fjord_broker::BrokerConfig::new(dir.path()), Arc::new(fjord_log::SystemClock))
            .await
            .expect("broker");
        let users = Users::open(broker.clone(), &amqp, ("guest", "guest"), vec![]).await.expect("open");
        assert!(users.authenticate("app", "pw", false) && users.may_open("app", "/"));
        assert!(!users.authenticate("guest", "guest", true), "the old file had no guest");
        assert!(!amqp.join("users.json").exists());
        broker.shutdown().await.expect("shutdown");
    }
}
