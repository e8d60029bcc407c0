//! Fetch: long-polling reads (max wait, min and max bytes, per-partition
//! limits), bounded by the high watermark. With the rack-aware replica
//! selector (KIP-392), a leader answers a v11+ consumer in the rack of an
//! in-sync follower with that follower as its `preferred_read_replica`
//! (no records), and such a follower serves the consumer's reads.
//! `read_committed` (isolation level 1) reads up to each partition's last
//! stable offset and gets the aborted transactions (producer id, first
//! offset) of what it is sent, from v4; every answer reports the last
//! stable offset.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{FetchPartition, FetchRequest as CoreFetch, TopicPartition};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use fjord_kafka_codec::kafka_protocol::messages::{FetchRequest, TopicName};
use fjord_log::{LogSlice, ReadBound};

use super::fetch_sessions::{PartitionKey, Plan, Reported, Wanted};
use super::{RequestContext, topic_name};
use crate::errors;

/// Longest wait a client may ask for; a bound keeps a connection from
/// being parked indefinitely.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How each partition of the response is served.
enum Slot {
    Read(usize),
    /// Read from this in-sync follower instead (KIP-392), at these high
    /// watermark and log start.
    Redirect {
        replica: i32,
        high_watermark: i64,
        log_start: i64,
    },
    Error(i16),
    /// Led elsewhere (KIP-951: the response names the leader).
    Moved(errors::MovedTo),
}

pub(crate) async fn handle(ctx: &RequestContext<'_>, req: FetchRequest) -> FetchReply {
    let broker = &ctx.gw.broker;
    let v = ctx.version();
    let requested: Vec<(PartitionKey, Wanted)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let key = PartitionKey { topic: t.topic.clone(), topic_id: t.topic_id, partition: p.partition };
                let wanted = Wanted {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                };
                (key, wanted)
            })
        })
        .collect();
    // Sessions exist from v7 on; older clients always fetch in full.
    let plan = if v >= 7 {
        let forgotten: Vec<PartitionKey> = req
            .forgotten_topics_data
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| PartitionKey {
                    topic: t.topic.clone(),
                    topic_id: t.topic_id,
                    partition: *p,
                })
            })
            .collect();
        ctx.gw.fetch_sessions.plan(req.session_id, req.session_epoch, &requested, &forgotten)
    } else {
        Plan::Full { session_id: 0 }
    };
    let (session_id, entries, incremental) = match plan {
        Plan::Error(code) => {
            return FetchReply { response: FetchResponse::default().with_error_code(code), files: Vec::new() };
        }
        Plan::Full { session_id } => (session_id, requested, false),
        Plan::Incremental { session_id, partitions } => (session_id, partitions, true),
    };

    let mut partitions = Vec::new();
    let mut slots: Vec<Slot> = Vec::with_capacity(entries.len());
    let mut names: HashMap<(TopicName, uuid::Uuid), Option<String>> = HashMap::new();
    // KIP-392: from v11 a consumer names its rack; with the rack-aware
    // selector its reads may go to (and be served by) in-sync followers.
    let rack_aware = v >= 11 && ctx.gw.config.rack_aware_reads;
    let client_rack = req.rack_id.to_string();
    for (key, w) in &entries {
        let name = names
            .entry((key.topic.clone(), key.topic_id))
            .or_insert_with(|| topic_name(ctx, key.topic.as_str(), &key.topic_id))
            .clone();
        let slot = match (name, u32::try_from(key.partition)) {
            (None, _) => Slot::Error(ResponseError::UnknownTopicId.code()),
            (Some(_), Err(_)) => Slot::Error(ResponseError::UnknownTopicOrPartition.code()),
            (Some(name), Ok(index)) => {
                let tp = TopicPartition::new(name, index);
                match broker.fetchable_partition(&tp, rack_aware) {
                    Err(e) => errors::moved_to(&e).map_or_else(|| Slot::Error(errors::code(&e)), Slot::Moved),
                    Ok((_, epoch)) if w.current_leader_epoch > epoch => {
                        Slot::Error(ResponseError::UnknownLeaderEpoch.code())
                    }
                    Ok((_, epoch)) if w.current_leader_epoch >= 0 && w.current_leader_epoch < epoch => {
                        Slot::Error(ResponseError::FencedLeaderEpoch.code())
                    }
                    Ok(_) if w.fetch_offset < 0 => Slot::Error(ResponseError::OffsetOutOfRange.code()),
                    Ok((part, _))
                        if let Some(replica) =
                            rack_aware.then(|| broker.preferred_read_replica(&tp, &client_rack)).flatten() =>
                    {
                        Slot::Redirect {
                            replica,
                            high_watermark: part.high_watermark() as i64,
                            log_start: part.log_start_offset() as i64,
                        }
                    }
                    Ok(_) => {
                        partitions.push(FetchPartition {
                            tp,
                            offset: w.fetch_offset as u64,
                            max_bytes: w.max_bytes.max(0) as usize,
                        });
                        Slot::Read(partitions.len() - 1)
                    }
                }
            }
        };
        slots.push(slot);
    }
    // Errors and redirections answer at once, as in Kafka.
    let has_errors = slots.iter().any(|s| !matches!(s, Slot::Read(_)));
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
    let core = CoreFetch {
        partitions,
        // An error in the response makes it answer at once, as in Kafka.
        max_wait: if has_errors {
            Duration::ZERO
        } else {
            Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT)
        },
        min_bytes: req.min_bytes.max(0) as usize,
        max_bytes: (req.max_bytes.max(0) as usize).min(ctx.gw.config.fetch_max_bytes),
        bound: ReadBound::HighWatermark,
        follower_reads: rack_aware,
        read_committed: req.isolation_level == 1,
    };
    let fetched = broker.fetch(core).await;
    let mut data = fetched.into_iter().map(|f| Some(f.result)).collect::<Vec<_>>();
    let mut files: Vec<Option<LogSlice>> = Vec::new();

    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for ((key, _), slot) in entries.into_iter().zip(slots) {
        let mut slice = None;
        let pd = match slot {
            Slot::Error(code) => error_partition(key.partition, code),
            Slot::Redirect { replica, high_watermark, log_start } => PartitionData::default()
                .with_partition_index(key.partition)
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(high_watermark)
                .with_log_start_offset(if v >= 5 { log_start } else { -1 })
                .with_preferred_read_replica(replica.into())
                .with_records(Some(Bytes::new())),
            Slot::Moved(m) => {
                if v >= 16 && !endpoints.iter().any(|e| e.node_id.0 == m.node_id) {
                    let (host, port) = super::kafka_endpoint(&m.node);
                    endpoints.push(
                        NodeEndpoint::default()
                            .with_node_id(m.node_id.into())
                            .with_host(super::sb(&host))
                            .with_port(port)
                            .with_rack(m.node.rack.as_deref().map(super::sb)),
                    );
                }
                error_partition(key.partition, ResponseError::NotLeaderOrFollower.code()).with_current_leader(
                    LeaderIdAndEpoch::default().with_leader_id(m.node_id.into()).with_leader_epoch(m.leader_epoch),
                )
            }
            Slot::Read(i) => match data.get_mut(i).and_then(Option::take) {
                Some(Ok(d)) => {
                    let hw = d.high_watermark as i64;
                    let aborted = (v >= 4 && req.isolation_level == 1).then(|| {
                        d.aborted
                            .iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(a.producer_id.into())
                                    .with_first_offset(a.first_offset as i64)
                            })
                            .collect()
                    });
                    let pd = PartitionData::default()
                        .with_partition_index(key.partition)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(d.last_stable_offset as i64)
                        .with_aborted_transactions(aborted)
                        .with_log_start_offset(if v >= 5 { d.log_start_offset as i64 } else { -1 })
                        .with_preferred_read_replica((-1).into())
                        .with_records(Some(Bytes::new()));
                    slice = d.slice.filter(|s| !s.is_empty());
                    pd
                }
                Some(Err(e)) => error_partition(key.partition, errors::code(&e)),
                None => error_partition(key.partition, ResponseError::UnknownServerError.code()),
            },
        };
        if session_id != 0 {
            let now = Reported { high_watermark: pd.high_watermark, log_start_offset: pd.log_start_offset };
            let has_records = slice.is_some();
            let news = ctx.gw.fetch_sessions.report(session_id, &key, now, has_records, pd.error_code != 0);
            if incremental && !news {
                continue;
            }
        }
        files.push(slice);
        match topics.last_mut() {
            Some(t) if t.topic == key.topic && t.topic_id == key.topic_id => t.partitions.push(pd),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(key.topic)
                    .with_topic_id(key.topic_id)
                    .with_partitions(vec![pd]),
            ),
        }
    }
    let response =
        FetchResponse::default().with_session_id(session_id).with_responses(topics).with_node_endpoints(endpoints);
    FetchReply { response, files }
}

/// A Fetch answer whose record data stays in the log files: partition `i`
/// (in response order) has `Some(empty)` records in `response` and its
/// data in `files[i]`.
#[derive(Debug)]
pub(crate) struct FetchReply {
    pub(crate) response: FetchResponse,
    pub(crate) files: Vec<Option<LogSlice>>,
}

fn error_partition(index: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica((-1).into())
        .with_records(Some(Bytes::new()))
}
