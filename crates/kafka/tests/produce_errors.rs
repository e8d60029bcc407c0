//! Produce refusals with Kafka's error codes, through the real handlers:
//! a batch whose CRC does not match is CORRUPT_MESSAGE and is not stored;
//! a batch above the topic's `max.message.bytes` is MESSAGE_TOO_LARGE.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};

async fn produce(gw: &KafkaGateway, topic: &str, records: Bytes) -> (i16, i64) {
    let v = 9;
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
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
        .with_correlation_id(1)
        .encode(&mut b, ApiKey::Produce.request_header_version(v))
        .unwrap();
    req.encode(&mut b, v).unwrap();
    let out = gw.handle_frame(b.freeze(), "127.0.0.1").await.unwrap().unwrap();
    let mut body = out.slice(4..);
    ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(v)).unwrap();
    let resp = ProduceResponse::decode(&mut body, v).unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn batch(value_len: usize) -> BytesMut {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    b.push(&NewRecord { value: Some(Bytes::from(vec![7u8; value_len])), ..Default::default() });
    b.build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_oversized_batches_are_refused_with_kafka_codes_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("t", 1, TopicConfig::from_entries([("max.message.bytes", "1000")]).unwrap()).await.unwrap();
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());

    // One flipped bit in a record value: the CRC-32C no longer matches.
    let mut corrupt = batch(10);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    assert_eq!(produce(&gw, "t", corrupt.freeze()).await.0, 2, "CORRUPT_MESSAGE");

    assert_eq!(produce(&gw, "t", batch(2000).freeze()).await.0, 10, "MESSAGE_TOO_LARGE");

    // Nothing of either was stored: the next good batch gets offset 0.
    assert_eq!(produce(&gw, "t", batch(10).freeze()).await, (0, 0));
    broker.shutdown().await.unwrap();
}
