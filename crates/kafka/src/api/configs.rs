//! DescribeConfigs (topics, this broker, consumer groups) and
//! IncrementalAlterConfigs (topics, consumer groups: see
//! [`super::group_configs`]). Topic configs use Kafka's names; Fjord's own
//! are `fjord.*`.

use fjord_broker::TopicConfig;
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::alter_configs_response::{self, AlterConfigsResponse};
use fjord_kafka_codec::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use fjord_kafka_codec::kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};
use fjord_kafka_codec::kafka_protocol::messages::{
    AlterConfigsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
};

use super::topics::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::{RequestContext, sb};
use crate::errors;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
/// `config_source` of static broker settings.
const SOURCE_STATIC_BROKER: i8 = 4;

/// Kafka's config types (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const TYPE_CLASS: i8 = 8;

const TYPE_DOUBLE: i8 = 6;

fn topic_config_type(key: &str) -> i8 {
    use fjord_broker::topic_keys::ValueType;
    match fjord_broker::topic_keys::spec(key).map(|k| k.value_type) {
        Some(ValueType::Boolean) => TYPE_BOOLEAN,
        Some(ValueType::String) => TYPE_STRING,
        Some(ValueType::Int) => TYPE_INT,
        Some(ValueType::Long) | None => TYPE_LONG,
        Some(ValueType::Double) => TYPE_DOUBLE,
        Some(ValueType::List) => TYPE_LIST,
    }
}

pub(crate) fn describe(ctx: &RequestContext<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = &ctx.gw.broker;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let wanted =
                |k: &str| r.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|w| w.as_str() == k));
            let entries: Vec<(String, String, i8, i8, bool)> = match r.resource_type {
                RESOURCE_TOPIC => match broker.topic(r.resource_name.as_str()) {
                    Some(t) => t
                        .record()
                        .config
                        .effective_entries(&broker.config().log_defaults)
                        .into_iter()
                        .map(|(k, v, o)| {
                            (
                                k.to_string(),
                                v,
                                if o { SOURCE_TOPIC } else { SOURCE_DEFAULT },
                                topic_config_type(k),
                                false,
                            )
                        })
                        .collect(),
                    None => {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(sb(format!("unknown topic '{}'", r.resource_name))));
                    }
                },
                RESOURCE_BROKER
                    if r.resource_name.is_empty() || r.resource_name.as_str() == broker.node().node_id.to_string() =>
                {
                    broker_entries(ctx)
                        .into_iter()
                        .map(|(k, v, t)| (k.to_string(), v, SOURCE_STATIC_BROKER, t, true))
                        .collect()
                }
                RESOURCE_BROKER => {
                    return base
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(format!("unknown broker '{}'", r.resource_name))));
                }
                RESOURCE_GROUP => match super::group_configs::describe(ctx, r.resource_name.as_str()) {
                    Ok(entries) => entries,
                    Err(message) => {
                        return base
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(sb(message)));
                    }
                },
                other => {
                    return base
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(format!("resource type {other} is not supported"))));
                }
            };
            base.with_configs(
                entries
                    .into_iter()
                    .filter(|(k, ..)| wanted(k))
                    .map(|(k, v, source, ty, read_only)| {
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(k))
                            .with_value(Some(sb(v)))
                            .with_read_only(read_only)
                            .with_config_source(source)
                            .with_config_type(if ctx.version() >= 3 { ty } else { 0 })
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Broker settings a Kafka admin expects to see, from the running config.
fn broker_entries(ctx: &RequestContext<'_>) -> Vec<(&'static str, String, i8)> {
    let c = ctx.gw.broker.config();
    let d = &c.log_defaults;
    let (host, port) = super::kafka_endpoint(&ctx.gw.broker.node());
    let mut entries = vec![
        ("advertised.listeners", format!("PLAINTEXT://{host}:{port}"), TYPE_STRING),
        ("broker.id", ctx.gw.broker.node().node_id.to_string(), TYPE_INT),
        ("auto.create.topics.enable", c.auto_create_topics.to_string(), TYPE_BOOLEAN),
        ("num.partitions", c.default_partitions.to_string(), TYPE_INT),
        ("default.replication.factor", ctx.gw.broker.default_replication_factor().to_string(), TYPE_INT),
        ("message.max.bytes", d.max_message_bytes.to_string(), TYPE_INT),
        ("log.segment.bytes", d.segment_bytes.to_string(), TYPE_INT),
        ("log.roll.ms", d.segment_ms.to_string(), TYPE_LONG),
        ("log.retention.ms", d.retention_ms.unwrap_or(-1).to_string(), TYPE_LONG),
        ("log.retention.bytes", d.retention_bytes.map_or(-1, |v| v as i64).to_string(), TYPE_LONG),
        ("socket.request.max.bytes", ctx.gw.config.max_request_bytes.to_string(), TYPE_INT),
        ("group.min.session.timeout.ms", c.groups.min_session_timeout.as_millis().to_string(), TYPE_INT),
        ("group.max.session.timeout.ms", c.groups.max_session_timeout.as_millis().to_string(), TYPE_INT),
        ("offsets.retention.minutes", (c.offsets_retention.as_secs() / 60).to_string(), TYPE_INT),
    ];
    // Kafka leaves both null when unset; they are listed when set.
    if let Some(rack) = &c.rack {
        entries.push(("broker.rack", rack.clone(), TYPE_STRING));
    }
    if ctx.gw.config.rack_aware_reads {
        entries.push((
            "replica.selector.class",
            "org.apache.kafka.common.replica.RackAwareReplicaSelector".to_string(),
            TYPE_CLASS,
        ));
    }
    entries
}

pub(crate) async fn incremental_alter(
    ctx: &RequestContext<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let broker = &ctx.gw.broker;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if r.resource_type == RESOURCE_GROUP {
            responses.push(match super::group_configs::incremental_alter(ctx, &r, req.validate_only).await {
                Ok(()) => base,
                Err((code, message)) => base.with_error_code(code).with_error_message(Some(sb(message))),
            });
            continue;
        }
        if r.resource_type != RESOURCE_TOPIC {
            responses.push(base.with_error_code(ResponseError::InvalidRequest.code()).with_error_message(Some(sb(
                "only topic and group configurations can be altered; broker settings are static",
            ))));
            continue;
        }
        let name = r.resource_name.to_string();
        let Some(topic) = broker.topic(&name) else {
            responses.push(
                base.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_error_message(Some(sb(format!("unknown topic '{name}'")))),
            );
            continue;
        };
        let mut config = topic.record().config;
        let mut failure = None;
        for c in &r.configs {
            let key = c.name.to_string();
            let value = c.value.as_ref().map(|v| v.to_string());
            let step = match (c.config_operation, value) {
                (0, Some(v)) => TopicConfig::validate_entry(&key, &v).map(|()| {
                    config.0.insert(key.clone(), v);
                }),
                (1, _) => {
                    config.0.remove(&key);
                    Ok(())
                }
                (2 | 3, Some(v)) if topic_config_type(&key) == TYPE_LIST => {
                    let mut items: Vec<String> = config
                        .0
                        .get(&key)
                        .cloned()
                        .or_else(|| {
                            let d = &broker.config().log_defaults;
                            fjord_broker::topic_keys::spec(&key).map(|k| k.default_value(d, d))
                        })
                        .map(|s| s.split(',').map(str::trim).filter(|i| !i.is_empty()).map(str::to_string).collect())
                        .unwrap_or_default();
                    for item in v.split(',') {
                        if c.config_operation == 2 && !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                        if c.config_operation == 3 {
                            items.retain(|i| i != item);
                        }
                    }
                    let joined = items.join(",");
                    TopicConfig::validate_entry(&key, &joined).map(|()| {
                        config.0.insert(key.clone(), joined);
                    })
                }
                (2 | 3, Some(_)) => {
                    failure = Some((ResponseError::InvalidConfig.code(), format!("'{key}' is not a list")));
                    break;
                }
                (op, _) => {
                    failure = Some((
                        ResponseError::InvalidRequest.code(),
                        format!("operation {op} on '{key}' needs a value"),
                    ));
                    break;
                }
            };
            if let Err(e) = step {
                failure = Some((errors::code(&e), e.to_string()));
                break;
            }
        }
        let outcome = match failure {
            Some(f) => Err(f),
            None if req.validate_only => Ok(()),
            None => broker.set_topic_config(&name, config).await.map_err(|e| (errors::code(&e), e.to_string())),
        };
        responses.push(match outcome {
            Ok(()) => base,
            Err((code, message)) => base.with_error_code(code).with_error_message(Some(sb(message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// AlterConfigs (the older API): each resource's configuration is replaced
/// as a whole; keys not listed return to their defaults.
pub(crate) async fn alter(ctx: &RequestContext<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let broker = &ctx.gw.broker;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let name = r.resource_name.to_string();
        let outcome = if r.resource_type != RESOURCE_TOPIC {
            Err((ResponseError::InvalidRequest.code(), "only topic configurations can be altered".to_string()))
        } else if broker.topic(&name).is_none() {
            Err((ResponseError::UnknownTopicOrPartition.code(), format!("unknown topic '{name}'")))
        } else {
            let mut entries = Vec::new();
            let mut missing = None;
            for c in &r.configs {
                match &c.value {
                    Some(v) => entries.push((c.name.as_str(), v.as_str())),
                    None => missing = Some(c.name.to_string()),
                }
            }
            match (missing, TopicConfig::from_entries(entries)) {
                (Some(key), _) => Err((ResponseError::InvalidConfig.code(), format!("config '{key}' has no value"))),
                (None, Err(e)) => Err((errors::code(&e), e.to_string())),
                (None, Ok(_)) if req.validate_only => Ok(()),
                (None, Ok(config)) => {
                    broker.set_topic_config(&name, config).await.map_err(|e| (errors::code(&e), e.to_string()))
                }
            }
        };
        responses.push(match outcome {
            Ok(()) => base,
            Err((code, message)) => base.with_error_code(code).with_error_message(Some(sb(message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}
