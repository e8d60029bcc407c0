//! JSON bodies of the route, cluster, heartbeat, consumer-list and lock
//! requests, with RocketMQ's field names. Decoding is lenient (missing
//! fields default) because clients of different releases send different
//! subsets; encoding always writes every field the Java broker writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CodecError, Result};

/// Read + write permission of a queue (`PermName`).
pub const PERM_READ_WRITE: i32 = 0x4 | 0x2;

/// A topic's route: which brokers hold how many queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    /// Ordered-topic configuration (unused: empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// Queues per broker.
    pub queue_datas: Vec<QueueData>,
    /// Broker addresses.
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers (none).
    pub filter_server_table: BTreeMap<String, Vec<String>>,
}

/// Queues of a topic on one broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    /// Broker name.
    pub broker_name: String,
    /// Readable queues.
    pub read_queue_nums: i32,
    /// Writable queues.
    pub write_queue_nums: i32,
    /// Permission bits.
    pub perm: i32,
    /// Topic system flag.
    pub topic_sys_flag: i32,
}

/// One broker (a master and its slaves) and its addresses by broker id
/// (0 = master).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// Cluster name.
    pub cluster: String,
    /// Broker name.
    pub broker_name: String,
    /// Broker id → `host:port`.
    pub broker_addrs: BTreeMap<String, String>,
}

/// `GET_BROKER_CLUSTER_INFO`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    /// Broker name → broker.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name → broker names.
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

/// A topic list body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    /// Topic names.
    pub topic_list: Vec<String>,
    /// Broker address (set by brokers, not name servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// `HEART_BEAT`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HeartbeatData {
    /// The client instance id.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Producer groups of the instance.
    #[serde(rename = "producerDataSet")]
    pub producer_data_set: Vec<ProducerData>,
    /// Consumer groups of the instance.
    #[serde(rename = "consumerDataSet")]
    pub consumer_data_set: Vec<ConsumerData>,
}

/// A producer group in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// Group name.
    pub group_name: String,
}

/// A consumer group in a heartbeat. Java clients write the enums by name,
/// the C++ client by ordinal (`messageModel` 0 = broadcasting, 1 =
/// clustering); both are kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// Group name.
    pub group_name: String,
    /// `CONSUME_ACTIVELY` (pull) or `CONSUME_PASSIVELY` (push), or 0 / 1.
    #[serde(deserialize_with = "lenient::string")]
    pub consume_type: String,
    /// `CLUSTERING` or `BROADCASTING`, or 1 / 0.
    #[serde(deserialize_with = "lenient::string")]
    pub message_model: String,
    /// `CONSUME_FROM_LAST_OFFSET`, `CONSUME_FROM_FIRST_OFFSET`,
    /// `CONSUME_FROM_TIMESTAMP`, or their ordinals.
    #[serde(deserialize_with = "lenient::string")]
    pub consume_from_where: String,
    /// Subscriptions.
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode.
    #[serde(deserialize_with = "lenient::boolean")]
    pub unit_mode: bool,
}

impl ConsumerData {
    /// Whether every consumer instance gets every message.
    pub fn is_broadcasting(&self) -> bool {
        matches!(self.message_model.as_str(), "BROADCASTING" | "0")
    }
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// Topic.
    pub topic: String,
    /// Filter expression (`*`, `TagA || TagB`, or SQL).
    pub sub_string: String,
    /// `TAG` or `SQL92` (absent: tag).
    pub expression_type: Option<String>,
    /// Version stamp of the subscription (a number, or text from C++).
    #[serde(deserialize_with = "lenient::int")]
    pub sub_version: i64,
}

/// `GET_CONSUMER_LIST_BY_GROUP`'s response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerList {
    /// Client ids of the group's live consumers.
    pub consumer_id_list: Vec<String>,
}

/// A queue of a topic on a broker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    /// Topic.
    pub topic: String,
    /// Broker name.
    pub broker_name: String,
    /// Queue id.
    pub queue_id: i32,
}

/// `LOCK_BATCH_MQ` / `UNLOCK_BATCH_MQ`'s request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequest {
    /// Consumer group.
    pub consumer_group: String,
    /// Client id.
    pub client_id: String,
    /// Queues to lock.
    pub mq_set: Vec<MessageQueue>,
}

/// `LOCK_BATCH_MQ`'s response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchResponse {
    /// Queues now locked by the caller.
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// Deserializers that accept what either client family writes.
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    pub(super) fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::String(s) => s.trim().parse().unwrap_or(0),
            _ => 0,
        })
    }

    pub(super) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => b,
            Value::Number(n) => n.as_i64().is_some_and(|v| v != 0),
            Value::String(s) => s == "true" || s == "1",
            _ => false,
        })
    }
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP's body (the fields Fjord keeps);
/// missing fields take RocketMQ's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    /// Group name.
    pub group_name: String,
    /// Re-deliveries before the dead-letter queue (RocketMQ's default 16).
    #[serde(deserialize_with = "lenient::int")]
    pub retry_max_times: i64,
    /// Ordered consumption for pop (5.x) consumers.
    #[serde(deserialize_with = "lenient::boolean")]
    pub consume_message_orderly: bool,
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        SubscriptionGroupConfig { group_name: String::new(), retry_max_times: 16, consume_message_orderly: false }
    }
}

/// One group of GET_ALL_SUBSCRIPTIONGROUP_CONFIG's answer: the fields of
/// RocketMQ's `SubscriptionGroupConfig`, Fjord's settings where it has
/// them and RocketMQ's defaults for the rest (what Fjord does: consuming
/// is always enabled, one retry queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupEntry {
    /// Group name.
    pub group_name: String,
    /// Consuming allowed.
    pub consume_enable: bool,
    /// May start from the minimum offset.
    pub consume_from_min_enable: bool,
    /// Broadcasting allowed.
    pub consume_broadcast_enable: bool,
    /// Retry queues of the group.
    pub retry_queue_nums: i32,
    /// Re-deliveries before the dead-letter queue.
    pub retry_max_times: i64,
    /// Broker id consumers read from (0: the master).
    pub broker_id: i64,
    /// Broker consumers read from when the master is slow.
    pub which_broker_when_consume_slowly: i64,
    /// Consumers are told when the group's membership changes.
    pub notify_consumer_ids_changed_enable: bool,
    /// Ordered consumption for pop (5.x) consumers.
    pub consume_message_orderly: bool,
}

impl SubscriptionGroupEntry {
    /// A group with these settings and RocketMQ's defaults otherwise.
    pub fn new(group_name: String, retry_max_times: i64, consume_message_orderly: bool) -> Self {
        SubscriptionGroupEntry {
            group_name,
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            retry_queue_nums: 1,
            retry_max_times,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            consume_message_orderly,
        }
    }
}

/// A `DataVersion`: when the table was read, and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DataVersion {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Changes counted by the broker.
    pub counter: i64,
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG's body (`SubscriptionGroupWrapper`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    /// Groups by name.
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupEntry>,
    /// The table's version.
    pub data_version: DataVersion,
}

/// Decodes a JSON body. Java's fastjson writes maps with integer keys
/// unquoted (`{0:"addr"}`); those keys are quoted first, so bodies from
/// Java peers parse too.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(first) => {
            let fixed = quote_bare_int_keys(body);
            serde_json::from_slice(&fixed).map_err(|_| CodecError::Json(first.to_string()))
        }
    }
}

/// Encodes a JSON body.
pub fn to_json<T: Serialize>(v: &T) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// `{0:"x",1:"y"}` → `{"0":"x","1":"y"}`, outside strings only.
fn quote_bare_int_keys(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 16);
    let (mut in_str, mut esc, mut i) = (false, false, 0);
    while i < s.len() {
        let c = s[i];
        if in_str {
            out.push(c);
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
        }
        out.push(c);
        i += 1;
        if c == b'{' || c == b',' {
            let start = i;
            let mut j = i;
            while j < s.len() && (s[j] == b'-' || s[j].is_ascii_digit()) {
                j += 1;
            }
            if j > start && s.get(j) == Some(&b':') {
                out.push(b'"');
                out.extend_from_slice(&s[start..j]);
                out.push(b'"');
                i = j;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastjson_integer_keys_parse() {
        let body = br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"x:1"},"brokerName":"b","cluster":"c"}],"queueDatas":[]}"#;
        let r: TopicRouteData = from_json(body).expect("parse");
        assert_eq!(r.broker_datas[0].broker_addrs["0"], "127.0.0.1:10911");
        assert_eq!(r.broker_datas[0].broker_addrs["1"], "x:1");
    }

    #[test]
    fn heartbeat_from_a_java_client_parses() {
        let body = br#"{"clientID":"10.0.0.1@1234","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"g","messageModel":"BROADCASTING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"TagA || TagB","subVersion":1700000000000,"tagsSet":["TagA","TagB"],"topic":"t"}],"unitMode":false}],"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}"#;
        let h: HeartbeatData = from_json(body).expect("parse");
        assert_eq!(h.client_id, "10.0.0.1@1234");
        assert_eq!(h.consumer_data_set[0].message_model, "BROADCASTING");
        assert_eq!(h.consumer_data_set[0].subscription_data_set[0].sub_string, "TagA || TagB");
        assert_eq!(h.producer_data_set[0].group_name, "CLIENT_INNER_PRODUCER");
        assert!(h.consumer_data_set[0].is_broadcasting());
    }

    #[test]
    fn heartbeat_from_the_cpp_client_parses() {
        // As rocketmq-client-cpp 1.2.x sends it: enum ordinals, string
        // subVersion, no tagsSet for `*`.
        let body = br#"{"clientID":"11812-127.0.0.1@DEFAULT","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,"groupName":"CG2","messageModel":1,"subscriptionDataSet":[{"subString":"*","subVersion":"1795311519028","topic":"%RETRY%CG2"},{"codeSet":[0],"subString":"tagA","subVersion":"1795311519028","tagsSet":["tagA"],"topic":"TopicA"}]}],"producerDataSet":[{"groupName":"PG1"}]}
"#;
        let h: HeartbeatData = from_json(body).expect("parse");
        let c = &h.consumer_data_set[0];
        assert!(!c.is_broadcasting());
        assert_eq!(c.subscription_data_set[1].sub_version, 1_795_311_519_028);
        assert_eq!(c.subscription_data_set[1].sub_string, "tagA");
    }

    #[test]
    fn subscription_groups_are_written_with_rocketmqs_field_names() {
        let mut table = BTreeMap::new();
        table.insert("g".to_string(), SubscriptionGroupEntry::new("g".into(), 3, true));
        let w = SubscriptionGroupWrapper {
            subscription_group_table: table,
            data_version: DataVersion { timestamp: 5, counter: 2 },
        };
        let v: serde_json::Value = serde_json::from_slice(&to_json(&w)).expect("json");
        let g = &v["subscriptionGroupTable"]["g"];
        assert_eq!(g["groupName"], "g");
        assert_eq!(g["retryMaxTimes"], 3);
        assert_eq!(g["consumeMessageOrderly"], true);
        assert_eq!(g["consumeEnable"], true);
        assert_eq!(g["retryQueueNums"], 1);
        assert_eq!(v["dataVersion"]["counter"], 2);
    }
}
