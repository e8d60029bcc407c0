//! # fjord-admin: the HTTP admin API
//!
//! Serves the JSON API operators and the `fjord` CLI use, health probes and
//! Prometheus metrics on the `http` listener (9600 by default). Handlers
//! only translate HTTP to calls on the broker core ([`fjord_broker::Broker`])
//! and the messaging layer ([`fjord_messaging::Messaging`]); they own no
//! state of their own except the traffic-rate sampler.
//!
//! ## Design
//! - **One source of truth for the spec.** Every route is registered through
//!   `utoipa-axum`, from handlers annotated with `#[utoipa::path]`, so the
//!   OpenAPI document served at `/api/openapi.json` is generated from the
//!   very routes that serve requests (CI checks it with schemathesis).
//! - **Errors** are JSON `{code, message}` ([`ApiError`]) with a stable
//!   code; malformed paths, queries and bodies are 400s saying what was
//!   wrong ([`extract`]), unknown routes are 404 `not_found`.
//! - **Bounded work per request**: list and browse endpoints take a
//!   `limit` capped at [`MAX_LIMIT`]; tag scans stop after `max_scan`
//!   records per partition; request bodies are capped at [`MAX_BODY_BYTES`]
//!   (413 above it) and read whole, within a deadline and the broker-wide
//!   request budget, before a handler runs ([`serve`]); connections are
//!   capped and closed when idle (`fjord_net`).
//! - **Any node answers for the cluster**: requests about a partition
//!   another node leads or a group another node coordinates are relayed to
//!   that node's admin listener (`forward.rs`, never relayed twice);
//!   `GET /api/v1/cluster` asks every node for its own figures.
//! - **Metrics** ([`metrics`]): counters the core keeps (traffic, sizes,
//!   offsets, lag) are read at scrape time; latency histograms and
//!   connection gauges come from the `metrics` facade, recorded by the
//!   gateways and rendered by the Prometheus exporter installed here.
//!
//! The endpoint overview is `docs/admin-api.md`.

mod amqp;
mod cluster;
mod delayed;
mod error;
mod extract;
mod forward;
mod groups;
mod messages;
pub mod metrics;
mod rabbit;
mod records;
mod replicas;
mod server;
mod topics;
mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use fjord_broker::Broker;
use fjord_messaging::Messaging;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};
pub use server::{serve, serve_rabbitmq_management};

/// Largest accepted request body (produce requests included).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Most items one list or browse request returns.
pub const MAX_LIMIT: usize = 10_000;

/// Admin API settings that are not the broker's.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Export per-partition series on `/metrics` (off by default: a broker
    /// with many partitions would otherwise export thousands of series).
    pub per_partition_metrics: bool,
    /// A connection from which no byte arrives for this long while it is
    /// being read (between requests, or halfway through headers) is
    /// closed (60 s).
    pub connections_max_idle: std::time::Duration,
    /// A request body must arrive whole within this long (60 s); 408
    /// after it.
    pub body_timeout: std::time::Duration,
    /// The broker-wide budget for request bytes being read or handled.
    pub request_budget: fjord_net::RequestBudget,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            per_partition_metrics: false,
            connections_max_idle: std::time::Duration::from_secs(60),
            body_timeout: std::time::Duration::from_secs(60),
            request_budget: fjord_net::RequestBudget::default(),
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AdminState {
    broker: Arc<Broker>,
    messaging: Arc<Messaging>,
    ready: Arc<AtomicBool>,
    rates: Arc<cluster::RateSampler>,
    config: AdminConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The AMQP gateway, once its listener is up.
    amqp: Arc<std::sync::OnceLock<Arc<fjord_amqp::AmqpGateway>>>,
}

impl AdminState {
    /// State over the broker and its messaging layer; not ready until
    /// [`AdminState::set_ready`].
    pub fn new(messaging: Arc<Messaging>, config: AdminConfig) -> Self {
        let broker = messaging.broker().clone();
        AdminState {
            rates: Arc::new(cluster::RateSampler::new(broker.clone())),
            broker,
            messaging,
            ready: Arc::new(AtomicBool::new(false)),
            config,
            metrics: metrics::handle(),
            amqp: Default::default(),
        }
    }

    /// Serves the AMQP gateway's definitions, users and permissions under
    /// `/api/v1/amqp` (404 `amqp_disabled` until this is called).
    pub fn set_amqp(&self, gateway: Arc<fjord_amqp::AmqpGateway>) {
        let _ = self.amqp.set(gateway);
    }

    /// Marks the node ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Starts sampling traffic counters once a second (for the rates in
    /// `/api/v1/cluster`); the task ends when the broker shuts down.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        self.rates.clone().spawn()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !*self.broker.shutdown_signal().borrow()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fjord admin API",
        description = "Cluster, topics, messages, consumer groups, delayed messages and dead letters of a Fjord broker.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "cluster", description = "This cluster and its nodes"),
        (name = "topics", description = "Topics and partitions"),
        (name = "messages", description = "Producing, browsing and querying messages"),
        (name = "groups", description = "Consumer groups, offsets and lag"),
        (name = "delayed", description = "Delayed and scheduled messages"),
        (name = "dlq", description = "Dead-letter queues"),
        (name = "amqp", description = "AMQP virtual hosts, queues, exchanges, bindings, users and permissions")
    )
)]
struct ApiDoc;

/// The routes and the OpenAPI document describing them.
fn api() -> (Router<AdminState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(livez))
        .routes(routes!(readyz))
        .routes(routes!(metrics::scrape))
        .routes(routes!(cluster::info))
        .routes(routes!(cluster::nodes))
        .routes(routes!(cluster::health))
        .routes(routes!(topics::list, topics::create))
        .routes(routes!(topics::describe, topics::alter, topics::delete))
        .routes(routes!(replicas::reassign, replicas::cancel))
        .routes(routes!(replicas::decommission))
        .routes(routes!(messages::send, messages::query))
        .routes(routes!(messages::browse))
        .routes(routes!(messages::get_one))
        .routes(routes!(records::produce, records::consume))
        .routes(routes!(groups::list))
        .routes(routes!(groups::describe, groups::delete))
        .routes(routes!(groups::reset_offsets))
        .routes(routes!(delayed::list))
        .routes(routes!(delayed::dlq_list))
        .routes(routes!(delayed::dlq_browse))
        .routes(routes!(delayed::dlq_resend))
        .routes(routes!(amqp::vhosts))
        .routes(routes!(amqp::put_vhost, amqp::delete_vhost))
        .routes(routes!(amqp::queues))
        .routes(routes!(amqp::exchanges))
        .routes(routes!(amqp::bindings))
        .routes(routes!(amqp::users))
        .routes(routes!(amqp::put_user, amqp::delete_user))
        .routes(routes!(amqp::permissions))
        .routes(routes!(amqp::put_permission, amqp::delete_permission))
        .routes(routes!(amqp::disk_alarm, amqp::set_disk_limit))
        .split_for_parts()
}

/// The OpenAPI document of the admin API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The admin API router.
pub fn router(state: AdminState) -> Router {
    let (routes, spec) = api();
    let spec = Arc::new(spec);
    routes
        .route("/api/openapi.json", axum::routing::get(move || async move { axum::Json(spec.as_ref().clone()) }))
        .fallback(|| async { ApiError::not_found("not_found", "no such endpoint; see /api/openapi.json") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // After routing (it needs the route) and after the body was read.
        .layer(axum::middleware::from_fn_with_state(state.clone(), forward::relay))
        .layer(axum::middleware::from_fn_with_state(state.clone(), server::read_body))
        .layer(axum::middleware::from_fn(metrics::observe_http))
        .with_state(state)
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/livez", tag = "health",
    responses((status = 200, description = "The process is up", body = String, content_type = "text/plain")))]
async fn livez() -> &'static str {
    "ok"
}

/// Readiness: every listener is bound, every partition recovered, and no
/// log refuses writes after a failed write or fsync (those are named; the
/// broker retries them until the cause, such as a full disk, is gone).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready for clients", body = String, content_type = "text/plain"),
    (status = 503, description = "Starting or shutting down, or logs poisoned (named)", body = String, content_type = "text/plain")))]
async fn readyz(State(s): State<AdminState>) -> (StatusCode, String) {
    if !s.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready".into());
    }
    let poisoned = s.broker.poisoned_logs();
    if poisoned.is_empty() {
        return (StatusCode::OK, "ready".into());
    }
    let named: Vec<String> = poisoned.iter().map(|p| format!("{}: {}", p.log, p.reason)).collect();
    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: logs refusing writes: {}", named.join("; ")))
}
