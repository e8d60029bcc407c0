//! Errors from loading and validating the configuration.

use std::fmt;
use std::path::PathBuf;

use crate::env_key_for;

/// Why the configuration could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file given with `--config` could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A source could not be parsed or a value has the wrong type or an
    /// unknown key (a TOML syntax error, `segment_bytes = "big"`, a typo in
    /// a key name...). The message names the key and where it came from
    /// (file or environment variable).
    #[error("invalid configuration: {}", render_figment(.0))]
    Load(Box<figment::Error>),
    /// Values parsed but break a rule (a range, or a relation between
    /// settings). Every problem found is listed.
    #[error("invalid configuration: {}", Problems(.problems))]
    Invalid {
        /// Each offending setting, in the order checked.
        problems: Vec<InvalidSetting>,
    },
    /// A socket address is not `ip:port` text.
    #[error("invalid socket address `{value}`: {reason}")]
    BadAddress {
        /// The text given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

impl ConfigError {
    /// The validation problems, if this is [`ConfigError::Invalid`]; empty
    /// otherwise.
    pub fn problems(&self) -> &[InvalidSetting] {
        match self {
            ConfigError::Invalid { problems } => problems,
            _ => &[],
        }
    }
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Load(Box::new(e))
    }
}

/// One setting that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// Dotted key path of the setting, e.g. `storage.segment_bytes`.
    pub key: String,
    /// What is wrong with it, including the offending value.
    pub reason: String,
}

impl InvalidSetting {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidSetting { key: key.into(), reason: reason.into() }
    }
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (env {}): {}", self.key, env_key_for(&self.key), self.reason)
    }
}

/// Displays a list of problems separated by `; `.
struct Problems<'a>(&'a [InvalidSetting]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            p.fmt(f)?;
        }
        Ok(())
    }
}

/// Renders every error figment collected as `<what> (key `a.b`, from
/// <source>)`, without figment's profile prefix on keys.
fn render_figment(err: &figment::Error) -> String {
    let mut out = String::new();
    for (i, e) in err.clone().into_iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&render_one(&e));
    }
    out
}

/// The dotted key an error is about: for an unknown key, the unknown key
/// itself rather than the table holding it.
fn error_key(e: &figment::Error) -> String {
    let mut path = e.path.clone();
    if let figment::error::Kind::UnknownField(field, _) = &e.kind
        && path.last() != Some(field)
    {
        path.push(field.clone());
    }
    path.join(".")
}

fn render_one(e: &figment::Error) -> String {
    use figment::error::Kind;
    let key = error_key(e);
    let mut s = match &e.kind {
        Kind::UnknownField(field, expected) => {
            let mut s = format!("unknown key `{field}`");
            if !expected.is_empty() {
                s.push_str(&format!(" (expected one of: {})", expected.join(", ")));
            }
            s
        }
        Kind::UnknownVariant(value, expected) => {
            format!("unknown value `{value}` (expected one of: {})", expected.join(", "))
        }
        kind => kind.to_string().trim_end().to_owned(),
    };
    if !key.is_empty() {
        s.push_str(&format!(" at `{key}`"));
    }
    if let Some(md) = &e.metadata {
        match &md.source {
            Some(figment::Source::File(p)) => {
                s.push_str(&format!(" in {} {}", md.name, p.display()));
            }
            _ => s.push_str(&format!(" in {}", md.name)),
        }
    }
    s
}
