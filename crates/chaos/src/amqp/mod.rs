//! The AMQP workload: lapin (an unmodified AMQP 0-9-1 client) publishing
//! persistent messages with publisher confirms to one durable queue and
//! consuming them with manual acks. Every client is connected to one node
//! and moves to the next when its connection fails or stalls (a paused or
//! isolated node keeps the TCP connection open, so stalls are timed out
//! here: a confirm not back within [`CONFIRM_TIMEOUT`], a consumer that got
//! nothing for [`IDLE`]).
//!
//! A confirm promises that the message is stored — on a replicated queue,
//! committed on its in-sync replicas — so every confirmed value must be
//! delivered at least once: to a consumer while the faults run, or to the
//! final drain once everything is repaired ([`drain`]). Deliveries of a
//! value again are counted, not failed: AMQP is at least once, and a
//! failover hands out again what was in flight (see [`check`]).

pub(crate) mod check;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::time::timeout;

use crate::history::{Event, History};

/// The queue written and read.
pub(crate) const QUEUE: &str = "chaos-amqp";

/// The consumer number the final drain reads as.
pub(crate) const DRAIN: u32 = u32::MAX;

/// Longest wait for a publish's confirm before the connection counts as
/// stalled (the value is then "unsure").
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait to connect and open a channel.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A consumer that got nothing for this long moves to another node.
const IDLE: Duration = Duration::from_secs(10);
/// Unconfirmed publishes per publisher at most.
const WINDOW: usize = 64;
/// Deliveries a consumer holds unacked at most.
const PREFETCH: u16 = 32;

/// What the AMQP clients do.
#[derive(Debug, Clone)]
pub(crate) struct AmqpWorkload {
    /// `amqp://` URIs of every node.
    pub(crate) uris: Vec<String>,
    /// Publishers.
    pub(crate) publishers: u32,
    /// Messages per second per publisher.
    pub(crate) rate: u32,
    /// Consumers.
    pub(crate) consumers: u32,
}

async fn open(uri: &str) -> Result<(Connection, Channel)> {
    let conn = timeout(CONNECT_TIMEOUT, Connection::connect(uri, ConnectionProperties::default()))
        .await
        .map_err(|_| anyhow!("connecting to {uri}: timed out"))?
        .with_context(|| format!("connecting to {uri}"))?;
    let ch = timeout(CONNECT_TIMEOUT, conn.create_channel())
        .await
        .map_err(|_| anyhow!("opening a channel: timed out"))??;
    Ok((conn, ch))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Declares the durable queue through the first node that answers.
pub(crate) fn declare(w: &AmqpWorkload, within: Duration) -> Result<()> {
    runtime()?.block_on(async {
        let deadline = Instant::now() + within;
        let mut i = 0;
        loop {
            let outcome = async {
                let (conn, ch) = open(&w.uris[i % w.uris.len()]).await?;
                let opts = QueueDeclareOptions { durable: true, ..Default::default() };
                timeout(CONNECT_TIMEOUT, ch.queue_declare(QUEUE.into(), opts, FieldTable::default()))
                    .await
                    .map_err(|_| anyhow!("queue.declare timed out"))??;
                let _ = timeout(CONNECT_TIMEOUT, conn.close(200, "declared".into())).await;
                anyhow::Ok(())
            }
            .await;
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e.context("declaring the AMQP queue")),
                Err(_) => {
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
}

/// The running AMQP clients (one thread holding their runtime).
#[derive(Debug)]
pub(crate) struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<()>>,
}

/// Starts the publishers and consumers.
pub(crate) fn start(w: &AmqpWorkload, history: &Arc<History>) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let (w, h, s) = (w.clone(), history.clone(), stop.clone());
    let thread = std::thread::spawn(move || -> Result<()> {
        runtime()?.block_on(async move {
            let mut tasks = Vec::new();
            for k in 0..w.publishers {
                let (w, h, s) = (w.clone(), h.clone(), s.clone());
                tasks.push(tokio::spawn(async move { publisher(&w, k, &h, &s).await }));
            }
            for c in 0..w.consumers {
                let (w, h, s) = (w.clone(), h.clone(), s.clone());
                tasks.push(tokio::spawn(async move { consumer(&w, c, &h, &s).await }));
            }
            for t in tasks {
                t.await?;
            }
            Ok(())
        })
    });
    Running { stop, thread }
}

impl Running {
    /// Stops the clients (a publisher waits for its outstanding confirms,
    /// bounded); returns what went wrong.
    pub(crate) fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(Ok(())) => Vec::new(),
            Ok(Err(e)) => vec![format!("AMQP clients: {e:#}")],
            Err(_) => vec!["AMQP clients: the thread panicked".into()],
        }
    }
}

/// One publisher: values `amqp<k>:<seq>`, moving to the next node after a
/// failure.
async fn publisher(w: &AmqpWorkload, k: u32, history: &History, stop: &AtomicBool) {
    let gap = Duration::from_secs_f64(1.0 / f64::from(w.rate.max(1)));
    let mut seq = 0u64;
    let mut node = k as usize;
    while !stop.load(Ordering::Relaxed) {
        let uri = &w.uris[node % w.uris.len()];
        if let Err(e) = publish_on(uri, k, &mut seq, gap, history, stop).await {
            history.push(Event::Note { what: format!("amqp publisher {k} on {uri}: {e:#}") });
            node += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

type Confirmed = (String, Result<lapin::Confirmation>);

async fn publish_on(
    uri: &str,
    k: u32,
    seq: &mut u64,
    gap: Duration,
    history: &History,
    stop: &AtomicBool,
) -> Result<()> {
    let (conn, ch) = open(uri).await?;
    timeout(CONNECT_TIMEOUT, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .map_err(|_| anyhow!("confirm.select timed out"))??;
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut inflight = FuturesUnordered::new();
    let mut next = tokio::time::Instant::now();
    let outcome = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let mut failed = None;
        while let Some(Some(c)) = futures_util::FutureExt::now_or_never(inflight.next()) {
            failed = failed.or(settle(c, history));
        }
        if inflight.len() >= WINDOW
            && let Some(c) = inflight.next().await
        {
            failed = failed.or(settle(c, history));
        }
        if let Some(e) = failed {
            break Err(e);
        }
        next += gap;
        tokio::time::sleep_until(next).await;
        let value = format!("amqp{k}:{seq}");
        *seq += 1;
        history.push(Event::AmqpPublish { publisher: k, value: value.clone() });
        let sent =
            ch.basic_publish("".into(), QUEUE.into(), BasicPublishOptions::default(), value.as_bytes(), props.clone());
        match timeout(CONFIRM_TIMEOUT, sent).await {
            Ok(Ok(confirm)) => inflight.push(async move {
                let c = match timeout(CONFIRM_TIMEOUT, confirm).await {
                    Ok(r) => r.map_err(anyhow::Error::from),
                    Err(_) => Err(anyhow!("no confirm within {CONFIRM_TIMEOUT:?}")),
                };
                (value, c)
            }),
            Ok(Err(e)) => {
                history.push(Event::AmqpUnsure { value, error: e.to_string() });
                break Err(e.into());
            }
            Err(_) => {
                history.push(Event::AmqpUnsure { value, error: "publish timed out".into() });
                break Err(anyhow!("basic.publish timed out"));
            }
        }
    };
    // What is still out gets its confirm, an error or its timeout.
    while let Some(c) = inflight.next().await {
        settle(c, history);
    }
    let _ = timeout(Duration::from_secs(2), conn.close(200, "done".into())).await;
    outcome
}

/// Records a confirm's outcome; an error means the connection is gone.
fn settle((value, c): Confirmed, history: &History) -> Option<anyhow::Error> {
    match c {
        Ok(c) if c.is_ack() => history.push(Event::AmqpConfirm { value }),
        Ok(_) => history.push(Event::AmqpNack { value }),
        Err(e) => {
            history.push(Event::AmqpUnsure { value, error: e.to_string() });
            return Some(e);
        }
    }
    None
}

/// One consumer, moving to the next node after a failure or a stall.
async fn consumer(w: &AmqpWorkload, c: u32, history: &History, stop: &AtomicBool) {
    let mut node = c as usize + 1;
    while !stop.load(Ordering::Relaxed) {
        let uri = &w.uris[node % w.uris.len()];
        if let Err(e) = consume_on(uri, c, history, stop).await {
            history.push(Event::Note { what: format!("amqp consumer {c} on {uri}: {e:#}") });
            node += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn consume_on(uri: &str, c: u32, history: &History, stop: &AtomicBool) -> Result<()> {
    let (conn, ch) = open(uri).await?;
    timeout(CONNECT_TIMEOUT, ch.basic_qos(PREFETCH, BasicQosOptions::default()))
        .await
        .map_err(|_| anyhow!("basic.qos timed out"))??;
    let tag = format!("chaos-{c}");
    let mut deliveries = timeout(
        CONNECT_TIMEOUT,
        ch.basic_consume(QUEUE.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default()),
    )
    .await
    .map_err(|_| anyhow!("basic.consume timed out"))??;
    let mut last = Instant::now();
    let outcome = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        match timeout(Duration::from_millis(200), deliveries.next()).await {
            Err(_) if last.elapsed() > IDLE => break Err(anyhow!("no delivery for {IDLE:?}")),
            Err(_) => {}
            Ok(None) => break Err(anyhow!("the broker cancelled the consumer")),
            Ok(Some(Err(e))) => break Err(e.into()),
            Ok(Some(Ok(d))) => {
                last = Instant::now();
                let value = String::from_utf8_lossy(&d.data).into_owned();
                history.push(Event::AmqpRead { consumer: c, value, redelivered: d.redelivered });
                match timeout(CONNECT_TIMEOUT, d.acker.ack(BasicAckOptions::default())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break Err(e.into()),
                    Err(_) => break Err(anyhow!("basic.ack timed out")),
                }
            }
        }
    };
    let _ = timeout(Duration::from_secs(2), conn.close(200, "done".into())).await;
    outcome
}

/// Once everything is repaired and the clients stopped: reads (and acks)
/// what is left in the queue, through any node, until it has been empty
/// for a few seconds.
pub(crate) fn drain(w: &AmqpWorkload, history: &History, within: Duration) -> Result<()> {
    const QUIET: Duration = Duration::from_secs(5);
    runtime()?.block_on(async {
        let deadline = Instant::now() + within;
        let mut node = 0;
        let mut error = None;
        while Instant::now() < deadline {
            let uri = &w.uris[node % w.uris.len()];
            let outcome = async {
                let (conn, ch) = open(uri).await?;
                let mut empty_since: Option<Instant> = None;
                while empty_since.is_none_or(|t| t.elapsed() < QUIET) {
                    if Instant::now() >= deadline {
                        bail!("the queue was not empty for {QUIET:?} within {within:?}");
                    }
                    let got = timeout(CONNECT_TIMEOUT, ch.basic_get(QUEUE.into(), BasicGetOptions { no_ack: false }))
                        .await
                        .map_err(|_| anyhow!("basic.get timed out"))??;
                    match got {
                        Some(m) => {
                            empty_since = None;
                            let value = String::from_utf8_lossy(&m.delivery.data).into_owned();
                            let redelivered = m.delivery.redelivered;
                            history.push(Event::AmqpRead { consumer: DRAIN, value, redelivered });
                            timeout(CONNECT_TIMEOUT, m.delivery.acker.ack(BasicAckOptions::default()))
                                .await
                                .map_err(|_| anyhow!("basic.ack timed out"))??;
                        }
                        None => {
                            empty_since.get_or_insert_with(Instant::now);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                let _ = timeout(Duration::from_secs(2), conn.close(200, "drained".into())).await;
                anyhow::Ok(())
            }
            .await;
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) => {
                    error = Some(e.context(format!("draining through {uri}")));
                    node += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(error.unwrap_or_else(|| anyhow!("no time left to drain the queue")))
    })
}
