//! The part of RabbitMQ's management HTTP API (`rabbitmq_management`, port
//! 15672) that AMQP tools and client test suites call: overview, whoami,
//! connections (list, show, close), virtual hosts, queues, exchanges and
//! bindings (read-only), in
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
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use fjord_amqp::AmqpGateway;
use fjord_amqp::conns::ConnectionInfo;
use fjord_amqp::manage::{BindingInfo, ExchangeInfo, QueueInfo, table_json};
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

/// Every handler starts by authenticating its caller.
impl FromRequestParts<AdminState> for Caller {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Caller, Refused> {
        let peer = parts.extensions.get::<ConnectInfo<crate::server::PeerAddr>>().map(|c| c.0.0);
        // Without the peer's address (never, on the management listener),
        // loopback-only users are refused.
        let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        caller(s, &parts.headers, peer)
    }
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
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/api/exchanges", get(exchanges))
        .route("/api/exchanges/", get(exchanges))
        .route("/api/exchanges/{vhost}", get(exchanges_of))
        .route("/api/exchanges/{vhost}/{name}", get(exchange))
        .route("/api/bindings", get(bindings))
        .route("/api/bindings/", get(bindings))
        .route("/api/bindings/{vhost}", get(bindings_of))
        .fallback(|| async { not_found() })
        .with_state(state)
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
}

/// A JSON array of `items`.
fn list(items: impl Iterator<Item = Value>) -> Response {
    axum::Json(items.collect::<Vec<_>>()).into_response()
}

/// Whether `vhost` exists and the caller may see it.
fn known_vhost(c: &Caller, vhost: &str) -> bool {
    c.gw.model().has_vhost(vhost) && c.sees_vhost(vhost)
}

async fn overview(State(s): State<AdminState>, c: Caller) -> Response {
    let queues = counted_queues(&c, None).await;
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

async fn whoami(c: Caller) -> Response {
    axum::Json(json!({ "name": c.user, "tags": c.tags })).into_response()
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

async fn connections(c: Caller) -> Response {
    list(visible_connections(&c).iter().map(connection_json))
}

async fn connection(c: Caller, Path(name): Path<String>) -> Response {
    match visible_connections(&c).iter().find(|x| x.name == name) {
        Some(x) => axum::Json(connection_json(x)).into_response(),
        None => not_found(),
    }
}

/// Closes a connection (320 CONNECTION_FORCED; the `X-Reason` header is
/// the reason, as RabbitMQ).
async fn close_connection(c: Caller, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let Some(target) = c.gw.connections().list().into_iter().find(|x| x.name == name) else { return not_found() };
    if target.user != c.user && !c.is_admin() {
        return error(StatusCode::UNAUTHORIZED, "not_authorized", "Not administrator user");
    }
    let reason = headers.get("x-reason").and_then(|v| v.to_str().ok()).unwrap_or("Closed via management plugin");
    if c.gw.connections().close(&name, reason) { StatusCode::NO_CONTENT.into_response() } else { not_found() }
}

async fn vhosts(c: Caller) -> Response {
    let all = c.gw.vhosts();
    list(all.into_iter().filter(|v| c.sees_vhost(&v.name)).map(|v| json!({ "name": v.name, "tracing": false })))
}

fn visible_queues(c: &Caller, vhost: Option<&str>) -> Vec<QueueInfo> {
    let all = c.gw.queues(vhost).unwrap_or_default();
    all.into_iter().filter(|q| c.sees_vhost(&q.vhost)).collect()
}

/// [`visible_queues`] with counts from each queue's node.
async fn counted_queues(c: &Caller, vhost: Option<&str>) -> Vec<QueueInfo> {
    let all = c.gw.queues_counted(vhost).await.unwrap_or_default();
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

async fn queues(c: Caller) -> Response {
    list(counted_queues(&c, None).await.iter().map(queue_json))
}

async fn queues_of(c: Caller, Path(vhost): Path<String>) -> Response {
    if !known_vhost(&c, &vhost) {
        return not_found();
    }
    list(counted_queues(&c, Some(&vhost)).await.iter().map(queue_json))
}

async fn queue(c: Caller, Path((vhost, name)): Path<(String, String)>) -> Response {
    let found = if known_vhost(&c, &vhost) {
        counted_queues(&c, Some(&vhost)).await.into_iter().find(|q| q.name == name)
    } else {
        None
    };
    found.map_or_else(not_found, |q| axum::Json(queue_json(&q)).into_response())
}

fn exchange_json(e: &ExchangeInfo) -> Value {
    json!({
        "name": e.name,
        "vhost": e.vhost,
        "type": e.kind,
        "durable": e.durable,
        "auto_delete": e.auto_delete,
        "internal": e.internal,
        "arguments": e.arguments,
        "user_who_performed_action": "",
    })
}

/// The exchanges of the virtual hosts the caller sees (or of one).
fn visible_exchanges(c: &Caller, vhost: Option<&str>) -> Vec<ExchangeInfo> {
    let all = c.gw.exchanges(vhost).unwrap_or_default();
    all.into_iter().filter(|e| c.sees_vhost(&e.vhost)).collect()
}

async fn exchanges(c: Caller) -> Response {
    list(visible_exchanges(&c, None).iter().map(exchange_json))
}

async fn exchanges_of(c: Caller, Path(vhost): Path<String>) -> Response {
    if !known_vhost(&c, &vhost) {
        return not_found();
    }
    list(visible_exchanges(&c, Some(&vhost)).iter().map(exchange_json))
}

async fn exchange(c: Caller, Path((vhost, name)): Path<(String, String)>) -> Response {
    // The default exchange is `amq.default` in paths.
    let name = if name == "amq.default" { String::new() } else { name };
    let found = if known_vhost(&c, &vhost) {
        visible_exchanges(&c, Some(&vhost)).into_iter().find(|e| e.name == name)
    } else {
        None
    };
    found.map_or_else(not_found, |e| axum::Json(exchange_json(&e)).into_response())
}

/// RabbitMQ's key for a binding within its source and destination: the
/// routing key (`~` when empty), and a hash of the arguments when any.
fn properties_key(b: &BindingInfo) -> String {
    let key = if b.routing_key.is_empty() { "~".to_string() } else { b.routing_key.clone() };
    match &b.arguments {
        Value::Object(m) if !m.is_empty() => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            b.arguments.to_string().hash(&mut h);
            format!("{key}~{:x}", h.finish() & 0xffff_ffff)
        }
        _ => key,
    }
}

fn binding_json(b: &BindingInfo) -> Value {
    json!({
        "source": b.source,
        "vhost": b.vhost,
        "destination": b.destination,
        "destination_type": b.destination_type,
        "routing_key": b.routing_key,
        "arguments": b.arguments,
        "properties_key": properties_key(b),
    })
}

/// The bindings of the virtual hosts the caller sees (or of one), with the
/// default exchange's implicit binding to every queue first, as RabbitMQ
/// lists them.
fn visible_bindings(c: &Caller, vhost: Option<&str>) -> Vec<BindingInfo> {
    let mut out: Vec<BindingInfo> = visible_queues(c, vhost)
        .into_iter()
        .map(|q| BindingInfo {
            vhost: q.vhost,
            source: String::new(),
            destination: q.name.clone(),
            destination_type: "queue",
            routing_key: q.name,
            arguments: json!({}),
        })
        .collect();
    let explicit = c.gw.bindings(vhost).unwrap_or_default();
    out.extend(explicit.into_iter().filter(|b| c.sees_vhost(&b.vhost)));
    out
}

async fn bindings(c: Caller) -> Response {
    list(visible_bindings(&c, None).iter().map(binding_json))
}

async fn bindings_of(c: Caller, Path(vhost): Path<String>) -> Response {
    if !known_vhost(&c, &vhost) {
        return not_found();
    }
    list(visible_bindings(&c, Some(&vhost)).iter().map(binding_json))
}

async fn queue_bindings(c: Caller, Path((vhost, name)): Path<(String, String)>) -> Response {
    if !known_vhost(&c, &vhost) {
        return not_found();
    }
    let all = visible_bindings(&c, Some(&vhost));
    let to_it: Vec<&BindingInfo> =
        all.iter().filter(|b| b.destination_type == "queue" && b.destination == name).collect();
    // Every queue has the default exchange's binding: none means no queue.
    if to_it.is_empty() {
        return not_found();
    }
    list(to_it.into_iter().map(binding_json))
}
