//! DescribeCluster: every serving node, the cluster id and the controller;
//! fenced nodes too (flagged) when v2's `IncludeFencedBrokers` asks, as
//! `kafka-cluster.sh`/`Admin.describeCluster(includeFencedBrokers)` do.

use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use fjord_kafka_codec::kafka_protocol::messages::{BrokerId, DescribeClusterRequest};

use super::metadata::OPS_OMITTED;
use super::{RequestContext, kafka_endpoint, sb};

/// `endpoint_type` 1: brokers (2 would be controllers, which KRaft
/// clusters expose separately).
const ENDPOINT_BROKERS: i8 = 1;

pub(crate) fn describe(ctx: &RequestContext<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let broker = &ctx.gw.broker;
    let cluster = broker.metadata(Some(&[]));
    let base = DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(sb(broker.cluster_id()))
        .with_controller_id(BrokerId(cluster.controller_id))
        .with_cluster_authorized_operations(OPS_OMITTED);
    if ctx.version() >= 1 && req.endpoint_type != ENDPOINT_BROKERS {
        return base
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(sb("only broker endpoints are served")));
    }
    let fenced = if ctx.version() >= 2 && req.include_fenced_brokers { cluster.fenced } else { Vec::new() };
    let serving = cluster.nodes.into_iter().map(|n| (n, false));
    base.with_brokers(
        serving
            .chain(fenced.into_iter().map(|n| (n, true)))
            .map(|(node, is_fenced)| {
                let (host, port) = kafka_endpoint(&node);
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(node.node_id))
                    .with_host(sb(host))
                    .with_port(port)
                    .with_rack(node.rack.map(sb))
                    .with_is_fenced(is_fenced)
            })
            .collect(),
    )
}
