//! Produce refusals with Kafka's error codes, through the real handlers:
//! a batch whose CRC does not match is CORRUPT_MESSAGE and is not stored;
//! a batch above the topic's `max.message.bytes` is MESSAGE_TOO_LARGE.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig, TopicConfig, TopicPartition};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::Decodable;
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};

async fn produce(gw: &KafkaGateway, topic: &str, records: Bytes) -> (i16, i64) {
    produce_within(gw, topic, records, 1000).await
}

async fn produce_within(gw: &KafkaGateway, topic: &str, records: Bytes, timeout_ms: i32) -> (i16, i64) {
    let v = common::PRODUCE_VERSION;
    let frame = common::produce_frame(1, topic, -1, timeout_ms, records);
    let out = gw.handle_frame(frame, "127.0.0.1").await.unwrap().unwrap();
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

/// acks=all waits for the in-sync replicas at most the request's
/// `timeout_ms`, then answers REQUEST_TIMED_OUT; an idempotent retry of the
/// batch is recognised (never written twice) and answered with the
/// original offset once the followers have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_times_out_as_asked_and_a_retry_is_not_written_twice() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("slow", 1, TopicConfig::default()).await.unwrap();
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    let p = broker.partition(&TopicPartition::new("slow", 0)).unwrap();
    let once = || {
        let mut b = BatchBuilder::new(1_700_000_000_000).producer(42, 0, 0);
        b.push(&NewRecord { value: Some(Bytes::from_static(b"once")), ..Default::default() });
        b.build().freeze()
    };
    // Leading with an in-sync follower that copies nothing yet.
    p.set_replica_role(true, &[2]);
    assert_eq!(produce_within(&gw, "slow", once(), 300).await, (7, -1), "REQUEST_TIMED_OUT");
    assert_eq!(p.log_end_offset(), 1, "written, not committed");
    assert_eq!(produce_within(&gw, "slow", once(), 300).await.0, 7);
    assert_eq!(p.log_end_offset(), 1, "the retry was not written again");
    let retry = {
        let (gw, records) = (gw.clone(), once());
        tokio::spawn(async move { produce_within(&gw, "slow", records, 30_000).await })
    };
    p.follower_fetched(2, 1, 1);
    assert_eq!(retry.await.unwrap(), (0, 0));
    assert_eq!(p.log_end_offset(), 1);
    broker.shutdown().await.unwrap();
}

/// An acks=all request with no positive timeout still gets an answer when
/// its write never commits: REQUEST_TIMED_OUT after the gateway's bound,
/// not a wait for ever (and a commit within it is answered as usual).
#[tokio::test(start_paused = true)]
async fn acks_all_without_a_timeout_is_answered_within_the_gateways_bound() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("stuck", 1, TopicConfig::default()).await.unwrap();
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    assert_eq!(produce_within(&gw, "stuck", batch(1).freeze(), 0).await, (0, 0), "committed: answered");
    let p = broker.partition(&TopicPartition::new("stuck", 0)).unwrap();
    p.set_replica_role(true, &[2]);
    let started = tokio::time::Instant::now();
    let answer =
        tokio::time::timeout(std::time::Duration::from_secs(60), produce_within(&gw, "stuck", batch(1).freeze(), 0));
    assert_eq!(answer.await.expect("answered"), (7, -1), "REQUEST_TIMED_OUT");
    assert!(started.elapsed() >= std::time::Duration::from_secs(30));
    broker.shutdown().await.unwrap();
}
