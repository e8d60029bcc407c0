//! # fjord-cli: the `fjord` admin command line
//!
//! The subcommands of the `fjord` binary that administer a running broker
//! through its HTTP admin API (`docs/admin-api.md`): noun, then verb.
//!
//! ```text
//! fjord cluster info|health
//! fjord topic   create|list|describe|alter|delete|produce|consume
//! fjord group   list|describe|seek --to earliest|latest|<time>|<offset> [--dry-run]|delete
//! fjord msg     get --topic T --id|--key|--tag|--time|--partition P --offset O
//! fjord dlq     list|browse|resend
//! fjord amqp    vhosts|queues|exchanges|bindings|users|permissions|disk-alarm, add-/delete-vhost, add-/delete-user, set-/clear-permissions
//! fjord delay   list
//! fjord completions bash|zsh|fish|elvish|powershell
//! ```
//!
//! The binary (`crates/server`) flattens [`Command`] next to `fjord serve`,
//! flattens [`GlobalArgs`] into its top level, and calls [`run`].
//!
//! ## Design
//! - **The API's JSON is the data model.** Commands fetch
//!   [`serde_json::Value`]s and print them: `-o json` pretty-prints the API
//!   response unchanged (so scripts see exactly the documented contract),
//!   `-o yaml` is the same data as YAML, `-o table` (default) renders
//!   borderless tables from it. Commands that combine several requests
//!   (chunked produce, paged consume, chunked seek) print one document of
//!   the same shape as the single-request response.
//! - **Blocking and small**: `ureq` with a global per-request timeout
//!   (`--timeout`, 30 s) and a 5 s connect timeout; no async runtime.
//! - **Where the server is**: `--server URL`, else `FJORD_SERVER`, else the
//!   profile (`--profile NAME`, `FJORD_PROFILE`, else the file's
//!   `default_profile`), else `http://127.0.0.1:9600`. Profiles live in
//!   `~/.config/fjord/config.toml` (`$XDG_CONFIG_HOME` honoured,
//!   `$FJORD_CLI_CONFIG` overrides the path; a missing file means no
//!   profiles); a profile may also set the default output format:
//!
//!   ```toml
//!   default_profile = "prod"
//!
//!   [profiles.prod]
//!   server = "http://10.0.0.1:9600"
//!   output = "json"   # optional
//!   ```
//! - **Destructive commands** (`topic delete`, `group delete`, `group seek`
//!   without `--dry-run`, `dlq resend`) ask on the terminal unless `--yes`;
//!   when stdin is not a terminal they refuse (exit 64) instead of hanging.
//!   `group seek` first asks the server for a dry run and shows the plan.
//! - **Long operations** (`topic produce`, `group seek` over many
//!   partitions) are sent in chunks and show an `indicatif` progress bar
//!   on stderr when stderr is a terminal.
//! - **Offline**: `topic list|describe --data-dir DIR` read a (stopped)
//!   broker's data directory directly, read-only (`offline.rs`), with the
//!   API's JSON shapes.
//! - Errors print as `fjord: <code>: <message>` on stderr (the API's error
//!   code, or `http_<status>` when the answer was not an API error).
//!
//! ## Exit codes (sysexits)
//! | Code | Name | When |
//! | --- | --- | --- |
//! | 0 | | success |
//! | 1 | | the user declined a confirmation |
//! | 64 | `EX_USAGE` | bad command line; destructive command without `--yes` and stdin not a terminal |
//! | 65 | `EX_DATAERR` | the API said 400, 409, 413, 416 (or another 4xx); a malformed input line |
//! | 66 | `EX_NOINPUT` | the API said 404 (unknown topic, partition, group, message); unreadable `--file` |
//! | 69 | `EX_UNAVAILABLE` | cannot connect or timed out; 502, 503, 504; `cluster health` says `degraded` |
//! | 70 | `EX_SOFTWARE` | the API said 500, or sent a response that is not the expected JSON |
//! | 74 | `EX_IOERR` | writing the output failed |
//! | 78 | `EX_CONFIG` | malformed profile file, unknown profile |

mod amqp;
mod client;
mod cluster;
mod config;
mod delay;
mod dlq;
mod error;
mod group;
mod msg;
mod offline;
mod output;
mod time;
mod topic;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

pub use amqp::AmqpCommand;
pub use cluster::ClusterCommand;
pub use delay::DelayCommand;
pub use dlq::DlqCommand;
pub use error::{CliError, exit};
pub use group::GroupCommand;
pub use msg::MsgCommand;
pub use output::Format;
pub use topic::TopicCommand;

use crate::client::Client;
use crate::error::Result;

/// Options of every admin command (global: accepted before or after the
/// subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Admin API address [default: from the profile, else http://127.0.0.1:9600].
    #[arg(long, global = true, env = "FJORD_SERVER", value_name = "URL", help_heading = "Global options")]
    pub server: Option<String>,
    /// Output format: table, json or yaml [default: from the profile, else table].
    #[arg(
        short,
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        hide_possible_values = true,
        help_heading = "Global options"
    )]
    pub output: Option<Format>,
    /// Profile of ~/.config/fjord/config.toml to use [default: its default_profile].
    #[arg(long, global = true, env = "FJORD_PROFILE", value_name = "NAME", help_heading = "Global options")]
    pub profile: Option<String>,
    /// Seconds each request may take.
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..),
        help_heading = "Global options"
    )]
    pub timeout: u64,
}

/// The admin commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The cluster: nodes, traffic, disk, health.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Topics: create, list, describe, alter, delete, produce, consume.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Consumer groups: list, describe, reset offsets, delete.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Find messages by id, key, tag, time or offset.
    #[command(subcommand)]
    Msg(MsgCommand),
    /// Dead-letter queues: list, browse, resend.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Delayed (scheduled) messages.
    #[command(subcommand)]
    Delay(DelayCommand),
    /// AMQP virtual hosts, queues, exchanges, bindings, users and permissions.
    #[command(subcommand)]
    Amqp(AmqpCommand),
    /// Print a shell completion script for `fjord` to stdout.
    ///
    /// For example: `fjord completions bash > /etc/bash_completion.d/fjord`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What a command runs with: the API client and the output format.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) format: Format,
}

impl Ctx {
    /// Prints `value` in the chosen format (`human` renders tables).
    pub(crate) fn emit(&self, value: &Value, human: impl FnOnce(&Value) -> String) -> Result<()> {
        output::emit(self.format, value, human)
    }
}

/// Runs an admin command and reports its outcome: errors are printed as
/// `fjord: <error>` on stderr and become the exit code (see the crate
/// documentation). `app` builds the whole `fjord` command, for
/// `fjord completions`.
pub fn run(global: &GlobalArgs, command: Command, app: impl FnOnce() -> clap::Command) -> ExitCode {
    match execute(global, command, app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints a command-line parsing error (or `--help`, `--version`) the way
/// clap does, and gives the exit code: 64 (`EX_USAGE`) for errors, 0 for
/// help and version.
pub fn clap_exit(e: &clap::Error) -> ExitCode {
    // Nothing useful can be done if even this cannot be printed.
    let _ = e.print();
    if e.use_stderr() { ExitCode::from(exit::USAGE) } else { ExitCode::SUCCESS }
}

fn execute(global: &GlobalArgs, command: Command, app: impl FnOnce() -> clap::Command) -> Result<()> {
    if let Command::Completions { shell } = command {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut app(), "fjord", &mut buf);
        return output::write_stdout(&String::from_utf8_lossy(&buf));
    }
    let path = config::config_path(|k| std::env::var(k).ok());
    let file = match &path {
        Some(p) => config::load(p)?,
        None => config::ConfigFile::default(),
    };
    let path = path.unwrap_or_default();
    let settings = config::resolve(global.server.as_deref(), global.output, global.profile.as_deref(), &file, &path)?;
    let ctx =
        Ctx { client: Client::new(settings.server, Duration::from_secs(global.timeout)), format: settings.format };
    match command {
        Command::Cluster(c) => cluster::run(&ctx, c),
        Command::Topic(c) => topic::run(&ctx, c),
        Command::Group(c) => group::run(&ctx, c),
        Command::Msg(c) => msg::run(&ctx, c),
        Command::Dlq(c) => dlq::run(&ctx, c),
        Command::Delay(c) => delay::run(&ctx, c),
        Command::Amqp(c) => amqp::run(&ctx, c),
        Command::Completions { .. } => Ok(()),
    }
}

/// Fails (exit 64) when a confirmation would be needed but cannot be
/// asked: no `--yes` and stdin is not a terminal. Call it before doing
/// anything, so scripts fail fast.
pub(crate) fn ensure_can_confirm(yes: bool, action: &str) -> Result<()> {
    if yes || std::io::stdin().is_terminal() {
        Ok(())
    } else {
        Err(CliError::Usage(format!("refusing to {action} without confirmation: stdin is not a terminal (pass --yes)")))
    }
}

/// Asks "<question> [y/N]" on the terminal unless `yes`; anything but
/// `y`/`yes` declines (exit 1).
pub(crate) fn confirm(yes: bool, action: &str, question: &str) -> Result<()> {
    ensure_can_confirm(yes, action)?;
    if yes {
        return Ok(());
    }
    let mut err = std::io::stderr().lock();
    // The prompt is best effort; the answer is what matters.
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    drop(err);
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| CliError::Input { path: "stdin".into(), source: e })?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::Declined),
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg} [{wide_bar}] {pos}/{len} ({eta} left)")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style).with_message(what.to_string())
}

/// A `key=value` command-line argument.
pub(crate) fn key_value(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}
