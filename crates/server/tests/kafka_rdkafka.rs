//! librdkafka (through the `rdkafka` crate, built from source) against a
//! real `fjord serve`: producers with every compression codec, idempotent
//! producers, classic consumer groups with a rebalance, KIP-848 consumer
//! groups, the admin API and metadata. Every test checks what came back
//! from the broker (delivery reports, consumed records, listings), not
//! merely that calls returned.
//!
//! Set `FJORD_TEST_RDKAFKA_DEBUG=broker,protocol,cgrp` to get librdkafka's
//! debug log on stderr.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, OwnedResourceSpecifier,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(10);

/// Collects what librdkafka reports outside of call results (error
/// callbacks, error and warning log lines: disconnects, protocol errors),
/// and prints its debug log when `FJORD_TEST_RDKAFKA_DEBUG` is set.
#[derive(Clone, Default)]
struct Ctx {
    problems: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let serious = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if serious {
            self.problems.lock().unwrap().push(format!("{level:?} {fac}: {message}"));
        }
        if std::env::var_os("FJORD_TEST_RDKAFKA_DEBUG").is_some() {
            eprintln!("librdkafka {level:?} {fac}: {message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.problems.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Ctx {}

type Admin = AdminClient<Ctx>;
type KConsumer = BaseConsumer<Ctx>;
type KProducer = FutureProducer<Ctx>;

/// Clients of one test's broker, sharing one problem log.
#[derive(Clone)]
struct Kafka {
    bootstrap: String,
    ctx: Ctx,
}

impl Kafka {
    fn new(server: &common::Server) -> Kafka {
        Kafka { bootstrap: server.kafka.clone(), ctx: Ctx::default() }
    }

    /// A client config with `settings`, and librdkafka's debug log if asked.
    fn config(&self, settings: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap).set("socket.timeout.ms", "10000");
        // Without a `log` logger rdkafka would only pass on errors.
        c.set_log_level(RDKafkaLogLevel::Warning);
        if let Ok(debug) = std::env::var("FJORD_TEST_RDKAFKA_DEBUG") {
            c.set("debug", debug).set_log_level(RDKafkaLogLevel::Debug);
        }
        for (k, v) in settings {
            c.set(*k, *v);
        }
        c
    }

    fn producer(&self, settings: &[(&str, &str)]) -> KProducer {
        self.config(settings).create_with_context(self.ctx.clone()).unwrap()
    }

    fn consumer(&self, settings: &[(&str, &str)]) -> KConsumer {
        self.config(settings).create_with_context(self.ctx.clone()).unwrap()
    }

    fn admin(&self) -> Admin {
        self.config(&[]).create_with_context(self.ctx.clone()).unwrap()
    }

    /// Asserts librdkafka reported no error or warning so far (call it
    /// before stopping the broker, which clients report as a disconnect).
    fn assert_no_client_problems(&self) {
        let problems = self.ctx.problems.lock().unwrap().clone();
        assert!(problems.is_empty(), "librdkafka reported: {problems:#?}");
    }

    /// Partition count of each topic the broker lists (a full listing,
    /// which never auto-creates anything).
    fn topic_partitions(&self) -> BTreeMap<String, usize> {
        let md = self.admin().inner().fetch_metadata(None, T).unwrap();
        md.topics().iter().map(|t| (t.name().to_string(), t.partitions().len())).collect()
    }

    /// Reads `n` records of `topic` (partitions `0..partitions`) from the
    /// beginning with an assigned consumer (no group membership), then
    /// checks that no more arrive within a short while.
    fn read_all(&self, topic: &str, partitions: i32, n: usize) -> Vec<OwnedMessage> {
        let group = format!("reader-{topic}");
        let c = self.consumer(&[("group.id", &group), ("enable.auto.commit", "false")]);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + T;
        while out.len() < n {
            assert!(Instant::now() < deadline, "read {} of {n} records of {topic} in {T:?}", out.len());
            if let Some(m) = c.poll(Duration::from_millis(100)) {
                out.push(m.unwrap().detach());
            }
        }
        // Nothing beyond what was produced.
        let quiet = Instant::now() + Duration::from_millis(300);
        while Instant::now() < quiet {
            if let Some(m) = c.poll(Duration::from_millis(50)) {
                panic!("unexpected extra record: {:?}", m.unwrap().detach());
            }
        }
        out
    }
}

fn opts() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(T)).operation_timeout(Some(T))
}

/// Creates `name` with `partitions` partitions and checks the result.
async fn create_topic(admin: &Admin, name: &str, partitions: i32) {
    let r = admin.create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &opts()).await.unwrap();
    assert_eq!(r, vec![Ok(name.to_string())]);
}

fn text(b: Option<&[u8]>) -> String {
    String::from_utf8(b.unwrap().to_vec()).unwrap()
}

/// Header (name, value) pairs in order.
type HeaderList = Vec<(String, String)>;

fn headers_of(m: &OwnedMessage) -> HeaderList {
    m.headers().map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value))).collect()).unwrap_or_default()
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// 1. acks=all, keys, headers, every codec: each delivery report is OK,
/// offsets increase per partition in send order, and a consumer reads
/// every record back with its key, value, headers and partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_every_codec_keys_headers_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[("FJORD_TOPICS__DEFAULT_PARTITIONS", "3")]);
    let k = Kafka::new(&server);
    const N: usize = 60;
    let keys = ["alpha", "bravo", "charlie", "delta", "echo"];
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let producer = k.producer(&[
            ("acks", "all"),
            ("compression.type", codec),
            ("linger.ms", "20"),
            ("message.timeout.ms", "10000"),
        ]);
        // (key, value, headers) in send order.
        let sent: Vec<(String, String, HeaderList)> = (0..N)
            .map(|i| {
                let key = keys[i % keys.len()].to_string();
                // Compressible and large enough for the codec to matter.
                let value = format!("{codec}-{i}-{}", "x".repeat(200 + i));
                let headers = vec![("codec".to_string(), codec.to_string()), ("seq".to_string(), i.to_string())];
                (key, value, headers)
            })
            .collect();
        // Enqueue everything before awaiting so records share batches.
        let futures: Vec<_> = sent
            .iter()
            .map(|(k, v, hs)| {
                let headers = hs
                    .iter()
                    .fold(OwnedHeaders::new(), |acc, (hk, hv)| acc.insert(Header { key: hk, value: Some(hv) }));
                producer.send_result(FutureRecord::to(&topic).key(k).payload(v).headers(headers)).unwrap()
            })
            .collect();
        let mut reports = Vec::with_capacity(N);
        for f in futures {
            let d = f.await.unwrap().unwrap_or_else(|(e, m)| panic!("{codec}: delivery failed: {e} for {m:?}"));
            reports.push((d.partition, d.offset));
        }
        // One partition per key; offsets increase per partition in send
        // order and cover 0..count without gaps.
        let mut key_partition: HashMap<&str, i32> = HashMap::new();
        let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for ((k, ..), (p, o)) in sent.iter().zip(&reports) {
            assert_eq!(*key_partition.entry(k).or_insert(*p), *p, "{codec}: key {k} went to two partitions");
            per_partition.entry(*p).or_default().push(*o);
        }
        for (p, offsets) in &per_partition {
            let expected: Vec<i64> = (0..offsets.len() as i64).collect();
            assert_eq!(offsets, &expected, "{codec}: offsets of partition {p} in send order");
        }
        assert!(per_partition.len() > 1, "{codec}: five keys should spread over the three partitions");

        let got = k.read_all(&topic, 3, N);
        let by_pos: HashMap<(i32, i64), &OwnedMessage> = got.iter().map(|m| ((m.partition(), m.offset()), m)).collect();
        assert_eq!(by_pos.len(), N, "{codec}: records read twice");
        for ((k, v, hs), (p, o)) in sent.iter().zip(&reports) {
            let m = by_pos[&(*p, *o)];
            assert_eq!(text(m.key()), *k, "{codec}: key at {p}/{o}");
            assert_eq!(text(m.payload()), *v, "{codec}: value at {p}/{o}");
            assert_eq!(&headers_of(m), hs, "{codec}: headers at {p}/{o}");
            assert!(m.timestamp().to_millis().unwrap() > 0, "{codec}: timestamp at {p}/{o}");
        }
        // Per-key order as consumed equals send order.
        let mut consumed_per_key: HashMap<String, Vec<String>> = HashMap::new();
        for m in &got {
            consumed_per_key.entry(text(m.key())).or_default().push(text(m.payload()));
        }
        for key in keys {
            let expected: Vec<String> = sent.iter().filter(|(k, ..)| k == key).map(|(_, v, _)| v.clone()).collect();
            assert_eq!(consumed_per_key[key], expected, "{codec}: order of key {key}");
        }
    }
    k.assert_no_client_problems();
    assert_eq!(server.terminate().code(), Some(0));
}

/// 2. An idempotent producer spreading records over partitions: every
/// record is stored exactly once, in send order per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    let k = Kafka::new(&server);
    let topic = "idem";
    create_topic(&k.admin(), topic, 4).await;
    let producer = k.producer(&[
        ("enable.idempotence", "true"),
        ("linger.ms", "5"),
        ("batch.num.messages", "50"),
        ("max.in.flight.requests.per.connection", "5"),
        ("message.timeout.ms", "15000"),
    ]);
    const N: usize = 2000;
    let mut futures = Vec::with_capacity(N);
    for i in 0..N {
        let key = format!("k{}", i % 37);
        let value = format!("v{i}");
        futures.push(producer.send_result(FutureRecord::to(topic).key(&key).payload(&value)).unwrap());
    }
    let mut sent_per_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (i, f) in futures.into_iter().enumerate() {
        let d = f.await.unwrap().unwrap_or_else(|(e, _)| panic!("delivery of v{i} failed: {e}"));
        sent_per_partition.entry(d.partition).or_default().push((d.offset, format!("v{i}")));
    }
    assert_eq!(sent_per_partition.len(), 4, "37 keys should reach all 4 partitions");
    for (p, recs) in &sent_per_partition {
        let offsets: Vec<i64> = recs.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..recs.len() as i64).collect::<Vec<_>>(), "partition {p}: offsets in send order");
    }

    let got = k.read_all(topic, 4, N);
    let mut consumed: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for m in &got {
        consumed.entry(m.partition()).or_default().push((m.offset(), text(m.payload())));
    }
    assert_eq!(consumed, sent_per_partition, "consumed exactly what was acknowledged, in order");
    let distinct: BTreeSet<String> = got.iter().map(|m| text(m.payload())).collect();
    assert_eq!(distinct.len(), N);
    k.assert_no_client_problems();
    assert_eq!(server.terminate().code(), Some(0));
}

/// What the members of a consumer-group test saw.
#[derive(Default)]
struct GroupLog {
    /// Current assignment of each member (partition numbers).
    assignment: Vec<BTreeSet<i32>>,
    /// Every consumed record: (member, partition, offset, value).
    consumed: Vec<(usize, i32, i64, String)>,
    errors: Vec<String>,
}

struct Member {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Member {
    /// Stops polling, closes the consumer (leaving the group) and waits.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
    }
}

/// A subscribed consumer polled in its own thread, committing each record
/// synchronously after "processing" it and publishing its assignment.
fn spawn_member(idx: usize, k: &Kafka, settings: &[(&str, &str)], topic: &str, log: Arc<Mutex<GroupLog>>) -> Member {
    let config = k.config(settings);
    let ctx = k.ctx.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let topic = topic.to_string();
    let handle = std::thread::spawn(move || {
        let c: KConsumer = config.create_with_context(ctx).unwrap();
        c.subscribe(&[&topic]).unwrap();
        while !stopping.load(Ordering::SeqCst) {
            if let Some(r) = c.poll(Duration::from_millis(50)) {
                match r {
                    Ok(m) => {
                        let value = text(m.payload());
                        log.lock().unwrap().consumed.push((idx, m.partition(), m.offset(), value));
                        if let Err(e) = c.commit_message(&m, CommitMode::Sync) {
                            log.lock().unwrap().errors.push(format!("member {idx}: commit: {e}"));
                        }
                    }
                    Err(e) => log.lock().unwrap().errors.push(format!("member {idx}: poll: {e}")),
                }
            }
            let a: BTreeSet<i32> = c.assignment().unwrap().elements().iter().map(|e| e.partition()).collect();
            log.lock().unwrap().assignment[idx] = a;
        }
        drop(c);
        log.lock().unwrap().assignment[idx].clear();
    });
    Member { stop, handle }
}

/// Produces `v0, v1, ...` round-robin over `partitions` partitions every
/// few ms until stopped; returns how many were acknowledged.
fn spawn_producer(k: &Kafka, topic: &str, partitions: i32) -> (Arc<AtomicBool>, JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let producer = k.producer(&[("acks", "all"), ("linger.ms", "0")]);
    let topic = topic.to_string();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut n = 0usize;
            while !stopping.load(Ordering::SeqCst) {
                let value = format!("v{n}");
                let record =
                    FutureRecord::<(), _>::to(&topic).payload(&value).partition((n % partitions as usize) as i32);
                producer.send(record, T).await.unwrap_or_else(|(e, _)| panic!("delivery of {value} failed: {e}"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    });
    (stop, handle)
}

fn disjoint_cover(sets: &[&BTreeSet<i32>], partitions: i32) -> bool {
    let total: usize = sets.iter().map(|s| s.len()).sum();
    let union: BTreeSet<i32> = sets.iter().flat_map(|s| s.iter().copied()).collect();
    total == partitions as usize && union == (0..partitions).collect()
}

/// Waits until every value `v0..v{n}` was consumed; asserts none twice.
fn assert_consumed_once(log: &Mutex<GroupLog>, produced: usize) {
    let all = |l: &GroupLog| l.consumed.iter().map(|(.., v)| v.clone()).collect::<BTreeSet<String>>();
    wait_until(Duration::from_secs(15), "every produced record to be consumed", || {
        all(&log.lock().unwrap()).len() >= produced
    });
    let l = log.lock().unwrap();
    let distinct = all(&l);
    let expected: BTreeSet<String> = (0..produced).map(|i| format!("v{i}")).collect();
    assert_eq!(distinct, expected, "consumed values");
    let mut seen = HashMap::new();
    let dups: Vec<_> = l.consumed.iter().filter(|(.., v)| seen.insert(v.clone(), ()).is_some()).collect();
    assert!(dups.is_empty(), "consumed more than once: {dups:?}");
    // Per partition, offsets were consumed in increasing order.
    let mut last: HashMap<i32, i64> = HashMap::new();
    for (member, p, o, _) in &l.consumed {
        if let Some(prev) = last.insert(*p, *o) {
            assert!(*o > prev, "partition {p}: offset {o} (member {member}) after {prev}");
        }
    }
}

/// 3. Classic group: three members split six partitions two each; when
/// one leaves the other two own all six within the session timeout, and
/// with commits after processing every record is consumed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_group_rebalance_consumes_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[("FJORD_GROUPS__INITIAL_REBALANCE_DELAY_MS", "0")]);
    let k = Kafka::new(&server);
    let topic = "grp6";
    create_topic(&k.admin(), topic, 6).await;
    let (stop_producer, producer) = spawn_producer(&k, topic, 6);

    let log = Arc::new(Mutex::new(GroupLog { assignment: vec![BTreeSet::new(); 3], ..GroupLog::default() }));
    let settings = [
        ("group.id", "g-classic"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "1000"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
    ];
    let mut members: Vec<Member> = (0..3).map(|i| spawn_member(i, &k, &settings, topic, log.clone())).collect();
    let took = wait_until(Duration::from_secs(20), "3 members with 2 partitions each", || {
        let l = log.lock().unwrap();
        l.assignment.iter().all(|a| a.len() == 2) && disjoint_cover(&l.assignment.iter().collect::<Vec<_>>(), 6)
    });
    eprintln!("three members assigned after {took:?}: {:?}", log.lock().unwrap().assignment);
    // Each of the three consumes from its own partitions before one leaves.
    let mark = log.lock().unwrap().consumed.len();
    wait_until(Duration::from_secs(5), "each of the 3 members to consume", || {
        let l = log.lock().unwrap();
        let members: BTreeSet<usize> = l.consumed[mark..].iter().map(|(m, ..)| *m).collect();
        members.len() == 3
    });

    let leaving = members.pop().unwrap();
    let start = Instant::now();
    leaving.stop();
    wait_until(Duration::from_secs(6), "the remaining 2 members to own all 6 partitions", || {
        let l = log.lock().unwrap();
        l.assignment[2].is_empty()
            && l.assignment[..2].iter().all(|a| a.len() == 3)
            && disjoint_cover(&[&l.assignment[0], &l.assignment[1]], 6)
    });
    eprintln!("two members took over after {:?}: {:?}", start.elapsed(), log.lock().unwrap().assignment);

    // Keep producing a little under the new assignment, then drain.
    std::thread::sleep(Duration::from_millis(500));
    stop_producer.store(true, Ordering::SeqCst);
    let produced = producer.join().unwrap();
    assert!(produced > 50, "only {produced} records produced");
    assert_consumed_once(&log, produced);
    for m in members {
        m.stop();
    }
    let errors = log.lock().unwrap().errors.clone();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    k.assert_no_client_problems();
    assert_eq!(server.terminate().code(), Some(0));
}

/// 4. KIP-848 (`group.protocol=consumer`): two members split a topic's
/// partitions (server-side assignment); when one leaves the other owns
/// them all; every record is consumed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip848_consumers_share_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    let k = Kafka::new(&server);
    let topic = "kip848";
    create_topic(&k.admin(), topic, 4).await;
    let (stop_producer, producer) = spawn_producer(&k, topic, 4);

    let log = Arc::new(Mutex::new(GroupLog { assignment: vec![BTreeSet::new(); 2], ..GroupLog::default() }));
    let settings = [
        ("group.id", "g-848"),
        ("group.protocol", "consumer"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
    ];
    let mut members: Vec<Member> = (0..2).map(|i| spawn_member(i, &k, &settings, topic, log.clone())).collect();
    // The broker's KIP-848 heartbeat interval is 5 s: a member learns of
    // a new target assignment within one interval.
    let took = wait_until(Duration::from_secs(15), "2 members with 2 partitions each", || {
        let l = log.lock().unwrap();
        l.assignment.iter().all(|a| a.len() == 2) && disjoint_cover(&l.assignment.iter().collect::<Vec<_>>(), 4)
    });
    eprintln!("KIP-848 members assigned after {took:?}: {:?}", log.lock().unwrap().assignment);
    // The admin API sees the group as its coordinator does.
    let agent = common::agent();
    let d: serde_json::Value =
        agent.get(&server.url("/api/v1/groups/g-848")).call().unwrap().body_mut().read_json().unwrap();
    assert_eq!(d["protocol_type"], "consumer", "{d}");
    assert_eq!(d["members"].as_array().map(Vec::len), Some(2), "{d}");
    let mut owned: Vec<i64> = d["members"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["assignment"].as_array().unwrap().clone())
        .filter(|a| a["topic"] == topic)
        .flat_map(|a| a["partitions"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect::<Vec<_>>())
        .collect();
    owned.sort_unstable();
    assert_eq!(owned, vec![0, 1, 2, 3], "{d}");
    let r = agent.delete(&server.url("/api/v1/groups/g-848")).call().unwrap();
    assert_eq!(r.status().as_u16(), 409, "a group with live members cannot be deleted");
    std::thread::sleep(Duration::from_millis(300));
    // One member leaves (heartbeat with epoch -1): the other gets all 4.
    members.pop().unwrap().stop();
    let took = wait_until(Duration::from_secs(10), "the remaining member to own all 4 partitions", || {
        log.lock().unwrap().assignment[0].len() == 4
    });
    eprintln!("KIP-848 member took over after {took:?}");
    std::thread::sleep(Duration::from_millis(300));
    stop_producer.store(true, Ordering::SeqCst);
    let produced = producer.join().unwrap();
    assert_consumed_once(&log, produced);
    // Both members did their share.
    let by_member: BTreeMap<usize, usize> =
        log.lock().unwrap().consumed.iter().fold(BTreeMap::new(), |mut acc, (m, ..)| {
            *acc.entry(*m).or_default() += 1;
            acc
        });
    assert_eq!(by_member.len(), 2, "both members consumed: {by_member:?}");
    for m in members {
        m.stop();
    }
    // A synchronous commit sent just before the member's epoch moved (its
    // partner left) is refused with STALE_MEMBER_EPOCH, as Kafka 4.x
    // brokers refuse it (KIP-848); the member keeps those partitions and
    // its next commit covers them. Every other client error fails the test.
    let errors: Vec<String> = log
        .lock()
        .unwrap()
        .errors
        .iter()
        .filter(|e| !(e.contains(": commit: ") && e.contains("StaleMemberEpoch")))
        .cloned()
        .collect();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    k.assert_no_client_problems();
    assert_eq!(server.terminate().code(), Some(0));
}

/// 5. The admin API: each call's result, then its effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_topics_configs_records_groups() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[("FJORD_GROUPS__INITIAL_REBALANCE_DELAY_MS", "0")]);
    let k = Kafka::new(&server);
    let b = server.kafka.as_str();
    let a = k.admin();

    // Create: one with a config, one validate-only, a duplicate, a bad one.
    let with_config = NewTopic::new("adm-a", 2, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    let r = a.create_topics(&[with_config], &opts()).await.unwrap();
    assert_eq!(r, vec![Ok("adm-a".to_string())]);
    let r = a
        .create_topics(&[NewTopic::new("adm-validate", 3, TopicReplication::Fixed(1))], &opts().validate_only(true))
        .await
        .unwrap();
    assert_eq!(r, vec![Ok("adm-validate".to_string())]);
    let r = a.create_topics(&[NewTopic::new("adm-a", 1, TopicReplication::Fixed(1))], &opts()).await.unwrap();
    assert_eq!(r, vec![Err(("adm-a".to_string(), RDKafkaErrorCode::TopicAlreadyExists))]);
    let r = a.create_topics(&[NewTopic::new("adm-rf3", 1, TopicReplication::Fixed(3))], &opts()).await.unwrap();
    assert_eq!(r, vec![Err(("adm-rf3".to_string(), RDKafkaErrorCode::InvalidReplicationFactor))]);
    let topics = k.topic_partitions();
    assert_eq!(topics.get("adm-a"), Some(&2), "{topics:?}");
    assert!(!topics.contains_key("adm-validate"), "validate-only created the topic: {topics:?}");
    assert!(!topics.contains_key("adm-rf3"), "{topics:?}");

    // Create partitions: 2 -> 4; shrinking is refused.
    let r = a.create_partitions(&[NewPartitions::new("adm-a", 4)], &opts()).await.unwrap();
    assert_eq!(r, vec![Ok("adm-a".to_string())]);
    let r = a.create_partitions(&[NewPartitions::new("adm-a", 3)], &opts()).await.unwrap();
    assert_eq!(r, vec![Err(("adm-a".to_string(), RDKafkaErrorCode::InvalidPartitions))]);
    assert_eq!(k.topic_partitions().get("adm-a"), Some(&4));

    // Describe configs: the topic's override and a broker setting.
    let r =
        a.describe_configs(&[ResourceSpecifier::Topic("adm-a"), ResourceSpecifier::Broker(0)], &opts()).await.unwrap();
    assert_eq!(r.len(), 2);
    let topic_cfg = r[0].as_ref().unwrap();
    let entry = topic_cfg.get("retention.ms").expect("retention.ms described");
    assert_eq!(entry.value.as_deref(), Some("3600000"));
    assert_eq!(entry.source, ConfigSource::DynamicTopic);
    assert!(topic_cfg.get("max.message.bytes").is_some(), "defaults are described too");
    let broker_cfg = r[1].as_ref().unwrap();
    assert_eq!(broker_cfg.get("broker.id").and_then(|e| e.value.as_deref()), Some("0"));
    assert!(broker_cfg.get("advertised.listeners").unwrap().value.as_deref().unwrap().ends_with(b));
    let r = a.describe_configs(&[ResourceSpecifier::Topic("adm-missing")], &opts()).await.unwrap();
    // rdkafka 0.39 drops per-resource error codes of DescribeConfigs: an
    // unknown topic shows up as a resource without entries.
    assert!(r[0].as_ref().is_ok_and(|c| c.entries.is_empty()), "{r:?}");

    // Delete records: 10 records in partition 0, delete below offset 4.
    let producer = k.producer(&[("acks", "all")]);
    for i in 0..10 {
        let v = format!("r{i}");
        let rec = FutureRecord::<(), _>::to("adm-a").payload(&v).partition(0);
        producer.send(rec, T).await.unwrap();
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("adm-a", 0, Offset::Offset(4)).unwrap();
    let r = a.delete_records(&tpl, &opts()).await.unwrap();
    let e = r.find_partition("adm-a", 0).unwrap();
    assert!(e.error().is_ok(), "{:?}", e.error());
    assert_eq!(e.offset(), Offset::Offset(4), "low watermark after deleting");
    let c = k.consumer(&[]);
    assert_eq!(c.fetch_watermarks("adm-a", 0, T).unwrap(), (4, 10));
    let first = k.read_all("adm-a", 1, 6);
    assert_eq!(first[0].offset(), 4);
    assert_eq!(text(first[0].payload()), "r4");

    // Groups: a classic group with one member that committed offsets.
    let member =
        k.consumer(&[("group.id", "adm-group"), ("enable.auto.commit", "false"), ("auto.offset.reset", "earliest")]);
    member.subscribe(&["adm-a"]).unwrap();
    let deadline = Instant::now() + T;
    let committed = loop {
        assert!(Instant::now() < deadline, "the group member consumed nothing");
        if let Some(m) = member.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            member.commit_message(&m, CommitMode::Sync).unwrap();
            break (m.partition(), m.offset());
        }
    };
    let groups = c.fetch_group_list(None, T).unwrap();
    let g = groups.groups().iter().find(|g| g.name() == "adm-group").expect("group listed");
    assert_eq!(g.state(), "Stable");
    assert_eq!(g.protocol_type(), "consumer");
    assert_eq!(g.members().len(), 1);
    assert!(g.members()[0].assignment().is_some_and(|a| !a.is_empty()));
    let one = c.fetch_group_list(Some("adm-group"), T).unwrap();
    assert_eq!(one.groups().len(), 1);
    // Deleting a group with a member is refused; once empty it works.
    let r = a.delete_groups(&["adm-group"], &opts()).await.unwrap();
    assert_eq!(r, vec![Err(("adm-group".to_string(), RDKafkaErrorCode::NonEmptyGroup))]);
    drop(member);
    let groups = c.fetch_group_list(Some("adm-group"), T).unwrap();
    assert_eq!(groups.groups()[0].state(), "Empty");
    // The committed offset is there until the group is deleted.
    let probe = k.consumer(&[("group.id", "adm-group")]);
    let mut want = TopicPartitionList::new();
    want.add_partition("adm-a", committed.0);
    let got = probe.committed_offsets(want.clone(), T).unwrap();
    assert_eq!(got.find_partition("adm-a", committed.0).unwrap().offset(), Offset::Offset(committed.1 + 1));
    let r = a.delete_groups(&["adm-group", "adm-nonexistent"], &opts()).await.unwrap();
    assert_eq!(
        r,
        vec![Ok("adm-group".to_string()), Err(("adm-nonexistent".to_string(), RDKafkaErrorCode::GroupIdNotFound))]
    );
    let listed = c.fetch_group_list(None, T).unwrap();
    assert!(listed.groups().iter().all(|g| g.name() != "adm-group"), "deleted group still listed");
    let got = probe.committed_offsets(want, T).unwrap();
    assert_eq!(got.find_partition("adm-a", committed.0).unwrap().offset(), Offset::Invalid, "offsets deleted");
    drop(probe);

    // Delete topics.
    let r = a.delete_topics(&["adm-a", "adm-missing"], &opts()).await.unwrap();
    assert_eq!(
        r,
        vec![Ok("adm-a".to_string()), Err(("adm-missing".to_string(), RDKafkaErrorCode::UnknownTopicOrPartition))]
    );
    assert!(!k.topic_partitions().contains_key("adm-a"));
    k.assert_no_client_problems();
    assert_eq!(server.terminate().code(), Some(0));
}

/// Topic config entry `key` as rdkafka's DescribeConfigs reports it.
async fn describe_topic_entry(a: &Admin, topic: &str, key: &str) -> (Option<String>, ConfigSource) {
    let r = a.describe_configs(&[ResourceSpecifier::Topic(topic)], &opts()).await.unwrap();
    let c = r.into_iter().next().unwrap().unwrap();
    let e = c.entries.into_iter().find(|e| e.name == key).unwrap_or_else(|| panic!("{key} not described"));
    (e.value, e.source)
}

/// 5b. AlterConfigs, the only alter call rdkafka 0.39 offers (librdkafka's
/// `rd_kafka_AlterConfigs`, Kafka API key 33): set a topic config, then
/// describe it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_alter_configs_legacy() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    let k = Kafka::new(&server);
    let a = k.admin();
    let topic = NewTopic::new("alter-legacy", 1, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("max.message.bytes", "65536");
    assert_eq!(a.create_topics(&[topic], &opts()).await.unwrap(), vec![Ok("alter-legacy".to_string())]);
    let spec = ResourceSpecifier::Topic("alter-legacy");
    // Validate-only changes nothing.
    let r = a.alter_configs(&[AlterConfig::new(spec).set("retention.ms", "1000")], &opts().validate_only(true)).await;
    assert_eq!(r.unwrap(), vec![Ok(OwnedResourceSpecifier::Topic("alter-legacy".to_string()))]);
    assert_eq!(describe_topic_entry(&a, "alter-legacy", "retention.ms").await.0.as_deref(), Some("3600000"));
    // A real change: AlterConfigs replaces the whole set, so the other
    // override (max.message.bytes) returns to its default.
    let r = a.alter_configs(&[AlterConfig::new(spec).set("retention.ms", "7200000")], &opts()).await;
    assert_eq!(r.unwrap(), vec![Ok(OwnedResourceSpecifier::Topic("alter-legacy".to_string()))]);
    let (value, source) = describe_topic_entry(&a, "alter-legacy", "retention.ms").await;
    assert_eq!((value.as_deref(), source), (Some("7200000"), ConfigSource::DynamicTopic));
    let (value, source) = describe_topic_entry(&a, "alter-legacy", "max.message.bytes").await;
    assert_ne!(value.as_deref(), Some("65536"));
    assert_eq!(source, ConfigSource::Default);
    k.assert_no_client_problems();
    assert_eq!(server.terminate().code(), Some(0));
}

/// One IncrementalAlterConfigs v1 request for a topic config, sent by hand
/// (rdkafka 0.39 has no binding for it); returns the resource's error code.
fn incremental_alter(bootstrap: &str, topic: &str, key: &str, op: i8, value: Option<&str>, validate_only: bool) -> i16 {
    use fjord_kafka_codec::kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use fjord_kafka_codec::kafka_protocol::messages::{
        ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader, ResponseHeader,
    };
    use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use std::io::{Read, Write};

    let version = 1;
    let api = ApiKey::IncrementalAlterConfigs;
    let mut body = bytes::BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("rdkafka-test")))
        .encode(&mut body, api.request_header_version(version))
        .unwrap();
    let config = AlterableConfig::default()
        .with_name(StrBytes::from_string(key.to_string()))
        .with_config_operation(op)
        .with_value(value.map(|v| StrBytes::from_string(v.to_string())));
    let resource = AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(topic.to_string()))
        .with_configs(vec![config]);
    IncrementalAlterConfigsRequest::default()
        .with_resources(vec![resource])
        .with_validate_only(validate_only)
        .encode(&mut body, version)
        .unwrap();
    let mut s = std::net::TcpStream::connect(bootstrap).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    let mut buf = bytes::Bytes::from(resp);
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 9);
    let r = IncrementalAlterConfigsResponse::decode(&mut buf, version).unwrap();
    assert_eq!(r.responses.len(), 1);
    r.responses[0].error_code
}

/// 5c. IncrementalAlterConfigs (what Fjord implements; sent by hand) and
/// its effect as rdkafka's DescribeConfigs sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_incremental_alter_configs_visible_to_describe() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    let k = Kafka::new(&server);
    let b = server.kafka.as_str();
    let a = k.admin();
    let topic = NewTopic::new("alter-inc", 1, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    assert_eq!(a.create_topics(&[topic], &opts()).await.unwrap(), vec![Ok("alter-inc".to_string())]);
    let (default_segment, source) = describe_topic_entry(&a, "alter-inc", "segment.ms").await;
    assert_eq!(source, ConfigSource::Default);

    // Validate-only: accepted, no effect.
    assert_eq!(incremental_alter(b, "alter-inc", "retention.ms", 0, Some("7200000"), true), 0);
    assert_eq!(describe_topic_entry(&a, "alter-inc", "retention.ms").await.0.as_deref(), Some("3600000"));
    // SET one key and another: both visible, the first untouched.
    assert_eq!(incremental_alter(b, "alter-inc", "retention.ms", 0, Some("7200000"), false), 0);
    assert_eq!(incremental_alter(b, "alter-inc", "segment.ms", 0, Some("600000"), false), 0);
    let (value, source) = describe_topic_entry(&a, "alter-inc", "retention.ms").await;
    assert_eq!((value.as_deref(), source), (Some("7200000"), ConfigSource::DynamicTopic));
    assert_eq!(describe_topic_entry(&a, "alter-inc", "segment.ms").await.0.as_deref(), Some("600000"));
    // DELETE returns a key to its default.
    assert_eq!(incremental_alter(b, "alter-inc", "segment.ms", 1, None, false), 0);
    let (value, source) = describe_topic_entry(&a, "alter-inc", "segment.ms").await;
    assert_eq!((value, source), (default_segment, ConfigSource::Default));
    // An invalid value is refused (INVALID_CONFIG = 40) and changes nothing.
    assert_eq!(incremental_alter(b, "alter-inc", "retention.ms", 0, Some("soon"), false), 40);
    assert_eq!(describe_topic_entry(&a, "alter-inc", "retention.ms").await.0.as_deref(), Some("7200000"));
    k.assert_no_client_problems();
    assert_eq!(server.terminate().code(), Some(0));
}

/// 6. Metadata: the one broker at its advertised address, and topics with
/// their partitions led by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_broker_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    let k = Kafka::new(&server);
    let b = server.kafka.as_str();
    let a = k.admin();
    create_topic(&a, "md-three", 3).await;
    create_topic(&a, "md-one", 1).await;
    let md = a.inner().fetch_metadata(None, T).unwrap();
    assert_eq!(md.orig_broker_id(), 0);
    let brokers: Vec<(i32, String)> =
        md.brokers().iter().map(|b| (b.id(), format!("{}:{}", b.host(), b.port()))).collect();
    assert_eq!(brokers, vec![(0, b.to_string())]);
    let topics: BTreeMap<&str, &rdkafka::metadata::MetadataTopic> = md.topics().iter().map(|t| (t.name(), t)).collect();
    for (name, n) in [("md-three", 3), ("md-one", 1)] {
        let t = topics.get(name).unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(t.error(), None);
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort();
        assert_eq!(ids, (0..n).collect::<Vec<_>>(), "{name}");
        for p in t.partitions() {
            assert_eq!(
                (p.leader(), p.replicas(), p.isr(), p.error()),
                (0, &[0][..], &[0][..], None),
                "{name}/{}",
                p.id()
            );
        }
    }
    // One topic by name.
    let one = a.inner().fetch_metadata(Some("md-three"), T).unwrap();
    assert_eq!(one.topics().len(), 1);
    assert_eq!(one.topics()[0].partitions().len(), 3);
    // An unknown topic asked for by a consumer (allow.auto.create.topics
    // is off for consumers) is reported unknown and not created ...
    let c = k.consumer(&[]);
    let missing = c.fetch_metadata(Some("md-missing"), T).unwrap();
    assert_eq!(missing.topics().len(), 1);
    assert_eq!(missing.topics()[0].error(), Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
    assert!(!k.topic_partitions().contains_key("md-missing"));
    // ... while a producer's request auto-creates it (topics.auto_create).
    let p = k.producer(&[]);
    let deadline = Instant::now() + T;
    loop {
        let md = p.client().fetch_metadata(Some("md-auto"), T).unwrap();
        let t = &md.topics()[0];
        if t.error().is_none() && t.partitions().len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "md-auto: {:?}", t.error());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(k.topic_partitions().get("md-auto"), Some(&1));
    k.assert_no_client_problems();
    assert_eq!(server.terminate().code(), Some(0));
}
