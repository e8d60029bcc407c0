//! KIP-848 consumer groups (ConsumerGroupHeartbeat, ConsumerGroupDescribe)
//! and the membership checks that offsets need for both group types.

use std::time::Duration;

use fjord_broker::CommitIdentity;
use fjord_broker::group::GroupError;
use fjord_broker::group::consumer::{ConsumerHeartbeat, NamedTopicPartitions, TopicPartitions as CoreTopicPartitions};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::consumer_group_describe_response::{
    self as describe_rs, ConsumerGroupDescribeResponse, DescribedGroup, Member,
};
use fjord_kafka_codec::kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment, ConsumerGroupHeartbeatResponse, TopicPartitions,
};
use fjord_kafka_codec::kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, GroupId, TopicName,
};

use super::metadata::OPS_OMITTED;
use super::{RequestContext, sb};

/// `Some(result)` when `group` is a consumer-protocol group (its members
/// are checked here); `None` for classic groups (the core checks them).
/// Kafka accepts commits for consumer groups from OffsetCommit v9 on,
/// except admin commits (no member) to an empty group.
pub(crate) fn validate_commit(ctx: &RequestContext<'_>, group: &str, who: &CommitIdentity) -> Option<Result<(), i16>> {
    let groups = ctx.gw.broker.consumer_groups();
    if !groups.contains(group) {
        return None;
    }
    let admin = who.member_id.is_empty() && who.generation_id < 0;
    if ctx.version() < 9 && !admin {
        return Some(Err(ResponseError::UnsupportedVersion.code()));
    }
    Some(groups.validate_commit(group, &who.member_id, who.generation_id).map_err(|e| crate::errors::group_code(&e)))
}

/// As [`validate_commit`], for OffsetFetch v9's member id and epoch.
pub(crate) fn validate_fetch(
    ctx: &RequestContext<'_>,
    group: &str,
    member: &str,
    epoch: i32,
) -> Option<Result<(), i16>> {
    let groups = ctx.gw.broker.consumer_groups();
    if !groups.contains(group) {
        return None;
    }
    Some(groups.validate_fetch(group, Some(member), epoch).map_err(|e| crate::errors::group_code(&e)))
}

/// Topics the members of `group` subscribe to, or `None` if the group has
/// no members. Classic members' subscriptions are read from their
/// consumer-protocol metadata.
pub(crate) fn subscribed_topics(ctx: &RequestContext<'_>, group: &str) -> Option<Vec<String>> {
    if let Some(Ok(d)) = ctx.gw.broker.consumer_groups().describe(&[group.to_string()]).pop() {
        if d.members.is_empty() {
            return None;
        }
        let mut topics: Vec<String> = d.members.into_iter().flat_map(|m| m.subscribed_topic_names).collect();
        topics.sort();
        topics.dedup();
        return Some(topics);
    }
    let d = ctx.gw.broker.groups().describe_group(group).ok()?;
    if d.members.is_empty() {
        return None;
    }
    let mut topics: Vec<String> = Vec::new();
    if d.protocol_type == "consumer" {
        for m in &d.members {
            topics.extend(consumer_subscription(&m.metadata).unwrap_or_default());
        }
    }
    topics.sort();
    topics.dedup();
    Some(topics)
}

/// The topic names of a `ConsumerProtocolSubscription` (all versions start
/// with `version: i16, topics: [string]`). `None` when malformed.
fn consumer_subscription(b: &[u8]) -> Option<Vec<String>> {
    let mut pos = 2usize;
    let count = i32::from_be_bytes(b.get(pos..pos + 4)?.try_into().ok()?);
    pos += 4;
    // Each name takes at least two bytes: bound the count before reserving.
    if count < 0 || count as usize > b.len().saturating_sub(pos) / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = i16::from_be_bytes(b.get(pos..pos + 2)?.try_into().ok()?);
        pos += 2;
        let len = usize::try_from(len).ok()?;
        topics.push(String::from_utf8(b.get(pos..pos + len)?.to_vec()).ok()?);
        pos += len;
    }
    Some(topics)
}

pub(crate) async fn heartbeat(
    ctx: &RequestContext<'_>,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let group = req.group_id.to_string();
    let failed = |code: i16, message: String| {
        ConsumerGroupHeartbeatResponse::default().with_error_code(code).with_error_message(Some(sb(message)))
    };
    if let Some(code) = super::groups::not_coordinator(ctx, &group) {
        return failed(code, format!("this node does not coordinate group '{group}'"));
    }
    // A group id belongs to one protocol: a live classic group is not a
    // consumer group (Kafka answers GROUP_ID_NOT_FOUND).
    if let Ok(d) = ctx.gw.broker.groups().describe_group(&group)
        && !d.members.is_empty()
    {
        return failed(ResponseError::GroupIdNotFound.code(), format!("group '{group}' is not a consumer group"));
    }
    let opt = |s: &Option<fjord_kafka_codec::kafka_protocol::protocol::StrBytes>| s.as_ref().map(|v| v.to_string());
    let core = ConsumerHeartbeat {
        group_id: group,
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: opt(&req.instance_id),
        rack_id: opt(&req.rack_id),
        rebalance_timeout: (req.rebalance_timeout_ms >= 0)
            .then(|| Duration::from_millis(req.rebalance_timeout_ms as u64)),
        subscribed_topic_names: req.subscribed_topic_names.map(|ns| ns.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: opt(&req.subscribed_topic_regex),
        server_assignor: opt(&req.server_assignor),
        owned_partitions: req.topic_partitions.map(|tps| {
            tps.into_iter().map(|t| CoreTopicPartitions { topic_id: t.topic_id, partitions: t.partitions }).collect()
        }),
        client_id: ctx.client_id(),
        client_host: format!("/{}", ctx.client_host),
        member_id_required: ctx.version() >= 1,
    };
    match ctx.gw.broker.consumer_heartbeat(core).await {
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(sb(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval.as_millis().min(i32::MAX as u128) as i32)
            .with_assignment(r.assignment.map(|tps| {
                Assignment::default().with_topic_partitions(
                    tps.into_iter()
                        .map(|t| TopicPartitions::default().with_topic_id(t.topic_id).with_partitions(t.partitions))
                        .collect(),
                )
            })),
        Err(e) => failed(crate::errors::group_code(&e), e.to_string()),
    }
}

fn described(tps: Vec<NamedTopicPartitions>) -> describe_rs::Assignment {
    describe_rs::Assignment::default().with_topic_partitions(
        tps.into_iter()
            .map(|t| {
                describe_rs::TopicPartitions::default()
                    .with_topic_id(t.topic_id)
                    .with_topic_name(TopicName(sb(t.topic_name)))
                    .with_partitions(t.partitions)
            })
            .collect(),
    )
}

pub(crate) fn describe(ctx: &RequestContext<'_>, req: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    let ids: Vec<String> = req.group_ids.iter().map(|g| g.to_string()).collect();
    let groups = ctx
        .gw
        .broker
        .consumer_groups()
        .describe(&ids)
        .into_iter()
        .zip(ids)
        .map(|(result, id)| {
            if let Some(code) = super::groups::not_coordinator(ctx, &id) {
                return DescribedGroup::default().with_group_id(GroupId(sb(id))).with_error_code(code);
            }
            let base = DescribedGroup::default().with_group_id(GroupId(sb(id))).with_authorized_operations(OPS_OMITTED);
            match result {
                Ok(d) => base
                    .with_group_state(sb(d.state.as_kafka_str()))
                    .with_group_epoch(d.group_epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(sb(d.assignor_name))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(sb(m.member_id))
                                    .with_instance_id(m.instance_id.map(sb))
                                    .with_rack_id(m.rack_id.map(sb))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(sb(m.client_id))
                                    .with_client_host(sb(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names.into_iter().map(|n| TopicName(sb(n))).collect(),
                                    )
                                    .with_subscribed_topic_regex(m.subscribed_topic_regex.map(sb))
                                    .with_assignment(described(m.assignment))
                                    .with_target_assignment(described(m.target_assignment))
                                    // 1: a member speaking the consumer protocol.
                                    .with_member_type(if ctx.version() >= 1 { 1 } else { -1 })
                            })
                            .collect(),
                    ),
                Err(e) => {
                    base.with_error_code(crate::errors::group_code(&e)).with_error_message(Some(sb(e.to_string())))
                }
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

/// Refuses a classic request on a consumer group.
pub(crate) fn classic_conflict(ctx: &RequestContext<'_>, group: &str) -> Option<GroupError> {
    ctx.gw.broker.consumer_groups().contains(group).then_some(GroupError::InconsistentGroupProtocol)
}

#[cfg(test)]
mod tests {
    use super::consumer_subscription;

    #[test]
    fn reads_subscribed_topics_and_rejects_hostile_counts() {
        let mut b = vec![0, 1, 0, 0, 0, 2];
        for t in ["a", "orders"] {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&[0, 0, 0, 0]); // user data, ignored
        assert_eq!(consumer_subscription(&b), Some(vec!["a".to_string(), "orders".to_string()]));
        assert_eq!(consumer_subscription(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(consumer_subscription(&[0, 0, 0, 0, 0, 1, 0, 9, b'x']), None);
    }
}
