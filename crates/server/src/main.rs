//! The `fjord` command: `fjord serve` runs a broker; the other subcommands
//! (`fjord topic list`, `fjord group seek`, ...) administer a running one
//! through its HTTP admin API (see the `fjord-cli` crate for those, and
//! for the exit codes).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// mimalloc: glibc's malloc spent about a quarter of the broker's CPU under
/// AMQP load (arena locks, `malloc_consolidate` after each batch's
/// buffers); per-thread free lists make a request's small allocations
/// cheap (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fjord: one broker for Kafka, RocketMQ and AMQP clients.
#[derive(Debug, Parser)]
#[command(name = "fjord", version, about)]
struct Cli {
    #[command(flatten)]
    global: fjord_cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker node. With no options: a single node, data in ./data.
    Serve(ServeArgs),
    /// Development helpers.
    #[command(subcommand)]
    Dev(DevCommand),
    #[command(flatten)]
    Admin(fjord_cli::Command),
}

/// `fjord dev ...`
#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Run a local cluster, each node its own `fjord serve` process, until
    /// Ctrl-C; `-o json` prints the nodes as a JSON array once all are ready.
    Cluster(fjord::dev_cluster::DevClusterArgs),
}

/// Options of `fjord serve`; every configuration setting can also be set in
/// the file or as `FJORD_<SECTION>__<KEY>` environment variables.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see fjord.example.toml).
    #[arg(long, short, env = "FJORD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides node.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Write the bound listener addresses as JSON to this file once ready.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return fjord_cli::clap_exit(&e),
    };
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Dev(DevCommand::Cluster(args)) => {
            dev_cluster(args, cli.global.output == Some(fjord_cli::Format::Json))
        }
        Command::Admin(command) => fjord_cli::run(&cli.global, command, Cli::command),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match fjord_config::Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fjord: configuration error: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    if let Some(dir) = args.data_dir {
        config.node.data_dir = dir;
    }
    if let Err(e) = fjord::telemetry::init(&config.log) {
        eprintln!("fjord: cannot set up logging: {e}");
        return ExitCode::from(78);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fjord: cannot start the runtime: {e}");
            return ExitCode::from(71); // EX_OSERR
        }
    };
    let opts = fjord::serve::Options { ready_file: args.ready_file, ..Default::default() };
    match runtime.block_on(fjord::serve::run(config, opts, fjord::serve::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fjord stopped with an error");
            eprintln!("fjord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dev_cluster(args: fjord::dev_cluster::DevClusterArgs, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fjord: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    match runtime.block_on(fjord::dev_cluster::run(args, json, fjord::serve::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord dev cluster: {e:#}");
            ExitCode::FAILURE
        }
    }
}
