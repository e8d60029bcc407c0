//! Kafka's `GROUP` config resources (type 32, KIP-848): a consumer group's
//! own `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms`,
//! described and altered like topic configs (`kafka-configs --entity-type
//! groups`, `Admin.incrementalAlterConfigs`). They are the broker's group
//! configs, shared with the other protocols' group settings (which use
//! `fjord.*` names and are not listed here), kept cluster-wide in a
//! cluster; the consumer-protocol coordinator applies them.

use std::time::Duration;

use fjord_broker::group::consumer::{HEARTBEAT_INTERVAL_CONFIG, SESSION_TIMEOUT_CONFIG};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;

use super::RequestContext;
use super::topics::SOURCE_DEFAULT;
use crate::errors;

/// `config_source` of a group's own value (Kafka's `GROUP_CONFIG`).
const SOURCE_GROUP: i8 = 8;
/// Kafka's INT config type.
const TYPE_INT: i8 = 3;

/// The bounds a group's value must keep: Kafka's defaults for
/// `group.consumer.{min,max}.{session.timeout,heartbeat.interval}.ms`,
/// widened to include this broker's own default.
fn bounds(name: &str, default: Duration) -> (u64, u64) {
    let d = default.as_millis() as u64;
    match name {
        SESSION_TIMEOUT_CONFIG => (d.min(45_000), d.max(60_000)),
        _ => (d.min(5_000), d.max(15_000)),
    }
}

fn defaults(ctx: &RequestContext<'_>) -> [(&'static str, Duration); 2] {
    let c = ctx.gw.broker.consumer_groups().config();
    [(SESSION_TIMEOUT_CONFIG, c.session_timeout), (HEARTBEAT_INTERVAL_CONFIG, c.heartbeat_interval)]
}

/// One described config: name, value, source, type, read-only.
pub(crate) type Entry = (String, String, i8, i8, bool);

/// DescribeConfigs of group `group`.
pub(crate) fn describe(ctx: &RequestContext<'_>, group: &str) -> Result<Vec<Entry>, String> {
    if group.is_empty() {
        return Err("a group name must not be empty".into());
    }
    let own = ctx.gw.broker.group_config(group).unwrap_or_default();
    Ok(defaults(ctx)
        .into_iter()
        .map(|(name, default)| match own.get(name) {
            Some(v) => (name.to_string(), v.clone(), SOURCE_GROUP, TYPE_INT, false),
            None => (name.to_string(), default.as_millis().to_string(), SOURCE_DEFAULT, TYPE_INT, false),
        })
        .collect())
}

/// IncrementalAlterConfigs of one group resource: SET (0) and DELETE (1)
/// of the consumer settings, checked against their bounds; the error code
/// and message of the first refusal otherwise.
pub(crate) async fn incremental_alter(
    ctx: &RequestContext<'_>,
    r: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let group = r.resource_name.as_str();
    let invalid = |code: ResponseError, m: String| Err((code.code(), m));
    if group.is_empty() {
        return invalid(ResponseError::InvalidRequest, "a group name must not be empty".into());
    }
    let defaults = defaults(ctx);
    let mut config = ctx.gw.broker.group_config(group).unwrap_or_default();
    for c in &r.configs {
        let name = c.name.as_str();
        let Some((_, default)) = defaults.iter().find(|(n, _)| *n == name) else {
            return invalid(ResponseError::InvalidConfig, format!("unknown group config name: {name}"));
        };
        match (c.config_operation, c.value.as_ref().map(|v| v.as_str())) {
            (0, Some(v)) => {
                let (lo, hi) = bounds(name, *default);
                match v.parse::<u64>() {
                    Ok(ms) if (lo..=hi).contains(&ms) => {
                        config.insert(name.to_string(), ms.to_string());
                    }
                    _ => {
                        return invalid(
                            ResponseError::InvalidConfig,
                            format!("{name} must be a number of milliseconds from {lo} to {hi}, not '{v}'"),
                        );
                    }
                }
            }
            (1, _) => {
                config.remove(name);
            }
            (2 | 3, _) => return invalid(ResponseError::InvalidConfig, format!("{name} is not a list")),
            (op, _) => {
                return invalid(ResponseError::InvalidRequest, format!("operation {op} on {name} needs a value"));
            }
        }
    }
    let effective = |name: &str, default: Duration| {
        config.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(default.as_millis() as u64)
    };
    let (session, heartbeat) = (effective(defaults[0].0, defaults[0].1), effective(defaults[1].0, defaults[1].1));
    if heartbeat >= session {
        return invalid(
            ResponseError::InvalidConfig,
            format!("{HEARTBEAT_INTERVAL_CONFIG} ({heartbeat}) must be less than {SESSION_TIMEOUT_CONFIG} ({session})"),
        );
    }
    if validate_only {
        return Ok(());
    }
    ctx.gw.broker.set_group_config(group, config).await.map_err(|e| (errors::code(&e), e.to_string()))
}
