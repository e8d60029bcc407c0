//! `fjord-bench kafka`: an OpenMessaging-Benchmark-shaped load test of a
//! broker's Kafka listener.
//!
//! A run creates fresh topics (CreateTopics), starts the consumers (and, in
//! rdkafka mode, waits until the group owns every partition), starts the
//! producers, runs a warm-up, then a measured period, printing one row per
//! report interval; then the measured period's aggregates (and one JSON
//! line with `--json`), and deletes the topics.
//!
//! With `--backlog N` the producers first write N messages with no
//! consumer running and stop; the consumers then start from the beginning
//! and the run ends when they have read everything (or the duration is
//! over), which measures the consume rate on its own.
//!
//! Rates count messages and payload bytes (MB = 10^6 bytes of message
//! values; record framing is not counted). Publish latency is send to
//! acknowledgement; end-to-end latency is consume time minus the send time
//! (µs) the producer wrote into the first 8 bytes of the message value.

mod batch;
mod rdk;
mod report;
pub(crate) use report::say;
pub(crate) mod stats;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;

use crate::units::{parse_bytes, parse_count, parse_duration, parse_kv};
use report::Reporter;
use stats::Stats;

/// Which client drives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// librdkafka producers and group consumers (what users see).
    Rdkafka,
    /// Pre-encoded batches in pipelined Produce requests, header-counting
    /// Fetch consumers (what the broker can take).
    Batch,
}

/// Producer acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Acks {
    /// acks=all (-1): answered once the topic's durability policy holds.
    #[value(name = "all", alias = "-1")]
    All,
    /// acks=1.
    #[value(name = "1")]
    One,
    /// acks=0: no response.
    #[value(name = "0")]
    Zero,
}

impl Acks {
    pub(crate) fn code(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::One => 1,
            Acks::Zero => 0,
        }
    }
}

/// Record batch compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Codec {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 frames.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    pub(crate) fn log(self) -> fjord_log::batch::Compression {
        use fjord_log::batch::Compression as C;
        match self {
            Codec::None => C::None,
            Codec::Gzip => C::Gzip,
            Codec::Snappy => C::Snappy,
            Codec::Lz4 => C::Lz4,
            Codec::Zstd => C::Zstd,
        }
    }

    pub(crate) fn rdkafka(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// `fjord-bench kafka` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KafkaArgs {
    /// Broker address (host:port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub(crate) bootstrap: String,
    /// Client: `rdkafka` (librdkafka, what users see) or `batch` (pre-encoded batches, what the broker can take).
    #[arg(long, value_enum, default_value_t = Mode::Rdkafka)]
    pub(crate) mode: Mode,
    /// Number of topics (created fresh for the run).
    #[arg(long, default_value_t = 1)]
    pub(crate) topics: u32,
    /// Partitions per topic.
    #[arg(long, default_value_t = 8)]
    pub(crate) partitions: u32,
    /// Replicas per partition (a cluster's nodes; 1 on a single node).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..))]
    pub(crate) replication_factor: i16,
    /// Topic names are `<prefix>-<unix time>-<n>`.
    #[arg(long, default_value = "fjord-bench")]
    pub(crate) topic_prefix: String,
    /// Topic config for CreateTopics, e.g. `fjord.durability=interval` (repeatable).
    #[arg(long = "topic-config", value_parser = parse_kv)]
    pub(crate) topic_config: Vec<(String, String)>,
    /// Keep the topics after the run (they are deleted by default).
    #[arg(long)]
    pub(crate) keep_topics: bool,
    /// Message value size in bytes (at least 8: the send time is stored in the first 8).
    #[arg(long, default_value_t = 100)]
    pub(crate) message_size: usize,
    /// rdkafka mode: give every message its own key (`k<producer>-<n>`; the
    /// partitioner then spreads by key).
    #[arg(long)]
    pub(crate) keys: bool,
    /// Producers (batch mode: connections; rdkafka mode: producer instances, one thread each).
    #[arg(long, default_value_t = 1)]
    pub(crate) producers: usize,
    /// Consumers (batch mode: connections; rdkafka mode: members of one group).
    #[arg(long, default_value_t = 1)]
    pub(crate) consumers: usize,
    /// Total produce rate in messages/s over all producers; 0 = as fast as possible. `100k`, `1M` work.
    #[arg(long, default_value = "0", value_parser = parse_count)]
    pub(crate) rate: u64,
    /// Warm-up before measuring.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// Measured period.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Interval between report rows.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) report_interval: Duration,
    /// Producer acks: all, 1 or 0.
    #[arg(long, value_enum, default_value_t = Acks::All, allow_hyphen_values = true)]
    pub(crate) acks: Acks,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub(crate) compression: Codec,
    /// Produce this many messages with no consumer first, then consume them all (measures the consume rate).
    #[arg(long, default_value = "0", value_parser = parse_count)]
    pub(crate) backlog: u64,
    /// Batch mode: records per batch (one batch per partition per request).
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_records: u32,
    /// Batch mode: Produce requests in flight per connection.
    #[arg(long, default_value_t = 8)]
    pub(crate) pipeline: usize,
    /// Fetch max bytes per response (batch mode and rdkafka `fetch.max.bytes`).
    #[arg(long, default_value = "64M", value_parser = parse_bytes)]
    pub(crate) fetch_max_bytes: u64,
    /// Fetch max bytes per partition (batch mode and rdkafka `max.partition.fetch.bytes`).
    #[arg(long, default_value = "4M", value_parser = parse_bytes)]
    pub(crate) partition_max_bytes: u64,
    /// Fetch max wait (batch mode and rdkafka `fetch.wait.max.ms`).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub(crate) fetch_max_wait: Duration,
    /// rdkafka mode: producer `linger.ms`.
    #[arg(long, default_value_t = 1)]
    pub(crate) linger_ms: u32,
    /// rdkafka mode: producer `batch.size` in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) batch_size: u64,
    /// rdkafka mode: extra producer setting `key=value` (repeatable; overrides the defaults).
    #[arg(long = "producer-config", value_parser = parse_kv)]
    pub(crate) producer_config: Vec<(String, String)>,
    /// rdkafka mode: extra consumer setting `key=value` (repeatable).
    #[arg(long = "consumer-config", value_parser = parse_kv)]
    pub(crate) consumer_config: Vec<(String, String)>,
    /// Pid of the broker, to report its CPU use (cores) per row and for the run.
    #[arg(long)]
    pub(crate) broker_pid: Option<u32>,
    /// Free-text label copied into the JSON line.
    #[arg(long, default_value = "")]
    pub(crate) label: String,
    /// Print the aggregates as one JSON line too.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print every report row as a JSON line too (`"row": true`; plots over time).
    #[arg(long)]
    pub(crate) json_rows: bool,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
}

/// One partition of a benchmark topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicPartition {
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A run's settings and topics, shared by its workers.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) args: KafkaArgs,
    pub(crate) topics: Vec<String>,
}

impl Run {
    /// Every topic-partition of the run, topic by topic.
    pub(crate) fn partitions(&self) -> Vec<TopicPartition> {
        self.topics
            .iter()
            .flat_map(|t| (0..self.args.partitions as i32).map(|p| TopicPartition { topic: t.clone(), partition: p }))
            .collect()
    }

    /// Messages/s each producer aims for, or `None` for as fast as possible.
    pub(crate) fn rate_per_producer(&self) -> Option<f64> {
        (self.args.rate > 0).then(|| self.args.rate as f64 / self.args.producers.max(1) as f64)
    }
}

/// The partitions worker `i` of `workers` owns: round-robin; when there are
/// more workers than partitions, worker `i` takes partition `i mod n`.
pub(crate) fn share(tps: &[TopicPartition], workers: usize, i: usize) -> Vec<TopicPartition> {
    if tps.is_empty() || workers == 0 {
        return Vec::new();
    }
    if workers > tps.len() {
        return vec![tps[i % tps.len()].clone()];
    }
    tps.iter().enumerate().filter(|(j, _)| j % workers == i).map(|(_, tp)| tp.clone()).collect()
}

enum Worker {
    Task(tokio::task::JoinHandle<Result<()>>),
    Thread(std::thread::JoinHandle<Result<()>>),
}

/// Counts a worker's failure in `stats` (so the run stops) and passes the result on.
fn note_failure(stats: &Stats, r: Result<()>) -> Result<()> {
    if r.is_err() {
        stats.failed_workers.fetch_add(1, Ordering::Relaxed);
    }
    r
}

async fn join_all(workers: Vec<Worker>) -> Result<()> {
    let mut first_error = None;
    for w in workers {
        let r = match w {
            Worker::Task(h) => h.await.map_err(|e| anyhow!("worker task failed: {e}")).and_then(|r| r),
            Worker::Thread(h) => tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|e| anyhow!("joining a worker thread: {e}"))
                .and_then(|r| r.map_err(|_| anyhow!("worker thread panicked")))
                .and_then(|r| r),
        };
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn spawn_producers(run: &Arc<Run>, stats: &Arc<Stats>, stop: &Arc<AtomicBool>) -> Result<Vec<Worker>> {
    let n = run.args.producers;
    let tps = run.partitions();
    (0..n)
        .map(|i| {
            let (run, stats, stop) = (run.clone(), stats.clone(), stop.clone());
            let counted = stats.clone();
            Ok(match run.args.mode {
                Mode::Batch => {
                    let tps = share(&tps, n, i);
                    Worker::Task(tokio::spawn(async move {
                        note_failure(&counted, batch::producer(run, i, tps, stats, stop).await)
                    }))
                }
                Mode::Rdkafka => Worker::Thread(
                    std::thread::Builder::new()
                        .name(format!("producer-{i}"))
                        .spawn(move || note_failure(&counted, rdk::producer(run, i, stats, stop)))?,
                ),
            })
        })
        .collect()
}

/// Starts the consumers; in rdkafka mode, waits until the group owns every
/// partition (and every member owns one, when there are enough).
async fn spawn_consumers(run: &Arc<Run>, stats: &Arc<Stats>, stop: &Arc<AtomicBool>) -> Result<Vec<Worker>> {
    let tps = run.partitions();
    let n = run.args.consumers.min(tps.len());
    let mut workers = Vec::new();
    let mut assigned = Vec::new();
    let group = format!("{}-group", run.topics.first().map_or("fjord-bench", String::as_str));
    for i in 0..n {
        let (run, stats, stop) = (run.clone(), stats.clone(), stop.clone());
        let counted = stats.clone();
        workers.push(match run.args.mode {
            Mode::Batch => {
                let tps = share(&tps, n, i);
                Worker::Task(tokio::spawn(async move {
                    note_failure(&counted, batch::consumer(run, tps, stats, stop).await)
                }))
            }
            Mode::Rdkafka => {
                let owned = Arc::new(AtomicUsize::new(0));
                assigned.push(owned.clone());
                let group = group.clone();
                Worker::Thread(
                    std::thread::Builder::new()
                        .name(format!("consumer-{i}"))
                        .spawn(move || note_failure(&counted, rdk::consumer(run, group, stats, stop, owned)))?,
                )
            }
        });
    }
    if !assigned.is_empty() {
        let started = Instant::now();
        report::say(&format!("waiting for the consumer group to own all {} partitions...", tps.len()));
        loop {
            let counts: Vec<usize> = assigned.iter().map(|a| a.load(Ordering::Relaxed)).collect();
            if counts.iter().sum::<usize>() >= tps.len() && counts.iter().all(|c| *c > 0) {
                report::say(&format!(
                    "group ready after {:.1} s: partitions per member {counts:?}",
                    started.elapsed().as_secs_f64()
                ));
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                stop.store(true, Ordering::Relaxed);
                join_all(workers).await.ok();
                bail!("the consumer group did not own every partition within 60 s (members own {counts:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(workers)
}

fn validate(a: &KafkaArgs) -> Result<()> {
    if a.message_size < 8 {
        bail!("--message-size must be at least 8 (the send time is stored in the first 8 bytes)");
    }
    if a.topics == 0 || a.partitions == 0 {
        bail!("--topics and --partitions must be at least 1");
    }
    if a.producers == 0 && a.backlog == 0 {
        bail!("nothing to consume: give --producers or --backlog");
    }
    if a.backlog > 0 && a.producers == 0 {
        bail!("--backlog needs producers to write it");
    }
    if a.backlog > 0 && a.consumers == 0 {
        bail!("--backlog measures consumers: give --consumers");
    }
    if a.mode == Mode::Batch && a.batch_records == 0 {
        bail!("--batch-records must be at least 1");
    }
    if a.report_interval.is_zero() {
        bail!("--report-interval must be more than 0");
    }
    Ok(())
}

/// Runs `fjord-bench kafka`.
pub(crate) fn run(args: KafkaArgs) -> Result<()> {
    validate(&args)?;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all().build().context("starting the tokio runtime")?.block_on(run_async(args))
}

async fn run_async(args: KafkaArgs) -> Result<()> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let topics: Vec<String> = (0..args.topics).map(|i| format!("{}-{stamp}-{i}", args.topic_prefix)).collect();
    wire::create_topics(
        &args.bootstrap,
        &topics,
        (args.partitions, args.replication_factor),
        &args.topic_config,
        false,
    )
    .await
    .context("creating the benchmark topics")?;
    let run = Arc::new(Run { args, topics });
    let result = drive(&run).await;
    if !run.args.keep_topics
        && let Err(e) = wire::delete_topics(&run.args.bootstrap, &run.topics).await
    {
        eprintln!("deleting the benchmark topics: {e:#}");
    }
    result
}

async fn drive(run: &Arc<Run>) -> Result<()> {
    let a = &run.args;
    let stats = Arc::new(Stats::new());
    let mut reporter = Reporter::new(run.clone(), stats.clone());
    reporter.header();
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));

    let consumers;
    let mut producers;
    let mut producers_done = false;
    if a.backlog == 0 {
        consumers = spawn_consumers(run, &stats, &stop_consumers).await?;
        producers = spawn_producers(run, &stats, &stop_producers)?;
    } else {
        producers = spawn_producers(run, &stats, &stop_producers)?;
        let backlog = a.backlog;
        reporter.phase("backlog", None, &|c| c.pub_msgs >= backlog).await;
        stop_producers.store(true, Ordering::Relaxed);
        join_all(std::mem::take(&mut producers)).await.context("producer failed")?;
        producers_done = true;
        let written = stats.counters().pub_msgs;
        report::say(&format!("backlog written: {written} messages; starting consumers"));
        consumers = spawn_consumers(run, &stats, &stop_consumers).await?;
    }
    // Consumers that have read everything end the run once nothing is produced any more.
    let drained = |c: &stats::Counters| producers_done && c.cons_msgs >= c.pub_msgs;
    let mut interrupted = false;
    if !a.warmup.is_zero() {
        interrupted = reporter.phase("warm-up", Some(a.warmup), &drained).await.interrupted;
    }
    let summary = if interrupted { None } else { Some(reporter.phase("measure", Some(a.duration), &drained).await) };
    stop_producers.store(true, Ordering::Relaxed);
    let produced = join_all(producers).await;
    stop_consumers.store(true, Ordering::Relaxed);
    let consumed = join_all(consumers).await;
    if let Some(summary) = summary {
        reporter.aggregates(&summary);
    }
    produced.context("producer failed")?;
    consumed.context("consumer failed")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tps(n: i32) -> Vec<TopicPartition> {
        (0..n).map(|p| TopicPartition { topic: "t".into(), partition: p }).collect()
    }

    #[test]
    fn share_covers_each_partition_once() {
        let all = tps(8);
        for workers in 1..=8 {
            let mut seen: Vec<i32> =
                (0..workers).flat_map(|i| share(&all, workers, i)).map(|tp| tp.partition).collect();
            seen.sort();
            assert_eq!(seen, (0..8).collect::<Vec<_>>(), "{workers} workers");
        }
        assert_eq!(share(&all, 10, 9), vec![all[1].clone()]);
    }

    #[test]
    fn cli_parses() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct T {
            #[command(flatten)]
            a: KafkaArgs,
        }
        let t = T::try_parse_from([
            "x",
            "--mode",
            "batch",
            "--acks",
            "1",
            "--rate",
            "100k",
            "--warmup",
            "0s",
            "--duration",
            "5s",
            "--topic-config",
            "fjord.durability=interval",
        ])
        .expect("parses");
        assert_eq!(t.a.mode, Mode::Batch);
        assert_eq!(t.a.acks.code(), 1);
        assert_eq!(t.a.rate, 100_000);
        assert_eq!(t.a.duration, Duration::from_secs(5));
        assert_eq!(t.a.topic_config, vec![("fjord.durability".to_string(), "interval".to_string())]);
        assert!(validate(&t.a).is_ok());
        let all = T::try_parse_from(["x", "--acks", "-1"]).expect("parses");
        assert_eq!(all.a.acks, Acks::All);
    }
}
