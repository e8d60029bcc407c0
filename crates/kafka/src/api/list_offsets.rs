//! ListOffsets: earliest (-2), latest (-1: the last stable offset for
//! `read_committed`), max timestamp (-3), earliest
//! local (-4, the same as earliest without tiered storage), latest tiered
//! (-5, none without tiered storage), or the first offset at or after a
//! timestamp.

use fjord_broker::{OffsetSpec, TopicPartition};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::ListOffsetsRequest;
use fjord_kafka_codec::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};

use super::RequestContext;
use crate::errors;

pub(crate) async fn handle(ctx: &RequestContext<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let broker = &ctx.gw.broker;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let spec = match p.timestamp {
                // v2+: `read_committed` clients are told the last stable offset.
                -1 if req.isolation_level == 1 => Some(OffsetSpec::LatestStable),
                -1 => Some(OffsetSpec::Latest),
                -2 | -4 => Some(OffsetSpec::Earliest),
                -3 => Some(OffsetSpec::MaxTimestamp),
                -5 => None,
                ts if ts >= 0 => Some(OffsetSpec::Timestamp(ts)),
                _ => {
                    partitions.push(base.with_error_code(ResponseError::InvalidRequest.code()));
                    continue;
                }
            };
            let Ok(index) = u32::try_from(p.partition_index) else {
                partitions.push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let tp = TopicPartition::new(t.name.as_str(), index);
            // A client naming a leader epoch (v4+) other than the leader's
            // is behind (fenced) or ahead (this node has not caught up).
            if let Ok(part) = broker.led_partition(&tp)
                && p.current_leader_epoch >= 0
                && p.current_leader_epoch != part.leader_epoch()
            {
                let code = if p.current_leader_epoch > part.leader_epoch() {
                    ResponseError::UnknownLeaderEpoch
                } else {
                    ResponseError::FencedLeaderEpoch
                };
                partitions.push(base.with_error_code(code.code()));
                continue;
            }
            let answer = match spec {
                Some(spec) => broker.list_offset(&tp, spec).await,
                // No tiered storage: "latest tiered" is "none".
                None => broker.partition(&tp).map(|_| None),
            };
            partitions.push(match answer {
                Ok(Some(found)) => {
                    let b = base.with_offset(found.offset as i64).with_timestamp(found.timestamp.unwrap_or(-1));
                    // The leader epoch exists from v4 on.
                    if ctx.version() >= 4 { b.with_leader_epoch(found.leader_epoch) } else { b }
                }
                Ok(None) => base,
                Err(e) => base.with_error_code(errors::code(&e)),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}
