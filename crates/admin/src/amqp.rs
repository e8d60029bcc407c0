//! The AMQP gateway's definitions and access control: virtual hosts,
//! queues (with ready/unacked/consumer counts), exchanges, bindings, users
//! and permissions — what RabbitMQ's `rabbitmqctl` and management API
//! show and change. 404 `amqp_disabled` when the broker runs without its
//! AMQP listener.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use fjord_amqp::access::Permission;
use fjord_amqp::{AmqpError, AmqpGateway};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{AdminState, ApiError, ErrorBody};

impl From<AmqpError> for ApiError {
    fn from(e: AmqpError) -> Self {
        match e {
            AmqpError::NotFound(m) => ApiError::not_found("not_found", m),
            AmqpError::Invalid(m) => ApiError::bad_request(m),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string()),
        }
    }
}

fn gateway(s: &AdminState) -> Result<Arc<AmqpGateway>, ApiError> {
    s.amqp.get().cloned().ok_or_else(|| ApiError::not_found("amqp_disabled", "the AMQP listener is not enabled"))
}

/// Which virtual host.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VHostQuery {
    /// Only this virtual host (default: all).
    vhost: Option<String>,
}

/// A virtual host in the path (`/` is written `%2F`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct VHostPath {
    /// Virtual host name.
    vhost: String,
}

/// A user in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct UserPath {
    /// User name.
    user: String,
}

/// A virtual host and user in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct PermissionPath {
    /// Virtual host name.
    vhost: String,
    /// User name.
    user: String,
}

/// A virtual host.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VHostView {
    name: String,
    queues: u64,
    exchanges: u64,
}

/// `{vhosts: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VHostList {
    vhosts: Vec<VHostView>,
}

/// Every virtual host.
#[utoipa::path(get, path = "/api/v1/amqp/vhosts", tag = "amqp", responses(
    (status = 200, body = VHostList), (status = 404, body = ErrorBody)))]
pub(crate) async fn vhosts(State(s): State<AdminState>) -> Result<Json<VHostList>, ApiError> {
    let gw = gateway(&s)?;
    let vhosts = gw
        .vhosts()
        .into_iter()
        .map(|v| VHostView { name: v.name, queues: v.queues as u64, exchanges: v.exchanges as u64 })
        .collect();
    Ok(Json(VHostList { vhosts }))
}

/// Creates a virtual host (201; 204 if it exists). Users need a permission
/// on it before they can open it.
#[utoipa::path(put, path = "/api/v1/amqp/vhosts/{vhost}", tag = "amqp", params(VHostPath), responses(
    (status = 201, description = "Created"), (status = 204, description = "Already there"),
    (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn put_vhost(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<VHostPath>,
) -> Result<StatusCode, ApiError> {
    let created = gateway(&s)?.add_vhost(&p.vhost).await?;
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

/// Deletes a virtual host with its queues (their topics too), exchanges,
/// bindings and permissions; its connections are closed (320). `/` cannot
/// be deleted.
#[utoipa::path(delete, path = "/api/v1/amqp/vhosts/{vhost}", tag = "amqp", params(VHostPath), responses(
    (status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_vhost(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<VHostPath>,
) -> Result<StatusCode, ApiError> {
    gateway(&s)?.delete_vhost(&p.vhost).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An AMQP queue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueView {
    vhost: String,
    name: String,
    /// The topic holding its messages (Kafka and RocketMQ clients use it).
    topic: String,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    /// Declared arguments (`x-message-ttl`, `x-dead-letter-exchange`...).
    #[schema(value_type = Object)]
    arguments: serde_json::Value,
    messages_ready: u64,
    messages_unacknowledged: u64,
    consumers: u64,
}

/// `{queues: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueList {
    queues: Vec<QueueView>,
}

/// Declared queues with their depths and consumers.
#[utoipa::path(get, path = "/api/v1/amqp/queues", tag = "amqp", params(VHostQuery), responses(
    (status = 200, body = QueueList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn queues(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<VHostQuery>,
) -> Result<Json<QueueList>, ApiError> {
    let queues = gateway(&s)?
        .queues_counted(q.vhost.as_deref())
        .await?
        .into_iter()
        .map(|q| QueueView {
            vhost: q.vhost,
            name: q.name,
            topic: q.topic,
            durable: q.durable,
            exclusive: q.exclusive,
            auto_delete: q.auto_delete,
            arguments: q.arguments,
            messages_ready: q.messages_ready,
            messages_unacknowledged: q.messages_unacked,
            consumers: q.consumers,
        })
        .collect();
    Ok(Json(QueueList { queues }))
}

/// An exchange.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExchangeView {
    vhost: String,
    /// `""` is the default exchange.
    name: String,
    /// `direct`, `fanout`, `topic`, `headers` or `x-delayed-message`.
    #[serde(rename = "type")]
    kind: String,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    #[schema(value_type = Object)]
    arguments: serde_json::Value,
}

/// `{exchanges: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExchangeList {
    exchanges: Vec<ExchangeView>,
}

/// Exchanges, the predeclared ones included.
#[utoipa::path(get, path = "/api/v1/amqp/exchanges", tag = "amqp", params(VHostQuery), responses(
    (status = 200, body = ExchangeList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn exchanges(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<VHostQuery>,
) -> Result<Json<ExchangeList>, ApiError> {
    let exchanges = gateway(&s)?
        .exchanges(q.vhost.as_deref())?
        .into_iter()
        .map(|e| ExchangeView {
            vhost: e.vhost,
            name: e.name,
            kind: e.kind,
            durable: e.durable,
            auto_delete: e.auto_delete,
            internal: e.internal,
            arguments: e.arguments,
        })
        .collect();
    Ok(Json(ExchangeList { exchanges }))
}

/// A binding.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BindingView {
    vhost: String,
    source: String,
    destination: String,
    /// `queue` or `exchange`.
    destination_type: String,
    routing_key: String,
    #[schema(value_type = Object)]
    arguments: serde_json::Value,
}

/// `{bindings: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BindingList {
    bindings: Vec<BindingView>,
}

/// Bindings, in declaration order.
#[utoipa::path(get, path = "/api/v1/amqp/bindings", tag = "amqp", params(VHostQuery), responses(
    (status = 200, body = BindingList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn bindings(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<VHostQuery>,
) -> Result<Json<BindingList>, ApiError> {
    let bindings = gateway(&s)?
        .bindings(q.vhost.as_deref())?
        .into_iter()
        .map(|b| BindingView {
            vhost: b.vhost,
            source: b.source,
            destination: b.destination,
            destination_type: b.destination_type.to_string(),
            routing_key: b.routing_key,
            arguments: b.arguments,
        })
        .collect();
    Ok(Json(BindingList { bindings }))
}

/// A user (never its password).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserView {
    name: String,
    tags: Vec<String>,
    /// `rabbit_password_hashing_sha256`.
    hashing_algorithm: String,
}

/// `{users: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserList {
    users: Vec<UserView>,
}

/// Every user.
#[utoipa::path(get, path = "/api/v1/amqp/users", tag = "amqp", responses(
    (status = 200, body = UserList), (status = 404, body = ErrorBody)))]
pub(crate) async fn users(State(s): State<AdminState>) -> Result<Json<UserList>, ApiError> {
    let users = gateway(&s)?
        .users()
        .users()
        .into_iter()
        .map(|(name, u)| UserView { name, tags: u.tags, hashing_algorithm: u.hashing_algorithm })
        .collect();
    Ok(Json(UserList { users }))
}

/// A user to create or replace: a clear `password` (hashed by the broker)
/// or a `password_hash` in RabbitMQ's `rabbit_password_hashing_sha256`
/// format; neither makes a user that cannot log in with a password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserBody {
    password: Option<String>,
    password_hash: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Creates or replaces a user.
#[utoipa::path(put, path = "/api/v1/amqp/users/{user}", tag = "amqp", params(UserPath), request_body = UserBody,
    responses((status = 204, description = "Stored"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn put_user(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<UserPath>,
    ApiJson(b): ApiJson<UserBody>,
) -> Result<StatusCode, ApiError> {
    let gw = gateway(&s)?;
    gw.users().put_user(&p.user, b.password.as_deref(), b.password_hash.as_deref(), b.tags).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a user and its permissions; its connections are closed (320).
#[utoipa::path(delete, path = "/api/v1/amqp/users/{user}", tag = "amqp", params(UserPath), responses(
    (status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_user(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<UserPath>,
) -> Result<StatusCode, ApiError> {
    gateway(&s)?.delete_user(&p.user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's rights in a virtual host: regular expressions searched in
/// resource names (`""` matches nothing, `.*` everything; the default
/// exchange is `amq.default`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermissionBody {
    /// Declare and delete queues and exchanges.
    configure: String,
    /// Publish to exchanges; bind to queues and exchanges.
    write: String,
    /// Consume, get and purge queues; bind from exchanges.
    read: String,
}

/// One permission.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PermissionView {
    vhost: String,
    user: String,
    configure: String,
    write: String,
    read: String,
}

/// `{permissions: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PermissionList {
    permissions: Vec<PermissionView>,
}

/// Every permission.
#[utoipa::path(get, path = "/api/v1/amqp/permissions", tag = "amqp", responses(
    (status = 200, body = PermissionList), (status = 404, body = ErrorBody)))]
pub(crate) async fn permissions(State(s): State<AdminState>) -> Result<Json<PermissionList>, ApiError> {
    let permissions = gateway(&s)?
        .users()
        .permissions()
        .into_iter()
        .map(|(vhost, user, p)| PermissionView { vhost, user, configure: p.configure, write: p.write, read: p.read })
        .collect();
    Ok(Json(PermissionList { permissions }))
}

/// Sets a user's permission on a virtual host.
#[utoipa::path(put, path = "/api/v1/amqp/permissions/{vhost}/{user}", tag = "amqp", params(PermissionPath),
    request_body = PermissionBody,
    responses((status = 204, description = "Stored"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn put_permission(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<PermissionPath>,
    ApiJson(b): ApiJson<PermissionBody>,
) -> Result<StatusCode, ApiError> {
    let perm = Permission { configure: b.configure, write: b.write, read: b.read };
    gateway(&s)?.set_permission(&p.vhost, &p.user, Some(perm)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Clears a user's permission on a virtual host.
#[utoipa::path(delete, path = "/api/v1/amqp/permissions/{vhost}/{user}", tag = "amqp", params(PermissionPath),
    responses((status = 204, description = "Cleared"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_permission(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<PermissionPath>,
) -> Result<StatusCode, ApiError> {
    gateway(&s)?.set_permission(&p.vhost, &p.user, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The disk alarm: publishers are blocked while the data directory's file
/// system has less free space than `limit_bytes`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DiskAlarm {
    limit_bytes: u64,
    /// Free bytes at the last check (checked every second); null if unknown.
    free_bytes: Option<u64>,
    /// Whether publishers are blocked now.
    alarm: bool,
}

impl From<fjord_amqp::alarm::DiskStatus> for DiskAlarm {
    fn from(d: fjord_amqp::alarm::DiskStatus) -> Self {
        DiskAlarm { limit_bytes: d.limit_bytes, free_bytes: d.free_bytes, alarm: d.alarm }
    }
}

/// A new free-space limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiskLimitBody {
    /// Bytes; `0` never blocks.
    #[serde(deserialize_with = "crate::extract::int64")]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    limit_bytes: u64,
}

/// The disk alarm's limit, the free space and whether publishers are blocked.
#[utoipa::path(get, path = "/api/v1/amqp/disk-alarm", tag = "amqp", responses(
    (status = 200, body = DiskAlarm), (status = 404, body = ErrorBody)))]
pub(crate) async fn disk_alarm(State(s): State<AdminState>) -> Result<Json<DiskAlarm>, ApiError> {
    Ok(Json(gateway(&s)?.disk_status().into()))
}

/// Sets the free-space limit (RabbitMQ's `set_disk_free_limit`); applied at once.
#[utoipa::path(put, path = "/api/v1/amqp/disk-alarm", tag = "amqp", request_body = DiskLimitBody, responses(
    (status = 200, body = DiskAlarm), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_disk_limit(
    State(s): State<AdminState>,
    ApiJson(b): ApiJson<DiskLimitBody>,
) -> Result<Json<DiskAlarm>, ApiError> {
    Ok(Json(gateway(&s)?.set_disk_free_limit(b.limit_bytes).await.into()))
}
