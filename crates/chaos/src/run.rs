//! One seed's run: network, nodes, topic, workload, the seed's fault
//! schedule, repair of everything, the final reads, the checks.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::amqp::{self, AmqpWorkload};
use crate::check::{self, Finding, Observed, Totals};
use crate::clock;
use crate::cluster::Cluster;
use crate::disk;
use crate::history::{self, Event, History};
use crate::net::Network;
use crate::power;
use crate::rocketmq::pop::{self, PopWorkload};
use crate::rocketmq::{self, RocketMqWorkload};
use crate::schedule::{self, Fault, Kind, Target};
use crate::volume::Volume;
use crate::workload::{self, Workload};

const TOPIC: &str = "chaos";

/// What a run does.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The `fjord` binary.
    pub(crate) fjord: PathBuf,
    /// Where each seed's nodes, logs and history go.
    pub(crate) out: PathBuf,
    /// Nodes (3–5; every one a controller voter).
    pub(crate) nodes: usize,
    /// How long faults are injected.
    pub(crate) duration: Duration,
    /// How long the workload runs after everything was repaired (each
    /// producer and the group must make progress in it).
    pub(crate) recovery: Duration,
    /// Enabled fault kinds.
    pub(crate) kinds: Vec<Kind>,
    /// Partitions of the workload topic.
    pub(crate) partitions: i32,
    /// Producers.
    pub(crate) producers: u32,
    /// Messages per second per producer.
    pub(crate) rate: u32,
    /// Group consumers.
    pub(crate) consumers: u32,
    /// Subnet 10.213.`subnet`.0/24 for the namespaces.
    pub(crate) subnet: u8,
    /// Copy the workload topic's files before each repair.
    pub(crate) snapshots: bool,
    /// librdkafka debug contexts for the consumers.
    pub(crate) client_debug: Option<String>,
    /// librdkafka debug contexts for the producers.
    pub(crate) producer_debug: Option<String>,
    /// AMQP publishers (0: no AMQP workload).
    pub(crate) amqp_publishers: u32,
    /// Messages per second per AMQP publisher.
    pub(crate) amqp_rate: u32,
    /// AMQP consumers.
    pub(crate) amqp_consumers: u32,
    /// A Python with rocketmq-client-python (`None`: no RocketMQ workload).
    pub(crate) rocketmq_python: Option<PathBuf>,
    /// RocketMQ producers.
    pub(crate) rocketmq_producers: u32,
    /// Messages per second per RocketMQ producer.
    pub(crate) rocketmq_rate: u32,
    /// RocketMQ push consumers.
    pub(crate) rocketmq_consumers: u32,
    /// A Python with rocketmq-python-client (`None`: no pop workload).
    pub(crate) pop_python: Option<PathBuf>,
    /// Pop workload producers.
    pub(crate) pop_producers: u32,
    /// Messages per second per pop workload producer.
    pub(crate) pop_rate: u32,
    /// Pop workload SimpleConsumers.
    pub(crate) pop_consumers: u32,
    /// Seconds a received message stays invisible.
    pub(crate) pop_invisible: u32,
}

/// One seed's results.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The seed.
    pub(crate) seed: u64,
    /// What happened.
    pub(crate) totals: Totals,
    /// Each check.
    pub(crate) findings: Vec<Finding>,
    /// Failures outside the checks: the cluster did not recover, a node
    /// did not stop cleanly, the final read failed.
    pub(crate) errors: Vec<String>,
    /// The seed's directory.
    pub(crate) dir: PathBuf,
}

impl Outcome {
    /// Whether every check passed and nothing else failed.
    pub(crate) fn passed(&self) -> bool {
        self.errors.is_empty() && self.findings.iter().all(|f| f.count == 0)
    }
}

/// A fault in force, to be repaired.
enum Applied {
    Killed(usize),
    Filled(usize),
    Paused(usize),
    ClockJumped(usize),
    Cut,
    Nothing,
}

struct Run<'a> {
    opts: &'a Options,
    net: Network,
    cluster: Cluster,
    history: Arc<History>,
    errors: Vec<String>,
    /// Each node's own file system, when disk-full or power-loss faults
    /// are enabled.
    volumes: Vec<Volume>,
}

/// Runs one seed.
pub(crate) fn run_seed(opts: &Options, seed: u64) -> Result<Outcome> {
    let dir = opts.out.join(format!("seed-{seed}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let net = Network::create(opts.subnet, opts.nodes)?;
    let mut cluster = Cluster::new(&net, opts.nodes, &opts.fjord, &dir)?;
    let mut volumes = Vec::new();
    // A full disk and a power cut are both the node's disk's.
    if opts.kinds.contains(&Kind::DiskFull) || opts.kinds.contains(&Kind::PowerLoss) {
        for i in 0..opts.nodes {
            volumes.push(Volume::create(&dir.join(format!("node-{}.img", i + 1)), &cluster.data_dir(i))?);
        }
    }
    if opts.kinds.contains(&Kind::Clock) {
        cluster.enable_clock_jumps(clock::library()?)?;
    }
    let mut run = Run { opts, net, cluster, history: Arc::new(History::default()), errors: Vec::new(), volumes };
    let result = run.go(seed);
    // Whatever happened, no process or namespace outlives the seed.
    let stop_errors = run.cluster.stop_all();
    run.net.remove();
    let Finals { committed, replicas, rocketmq_log, pop_log } = result?;
    run.errors.extend(stop_errors);
    let mut observed = Observed {
        history: run.history.snapshot(),
        committed: committed.logs,
        incomplete: committed.incomplete.into_keys().collect(),
        replicas: Default::default(),
        writers: Default::default(),
        rocketmq_log,
        pop_log,
    };
    for r in &replicas {
        match disk::read_replica(&r.path) {
            Ok(files) => {
                for (offset, by) in files.writers {
                    observed.writers.entry((r.partition, offset)).or_insert(by);
                }
                observed.replicas.entry(r.partition).or_default().insert(r.node, files.log);
            }
            // A replica whose files do not parse holds nothing usable: a
            // divergence the checks cannot even compare.
            Err(e) => run.errors.push(format!("node {} partition {}: unreadable replica: {e:#}", r.node, r.partition)),
        }
    }
    for v in &mut run.volumes {
        if let Err(e) = v.unmount() {
            run.errors.push(format!("{e:#}"));
        }
    }
    let findings = check::check(&observed);
    let totals = check::totals(&observed);
    history::write_jsonl(&dir.join("history.jsonl"), &observed.history)?;
    let bad: Vec<String> = findings.iter().filter(|f| f.count > 0).flat_map(|f| f.values.clone()).collect();
    if !bad.is_empty() {
        history::write_jsonl(&dir.join("minimal-history.jsonl"), &history::minimal(&observed.history, &bad))?;
    }
    Ok(Outcome { seed, totals, findings, errors: run.errors, dir })
}

/// What a run leaves for the checks.
struct Finals {
    committed: workload::FinalRead,
    replicas: Vec<Replica>,
    rocketmq_log: Option<HashSet<String>>,
    pop_log: Option<HashSet<String>>,
}

/// Where one replica of a partition keeps its files.
struct Replica {
    node: i32,
    partition: i32,
    path: PathBuf,
}

impl Run<'_> {
    fn go(&mut self, seed: u64) -> Result<Finals> {
        let o = self.opts;
        for i in 0..o.nodes {
            self.cluster.start(i)?;
        }
        for i in 0..o.nodes {
            self.cluster.await_ready(i, Duration::from_secs(90))?;
        }
        let w = Workload {
            bootstrap: self.cluster.bootstrap(),
            topic: TOPIC.into(),
            partitions: o.partitions,
            replication: o.nodes.min(3) as i32,
            producers: o.producers,
            rate: o.rate,
            consumers: o.consumers,
            client_debug: o.client_debug.clone(),
            producer_debug: o.producer_debug.clone(),
            log_dir: self.cluster.root().to_path_buf(),
        };
        workload::create_topic(&w, Duration::from_secs(60))?;
        self.cluster.await_healthy(TOPIC, Duration::from_secs(60))?;
        let amqp = (o.amqp_publishers > 0).then(|| AmqpWorkload {
            uris: self.cluster.amqp_uris(),
            publishers: o.amqp_publishers,
            rate: o.amqp_rate,
            consumers: o.amqp_consumers,
        });
        if let Some(a) = &amqp {
            amqp::declare(a, Duration::from_secs(60))?;
        }
        let rmq = o.rocketmq_python.clone().filter(|_| o.rocketmq_producers > 0).map(|python| RocketMqWorkload {
            python,
            namesrv: self.cluster.namesrv(),
            producers: o.rocketmq_producers,
            rate: o.rocketmq_rate,
            consumers: o.rocketmq_consumers,
        });
        let pop = o.pop_python.clone().filter(|_| o.pop_producers > 0).map(|python| PopWorkload {
            python,
            endpoints: self.cluster.grpc_endpoints(),
            producers: o.pop_producers,
            rate: o.pop_rate,
            consumers: o.pop_consumers,
            invisible: o.pop_invisible,
        });
        for (name, used) in [(rocketmq::TOPIC, rmq.is_some()), (pop::TOPIC, pop.is_some())] {
            if used {
                let topic = Workload { topic: name.into(), partitions: 3, ..w.clone() };
                workload::create_topic(&topic, Duration::from_secs(60))?;
                self.cluster.await_healthy(name, Duration::from_secs(60))?;
            }
        }
        let running = workload::start(&w, &self.history);
        let amqp_running = amqp.as_ref().map(|a| amqp::start(a, &self.history));
        let rmq_running = match &rmq {
            Some(r) => Some(rocketmq::start(r, &self.history, self.cluster.root())?),
            None => None,
        };
        let pop_running = match &pop {
            Some(p) => Some(pop::start(p, &self.history, self.cluster.root())?),
            None => None,
        };

        let end = Instant::now() + o.duration;
        for step in schedule::plan(seed, o.nodes, o.partitions, &o.kinds, o.duration) {
            if !sleep_until(Instant::now() + step.quiet, end) {
                break;
            }
            let applied = self.apply(&step.fault)?;
            sleep_until(Instant::now() + step.hold, end);
            self.snapshot("before-repair");
            self.repair(applied)?;
        }
        sleep_until(end, end);
        // Everything repaired; the clients finish what they have in flight.
        self.net.heal()?;
        for v in &self.volumes {
            v.free()?;
        }
        for i in 0..o.nodes {
            if !self.cluster.running(i) {
                self.restart(i)?;
            } else if !self.cluster.serving(i) {
                self.cluster.resume(i)?;
            }
        }
        // Everything is repaired: the clients must get going again.
        self.history.push(Event::Healed);
        std::thread::sleep(o.recovery);
        self.errors.extend(running.stop());
        if let Some(r) = amqp_running {
            self.errors.extend(r.stop());
        }
        if let Some(a) = &amqp
            && let Err(e) = amqp::drain(a, &self.history, Duration::from_secs(60))
        {
            self.errors.push(format!("AMQP final drain: {e:#}"));
        }
        if let Some(r) = rmq_running {
            self.errors.extend(r.stop(
                &self.history,
                Duration::from_secs(60),
                rocketmq::check::all_delivered,
                rocketmq::check::reads,
            ));
        }
        if let Some(p) = pop_running {
            self.errors.extend(p.stop(
                &self.history,
                Duration::from_secs(60),
                rocketmq::pop_check::all_acked,
                rocketmq::pop_check::reads,
            ));
        }
        if let Err(e) = self.cluster.await_healthy(TOPIC, Duration::from_secs(60)) {
            self.errors.push(format!("not recovered after the faults were repaired: {e:#}"));
        }
        let committed = match workload::read_committed(&w, Duration::from_secs(60)) {
            Ok(r) => {
                for (p, why) in &r.incomplete {
                    self.errors.push(format!("final read of partition {p}: {why}"));
                }
                r
            }
            Err(e) => {
                self.errors.push(format!("final read: {e:#}"));
                Default::default()
            }
        };
        // The RocketMQ topics' committed logs: a value answered OK missing
        // there was lost by the brokers, one there but never delivered by
        // the consumers' side.
        let rocketmq_log = rmq.is_some().then(|| self.final_values(&w, rocketmq::TOPIC)).flatten();
        let pop_log = pop.is_some().then(|| self.final_values(&w, pop::TOPIC)).flatten();
        let mut replicas = Vec::new();
        for p in self.cluster.partitions(TOPIC).unwrap_or_default() {
            for node in p.replicas {
                if let Some(i) = self.cluster.index_of(node) {
                    let partition = p.partition as i32;
                    replicas.push(Replica { node, partition, path: self.cluster.partition_dir(i, TOPIC, partition) });
                }
            }
        }
        Ok(Finals { committed, replicas, rocketmq_log, pop_log })
    }

    /// The values of `topic`'s committed log (3 partitions), read with a
    /// Kafka client; `None`, with an error, when it cannot be read whole.
    fn final_values(&mut self, w: &Workload, name: &str) -> Option<HashSet<String>> {
        let topic = Workload { topic: name.into(), partitions: 3, ..w.clone() };
        match workload::read_committed(&topic, Duration::from_secs(60)) {
            Ok(r) if r.incomplete.is_empty() => Some(r.logs.into_values().flatten().map(|(_, v)| v).collect()),
            Ok(r) => {
                self.errors.push(format!("final read of {name}: {:?}", r.incomplete));
                None
            }
            Err(e) => {
                self.errors.push(format!("final read of {name}: {e:#}"));
                None
            }
        }
    }

    /// With `--snapshots`: a copy of every node's workload topic files,
    /// for post-mortems of a failing seed.
    fn snapshot(&self, label: &str) {
        if !self.opts.snapshots {
            return;
        }
        let at = self.history.now();
        for i in 0..self.cluster.len() {
            let from = self.cluster.partition_dir(i, TOPIC, 0);
            let Some(topic) = from.parent() else { continue };
            let to = self.opts.out.join(format!("snapshots/{at}-{label}/node-{}", i + 1));
            if std::fs::create_dir_all(&to).is_ok() {
                let _ = std::process::Command::new("cp").arg("-r").arg(topic).arg(&to).status();
            }
        }
    }

    fn resolve(&self, t: Target) -> usize {
        let found = match t {
            Target::Node(i) => Some(i),
            Target::LeaderOf(p) => self.cluster.leader_of(TOPIC, p),
            Target::Controller => self.cluster.controller_leader(),
        };
        // Nobody answered (all busy electing): the first node will do.
        found.unwrap_or(0)
    }

    fn note(&self, what: String) {
        self.history.push(Event::Note { what });
    }

    fn apply(&mut self, fault: &Fault) -> Result<Applied> {
        let n = self.cluster.len();
        let applied = match fault {
            Fault::Kill(t) => {
                let i = self.resolve(*t);
                self.history.push(Event::Fault { what: format!("{fault}: node {}", self.cluster.id_of(i)) });
                self.cluster.kill(i)?;
                Applied::Killed(i)
            }
            Fault::PowerLoss(t) => {
                let i = self.resolve(*t);
                self.history.push(Event::Fault { what: format!("{fault}: node {}", self.cluster.id_of(i)) });
                self.cluster.kill(i)?;
                let data = self.cluster.data_dir(i);
                let cut = power::log_sizes(&data).and_then(|before| {
                    let v = self.volumes.get_mut(i).context("power loss needs the node's own volume")?;
                    v.power_cut()?;
                    Ok(power::describe_loss(&before, &power::log_sizes(&data)?))
                });
                match cut {
                    Ok(what) => self.note(format!("power loss on node {}: {what}", self.cluster.id_of(i))),
                    Err(e) => self.errors.push(format!("power loss on node {}: {e:#}", self.cluster.id_of(i))),
                }
                Applied::Killed(i)
            }
            Fault::DiskFull(t) => {
                let i = self.resolve(*t);
                self.history.push(Event::Fault { what: format!("{fault}: node {}", self.cluster.id_of(i)) });
                match self.volumes.get(i).map(Volume::fill) {
                    Some(Ok(bytes)) => self.note(format!("node {}: {bytes} bytes of ballast", self.cluster.id_of(i))),
                    Some(Err(e)) => self.errors.push(format!("filling node {}'s disk: {e:#}", self.cluster.id_of(i))),
                    None => self.errors.push("a disk-full fault without volumes".into()),
                }
                Applied::Filled(i)
            }
            Fault::Pause(t) => {
                let i = self.resolve(*t);
                self.history.push(Event::Fault { what: format!("{fault}: node {}", self.cluster.id_of(i)) });
                self.cluster.pause(i)?;
                Applied::Paused(i)
            }
            Fault::Isolate(t) => {
                let i = self.resolve(*t);
                self.cut(fault, n, Some(i))?;
                self.history.push(Event::Fault { what: format!("{fault}: node {}", self.cluster.id_of(i)) });
                Applied::Cut
            }
            Fault::Split(_) | Fault::Bridge(_) | Fault::OneWay(..) => {
                self.cut(fault, n, None)?;
                self.history.push(Event::Fault { what: format!("{fault}: cut {}", self.net.describe_cuts()) });
                Applied::Cut
            }
            Fault::ClockJump(t, seconds) => {
                let i = self.resolve(*t);
                self.cluster.set_clock_offset(i, *seconds)?;
                self.history.push(Event::Fault { what: format!("{fault}: node {}", self.cluster.id_of(i)) });
                self.confirm_clock(i, *seconds);
                Applied::ClockJumped(i)
            }
            Fault::Move(partition, to) => {
                let replicas: Vec<i32> = to.iter().map(|i| self.cluster.id_of(*i)).collect();
                self.history.push(Event::Fault { what: format!("{fault}: nodes {replicas:?}") });
                if let Err(e) = self.cluster.reassign(TOPIC, *partition, &replicas) {
                    // Refused (a move in progress, no controller leader):
                    // noted, not an error of the system under test.
                    self.note(format!("move of partition {partition} refused: {e:#}"));
                }
                Applied::Nothing
            }
            Fault::RollingRestart => {
                self.history.push(Event::Fault { what: fault.to_string() });
                for i in 0..n {
                    if let Err(e) = self.cluster.stop(i, Duration::from_secs(30)) {
                        self.errors.push(format!("rolling restart: {e:#}"));
                    }
                    self.restart(i)?;
                    // The next node goes once this one is back in sync.
                    if let Err(e) = self.cluster.await_healthy(TOPIC, Duration::from_secs(30)) {
                        self.note(format!("rolling restart: node {} not back in sync: {e:#}", self.cluster.id_of(i)));
                    }
                }
                Applied::Nothing
            }
        };
        Ok(applied)
    }

    /// Waits (a few seconds at most: libfaketime rereads its file every
    /// second) until node `i`'s clock reads `offset` seconds off true time,
    /// and notes what it read; a node whose clock does not move is an
    /// error (the fault would test nothing).
    fn confirm_clock(&mut self, i: usize, offset: i64) {
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match self.cluster.clock_of(i) {
                Ok(node_ms) => {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let off = (node_ms - now_ms) / 1000;
                    if (off - offset).abs() <= 2 {
                        self.note(format!("node {}'s clock reads {off:+} s", self.cluster.id_of(i)));
                        return;
                    }
                    last = format!("{off:+} s");
                }
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.errors.push(format!("node {}'s clock never read {offset:+} s (last: {last})", self.cluster.id_of(i)));
    }

    fn cut(&mut self, fault: &Fault, n: usize, isolated: Option<usize>) -> Result<()> {
        for (a, b) in schedule::cut_pairs(fault, n, isolated) {
            self.net.cut(a, b)?;
        }
        Ok(())
    }

    fn restart(&mut self, i: usize) -> Result<()> {
        self.cluster.start(i)?;
        self.cluster.await_ready(i, Duration::from_secs(60))?;
        self.note(format!("node {} started", self.cluster.id_of(i)));
        Ok(())
    }

    fn repair(&mut self, applied: Applied) -> Result<()> {
        let what = match applied {
            Applied::Killed(i) => {
                self.restart(i)?;
                format!("node {} restarted", self.cluster.id_of(i))
            }
            Applied::Paused(i) => {
                self.cluster.resume(i)?;
                format!("node {} resumed", self.cluster.id_of(i))
            }
            Applied::Filled(i) => {
                if let Some(v) = self.volumes.get(i) {
                    v.free()?;
                }
                format!("node {}'s disk has space again", self.cluster.id_of(i))
            }
            Applied::Cut => {
                self.net.heal()?;
                "network healed".into()
            }
            Applied::ClockJumped(i) => {
                self.cluster.set_clock_offset(i, 0)?;
                self.confirm_clock(i, 0);
                format!("node {}'s clock back on true time", self.cluster.id_of(i))
            }
            Applied::Nothing => return Ok(()),
        };
        self.history.push(Event::Repair { what });
        Ok(())
    }
}

/// Sleeps until `at` but not past `end`; false if `end` has passed.
fn sleep_until(at: Instant, end: Instant) -> bool {
    let until = at.min(end);
    if let Some(d) = until.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
    Instant::now() < end
}
