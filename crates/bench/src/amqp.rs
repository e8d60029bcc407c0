//! `fjord-bench amqp`: an OpenMessaging-Benchmark-shaped load test of an
//! AMQP 0-9-1 broker (Fjord or RabbitMQ) with lapin, the Rust RabbitMQ
//! client: persistent messages published with publisher confirms over
//! several channels (one connection each, at most `--window` unconfirmed
//! per channel), consumed with manual acks and a prefetch by as many
//! consumers, for a warm-up and a measured period. One row per second,
//! then the measured period's rates and latency percentiles (and one JSON
//! line with `--json`). The queues are declared fresh and deleted after.
//!
//! Publish latency is publish to confirm; end-to-end latency is delivery
//! time minus the send time (µs since the epoch) the publisher wrote into
//! the first 8 bytes of the body. Rates count messages and body bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::kafka::say;
use crate::kafka::stats::{Counters, Latency, Stats, new_histogram, record};
use crate::units::{parse_bytes, parse_count, parse_duration};

/// `fjord-bench amqp` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AmqpArgs {
    /// Broker URI.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub(crate) uri: String,
    /// Queues (declared durable, fresh for the run).
    #[arg(long, default_value_t = 1)]
    pub(crate) queues: usize,
    /// Publishing channels, spread over the queues (one connection each).
    #[arg(long, default_value_t = 4)]
    pub(crate) publishers: usize,
    /// Consumers, spread over the queues (one connection each).
    #[arg(long, default_value_t = 4)]
    pub(crate) consumers: usize,
    /// Message body size (at least 8: the send time goes first).
    #[arg(long, default_value = "100", value_parser = parse_bytes)]
    pub(crate) size: u64,
    /// Target publish rate over all publishers, msg/s (0 = as fast as confirms allow).
    #[arg(long, default_value = "0", value_parser = parse_count)]
    pub(crate) rate: u64,
    /// Unconfirmed messages per publisher at most.
    #[arg(long, default_value_t = 2000)]
    pub(crate) window: usize,
    /// Consumer prefetch (basic.qos).
    #[arg(long, default_value_t = 2000)]
    pub(crate) prefetch: u16,
    /// Ack with multiple=true every this many deliveries.
    #[arg(long, default_value_t = 100)]
    pub(crate) ack_every: u64,
    /// Warm-up, not measured.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// Measured period.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Print the aggregates as one JSON line too.
    #[arg(long)]
    pub(crate) json: bool,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

pub(crate) fn run(args: AmqpArgs) -> Result<()> {
    if args.size < 8 {
        bail!("--size must be at least 8 bytes");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: AmqpArgs) -> Result<()> {
    let admin = Connection::connect(&args.uri, ConnectionProperties::default()).await.context("connecting")?;
    let ch = admin.create_channel().await?;
    let tag = format!("{:x}", now_us());
    let queues: Vec<String> = (0..args.queues).map(|i| format!("fjord-bench-{tag}-{i}")).collect();
    for q in &queues {
        let opts = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(q.as_str().into(), opts, FieldTable::default()).await?;
    }
    let stats = Arc::new(Stats::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..args.consumers {
        let (args, stats, stop, q) = (args.clone(), stats.clone(), stop.clone(), queues[i % queues.len()].clone());
        tasks.push(tokio::spawn(async move { consume(args, q, stats, stop).await }));
    }
    for i in 0..args.publishers {
        let (args, stats, stop, q) = (args.clone(), stats.clone(), stop.clone(), queues[i % queues.len()].clone());
        tasks.push(tokio::spawn(async move { publish(args, q, stats, stop).await }));
    }
    say(&format!(
        "amqp: {} queue(s), {} publisher(s), {} consumer(s), {} B, rate {}, window {}, prefetch {}",
        args.queues,
        args.publishers,
        args.consumers,
        args.size,
        if args.rate == 0 { "max".to_string() } else { args.rate.to_string() },
        args.window,
        args.prefetch
    ));
    say("  time   pub msg/s   cons msg/s   pub p50 ms  pub p99 ms  e2e p50 ms  e2e p99 ms");
    let start = Instant::now();
    let mut last = Counters::default();
    let mut measured_from: Option<Counters> = None;
    let mut measured_rows = 0u32;
    let (mut pub_all, mut e2e_all) = (new_histogram(), new_histogram());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while start.elapsed() < args.warmup + args.duration {
        tick.tick().await;
        if stats.failed_workers.load(Ordering::Relaxed) > 0 {
            bail!("a publisher or consumer failed");
        }
        let c = stats.counters();
        let d = c.since(&last);
        last = c;
        let (p, e) = stats.take_histograms();
        let (pl, el) = (Latency::of(&p), Latency::of(&e));
        // A row covers the second before it: warm-up while that began before the warm-up's end.
        let warm = start.elapsed() < args.warmup + Duration::from_millis(500);
        say(&format!(
            "{:>5.0}s {:>11} {:>12} {:>12.2} {:>11.2} {:>11.2} {:>11.2}{}",
            start.elapsed().as_secs_f64(),
            d.pub_msgs,
            d.cons_msgs,
            pl.p50,
            pl.p99,
            el.p50,
            el.p99,
            if warm { "  (warm-up)" } else { "" }
        ));
        if !warm {
            measured_rows += 1;
            measured_from.get_or_insert(c.since(&d));
            let _ = pub_all.add(&p);
            let _ = e2e_all.add(&e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let total = last.since(&measured_from.unwrap_or_default());
    let secs = f64::from(measured_rows.max(1));
    let (pl, el) = (Latency::of(&pub_all), Latency::of(&e2e_all));
    say(&format!(
        "measured {secs:.0}s: publish {:.0} msg/s ({:.1} MB/s, {} errors), consume {:.0} msg/s; publish-to-confirm ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}; end-to-end ms p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        total.pub_msgs as f64 / secs,
        total.pub_bytes as f64 / secs / 1e6,
        total.pub_errors,
        total.cons_msgs as f64 / secs,
        pl.p50,
        pl.p99,
        pl.p999,
        pl.max,
        el.p50,
        el.p99,
        el.p999,
        el.max
    ));
    if args.json {
        let j = serde_json::json!({
            "publish_msgs_per_sec": total.pub_msgs as f64 / secs,
            "consume_msgs_per_sec": total.cons_msgs as f64 / secs,
            "publish_errors": total.pub_errors,
            "publish_latency_ms": {"p50": pl.p50, "p99": pl.p99, "p999": pl.p999, "max": pl.max},
            "e2e_latency_ms": {"p50": el.p50, "p99": el.p99, "p999": el.p999, "max": el.max},
            "size": args.size, "publishers": args.publishers, "consumers": args.consumers,
            "queues": args.queues, "rate": args.rate,
        });
        say(&j.to_string());
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    for q in &queues {
        let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    }
    let _ = admin.close(200, "bench done".into()).await;
    Ok(())
}

async fn publish(args: AmqpArgs, queue: String, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    if let Err(e) = publish_loop(&args, &queue, &stats, &stop).await {
        eprintln!("publisher: {e:#}");
        stats.failed_workers.fetch_add(1, Ordering::Relaxed);
    }
}

async fn publish_loop(args: &AmqpArgs, queue: &str, stats: &Stats, stop: &AtomicBool) -> Result<()> {
    let conn = Connection::connect(&args.uri, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut body = vec![0u8; args.size as usize];
    let mut inflight = FuturesUnordered::new();
    let mut local = new_histogram();
    // Pacing: this publisher's share of --rate.
    let gap = (args.rate > 0).then(|| Duration::from_secs_f64(args.publishers as f64 / args.rate as f64));
    let mut next = Instant::now();
    let mut merged = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        while inflight.len() >= args.window {
            settle(inflight.next().await, stats, &mut local, args.size);
        }
        if let Some(g) = gap {
            next += g;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let sent = now_us();
        body[..8].copy_from_slice(&sent.to_be_bytes());
        let confirm =
            ch.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), &body, props.clone()).await?;
        inflight.push(async move { (confirm.await, sent) });
        while let Some(Some(r)) = futures_util::FutureExt::now_or_never(inflight.next()) {
            settle(Some(r), stats, &mut local, args.size);
        }
        if merged.elapsed() > Duration::from_millis(100) {
            stats.merge_pub_latency(&mut local);
            merged = Instant::now();
        }
    }
    while let Some(r) = inflight.next().await {
        settle(Some(r), stats, &mut local, args.size);
    }
    stats.merge_pub_latency(&mut local);
    let _ = conn.close(200, "bench done".into()).await;
    Ok(())
}

type Confirmed = (lapin::Result<lapin::Confirmation>, u64);

fn settle(r: Option<Confirmed>, stats: &Stats, local: &mut hdrhistogram::Histogram<u64>, size: u64) {
    let Some((r, sent)) = r else { return };
    match r {
        Ok(c) if c.is_ack() => {
            stats.published(1, size);
            record(local, now_us().saturating_sub(sent), 1);
        }
        _ => {
            stats.pub_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn consume(args: AmqpArgs, queue: String, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    if let Err(e) = consume_loop(&args, &queue, &stats, &stop).await {
        eprintln!("consumer: {e:#}");
        stats.failed_workers.fetch_add(1, Ordering::Relaxed);
    }
}

async fn consume_loop(args: &AmqpArgs, queue: &str, stats: &Stats, stop: &AtomicBool) -> Result<()> {
    let conn = Connection::connect(&args.uri, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(args.prefetch, BasicQosOptions::default()).await?;
    let mut consumer =
        ch.basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
    let mut local = new_histogram();
    let (mut n, mut merged) = (0u64, Instant::now());
    while !stop.load(Ordering::Relaxed) {
        let Ok(next) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await else { continue };
        let Some(delivery) = next else { break };
        let d = delivery?;
        let sent = d.data.get(..8).map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
        record(&mut local, now_us().saturating_sub(sent), 1);
        stats.consumed(1, d.data.len() as u64);
        n += 1;
        if n.is_multiple_of(args.ack_every.max(1)) {
            d.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
        if merged.elapsed() > Duration::from_millis(100) {
            stats.merge_e2e_latency(&mut local);
            merged = Instant::now();
        }
    }
    stats.merge_e2e_latency(&mut local);
    let _ = conn.close(200, "bench done".into()).await;
    Ok(())
}
