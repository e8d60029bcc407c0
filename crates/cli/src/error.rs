//! The one error type of the CLI, and the exit code of each error.

use std::path::PathBuf;

/// Exit codes, from sysexits(3).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The user declined a confirmation prompt.
    pub const DECLINED: u8 = 1;
    /// `EX_USAGE`: bad command line, or a destructive command without
    /// `--yes` while stdin is not a terminal.
    pub const USAGE: u8 = 64;
    /// `EX_DATAERR`: the API rejected the request (400, 409, 413, 416 and
    /// other 4xx), or an input line was malformed.
    pub const DATAERR: u8 = 65;
    /// `EX_NOINPUT`: the API said 404 (unknown topic, partition, group,
    /// message), or an input file cannot be read.
    pub const NOINPUT: u8 = 66;
    /// `EX_UNAVAILABLE`: cannot connect, timed out, 502/503/504, or
    /// `cluster health` reports `degraded`.
    pub const UNAVAILABLE: u8 = 69;
    /// `EX_SOFTWARE`: the API said 500, or its response made no sense.
    pub const SOFTWARE: u8 = 70;
    /// `EX_IOERR`: writing the output failed.
    pub const IOERR: u8 = 74;
    /// `EX_CONFIG`: the profile file is malformed or names a missing profile.
    pub const CONFIG: u8 = 78;
}

/// Everything that can make a CLI command fail.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad command line, caught after parsing (exit 64).
    #[error("{0}")]
    Usage(String),
    /// The API answered with an error status (exit code by status).
    #[error("{code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's stable error code (`unknown_topic`, ...), or
        /// `http_<status>` when the body was not an API error.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The server could not be reached (exit 69).
    #[error("cannot reach {url}: {reason}")]
    Unavailable {
        /// What was requested.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The server's answer could not be understood (exit 70).
    #[error("unexpected response from {url}: {reason}")]
    BadResponse {
        /// What was requested.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// Malformed input data, e.g. a line without the key separator (exit 65).
    #[error("{0}")]
    Data(String),
    /// An input file that cannot be read (exit 66).
    #[error("cannot read {path}: {source}")]
    Input {
        /// The file (`-` for stdin).
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The profile file is malformed or names a profile it lacks (exit 78).
    #[error("{}: {message}", path.display())]
    Config {
        /// The profile file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The user answered no to a confirmation prompt (exit 1).
    #[error("aborted")]
    Declined,
    /// A data directory (`--data-dir`) cannot be read (exit 66).
    #[error("cannot read the data directory: {0}")]
    Offline(String),
    /// Writing to stdout failed (exit 74).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Api { status, .. } => match *status {
                404 => exit::NOINPUT,
                502..=504 => exit::UNAVAILABLE,
                500..=599 => exit::SOFTWARE,
                _ => exit::DATAERR,
            },
            CliError::Unavailable { .. } => exit::UNAVAILABLE,
            CliError::BadResponse { .. } => exit::SOFTWARE,
            CliError::Data(_) => exit::DATAERR,
            CliError::Input { .. } | CliError::Offline(_) => exit::NOINPUT,
            CliError::Config { .. } => exit::CONFIG,
            CliError::Declined => exit::DECLINED,
            CliError::Output(_) => exit::IOERR,
        }
    }

    /// Adds a note to the message (e.g. how much of a long operation was
    /// done before it failed).
    pub(crate) fn with_note(self, note: &str) -> CliError {
        match self {
            CliError::Api { status, code, message } => {
                CliError::Api { status, code, message: format!("{message} ({note})") }
            }
            CliError::Unavailable { url, reason } => {
                CliError::Unavailable { url, reason: format!("{reason} ({note})") }
            }
            CliError::BadResponse { url, reason } => {
                CliError::BadResponse { url, reason: format!("{reason} ({note})") }
            }
            other => other,
        }
    }
}

/// Shorthand for results of CLI operations.
pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> CliError {
        CliError::Api { status, code: "x".into(), message: "y".into() }
    }

    #[test]
    fn api_statuses_map_to_sysexits() {
        assert_eq!(api(400).exit_code(), 65);
        assert_eq!(api(409).exit_code(), 65);
        assert_eq!(api(413).exit_code(), 65);
        assert_eq!(api(416).exit_code(), 65);
        assert_eq!(api(404).exit_code(), 66);
        assert_eq!(api(503).exit_code(), 69);
        assert_eq!(api(500).exit_code(), 70);
        assert_eq!(CliError::Declined.exit_code(), 1);
        assert_eq!(CliError::Usage(String::new()).exit_code(), 64);
    }

    #[test]
    fn api_errors_display_code_then_message() {
        let e = CliError::Api { status: 404, code: "unknown_topic".into(), message: "no topic 'x'".into() };
        assert_eq!(e.to_string(), "unknown_topic: no topic 'x'");
        assert_eq!(e.with_note("2 of 3 sent").to_string(), "unknown_topic: no topic 'x' (2 of 3 sent)");
    }
}
