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
//! Everything is kept in `<data>/amqp/users.json`, replaced atomically
//! before a change is answered. The first start writes the default user
//! (`guest`/`guest` unless configured) with every permission on `/`.
//! Reads are lock-free snapshots with the expressions compiled once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
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
        Ok(State { saved, compiled })
    }
}

/// The user database.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
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
    /// Loads `<dir>/users.json`; without one, creates it with `default`
    /// (user, password) allowed everything on `/`.
    pub fn open(dir: &Path, default: (&str, &str), loopback_users: Vec<String>) -> Result<Users> {
        let path = dir.join("users.json");
        let saved = match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| AmqpError::Definitions(format!("{}: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut s = Saved::default();
                let (user, password) = default;
                let u = User {
                    password_hash: hash_password(password)?,
                    hashing_algorithm: HASHING_ALGORITHM.into(),
                    tags: vec!["administrator".into()],
                };
                s.users.insert(user.to_string(), u);
                s.permissions
                    .entry(crate::model::DEFAULT_VHOST.into())
                    .or_default()
                    .insert(user.into(), Permission::all());
                write_file(&path, &s)?;
                s
            }
            Err(e) => return Err(AmqpError::Io { context: "reading the AMQP users", source: e }),
        };
        Ok(Users { path, state: RwLock::new(Arc::new(State::new(saved)?)), write: Default::default(), loopback_users })
    }

    /// Checks a login: the user exists, the password matches, and a
    /// loopback-only user comes from loopback.
    pub fn authenticate(&self, user: &str, password: &str, from_loopback: bool) -> bool {
        if !from_loopback && self.loopback_users.iter().any(|u| u == user) {
            return false;
        }
        let state = self.state.read().clone();
        state
            .saved
            .users
            .get(user)
            .is_some_and(|u| !u.password_hash.is_empty() && verify_password(&u.password_hash, password))
    }

    /// Whether `user` has any permission entry on `vhost`.
    pub fn may_open(&self, user: &str, vhost: &str) -> bool {
        self.state.read().compiled.contains_key(&(vhost.to_string(), user.to_string()))
    }

    /// Checks `right` on the resource `kind` (`queue` or `exchange`) named
    /// `name`; the refusal is RabbitMQ's 403 text.
    pub fn check(&self, user: &str, vhost: &str, right: Right, kind: &str, name: &str) -> MethodResult<()> {
        let resource = if kind == "exchange" && name.is_empty() { "amq.default" } else { name };
        let state = self.state.read().clone();
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
        self.state.read().saved.users.iter().map(|(k, u)| (k.clone(), u.clone())).collect()
    }

    /// Every permission: (vhost, user, permission).
    pub fn permissions(&self) -> Vec<(String, String, Permission)> {
        let state = self.state.read().clone();
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
            s.users.insert(name.to_string(), user);
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
            match p {
                Some(p) => {
                    s.permissions.entry(vhost.to_string()).or_default().insert(user.to_string(), p);
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

    async fn change(&self, f: impl FnOnce(&mut Saved) -> Result<()>) -> Result<()> {
        let _w = self.write.lock().await;
        let mut next = self.state.read().saved.clone();
        f(&mut next)?;
        let state = State::new(next)?;
        let path = self.path.clone();
        let saved = state.saved.clone();
        tokio::task::spawn_blocking(move || write_file(&path, &saved))
            .await
            .map_err(|e| AmqpError::Definitions(format!("writing the users: {e}")))??;
        *self.state.write() = Arc::new(state);
        Ok(())
    }
}

fn write_file(path: &Path, s: &Saved) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(s).map_err(|e| AmqpError::Definitions(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| AmqpError::Io { context: "creating the AMQP directory", source: e })?;
    }
    fjord_log::write_atomic(path, &bytes)
        .map_err(|e| AmqpError::Definitions(format!("writing {}: {e}", path.display())))
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
        let users = Users::open(dir.path(), ("guest", "guest"), vec!["guest".into()]).expect("open");
        assert!(users.authenticate("guest", "guest", true));
        assert!(!users.authenticate("guest", "guest", false), "loopback only");
        users.put_user("app", Some("pw"), None, vec![]).await.expect("put");
        assert!(users.authenticate("app", "pw", false));
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
        // Survives a reopen; the password is not stored in clear.
        let again = Users::open(dir.path(), ("guest", "guest"), vec![]).expect("reopen");
        assert!(again.authenticate("app", "pw", false));
        let file = std::fs::read_to_string(dir.path().join("users.json")).expect("file");
        assert!(!file.contains("\"pw\""));
        again.delete_user("app").await.expect("delete");
        assert!(!again.authenticate("app", "pw", true));
        assert!(!again.may_open("app", "/"));
    }
}
