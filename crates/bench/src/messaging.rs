//! `fjord-bench timer` and `fjord-bench pop`: the messaging layer's hot
//! paths, in process (broker core + fjord-messaging over a data directory,
//! no network), with the broker's default durability (group commit).
//!
//! - `timer`: schedules N messages spread over the next `span` seconds
//!   (starting `lead` seconds ahead), reports the scheduling rate, the
//!   timer's memory (wheel bytes and process RSS growth), then consumes the
//!   target topic and reports how late each message became visible
//!   (p50/p99/max) and how many were early (must be 0).
//! - `pop`: pre-loads N messages of `size` bytes into `partitions`
//!   partitions, then `consumers` tasks pop batches and ack every message;
//!   reports receive+ack throughput and pop/ack latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use fjord_broker::{Broker, BrokerConfig, TopicConfig, TopicPartition};
use fjord_filter::Filter;
use fjord_log::{Clock, SystemClock};
use fjord_messaging::{
    ConsumeModel, Delivery, Message, Messaging, MessagingConfig, Partitioning, PopRequest, PullRequest,
};
use hdrhistogram::Histogram;

use crate::kafka::say;

/// `fjord-bench timer` options.
#[derive(Debug, Args)]
pub(crate) struct TimerArgs {
    /// Messages to schedule.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Spread the delivery times over this many seconds.
    #[arg(long, default_value_t = 60)]
    span: u64,
    /// The first delivery time is this many seconds after the start.
    #[arg(long, default_value_t = 10)]
    lead: u64,
    /// Messages per send call.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Data directory (a temporary one by default).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// `fjord-bench pop` options.
#[derive(Debug, Args)]
pub(crate) struct PopArgs {
    /// Messages to pre-load and consume.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Consumer tasks.
    #[arg(long, default_value_t = 8)]
    consumers: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Messages per pop.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Ack each popped batch with one `ack_many` call (RocketMQ's batch
    /// ack) instead of one `ack` per message.
    #[arg(long)]
    ack_batch: bool,
    /// Data directory (a temporary one by default).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

async fn open(dir: &std::path::Path) -> anyhow::Result<Arc<Messaging>> {
    let broker = Broker::open(BrokerConfig::new(dir), Arc::new(SystemClock)).await?;
    let m = Messaging::open(broker, MessagingConfig::default()).await?;
    m.start();
    Ok(m)
}

fn data_dir(dir: &Option<std::path::PathBuf>) -> anyhow::Result<(Option<tempfile::TempDir>, std::path::PathBuf)> {
    match dir {
        Some(d) => Ok((None, d.clone())),
        None => {
            let t = tempfile::tempdir_in(".").context("create a temporary data directory")?;
            let p = t.path().to_path_buf();
            Ok((Some(t), p))
        }
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn pct(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    )
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

pub(crate) fn run_timer(a: TimerArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (_tmp, dir) = data_dir(&a.dir)?;
        let m = open(&dir).await?;
        m.broker().create_topic("timer-bench", 1, TopicConfig::default()).await?;
        let body = Bytes::from(vec![b'x'; a.size]);
        let start_ms = SystemClock.now_ms();
        let first = start_ms + (a.lead * 1000) as i64;
        let span_ms = (a.span * 1000) as f64;
        let rss0 = rss_bytes();
        let t = Instant::now();
        let mut i = 0u64;
        while i < a.messages {
            let n = (a.batch as u64).min(a.messages - i);
            let msgs = (i..i + n)
                .map(|k| Message {
                    delivery: Delivery::At(first + (k as f64 * span_ms / a.messages as f64) as i64),
                    ..Message::new("timer-bench", body.clone())
                })
                .collect();
            m.send_batch(msgs, Partitioning::Explicit(0)).await?;
            i += n;
        }
        let took = t.elapsed();
        let stats = m.timer_stats();
        let rss1 = rss_bytes();
        say(&format!(
            "scheduled {} messages in {:.2} s: {:.0} msg/s; pending {}; wheel {:.1} MB; process RSS +{:.1} MB",
            a.messages,
            took.as_secs_f64(),
            a.messages as f64 / took.as_secs_f64(),
            stats.pending,
            stats.wheel_bytes as f64 / 1e6,
            rss1.saturating_sub(rss0) as f64 / 1e6
        ));
        if SystemClock.now_ms() > first {
            say("warning: scheduling outlasted the lead time; the first deliveries are late by construction");
        }
        let mut late = histogram()?;
        let (mut seen, mut early, mut offset) = (0u64, 0u64, 0u64);
        let tp = TopicPartition::new("timer-bench", 0);
        while seen < a.messages {
            let p = m
                .pull(PullRequest {
                    group: "bench".into(),
                    model: ConsumeModel::Clustering,
                    partition: tp.clone(),
                    offset: Some(offset),
                    max_messages: 10_000,
                    filter: Filter::All,
                    wait: Duration::from_millis(100),
                })
                .await?;
            let now = SystemClock.now_ms();
            for msg in &p.messages {
                let due = msg.deliver_at.unwrap_or(now);
                if now < due {
                    early += 1;
                }
                let _ = late.record(((now - due).max(0) as u64 * 1000).max(1));
            }
            seen += p.messages.len() as u64;
            offset = p.next_offset;
        }
        say(&format!("delivery lateness (visible to a pulling consumer - due time): {}; early: {early}", pct(&late)));
        m.shutdown().await?;
        m.broker().shutdown().await?;
        anyhow::Ok(())
    })
}

pub(crate) fn run_pop(a: PopArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (_tmp, dir) = data_dir(&a.dir)?;
        let m = open(&dir).await?;
        m.broker().create_topic("pop-bench", a.partitions, TopicConfig::default()).await?;
        let body = Bytes::from(vec![b'x'; a.size]);
        let per = a.messages / u64::from(a.partitions);
        for p in 0..a.partitions {
            let mut left = per;
            while left > 0 {
                let n = left.min(1000);
                let msgs = (0..n).map(|_| Message::new("pop-bench", body.clone())).collect();
                m.send_batch(msgs, Partitioning::Explicit(p)).await?;
                left -= n;
            }
        }
        let total = per * u64::from(a.partitions);
        let done = Arc::new(AtomicU64::new(0));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..a.consumers {
            let (m, done, batch, ack_batch) = (m.clone(), done.clone(), a.batch, a.ack_batch);
            tasks.push(tokio::spawn(async move {
                let (mut pop_h, mut ack_h) = (histogram()?, histogram()?);
                let req = PopRequest {
                    partition: None,
                    invisible: Duration::from_secs(60),
                    ..PopRequest::new("bench", "pop-bench", batch)
                };
                let _ = c;
                while done.load(Ordering::Relaxed) < total {
                    let t0 = Instant::now();
                    let got = m.pop(req.clone()).await?;
                    let _ = pop_h.record(t0.elapsed().as_micros().max(1) as u64);
                    if ack_batch && !got.is_empty() {
                        let t1 = Instant::now();
                        let receipts: Vec<_> = got.iter().map(|p| p.receipt.clone()).collect();
                        for r in m.ack_many("bench", &ConsumeModel::Clustering, &receipts).await? {
                            r?;
                        }
                        let _ = ack_h.record(t1.elapsed().as_micros().max(1) as u64);
                    } else {
                        for p in &got {
                            let t1 = Instant::now();
                            m.ack("bench", &ConsumeModel::Clustering, &p.receipt).await?;
                            let _ = ack_h.record(t1.elapsed().as_micros().max(1) as u64);
                        }
                    }
                    done.fetch_add(got.len() as u64, Ordering::Relaxed);
                }
                anyhow::Ok((pop_h, ack_h))
            }));
        }
        let (mut pop_h, mut ack_h) = (histogram()?, histogram()?);
        for task in tasks {
            let (p, k) = task.await??;
            pop_h.add(p)?;
            ack_h.add(k)?;
        }
        let took = t.elapsed();
        say(&format!(
            "{} consumers received and acked {} messages of {} B in {:.2} s: {:.0} msg/s",
            a.consumers,
            done.load(Ordering::Relaxed),
            a.size,
            took.as_secs_f64(),
            done.load(Ordering::Relaxed) as f64 / took.as_secs_f64()
        ));
        say(&format!("pop latency ({} per pop): {}", a.batch, pct(&pop_h)));
        let per = if a.ack_batch { "per batch ack" } else { "per ack" };
        say(&format!("ack latency ({per}): {}", pct(&ack_h)));
        m.shutdown().await?;
        m.broker().shutdown().await?;
        anyhow::Ok(())
    })
}
