//! figment providers for the config file and the environment.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider, Source};

/// Prefix of every environment variable read.
pub(crate) const ENV_PREFIX: &str = "FJORD_";
/// Separator of nesting levels in environment variable names.
pub(crate) const ENV_SEPARATOR: &str = "__";

/// The TOML file, already read, reported under its path in errors.
pub(crate) struct TomlFile {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
}

impl TomlFile {
    /// Reads `path`.
    pub(crate) fn read(path: &Path) -> std::io::Result<Self> {
        Ok(TomlFile { path: path.to_owned(), text: std::fs::read_to_string(path)? })
    }
}

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Toml::string(&self.text).data()
    }
}

/// One `FJORD_*` environment variable, as figment's
/// `Env::prefixed("FJORD_").split("__")` would read it (key lowercased,
/// value parsed as a figment [`Value`]), but from an explicit list rather
/// than the process environment, and reported under its own name in errors.
pub(crate) struct EnvVar {
    name: String,
    key: String,
    value: String,
}

impl EnvVar {
    /// The setting `name=value` stands for, if any: `name` must start with
    /// `FJORD_` (any case) and contain `__`. Other variables, including
    /// `FJORD_CONFIG` or `FJORD_LOG` used by other parts of Fjord, are not
    /// settings: every setting lives in a section, so its name has a `__`.
    pub(crate) fn parse(name: &str, value: &str) -> Option<EnvVar> {
        let trimmed = name.trim();
        let head = trimmed.get(..ENV_PREFIX.len())?;
        if !head.eq_ignore_ascii_case(ENV_PREFIX) {
            return None;
        }
        let rest = &trimmed[ENV_PREFIX.len()..];
        if !rest.contains(ENV_SEPARATOR) {
            return None;
        }
        let key = rest.replace(ENV_SEPARATOR, ".").to_ascii_lowercase();
        if key.split('.').any(|part| part.trim().is_empty()) {
            return None;
        }
        Some(EnvVar { name: trimmed.to_owned(), key, value: value.to_owned() })
    }
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let value: Value = match self.value.parse() {
            Ok(v) => v,
            Err(never) => match never {},
        };
        let dict = match figment::util::nest(&self.key, value) {
            Value::Dict(_, dict) => dict,
            // `parse` guarantees a non-empty key, hence a dictionary.
            _ => return Err(Error::from(format!("bad key in {}", self.name))),
        };
        Ok(Profile::Default.collect(dict))
    }
}
