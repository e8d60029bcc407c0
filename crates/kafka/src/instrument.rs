//! Gateway metrics through the `metrics` facade (no-ops until the process
//! installs a recorder; this crate never installs one).
//!
//! - `fjord_request_duration_seconds{protocol="kafka", api}` (histogram,
//!   seconds): one observation per request frame read in full, from the
//!   moment its last byte was read (before decoding) until its response was
//!   written to the socket (flushed; Fetch record data sent with
//!   `sendfile`). When the client pipelines, a response followed by an
//!   already buffered request is only written into the connection's
//!   buffer, which the last response of the burst flushes. Requests without
//!   a response (Produce with `acks=0`) stop when handled; requests that
//!   fail and close the connection stop at the failure. Fetch includes its
//!   long-poll wait (up to `max_wait_ms`), JoinGroup/SyncGroup their
//!   rebalance wait, and Produce with `acks=-1` the wait for durability.
//! - `fjord_request_errors_total{protocol="kafka", api}` (counter): requests
//!   whose frame was refused (too large: no duration observation), could
//!   not be decoded or handled (the connection is then closed), were
//!   answered `UNSUPPORTED_VERSION` (ApiVersions), or whose response carries
//!   any non-zero error code: top-level, or per topic, partition, group or
//!   resource ([`response_has_error`]). Like Kafka's own `ErrorsPerSec`,
//!   this includes codes that are part of normal flows (the first
//!   JoinGroup's `MEMBER_ID_REQUIRED`, `REBALANCE_IN_PROGRESS` heartbeats,
//!   `OFFSET_OUT_OF_RANGE` fetches).
//! - `fjord_connections{protocol="kafka"}` (gauge) and
//!   `fjord_connections_accepted_total{protocol="kafka"}` (counter): see
//!   [`fjord_gateway_metrics::ConnectionGuard`].
//!
//! `api` is the Kafka API name (`Produce`, `Fetch`, `ApiVersions`, ...) for
//! the APIs Fjord serves, `Unknown` for any other key.

use fjord_gateway_metrics::GatewayMetrics;
use fjord_kafka_codec::kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::api::Reply;

/// The `api` label of a request with API key `key`.
pub(crate) fn api_name(key: i16) -> &'static str {
    let Ok(api) = ApiKey::try_from(key) else { return "Unknown" };
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        _ => "Unknown",
    }
}

/// This gateway's request and connection metrics.
pub(crate) const METRICS: GatewayMetrics = GatewayMetrics::new("kafka");

/// Whether a handler's reply carries an error code anywhere.
pub(crate) fn reply_has_error(reply: &Reply) -> bool {
    match reply {
        Reply::Body(body) => response_has_error(body),
        Reply::Fetch(f) => fetch_has_error(&f.response),
    }
}

fn fetch_has_error(r: &fjord_kafka_codec::kafka_protocol::messages::FetchResponse) -> bool {
    r.error_code != 0 || r.responses.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
}

/// Whether a response carries a non-zero error code at the top level or in
/// any topic, partition, group or resource result.
pub(crate) fn response_has_error(body: &ResponseKind) -> bool {
    match body {
        ResponseKind::ApiVersions(r) => r.error_code != 0,
        ResponseKind::Metadata(r) => {
            r.error_code != 0
                || r.topics.iter().any(|t| t.error_code != 0 || t.partitions.iter().any(|p| p.error_code != 0))
        }
        ResponseKind::Produce(r) => r.responses.iter().flat_map(|t| &t.partition_responses).any(|p| p.error_code != 0),
        ResponseKind::Fetch(r) => fetch_has_error(r),
        ResponseKind::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0),
        ResponseKind::InitProducerId(r) => r.error_code != 0,
        ResponseKind::FindCoordinator(r) => r.error_code != 0 || r.coordinators.iter().any(|c| c.error_code != 0),
        ResponseKind::JoinGroup(r) => r.error_code != 0,
        ResponseKind::SyncGroup(r) => r.error_code != 0,
        ResponseKind::Heartbeat(r) => r.error_code != 0,
        ResponseKind::LeaveGroup(r) => r.error_code != 0 || r.members.iter().any(|m| m.error_code != 0),
        ResponseKind::DescribeGroups(r) => r.groups.iter().any(|g| g.error_code != 0),
        ResponseKind::ListGroups(r) => r.error_code != 0,
        ResponseKind::DeleteGroups(r) => r.results.iter().any(|g| g.error_code != 0),
        ResponseKind::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0),
        ResponseKind::OffsetFetch(r) => {
            r.error_code != 0
                || r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
                || r.groups.iter().any(|g| {
                    g.error_code != 0 || g.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
                })
        }
        ResponseKind::OffsetDelete(r) => {
            r.error_code != 0 || r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::DeleteTopics(r) => r.responses.iter().any(|t| t.error_code != 0),
        ResponseKind::CreatePartitions(r) => r.results.iter().any(|t| t.error_code != 0),
        ResponseKind::DeleteRecords(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0),
        ResponseKind::DescribeConfigs(r) => r.results.iter().any(|c| c.error_code != 0),
        ResponseKind::AlterConfigs(r) => r.responses.iter().any(|c| c.error_code != 0),
        ResponseKind::IncrementalAlterConfigs(r) => r.responses.iter().any(|c| c.error_code != 0),
        ResponseKind::DescribeCluster(r) => r.error_code != 0,
        ResponseKind::OffsetForLeaderEpoch(r) => r.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0),
        ResponseKind::AlterPartitionReassignments(r) => {
            r.error_code != 0 || r.responses.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
        }
        ResponseKind::ListPartitionReassignments(r) => r.error_code != 0,
        ResponseKind::ElectLeaders(r) => {
            r.error_code != 0
                || r.replica_election_results.iter().flat_map(|t| &t.partition_result).any(|p| p.error_code != 0)
        }
        ResponseKind::ConsumerGroupHeartbeat(r) => r.error_code != 0,
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().any(|g| g.error_code != 0),
        ResponseKind::DescribeTopicPartitions(r) => {
            r.topics.iter().any(|t| t.error_code != 0 || t.partitions.iter().any(|p| p.error_code != 0))
        }
        // Fjord answers no other API.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use fjord_kafka_codec::SUPPORTED_APIS;
    use fjord_kafka_codec::kafka_protocol::messages::{
        ApiVersionsResponse, FetchResponse, HeartbeatResponse, ProduceResponse, fetch_response, produce_response,
    };

    use super::*;

    #[test]
    fn every_served_api_has_its_kafka_name() {
        for &(api, _, _) in SUPPORTED_APIS {
            assert_eq!(api_name(api as i16), format!("{api:?}"));
        }
        assert_eq!(api_name(ApiKey::SaslHandshake as i16), "Unknown");
        assert_eq!(api_name(-1), "Unknown");
        assert_eq!(api_name(i16::MAX), "Unknown");
    }

    #[test]
    fn error_codes_are_found_at_any_level() {
        assert!(!response_has_error(&ResponseKind::ApiVersions(ApiVersionsResponse::default())));
        assert!(response_has_error(&ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(27))));
        let part = |code| produce_response::PartitionProduceResponse::default().with_error_code(code);
        let produce = |code| {
            ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
                produce_response::TopicProduceResponse::default().with_partition_responses(vec![part(0), part(code)]),
            ]))
        };
        assert!(!response_has_error(&produce(0)));
        assert!(response_has_error(&produce(3)));
        let fetch = |top, code| {
            ResponseKind::Fetch(FetchResponse::default().with_error_code(top).with_responses(vec![
                fetch_response::FetchableTopicResponse::default()
                    .with_partitions(vec![fetch_response::PartitionData::default().with_error_code(code)]),
            ]))
        };
        assert!(!response_has_error(&fetch(0, 0)));
        assert!(response_has_error(&fetch(0, 1)));
        assert!(response_has_error(&fetch(70, 0)));
    }
}
