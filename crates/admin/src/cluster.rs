//! `GET /api/v1/cluster` (like `mqadmin clusterList`) and
//! `GET /api/v1/cluster/health`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use fjord_broker::{Broker, TrafficSnapshot};
use parking_lot::Mutex;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{AdminState, ApiError, ErrorBody};

/// Window over which rates are averaged.
const RATE_WINDOW_MS: i64 = 10_000;

/// The health check reports the disk when less than this share of it, or
/// less than [`DISK_LOW_BYTES`], is free.
const DISK_LOW_RATIO: f64 = 0.01;
const DISK_LOW_BYTES: u64 = 1 << 30;

/// Samples the broker's traffic counters once a second and keeps the last
/// [`RATE_WINDOW_MS`] of samples, so rates need no extra work on the
/// produce and fetch paths.
#[derive(Debug)]
pub(crate) struct RateSampler {
    broker: Arc<Broker>,
    samples: Mutex<VecDeque<(i64, TrafficSnapshot)>>,
}

/// Per-second rates over the sampling window.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rates {
    pub(crate) put_tps: f64,
    pub(crate) get_tps: f64,
    pub(crate) bytes_in_per_sec: f64,
    pub(crate) bytes_out_per_sec: f64,
}

impl RateSampler {
    pub(crate) fn new(broker: Arc<Broker>) -> Self {
        let first = (broker.clock().now_ms(), broker.traffic());
        RateSampler { broker, samples: Mutex::new(VecDeque::from([first])) }
    }

    fn sample(&self) {
        let now = self.broker.clock().now_ms();
        let mut s = self.samples.lock();
        s.push_back((now, self.broker.traffic()));
        while s.len() > 2 && s.front().is_some_and(|(t, _)| now - t > RATE_WINDOW_MS) {
            s.pop_front();
        }
    }

    pub(crate) fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut stop = self.broker.shutdown_signal();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => self.sample(),
                    _ = stop.changed() => return,
                }
            }
        })
    }

    /// Rates between the oldest sample in the window and now.
    pub(crate) fn rates(&self) -> Rates {
        let (now, cur) = (self.broker.clock().now_ms(), self.broker.traffic());
        let Some((t0, old)) = self.samples.lock().front().copied() else { return Rates::default() };
        let secs = (now - t0) as f64 / 1000.0;
        if secs <= 0.0 {
            return Rates::default();
        }
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        Rates {
            put_tps: rate(cur.records_in, old.records_in),
            get_tps: rate(cur.records_out, old.records_out),
            bytes_in_per_sec: rate(cur.bytes_in, old.bytes_in),
            bytes_out_per_sec: rate(cur.bytes_out, old.bytes_out),
        }
    }
}

/// Disk use of the data directory.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub(crate) struct DiskView {
    data_dir: String,
    /// Bytes in files under the data directory.
    used_bytes: u64,
    /// Bytes available to the broker on the data directory's file system.
    free_bytes: u64,
    /// Size of that file system.
    total_bytes: u64,
}

/// One node of the cluster.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub(crate) struct NodeView {
    id: i32,
    rack: Option<String>,
    version: String,
    started_ms: i64,
    uptime_ms: i64,
    /// The node's wall clock when it answered (epoch ms): compare nodes'
    /// clocks, which time-based retention, timestamps and delays follow.
    time_ms: i64,
    /// Advertised address per listener name.
    listeners: BTreeMap<String, String>,
    /// Records produced per second (last 10 s).
    put_tps: f64,
    /// Records delivered to consumers per second (last 10 s).
    get_tps: f64,
    bytes_in_per_sec: f64,
    bytes_out_per_sec: f64,
    records_in_total: u64,
    records_out_total: u64,
    bytes_in_total: u64,
    bytes_out_total: u64,
    /// Sum of every consumer group's lag, in messages.
    backlog: u64,
    disk: DiskView,
}

/// A node of the cluster that did not report: fenced (its lease ran out)
/// or unreachable from the node that answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnavailableNode {
    id: i32,
    /// `fenced` or `unreachable`.
    state: String,
    /// Advertised address per listener name.
    listeners: BTreeMap<String, String>,
    /// Why it did not report.
    reason: String,
}

/// The cluster.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClusterView {
    cluster_id: String,
    version: String,
    /// The node leading the controller quorum (this node, alone).
    controller_id: i32,
    /// Nodes that reported, each with its own figures (in a cluster, the
    /// node that answers asks the others).
    nodes: Vec<NodeView>,
    /// Nodes of the cluster that did not report.
    unavailable_nodes: Vec<UnavailableNode>,
    /// Topics (internal ones included).
    topics: usize,
    partitions: usize,
    /// Consumer groups with members or committed offsets.
    groups: usize,
}

pub(crate) fn disk_usage(dir: &Path) -> (u64, u64, u64) {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(_) => e.metadata().map_or(0, |m| m.len()),
                Err(_) => 0,
            })
            .sum()
    }
    let (free, total) = match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let frag = s.fragment_size();
            (s.blocks_available() * frag, s.blocks() * frag)
        }
        Err(_) => (0, 0),
    };
    (walk(dir), free, total)
}

async fn disk_view(dir: PathBuf) -> Result<DiskView, ApiError> {
    let d = dir.clone();
    let (used_bytes, free_bytes, total_bytes) = tokio::task::spawn_blocking(move || disk_usage(&d))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(DiskView { data_dir: dir.display().to_string(), used_bytes, free_bytes, total_bytes })
}

/// `?scope=node`: only the node asked (what nodes ask each other).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct InfoQuery {
    /// `cluster` (default): every node; `node`: only this one.
    scope: Option<String>,
}

/// The cluster, its nodes and their load (like `mqadmin clusterList`). Any
/// node answers for the whole cluster: it asks the other serving nodes
/// for their own figures (2 s each) and lists those that did not answer.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "cluster", params(InfoQuery), responses(
    (status = 200, body = ClusterView),
    (status = 400, body = ErrorBody),
    (status = 500, body = ErrorBody)))]
pub(crate) async fn info(
    State(s): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<InfoQuery>,
) -> Result<Json<ClusterView>, ApiError> {
    let whole = crate::forward::whole_cluster(q.scope.as_deref())?;
    let mut view = local_info(&s).await?;
    if let (true, Some(placement)) = (whole, s.broker.placement()) {
        view.controller_id = placement.controller_id;
        let me = s.broker.config().node_id;
        let answers = crate::forward::ask_others::<NodeAnswer>(&placement, me, "/api/v1/cluster?scope=node").await;
        for (n, r) in answers {
            // A node answering for itself lists itself alone.
            let r = r.and_then(|v| v.nodes.into_iter().next().ok_or_else(|| "its answer lists no node".to_string()));
            match r {
                Ok(v) => view.nodes.push(v),
                Err(reason) => view.unavailable_nodes.push(UnavailableNode {
                    id: n.node_id,
                    state: "unreachable".into(),
                    listeners: n.listeners,
                    reason,
                }),
            }
        }
        for n in &placement.fenced {
            view.unavailable_nodes.push(UnavailableNode {
                id: n.node_id,
                state: "fenced".into(),
                listeners: n.listeners.clone(),
                reason: "its lease with the controller ran out".into(),
            });
        }
        view.nodes.sort_by_key(|n| n.id);
    }
    Ok(Json(view))
}

/// What another node answers for itself (`?scope=node`): one node.
#[derive(serde::Deserialize)]
struct NodeAnswer {
    nodes: Vec<NodeView>,
}

async fn local_info(s: &AdminState) -> Result<ClusterView, ApiError> {
    let b = &s.broker;
    let now = b.clock().now_ms();
    let traffic = b.traffic();
    let rates = s.rates.rates();
    let node = b.node();
    let groups = crate::groups::all_groups(s);
    let backlog = crate::groups::lags(s, &groups).await.iter().flatten().map(|o| o.lag).sum();
    let topics = b.topics();
    let version = env!("CARGO_PKG_VERSION").to_string();
    let node = NodeView {
        id: node.node_id,
        rack: node.rack,
        version: version.clone(),
        started_ms: b.started_ms(),
        uptime_ms: now - b.started_ms(),
        time_ms: now,
        listeners: node.listeners,
        put_tps: rates.put_tps,
        get_tps: rates.get_tps,
        bytes_in_per_sec: rates.bytes_in_per_sec,
        bytes_out_per_sec: rates.bytes_out_per_sec,
        records_in_total: traffic.records_in,
        records_out_total: traffic.records_out,
        bytes_in_total: traffic.bytes_in,
        bytes_out_total: traffic.bytes_out,
        backlog,
        disk: disk_view(b.config().data_dir.clone()).await?,
    };
    Ok(ClusterView {
        cluster_id: b.cluster_id().to_string(),
        version,
        controller_id: b.config().node_id,
        nodes: vec![node],
        unavailable_nodes: Vec::new(),
        partitions: topics.iter().map(|t| t.partitions().len()).sum(),
        topics: topics.len(),
        groups: groups.len(),
    })
}

/// A node as the cluster's metadata describes it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClusterNodeView {
    id: i32,
    /// `serving` or `fenced` (its lease with the controller ran out).
    state: String,
    rack: Option<String>,
    /// Advertised address per listener name.
    listeners: BTreeMap<String, String>,
    /// A voter of the controller quorum.
    controller: bool,
    /// The controller quorum's current leader.
    controller_leader: bool,
    /// Partitions this node leads (internal ones included).
    partitions_led: usize,
}

/// Every node of the cluster with its state and role (`fjord cluster
/// nodes`); on a single node, that node.
#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster", responses(
    (status = 200, body = [ClusterNodeView])))]
pub(crate) async fn nodes(State(s): State<AdminState>) -> Json<Vec<ClusterNodeView>> {
    let b = &s.broker;
    let Some(p) = b.placement() else {
        let n = b.node();
        let partitions_led = b.topics().iter().map(|t| t.partitions().len()).sum();
        return Json(vec![ClusterNodeView {
            id: n.node_id,
            state: "serving".into(),
            rack: n.rack,
            listeners: n.listeners,
            controller: true,
            controller_leader: true,
            partitions_led,
        }]);
    };
    let led = |id: i32| p.topics.values().flatten().filter(|a| a.leader == id).count();
    let view = |n: &fjord_broker::NodeInfo, state: &str| ClusterNodeView {
        id: n.node_id,
        state: state.into(),
        rack: n.rack.clone(),
        listeners: n.listeners.clone(),
        controller: p.controllers.contains(&n.node_id),
        controller_leader: p.controller_id == n.node_id,
        partitions_led: led(n.node_id),
    };
    let mut out: Vec<ClusterNodeView> =
        p.nodes.iter().map(|n| view(n, "serving")).chain(p.fenced.iter().map(|n| view(n, "fenced"))).collect();
    out.sort_by_key(|n| n.id);
    Json(out)
}

/// One health check.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Check {
    name: String,
    ok: bool,
    detail: String,
}

/// Overall health.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthView {
    /// `ok` when every check passes, else `degraded`.
    status: String,
    checks: Vec<Check>,
}

/// Logs refusing writes after a failed write or fsync, named; the broker
/// retries them every few seconds.
fn logs_writable_check(poisoned: &[fjord_broker::PoisonedLog]) -> Check {
    let detail = if poisoned.is_empty() {
        "every log accepts writes".into()
    } else {
        let named: Vec<String> = poisoned.iter().map(|p| format!("{} ({})", p.log, p.reason)).collect();
        format!("refusing writes until recovered: {}", named.join("; "))
    };
    Check { name: "logs_writable".into(), ok: poisoned.is_empty(), detail }
}

/// Topics whose data could not be loaded at start, named with the reason.
fn topics_online_check(offline: &BTreeMap<String, String>) -> Check {
    let detail = if offline.is_empty() {
        "every topic loaded".into()
    } else {
        let named: Vec<String> = offline.iter().map(|(t, why)| format!("{t} ({why})")).collect();
        format!("offline (data kept; repair or delete): {}", named.join("; "))
    };
    Check { name: "topics_online".into(), ok: offline.is_empty(), detail }
}

/// In a cluster: partitions with no serving leader, and partitions led
/// here with replicas out of sync (each named, at most ten of a kind).
fn replication_check(r: &fjord_broker::ReplicationStatus) -> Check {
    let names = |v: &[fjord_broker::TopicPartition]| {
        let mut s: Vec<String> = v.iter().take(10).map(ToString::to_string).collect();
        if v.len() > 10 {
            s.push(format!("and {} more", v.len() - 10));
        }
        s.join(", ")
    };
    let mut detail = Vec::new();
    if !r.offline.is_empty() {
        detail.push(format!("{} offline: {}", r.offline.len(), names(&r.offline)));
    }
    if !r.under_replicated.is_empty() {
        detail.push(format!("{} under-replicated: {}", r.under_replicated.len(), names(&r.under_replicated)));
    }
    let ok = detail.is_empty();
    let detail = if ok { "every partition has a leader and its replicas in sync".into() } else { detail.join("; ") };
    Check { name: "partitions_replicated".into(), ok, detail }
}

/// Health checks: listeners bound and partitions recovered, data
/// directory writable, disk not nearly full, no log refusing writes, no
/// topic offline, no partition offline or (led here) under-replicated.
/// Always 200; `status` says.
#[utoipa::path(get, path = "/api/v1/cluster/health", tag = "cluster", responses(
    (status = 200, body = HealthView),
    (status = 500, body = ErrorBody)))]
pub(crate) async fn health(State(s): State<AdminState>) -> Result<Json<HealthView>, ApiError> {
    let dir = s.broker.config().data_dir.clone();
    let ready = s.is_ready();
    let probe_dir = dir.clone();
    let writable = tokio::task::spawn_blocking(move || {
        let probe = probe_dir.join(".health-probe");
        std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let disk = disk_view(dir).await?;
    let free_ratio = if disk.total_bytes == 0 { 1.0 } else { disk.free_bytes as f64 / disk.total_bytes as f64 };
    let checks = vec![
        Check {
            name: "ready".into(),
            ok: ready,
            detail: if ready { "listeners bound, partitions recovered".into() } else { "starting or stopping".into() },
        },
        Check {
            name: "storage_writable".into(),
            ok: writable.is_ok(),
            detail: match &writable {
                Ok(()) => format!("{} is writable", disk.data_dir),
                Err(e) => format!("cannot write to {}: {e}", disk.data_dir),
            },
        },
        Check {
            name: "disk_space".into(),
            ok: free_ratio >= DISK_LOW_RATIO && (disk.free_bytes >= DISK_LOW_BYTES || disk.total_bytes == 0),
            detail: format!("{} of {} bytes free ({:.1}%)", disk.free_bytes, disk.total_bytes, free_ratio * 100.0),
        },
        logs_writable_check(&s.broker.poisoned_logs()),
        topics_online_check(&s.broker.offline_topics()),
        replication_check(&s.broker.replication_status()),
    ];
    let status = if checks.iter().all(|c| c.ok) { "ok" } else { "degraded" };
    Ok(Json(HealthView { status: status.into(), checks }))
}
