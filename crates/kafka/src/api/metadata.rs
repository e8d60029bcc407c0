//! Metadata: brokers, topics, partition leaders; auto-creates topics when
//! both the broker and the request allow it.

use fjord_broker::{BrokerError, TopicConfig, TopicMetadata};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use fjord_kafka_codec::kafka_protocol::messages::{BrokerId, MetadataRequest, TopicName};

use super::{RequestContext, sb};
use crate::errors;

/// "Authorized operations not requested" (Kafka's `Integer.MIN_VALUE`).
pub(crate) const OPS_OMITTED: i32 = i32::MIN;

pub(crate) async fn handle(ctx: &RequestContext<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.gw.broker;
    let v = ctx.version();
    // v0 has no null: an empty list means every topic.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && v == 0 => None,
        Some(t) => Some(t),
    };
    let allow_create = (v < 4 || req.allow_auto_topic_creation) && broker.auto_create_topics();
    let mut topics = Vec::new();
    match requested {
        None => topics.extend(broker.metadata(None).topics.iter().map(|t| topic_response(t, v))),
        Some(list) => {
            for t in list {
                let entry = match (&t.name, t.topic_id.is_nil()) {
                    (Some(name), _) => by_name(ctx, name.as_str(), allow_create).await,
                    // Names are non-nullable in responses before v12.
                    (None, false) if v < 12 => match broker.topic_by_id(&t.topic_id) {
                        Some(topic) => one(ctx, &topic.name())
                            .unwrap_or_else(|| error_topic(Some(""), t.topic_id, ResponseError::UnknownTopicId.code())),
                        None => error_topic(Some(""), t.topic_id, ResponseError::UnknownTopicId.code()),
                    },
                    (None, false) => match broker.topic_by_id(&t.topic_id) {
                        Some(topic) => one(ctx, &topic.name())
                            .unwrap_or_else(|| error_topic(None, t.topic_id, ResponseError::UnknownTopicId.code())),
                        None => error_topic(None, t.topic_id, ResponseError::UnknownTopicId.code()),
                    },
                    (None, true) => error_topic(None, t.topic_id, ResponseError::InvalidRequest.code()),
                };
                topics.push(entry);
            }
        }
    }
    let cluster = broker.metadata(Some(&[]));
    // Fenced nodes too: a node that misses its lease for a moment must not
    // leave clients' broker lists (see `ClusterMetadata::fenced`).
    let listed: Vec<_> = cluster.nodes.iter().chain(&cluster.fenced).cloned().collect();
    let mut r = MetadataResponse::default().with_brokers(brokers(ctx, &listed)).with_topics(topics);
    if v >= 1 {
        r = r.with_controller_id(BrokerId(cluster.controller_id));
    }
    if v >= 2 {
        r = r.with_cluster_id(Some(sb(broker.cluster_id())));
    }
    r
}

async fn by_name(ctx: &RequestContext<'_>, name: &str, allow_create: bool) -> MetadataResponseTopic {
    let broker = &ctx.gw.broker;
    if let Some(t) = one(ctx, name) {
        return t;
    }
    if !allow_create {
        return error_topic(Some(name), uuid::Uuid::nil(), ResponseError::UnknownTopicOrPartition.code());
    }
    let partitions = broker.config().default_partitions;
    match broker.create_topic(name, partitions, TopicConfig::default()).await {
        Ok(_) | Err(BrokerError::TopicExists(_)) => one(ctx, name).unwrap_or_else(|| {
            // Deleted again between creation and lookup.
            error_topic(Some(name), uuid::Uuid::nil(), ResponseError::UnknownTopicOrPartition.code())
        }),
        Err(e) => error_topic(Some(name), uuid::Uuid::nil(), errors::code(&e)),
    }
}

fn one(ctx: &RequestContext<'_>, name: &str) -> Option<MetadataResponseTopic> {
    ctx.gw.broker.metadata(Some(&[name.to_string()])).topics.first().map(|t| topic_response(t, ctx.version()))
}

fn error_topic(name: Option<&str>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    // A non-nil id is only ever asked for (and echoed) in v10+.
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(sb(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(OPS_OMITTED)
}

fn topic_response(t: &TopicMetadata, v: i16) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(t.name.clone()))))
        .with_topic_authorized_operations(OPS_OMITTED);
    if v >= 10 {
        topic = topic.with_topic_id(t.id);
    }
    if v >= 1 {
        topic = topic.with_is_internal(t.internal);
    }
    topic.with_partitions(
        t.partitions
            .iter()
            .map(|p| {
                MetadataResponsePartition::default()
                    // No serving leader (its node is down): clients retry.
                    .with_error_code(if p.leader < 0 { ResponseError::LeaderNotAvailable.code() } else { 0 })
                    .with_partition_index(p.partition as i32)
                    .with_leader_id(BrokerId(p.leader))
                    .with_leader_epoch(if v >= 7 { p.leader_epoch } else { -1 })
                    .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                    .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
            })
            .collect(),
    )
}

fn brokers(ctx: &RequestContext<'_>, nodes: &[fjord_broker::NodeInfo]) -> Vec<MetadataResponseBroker> {
    nodes
        .iter()
        .map(|node| {
            let (host, port) = super::kafka_endpoint(node);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(node.node_id))
                .with_host(sb(host))
                .with_port(port)
                .with_rack(if ctx.version() >= 1 { node.rack.clone().map(sb) } else { None })
        })
        .collect()
}
