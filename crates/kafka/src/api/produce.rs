//! Produce: stores each partition's record batch as sent (no re-encoding),
//! after `fjord-log` checked its framing and CRC. Partitions of one request
//! are appended concurrently, so they share group commits.

use bytes::BytesMut;
use fjord_broker::{Acks, BrokerError, TopicPartition};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::ProduceRequest;
use fjord_kafka_codec::kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use futures_util::future::join_all;

use super::{RequestContext, sb, topic_name};
use crate::errors;

pub(crate) async fn handle(ctx: &RequestContext<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let acks = req.acks;
    if !matches!(acks, -1..=1) {
        return Some(fail_all(&req, ResponseError::InvalidRequiredAcks.code(), None));
    }
    if req.transactional_id.is_some() {
        let message = (ctx.version() >= 8).then_some("transactions are not supported yet");
        return Some(fail_all(&req, ResponseError::TransactionalIdAuthorizationFailed.code(), message));
    }

    let broker = &ctx.gw.broker;
    // acks=1 (and 0): the leader's durable copy; -1: every in-sync replica's.
    let ack_level = if acks == -1 { Acks::All } else { Acks::Leader };
    let v = ctx.version();
    let wait = (acks == -1 && req.timeout_ms > 0).then(|| std::time::Duration::from_millis(req.timeout_ms as u64));
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name = topic_name(ctx, t.name.as_str(), &t.topic_id);
        let results = join_all(t.partition_data.into_iter().map(|p| {
            let name = name.clone();
            async move {
                let Some(name) = name else {
                    return failed(p.index, ResponseError::UnknownTopicId.code(), None);
                };
                let Some(records) = p.records else {
                    return failed(p.index, ResponseError::InvalidRecord.code(), (v >= 8).then_some("no records"));
                };
                let Ok(index) = u32::try_from(p.index) else {
                    return failed(p.index, ResponseError::UnknownTopicOrPartition.code(), None);
                };
                let tp = TopicPartition::new(name, index);
                // Produce never creates topics (Kafka creates them on
                // Metadata only); an unknown one is an error to retry.
                if let Err(e) = broker.partition(&tp) {
                    return failed(p.index, errors::code(&e), None);
                }
                let produced = broker.produce_acks(&tp, BytesMut::from(records), ack_level);
                // acks=all waits for the in-sync replicas at most the
                // request's timeout (Kafka's DelayedProduce), then answers
                // REQUEST_TIMED_OUT: the write may still commit, and an
                // idempotent retry is recognised and waits for it.
                let produced = match wait {
                    Some(wait) => match tokio::time::timeout(wait, produced).await {
                        Ok(r) => r,
                        Err(_) => return failed(p.index, ResponseError::RequestTimedOut.code(), None),
                    },
                    None => produced.await,
                };
                match produced {
                    Ok(r) => PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_base_offset(r.base_offset as i64)
                        .with_log_append_time_ms(r.log_append_time.unwrap_or(-1))
                        .with_log_start_offset(if v >= 5 { r.log_start_offset as i64 } else { -1 }),
                    Err(e) => {
                        if !matches!(
                            e,
                            BrokerError::UnknownTopic(_)
                                | BrokerError::UnknownPartition { .. }
                                | BrokerError::NotLeader { .. }
                        ) {
                            tracing::debug!(%tp, error = %e, "produce refused");
                        }
                        let r = failed(p.index, errors::produce_code(&e), (v >= 8).then(|| e.to_string()).as_deref());
                        match errors::moved_to(&e) {
                            Some(m) => r.with_current_leader(
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(m.node_id.into())
                                    .with_leader_epoch(m.leader_epoch),
                            ),
                            None => r,
                        }
                    }
                }
            }
        }))
        .await;
        topics.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(results),
        );
    }
    if acks == 0 {
        return None;
    }
    // KIP-951: the endpoints of the leaders named above (v10+).
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
    if v >= 10 {
        let leaders = topics.iter().flat_map(|t| &t.partition_responses).map(|p| p.current_leader.leader_id.0);
        for id in leaders.filter(|id| *id >= 0) {
            if endpoints.iter().any(|e| e.node_id.0 == id) {
                continue;
            }
            if let Some(node) = broker.placement().and_then(|pl| pl.node(id).cloned()) {
                let (host, port) = super::kafka_endpoint(&node);
                endpoints.push(
                    NodeEndpoint::default()
                        .with_node_id(id.into())
                        .with_host(sb(&host))
                        .with_port(port)
                        .with_rack(node.rack.as_deref().map(sb)),
                );
            }
        }
    }
    Some(ProduceResponse::default().with_responses(topics).with_node_endpoints(endpoints))
}

/// The same error for every partition of the request.
fn fail_all(req: &ProduceRequest, code: i16, message: Option<&str>) -> ProduceResponse {
    let topics = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partition_responses(t.partition_data.iter().map(|p| failed(p.index, code, message)).collect())
        })
        .collect();
    ProduceResponse::default().with_responses(topics)
}

fn failed(index: i32, code: i16, message: Option<&str>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(sb))
}
