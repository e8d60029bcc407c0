//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455):
//! partitions move to new replicas while they keep serving; the controller
//! quorum completes each move once the new replicas are in sync.
//! ElectLeaders (KIP-460): preferred or (asked for explicitly) unclean
//! leader elections.

use fjord_broker::TopicPartition;
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use fjord_kafka_codec::kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use fjord_kafka_codec::kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use fjord_kafka_codec::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::{RequestContext, sb};
use crate::errors;

pub(crate) async fn alter(
    ctx: &RequestContext<'_>,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let broker = &ctx.gw.broker;
    // v0 has no such flag: changes of the replica count are allowed.
    let allow_rf_change = ctx.version() < 1 || req.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let result = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            let fail = |code: ResponseError, message: String| {
                result.clone().with_error_code(code.code()).with_error_message(Some(sb(message)))
            };
            let Ok(index) = u32::try_from(p.partition_index) else {
                partitions.push(fail(ResponseError::UnknownTopicOrPartition, "no such partition".into()));
                continue;
            };
            let tp = TopicPartition::new(t.name.as_str(), index);
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
            if let Some(target) = &target {
                let current = broker
                    .placement()
                    .and_then(|pl| pl.partition(&tp).map(|a| a.replicas.len() - a.adding.len()))
                    .unwrap_or(1);
                if !allow_rf_change && target.len() != current {
                    partitions.push(fail(
                        ResponseError::InvalidReplicationFactor,
                        format!("{tp} has {current} replicas; the request asks for {}", target.len()),
                    ));
                    continue;
                }
            }
            partitions.push(match broker.reassign_partition(&tp, target).await {
                Ok(()) => result,
                Err(e) => fail(errors::kind(&e), e.to_string()),
            });
        }
        responses.push(ReassignableTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}

pub(crate) fn list(
    ctx: &RequestContext<'_>,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let Some(placement) = ctx.gw.broker.placement() else {
        return ListPartitionReassignmentsResponse::default();
    };
    let wanted = |name: &str, index: usize| match &req.topics {
        None => true,
        Some(ts) => ts.iter().any(|t| t.name.as_str() == name && t.partition_indexes.contains(&(index as i32))),
    };
    let mut names: Vec<&String> = placement.topics.keys().collect();
    names.sort();
    let mut topics = Vec::new();
    for name in names {
        let ongoing: Vec<OngoingPartitionReassignment> = placement.topics[name]
            .iter()
            .enumerate()
            .filter(|(i, p)| (!p.adding.is_empty() || !p.removing.is_empty()) && wanted(name, *i))
            .map(|(i, p)| {
                let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect();
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !ongoing.is_empty() {
            topics.push(
                OngoingTopicReassignment::default().with_name(TopicName(sb(name.clone()))).with_partitions(ongoing),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// ElectionType 0: preferred; 1: unclean.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub(crate) async fn elect(ctx: &RequestContext<'_>, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let broker = &ctx.gw.broker;
    // v0 has no type: preferred.
    let kind = if ctx.version() >= 1 { req.election_type } else { PREFERRED };
    if kind != PREFERRED && kind != UNCLEAN {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_replica_election_results(Vec::new());
    }
    // Null: every partition of every topic (Kafka's "all").
    let wanted: Vec<(TopicName, Vec<i32>)> = match req.topic_partitions {
        Some(ts) => ts.into_iter().map(|t| (t.topic, t.partitions)).collect(),
        None => broker
            .topics()
            .into_iter()
            .filter(|t| !t.record().internal)
            .map(|t| (TopicName(sb(t.name())), (0..t.partitions().len() as i32).collect()))
            .collect(),
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, parts) in wanted {
        let mut partition_result = Vec::with_capacity(parts.len());
        for p in parts {
            let r = PartitionResult::default().with_partition_id(p);
            let Ok(index) = u32::try_from(p) else {
                partition_result.push(r.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let tp = TopicPartition::new(topic.as_str(), index);
            partition_result.push(match broker.elect_leader(&tp, kind == UNCLEAN).await {
                Ok(()) => r,
                Err(e) => r.with_error_code(errors::code(&e)).with_error_message(Some(sb(e.to_string()))),
            });
        }
        results.push(ReplicaElectionResult::default().with_topic(topic).with_partition_result(partition_result));
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
