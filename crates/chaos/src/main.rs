//! # fjord-chaos: the fault-injection checker
//!
//! Runs a cluster of real `fjord serve` processes, each in its own network
//! namespace (veth pairs on one bridge, created and removed by the tool;
//! it must run as root), drives unmodified client workloads (librdkafka:
//! idempotent acks=all producers, a consumer group that commits; lapin:
//! AMQP publishers with confirms and consumers acking each delivery, on a
//! replicated durable queue; with `--rocketmq-python`, rocketmq-client-cpp
//! producers (send_sync) and push consumers through every node's name
//! server) through a seeded schedule of faults, repairs everything, and
//! checks the history against the guarantees of `docs/design/replication.md`:
//!
//! | check | must be |
//! |---|---|
//! | acknowledged writes lost (or found at another offset) | 0 |
//! | duplicates with idempotent producers | 0 |
//! | reordering within a partition | 0 |
//! | non-monotonic offsets | 0 |
//! | reads of records that are not in the committed log | 0 |
//! | divergent replicas (each node's files, after a clean stop) | 0 |
//! | committed group offsets moving back | 0 |
//! | producers or the group stalled once every fault is repaired | 0 |
//! | AMQP messages confirmed and never delivered (nor drained at the end) | 0 |
//! | AMQP publishers or consumers stalled once every fault is repaired | 0 |
//! | RocketMQ sends answered SEND_OK missing from the committed log | 0 |
//! | RocketMQ sends answered SEND_OK and never delivered | 0 |
//! | RocketMQ producers or consumers stalled once every fault is repaired | 0 |
//!
//! AMQP and RocketMQ deliveries of a message again are counted, not failed
//! (at least once: a failover hands out again what was in flight, a push
//! consumer's progress is committed every few seconds).
//!
//! Faults ([`schedule::Kind`]): kill -9 of a node, a partition leader or
//! the controller leader; a power loss (kill -9, then the node's disk image
//! stops taking writes at one instant: see [`volume`]); a full disk (the
//! same image filled by a ballast file); SIGSTOP/SIGCONT beyond the lease;
//! isolating a node (its clients still reach it); majority/minority
//! splits; a bridge topology; one-way packet loss; rolling restarts;
//! wall-clock jumps (see [`clock`]); a partition reassigned to other
//! nodes (or another preferred leader) under load. The same seed gives
//! the same schedule; targets named by role ("the leader of partition 2")
//! are resolved when the fault starts and written to the history.
//!
//! Each seed leaves `<out>/seed-N/`: the nodes' data and logs,
//! `history.jsonl`, and on a violation `minimal-history.jsonl` (the
//! faults and every event about the values involved). The exit status is
//! non-zero if any seed failed a check or did not recover.
//!
//! ```text
//! sudo fjord-chaos --fjord target/debug/fjord --seeds 1,2,3 --duration 60
//! ```

mod amqp;
mod check;
mod clock;
mod cluster;
mod disk;
mod history;
mod net;
mod power;
mod rdkafka_log;
mod rocketmq;
mod run;
mod schedule;
mod volume;
mod workload;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::schedule::Kind;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "fjord-chaos", version, about = "Fault-injection checker for a Fjord cluster")]
struct Cli {
    /// The `fjord` binary to run.
    #[arg(long, default_value = "target/debug/fjord")]
    fjord: PathBuf,
    /// Seeds to run, one after the other (`1,2,3` or `1-20`).
    #[arg(long, default_value = "1")]
    seeds: String,
    /// Seconds of faults per seed.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seconds the workload runs after every fault is repaired, in which
    /// producers and the group must make progress.
    #[arg(long, default_value_t = 15)]
    recovery: u64,
    /// Nodes (3 to 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Fault kinds (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<Kind>,
    /// Partitions of the workload topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Idempotent producers.
    #[arg(long, default_value_t = 2)]
    producers: u32,
    /// Messages per second per producer.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Consumers in the group.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    /// Where each seed's data, logs and history go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// Subnet 10.213.N.0/24 for the namespaces (runs side by side need
    /// different ones).
    #[arg(long, default_value_t = 77)]
    subnet: u8,
    /// Copy every node's workload topic files before each repair (for
    /// post-mortems).
    #[arg(long)]
    snapshots: bool,
    /// librdkafka `debug` contexts for the group consumers (e.g. `cgrp`),
    /// logged to `seed-N/consumer-C.log`.
    #[arg(long)]
    client_debug: Option<String>,
    /// librdkafka `debug` contexts for the producers (e.g. `eos,msg`),
    /// logged to `seed-N/producer-P.I.log`.
    #[arg(long)]
    producer_debug: Option<String>,
    /// AMQP publishers with confirms (lapin), on one durable queue; 0
    /// turns the AMQP workload off.
    #[arg(long, default_value_t = 1)]
    amqp_publishers: u32,
    /// Messages per second per AMQP publisher.
    #[arg(long, default_value_t = 100)]
    amqp_rate: u32,
    /// AMQP consumers (manual acks).
    #[arg(long, default_value_t = 2)]
    amqp_consumers: u32,
    /// A Python with rocketmq-client-python installed (scripts/test-chaos
    /// passes target/rocketmq-remoting-venv's): runs the RocketMQ workload
    /// (`workloads/rmq_workload.py`); without it there is none.
    #[arg(long)]
    rocketmq_python: Option<PathBuf>,
    /// RocketMQ producers (send_sync); 0 turns the workload off.
    #[arg(long, default_value_t = 1)]
    rocketmq_producers: u32,
    /// Messages per second per RocketMQ producer.
    #[arg(long, default_value_t = 50)]
    rocketmq_rate: u32,
    /// RocketMQ push consumers (one group, clustering).
    #[arg(long, default_value_t = 1)]
    rocketmq_consumers: u32,
    /// A Python with rocketmq-python-client (5.x, gRPC) installed
    /// (scripts/test-chaos passes target/rocketmq-grpc-venv's): runs the
    /// pop workload (`workloads/pop_workload.py`: SimpleConsumers acking
    /// each message); without it there is none.
    #[arg(long)]
    pop_python: Option<PathBuf>,
    /// Pop workload producers; 0 turns the workload off.
    #[arg(long, default_value_t = 1)]
    pop_producers: u32,
    /// Messages per second per pop workload producer.
    #[arg(long, default_value_t = 30)]
    pop_rate: u32,
    /// SimpleConsumers of the pop workload (one group).
    #[arg(long, default_value_t = 2)]
    pop_consumers: u32,
    /// Seconds a received message stays invisible (the consumers ack at
    /// once; one whose ack failed comes back after this).
    #[arg(long, default_value_t = 10)]
    pop_invisible: u32,
}

fn seeds(spec: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<u64>()?..=b.parse::<u64>()?),
            None => out.push(part.parse()?),
        }
    }
    if out.is_empty() {
        bail!("no seeds in {spec:?}");
    }
    Ok(out)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !(3..=5).contains(&cli.nodes) {
        bail!("--nodes must be 3, 4 or 5");
    }
    let fjord =
        std::fs::canonicalize(&cli.fjord).with_context(|| format!("the fjord binary {}", cli.fjord.display()))?;
    let opts = run::Options {
        fjord,
        out: cli.out.clone(),
        nodes: cli.nodes,
        duration: Duration::from_secs(cli.duration),
        recovery: Duration::from_secs(cli.recovery),
        kinds: if cli.faults.is_empty() { Kind::ALL.to_vec() } else { cli.faults.clone() },
        partitions: cli.partitions,
        producers: cli.producers,
        rate: cli.rate,
        consumers: cli.consumers,
        subnet: cli.subnet,
        snapshots: cli.snapshots,
        client_debug: cli.client_debug.clone(),
        producer_debug: cli.producer_debug.clone(),
        amqp_publishers: cli.amqp_publishers,
        amqp_rate: cli.amqp_rate,
        amqp_consumers: cli.amqp_consumers,
        rocketmq_python: cli.rocketmq_python.clone(),
        rocketmq_producers: cli.rocketmq_producers,
        rocketmq_rate: cli.rocketmq_rate,
        rocketmq_consumers: cli.rocketmq_consumers,
        pop_python: cli.pop_python.clone(),
        pop_producers: cli.pop_producers,
        pop_rate: cli.pop_rate,
        pop_consumers: cli.pop_consumers,
        pop_invisible: cli.pop_invisible,
    };
    let mut outcomes = Vec::new();
    for seed in seeds(&cli.seeds)? {
        eprintln!("seed {seed}: {} nodes, {} s of faults ...", opts.nodes, cli.duration);
        let outcome = run::run_seed(&opts, seed).with_context(|| format!("seed {seed}"))?;
        std::io::stdout().write_all(report(&outcome).as_bytes())?;
        outcomes.push(outcome);
    }
    let table = summary(&outcomes);
    std::io::stdout().write_all(table.as_bytes())?;
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(cli.out.join("summary.md"), &table)?;
    let failed: Vec<u64> = outcomes.iter().filter(|o| !o.passed()).map(|o| o.seed).collect();
    if !failed.is_empty() {
        bail!("seeds {failed:?} failed; rerun one with --seeds N (histories under {})", cli.out.display());
    }
    Ok(())
}

fn report(o: &run::Outcome) -> String {
    let t = &o.totals;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "seed {}: {} faults; sent {}, acked {}, failed {}, read {}, committed {}; longest pause in acks {} ms; \
         re-sent by the client under a new epoch (librdkafka #4953, not failed) {}",
        o.seed, t.faults, t.sent, t.acked, t.failed, t.read, t.committed, t.longest_ack_gap_ms, t.client_resent
    );
    let a = &t.amqp;
    if a.published > 0 {
        let _ = writeln!(
            s,
            "  amqp: published {}, confirmed {}, unconfirmed {}, delivered {}, delivered again (at least once, not failed) {}",
            a.published, a.confirmed, a.unconfirmed, a.delivered, a.redelivered
        );
    }
    let r = &t.rocketmq;
    if r.sent > 0 {
        let _ = writeln!(
            s,
            "  rocketmq: sent {}, SEND_OK {}, unsure {}, delivered {}, delivered again (at least once, not failed) {}",
            r.sent, r.acked, r.unsure, r.delivered, r.redelivered
        );
    }
    let p = &t.pop;
    if p.sent > 0 {
        let _ = writeln!(
            s,
            "  pop: sent {}, sent OK {}, unsure {}, delivered {}, delivered again before an ack (not failed) {}, acked {}, acks failed {}",
            p.sent, p.acked, p.unsure, p.delivered, p.redelivered, p.consumer_acks, p.ack_failures
        );
    }
    for f in &o.findings {
        let _ = writeln!(s, "  {:<45} {:>6}  {}", f.check, f.count, f.example.as_deref().unwrap_or(""));
    }
    for e in &o.errors {
        let _ = writeln!(s, "  error: {e}");
    }
    let verdict = if o.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(s, "  {verdict} (history: {})", o.dir.join("history.jsonl").display());
    s
}

/// The table `docs/reliability.md` records: one row per seed.
fn summary(outcomes: &[run::Outcome]) -> String {
    let mut s = String::from(
        "| seed | faults | acked | failed | longest ack pause (ms) | client re-sends | lost | moved | dups | reordered | non-monotonic | uncommitted reads | divergent | commits back | stalled | AMQP confirmed | AMQP delivered again | AMQP lost | AMQP stalled | RocketMQ SEND_OK | RocketMQ delivered again | RocketMQ lost | RocketMQ undelivered | RocketMQ stalled | pop sent OK | pop delivered again | pop lost | pop undelivered | pop acked delivered again | pop stalled | errors | result |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let t = &o.totals;
        let counts: Vec<String> = o.findings.iter().map(|f| f.count.to_string()).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.seed,
            t.faults,
            t.acked,
            t.failed,
            t.longest_ack_gap_ms,
            t.client_resent,
            workload_columns(&counts, t),
            o.errors.len(),
            if o.passed() { "pass" } else { "FAIL" }
        );
    }
    s
}

/// The check counts, with each workload's totals before its checks
/// (AMQP's two, RocketMQ's three, then the pop workload's four: the last
/// nine findings).
fn workload_columns(counts: &[String], t: &check::Totals) -> String {
    let split = counts.len().saturating_sub(9);
    let mut cols = counts[..split].to_vec();
    let rest = &counts[split..];
    let (amqp, rest) = rest.split_at(2.min(rest.len()));
    let (rmq, pop) = rest.split_at(3.min(rest.len()));
    cols.push(t.amqp.confirmed.to_string());
    cols.push(t.amqp.redelivered.to_string());
    cols.extend_from_slice(amqp);
    cols.push(t.rocketmq.acked.to_string());
    cols.push(t.rocketmq.redelivered.to_string());
    cols.extend_from_slice(rmq);
    cols.push(t.pop.acked.to_string());
    cols.push(t.pop.redelivered.to_string());
    cols.extend_from_slice(pop);
    cols.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_and_ranges_parse() {
        assert_eq!(seeds("1,2,3").unwrap(), vec![1, 2, 3]);
        assert_eq!(seeds("4-6,9").unwrap(), vec![4, 5, 6, 9]);
        assert!(seeds("").is_err());
        assert!(seeds("x").is_err());
    }
}
