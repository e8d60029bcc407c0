//! The part of RabbitMQ's management HTTP API (`rabbitmq_management`, port
//! 15672) that AMQP tools and client test suites call: overview, whoami,
//! connections (list, show, close), virtual hosts and queues, in
//! RabbitMQ's JSON shapes and paths. Served on its own listener
//! (`listeners.amqp_management`), apart from Fjord's `/api/v1`.
//!
//! Authentication is HTTP Basic against the AMQP users (the loopback-only
//! rule of `guest` included); as RabbitMQ, a user needs a management tag
//! (`management`, `policymaker`, `monitoring` or `administrator`).
//! `administrator` and `monitoring` see everything; the others see their
//! own connections and the virtual hosts they may open. Closing another
//! user's connection takes `administrator`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use fjord_amqp::AmqpGateway;
use fjord_amqp::conns::ConnectionInfo;
use fjord_amqp::manage::{QueueInfo, table_json};
use serde_json::{Value, json};

use crate::AdminState;

/// RabbitMQ's error body.
fn error(status: StatusCode, error: &str, reason: &str) -> Response {
    (status, axum::Json(json!({ "error": error, "reason": reason }))).into_response()
}

/// Why a request is refused before its handler runs.
enum Refused {
    /// The AMQP listener is off.
    Unavailable,
    /// Bad credentials, or a user without a management tag.
    Unauthorized(&'static str),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Unavailable => {
                error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the AMQP listener is not enabled")
            }
            Refused::Unauthorized(reason) => {
                let mut r = error(StatusCode::UNAUTHORIZED, "not_authorized", reason);
                let realm = header::HeaderValue::from_static("Basic realm=\"RabbitMQ Management\"");
                r.headers_mut().insert(header::WWW_AUTHENTICATE, realm);
                r
            }
        }
    }
}

/// Who is asking, and what they may see.
struct Caller {
    gw: Arc<AmqpGateway>,
    user: String,
    tags: Vec<String>,
}

impl Caller {
    fn sees_all(&self) -> bool {
        self.tags.iter().any(|t| t == "administrator" || t == "monitoring")
    }

    fn is_admin(&self) -> bool {
        self.tags.iter().any(|t| t == "administrator")
    }

    fn sees_vhost(&self, vhost: &str) -> bool {
        self.sees_all() || self.gw.users().may_open(&self.user, vhost)
    }
}

/// Checks Basic credentials and the management tag.
fn caller(s: &AdminState, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller, Refused> {
    let Some(gw) = s.amqp.get().cloned() else { return Err(Refused::Unavailable) };
    let unauthorized = || Refused::Unauthorized("Login failed");
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, pass)) = creds.as_deref().and_then(|c| c.split_once(':')) else { return Err(unauthorized()) };
    if !gw.users().authenticate(user, pass, peer.ip().is_loopback()) {
        return Err(unauthorized());
    }
    let tags = gw.users().users().into_iter().find(|(n, _)| n == user).map(|(_, u)| u.tags).unwrap_or_default();
    let management = ["management", "policymaker", "monitoring", "administrator"];
    if !tags.iter().any(|t| management.contains(&t.as_str())) {
        return Err(Refused::Unauthorized("Not management user"));
    }
    Ok(Caller { gw, user: user.to_string(), tags })
}

/// The router of the management listener.
pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/whoami", get(whoami))
        .route("/api/connections", get(connections))
        .route("/api/connections/", get(connections))
        .route("/api/connections/{name}", get(connection).delete(close_connection))
        .route("/api/vhosts", get(vhosts))
        .route("/api/vhosts/", get(vhosts))
        .route("/api/queues", get(queues))
        .route("/api/queues/", get(queues))
        .route("/api/queues/{vhost}", get(queues_of))
        .route("/api/queues/{vhost}/{name}", get(queue))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found") })
        .with_state(state)
}

type Peer = ConnectInfo<crate::server::PeerAddr>;

async fn overview(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&s, &headers, peer) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let queues = visible_queues(&c, None);
    let conns = visible_connections(&c);
    let (ready, unacked): (u64, u64) =
        queues.iter().fold((0, 0), |(r, u), q| (r + q.messages_ready, u + q.messages_unacked));
    axum::Json(json!({
        "management_version": env!("CARGO_PKG_VERSION"),
        "product_name": "Fjord",
        "product_version": env!("CARGO_PKG_VERSION"),
        "cluster_name": s.broker.cluster_id(),
        "node": format!("fjord@{}", s.broker.config().node_id),
        "object_totals": {
            "connections": conns.len(),
            "channels": conns.iter().map(|c| c.channels).sum::<usize>(),
            "queues": queues.len(),
            "consumers": queues.iter().map(|q| q.consumers).sum::<u64>(),
            "exchanges": c.gw.vhosts().iter().filter(|v| c.sees_vhost(&v.name)).map(|v| v.exchanges).sum::<usize>(),
        },
        "queue_totals": { "messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked },
    }))
    .into_response()
}

async fn whoami(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
) -> Response {
    match caller(&s, &headers, peer) {
        Ok(c) => axum::Json(json!({ "name": c.user, "tags": c.tags })).into_response(),
        Err(r) => r.into_response(),
    }
}

fn visible_connections(c: &Caller) -> Vec<ConnectionInfo> {
    let all = c.gw.connections().list();
    all.into_iter().filter(|x| c.sees_all() || x.user == c.user).collect()
}

fn connection_json(c: &ConnectionInfo) -> Value {
    json!({
        "name": c.name,
        "node": "fjord",
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "state": "running",
        "user": c.user,
        "vhost": c.vhost,
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "channels": c.channels,
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "connected_at": c.connected_at,
        "client_properties": table_json(&c.client_properties),
    })
}

async fn connections(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
) -> Response {
    match caller(&s, &headers, peer) {
        Ok(c) => axum::Json(visible_connections(&c).iter().map(connection_json).collect::<Vec<_>>()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn connection(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let c = match caller(&s, &headers, peer) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    match visible_connections(&c).iter().find(|x| x.name == name) {
        Some(x) => axum::Json(connection_json(x)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
    }
}

/// Closes a connection (320 CONNECTION_FORCED; the `X-Reason` header is
/// the reason, as RabbitMQ).
async fn close_connection(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let c = match caller(&s, &headers, peer) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some(target) = c.gw.connections().list().into_iter().find(|x| x.name == name) else {
        return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found");
    };
    if target.user != c.user && !c.is_admin() {
        return error(StatusCode::UNAUTHORIZED, "not_authorized", "Not administrator user");
    }
    let reason = headers.get("x-reason").and_then(|v| v.to_str().ok()).unwrap_or("Closed via management plugin");
    if c.gw.connections().close(&name, reason) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }
}

async fn vhosts(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
) -> Response {
    let c = match caller(&s, &headers, peer) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let list: Vec<Value> =
        c.gw.vhosts()
            .into_iter()
            .filter(|v| c.sees_vhost(&v.name))
            .map(|v| json!({ "name": v.name, "tracing": false }))
            .collect();
    axum::Json(list).into_response()
}

fn visible_queues(c: &Caller, vhost: Option<&str>) -> Vec<QueueInfo> {
    let all = c.gw.queues(vhost).unwrap_or_default();
    all.into_iter().filter(|q| c.sees_vhost(&q.vhost)).collect()
}

fn queue_json(q: &QueueInfo) -> Value {
    let kind = q.arguments.get("x-queue-type").and_then(Value::as_str).unwrap_or("classic");
    json!({
        "name": q.name,
        "vhost": q.vhost,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive,
        "arguments": q.arguments,
        "type": kind,
        "state": "running",
        "node": "fjord",
        "messages": q.messages_ready + q.messages_unacked,
        "messages_ready": q.messages_ready,
        "messages_unacknowledged": q.messages_unacked,
        "consumers": q.consumers,
    })
}

async fn queues(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
) -> Response {
    match caller(&s, &headers, peer) {
        Ok(c) => axum::Json(visible_queues(&c, None).iter().map(queue_json).collect::<Vec<_>>()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn queues_of(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
    Path(vhost): Path<String>,
) -> Response {
    let c = match caller(&s, &headers, peer) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if !c.gw.model().has_vhost(&vhost) || !c.sees_vhost(&vhost) {
        return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found");
    }
    axum::Json(visible_queues(&c, Some(&vhost)).iter().map(queue_json).collect::<Vec<_>>()).into_response()
}

async fn queue(
    State(s): State<AdminState>,
    ConnectInfo(crate::server::PeerAddr(peer)): Peer,
    headers: HeaderMap,
    Path((vhost, name)): Path<(String, String)>,
) -> Response {
    let c = match caller(&s, &headers, peer) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if !c.gw.model().has_vhost(&vhost) || !c.sees_vhost(&vhost) {
        return error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found");
    }
    match visible_queues(&c, Some(&vhost)).iter().find(|q| q.name == name) {
        Some(q) => axum::Json(queue_json(q)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found"),
    }
}
