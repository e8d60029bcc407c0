//! Typed configuration for `fjord serve`.
//!
//! # Sources and precedence
//!
//! A [`Config`] is assembled from three layers; a later layer overrides the
//! settings it mentions and leaves the others alone:
//!
//! 1. built-in defaults ([`Config::default()`]);
//! 2. an optional TOML file (`fjord serve --config path`);
//! 3. environment variables `FJORD_<SECTION>__<KEY>`.
//!
//! The result is then checked by [`Config::validate`]. Every setting can be
//! set in each layer. `fjord.example.toml` at the repository root lists all
//! of them with their defaults.
//!
//! # Naming
//!
//! A setting has a dotted key path, `section.key` (or deeper, such as
//! `listeners.kafka.bind`). In TOML it is `key` inside `[section]`. As an
//! environment variable it is `FJORD_` followed by the path with each `.`
//! turned into a double underscore, in any case (upper case by convention):
//! [`env_key_for`]`("storage.segment_bytes")` is
//! `FJORD_STORAGE__SEGMENT_BYTES`. Single underscores belong to key names.
//!
//! ```text
//! FJORD_STORAGE__SEGMENT_BYTES=1048576
//! FJORD_LISTENERS__KAFKA__BIND=127.0.0.1:0
//! FJORD_NODE__DATA_DIR=/tmp/x
//! ```
//!
//! Variables that start with `FJORD_` but have no `__` (such as
//! `FJORD_CONFIG`) are not settings and are ignored. A variable that has one
//! but names no setting is an error, like an unknown key in the file.
//!
//! # Units and values
//!
//! Durations are integer milliseconds in keys ending in `_ms`, sizes integer
//! bytes in keys ending in `_bytes`; names follow Kafka's where Kafka has
//! the setting. Since TOML and environment variables have no null:
//!
//! - retention limits (`storage.retention_ms`, `storage.retention_bytes`)
//!   take `-1` for "no limit" (as in Kafka);
//! - optional strings (`node.rack`, `listeners.*.advertised`) take `""` for
//!   "unset".
//!
//! Environment values are parsed like figment's `Env` provider: `true` and
//! numbers are typed, `[a, b]` is a list, anything else is a string
//! (string settings accept numbers too, so `FJORD_NODE__RACK=1` works).
//! Lists also accept a comma-separated string (`a,b`).
//!
//! Unknown keys are errors whose message names the key and where it came
//! from, so a typo never silently leaves a default in place.
//!
//! # Example
//!
//! ```
//! use fjord_config::{Config, Durability};
//!
//! // `Config::load(path)` reads the process environment; `load_from` takes
//! // it explicitly.
//! let env = [
//!     ("FJORD_STORAGE__SEGMENT_BYTES".to_owned(), "1048576".to_owned()),
//!     ("FJORD_STORAGE__DURABILITY".to_owned(), "every-write".to_owned()),
//!     ("FJORD_LISTENERS__KAFKA__BIND".to_owned(), "127.0.0.1:0".to_owned()),
//! ];
//! let config = Config::load_from(None, &env)?;
//! assert_eq!(config.storage.segment_bytes, 1_048_576);
//! assert_eq!(config.storage.durability, Durability::EveryWrite);
//! assert_eq!(config.listeners.kafka.bind_addr()?.port(), 0);
//! assert_eq!(config.node.cluster_name, "fjord"); // untouched default
//! # Ok::<(), fjord_config::ConfigError>(())
//! ```

mod cluster;
mod de;
mod error;
mod providers;
mod sections;
mod validate;

use std::path::Path;

use figment::Figment;
use figment::providers::Serialized;
use serde::{Deserialize, Serialize};

pub use cluster::ClusterSettings;
pub use error::{ConfigError, InvalidSetting};
pub use sections::{
    AmqpSettings, Durability, GroupsConfig, KafkaSettings, LimitsConfig, ListenerConfig, ListenersConfig, LogFormat,
    LogOutputConfig, MessagingSettings, MetricsConfig, NodeConfig, ReplicaSelector, RocketMqSettings, StorageConfig,
    TimestampType, TopicDefaults,
};

use providers::{ENV_PREFIX, ENV_SEPARATOR, EnvVar, TomlFile};

/// Smallest accepted `storage.segment_bytes`: 1 KiB.
pub const MIN_SEGMENT_BYTES: u64 = 1024;
/// Largest accepted `storage.segment_bytes`: 2 GiB - 1, as in Kafka (byte
/// positions within a segment are 32-bit).
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

/// The whole configuration of `fjord serve`. See the [crate docs](crate)
/// for how it is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[node]`: broker identity and data directory.
    pub node: NodeConfig,
    /// `[listeners]`: the socket of each protocol gateway.
    pub listeners: ListenersConfig,
    /// `[storage]`: segment, retention and durability settings of the log.
    pub storage: StorageConfig,
    /// `[topics]`: topic creation defaults and limits.
    pub topics: TopicDefaults,
    /// `[groups]`: consumer group and committed offset settings.
    pub groups: GroupsConfig,
    /// `[kafka]`: Kafka gateway limits (frame sizes, idle connections).
    pub kafka: KafkaSettings,
    /// `[limits]`: connection caps, the request-memory budget, HTTP
    /// timeouts (every listener).
    pub limits: LimitsConfig,
    /// `[messaging]`: delays, retries, dead-letter queues, order locks.
    pub messaging: MessagingSettings,
    /// `[rocketmq]`: RocketMQ gateway behaviour (transaction check-backs,
    /// long polling).
    pub rocketmq: RocketMqSettings,
    /// `[amqp]`: the AMQP gateway's default user.
    pub amqp: AmqpSettings,
    /// `[cluster]`: the controller quorum this node joins, if any.
    pub cluster: ClusterSettings,
    /// `[metrics]`: what `/metrics` exports.
    pub metrics: MetricsConfig,
    /// `[log]`: the server's diagnostic log output.
    pub log: LogOutputConfig,
}

impl Config {
    /// Loads defaults, then `file` if given, then the process's `FJORD_*`
    /// environment variables, and validates the result.
    ///
    /// # Errors
    /// [`ConfigError::Read`] if `file` cannot be read, [`ConfigError::Load`]
    /// if a source does not parse or has an unknown key or a value of the
    /// wrong type, [`ConfigError::Invalid`] if validation fails.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect();
        Config::load_from(file, &env)
    }

    /// As [`Config::load`], with the environment given as `(name, value)`
    /// pairs instead of read from the process (for tests and tools). Pairs
    /// that are not settings (see the [crate docs](crate)) are ignored; when
    /// two name the same setting, the later one wins.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            let toml = TomlFile::read(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            figment = figment.merge(toml);
        }
        for (name, value) in env {
            if let Some(var) = EnvVar::parse(name, value) {
                figment = figment.merge(var);
            }
        }
        let config: Config = figment.extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and relations between settings (e.g. `segment_bytes`
    /// too small, a zero flush interval in interval mode, a minimum session
    /// timeout above the maximum, two listeners on one port).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every offending setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = validate::problems(self);
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid { problems }) }
    }
}

/// The environment variable that sets the setting at dotted key `path`:
/// `"storage.segment_bytes"` → `"FJORD_STORAGE__SEGMENT_BYTES"`.
pub fn env_key_for(path: &str) -> String {
    let mut out = String::from(ENV_PREFIX);
    for (i, part) in path.split('.').enumerate() {
        if i > 0 {
            out.push_str(ENV_SEPARATOR);
        }
        out.push_str(&part.to_ascii_uppercase());
    }
    out
}
