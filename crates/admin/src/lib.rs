//! # fjord-admin: the HTTP admin API
//!
//! Serves health probes and a JSON API over the broker core on the `http`
//! listener (9600 by default). Handlers only translate HTTP to
//! [`fjord_broker::Broker`] calls; errors are JSON objects with a stable
//! `code` and a human `message`.
//!
//! Endpoints so far:
//! - `GET /livez`: the process is up.
//! - `GET /readyz`: 200 once every listener is bound and all partitions are
//!   recovered, 503 before and during shutdown.
//! - `GET /api/v1/cluster`: cluster id, this node, its listeners, uptime.
//! - `GET|POST /api/v1/topics`, `GET|DELETE /api/v1/topics/{topic}`.
//! - `POST /api/v1/topics/{topic}/partitions/{p}/records`: produce; answers
//!   after the partition's durability policy acknowledged the records.
//! - `GET /api/v1/topics/{topic}/partitions/{p}/records?offset=&max_bytes=`.

mod error;
mod records;
mod topics;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use fjord_broker::Broker;

pub use error::ApiError;

/// Largest accepted request body (produce requests included).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AdminState {
    broker: Arc<Broker>,
    ready: Arc<AtomicBool>,
}

impl AdminState {
    /// State over `broker`; not ready until [`AdminState::set_ready`].
    pub fn new(broker: Arc<Broker>) -> Self {
        AdminState { broker, ready: Arc::new(AtomicBool::new(false)) }
    }

    /// Marks the node ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// The admin API router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/cluster", get(topics::cluster))
        .route("/api/v1/topics", get(topics::list).post(topics::create))
        .route("/api/v1/topics/{topic}", get(topics::describe).delete(topics::delete))
        .route("/api/v1/topics/{topic}/partitions/{partition}/records", get(records::consume).post(records::produce))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::SeqCst) && !*s.broker.shutdown_signal().borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
