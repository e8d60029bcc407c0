//! Request handlers, one module per API family. Each takes the decoded
//! `kafka-protocol` request and returns the response body; the connection
//! encodes it in the request's version.

use fjord_kafka_codec::kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use fjord_kafka_codec::kafka_protocol::protocol::StrBytes;

use crate::error::KafkaError;
use crate::server::KafkaGateway;

pub(crate) mod api_versions;
mod cluster;
mod configs;
pub(crate) mod consumer_groups;
mod epochs;
pub(crate) mod fetch;
pub(crate) mod fetch_sessions;
mod group_configs;
mod groups;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod producer_ids;
mod reassignments;
mod topic_partitions;
mod topics;

/// What a handler knows about the request beyond its body.
#[derive(Debug)]
pub(crate) struct RequestContext<'a> {
    pub(crate) gw: &'a KafkaGateway,
    pub(crate) header: &'a RequestHeader,
    pub(crate) client_host: &'a str,
}

impl RequestContext<'_> {
    pub(crate) fn version(&self) -> i16 {
        self.header.request_api_version
    }

    pub(crate) fn client_id(&self) -> String {
        self.header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default()
    }
}

/// A handler's answer.
#[derive(Debug)]
pub(crate) enum Reply {
    /// An ordinary response body.
    Body(ResponseKind),
    /// A Fetch response whose records stay in the log files.
    Fetch(fetch::FetchReply),
}

/// A request handled so far: answered, or with the part that must run in
/// the connection's order done and the rest (waiting) to follow.
// Moved once per request, straight to the connection: boxing the common
// variant would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Handled {
    /// The answer; `None` means "send no response" (Produce with
    /// `acks=0`).
    Now(Option<Reply>),
    /// A Produce whose batches are written, waiting for their
    /// acknowledgement.
    Later(futures_util::future::BoxFuture<'static, Option<Reply>>),
}

/// Handles one request; an error closes the connection.
pub(crate) async fn handle(ctx: &RequestContext<'_>, request: RequestKind) -> Result<Handled, KafkaError> {
    Ok(match request {
        RequestKind::Produce(r) => {
            let acknowledged = produce::handle(ctx, r).await;
            Handled::Later(Box::pin(async move { acknowledged.await.map(|r| Reply::Body(ResponseKind::Produce(r))) }))
        }
        other => Handled::Now(handle_now(ctx, other).await?),
    })
}

async fn handle_now(ctx: &RequestContext<'_>, request: RequestKind) -> Result<Option<Reply>, KafkaError> {
    let response = match request {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(ctx, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, r).await),
        RequestKind::Fetch(r) => return Ok(Some(Reply::Fetch(fetch::handle(ctx, r).await))),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(ctx, r).await),
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(epochs::handle(ctx, r)),
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(producer_ids::handle(ctx, r).await),
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(groups::find_coordinator(ctx, r)),
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(groups::join(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(ctx, r).await),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe(ctx, r)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(ctx, r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete(ctx, r).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offsets::commit(ctx, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offsets::fetch(ctx, r)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offsets::delete(ctx, r).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create(ctx, r).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(topics::delete(ctx, r).await),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(topics::create_partitions(ctx, r).await),
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(topics::delete_records(ctx, r).await),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(ctx, r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r).await)
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(ctx, r).await),
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(cluster::describe(ctx, r)),
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(reassignments::alter(ctx, r).await)
        }
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(reassignments::elect(ctx, r).await),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassignments::list(ctx, r))
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(consumer_groups::heartbeat(ctx, r).await)
        }
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(consumer_groups::describe(ctx, r)),
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(topic_partitions::handle(ctx, r))
        }
        // The codec only decodes advertised APIs, all of which are above
        // (Produce in `handle`).
        other => return Err(KafkaError::Unhandled(format!("{:?}", std::mem::discriminant(&other)))),
    };
    Ok(Some(Reply::Body(response)))
}

/// A `StrBytes` from an owned string.
pub(crate) fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The host and port clients should use for `node`'s Kafka listener.
pub(crate) fn kafka_endpoint(node: &fjord_broker::NodeInfo) -> (String, i32) {
    let advertised = node.listeners.get("kafka").map(String::as_str).unwrap_or("localhost:9092");
    // `host:port`, where host may be a bracketed IPv6 address.
    match advertised.rsplit_once(':') {
        Some((host, port)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            (host.to_string(), port.parse().unwrap_or(9092))
        }
        None => (advertised.to_string(), 9092),
    }
}

/// Resolves a topic named by name or (Produce v13+, Fetch v13+) by id.
pub(crate) fn topic_name(ctx: &RequestContext<'_>, name: &str, id: &uuid::Uuid) -> Option<String> {
    if !name.is_empty() {
        return Some(name.to_string());
    }
    if id.is_nil() {
        return None;
    }
    ctx.gw.broker.topic_by_id(id).map(|t| t.name())
}
