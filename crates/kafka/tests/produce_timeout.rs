//! acks=all Produce waits for the in-sync replicas at most the request's
//! `timeout_ms`, then answers REQUEST_TIMED_OUT; an idempotent retry of
//! the batch is recognised (never written twice) and answered with the
//! original offset once the followers have it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig, TopicConfig, TopicPartition};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};

async fn produce(gw: &KafkaGateway, timeout_ms: i32) -> (i16, i64) {
    let mut records = BatchBuilder::new(1_700_000_000_000).producer(42, 0, 0);
    records.push(&NewRecord { value: Some(Bytes::from_static(b"once")), ..Default::default() });
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(timeout_ms).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str("slow"))).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(records.build().freeze())),
        ]),
    ]);
    let (key, v) = (ApiKey::Produce, 9);
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
        .with_correlation_id(1)
        .encode(&mut b, key.request_header_version(v))
        .unwrap();
    req.encode(&mut b, v).unwrap();
    let out = gw.handle_frame(b.freeze(), "127.0.0.1").await.unwrap().unwrap();
    let mut body = out.slice(4..);
    ResponseHeader::decode(&mut body, key.response_header_version(v)).unwrap();
    let r = ProduceResponse::decode(&mut body, v).unwrap();
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_times_out_as_asked_and_a_retry_is_not_written_twice() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("slow", 1, TopicConfig::default()).await.unwrap();
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    let p = broker.partition(&TopicPartition::new("slow", 0)).unwrap();
    // Leading with an in-sync follower that copies nothing yet.
    p.set_replica_role(true, &[2]);
    assert_eq!(produce(&gw, 300).await, (7, -1), "REQUEST_TIMED_OUT");
    assert_eq!(p.log_end_offset(), 1, "written, not committed");
    assert_eq!(produce(&gw, 300).await.0, 7);
    assert_eq!(p.log_end_offset(), 1, "the retry was not written again");
    let retry = {
        let gw = gw.clone();
        tokio::spawn(async move { produce(&gw, 30_000).await })
    };
    p.follower_fetched(2, 1, 1);
    assert_eq!(retry.await.unwrap(), (0, 0));
    assert_eq!(p.log_end_offset(), 1);
    broker.shutdown().await.unwrap();
}
