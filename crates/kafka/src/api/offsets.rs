//! OffsetCommit, OffsetFetch (single and batched groups) and OffsetDelete.

use fjord_broker::{CommitIdentity, CommittedOffset, TopicPartition};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_kafka_codec::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use fjord_kafka_codec::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use fjord_kafka_codec::kafka_protocol::messages::{
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, TopicName,
};

use super::{RequestContext, sb, topic_name};
use crate::errors;

pub(crate) async fn commit(ctx: &RequestContext<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = &ctx.gw.broker;
    let group = req.group_id.to_string();
    let who = CommitIdentity {
        member_id: req.member_id.to_string(),
        generation_id: req.generation_id_or_member_epoch,
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
    };
    // Resolve names (v10 would use ids; kept general) and collect.
    let mut wanted = Vec::new();
    let mut layout = Vec::new();
    for t in &req.topics {
        let name = topic_name(ctx, t.name.as_str(), &t.topic_id);
        let mut parts = Vec::new();
        for p in &t.partitions {
            let ok = name.is_some() && p.partition_index >= 0;
            if let (Some(n), true) = (&name, ok) {
                wanted.push((
                    TopicPartition::new(n.clone(), p.partition_index as u32),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                        commit_timestamp: 0,
                    },
                ));
            }
            parts.push((p.partition_index, ok));
        }
        layout.push((t.name.clone(), t.topic_id, name.is_some(), parts));
    }
    let coordinator = super::groups::not_coordinator(ctx, &group);
    let outcome = match super::consumer_groups::validate_commit(ctx, &group, &who) {
        _ if coordinator.is_some() => Err(coordinator.unwrap_or_default()),
        Some(Err(code)) => Err(code),
        Some(Ok(())) => broker.commit_offsets_unchecked(&group, wanted).await.map_err(|e| errors::code(&e)),
        None => broker.commit_offsets(&group, &who, wanted).await.map_err(|e| errors::code(&e)),
    };
    let mut per_partition = match &outcome {
        Ok(results) => results.iter().map(|(_, r)| r.as_ref().err().map_or(0, errors::code)).collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    }
    .into_iter();
    let topics = layout
        .into_iter()
        .map(|(name, id, known, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(index, ok)| {
                    let code = match (&outcome, known, ok) {
                        (Err(code), _, _) => *code,
                        (Ok(_), false, _) => ResponseError::UnknownTopicId.code(),
                        (Ok(_), true, false) => ResponseError::UnknownTopicOrPartition.code(),
                        (Ok(_), true, true) => per_partition.next().unwrap_or(0),
                    };
                    OffsetCommitResponsePartition::default().with_partition_index(index).with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(name).with_topic_id(id).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// `(topic, partitions)` pairs asked for; `None` means all.
type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// Committed offsets of one topic, by partition (`None`: nothing committed).
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

fn lookup(ctx: &RequestContext<'_>, group: &str, wanted: Wanted) -> Vec<TopicOffsets> {
    let broker = &ctx.gw.broker;
    match wanted {
        Some(list) => list
            .into_iter()
            .map(|(topic, parts)| {
                let offs = parts
                    .into_iter()
                    .map(|p| {
                        let found = u32::try_from(p).ok().and_then(|i| broker.offsets().get(group, &topic, i));
                        (p, found)
                    })
                    .collect();
                (topic, offs)
            })
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                Default::default();
            for (t, p, o) in broker.offsets().group_offsets(group) {
                by_topic.entry(t).or_default().push((p as i32, Some(o)));
            }
            by_topic.into_iter().collect()
        }
    }
}

fn values(o: Option<CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, String::new()),
    }
}

pub(crate) fn fetch(ctx: &RequestContext<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version() < 8 {
        let group = req.group_id.to_string();
        if let Some(code) = super::groups::not_coordinator(ctx, &group) {
            return OffsetFetchResponse::default().with_error_code(code);
        }
        let wanted = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
        let topics = lookup(ctx, &group, wanted)
            .into_iter()
            .map(|(topic, parts)| {
                OffsetFetchResponseTopic::default().with_name(TopicName(sb(topic))).with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o)| {
                            let (offset, epoch, meta) = values(o);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(if ctx.version() >= 5 { epoch } else { -1 })
                                .with_metadata(Some(sb(meta)))
                        })
                        .collect(),
                )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let group = g.group_id.to_string();
            let base = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            if let Some(code) = super::groups::not_coordinator(ctx, &group) {
                return base.with_error_code(code);
            }
            if let Some(member) = &g.member_id
                && let Some(Err(code)) =
                    super::consumer_groups::validate_fetch(ctx, &group, member.as_str(), g.member_epoch)
            {
                return base.with_error_code(code);
            }
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (topic_name(ctx, t.name.as_str(), &t.topic_id).unwrap_or_default(), t.partition_indexes))
                    .collect()
            });
            let topics = lookup(ctx, &group, wanted)
                .into_iter()
                .map(|(topic, parts)| {
                    // Topic ids are part of OffsetFetch from v10, beyond what Fjord advertises.
                    OffsetFetchResponseTopics::default().with_name(TopicName(sb(topic))).with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, o)| {
                                let (offset, epoch, meta) = values(o);
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(sb(meta)))
                            })
                            .collect(),
                    )
                })
                .collect();
            base.with_topics(topics)
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}

pub(crate) async fn delete(ctx: &RequestContext<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let broker = &ctx.gw.broker;
    let group = req.group_id.to_string();
    if let Some(code) = super::groups::not_coordinator(ctx, &group) {
        return OffsetDeleteResponse::default().with_error_code(code);
    }
    let subscribed = super::consumer_groups::subscribed_topics(ctx, &group);
    let known_group = subscribed.is_some() || !broker.offsets().group_offsets(&group).is_empty();
    if !known_group {
        return OffsetDeleteResponse::default().with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let subscribed = subscribed.unwrap_or_default();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let index = p.partition_index;
            let code = if subscribed.contains(&name) {
                ResponseError::GroupSubscribedToTopic.code()
            } else if broker.topic(&name).is_none() || index < 0 {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                match broker.delete_offsets(&group, Some(vec![TopicPartition::new(name.clone(), index as u32)])).await {
                    Ok(_) => 0,
                    Err(e) => errors::code(&e),
                }
            };
            partitions.push(OffsetDeleteResponsePartition::default().with_partition_index(index).with_error_code(code));
        }
        topics.push(OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions));
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
