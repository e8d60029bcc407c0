//! Produce: stores each partition's record batch as sent (no re-encoding),
//! after `fjord-log` checked its framing and CRC. Partitions of one request
//! are appended concurrently, so they share group commits. A request is
//! handled in two steps: its writes, in the connection's order, then the
//! wait for their acknowledgements, which overlaps the next requests'
//! (see `connection`).

use bytes::BytesMut;
use fjord_broker::{Acks, Broker, BrokerError, TopicPartition, WrittenProduce};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::ProduceRequest;
use fjord_kafka_codec::kafka_protocol::messages::produce_request::PartitionProduceData;
use fjord_kafka_codec::kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use futures_util::future::{BoxFuture, join_all, ready};
use tokio::time::Instant;

use super::{RequestContext, sb, topic_name};
use crate::errors;

/// How long an acks=all write whose request names no positive timeout
/// waits for its commit before it is answered REQUEST_TIMED_OUT.
pub(crate) const UNBOUNDED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes the request's batches and returns once they are all in their
/// logs (offsets assigned), with the wait for their acknowledgements and
/// the response still to come: the connection writes the next request's
/// batches after these (so a producer's order holds) while this one waits
/// for its replication round.
pub(crate) async fn handle(
    ctx: &RequestContext<'_>,
    req: ProduceRequest,
) -> BoxFuture<'static, Option<ProduceResponse>> {
    let acks = req.acks;
    if !matches!(acks, -1..=1) {
        return Box::pin(ready(Some(fail_all(&req, ResponseError::InvalidRequiredAcks.code(), None))));
    }
    if req.transactional_id.is_some() {
        let message = (ctx.version() >= 8).then_some("transactions are not supported yet");
        let response = fail_all(&req, ResponseError::TransactionalIdAuthorizationFailed.code(), message);
        return Box::pin(ready(Some(response)));
    }

    let broker = ctx.gw.broker.clone();
    // acks=1 (and 0): the leader's durable copy; -1: every in-sync replica's.
    let ack_level = if acks == -1 { Acks::All } else { Acks::Leader };
    let v = ctx.version();
    // acks=all waits for the in-sync replicas at most the request's timeout
    // (Kafka's DelayedProduce), then answers REQUEST_TIMED_OUT: the write
    // may still commit, and an idempotent retry is recognised and waits for
    // it. A timeout of zero or less would expire before a durable commit
    // could happen here (every commit waits for an fsync or a follower,
    // where Kafka's single replica commits on append): it gets
    // [`UNBOUNDED_TIMEOUT`] instead of an unbounded wait.
    let deadline = (acks == -1).then(|| {
        let timeout = u64::try_from(req.timeout_ms).ok().filter(|t| *t > 0).map(std::time::Duration::from_millis);
        Instant::now() + timeout.unwrap_or(UNBOUNDED_TIMEOUT)
    });
    // Every partition of the request is written concurrently, so they
    // share group commits.
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut writes = Vec::new();
    for t in req.topic_data {
        let name = topic_name(ctx, t.name.as_str(), &t.topic_id);
        topics.push((t.name, t.topic_id, t.partition_data.len()));
        for p in t.partition_data {
            writes.push(write(&broker, name.clone(), p, ack_level, deadline, v));
        }
    }
    let slots = join_all(writes).await;
    if acks == 0 {
        // No answer: the writes stand, their durability follows the
        // topic's policy.
        return Box::pin(ready(None));
    }
    Box::pin(async move {
        let mut done =
            join_all(slots.into_iter().map(|slot| acknowledge(&broker, slot, deadline, v))).await.into_iter();
        let topics: Vec<TopicProduceResponse> = topics
            .into_iter()
            .map(|(name, id, n)| {
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_partition_responses(done.by_ref().take(n).collect())
            })
            .collect();
        let endpoints = if v >= 10 { leader_endpoints(&broker, &topics) } else { Vec::new() };
        Some(ProduceResponse::default().with_responses(topics).with_node_endpoints(endpoints))
    })
}

/// One partition after its write: answered, or written and waiting.
enum Slot {
    Done(PartitionProduceResponse),
    Written(i32, TopicPartition, WrittenProduce),
}

/// Writes one partition's batches.
async fn write(
    broker: &Broker,
    name: Option<String>,
    p: PartitionProduceData,
    acks: Acks,
    deadline: Option<Instant>,
    v: i16,
) -> Slot {
    let Some(name) = name else {
        return Slot::Done(failed(p.index, ResponseError::UnknownTopicId.code(), None));
    };
    let Some(records) = p.records else {
        return Slot::Done(failed(p.index, ResponseError::InvalidRecord.code(), (v >= 8).then_some("no records")));
    };
    let Ok(index) = u32::try_from(p.index) else {
        return Slot::Done(failed(p.index, ResponseError::UnknownTopicOrPartition.code(), None));
    };
    let tp = TopicPartition::new(name, index);
    // Produce never creates topics (Kafka creates them on Metadata only);
    // an unknown one is an error to retry.
    if let Err(e) = broker.partition(&tp) {
        return Slot::Done(failed(p.index, errors::code(&e), None));
    }
    match within(deadline, broker.produce_written(&tp, BytesMut::from(records), acks)).await {
        None => Slot::Done(failed(p.index, ResponseError::RequestTimedOut.code(), None)),
        Some(Ok(w)) => Slot::Written(p.index, tp, w),
        Some(Err(e)) => Slot::Done(refused(p.index, &tp, &e, v)),
    }
}

/// Waits for one written partition's acknowledgement.
async fn acknowledge(broker: &Broker, slot: Slot, deadline: Option<Instant>, v: i16) -> PartitionProduceResponse {
    let (index, tp, w) = match slot {
        Slot::Done(r) => return r,
        Slot::Written(index, tp, w) => (index, tp, w),
    };
    match within(deadline, broker.produce_acknowledged(w)).await {
        None => failed(index, ResponseError::RequestTimedOut.code(), None),
        Some(Ok(r)) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(r.base_offset as i64)
            .with_log_append_time_ms(r.log_append_time.unwrap_or(-1))
            .with_log_start_offset(if v >= 5 { r.log_start_offset as i64 } else { -1 }),
        Some(Err(e)) => refused(index, &tp, &e, v),
    }
}

/// `f`'s output, or `None` if `deadline` passes first.
async fn within<T>(deadline: Option<Instant>, f: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// A partition's refusal, naming the current leader when it moved (KIP-951).
fn refused(index: i32, tp: &TopicPartition, e: &BrokerError, v: i16) -> PartitionProduceResponse {
    if !matches!(e, BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } | BrokerError::NotLeader { .. })
    {
        tracing::debug!(%tp, error = %e, "produce refused");
    }
    let r = failed(index, errors::produce_code(e), (v >= 8).then(|| e.to_string()).as_deref());
    match errors::moved_to(e) {
        Some(m) => r.with_current_leader(
            LeaderIdAndEpoch::default().with_leader_id(m.node_id.into()).with_leader_epoch(m.leader_epoch),
        ),
        None => r,
    }
}

/// KIP-951: the endpoints of the leaders named in `topics` (v10+).
fn leader_endpoints(broker: &Broker, topics: &[TopicProduceResponse]) -> Vec<NodeEndpoint> {
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
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
    endpoints
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
