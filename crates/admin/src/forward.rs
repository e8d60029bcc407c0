//! In a cluster, requests about something another node owns are answered
//! by that node: a partition's messages and records by its leader, a
//! group by its coordinator. This middleware (after routing, so it knows
//! the route and its parameters) relays such requests to the owner's admin
//! listener and its answer back unchanged, so any node answers for the
//! whole cluster.
//!
//! A relayed request carries [`FORWARDED`]; a node never relays a request
//! that has it, so a placement change in flight cannot make a request go
//! round: the node that receives it answers from its own state. A
//! partition or group unknown to the placement is answered here (404 from
//! the handler); an owner that is down gets a retriable 503.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fjord_broker::{Leadership, NodeInfo, TopicPartition};

use crate::AdminState;
use crate::error::ApiError;

/// Marks a request relayed by another node (its value: that node's id).
pub(crate) const FORWARDED: &str = "x-fjord-forwarded-by";

/// How long the owner may take to answer a relayed request.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer relayed back (message browsing pages are far smaller).
const MAX_RELAYED_BYTES: u64 = 64 << 20;

/// Relays requests about what another node owns; see the module docs.
pub(crate) async fn relay(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    if s.broker.placement().is_none() || req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let Some(route) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let params = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &s).await.ok();
    let req = Request::from_parts(parts, body);
    match params.and_then(|Path(p)| owner(&s, &route, &p)) {
        None | Some(Leadership::Local) => next.run(req).await,
        Some(Leadership::Remote(node)) => to(&node, s.broker.config().node_id, req).await,
        Some(Leadership::Unavailable) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node that owns this is not serving now; retry shortly",
        )
        .into_response(),
    }
}

/// Who owns what `route` is about, when another node may: `None` for
/// routes any node answers, and for partitions and groups the placement
/// does not know (the handler answers those).
fn owner(s: &AdminState, route: &str, params: &HashMap<String, String>) -> Option<Leadership> {
    let placement = s.broker.placement()?;
    if route.starts_with("/api/v1/topics/{topic}/partitions/{partition}") {
        let tp = TopicPartition::new(params.get("topic")?.as_str(), params.get("partition")?.parse().ok()?);
        placement.partition(&tp)?;
        return Some(s.broker.leadership(&tp));
    }
    if route.starts_with("/api/v1/groups/{group}") {
        return Some(s.broker.coordinator(params.get("group")?));
    }
    None
}

/// Relays `req` to `node`'s admin listener and its answer back.
async fn to(node: &NodeInfo, me: i32, req: Request) -> Response {
    let Some(http) = node.listeners.get("http").cloned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("node {} owns this but has no admin listener", node.node_id),
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    // The body was read (and capped) by `server::read_body` already.
    let body = match axum::body::to_bytes(body, crate::MAX_BODY_BYTES).await {
        Ok(b) => b.to_vec(),
        Err(e) => return ApiError::bad_request(format!("reading the request body failed: {e}")).into_response(),
    };
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let url = format!("http://{http}{path}");
    let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    let method = parts.method.clone();
    let target = node.node_id;
    let relayed = tokio::task::spawn_blocking(move || -> Result<(StatusCode, Option<HeaderValue>, Vec<u8>), String> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(RELAY_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        let mut builder = ureq::http::Request::builder().method(method).uri(&url).header(FORWARDED, me.to_string());
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let request = builder.body(body).map_err(|e| e.to_string())?;
        let mut resp = agent.run(request).map_err(|e| e.to_string())?;
        let status = resp.status();
        let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = resp.body_mut().with_config().limit(MAX_RELAYED_BYTES).read_to_vec().map_err(|e| e.to_string())?;
        Ok((status, ct, bytes))
    })
    .await;
    match relayed {
        Ok(Ok((status, ct, bytes))) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            if let Some(ct) = ct {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        Ok(Err(e)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("node {target}, which owns this, did not answer: {e}"),
        )
        .into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("relaying failed: {e}"))
            .into_response(),
    }
}

/// Asks every other serving node of the placement for `path` (their own
/// part of a view, `?scope=node`), all at once; each answer decoded as
/// `T`, or why there is none.
pub(crate) async fn ask_others<T: serde::de::DeserializeOwned>(
    placement: &fjord_broker::Placement,
    me: i32,
    path: &str,
) -> Vec<(NodeInfo, Result<T, String>)> {
    let asked = placement.nodes.iter().filter(|n| n.node_id != me).map(|n| async move {
        let answer = get_json(n, path).await.and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()));
        (n.clone(), answer)
    });
    futures_util::future::join_all(asked).await
}

/// `GET http://<node's admin listener><path>` as JSON, for views that ask
/// every node for its own part (`?scope=node`); 2 s at most.
pub(crate) async fn get_json(node: &NodeInfo, path: &str) -> Result<serde_json::Value, String> {
    let Some(http) = node.listeners.get("http").cloned() else {
        return Err("it has no admin listener".into());
    };
    let url = format!("http://{http}{path}");
    tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().new_agent();
        let mut resp = agent.get(&url).call().map_err(|e| e.to_string())?;
        resp.body_mut()
            .with_config()
            .limit(MAX_RELAYED_BYTES)
            .read_json::<serde_json::Value>()
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// `?scope=`: `cluster` (the default) asks every node, `node` answers for
/// the node asked only (what nodes ask each other).
pub(crate) fn whole_cluster(scope: Option<&str>) -> Result<bool, ApiError> {
    match scope {
        None | Some("cluster") => Ok(true),
        Some("node") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!("scope must be `cluster` or `node`, not `{other}`"))),
    }
}

/// A path segment as it goes in a URL (topic and group names may hold
/// `%`, as RocketMQ's `%RETRY%` topics do).
pub(crate) fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
