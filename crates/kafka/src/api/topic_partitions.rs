//! DescribeTopicPartitions (KIP-966): topics' partitions with their leaders,
//! replicas and in-sync sets, paged — what the Java admin client's
//! `describeTopics` asks a broker that offers it (Metadata otherwise).
//!
//! Answered as Apache Kafka 4.x answers it: topics in name order from the
//! cursor's topic on (from the cursor's partition there, from 0 in the
//! others); at most `min(ResponsePartitionLimit, 2000)` partitions, at
//! least 1; `NextCursor` names the first partition left out (the start of
//! the next topic when a topic ended exactly at the limit). Topics named but
//! unknown get UNKNOWN_TOPIC_OR_PARTITION (INVALID_TOPIC_EXCEPTION for an
//! illegal name); without names every topic is described. A cursor on a
//! topic outside the list, or at a negative partition, is INVALID_REQUEST
//! for every topic named. Fjord keeps no eligible leader replicas (KIP-966's
//! ELR): those lists are empty, as on a Kafka cluster without the feature.

use std::collections::{BTreeSet, HashMap};

use fjord_broker::TopicMetadata;
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponse, DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
};
use fjord_kafka_codec::kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, TopicName};

use super::metadata::OPS_OMITTED;
use super::{RequestContext, sb};

/// Kafka's `max.request.partition.size.limit` default: the most partitions
/// one response describes, whatever the request asks.
const MAX_PARTITIONS: usize = 2000;

pub(crate) fn handle(ctx: &RequestContext<'_>, req: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let named: BTreeSet<String> = req.topics.iter().map(|t| t.name.to_string()).collect();
    let cursor = req.cursor.as_ref().map(|c| (c.topic_name.to_string(), c.partition_index));
    if let Some((topic, partition)) = &cursor
        && ((!named.is_empty() && !named.contains(topic)) || *partition < 0)
    {
        let topics = req.topics.iter().map(|t| error_topic(t.name.as_str(), ResponseError::InvalidRequest)).collect();
        return DescribeTopicPartitionsResponse::default().with_topics(topics);
    }
    let every = named.is_empty();
    let listed: Vec<String> = named.iter().cloned().collect();
    let metadata = ctx.gw.broker.metadata(if every { None } else { Some(&listed) });
    let known: HashMap<&str, &TopicMetadata> = metadata.topics.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut order: Vec<&str> =
        if every { known.keys().copied().collect() } else { named.iter().map(String::as_str).collect() };
    order.sort_unstable();
    let limit = usize::try_from(req.response_partition_limit).unwrap_or(0).clamp(1, MAX_PARTITIONS);
    let (topics, next) = page(&order, &known, cursor.as_ref().map(|(t, p)| (t.as_str(), *p as usize)), limit);
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next.map(|(topic, partition)| {
        Cursor::default().with_topic_name(TopicName(sb(topic))).with_partition_index(partition)
    }))
}

/// One page: the topics of `order` from the cursor on, with at most
/// `limit` partitions, and where the next page starts.
fn page(
    order: &[&str],
    known: &HashMap<&str, &TopicMetadata>,
    cursor: Option<(&str, usize)>,
    limit: usize,
) -> (Vec<DescribeTopicPartitionsResponseTopic>, Option<(String, i32)>) {
    let mut out = Vec::new();
    let mut left = limit;
    let from = cursor.map(|(t, _)| t);
    for name in order.iter().copied().filter(|n| from.is_none_or(|f| *n >= f)) {
        if left == 0 {
            return (out, Some((name.to_string(), 0)));
        }
        let Some(t) = known.get(name) else {
            let invalid = fjord_broker::topic::validate_topic_name(name).is_err();
            out.push(error_topic(
                name,
                if invalid { ResponseError::InvalidTopicException } else { ResponseError::UnknownTopicOrPartition },
            ));
            continue;
        };
        let start = cursor.filter(|(c, _)| *c == name).map_or(0, |(_, p)| p).min(t.partitions.len());
        let end = (start + left).min(t.partitions.len());
        out.push(topic(t, &t.partitions[start..end]));
        if end < t.partitions.len() {
            return (out, Some((name.to_string(), end as i32)));
        }
        left -= end - start;
    }
    (out, None)
}

fn topic(t: &TopicMetadata, parts: &[fjord_broker::PartitionMetadata]) -> DescribeTopicPartitionsResponseTopic {
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(sb(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.internal)
        .with_topic_authorized_operations(OPS_OMITTED)
        .with_partitions(
            parts
                .iter()
                .map(|p| {
                    DescribeTopicPartitionsResponsePartition::default()
                        // No serving leader (its node is down): clients retry.
                        .with_error_code(if p.leader < 0 { ResponseError::LeaderNotAvailable.code() } else { 0 })
                        .with_partition_index(p.partition as i32)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr))
                        .with_eligible_leader_replicas(Some(Vec::new()))
                        .with_last_known_elr(Some(Vec::new()))
                })
                .collect(),
        )
}

fn error_topic(name: &str, e: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(e.code())
        .with_name(Some(TopicName(sb(name.to_string()))))
        .with_topic_authorized_operations(OPS_OMITTED)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(name: &str, partitions: u32) -> TopicMetadata {
        TopicMetadata {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            internal: false,
            partitions: (0..partitions)
                .map(|p| fjord_broker::PartitionMetadata {
                    partition: p,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2],
                })
                .collect(),
        }
    }

    fn shape(topics: &[DescribeTopicPartitionsResponseTopic]) -> Vec<(String, i16, Vec<i32>)> {
        topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().unwrap().to_string();
                (name, t.error_code, t.partitions.iter().map(|p| p.partition_index).collect())
            })
            .collect()
    }

    #[test]
    fn pages_follow_the_cursor_across_topics_as_kafka_does() {
        let (a, b) = (t("a", 3), t("b", 2));
        let known: HashMap<&str, &TopicMetadata> = [("a", &a), ("b", &b)].into();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let order = ["a", "b", "c"];
        // Mid-topic: the cursor names the first partition left out.
        let (topics, next) = page(&order, &known, None, 2);
        assert_eq!(shape(&topics), [("a".into(), 0, vec![0, 1])]);
        assert_eq!(next, Some(("a".into(), 2)));
        // A topic ending exactly at the limit: the next one's start.
        let (topics, next) = page(&order, &known, Some(("a", 2)), 1);
        assert_eq!(shape(&topics), [("a".into(), 0, vec![2])]);
        assert_eq!(next, Some(("b".into(), 0)));
        // The rest, the unknown topic named with its error, no cursor.
        let (topics, next) = page(&order, &known, Some(("b", 0)), 10);
        assert_eq!(shape(&topics), [("b".into(), 0, vec![0, 1]), ("c".into(), unknown, vec![])]);
        assert_eq!(next, None);
        // Topics before the cursor's are skipped; a cursor past a topic's
        // partitions describes none of them.
        let (topics, _) = page(&order, &known, Some(("b", 5)), 10);
        assert_eq!(shape(&topics), [("b".into(), 0, vec![]), ("c".into(), unknown, vec![])]);
        // An illegal name is an invalid topic, not an unknown one.
        let (topics, _) = page(&["bad/name"], &known, None, 10);
        assert_eq!(topics[0].error_code, ResponseError::InvalidTopicException.code());
    }

    #[test]
    fn partitions_carry_replicas_in_sync_sets_and_empty_elr() {
        let a = t("a", 1);
        let known: HashMap<&str, &TopicMetadata> = [("a", &a)].into();
        let (topics, _) = page(&["a"], &known, None, 10);
        let p = &topics[0].partitions[0];
        assert_eq!((p.leader_id, p.replica_nodes.len(), p.isr_nodes.len()), (BrokerId(1), 3, 2));
        assert_eq!(p.eligible_leader_replicas, Some(vec![]));
        assert_eq!(topics[0].topic_id, a.id);
    }
}
