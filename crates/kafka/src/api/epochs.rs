//! OffsetForLeaderEpoch (KIP-101, KIP-320): where a leader epoch ends in
//! the leader's log, so a consumer that read under an older leader can
//! tell whether its position survived a leader change (a truncated tail
//! ends the epoch earlier than the position).

use fjord_broker::TopicPartition;
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use fjord_kafka_codec::kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::RequestContext;
use crate::errors;

pub(crate) fn handle(ctx: &RequestContext<'_>, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let broker = &ctx.gw.broker;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    // Kafka's "undefined": no such epoch at or below the one asked.
                    let base =
                        EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                    let Ok(index) = u32::try_from(p.partition) else {
                        return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let tp = TopicPartition::new(t.topic.as_str(), index);
                    let part = match broker.led_partition(&tp) {
                        Ok(part) => part,
                        Err(e) => return base.with_error_code(errors::code(&e)),
                    };
                    let current = part.leader_epoch();
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch != current {
                        let code = if p.current_leader_epoch > current {
                            ResponseError::UnknownLeaderEpoch
                        } else {
                            ResponseError::FencedLeaderEpoch
                        };
                        return base.with_error_code(code.code());
                    }
                    match part.end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end)) => base.with_leader_epoch(epoch).with_end_offset(end as i64),
                        None => base,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
