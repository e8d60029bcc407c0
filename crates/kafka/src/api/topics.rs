//! Topic administration: CreateTopics (with configs and validate-only),
//! DeleteTopics (by name or id), CreatePartitions, DeleteRecords.
//!
//! Fjord runs every partition on this node for now: a replication factor
//! above 1 or replica assignments naming other nodes are refused with
//! Kafka's own error codes rather than silently ignored.

use fjord_broker::{BrokerError, TopicConfig, TopicPartition, topic::validate_topic_name};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use fjord_kafka_codec::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use fjord_kafka_codec::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use fjord_kafka_codec::kafka_protocol::messages::delete_topics_response::{DeletableTopicResult, DeleteTopicsResponse};
use fjord_kafka_codec::kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest, TopicName,
};

use super::{RequestContext, sb};
use crate::errors;

/// `config_source` values of CreateTopics / DescribeConfigs.
pub(crate) const SOURCE_TOPIC: i8 = 1;
pub(crate) const SOURCE_DEFAULT: i8 = 5;

fn err(code: ResponseError, message: impl Into<String>) -> (i16, Option<String>) {
    (code.code(), Some(message.into()))
}

pub(crate) async fn create(ctx: &RequestContext<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = &ctx.gw.broker;
    let node = broker.node().node_id;
    let mut results = Vec::with_capacity(req.topics.len());
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let name = t.name.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone()).with_topic_config_error_code(0);
        if !seen.insert(name.clone()) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(format!("topic '{name}' appears more than once in the request")))),
            );
            continue;
        }
        let checked: Result<(u32, TopicConfig), (i16, Option<String>)> = (|| {
            validate_topic_name(&name).map_err(|e| err(ResponseError::InvalidTopicException, e.to_string()))?;
            if broker.topic(&name).is_some() {
                return Err(err(ResponseError::TopicAlreadyExists, format!("topic '{name}' already exists")));
            }
            if !t.assignments.is_empty() && (t.num_partitions != -1 || t.replication_factor != -1) {
                return Err(err(
                    ResponseError::InvalidRequest,
                    "give either replica assignments or partition count and replication factor",
                ));
            }
            if t.assignments.iter().any(|a| a.broker_ids.iter().any(|b| b.0 != node) || a.broker_ids.len() > 1) {
                return Err(err(
                    ResponseError::InvalidReplicaAssignment,
                    format!("this cluster has one node ({node})"),
                ));
            }
            // The nodes serving as this one last heard (the controller
            // decides for real; a node cut off from it knows none).
            let nodes = broker.placement().map_or(1, |p| p.nodes.len().max(1));
            if t.replication_factor > 1 && t.replication_factor as usize > nodes {
                return Err(err(
                    ResponseError::InvalidReplicationFactor,
                    format!("replication factor {} is larger than the {nodes} serving node(s)", t.replication_factor),
                ));
            }
            if t.replication_factor == 0 || t.replication_factor < -1 {
                return Err(err(ResponseError::InvalidReplicationFactor, "replication factor must be at least 1"));
            }
            let partitions = match (t.assignments.len(), t.num_partitions) {
                (n, _) if n > 0 => n as u32,
                (_, -1) => broker.config().default_partitions,
                (_, n) if n > 0 => n as u32,
                (_, n) => return Err(err(ResponseError::InvalidPartitions, format!("{n} partitions"))),
            };
            let mut entries = Vec::new();
            for c in &t.configs {
                match &c.value {
                    Some(v) => entries.push((c.name.as_str(), v.as_str())),
                    None => return Err(err(ResponseError::InvalidConfig, format!("config '{}' has no value", c.name))),
                }
            }
            let config = TopicConfig::from_entries(entries).map_err(|e| (errors::code(&e), Some(e.to_string())))?;
            Ok((partitions, config))
        })();
        let (partitions, config) = match checked {
            Ok(v) => v,
            Err((code, message)) => {
                results.push(result.with_error_code(code).with_error_message(message.map(sb)));
                continue;
            }
        };
        let entries = config.effective_entries(&broker.config().log_defaults);
        let outcome = if req.validate_only {
            if partitions > broker.config().max_partitions {
                Err(BrokerError::InvalidPartitions(format!("{partitions} partitions")))
            } else {
                Ok(uuid::Uuid::nil())
            }
        } else {
            let rf = u16::try_from(t.replication_factor).ok().filter(|r| *r > 0);
            broker.create_topic_replicated(&name, partitions, rf, config).await.map(|t| t.id())
        };
        results.push(match outcome {
            Ok(_) if ctx.version() < 5 => result,
            Ok(id) => {
                let id = if ctx.version() >= 7 { id } else { uuid::Uuid::nil() };
                let rf = broker
                    .placement()
                    .and_then(|p| {
                        p.partition(&fjord_broker::TopicPartition::new(name.as_str(), 0)).map(|a| a.replicas.len())
                    })
                    .unwrap_or(1) as i16;
                result
                    .with_topic_id(id)
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(rf)
                    .with_configs(Some(
                        entries
                            .into_iter()
                            .map(|(k, v, overridden)| {
                                CreatableTopicConfigs::default()
                                    .with_name(sb(k))
                                    .with_value(Some(sb(v)))
                                    .with_config_source(if overridden { SOURCE_TOPIC } else { SOURCE_DEFAULT })
                            })
                            .collect(),
                    ))
            }
            Err(e) => result.with_error_code(errors::code(&e)).with_error_message(Some(sb(e.to_string()))),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub(crate) async fn delete(ctx: &RequestContext<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = &ctx.gw.broker;
    // v0-5 name topics in `topic_names`; v6 uses `topics` (name or id).
    let targets: Vec<(Option<String>, uuid::Uuid)> = if ctx.version() < 6 {
        req.topic_names.iter().map(|n| (Some(n.to_string()), uuid::Uuid::nil())).collect()
    } else {
        req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id)).collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let resolved = match (&name, id.is_nil()) {
            (Some(n), _) => broker.topic(n).map(|t| (n.clone(), t.id())),
            (None, false) => broker.topic_by_id(&id).map(|t| (t.name(), id)),
            (None, true) => None,
        };
        let base = DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(sb(n)))).with_topic_id(id);
        let Some((topic, topic_id)) = resolved else {
            let code =
                if name.is_some() { ResponseError::UnknownTopicOrPartition } else { ResponseError::UnknownTopicId };
            responses.push(base.with_error_code(code.code()));
            continue;
        };
        let v = ctx.version();
        let base = base.with_name(Some(TopicName(sb(topic.clone()))));
        let base = if v >= 6 { base.with_topic_id(topic_id) } else { base };
        responses.push(match broker.delete_topic(&topic).await {
            Ok(()) => base,
            Err(e) => base.with_error_code(errors::code(&e)).with_error_message((v >= 5).then(|| sb(e.to_string()))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(crate) async fn create_partitions(
    ctx: &RequestContext<'_>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let broker = &ctx.gw.broker;
    let node = broker.node().node_id;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let check = || -> Result<(), (i16, String)> {
            let topic = broker
                .topic(&name)
                .ok_or_else(|| (ResponseError::UnknownTopicOrPartition.code(), format!("unknown topic '{name}'")))?;
            let current = topic.partitions().len() as i32;
            if t.count <= current {
                return Err((
                    ResponseError::InvalidPartitions.code(),
                    format!("topic '{name}' has {current} partitions; the new count {} must be larger", t.count),
                ));
            }
            if let Some(a) = &t.assignments
                && (a.len() as i32 != t.count - current || a.iter().any(|x| x.broker_ids.iter().any(|b| b.0 != node)))
            {
                return Err((
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!("this cluster has one node ({node})"),
                ));
            }
            if t.count as u32 > broker.config().max_partitions {
                return Err((ResponseError::InvalidPartitions.code(), format!("{} partitions is too many", t.count)));
            }
            Ok(())
        };
        let outcome = match check() {
            Err(e) => Err(e),
            Ok(()) if req.validate_only => Ok(()),
            Ok(()) => {
                broker.create_partitions(&name, t.count as u32).await.map_err(|e| (errors::code(&e), e.to_string()))
            }
        };
        results.push(match outcome {
            Ok(()) => base,
            Err((code, message)) => base.with_error_code(code).with_error_message(Some(sb(message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub(crate) async fn delete_records(ctx: &RequestContext<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let broker = &ctx.gw.broker;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
            let Ok(index) = u32::try_from(p.partition_index) else {
                partitions.push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let tp = TopicPartition::new(t.name.as_str(), index);
            // -1 means "up to the high watermark".
            let target = match (p.offset, broker.partition(&tp)) {
                (_, Err(e)) => Err(errors::code(&e)),
                (-1, Ok(part)) => Ok(part.high_watermark()),
                (o, Ok(part)) if o < 0 || o as u64 > part.high_watermark() => {
                    Err(ResponseError::OffsetOutOfRange.code())
                }
                (o, Ok(_)) => Ok(o as u64),
            };
            partitions.push(match target {
                Err(code) => base.with_error_code(code),
                Ok(offset) => match broker.delete_records(&tp, offset).await {
                    Ok(low) => base.with_low_watermark(low as i64),
                    Err(e) => base.with_error_code(errors::code(&e)),
                },
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
