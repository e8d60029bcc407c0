//! Bodies of the administration commands `mqadmin` and consoles use:
//! broker runtime statistics, topic and consumer-group statistics, consumer
//! connections, offset resets.
//!
//! Several of them are Java maps keyed by a `MessageQueue` object, which
//! Java's fastjson writes with the *object* as the key
//! (`{{"brokerName":"b","queueId":0,"topic":"t"}:{...}}`). That is not JSON,
//! but it is what every RocketMQ client parses, so [`queue_map`] writes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bodies::{MessageQueue, SubscriptionData};

/// `KVTable`: `GET_BROKER_RUNTIME_INFO`'s response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KvTable {
    /// Statistic name → value, as text.
    pub table: BTreeMap<String, String>,
}

/// `TopicOffset`: one queue in `GET_TOPIC_STATS_INFO`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicOffset {
    /// First offset still stored.
    pub min_offset: i64,
    /// Offset the next message gets.
    pub max_offset: i64,
    /// When the queue was last written (ms), 0 if never.
    pub last_update_timestamp: i64,
}

/// `OffsetWrapper`: one queue in `GET_CONSUME_STATS`' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OffsetWrapper {
    /// Offset the next message gets.
    pub broker_offset: i64,
    /// The group's committed offset.
    pub consumer_offset: i64,
    /// Store time of the last consumed message (ms), 0 if none.
    pub last_timestamp: i64,
}

/// `Connection`: one client of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// Client instance id.
    pub client_id: String,
    /// `host:port` of its connection.
    pub client_addr: String,
    /// `LanguageCode` name (`JAVA`, `CPP`, ...).
    pub language: String,
    /// Client release ordinal.
    pub version: i32,
}

/// `ConsumerConnection`: `GET_CONSUMER_CONNECTION_LIST`'s response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnection {
    /// The group's live clients.
    pub connection_set: Vec<Connection>,
    /// Topic → subscription.
    pub subscription_table: BTreeMap<String, SubscriptionData>,
    /// `CONSUME_ACTIVELY` or `CONSUME_PASSIVELY`.
    pub consume_type: String,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: String,
    /// Where a new group starts.
    pub consume_from_where: String,
}

/// `GroupList`: `QUERY_TOPIC_CONSUME_BY_WHO`'s response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    /// Groups consuming the topic.
    pub group_list: Vec<String>,
}

/// A `Map<MessageQueue, V>` as fastjson writes it (see the module docs).
pub fn queue_map<V: Serialize>(entries: &[(MessageQueue, V)]) -> String {
    let mut out = String::from("{");
    for (i, (mq, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(mq).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(v).unwrap_or_default());
    }
    out.push('}');
    out
}

/// `TopicStatsTable`: `GET_TOPIC_STATS_INFO`'s response body.
pub fn topic_stats(offsets: &[(MessageQueue, TopicOffset)]) -> bytes::Bytes {
    bytes::Bytes::from(format!("{{\"offsetTable\":{}}}", queue_map(offsets)))
}

/// `ConsumeStats`: `GET_CONSUME_STATS`' response body.
pub fn consume_stats(offsets: &[(MessageQueue, OffsetWrapper)], consume_tps: f64) -> bytes::Bytes {
    let tps = if consume_tps.is_finite() { consume_tps } else { 0.0 };
    bytes::Bytes::from(format!("{{\"consumeTps\":{tps:?},\"offsetTable\":{}}}", queue_map(offsets)))
}

/// `ResetOffsetBody`: the offsets a reset moved a group to (the answer to
/// `INVOKE_BROKER_TO_RESET_OFFSET` and the body of
/// `RESET_CONSUMER_CLIENT_OFFSET`).
pub fn reset_offsets(offsets: &[(MessageQueue, i64)]) -> bytes::Bytes {
    bytes::Bytes::from(format!("{{\"offsetTable\":{}}}", queue_map(offsets)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue { topic: "T".into(), broker_name: "broker-0".into(), queue_id: q }
    }

    #[test]
    fn queue_keyed_maps_are_written_as_fastjson_does() {
        let body = topic_stats(&[
            (mq(0), TopicOffset { min_offset: 0, max_offset: 5, last_update_timestamp: 7 }),
            (mq(1), TopicOffset::default()),
        ]);
        assert_eq!(
            std::str::from_utf8(&body).unwrap_or_default(),
            "{\"offsetTable\":{{\"topic\":\"T\",\"brokerName\":\"broker-0\",\"queueId\":0}:\
             {\"minOffset\":0,\"maxOffset\":5,\"lastUpdateTimestamp\":7},\
             {\"topic\":\"T\",\"brokerName\":\"broker-0\",\"queueId\":1}:\
             {\"minOffset\":0,\"maxOffset\":0,\"lastUpdateTimestamp\":0}}}"
        );
        let stats = consume_stats(&[], f64::NAN);
        assert_eq!(&stats[..], b"{\"consumeTps\":0.0,\"offsetTable\":{}}");
        assert_eq!(
            &reset_offsets(&[(mq(2), 9)])[..],
            b"{\"offsetTable\":{{\"topic\":\"T\",\"brokerName\":\"broker-0\",\"queueId\":2}:9}}".as_slice()
        );
    }
}
