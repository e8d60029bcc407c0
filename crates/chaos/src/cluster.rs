//! The `fjord serve` processes, one per namespace, and what the checker
//! asks them over the admin API.
//!
//! Every node is a controller voter when there are at most five (the
//! controller leader is then a fault target like any other node). Nodes
//! use the same ports in their own namespaces; the failure detector runs
//! on test timings (lease 2 s, election 0.5–1 s, replica lag 2 s) so a
//! 60-second schedule sees several failovers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;

use crate::net::Network;

const KAFKA_PORT: u16 = 9092;
const HTTP_PORT: u16 = 8080;
const AMQP_PORT: u16 = 5672;
const NAMESRV_PORT: u16 = 9876;
const ROCKETMQ_BROKER_PORT: u16 = 10911;
const ROCKETMQ_GRPC_PORT: u16 = 8081;
/// The AMQP workload's user (the default `guest` may log in from loopback
/// only, and the clients come from the host's side of the bridge).
const AMQP_USER: &str = "chaos";
const INTERNODE_PORT: u16 = 9700;

/// One node's process and files.
#[derive(Debug)]
struct Node {
    id: i32,
    namespace: String,
    addr: std::net::Ipv4Addr,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

/// A partition as the admin API shows it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PartitionState {
    /// Partition index.
    pub(crate) partition: u32,
    /// Current leader, if any.
    pub(crate) leader: Option<i32>,
    /// Assigned replicas.
    pub(crate) replicas: Vec<i32>,
    /// In-sync replicas.
    pub(crate) isr: Vec<i32>,
}

#[derive(Debug, Deserialize)]
struct TopicView {
    partitions: Vec<PartitionState>,
}

#[derive(Debug, Deserialize)]
struct ClusterInfo {
    nodes: Vec<NodeClock>,
}

#[derive(Debug, Deserialize)]
struct NodeClock {
    time_ms: i64,
}

#[derive(Debug, Deserialize)]
struct NodeView {
    id: i32,
    controller_leader: bool,
}

/// The nodes of one run.
#[derive(Debug)]
pub(crate) struct Cluster {
    root: PathBuf,
    fjord: PathBuf,
    controllers: String,
    nodes: Vec<Node>,
    http: ureq::Agent,
    /// libfaketime, when clock jumps are among the faults.
    faketime: Option<PathBuf>,
}

impl Cluster {
    /// Nodes for every namespace of `net`, their data under `root`; none
    /// started yet.
    pub(crate) fn new(net: &Network, count: usize, fjord: &Path, root: &Path) -> Result<Cluster> {
        let voters = if count <= 5 { count } else { 3 };
        let controllers: Vec<String> =
            (0..voters).map(|i| format!("{}@{}:{INTERNODE_PORT}", i + 1, net.node_addr(i))).collect();
        let mut nodes = Vec::new();
        for i in 0..count {
            let dir = root.join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            nodes.push(Node {
                id: i as i32 + 1,
                namespace: net.namespace(i),
                addr: net.node_addr(i),
                dir,
                child: None,
                paused: false,
                starts: 0,
            });
        }
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(3)))
            .http_status_as_error(false)
            .build();
        Ok(Cluster {
            root: root.to_path_buf(),
            fjord: fjord.to_path_buf(),
            controllers: controllers.join(","),
            nodes,
            http: config.into(),
            faketime: None,
        })
    }

    /// Runs every node under libfaketime (`library`), its clock on true
    /// time until a clock-jump fault moves it ([`crate::clock`]).
    pub(crate) fn enable_clock_jumps(&mut self, library: PathBuf) -> Result<()> {
        for n in &self.nodes {
            crate::clock::set_offset(&n.dir, 0)?;
        }
        self.faketime = Some(library);
        Ok(())
    }

    /// Sets node `i`'s wall clock `seconds` off true time.
    pub(crate) fn set_clock_offset(&self, i: usize, seconds: i64) -> Result<()> {
        crate::clock::set_offset(&self.nodes[i].dir, seconds)
    }

    /// The seed's directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Node index of a node id.
    pub(crate) fn index_of(&self, id: i32) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Node id of an index.
    pub(crate) fn id_of(&self, index: usize) -> i32 {
        self.nodes[index].id
    }

    /// Kafka bootstrap servers: every node.
    pub(crate) fn bootstrap(&self) -> String {
        let all: Vec<String> = self.nodes.iter().map(|n| format!("{}:{KAFKA_PORT}", n.addr)).collect();
        all.join(",")
    }

    /// AMQP URIs of every node.
    pub(crate) fn amqp_uris(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("amqp://{AMQP_USER}:{AMQP_USER}@{}:{AMQP_PORT}/%2f", n.addr)).collect()
    }

    /// Every node's RocketMQ name server, `;`-separated.
    pub(crate) fn namesrv(&self) -> String {
        let all: Vec<String> = self.nodes.iter().map(|n| format!("{}:{NAMESRV_PORT}", n.addr)).collect();
        all.join(";")
    }

    /// Every node's RocketMQ gRPC endpoint, `;`-separated.
    pub(crate) fn grpc_endpoints(&self) -> String {
        let all: Vec<String> = self.nodes.iter().map(|n| format!("{}:{ROCKETMQ_GRPC_PORT}", n.addr)).collect();
        all.join(";")
    }

    /// Node `i`'s data directory.
    pub(crate) fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("data")
    }

    /// Where node `i` keeps a partition's log.
    pub(crate) fn partition_dir(&self, i: usize, topic: &str, partition: i32) -> PathBuf {
        self.data_dir(i).join("topics").join(topic).join(partition.to_string())
    }

    /// Starts node `i` (it serves once a quorum runs: see [`Cluster::await_ready`]).
    pub(crate) fn start(&mut self, i: usize) -> Result<()> {
        let fjord = self.fjord.clone();
        let controllers = self.controllers.clone();
        let faketime = self.faketime.clone();
        let n = &mut self.nodes[i];
        n.starts += 1;
        let ready = n.dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = File::create(n.dir.join(format!("fjord-{}.log", n.starts)))?;
        let on = |port: u16| format!("{}:{port}", n.addr);
        // Only the network namespace: `ip netns exec` would give the node a
        // mount namespace of its own too, a copy holding every node's
        // file-system mount, so a power cut's unmount of one node's disk
        // would leave it mounted in the others' (and mounting it again
        // would run two file systems on one disk).
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", n.namespace)).arg("--");
        if let Some(lib) = &faketime {
            // Through `env`, so that only the node runs under libfaketime:
            // preloaded into nsenter too, it would share its state with
            // the node through shared memory and the node would never
            // reread its offset file.
            cmd.arg("env");
            for (k, v) in crate::clock::env(lib, &n.dir) {
                cmd.arg(format!("{k}={v}"));
            }
        }
        cmd.arg(&fjord)
            .arg("serve")
            .arg("--data-dir")
            .arg(n.dir.join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .env("FJORD_NODE__ID", n.id.to_string())
            .env("FJORD_CLUSTER__CONTROLLERS", &controllers)
            .env("FJORD_CLUSTER__CLUSTER_ID", "fjord-chaos")
            .env("FJORD_CLUSTER__BIND", on(INTERNODE_PORT))
            .env("FJORD_CLUSTER__HEARTBEAT_INTERVAL_MS", "300")
            .env("FJORD_CLUSTER__LEASE_MS", "2000")
            .env("FJORD_CLUSTER__ELECTION_TIMEOUT_MS", "400")
            .env("FJORD_CLUSTER__REPLICA_LAG_MS", "2000")
            .env("FJORD_GROUPS__INITIAL_REBALANCE_DELAY_MS", "0")
            .env("FJORD_LOG__LEVEL", "info")
            .env("FJORD_LISTENERS__KAFKA__BIND", on(KAFKA_PORT))
            .env("FJORD_LISTENERS__HTTP__BIND", on(HTTP_PORT))
            .env("FJORD_LISTENERS__AMQP__BIND", on(AMQP_PORT))
            .env("FJORD_LISTENERS__ROCKETMQ_NAMESRV__BIND", on(NAMESRV_PORT))
            .env("FJORD_LISTENERS__ROCKETMQ_BROKER__BIND", on(ROCKETMQ_BROKER_PORT))
            .env("FJORD_LISTENERS__ROCKETMQ_GRPC__BIND", on(ROCKETMQ_GRPC_PORT))
            .env("FJORD_AMQP__DEFAULT_USER", AMQP_USER)
            .env("FJORD_AMQP__DEFAULT_PASS", AMQP_USER);
        cmd.env("FJORD_LISTENERS__AMQP_MANAGEMENT__BIND", on(0));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", fjord.display()))?;
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    /// Waits until node `i` wrote its ready file.
    pub(crate) fn await_ready(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let n = &mut self.nodes[i];
        let ready = n.dir.join("ready.json");
        while Instant::now() < deadline {
            if ready.exists() {
                return Ok(());
            }
            if let Some(child) = n.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("node {} exited ({status}) before it was ready; see {}", n.id, n.dir.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("node {} not ready within {timeout:?}; see {}", n.id, n.dir.display())
    }

    /// Whether node `i` runs and is not paused.
    pub(crate) fn serving(&self, i: usize) -> bool {
        self.nodes[i].child.is_some() && !self.nodes[i].paused
    }

    /// Whether node `i` has a process (possibly paused).
    pub(crate) fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    fn signal(&self, i: usize, sig: Signal) -> Result<()> {
        let Some(child) = self.nodes[i].child.as_ref() else { return Ok(()) };
        kill(Pid::from_raw(child.id() as i32), sig).with_context(|| format!("{sig} to node {}", self.nodes[i].id))
    }

    /// SIGKILL: a crash.
    pub(crate) fn kill(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        if let Some(mut child) = n.child.take() {
            // A stopped process dies on SIGKILL too.
            child.kill()?;
            child.wait()?;
        }
        n.paused = false;
        Ok(())
    }

    /// SIGTERM and wait for a clean exit (SIGKILL after `grace`). A node
    /// that fails its clean shutdown is an error the run reports.
    pub(crate) fn stop(&mut self, i: usize, grace: Duration) -> Result<()> {
        if self.nodes[i].paused {
            self.resume(i)?;
        }
        self.signal(i, Signal::SIGTERM)?;
        let n = &mut self.nodes[i];
        let Some(mut child) = n.child.take() else { return Ok(()) };
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("node {} exited with {status} on SIGTERM", n.id);
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                child.kill()?;
                child.wait()?;
                bail!("node {} did not stop within {grace:?} of SIGTERM", n.id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP.
    pub(crate) fn pause(&mut self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGSTOP)?;
        self.nodes[i].paused = self.nodes[i].child.is_some();
        Ok(())
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self, i: usize) -> Result<()> {
        self.signal(i, Signal::SIGCONT)?;
        self.nodes[i].paused = false;
        Ok(())
    }

    fn try_get<T: serde::de::DeserializeOwned>(&self, i: usize, path: &str) -> Result<T> {
        if !self.serving(i) {
            bail!("node {} is down", self.nodes[i].id);
        }
        let url = format!("http://{}:{HTTP_PORT}{path}", self.nodes[i].addr);
        let mut resp = self.http.get(&url).call().with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url}: {}", resp.status());
        }
        resp.body_mut().read_json().with_context(|| format!("GET {url}: the body"))
    }

    /// Reassigns `partition` of `topic` to `replicas` (node ids, preferred
    /// leader first) through the first serving node that accepts it.
    pub(crate) fn reassign(&self, topic: &str, partition: i32, replicas: &[i32]) -> Result<()> {
        let body = serde_json::json!({ "replicas": replicas }).to_string();
        let mut last = anyhow::anyhow!("no serving node");
        for i in (0..self.len()).filter(|i| self.serving(*i)) {
            let url = format!(
                "http://{}:{HTTP_PORT}/api/v1/topics/{topic}/partitions/{partition}/replicas",
                self.nodes[i].addr
            );
            match self.http.put(&url).header("content-type", "application/json").send(body.as_str()) {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => last = anyhow::anyhow!("PUT {url}: {}", resp.status()),
                Err(e) => last = anyhow::Error::new(e).context(format!("PUT {url}")),
            }
        }
        Err(last)
    }

    /// Node `i`'s wall clock (epoch ms), as its admin API reports it.
    pub(crate) fn clock_of(&self, i: usize) -> Result<i64> {
        let view: ClusterInfo = self.try_get(i, "/api/v1/cluster?scope=node")?;
        view.nodes.first().map(|n| n.time_ms).context("the node's answer lists no node")
    }

    fn get<T: serde::de::DeserializeOwned>(&self, i: usize, path: &str) -> Option<T> {
        self.try_get(i, path).ok()
    }

    /// The controller leader's node index, as the first serving node that
    /// answers says.
    pub(crate) fn controller_leader(&self) -> Option<usize> {
        (0..self.len()).find_map(|i| {
            let nodes: Vec<NodeView> = self.get(i, "/api/v1/cluster/nodes")?;
            nodes.into_iter().find(|n| n.controller_leader).and_then(|n| self.index_of(n.id))
        })
    }

    /// A topic's partitions as the first serving node that answers sees them.
    pub(crate) fn partitions(&self, topic: &str) -> Option<Vec<PartitionState>> {
        let path = format!("/api/v1/topics/{topic}");
        (0..self.len()).find_map(|i| self.get::<TopicView>(i, &path).map(|t| t.partitions))
    }

    /// The node index leading `partition` of `topic`.
    pub(crate) fn leader_of(&self, topic: &str, partition: i32) -> Option<usize> {
        let parts = self.partitions(topic)?;
        let p = parts.into_iter().find(|p| p.partition as i32 == partition)?;
        self.index_of(p.leader?)
    }

    /// Waits until every partition of `topic` has a leader and every
    /// replica back in sync, as every serving node sees it.
    pub(crate) fn await_healthy(&self, topic: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            let views: Vec<Result<TopicView>> =
                (0..self.len()).map(|i| self.try_get(i, &format!("/api/v1/topics/{topic}"))).collect();
            let healthy = views.iter().all(|v| {
                v.as_ref().is_ok_and(|t| {
                    let parts = &t.partitions;
                    !parts.is_empty()
                        && parts
                            .iter()
                            .all(|p| p.leader.is_some() && p.isr.len() == p.replicas.len() && !p.replicas.is_empty())
                })
            });
            if healthy {
                return Ok(());
            }
            last = format!("{views:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("topic {topic} not healthy within {timeout:?}: {last}")
    }

    /// Stops every node (SIGTERM, clean exits expected); returns the
    /// failures to stop cleanly, if any.
    pub(crate) fn stop_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for i in 0..self.len() {
            if let Err(e) = self.stop(i, Duration::from_secs(30)) {
                errors.push(format!("{e:#}"));
            }
        }
        errors
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
