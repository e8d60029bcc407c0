//! `fjord dev cluster --nodes N`: a local cluster, each node its own
//! `fjord serve` process, in the foreground until Ctrl-C or SIGTERM.
//!
//! Everything lives under `./fjord-cluster/` (or `--dir`): the cluster's id
//! (`cluster-id`, made once, so a second run restarts the same cluster with
//! its data) and one `node-<id>/` per node holding its data, its log
//! (`fjord.log`) and its ready file. Node `i` listens on each default port
//! plus `10 * (i - 1)` (Kafka 9092, 9102, 9112, ...; internode 9700, 9710,
//! ...), so up to 9 nodes fit beside each other; the first 1, 3 or 5 nodes
//! are the controller quorum's voters. A node that exits is reported and
//! the others keep running (kill one to watch the cluster cope).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

/// Options of `fjord dev cluster`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevClusterArgs {
    /// How many nodes (1 to 9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub nodes: u32,
    /// Where the cluster's data lives.
    #[arg(long, default_value = "fjord-cluster")]
    pub dir: PathBuf,
    /// Added to every port (to run beside a node on the default ports).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=40000))]
    pub port_offset: u16,
}

/// Default ports of each listener (node 1's).
const PORTS: [(&str, u16); 8] = [
    ("kafka", 9092),
    ("rocketmq_namesrv", 9876),
    ("rocketmq_broker", 10911),
    ("rocketmq_grpc", 8081),
    ("amqp", 5672),
    ("amqp_management", 15672),
    ("http", 9600),
    ("cluster", 9700),
];

/// How many of `n` nodes vote in the controller quorum.
fn voters(n: u32) -> u32 {
    match n {
        1 | 2 => 1,
        3 | 4 => 3,
        _ => 5,
    }
}

fn port(default: u16, node: u32) -> u16 {
    default + 10 * (node as u16 - 1)
}

#[cfg(test)]
fn node_env(id: u32, n: u32, cluster_id: &str, data: &Path) -> Vec<(String, String)> {
    node_env_at(id, n, cluster_id, data, 0)
}

/// The environment of node `id`'s `fjord serve`, every port shifted by
/// `offset`.
fn node_env_at(id: u32, n: u32, cluster_id: &str, data: &Path, offset: u16) -> Vec<(String, String)> {
    let port = |default: u16, node: u32| port(default, node) + offset;
    let controllers: Vec<String> = (1..=voters(n)).map(|v| format!("{v}@127.0.0.1:{}", port(9700, v))).collect();
    let mut env = vec![
        ("FJORD_NODE__ID".to_string(), id.to_string()),
        ("FJORD_NODE__DATA_DIR".to_string(), data.display().to_string()),
        ("FJORD_CLUSTER__CONTROLLERS".to_string(), controllers.join(",")),
        ("FJORD_CLUSTER__CLUSTER_ID".to_string(), cluster_id.to_string()),
        ("FJORD_CLUSTER__BIND".to_string(), format!("127.0.0.1:{}", port(9700, id))),
    ];
    for (name, default) in PORTS.iter().filter(|(n, _)| *n != "cluster") {
        env.push((
            format!("FJORD_LISTENERS__{}__BIND", name.to_uppercase()),
            format!("127.0.0.1:{}", port(*default, id)),
        ));
    }
    env
}

fn cluster_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("cluster-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!("dev-{:016x}", rand_u64());
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

/// Enough randomness for a dev cluster's id, without another dependency.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

struct Node {
    id: u32,
    child: Child,
    ready: PathBuf,
    log: PathBuf,
}

/// Runs the cluster until `stop` resolves; returns an error if a node could
/// not start.
/// `json`: print one JSON array (`-o json`) instead of a table.
pub async fn run(args: DevClusterArgs, json: bool, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let id = cluster_id(&dir)?;
    let exe = std::env::current_exe().context("finding the fjord binary")?;
    let mut nodes = Vec::new();
    for n in 1..=args.nodes {
        let home = dir.join(format!("node-{n}"));
        std::fs::create_dir_all(&home)?;
        let ready = home.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = home.join("fjord.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--ready-file")
            .arg(&ready)
            .envs(node_env_at(n, args.nodes, &id, &home.join("data"), args.port_offset))
            .env_remove("FJORD_CONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting node {n}"))?;
        nodes.push(Node { id: n, child, ready, log });
    }
    let started = wait_ready(&mut nodes).await;
    let listing = match started {
        Ok(l) => l,
        Err(e) => {
            stop_all(&mut nodes).await;
            return Err(e);
        }
    };
    print_nodes(&listing, &id, json);
    // A node that dies (or is killed, to watch the cluster cope) is
    // reported; the others keep running until Ctrl-C or all are gone.
    tokio::select! {
        _ = stop => {}
        _ = watch_children(&mut nodes) => eprintln!("fjord dev cluster: every node exited"),
    }
    stop_all(&mut nodes).await;
    Ok(())
}

/// Waits until every node wrote its ready file (a quorum forms only once
/// enough voters run, so they all start first); fails if one exits.
async fn wait_ready(nodes: &mut [Node]) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut out = vec![Value::Null; nodes.len()];
    loop {
        for (i, n) in nodes.iter_mut().enumerate() {
            if let Some(status) = n.child.try_wait()? {
                bail!("node {} exited ({status}) before it was ready; see {}", n.id, n.log.display());
            }
            if out[i].is_null()
                && let Ok(bytes) = std::fs::read(&n.ready)
            {
                let listeners: Map<String, Value> = serde_json::from_slice(&bytes)?;
                out[i] = json!({ "node_id": n.id, "pid": n.child.id(), "listeners": listeners });
            }
        }
        if out.iter().all(|v| !v.is_null()) {
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!("the cluster was not ready within 3 minutes; see the nodes' fjord.log");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reports each node that exits; returns once none is left.
async fn watch_children(nodes: &mut [Node]) {
    let mut gone = vec![false; nodes.len()];
    loop {
        for (i, n) in nodes.iter_mut().enumerate() {
            if !gone[i]
                && let Ok(Some(status)) = n.child.try_wait()
            {
                gone[i] = true;
                eprintln!("fjord dev cluster: node {} exited ({status}); see {}", n.id, n.log.display());
            }
        }
        if gone.iter().all(|g| *g) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[allow(clippy::print_stdout)] // The command's output.
fn print_nodes(listing: &[Value], cluster_id: &str, json: bool) {
    if json {
        println!("{}", Value::Array(listing.to_vec()));
        return;
    }
    println!("cluster {cluster_id}: {} nodes ready (Ctrl-C stops them)", listing.len());
    println!(
        "{:<5} {:<8} {:<16} {:<16} {:<16} {:<16} {:<16}",
        "NODE", "PID", "KAFKA", "ROCKETMQ NS", "AMQP", "HTTP", "CLUSTER"
    );
    for n in listing {
        let l = &n["listeners"];
        let s = |k: &str| l[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<5} {:<8} {:<16} {:<16} {:<16} {:<16} {:<16}",
            n["node_id"].to_string(),
            n["pid"].to_string(),
            s("kafka"),
            s("rocketmq_namesrv"),
            s("amqp"),
            s("http"),
            s("cluster")
        );
    }
}

/// SIGTERM to every node, then waits for each (SIGKILL after 20 s).
async fn stop_all(nodes: &mut [Node]) {
    for n in nodes.iter_mut() {
        // Never signal a pid that was already reaped (it may be reused).
        if !matches!(n.child.try_wait(), Ok(None)) {
            continue;
        }
        let pid = nix::unistd::Pid::from_raw(n.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in nodes.iter_mut() {
        while matches!(n.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = n.child.kill();
                let _ = n.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_their_own_ports_and_the_same_voters() {
        let a = node_env(1, 3, "c", Path::new("/d1"));
        let b = node_env(3, 3, "c", Path::new("/d3"));
        let get = |env: &[(String, String)], k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get(&a, "FJORD_LISTENERS__KAFKA__BIND").as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(get(&b, "FJORD_LISTENERS__KAFKA__BIND").as_deref(), Some("127.0.0.1:9112"));
        assert_eq!(get(&b, "FJORD_CLUSTER__BIND").as_deref(), Some("127.0.0.1:9720"));
        let quorum = "1@127.0.0.1:9700,2@127.0.0.1:9710,3@127.0.0.1:9720";
        assert_eq!(get(&a, "FJORD_CLUSTER__CONTROLLERS").as_deref(), Some(quorum));
        assert_eq!(get(&b, "FJORD_CLUSTER__CONTROLLERS").as_deref(), Some(quorum));
        let shifted = node_env_at(2, 3, "c", Path::new("/d2"), 20000);
        assert_eq!(get(&shifted, "FJORD_LISTENERS__KAFKA__BIND").as_deref(), Some("127.0.0.1:29102"));
        // No two listeners of nine nodes share a port.
        let mut ports: Vec<u16> = (1..=9).flat_map(|n| PORTS.iter().map(move |(_, p)| port(*p, n))).collect();
        let total = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), total);
        assert_eq!(voters(5), 5);
        assert_eq!(voters(2), 1);
    }
}
