//! # fjord-bench: load generators for Fjord
//!
//! `fjord-bench kafka` drives a broker's Kafka listener the way the
//! OpenMessaging Benchmark (OMB) drives a Kafka cluster: it creates the
//! topics, runs producers and consumers for a warm-up and a measured
//! period, prints one row of rates and latencies per report interval, then
//! the whole-run aggregates (optionally as one JSON line).
//!
//! Two client modes:
//! - `rdkafka`: librdkafka producers and group consumers, i.e. what users
//!   of Kafka clients see;
//! - `batch`: pre-encoded RecordBatch v2 in hand-built Produce requests,
//!   pipelined over plain TCP connections, and Fetch consumers that count
//!   records from the batch headers, i.e. what the broker itself can take.
//!
//! `fjord-bench amqp` does the same for AMQP 0-9-1 brokers with lapin
//! (see [`amqp`]).
//!
//! `fjord-bench timer` and `fjord-bench pop` measure the messaging layer in
//! process (see [`messaging`]).
//!
//! See `docs/benchmarks.md` for the scenarios and results.

mod amqp;
mod cpu;
mod kafka;
mod messaging;
mod units;

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "fjord-bench", version, about = "Load generators for Fjord")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Kafka protocol load (OpenMessaging-Benchmark shaped): produce and
    /// consume against a broker's Kafka listener.
    Kafka(Box<kafka::KafkaArgs>),
    /// AMQP 0-9-1 load with lapin: persistent messages with publisher
    /// confirms, consumed with acks (Fjord or RabbitMQ).
    Amqp(Box<amqp::AmqpArgs>),
    /// Delayed-message timer: schedule N messages over the next minute,
    /// report scheduling rate, memory and delivery lateness (in process).
    Timer(messaging::TimerArgs),
    /// Pop consumption: receive + ack throughput with several consumers
    /// (in process).
    Pop(messaging::PopArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Kafka(args) => kafka::run(*args),
        Command::Amqp(args) => amqp::run(*args),
        Command::Timer(args) => messaging::run_timer(args),
        Command::Pop(args) => messaging::run_pop(args),
    }
}
