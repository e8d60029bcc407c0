//! rdkafka mode: what users of Kafka clients see.
//!
//! Each producer is a librdkafka `ThreadedProducer` fed by its own thread
//! (`linger.ms`, a large `batch.size`, the run's `acks` and compression);
//! messages carry their send time (µs) in the first 8 payload bytes, which
//! the delivery callback and the consumers read back. Each consumer is a
//! `BaseConsumer` in one consumer group, polled by its own thread.
//! Callbacks and consumers count into thread-local state that is merged
//! into the shared [`Stats`] every 100 ms, so no lock is shared per message.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::Run;
use super::stats::{Stats, new_histogram, record};
use crate::units::now_us;

/// Thread-local counts are merged into the shared stats this often (µs).
/// Per-message paths read the clock once (the wall clock they need for
/// latencies anyway): in this VM a clock read costs ~40 ns, and librdkafka
/// already reads it several times per message.
const FLUSH_EVERY_US: u64 = 100_000;

fn stamp_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
}

/// Counts of one thread, merged into [`Stats`] periodically.
#[derive(Debug)]
struct Local {
    msgs: u64,
    bytes: u64,
    errors: u64,
    latency: Histogram<u64>,
    /// Wall-clock µs of the last merge.
    flushed: u64,
}

impl Local {
    fn new() -> Self {
        Local { msgs: 0, bytes: 0, errors: 0, latency: new_histogram(), flushed: now_us() }
    }
}

/// Producer context: delivery reports are counted here.
struct Delivery {
    stats: Arc<Stats>,
    local: Mutex<Local>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").finish_non_exhaustive()
    }
}

impl Delivery {
    fn flush(&self, l: &mut Local, now: u64) {
        self.stats.published(l.msgs, l.bytes);
        self.stats.pub_errors.fetch_add(l.errors, Ordering::Relaxed);
        self.stats.merge_pub_latency(&mut l.latency);
        (l.msgs, l.bytes, l.errors) = (0, 0, 0);
        l.flushed = now;
    }

    fn flush_now(&self) {
        let mut l = self.local.lock().unwrap_or_else(|e| e.into_inner());
        self.flush(&mut l, now_us());
    }
}

impl ClientContext for Delivery {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }
}

/// librdkafka's log lines (e.g. with `--consumer-config debug=fetch`) go to stderr.
fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    eprintln!("rdkafka {level:?} {fac}: {message}");
}

/// Consumer context: only forwards librdkafka's log lines.
#[derive(Debug)]
struct Logs;

impl ClientContext for Logs {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }
}

impl ConsumerContext for Logs {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let now = now_us();
        let mut l = self.local.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(m) => {
                let payload = m.payload().unwrap_or_default();
                l.msgs += 1;
                l.bytes += payload.len() as u64;
                if let Some(sent) = stamp_of(payload) {
                    record(&mut l.latency, now.saturating_sub(sent), 1);
                }
            }
            Err((e, _)) => {
                if l.errors == 0 && self.stats.pub_errors.load(Ordering::Relaxed) == 0 {
                    eprintln!("delivery failed: {e}");
                }
                l.errors += 1;
            }
        }
        if now.saturating_sub(l.flushed) >= FLUSH_EVERY_US {
            self.flush(&mut l, now);
        }
    }
}

fn client_config(run: &Run, extra: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &run.args.bootstrap).set("client.id", "fjord-bench");
    for (k, v) in extra {
        c.set(k, v);
    }
    if extra.iter().any(|(k, _)| k == "debug") {
        c.set_log_level(RDKafkaLogLevel::Debug);
    }
    c
}

/// One producer: sends until `stop`, then waits for every delivery report.
pub(crate) fn producer(run: Arc<Run>, index: usize, stats: Arc<Stats>, stop: Arc<AtomicBool>) -> Result<()> {
    let a = &run.args;
    let mut settings = vec![
        ("acks".to_string(), a.acks.code().to_string()),
        ("linger.ms".to_string(), a.linger_ms.to_string()),
        ("batch.size".to_string(), a.batch_size.to_string()),
        ("batch.num.messages".to_string(), "1000000".to_string()),
        ("queue.buffering.max.messages".to_string(), "2000000".to_string()),
        ("queue.buffering.max.kbytes".to_string(), "1048576".to_string()),
        ("compression.type".to_string(), a.compression.rdkafka().to_string()),
        ("enable.idempotence".to_string(), "false".to_string()),
    ];
    settings.extend(a.producer_config.iter().cloned());
    let ctx = Delivery { stats, local: Mutex::new(Local::new()) };
    let producer: ThreadedProducer<Delivery> =
        client_config(&run, &settings).create_with_context(ctx).context("creating an rdkafka producer")?;
    let mut payload = super::batch::payload(a.message_size, 0x5851_f42d ^ index as u64);
    let per_sec = run.rate_per_producer();
    let started = now_us();
    let mut sent: u64 = 0;
    let topics = &run.topics;
    let mut key = String::new();
    while !stop.load(Ordering::Relaxed) {
        let mut now = now_us();
        if let Some(rate) = per_sec {
            let due = started + (sent as f64 * 1e6 / rate) as u64;
            // Sleep only when half a millisecond or more ahead: sleeping per
            // message would cost a syscall each (and oversleep anyway).
            if due > now + 500 {
                std::thread::sleep(Duration::from_micros(due - now));
                now = now_us();
            } else if now > due + 1_000_000 {
                // Fell more than a second behind: do not burst to catch up.
                sent = ((now - started) as f64 * rate / 1e6) as u64;
            }
        }
        let topic = &topics[(sent % topics.len() as u64) as usize];
        loop {
            payload[..8].copy_from_slice(&now.to_be_bytes());
            let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(&payload[..]);
            if a.keys {
                // A key per message (the key index's worst case: every
                // record adds an entry).
                key.clear();
                let _ = write!(key, "k{index}-{sent}");
                record = record.key(key.as_bytes());
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                    now = now_us();
                }
                Err((e, _)) => return Err(e).context("rdkafka send"),
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(30)).context("flushing the rdkafka producer")?;
    producer.context().flush_now();
    Ok(())
}

/// One group consumer: polls until `stop`. `assigned` tells the runner how
/// many partitions it holds, so producers start only once every partition
/// is owned.
pub(crate) fn consumer(
    run: Arc<Run>,
    group: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    assigned: Arc<AtomicUsize>,
) -> Result<()> {
    let a = &run.args;
    let mut settings = vec![
        ("group.id".to_string(), group),
        ("auto.offset.reset".to_string(), "earliest".to_string()),
        ("enable.auto.commit".to_string(), "true".to_string()),
        ("session.timeout.ms".to_string(), "10000".to_string()),
        ("fetch.wait.max.ms".to_string(), a.fetch_max_wait.as_millis().to_string()),
        ("fetch.max.bytes".to_string(), a.fetch_max_bytes.min(i32::MAX as u64).to_string()),
        ("max.partition.fetch.bytes".to_string(), a.partition_max_bytes.min(i32::MAX as u64).to_string()),
        // librdkafka stops fetching while more than queued.min.messages
        // (100k) are prefetched, and then waits fetch.queue.backoff.ms
        // (default 1 s) before looking again: one 20 MB fetch response is
        // more than 100k messages of 100 B, so the defaults cap a consumer
        // at ~250k msg/s whatever the broker does.
        ("queued.min.messages".to_string(), "1000000".to_string()),
        ("fetch.queue.backoff.ms".to_string(), "10".to_string()),
    ];
    settings.extend(a.consumer_config.iter().cloned());
    let consumer: BaseConsumer<Logs> =
        client_config(&run, &settings).create_with_context(Logs).context("creating an rdkafka consumer")?;
    let topics: Vec<&str> = run.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("subscribing")?;
    let mut l = Local::new();
    let mut reported = false;
    while !stop.load(Ordering::Relaxed) {
        let polled = consumer.poll(Duration::from_millis(100));
        let now = now_us();
        match polled {
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default();
                l.msgs += 1;
                l.bytes += payload.len() as u64;
                if let Some(sent) = stamp_of(payload) {
                    record(&mut l.latency, now.saturating_sub(sent), 1);
                }
            }
            Some(Err(e)) if !reported => {
                reported = true;
                eprintln!("consumer error: {e}");
            }
            Some(Err(_)) | None => {}
        }
        if now.saturating_sub(l.flushed) >= FLUSH_EVERY_US {
            stats.consumed(l.msgs, l.bytes);
            stats.merge_e2e_latency(&mut l.latency);
            (l.msgs, l.bytes) = (0, 0);
            l.flushed = now;
            assigned.store(consumer.assignment().map_or(0, |a| a.count()), Ordering::Relaxed);
        }
    }
    stats.consumed(l.msgs, l.bytes);
    stats.merge_e2e_latency(&mut l.latency);
    Ok(())
}
