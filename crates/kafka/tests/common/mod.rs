//! Request frames the gateway tests send.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::{Encodable, StrBytes};

/// The Produce version the frames below use.
pub const PRODUCE_VERSION: i16 = 9;

/// A Produce frame (without its size prefix) writing `records` to
/// partition 0 of `topic`.
pub fn produce_frame(correlation_id: i32, topic: &str, acks: i16, timeout_ms: i32, records: Bytes) -> Bytes {
    let v = PRODUCE_VERSION;
    let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records)),
            ]),
    ]);
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(v)
        .with_correlation_id(correlation_id)
        .encode(&mut b, ApiKey::Produce.request_header_version(v))
        .unwrap();
    req.encode(&mut b, v).unwrap();
    b.freeze()
}
