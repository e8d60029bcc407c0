//! Profiles: named servers in `~/.config/fjord/config.toml`, and which
//! server and output format a command uses.
//!
//! ```toml
//! default_profile = "prod"
//!
//! [profiles.prod]
//! server = "http://10.0.0.1:9600"
//! output = "json"            # optional: table, json or yaml
//!
//! [profiles.local]
//! server = "127.0.0.1:9600"  # http:// is implied
//! ```
//!
//! The file is `$FJORD_CLI_CONFIG` if set, else
//! `$XDG_CONFIG_HOME/fjord/config.toml`, else `~/.config/fjord/config.toml`.
//! A missing file means no profiles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{CliError, Result};
use crate::output::Format;

/// Where the server is when nothing says otherwise.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:9600";

/// The profile file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// The profile used without `--profile`.
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// One profile.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    server: Option<String>,
    output: Option<Format>,
}

/// What a command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Base URL, `http://host:port` without a trailing slash.
    pub(crate) server: String,
    pub(crate) format: Format,
}

/// The profile file's path from the environment (`None` when there is no
/// home directory to look in).
pub(crate) fn config_path(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(p) = set("FJORD_CLI_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = set("XDG_CONFIG_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Some(Path::new(&x).join("fjord").join("config.toml"));
    }
    set("HOME").map(|h| Path::new(&h).join(".config").join("fjord").join("config.toml"))
}

/// Reads the profile file; a missing one is empty.
pub(crate) fn load(path: &Path) -> Result<ConfigFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => return Err(CliError::Config { path: path.to_path_buf(), message: e.to_string() }),
    };
    parse(&text).map_err(|message| CliError::Config { path: path.to_path_buf(), message })
}

fn parse(text: &str) -> std::result::Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
}

/// Picks server and format: `--server` (or `FJORD_SERVER`, which clap
/// folds into it) over the profile over [`DEFAULT_SERVER`]; `-o` over the
/// profile over tables. The profile is `--profile`, else `default_profile`.
pub(crate) fn resolve(
    server: Option<&str>,
    output: Option<Format>,
    profile: Option<&str>,
    file: &ConfigFile,
    path: &Path,
) -> Result<Settings> {
    let config_err = |message: String| CliError::Config { path: path.to_path_buf(), message };
    let chosen = match profile.or(file.default_profile.as_deref()) {
        None => None,
        Some(name) => match file.profiles.get(name) {
            Some(p) => Some((name, p)),
            None if profile.is_some() => {
                let known = file.profiles.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
                let known = if known.is_empty() { "none".to_string() } else { known };
                return Err(config_err(format!("no profile '{name}' (profiles: {known})")));
            }
            None => return Err(config_err(format!("default_profile '{name}' is not defined under [profiles]"))),
        },
    };
    let server = match (server, chosen.and_then(|(n, p)| p.server.as_deref().map(|s| (n, s)))) {
        (Some(s), _) => normalize_server(s).map_err(CliError::Usage)?,
        (None, Some((name, s))) => normalize_server(s).map_err(|e| config_err(format!("profile '{name}': {e}")))?,
        (None, None) => DEFAULT_SERVER.to_string(),
    };
    let format = output.or(chosen.and_then(|(_, p)| p.output)).unwrap_or_default();
    Ok(Settings { server, format })
}

/// `host:port` or `http://host:port[/]` → `http://host:port`.
pub(crate) fn normalize_server(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    let url = if s.contains("://") { s.to_string() } else { format!("http://{s}") };
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("invalid server '{s}': only http:// addresses are supported"));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.starts_with(['/', ':']) || rest.contains(char::is_whitespace) {
        return Err(format!("invalid server '{s}': expected http://HOST:PORT"));
    }
    Ok(format!("http://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    const FILE: &str = r#"
        default_profile = "prod"
        [profiles.prod]
        server = "http://10.0.0.1:9600/"
        [profiles.dev]
        server = "localhost:9601"
        output = "json"
    "#;

    fn res(server: Option<&str>, output: Option<Format>, profile: Option<&str>, f: &ConfigFile) -> Result<Settings> {
        resolve(server, output, profile, f, Path::new("c.toml"))
    }

    #[test]
    fn precedence() {
        let f = file(FILE);
        let s = |r: Result<Settings>| r.map(|s| (s.server, s.format)).map_err(|e| e.to_string());
        assert_eq!(s(res(None, None, None, &f)), Ok(("http://10.0.0.1:9600".into(), Format::Table)));
        assert_eq!(s(res(None, None, Some("dev"), &f)), Ok(("http://localhost:9601".into(), Format::Json)));
        assert_eq!(
            s(res(None, Some(Format::Yaml), Some("dev"), &f)),
            Ok(("http://localhost:9601".into(), Format::Yaml))
        );
        assert_eq!(s(res(Some("http://h:1"), None, Some("dev"), &f)), Ok(("http://h:1".into(), Format::Json)));
        let empty = ConfigFile::default();
        assert_eq!(s(res(None, None, None, &empty)), Ok((DEFAULT_SERVER.into(), Format::Table)));
    }

    #[test]
    fn missing_profiles_are_config_errors() {
        let f = file(FILE);
        let e = res(None, None, Some("nope"), &f).err();
        assert_eq!(e.as_ref().map(CliError::exit_code), Some(78));
        assert!(e.is_some_and(|e| e.to_string().contains("profiles: dev, prod")));
        let f = file("default_profile = \"gone\"");
        assert_eq!(res(None, None, None, &f).err().map(|e| e.exit_code()), Some(78));
        // --server does not need the profile's server, but the profile must exist.
        assert_eq!(res(Some("h:1"), None, Some("nope"), &file(FILE)).err().map(|e| e.exit_code()), Some(78));
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(parse("default_profile = 3").is_err());
        assert!(parse("[profiles.x]\nsevrer = \"h\"").is_err());
        assert!(parse("[profiles.x]\noutput = \"xml\"").is_err());
        assert!(parse("not toml").is_err());
    }

    #[test]
    fn bad_servers() {
        let f = file("[profiles.x]\nserver = \"https://h\"");
        assert_eq!(res(None, None, Some("x"), &f).err().map(|e| e.exit_code()), Some(78));
        assert_eq!(res(Some("ftp://h"), None, None, &f).err().map(|e| e.exit_code()), Some(64));
        assert_eq!(normalize_server("http://"), Err("invalid server 'http://': expected http://HOST:PORT".into()));
        assert_eq!(normalize_server(" h:1 "), Ok("http://h:1".into()));
    }

    #[test]
    fn paths() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_string())
        };
        let p = |vars| config_path(env(vars)).map(|p| p.display().to_string());
        assert_eq!(p(&[("FJORD_CLI_CONFIG", "/x.toml"), ("HOME", "/h")]), Some("/x.toml".into()));
        assert_eq!(p(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/h")]), Some("/xdg/fjord/config.toml".into()));
        assert_eq!(p(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")]), Some("/h/.config/fjord/config.toml".into()));
        assert_eq!(p(&[]), None);
    }
}
