//! The client workload: librdkafka (an unmodified Kafka client) producers
//! and a consumer group, each on its own thread, recording every operation
//! and its outcome into the [`History`].
//!
//! - Producers are idempotent with acks=all. Each writes
//!   `"<name>:<seq>"` values with increasing `seq`, round-robin over the
//!   partitions, at a fixed rate. A producer that hits a fatal error (which
//!   librdkafka raises when idempotence can no longer be guaranteed) is
//!   replaced by a new incarnation with a new name, so the order check
//!   never mixes two producer ids.
//! - Consumers share one group, commit their position every second (on
//!   the partitions they are assigned, taken between polls), and record
//!   each read and each acknowledged commit. A commit is synchronous on a
//!   thread of its own, at most one in flight per consumer: its outcome is
//!   known (librdkafka's commit callback never reaches a `BaseConsumer`'s
//!   poll), one consumer's commits never overtake each other, and a commit
//!   waiting for a coordinator never stops the consumer polling.
//! - A monitor asks the group's committed offsets twice a second.
//! - The final reader, after the faults are repaired, reads every partition
//!   from the start to its high watermark with a fresh client.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::check::Log;
use crate::history::{Event, History};

/// What the workload does.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Kafka bootstrap servers.
    pub(crate) bootstrap: String,
    /// The topic written and read.
    pub(crate) topic: String,
    /// Its partitions.
    pub(crate) partitions: i32,
    /// Its replication factor.
    pub(crate) replication: i32,
    /// Producers.
    pub(crate) producers: u32,
    /// Messages per second per producer.
    pub(crate) rate: u32,
    /// Consumers in the group.
    pub(crate) consumers: u32,
    /// librdkafka `debug` contexts for the consumers (e.g. `cgrp`), logged
    /// to `consumer-N.log` in `log_dir`.
    pub(crate) client_debug: Option<String>,
    /// librdkafka debug contexts for the producers.
    pub(crate) producer_debug: Option<String>,
    /// Where client logs go.
    pub(crate) log_dir: std::path::PathBuf,
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "5000")
        .set("metadata.max.age.ms", "5000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("reconnect.backoff.max.ms", "500")
        .set_log_level(RDKafkaLogLevel::Error);
    c
}

/// Creates the topic with `min.insync.replicas` 2 (when there are at
/// least 3 replicas), retrying while the cluster forms.
pub(crate) fn create_topic(w: &Workload, timeout: Duration) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(&w.bootstrap).create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let isr = if w.replication >= 3 { "2" } else { "1" };
    let deadline = Instant::now() + timeout;
    loop {
        let topic = NewTopic::new(&w.topic, w.partitions, TopicReplication::Fixed(w.replication))
            .set("min.insync.replicas", isr);
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let outcome = rt.block_on(admin.create_topics([&topic], &opts));
        let err = match outcome {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => return Ok(()),
                Some(Err((_, code))) => format!("{code:?}"),
                None => "no result".into(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("creating topic {}: {err}", w.topic);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// librdkafka's debug log of one client, in a file of its own when asked
/// for (lines stamped with the history's clock).
struct DebugLog(Option<std::sync::Mutex<std::fs::File>>);

impl DebugLog {
    /// Turns on the `debug` contexts in `config` and creates `path`; nothing
    /// without contexts.
    fn open(config: &mut ClientConfig, debug: Option<&str>, path: std::path::PathBuf) -> Result<DebugLog> {
        let Some(debug) = debug else { return Ok(DebugLog(None)) };
        config.set("debug", debug).set_log_level(RDKafkaLogLevel::Debug);
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(DebugLog(Some(std::sync::Mutex::new(file))))
    }

    /// Only writes to `path` when given (the contexts are set elsewhere).
    fn file(path: Option<std::path::PathBuf>) -> Result<DebugLog> {
        let Some(path) = path else { return Ok(DebugLog(None)) };
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(DebugLog(Some(std::sync::Mutex::new(file))))
    }

    fn write(&self, at: u64, fac: &str, message: &str) {
        if let Some(f) = &self.0 {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "{at} {fac} {message}");
        }
    }
}

/// Producer context: delivery reports become history.
struct Deliveries {
    history: Arc<History>,
    log: DebugLog,
    /// Attempts whose outcome was "possibly persisted", from the `msg`
    /// debug lines (see `rdkafka_log`).
    attempts: std::sync::Mutex<crate::rdkafka_log::Tracker>,
}

impl ClientContext for Deliveries {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.write(self.history.now(), fac, message);
        let unsure = self.attempts.lock().unwrap_or_else(|e| e.into_inner()).line(fac, message);
        if let Some(u) = unsure {
            self.history.push(Event::Unsure {
                partition: u.partition,
                producer_id: u.producer_id,
                epoch: u.epoch,
                first_seq: u.first_seq,
                last_seq: u.last_seq,
                error: u.error,
            });
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let event = match result {
            Ok(m) => Event::Ack { value: value_of(m.payload()), partition: m.partition(), offset: m.offset() },
            Err((e, m)) => Event::Fail { value: value_of(m.payload()), error: e.to_string() },
        };
        self.history.push(event);
    }
}

fn value_of(payload: Option<&[u8]>) -> String {
    String::from_utf8_lossy(payload.unwrap_or_default()).into_owned()
}

/// The running client threads.
#[derive(Debug)]
pub(crate) struct Running {
    stop: Arc<AtomicBool>,
    producers: Vec<JoinHandle<Result<()>>>,
    consumers: Vec<JoinHandle<Result<()>>>,
}

/// Starts producers, consumers and the committed-offset monitor.
pub(crate) fn start(w: &Workload, history: &Arc<History>) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let producers = (0..w.producers)
        .map(|k| {
            let (w, h, s) = (w.clone(), history.clone(), stop.clone());
            std::thread::spawn(move || produce(&w, k, &h, &s))
        })
        .collect();
    let mut consumers: Vec<JoinHandle<Result<()>>> = (0..w.consumers)
        .map(|c| {
            let (w, h, s) = (w.clone(), history.clone(), stop.clone());
            std::thread::spawn(move || consume(&w, c, &h, &s))
        })
        .collect();
    let (w2, h, s) = (w.clone(), history.clone(), stop.clone());
    consumers.push(std::thread::spawn(move || monitor(&w2, &h, &s)));
    Running { stop, producers, consumers }
}

impl Running {
    /// Stops producing (each producer flushes what it has in flight, up to
    /// its delivery timeout) and then consuming.
    /// Returns what went wrong (a client that could not be created, a
    /// consumer that did not close).
    pub(crate) fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let mut problems = Vec::new();
        for t in self.producers.into_iter().chain(self.consumers) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("{e:#}")),
                Err(_) => problems.push("a client thread panicked".into()),
            }
        }
        problems
    }
}

const GROUP: &str = "chaos-group";

fn produce(w: &Workload, k: u32, history: &Arc<History>, stop: &AtomicBool) -> Result<()> {
    let mut incarnation = 0u32;
    let tick = Duration::from_millis(10);
    let per_tick = (w.rate / 100).max(1);
    while !stop.load(Ordering::SeqCst) {
        incarnation += 1;
        let name = format!("p{k}.{incarnation}");
        let mut config = base_config(&w.bootstrap);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .set("request.timeout.ms", "5000");
        // `msg` always: the checker reads which attempts were possibly
        // persisted from it; the file only when asked for.
        let contexts = w.producer_debug.as_deref().map_or_else(|| "msg".to_string(), |d| format!("msg,{d}"));
        config.set("debug", &contexts).set_log_level(RDKafkaLogLevel::Debug);
        let path = w.producer_debug.as_ref().map(|_| w.log_dir.join(format!("producer-{name}.log")));
        let deliveries =
            Deliveries { history: history.clone(), log: DebugLog::file(path)?, attempts: Default::default() };
        let producer: ThreadedProducer<Deliveries> =
            config.create_with_context(deliveries).context("creating a producer")?;
        let mut seq = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if let Some((code, reason)) = producer.client().fatal_error() {
                history.push(Event::Note { what: format!("producer {name}: fatal {code:?}: {reason}") });
                break;
            }
            for _ in 0..per_tick {
                let value = format!("{name}:{seq}");
                let partition = (seq % w.partitions as u64) as i32;
                history.push(Event::Send { producer: name.clone(), value: value.clone(), partition });
                let key = seq.to_string();
                let mut record = BaseRecord::to(&w.topic).partition(partition).key(&key).payload(&value);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((e, back)) => {
                            // A full local queue: wait for deliveries.
                            if stop.load(Ordering::SeqCst) {
                                history.push(Event::Fail { value: value.clone(), error: e.to_string() });
                                break;
                            }
                            record = back;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                seq += 1;
            }
            next += tick;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else {
                next = Instant::now();
            }
        }
        // Everything in flight gets its outcome (delivered or timed out).
        let _ = producer.flush(Duration::from_secs(40));
    }
    Ok(())
}

fn consumer_config(w: &Workload, group: &str) -> ClientConfig {
    let mut c = base_config(&w.bootstrap);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    c
}

/// Consumer context: librdkafka's debug log to a file, when asked for,
/// and the rebalance count that keeps a commit from outliving its
/// assignment.
struct ConsumerLog {
    history: Arc<History>,
    log: DebugLog,
    /// Bumped by every rebalance, under the lock a commit holds while it
    /// is in flight: a rebalance waits for the commit, and a commit of a
    /// position taken before a rebalance is dropped (it would otherwise
    /// be sent with the new generation and move back the offset of a
    /// partition another consumer owns now).
    rebalances: Arc<std::sync::Mutex<u64>>,
}

impl ClientContext for ConsumerLog {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.write(self.history.now(), fac, message);
    }
}

impl ConsumerContext for ConsumerLog {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &rdkafka::consumer::Rebalance<'_>) {
        *self.rebalances.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }
}

fn consume(w: &Workload, c: u32, history: &Arc<History>, stop: &AtomicBool) -> Result<()> {
    let mut config = consumer_config(w, GROUP);
    let log = DebugLog::open(&mut config, w.client_debug.as_deref(), w.log_dir.join(format!("consumer-{c}.log")))?;
    let rebalances = Arc::new(std::sync::Mutex::new(0));
    let context = ConsumerLog { history: history.clone(), log, rebalances: rebalances.clone() };
    let consumer: Arc<BaseConsumer<ConsumerLog>> =
        Arc::new(config.create_with_context(context).context("creating a consumer")?);
    consumer.subscribe(&[&w.topic])?;
    let mut last_commit = Instant::now();
    let mut committing: Option<JoinHandle<()>> = None;
    let mut reads = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            reads.push(Event::Read {
                consumer: c,
                partition: m.partition(),
                offset: m.offset(),
                value: value_of(m.payload()),
            });
        }
        if reads.len() >= 200 {
            history.extend(reads.drain(..));
        }
        if last_commit.elapsed() >= Duration::from_secs(1) {
            history.extend(reads.drain(..));
            last_commit = Instant::now();
            if committing.as_ref().is_none_or(|t| t.is_finished()) {
                committing = commit(&consumer, c, history, &rebalances);
            }
        }
    }
    history.extend(reads);
    // Closing leaves the group, which waits for the coordinator; a close
    // that never ends is reported (and the client left behind), not
    // waited for forever.
    let (done, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The last reference closes it: after a commit still in flight.
        if let Some(t) = committing {
            let _ = t.join();
        }
        drop(consumer);
        let _ = done.send(());
    });
    if closed.recv_timeout(CLOSE_TIMEOUT).is_err() {
        bail!("consumer {c} did not close within {CLOSE_TIMEOUT:?}");
    }
    Ok(())
}

/// How long a group consumer may take to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Commits the consumer's position on the partitions it is assigned now
/// (taken between polls, where no rebalance runs) synchronously on a
/// thread of its own, recording each offset once the coordinator has
/// acknowledged it; dropped if a rebalance came in between (see
/// [`ConsumerLog::rebalances`]). One partition per request: librdkafka's
/// synchronous commit reports an error only when every partition of the
/// request failed, so a request of several would count a refused
/// partition as acknowledged.
fn commit(
    consumer: &Arc<BaseConsumer<ConsumerLog>>,
    c: u32,
    history: &Arc<History>,
    rebalances: &Arc<std::sync::Mutex<u64>>,
) -> Option<JoinHandle<()>> {
    let taken_at = *rebalances.lock().unwrap_or_else(|e| e.into_inner());
    let position = consumer.position().ok()?;
    let mut offsets = Vec::new();
    for e in position.elements() {
        if let Offset::Offset(o) = e.offset() {
            let mut tpl = TopicPartitionList::new();
            let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
            offsets.push((tpl, e.partition(), o));
        }
    }
    if offsets.is_empty() {
        return None;
    }
    let (consumer, history, rebalances) = (consumer.clone(), history.clone(), rebalances.clone());
    Some(std::thread::spawn(move || {
        let current = rebalances.lock().unwrap_or_else(|e| e.into_inner());
        if *current != taken_at {
            return;
        }
        for (tpl, partition, offset) in offsets {
            if consumer.commit(&tpl, CommitMode::Sync).is_ok() {
                history.push(Event::Commit { consumer: c, partition, offset });
            }
        }
    }))
}

fn monitor(w: &Workload, history: &Arc<History>, stop: &AtomicBool) -> Result<()> {
    // Same group id, never subscribed: it only asks OffsetFetch.
    let client: BaseConsumer = consumer_config(w, GROUP).create().context("creating the monitor")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..w.partitions {
        tpl.add_partition(&w.topic, p);
    }
    while !stop.load(Ordering::SeqCst) {
        let asked = history.now();
        if let Ok(got) = client.committed_offsets(tpl.clone(), Duration::from_secs(3)) {
            let seen = got.elements().into_iter().filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(Event::Committed { asked, partition: e.partition(), offset: o }),
                _ => None,
            });
            history.extend(seen.collect::<Vec<_>>());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// What the final read got: every partition's records, and the
/// partitions it could not read to their high watermark (with why).
#[derive(Debug, Default)]
pub(crate) struct FinalRead {
    pub(crate) logs: BTreeMap<i32, Log>,
    pub(crate) incomplete: BTreeMap<i32, String>,
}

/// Reads every partition from the start to its high watermark with a
/// fresh client (no group), once the cluster is healthy again.
pub(crate) fn read_committed(w: &Workload, timeout: Duration) -> Result<FinalRead> {
    let consumer: BaseConsumer = consumer_config(w, "chaos-final").create()?;
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..w.partitions {
        let (_, high) = consumer.fetch_watermarks(&w.topic, p, Duration::from_secs(10))?;
        ends.insert(p, high);
        tpl.add_partition_offset(&w.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut logs: BTreeMap<i32, Log> = (0..w.partitions).map(|p| (p, Vec::new())).collect();
    let done = |logs: &BTreeMap<i32, Log>| {
        ends.iter().all(|(p, &end)| end == 0 || logs[p].last().is_some_and(|(o, _)| *o + 1 >= end))
    };
    let deadline = Instant::now() + timeout;
    while !done(&logs) {
        if Instant::now() >= deadline {
            let incomplete = ends
                .iter()
                .filter(|(p, end)| **end > 0 && logs[p].last().is_none_or(|(o, _)| *o + 1 < **end))
                .map(|(p, end)| {
                    let got = logs[p].last().map_or(0, |(o, _)| *o + 1);
                    (*p, format!("read to {got} of high watermark {end} within {timeout:?}"))
                })
                .collect();
            return Ok(FinalRead { logs, incomplete });
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let end = ends[&m.partition()];
                if m.offset() < end
                    && let Some(log) = logs.get_mut(&m.partition())
                {
                    log.push((m.offset(), value_of(m.payload())));
                }
            }
            Some(Err(e)) => bail!("final read: {e}"),
            None => {}
        }
    }
    Ok(FinalRead { logs, incomplete: BTreeMap::new() })
}
