//! Fetch: long-polling reads (max wait, min and max bytes, per-partition
//! limits), bounded by the high watermark. Without transactions the last
//! stable offset equals the high watermark, so `read_committed` and
//! `read_uncommitted` see the same records.

use std::time::Duration;

use bytes::Bytes;
use fjord_broker::{FetchPartition, FetchRequest as CoreFetch, TopicPartition};
use fjord_kafka_codec::kafka_protocol::error::ResponseError;
use fjord_kafka_codec::kafka_protocol::messages::FetchRequest;
use fjord_kafka_codec::kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use fjord_log::ReadBound;

use super::{RequestContext, topic_name};
use crate::errors;

/// Longest wait a client may ask for; a bound keeps a connection from
/// being parked indefinitely.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Where each requested partition goes in the response, and what it needs
/// before it can be read.
enum Slot {
    Read(usize),
    Error(i16),
}

pub(crate) async fn handle(ctx: &RequestContext<'_>, req: FetchRequest) -> FetchResponse {
    let broker = &ctx.gw.broker;
    let v = ctx.version();
    let mut partitions = Vec::new();
    let mut plan: Vec<(usize, i32, Slot)> = Vec::new();
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    for (ti, t) in req.topics.iter().enumerate() {
        topics.push(FetchableTopicResponse::default().with_topic(t.topic.clone()).with_topic_id(t.topic_id));
        let name = topic_name(ctx, t.topic.as_str(), &t.topic_id);
        for p in &t.partitions {
            let slot = match (&name, u32::try_from(p.partition)) {
                (None, _) => Slot::Error(ResponseError::UnknownTopicId.code()),
                (Some(_), Err(_)) => Slot::Error(ResponseError::UnknownTopicOrPartition.code()),
                (Some(name), Ok(index)) => {
                    let tp = TopicPartition::new(name.clone(), index);
                    match broker.partition(&tp) {
                        Err(e) => Slot::Error(errors::code(&e)),
                        Ok(part) if p.current_leader_epoch > part.leader_epoch() => {
                            Slot::Error(ResponseError::UnknownLeaderEpoch.code())
                        }
                        Ok(part) if p.current_leader_epoch >= 0 && p.current_leader_epoch < part.leader_epoch() => {
                            Slot::Error(ResponseError::FencedLeaderEpoch.code())
                        }
                        Ok(_) if p.fetch_offset < 0 => Slot::Error(ResponseError::OffsetOutOfRange.code()),
                        Ok(_) => {
                            partitions.push(FetchPartition {
                                tp,
                                offset: p.fetch_offset as u64,
                                max_bytes: p.partition_max_bytes.max(0) as usize,
                            });
                            Slot::Read(partitions.len() - 1)
                        }
                    }
                }
            };
            plan.push((ti, p.partition, slot));
        }
    }
    let has_errors = plan.iter().any(|(_, _, s)| matches!(s, Slot::Error(_)));
    let max_bytes = if ctx.version() >= 3 { req.max_bytes.max(0) as usize } else { usize::MAX };
    let core = CoreFetch {
        partitions,
        // An error in the response makes it answer at once, as in Kafka.
        max_wait: if has_errors {
            Duration::ZERO
        } else {
            Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT)
        },
        min_bytes: req.min_bytes.max(0) as usize,
        max_bytes,
        bound: ReadBound::HighWatermark,
    };
    let fetched = broker.fetch(core).await;
    let data = read_slices(fetched).await;
    let mut data = data.into_iter().map(Some).collect::<Vec<_>>();
    for (ti, index, slot) in plan {
        let pd = match slot {
            Slot::Error(code) => error_partition(index, code),
            Slot::Read(i) => match data.get_mut(i).and_then(Option::take) {
                Some(Ok((records, hw, start))) => PartitionData::default()
                    .with_partition_index(index)
                    .with_high_watermark(hw)
                    .with_last_stable_offset(hw)
                    .with_log_start_offset(if v >= 5 { start } else { -1 })
                    .with_preferred_read_replica((-1).into())
                    .with_records(Some(records)),
                Some(Err(code)) => error_partition(index, code),
                None => error_partition(index, ResponseError::UnknownServerError.code()),
            },
        };
        if let Some(t) = topics.get_mut(ti) {
            t.partitions.push(pd);
        }
    }
    FetchResponse::default().with_responses(topics)
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

type Read = Result<(Bytes, i64, i64), i16>;

/// Copies the fetched file ranges into memory on the blocking pool.
async fn read_slices(fetched: Vec<fjord_broker::FetchedPartition>) -> Vec<Read> {
    let n = fetched.len();
    let done = tokio::task::spawn_blocking(move || {
        fetched
            .into_iter()
            .map(|f| match f.result {
                Ok(d) => {
                    let records = match &d.slice {
                        Some(s) => s.to_bytes().map_err(|_| ResponseError::KafkaStorageError.code())?,
                        None => Bytes::new(),
                    };
                    Ok((records, d.high_watermark as i64, d.log_start_offset as i64))
                }
                Err(e) => Err(errors::code(&e)),
            })
            .collect::<Vec<Read>>()
    })
    .await;
    done.unwrap_or_else(|_| (0..n).map(|_| Err(ResponseError::UnknownServerError.code())).collect())
}
