//! `/metrics` in the Prometheus text format.
//!
//! Two sources, one page:
//! - **The `metrics` facade**: gateways and the log store record request
//!   latency histograms (`fjord_request_duration_seconds{protocol, api}`),
//!   error counters, connection gauges and fsync latency. [`install`] makes
//!   the Prometheus exporter the process's recorder (once per process);
//!   histograms get [`LATENCY_BUCKETS`], so they render as histograms.
//! - **The broker's own state**, read at scrape time: traffic counters per
//!   topic, partition and topic counts, storage bytes, free disk, consumer
//!   group lag, delayed messages. Nothing is recorded twice, and a deleted
//!   topic's series simply disappear.
//!
//! Per-partition series are off unless `AdminConfig::per_partition_metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::AdminState;

/// Histogram buckets for every `*_seconds` metric: 50 µs to 30 s.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus exporter as the global `metrics` recorder. The
/// first call installs it; later ones (several brokers in one test
/// process) share it. `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets(&LATENCY_BUCKETS))
                // Series of closed connections' labels and removed topics
                // fade out instead of growing forever.
                .map(|b| b.idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(600))));
            match builder.and_then(PrometheusBuilder::install_recorder) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the Prometheus recorder; /metrics shows broker state only");
                    None
                }
            }
        })
        .clone()
}

pub(crate) fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned().flatten()
}

/// Records each admin request's latency, labelled by its route template.
pub(crate) async fn observe_http(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    let res = next.run(req).await;
    metrics::histogram!("fjord_request_duration_seconds", "protocol" => "http", "api" => route.clone())
        .record(started.elapsed().as_secs_f64());
    if res.status().is_client_error() || res.status().is_server_error() {
        metrics::counter!("fjord_request_errors_total", "protocol" => "http", "api" => route).increment(1);
    }
    res
}

/// Writes one metric family.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The broker state part of the page.
/// `groups`: each group this node knows with its committed offsets and lag.
fn broker_state(s: &AdminState, groups: Vec<(String, Vec<crate::groups::OffsetView>)>) -> String {
    let b = &s.broker;
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.header("fjord_build_info", "gauge", "Build information.");
    f.sample("fjord_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    f.header("fjord_uptime_seconds", "gauge", "Seconds since the broker started.");
    f.sample("fjord_uptime_seconds", &[], (b.clock().now_ms() - b.started_ms()) as f64 / 1000.0);

    let topics = b.topics();
    let per_topic: Vec<(String, fjord_broker::TrafficSnapshot, u64)> = topics
        .iter()
        .map(|t| {
            let ps = t.partitions();
            let traffic = ps.iter().map(|p| p.traffic()).fold(Default::default(), |a, x| a + x);
            (t.name(), traffic, ps.iter().map(|p| p.log_stats().size_bytes).sum())
        })
        .collect();
    type Pick = fn(&fjord_broker::TrafficSnapshot) -> u64;
    let counters: [(&str, &str, Pick); 4] = [
        ("fjord_records_produced_total", "Records appended by producers.", |t| t.records_in),
        ("fjord_produced_bytes_total", "Batch bytes appended by producers.", |t| t.bytes_in),
        ("fjord_records_fetched_total", "Records delivered to consumers.", |t| t.records_out),
        ("fjord_fetched_bytes_total", "Bytes delivered to consumers.", |t| t.bytes_out),
    ];
    for (name, help, pick) in counters {
        f.header(name, "counter", help);
        for (topic, t, _) in &per_topic {
            f.sample(name, &[("topic", topic)], pick(t) as f64);
        }
    }
    f.header("fjord_storage_bytes", "gauge", "Bytes of log segments per topic.");
    for (topic, _, size) in &per_topic {
        f.sample("fjord_storage_bytes", &[("topic", topic)], *size as f64);
    }
    f.header("fjord_topics", "gauge", "Topics, internal ones included.");
    f.sample("fjord_topics", &[], topics.len() as f64);
    f.header("fjord_partitions", "gauge", "Partitions over all topics.");
    f.sample("fjord_partitions", &[], topics.iter().map(|t| t.partitions().len()).sum::<usize>() as f64);

    if let Ok(st) = nix::sys::statvfs::statvfs(&b.config().data_dir) {
        let frag = st.fragment_size() as f64;
        f.header("fjord_disk_free_bytes", "gauge", "Bytes available on the data directory's file system.");
        f.sample("fjord_disk_free_bytes", &[], st.blocks_available() as f64 * frag);
        f.header("fjord_disk_total_bytes", "gauge", "Size of the data directory's file system.");
        f.sample("fjord_disk_total_bytes", &[], st.blocks() as f64 * frag);
    }
    let repl = b.replication_status();
    f.header(
        "fjord_under_replicated_partitions",
        "gauge",
        "Partitions led here with fewer in-sync replicas than replicas.",
    );
    f.sample("fjord_under_replicated_partitions", &[], repl.under_replicated.len() as f64);
    f.header("fjord_offline_partitions", "gauge", "Partitions of the cluster without a serving leader.");
    f.sample("fjord_offline_partitions", &[], repl.offline.len() as f64);
    f.header("fjord_leader_elections_total", "counter", "Partitions this node came to lead since it started.");
    f.sample("fjord_leader_elections_total", &[], b.elections_won() as f64);
    f.header("fjord_request_budget_bytes_in_use", "gauge", "Bytes of requests being read or handled, all listeners.");
    f.sample("fjord_request_budget_bytes_in_use", &[], s.config.request_budget.in_use() as f64);
    f.header("fjord_delayed_messages", "gauge", "Scheduled messages waiting for their time.");
    let timer = s.messaging.timer_stats();
    f.sample("fjord_delayed_messages", &[], timer.pending as f64);
    f.header(
        "fjord_open_transactions",
        "gauge",
        "Transactions (half messages) not yet committed or rolled back, in the timer shards this node leads.",
    );
    f.sample("fjord_open_transactions", &[], timer.open_transactions as f64);

    f.header("fjord_consumer_group_lag", "gauge", "Messages not yet consumed by a group, per topic.");
    for (g, offsets) in &groups {
        let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
        for o in offsets {
            *by_topic.entry(o.topic.as_str()).or_default() += o.lag;
        }
        for (topic, lag) in by_topic {
            f.sample("fjord_consumer_group_lag", &[("group", g), ("topic", topic)], lag as f64);
        }
    }
    if s.config.per_partition_metrics {
        let parts: Vec<_> = topics.iter().flat_map(|t| t.partitions()).collect();
        type PickStat = fn(&fjord_log::LogStats) -> u64;
        let families: [(&str, &str, PickStat); 3] = [
            ("fjord_partition_log_start_offset", "First offset stored.", |s| s.log_start_offset),
            ("fjord_partition_log_end_offset", "Next offset to be written.", |s| s.log_end_offset),
            ("fjord_partition_size_bytes", "Bytes of log segments.", |s| s.size_bytes),
        ];
        for (name, help, pick) in families {
            f.header(name, "gauge", help);
            for p in &parts {
                let id = p.id();
                let part = id.partition.to_string();
                f.sample(name, &[("topic", &id.topic), ("partition", &part)], pick(&p.log_stats()) as f64);
            }
        }
        // Each follower of a partition led here: how far behind the log
        // end it is, and for how long it has not been at it.
        let now = tokio::time::Instant::now();
        let led = parts.iter().filter(|p| b.leadership(p.id()) == fjord_broker::Leadership::Local);
        // (topic, partition, follower, records behind, seconds behind)
        let mut lags: Vec<(String, String, String, f64, f64)> = Vec::new();
        for p in led {
            let (since, followers) = p.followers();
            for (node, fp) in followers {
                let behind = p.log_end_offset().saturating_sub(fp.log_end) as f64;
                let secs = now.duration_since(fp.caught_up_at.unwrap_or(since)).as_secs_f64();
                lags.push((p.id().topic.to_string(), p.id().partition.to_string(), node.to_string(), behind, secs));
            }
        }
        f.header("fjord_follower_lag_messages", "gauge", "Records a follower lacks of its leader's log.");
        for (topic, part, node, behind, _) in &lags {
            f.sample(
                "fjord_follower_lag_messages",
                &[("topic", topic), ("partition", part), ("follower", node)],
                *behind,
            );
        }
        f.header("fjord_follower_lag_seconds", "gauge", "Seconds since a follower was last at its leader's log end.");
        for (topic, part, node, _, secs) in &lags {
            f.sample("fjord_follower_lag_seconds", &[("topic", topic), ("partition", part), ("follower", node)], *secs);
        }
        f.header("fjord_consumer_group_partition_lag", "gauge", "Messages not yet consumed, per partition.");
        for (g, offsets) in &groups {
            for o in offsets {
                let part = o.partition.to_string();
                f.sample(
                    "fjord_consumer_group_partition_lag",
                    &[("group", g), ("topic", &o.topic), ("partition", &part)],
                    o.lag as f64,
                );
            }
        }
    }
    out
}

/// Prometheus metrics of this node.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", body = String,
     content_type = "text/plain")))]
pub(crate) async fn scrape(State(s): State<AdminState>) -> Response {
    let names = crate::groups::all_groups(&s);
    let lags = crate::groups::lags(&s, &names).await;
    let mut page = broker_state(&s, names.into_iter().zip(lags).collect());
    if let Some(h) = &s.metrics {
        h.run_upkeep();
        page.push_str(&h.render());
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], page).into_response()
}
