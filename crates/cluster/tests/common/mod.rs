//! Several cluster nodes in one process, each with its own broker, data
//! directory and internode listener on loopback (shared by the tests).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::{Broker, BrokerConfig};
use fjord_cluster::{ClusterConfig, ClusterNode};
use fjord_log::SystemClock;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct TestNode {
    pub node: Arc<ClusterNode>,
    pub broker: Arc<Broker>,
    pub stop: watch::Sender<bool>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub addrs: Vec<String>,
    pub voters: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, TestNode>,
    /// Replicas of new topics (`__fjord_offsets` included); 1 unless a
    /// test raises it before starting nodes.
    pub replication_factor: u16,
    /// The nodes' lease: 1200 ms (more than a controller failover, 3 x
    /// 300 ms, plus a heartbeat) unless a test changes it before starting
    /// nodes.
    pub lease: Duration,
}

pub fn config(id: u64, voters: &BTreeMap<u64, String>, addr: &str, dir: &std::path::Path) -> ClusterConfig {
    ClusterConfig {
        node_id: id,
        cluster_id: "test".into(),
        controllers: voters.clone(),
        advertised: addr.to_string(),
        rack: None,
        dir: dir.join("controller"),
        heartbeat_interval: Duration::from_millis(100),
        lease: Duration::from_millis(1200),
        election_timeout: Duration::from_millis(300),
        offsets_partitions: 4,
        snapshot_every: 10,
        default_replication_factor: 1,
        replica_lag: Duration::from_secs(2),
    }
}

impl Cluster {
    /// Binds `n` internode listeners; the first `voters` are controllers.
    pub async fn new(n: usize, voters: usize) -> (Cluster, Vec<TcpListener>) {
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
        let voters = (0..voters).map(|i| (i as u64 + 1, addrs[i].clone())).collect();
        let c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            addrs,
            voters,
            nodes: BTreeMap::new(),
            replication_factor: 1,
            lease: Duration::from_millis(1200),
        };
        (c, listeners)
    }

    /// Starts node `id` on `listener` (data under the cluster's directory,
    /// kept across restarts).
    pub async fn start(&mut self, id: u64, listener: TcpListener) -> Arc<ClusterNode> {
        let data = self.dir.path().join(format!("node-{id}"));
        let bc = BrokerConfig { node_id: id as i32, cluster_id: Some("test".into()), ..BrokerConfig::new(&data) };
        let broker = Broker::open(bc, Arc::new(SystemClock)).await.unwrap();
        broker.set_advertised_listener("kafka", format!("10.0.0.{id}:9092"));
        let (stop, rx) = watch::channel(false);
        let cfg = ClusterConfig {
            default_replication_factor: self.replication_factor,
            lease: self.lease,
            ..config(id, &self.voters, &self.addrs[id as usize - 1], &data)
        };
        let node = fjord_cluster::start(cfg, broker.clone(), listener, rx).await.unwrap();
        self.nodes.insert(id, TestNode { node: node.clone(), broker, stop });
        node
    }

    /// Joins the given nodes together (registration needs the quorum).
    pub async fn join(&self, ids: &[u64]) {
        let joins = ids.iter().map(|id| {
            let n = &self.nodes[id];
            let (node, rx) = (n.node.clone(), n.stop.subscribe());
            let listeners = n.broker.node().listeners;
            async move { node.join(listeners, rx).await.unwrap() }
        });
        futures_util::future::join_all(joins).await;
    }

    /// Stops node `id` as a crash would, from the cluster's point of view:
    /// it neither answers nor heartbeats any more.
    pub async fn stop(&mut self, id: u64) {
        let n = self.nodes.remove(&id).unwrap();
        let _ = n.stop.send(true);
        n.node.shutdown().await;
        n.broker.shutdown().await.unwrap();
    }

    pub async fn until(&self, what: &str, mut ok: impl FnMut(&Cluster) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !ok(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
