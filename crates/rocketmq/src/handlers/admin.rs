//! Administration commands (`mqadmin`, consoles): broker runtime
//! statistics and configuration, topic and consumer-group statistics,
//! consumer connections, which groups consume a topic, offset resets.

use std::collections::{BTreeMap, BTreeSet};

use fjord_broker::{OffsetSpec, TopicPartition};
use fjord_log::Durability;
use fjord_messaging::ConsumeModel;
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::admin::{
    self, Connection, ConsumerConnection, GroupList, KvTable, OffsetWrapper, TopicOffset,
};
use fjord_rocketmq_codec::bodies::{MessageQueue, SubscriptionData, to_json};
use fjord_rocketmq_codec::codes::{request, response};

use super::ok;
use crate::RocketMqGateway;
use crate::error::{Handled, Reject};

/// RocketMQ's default delay levels, which Fjord serves as they are.
const DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

impl RocketMqGateway {
    fn mq(&self, tp: &TopicPartition) -> MessageQueue {
        MessageQueue {
            topic: tp.topic.clone(),
            broker_name: self.config.broker_name.clone(),
            queue_id: self.queue_of(tp),
        }
    }
}

/// `GET_BROKER_RUNTIME_INFO`: the statistics `clusterList` and
/// `brokerStatus` print. Fjord keeps no per-day counters, so the
/// "morning" totals are 0 and "today" means "since start".
pub(crate) fn runtime_info(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let broker = gw.broker();
    let traffic = broker.traffic();
    let now = gw.now_ms();
    let up_ms = (now - broker.started_ms()).max(1);
    let tps = |n: u64| {
        let t = n as f64 * 1000.0 / up_ms as f64;
        format!("{t:.2} {t:.2} {t:.2}")
    };
    let earliest = broker
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter_map(|p| p.log_stats().max_timestamp)
        .min()
        .unwrap_or(now);
    let disk_ratio = disk_used_ratio(&broker.config().data_dir);
    let mut t = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        t.insert(k.to_string(), v);
    };
    put("brokerVersionDesc", format!("Fjord {}", env!("CARGO_PKG_VERSION")));
    put("brokerVersion", "0".into());
    put("bootTimestamp", broker.started_ms().to_string());
    put(
        "runtime",
        format!(
            "[ {} days, {} hours, {} minutes, {} seconds ]",
            up_ms / 86_400_000,
            up_ms / 3_600_000 % 24,
            up_ms / 60_000 % 60,
            up_ms / 1000 % 60
        ),
    );
    put("putTps", tps(traffic.records_in));
    put("getTransferedTps", tps(traffic.records_out));
    put("msgPutTotalTodayNow", traffic.records_in.to_string());
    put("msgGetTotalTodayNow", traffic.records_out.to_string());
    for k in [
        "msgPutTotalTodayMorning",
        "msgPutTotalYesterdayMorning",
        "msgGetTotalTodayMorning",
        "msgGetTotalYesterdayMorning",
    ] {
        put(k, "0".into());
    }
    for k in [
        "sendThreadPoolQueueSize",
        "pullThreadPoolQueueSize",
        "sendThreadPoolQueueHeadWaitTimeMills",
        "pullThreadPoolQueueHeadWaitTimeMills",
        "pageCacheLockTimeMills",
        "dispatchBehindBytes",
    ] {
        put(k, "0".into());
    }
    put("earliestMessageTimeStamp", earliest.to_string());
    put("commitLogDiskRatio", format!("{disk_ratio:.4}"));
    put("topicCount", broker.topics().len().to_string());
    put("brokerName", gw.config.broker_name.clone());
    put("brokerClusterName", gw.config.cluster_name.clone());
    Ok(ok(req).with_body(to_json(&KvTable { table: t })))
}

/// Share of the data directory's file system in use (0 when unknown).
fn disk_used_ratio(dir: &std::path::Path) -> f64 {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) if s.blocks() > 0 => 1.0 - s.blocks_available() as f64 / s.blocks() as f64,
        _ => 0.0,
    }
}

/// `GET_BROKER_CONFIG`: the broker's settings as Java properties text,
/// under RocketMQ's names where RocketMQ has the setting.
pub(crate) fn broker_config(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let b = gw.broker().config();
    let c = &gw.config;
    let log = &b.log_defaults;
    let flush = match log.durability {
        Durability::Interval(_) => "ASYNC_FLUSH",
        _ => "SYNC_FLUSH",
    };
    let hours = log.retention_ms.map_or(-1, |ms| ms / 3_600_000);
    let entries: BTreeMap<&str, String> = BTreeMap::from([
        ("brokerClusterName", c.cluster_name.clone()),
        ("brokerName", c.broker_name.clone()),
        ("brokerId", "0".into()),
        ("brokerRole", "ASYNC_MASTER".into()),
        ("brokerIP1", c.broker_addr.rsplit_once(':').map_or(String::new(), |(h, _)| h.to_string())),
        ("listenPort", c.broker_addr.rsplit_once(':').map_or(String::new(), |(_, p)| p.to_string())),
        ("storePathRootDir", b.data_dir.display().to_string()),
        ("flushDiskType", flush.into()),
        ("fileReservedTime", hours.to_string()),
        ("mappedFileSizeCommitLog", log.segment_bytes.to_string()),
        ("maxMessageSize", log.max_message_bytes.to_string()),
        ("autoCreateTopicEnable", b.auto_create_topics.to_string()),
        ("defaultTopicQueueNums", c.max_auto_create_queues.to_string()),
        ("enablePropertyFilter", "true".into()),
        ("transactionTimeOut", c.transaction_timeout.as_millis().to_string()),
        ("transactionCheckInterval", c.transaction_check_interval.as_millis().to_string()),
        ("transactionCheckMax", c.transaction_check_max.to_string()),
        ("longPollingEnable", "true".into()),
        ("messageDelayLevel", DELAY_LEVELS.into()),
    ]);
    let text: String = entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    Ok(ok(req).with_body(bytes::Bytes::from(text)))
}

/// `GET_TOPIC_STATS_INFO`: each queue's bounds and last write.
pub(crate) fn topic_stats(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let name = req.required("topic")?;
    let topic = gw
        .broker()
        .topic(name)
        .ok_or_else(|| Reject::new(response::TOPIC_NOT_EXIST, format!("topic[{name}] not exist")))?;
    let led = gw.broker().led_partitions(name);
    let offsets: Vec<(MessageQueue, TopicOffset)> = topic
        .partitions()
        .iter()
        .filter(|p| led.contains(&p.id().partition))
        .map(|p| {
            let s = p.log_stats();
            let offset = TopicOffset {
                min_offset: s.log_start_offset as i64,
                max_offset: s.high_watermark as i64,
                last_update_timestamp: s.max_timestamp.unwrap_or(0),
            };
            (gw.mq(p.id()), offset)
        })
        .collect();
    Ok(ok(req).with_body(admin::topic_stats(&offsets)))
}

/// The topics a group consumes: those it has progress on and those its
/// live members subscribe to (retry topics included, as RocketMQ).
fn group_topics(gw: &RocketMqGateway, group: &str) -> BTreeSet<String> {
    let mut topics: BTreeSet<String> =
        gw.broker().offsets().group_offsets(group).into_iter().map(|(topic, _, _)| topic).collect();
    for (_, _, data) in gw.clients.consumer_clients(group) {
        topics.extend(data.subscription_data_set.into_iter().map(|s| s.topic));
    }
    topics
}

/// `GET_CONSUME_STATS`: the group's progress against each queue's end.
pub(crate) async fn consume_stats(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let group = req.required("consumerGroup")?;
    let topics = match req.field("topic").filter(|t| !t.is_empty()) {
        Some(t) => BTreeSet::from([t.to_string()]),
        None => group_topics(gw, group),
    };
    let mut offsets = Vec::new();
    for name in topics {
        let Some(topic) = gw.broker().topic(&name) else { continue };
        for p in topic.partitions() {
            let tp = p.id().clone();
            let consumer = gw.messaging.committed(group, &ConsumeModel::Clustering, &tp).await?.unwrap_or(0);
            let last = match consumer.checked_sub(1) {
                Some(o) if o >= p.log_start_offset() => {
                    gw.messaging.query_by_offset(&tp, o).await.map_or(0, |m| m.timestamp)
                }
                _ => 0,
            };
            let w = OffsetWrapper {
                broker_offset: p.high_watermark() as i64,
                consumer_offset: consumer as i64,
                last_timestamp: last,
            };
            offsets.push((gw.mq(&tp), w));
        }
    }
    Ok(ok(req).with_body(admin::consume_stats(&offsets, 0.0)))
}

/// Java enum names for what C++ clients send as ordinals.
fn enum_name(value: &str, names: &[&str]) -> String {
    value.parse::<usize>().ok().and_then(|i| names.get(i)).map_or_else(|| value.to_string(), |n| (*n).to_string())
}

/// `GET_CONSUMER_CONNECTION_LIST`: the group's live clients and
/// subscriptions.
pub(crate) fn consumer_connections(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let group = req.required("consumerGroup")?;
    let clients = gw.clients.consumer_clients(group);
    let Some((_, _, first)) = clients.first().cloned() else {
        return Err(Reject::new(response::CONSUMER_NOT_ONLINE, format!("the consumer group[{group}] not online")));
    };
    let mut subscriptions: BTreeMap<String, SubscriptionData> = BTreeMap::new();
    let mut connections = Vec::new();
    for (client_id, conn, data) in clients {
        for s in data.subscription_data_set {
            match subscriptions.get(&s.topic) {
                Some(old) if old.sub_version >= s.sub_version => {}
                _ => {
                    subscriptions.insert(s.topic.clone(), s);
                }
            }
        }
        connections.push(Connection {
            client_id,
            client_addr: conn.addr.clone(),
            language: conn.language.name().to_string(),
            version: conn.version,
        });
    }
    let body = ConsumerConnection {
        connection_set: connections,
        subscription_table: subscriptions,
        consume_type: enum_name(&first.consume_type, &["CONSUME_ACTIVELY", "CONSUME_PASSIVELY"]),
        message_model: enum_name(&first.message_model, &["BROADCASTING", "CLUSTERING"]),
        consume_from_where: enum_name(
            &first.consume_from_where,
            &[
                "CONSUME_FROM_LAST_OFFSET",
                "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
                "CONSUME_FROM_MIN_OFFSET",
                "CONSUME_FROM_MAX_OFFSET",
                "CONSUME_FROM_FIRST_OFFSET",
                "CONSUME_FROM_TIMESTAMP",
            ],
        ),
    };
    Ok(ok(req).with_body(to_json(&body)))
}

/// `QUERY_TOPIC_CONSUME_BY_WHO`: groups with progress on the topic or a
/// live member subscribed to it.
pub(crate) fn consumed_by(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let topic = req.required("topic")?;
    let offsets = gw.broker().offsets();
    let mut groups: BTreeSet<String> =
        offsets.groups().into_iter().filter(|g| offsets.group_offsets(g).iter().any(|(t, _, _)| t == topic)).collect();
    groups.extend(gw.clients.groups_subscribed_to(topic));
    Ok(ok(req).with_body(to_json(&GroupList { group_list: groups.into_iter().collect() })))
}

/// `INVOKE_BROKER_TO_RESET_OFFSET` (`mqadmin resetOffsetByTime`): moves the
/// group's progress on every queue of the topic to the first message at or
/// after `timestamp` (without `isForce`, only backwards), then tells the
/// group's live clients (`RESET_CONSUMER_CLIENT_OFFSET`), which replace
/// their in-memory offsets, as a RocketMQ broker does.
pub(crate) async fn reset_offset(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let topic = req.required("topic")?;
    let group = req.required("group")?;
    let timestamp: i64 = req.parse("timestamp")?;
    let force = req.field("isForce").is_none_or(|f| f.eq_ignore_ascii_case("true"));
    let t = gw
        .broker()
        .topic(topic)
        .ok_or_else(|| Reject::new(response::TOPIC_NOT_EXIST, format!("topic[{topic}] not exist")))?;
    let model = ConsumeModel::Clustering;
    let mut moved = Vec::new();
    for p in t.partitions() {
        let tp = p.id().clone();
        let target = match gw.broker().list_offset(&tp, OffsetSpec::Timestamp(timestamp)).await? {
            Some(found) => found.offset,
            None => p.high_watermark(),
        };
        let committed = gw.messaging.committed(group, &model, &tp).await?;
        let offset = match committed {
            Some(c) if !force && c < target => c,
            _ => target,
        };
        gw.messaging.set_offset(group, &model, &tp, offset).await?;
        moved.push((gw.mq(&tp), offset as i64));
    }
    let body = admin::reset_offsets(&moved);
    for (_, conn, _) in gw.clients.consumer_clients(group) {
        let notice = RemotingCommand::request(request::RESET_CONSUMER_CLIENT_OFFSET)
            .with_field("topic", topic)
            .with_field("group", group)
            .with_field("timestamp", timestamp)
            .with_field("isForce", force)
            .with_body(body.clone());
        conn.send_oneway(notice);
    }
    tracing::info!(group, topic, timestamp, queues = moved.len(), "rocketmq consumer offsets reset by time");
    Ok(ok(req).with_body(body))
}
