//! Consumer groups: list, describe with lag, offset reset (with dry run),
//! delete.
//!
//! A group is whatever has members (Kafka classic and KIP-848 groups from
//! the core's coordinators, RocketMQ clients from the messaging layer's
//! member directory), committed progress (every protocol commits through
//! the broker's offset store) or its own messaging settings (RocketMQ
//! subscription groups).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use fjord_broker::group::{GroupError, GroupState};
use fjord_broker::{OffsetSpec, TopicPartition};
use fjord_messaging::ConsumeModel;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::{AdminState, ApiError, ErrorBody};

/// Every group name, sorted.
pub(crate) fn all_groups(s: &AdminState) -> Vec<String> {
    let mut names: BTreeSet<String> = s.broker.groups().list_groups(&[]).into_iter().map(|g| g.group_id).collect();
    names.extend(s.broker.consumer_groups().list().into_iter().map(|g| g.group_id));
    names.extend(s.broker.offsets().groups());
    names.extend(s.messaging.configured_groups());
    names.extend(s.messaging.groups_with_members());
    names.into_iter().collect()
}

/// A group's progress on one partition.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OffsetView {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    /// Next offset the group will consume.
    committed_offset: i64,
    /// The partition's high watermark.
    log_end_offset: u64,
    /// Messages not yet consumed.
    pub(crate) lag: u64,
    /// Age of the oldest unconsumed message (0 without lag); `null` when
    /// it could not be read.
    lag_seconds: Option<f64>,
    metadata: String,
    commit_timestamp_ms: i64,
}

/// Committed offsets with their lag (without `lag_seconds`, which needs a
/// read per lagging partition).
pub(crate) async fn offsets_of(s: &AdminState, group: &str) -> Vec<OffsetView> {
    lags(s, &[group.to_string()]).await.pop().unwrap_or_default()
}

/// The committed offsets of each of `groups`, with the lag behind each
/// partition's high watermark as its leader reports it (in a cluster,
/// one request per other node for all of them).
pub(crate) async fn lags(s: &AdminState, groups: &[String]) -> Vec<Vec<OffsetView>> {
    let committed: Vec<Vec<(String, u32, fjord_broker::CommittedOffset)>> =
        groups.iter().map(|g| s.broker.offsets().group_offsets(g)).collect();
    let tps: Vec<TopicPartition> =
        committed.iter().flatten().map(|(t, p, _)| TopicPartition::new(t.as_str(), *p)).collect();
    let mut states = s.broker.partition_states(&tps).await.into_iter();
    committed
        .into_iter()
        .map(|offsets| {
            offsets
                .into_iter()
                .map(|(topic, partition, c)| {
                    let (start, end) =
                        states.next().flatten().map_or((0, 0), |st| (st.log_start_offset, st.high_watermark));
                    let from = u64::try_from(c.offset).unwrap_or(start).max(start);
                    OffsetView {
                        topic,
                        partition,
                        committed_offset: c.offset,
                        log_end_offset: end,
                        lag: end.saturating_sub(from),
                        lag_seconds: None,
                        metadata: c.metadata,
                        commit_timestamp_ms: c.commit_timestamp,
                    }
                })
                .collect()
        })
        .collect()
}

/// What the membership engines know of a group.
struct Membership {
    protocol: String,
    protocol_type: String,
    state: String,
    members: Vec<MemberView>,
}

/// Which engine a group belongs to, its state and members.
fn membership(s: &AdminState, group: &str) -> Membership {
    if let Ok(d) = s.broker.groups().describe_group(group) {
        let consumer = d.protocol_type == "consumer";
        let members = d
            .members
            .into_iter()
            .map(|m| {
                let assignment = if consumer { decode_assignment(&m.assignment) } else { Vec::new() };
                MemberView {
                    topics: assignment.iter().map(|a| a.topic.clone()).collect(),
                    assignment,
                    member_id: m.member_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                }
            })
            .collect();
        return Membership {
            protocol: "kafka".into(),
            protocol_type: d.protocol_type,
            state: d.state.as_kafka_str().into(),
            members,
        };
    }
    if let Some(Ok(d)) = s.broker.consumer_groups().describe(&[group.to_string()]).pop() {
        let members = d
            .members
            .into_iter()
            .map(|m| MemberView {
                member_id: m.member_id,
                client_id: m.client_id,
                client_host: m.client_host,
                topics: m.subscribed_topic_names,
                assignment: m
                    .assignment
                    .into_iter()
                    .map(|a| AssignedTopic { topic: a.topic_name, partitions: a.partitions })
                    .collect(),
            })
            .collect();
        return Membership {
            protocol: "kafka".into(),
            protocol_type: "consumer".into(),
            state: d.state.as_kafka_str().into(),
            members,
        };
    }
    // RocketMQ clients balance queues among themselves: the broker knows
    // who is connected and what they subscribe to, not who owns which queue.
    let members: Vec<MemberView> = s
        .messaging
        .group_members(group)
        .into_iter()
        .map(|m| MemberView {
            member_id: m.client_id.clone(),
            client_id: m.client_id,
            client_host: m.client_host,
            topics: m.topics,
            assignment: Vec::new(),
        })
        .collect();
    let rocketmq = !members.is_empty() || s.messaging.group_settings(ConsumeModel::base_group(group)).is_some();
    let state = if members.is_empty() { GroupState::Empty } else { GroupState::Stable };
    Membership {
        // The AMQP gateway's deliveries are pops of one group of its own.
        protocol: if group == fjord_amqp::model::AMQP_GROUP {
            "amqp"
        } else if rocketmq {
            "rocketmq"
        } else {
            "offsets"
        }
        .into(),
        protocol_type: String::new(),
        state: state.as_kafka_str().into(),
        members,
    }
}

/// A group in a listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct GroupSummary {
    name: String,
    /// `kafka` (classic or KIP-848 membership), `rocketmq` (subscription
    /// group) or `offsets` (committed offsets only).
    protocol: String,
    /// Kafka group state (`Stable`, `Empty`, ...); RocketMQ groups are
    /// `Stable` while clients are connected, else `Empty`.
    state: String,
    members: usize,
    /// Total lag in messages.
    lag: u64,
}

/// `{groups: [...]}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct GroupList {
    groups: Vec<GroupSummary>,
}

/// `?scope=node`: only the groups the node asked knows (what nodes ask
/// each other).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListGroupsQuery {
    /// `cluster` (default): every node's groups; `node`: this node's.
    scope: Option<String>,
}

/// Every consumer group with its state and total lag. In a cluster the
/// node asked lists every node's groups (a group's figures from its
/// coordinator).
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", params(ListGroupsQuery), responses(
    (status = 200, body = GroupList),
    (status = 400, body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<ListGroupsQuery>,
) -> Result<Json<GroupList>, ApiError> {
    let whole = crate::forward::whole_cluster(q.scope.as_deref())?;
    let mut list = local_groups(&s).await;
    if let (true, Some(placement)) = (whole, s.broker.placement()) {
        let me = s.broker.config().node_id;
        for (node, answer) in crate::forward::ask_others::<GroupList>(&placement, me, "/api/v1/groups?scope=node").await
        {
            match answer {
                Ok(theirs) => merge(&s, &mut list.groups, node.node_id, theirs.groups),
                Err(e) => tracing::debug!(node = node.node_id, error = %e, "a node did not list its groups"),
            }
        }
        list.groups.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(Json(list))
}

/// Adds `node`'s groups to `ours`: a group known to both keeps the
/// figures of the node that coordinates it.
fn merge(s: &AdminState, ours: &mut Vec<GroupSummary>, node: i32, theirs: Vec<GroupSummary>) {
    for g in theirs {
        let coordinated_there =
            matches!(s.broker.coordinator(&g.name), fjord_broker::Leadership::Remote(ref n) if n.node_id == node);
        match ours.iter_mut().find(|o| o.name == g.name) {
            Some(o) if coordinated_there => *o = g,
            Some(o) => o.members = o.members.max(g.members),
            None => ours.push(g),
        }
    }
}

async fn local_groups(s: &AdminState) -> GroupList {
    let names = all_groups(s);
    let lags = lags(s, &names).await;
    let groups = names
        .into_iter()
        .zip(lags)
        .map(|(name, offsets)| {
            let m = membership(s, &name);
            GroupSummary {
                members: m.members.len(),
                lag: offsets.iter().map(|o| o.lag).sum(),
                name,
                protocol: m.protocol,
                state: m.state,
            }
        })
        .collect();
    GroupList { groups }
}

/// Partitions of one topic assigned to a member.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AssignedTopic {
    topic: String,
    partitions: Vec<i32>,
}

/// A group member.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemberView {
    member_id: String,
    client_id: String,
    client_host: String,
    /// Topics it subscribes to (Kafka classic members: the topics of its
    /// assignment).
    topics: Vec<String>,
    /// Partitions assigned by the broker or the group leader (Kafka's
    /// consumer protocols); empty for RocketMQ clients, which balance
    /// queues among themselves.
    assignment: Vec<AssignedTopic>,
}

/// One group in detail.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupDetail {
    name: String,
    protocol: String,
    /// Kafka protocol type (`consumer`, ...), empty otherwise.
    protocol_type: String,
    state: String,
    members: Vec<MemberView>,
    offsets: Vec<OffsetView>,
    /// Total lag in messages.
    lag: u64,
}

/// A group name in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct GroupPath {
    /// Group name.
    group: String,
}

fn unknown_group(group: &str) -> ApiError {
    ApiError::not_found("unknown_group", format!("unknown consumer group '{group}'"))
}

/// A group's members, assignment, committed offsets and lag per partition
/// (in messages and in seconds).
#[utoipa::path(get, path = "/api/v1/groups/{group}", tag = "groups", params(GroupPath), responses(
    (status = 200, body = GroupDetail),
    (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
pub(crate) async fn describe(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<GroupPath>,
) -> Result<Json<GroupDetail>, ApiError> {
    if !all_groups(&s).contains(&p.group) {
        return Err(unknown_group(&p.group));
    }
    let m = membership(&s, &p.group);
    let mut offsets = offsets_of(&s, &p.group).await;
    let now = s.broker.clock().now_ms();
    for o in &mut offsets {
        o.lag_seconds = if o.lag == 0 {
            Some(0.0)
        } else {
            let tp = TopicPartition::new(&o.topic, o.partition);
            let from = o.log_end_offset - o.lag;
            match s.broker.peek_records(&tp, from, 1).await {
                Ok(recs) => recs.first().map(|r| (now - r.timestamp).max(0) as f64 / 1000.0),
                Err(_) => None,
            }
        };
    }
    Ok(Json(GroupDetail {
        lag: offsets.iter().map(|o| o.lag).sum(),
        name: p.group,
        protocol: m.protocol,
        protocol_type: m.protocol_type,
        state: m.state,
        members: m.members,
        offsets,
    }))
}

/// Kafka's ConsumerProtocolAssignment (version, then `[topic, [partition]]`);
/// anything malformed yields what was decoded before it.
fn decode_assignment(b: &[u8]) -> Vec<AssignedTopic> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (b.get(..n)?, b.get(n..)?);
        *b = rest;
        Some(head)
    }
    let mut cur = b;
    let mut out = Vec::new();
    let mut go = || -> Option<()> {
        take(&mut cur, 2)?;
        let topics = i32::from_be_bytes(take(&mut cur, 4)?.try_into().ok()?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take(&mut cur, 2)?.try_into().ok()?);
            let topic = String::from_utf8_lossy(take(&mut cur, usize::try_from(len).ok()?)?).into_owned();
            let n = i32::from_be_bytes(take(&mut cur, 4)?.try_into().ok()?);
            let mut partitions = Vec::new();
            for _ in 0..n.max(0) {
                partitions.push(i32::from_be_bytes(take(&mut cur, 4)?.try_into().ok()?));
            }
            out.push(AssignedTopic { topic, partitions });
        }
        Some(())
    };
    let _ = go();
    out
}

/// Where to move a group's offsets.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ResetTarget {
    /// The oldest stored message.
    Earliest,
    /// After the newest message.
    Latest,
    /// The first message at or after a time (the end when none).
    #[serde(rename = "timestamp_ms")]
    Timestamp(i64),
    /// An offset (clamped to the stored range).
    Offset(#[serde(deserialize_with = "crate::extract::int64")] u64),
}

/// An offset reset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetRequest {
    /// `"earliest"`, `"latest"`, `{"timestamp_ms": t}` or `{"offset": o}`.
    to: ResetTarget,
    /// Only this topic (default: every topic the group has offsets for).
    #[serde(default)]
    topic: Option<String>,
    /// Only these partitions (needs `topic`).
    #[serde(default)]
    partitions: Option<Vec<u32>>,
    /// Compute and return the changes without applying them.
    #[serde(default)]
    dry_run: bool,
}

/// One partition's move.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OffsetChange {
    topic: String,
    partition: u32,
    /// `null` when the group had no offset there.
    current_offset: Option<i64>,
    new_offset: u64,
}

/// What a reset did (or would do).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResetResponse {
    group: String,
    dry_run: bool,
    changes: Vec<OffsetChange>,
}

fn live_members(s: &AdminState, group: &str) -> bool {
    !membership(s, group).members.is_empty()
}

/// Moves a group's committed offsets (clustering progress and pop queues);
/// refused while the group has live Kafka members (classic or KIP-848).
#[utoipa::path(post, path = "/api/v1/groups/{group}/offsets", tag = "groups", params(GroupPath),
    request_body = ResetRequest, responses(
        (status = 200, body = ResetResponse),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The group has live members"),
        (status = 503, body = ErrorBody)))]
pub(crate) async fn reset_offsets(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<GroupPath>,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<Json<ResetResponse>, ApiError> {
    if req.partitions.is_some() && req.topic.is_none() {
        return Err(ApiError::bad_request("partitions needs topic"));
    }
    let committed = s.broker.offsets().group_offsets(&p.group);
    let mut targets: Vec<TopicPartition> = match &req.topic {
        Some(t) => {
            let topic = s.broker.topic(t).ok_or_else(|| fjord_broker::BrokerError::UnknownTopic(t.clone()))?;
            let count = topic.partitions().len() as u32;
            match &req.partitions {
                Some(ps) => {
                    if let Some(bad) = ps.iter().find(|&&x| x >= count) {
                        return Err(ApiError::not_found(
                            "unknown_partition",
                            format!("topic '{t}' has no partition {bad} (it has {count})"),
                        ));
                    }
                    ps.iter().map(|&x| TopicPartition::new(t, x)).collect()
                }
                None => (0..count).map(|x| TopicPartition::new(t, x)).collect(),
            }
        }
        None => {
            if !all_groups(&s).contains(&p.group) {
                return Err(unknown_group(&p.group));
            }
            committed.iter().map(|(t, x, _)| TopicPartition::new(t, *x)).collect()
        }
    };
    targets.sort();
    targets.dedup();
    if !req.dry_run && live_members(&s, &p.group) {
        return Err(ApiError::conflict(
            "group_not_empty",
            format!("group '{}' has live members; stop its consumers before moving its offsets", p.group),
        ));
    }
    let mut changes = Vec::with_capacity(targets.len());
    for tp in targets {
        let Ok(part) = s.broker.partition(&tp) else { continue };
        let (start, end) = (part.log_start_offset(), part.high_watermark());
        let new_offset = match req.to {
            ResetTarget::Earliest => start,
            ResetTarget::Latest => end,
            ResetTarget::Offset(o) => o.clamp(start, end),
            ResetTarget::Timestamp(ts) => {
                s.broker.list_offset(&tp, OffsetSpec::Timestamp(ts)).await?.map_or(end, |l| l.offset)
            }
        };
        let current_offset =
            committed.iter().find(|(t, x, _)| *t == tp.topic && *x == tp.partition).map(|(_, _, c)| c.offset);
        if !req.dry_run {
            s.messaging.set_offset(&p.group, &ConsumeModel::Clustering, &tp, new_offset).await?;
        }
        changes.push(OffsetChange { topic: tp.topic, partition: tp.partition, current_offset, new_offset });
    }
    Ok(Json(ResetResponse { group: p.group, dry_run: req.dry_run, changes }))
}

/// Deletes a group: its membership state and committed offsets.
#[utoipa::path(delete, path = "/api/v1/groups/{group}", tag = "groups", params(GroupPath), responses(
    (status = 204, description = "Deleted"),
    (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "The group has live members"),
    (status = 503, body = ErrorBody)))]
pub(crate) async fn delete(
    State(s): State<AdminState>,
    ApiPath(p): ApiPath<GroupPath>,
) -> Result<StatusCode, ApiError> {
    if !all_groups(&s).contains(&p.group) {
        return Err(unknown_group(&p.group));
    }
    let deleted = |r: Result<(), GroupError>| match r {
        Ok(()) | Err(GroupError::GroupIdNotFound { .. }) => Ok(()),
        Err(GroupError::NonEmptyGroup { .. }) => Err(ApiError::conflict(
            "group_not_empty",
            format!("group '{}' has live members; stop its consumers first", p.group),
        )),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "group_error", e.to_string())),
    };
    for (_, r) in s.broker.groups().delete_groups(std::slice::from_ref(&p.group)) {
        deleted(r)?;
    }
    if s.broker.consumer_groups().contains(&p.group) {
        deleted(s.broker.consumer_groups().delete(&p.group))?;
    }
    s.broker.delete_offsets(&p.group, None).await?;
    if s.messaging.group_settings(&p.group).is_some() {
        s.messaging.set_group_settings(&p.group, None).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_consumer_assignment_and_survives_garbage() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 6];
        b.extend_from_slice(b"orders");
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]);
        let a = decode_assignment(&b);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].topic, "orders");
        assert_eq!(a[0].partitions, vec![0, 3]);
        assert!(decode_assignment(&b[..9]).is_empty());
        assert!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_empty());
    }
}
