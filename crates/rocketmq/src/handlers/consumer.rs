//! Client registration and consumer coordination: HEART_BEAT,
//! UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP, LOCK/UNLOCK_BATCH_MQ,
//! CHECK_CLIENT_CONFIG; subscription groups (UPDATE_AND_CREATE_,
//! DELETE_ and GET_ALL_SUBSCRIPTIONGROUP_CONFIG).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::TopicPartition;
use fjord_filter::{Filter, FilterKind};
use fjord_messaging::{ConsumeModel, GroupSettings, UNLIMITED_ATTEMPTS};
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::bodies::{
    ConsumerList, DataVersion, HeartbeatData, LockBatchRequest, LockBatchResponse, MessageQueue,
    SubscriptionGroupConfig, SubscriptionGroupEntry, SubscriptionGroupWrapper, from_json, to_json,
};
use fjord_rocketmq_codec::codes::response;
use tokio::sync::watch;

use super::ok;
use crate::RocketMqGateway;
use crate::connection::Peer;
use crate::error::{Handled, Reject};

pub(crate) async fn heartbeat(gw: &RocketMqGateway, peer: &Peer, req: &RemotingCommand) -> Handled {
    let hb: HeartbeatData = from_json(&req.body)?;
    for c in &hb.consumer_data_set {
        if !c.is_broadcasting() {
            // Consumers subscribe to their retry topic at start; it must
            // have a route before the first failure creates it.
            gw.messaging.ensure_retry_topic(&c.group_name).await?;
        }
    }
    for g in gw.clients.heartbeat(&peer.conn, &hb, gw.now_ms()) {
        gw.members_changed(&g);
    }
    Ok(ok(req))
}

pub(crate) fn unregister(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let client = req.required("clientID")?;
    let nonempty = |n| req.field(n).filter(|v| !v.is_empty());
    for g in gw.clients.unregister(client, nonempty("producerGroup"), nonempty("consumerGroup")) {
        gw.members_changed(&g);
    }
    Ok(ok(req))
}

pub(crate) fn consumer_list(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let group = req.required("consumerGroup")?;
    let ids = gw.clients.consumer_ids(group);
    if ids.is_empty() {
        return Err(Reject::new(response::SYSTEM_ERROR, format!("no consumer for this group, {group}")));
    }
    Ok(ok(req).with_body(to_json(&ConsumerList { consumer_id_list: ids })))
}

fn partitions(gw: &RocketMqGateway, mqs: &[MessageQueue]) -> Vec<TopicPartition> {
    mqs.iter().filter_map(|q| gw.partition_of(&q.topic, q.queue_id).ok()).collect()
}

/// The lock namespace of a group: broadcasting consumers each consume every
/// queue, so each locks in its own.
fn lock_group(gw: &RocketMqGateway, r: &LockBatchRequest) -> String {
    if gw.clients.is_broadcasting(&r.consumer_group) {
        ConsumeModel::Broadcasting { instance: r.client_id.clone() }.group_key(&r.consumer_group)
    } else {
        r.consumer_group.clone()
    }
}

pub(crate) fn lock(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let r: LockBatchRequest = from_json(&req.body)?;
    let granted = gw.messaging.lock_partitions(&lock_group(gw, &r), &r.client_id, &partitions(gw, &r.mq_set));
    let ok_set = r
        .mq_set
        .into_iter()
        .filter(|q| granted.iter().any(|tp| tp.topic == q.topic && gw.queue_of(tp) == q.queue_id))
        .collect();
    Ok(ok(req).with_body(to_json(&LockBatchResponse { lock_ok_mq_set: ok_set })))
}

pub(crate) fn unlock(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let r: LockBatchRequest = from_json(&req.body)?;
    gw.messaging.unlock_partitions(&lock_group(gw, &r), &r.client_id, &partitions(gw, &r.mq_set));
    Ok(ok(req))
}

/// Java clients ask whether the broker accepts an SQL92 subscription
/// before using it.
pub(crate) fn check_client_config(req: &RemotingCommand) -> Handled {
    let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let sub = &v["subscriptionData"];
    if let Some(expr) = sub["subString"].as_str() {
        let kind = match sub["expressionType"].as_str() {
            Some(k) if k.eq_ignore_ascii_case("SQL92") => FilterKind::Sql92,
            _ => FilterKind::Tag,
        };
        Filter::parse(kind, expr).map_err(|e| Reject::new(response::SUBSCRIPTION_PARSE_FAILED, e.to_string()))?;
    }
    Ok(ok(req))
}

/// `mqadmin updateSubGroup`: retries before the dead-letter queue and
/// ordered consumption for 5.x (pop) consumers.
pub(crate) async fn update_group(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let c: SubscriptionGroupConfig = from_json(&req.body)?;
    if c.group_name.is_empty() {
        return Err(Reject::new(response::SYSTEM_ERROR, "groupName is required"));
    }
    // RocketMQ counts re-deliveries, Fjord deliveries.
    let max_attempts = (c.retry_max_times.clamp(0, 63) + 1) as u32;
    let settings = GroupSettings { max_attempts, fifo: c.consume_message_orderly };
    gw.messaging.set_group_settings(&c.group_name, Some(settings)).await?;
    Ok(ok(req))
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (`DefaultMQAdminExt
/// .examineSubscriptionGroupConfig`, `mqadmin getConsumerConfig`, the
/// dashboard): every group with its own settings. In a cluster the
/// settings are the cluster's, so every broker answers the same.
pub(crate) fn all_groups(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let mut table = BTreeMap::new();
    for (group, s) in gw.messaging.configured_group_settings() {
        // Groups stored to redeliver for ever are not RocketMQ
        // subscription groups (retryMaxTimes has no such value).
        if s.max_attempts == UNLIMITED_ATTEMPTS {
            continue;
        }
        let retries = i64::from(s.max_attempts) - 1;
        table.insert(group.clone(), SubscriptionGroupEntry::new(group, retries, s.fifo));
    }
    let counter = table.len() as i64;
    let body = SubscriptionGroupWrapper {
        subscription_group_table: table,
        data_version: DataVersion { timestamp: gw.messaging.broker().clock().now_ms(), counter },
    };
    Ok(ok(req).with_body(to_json(&body)))
}

pub(crate) async fn delete_group(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let group = req.required("groupName")?;
    gw.messaging.set_group_settings(group, None).await?;
    Ok(ok(req))
}

/// Forgets clients whose heartbeats stopped, every 10 s.
pub(crate) async fn run_expiry(
    gw: Arc<RocketMqGateway>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), crate::RocketMqError> {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        let cutoff = gw.now_ms() - gw.config.client_expiry.as_millis() as i64;
        for g in gw.clients.remove_where(None, cutoff) {
            tracing::info!(group = g, "rocketmq consumer expired without heartbeat");
            gw.members_changed(&g);
        }
    }
}
