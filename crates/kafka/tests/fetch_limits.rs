//! The broker-side `fetch.max.bytes`: however much a Fetch asks for, one
//! response carries at most that many record bytes (plus, at most, the
//! first batch whole, so consumers always make progress).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};

async fn call<Req: Encodable, Resp: Decodable>(gw: &KafkaGateway, key: ApiKey, v: i16, req: &Req) -> Resp {
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
    Resp::decode(&mut body, v).unwrap()
}

fn batch(value_len: usize) -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    b.push(&NewRecord { value: Some(Bytes::from(vec![7u8; value_len])), ..Default::default() });
    b.build().freeze()
}

async fn produce(gw: &KafkaGateway, partition: i32, records: Bytes) {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default().with_index(partition).with_records(Some(records)),
            ]),
    ]);
    let resp: ProduceResponse = call(gw, ApiKey::Produce, 9, &req).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
}

/// Record bytes in a Fetch that asks for everything (2 GiB in total and
/// per partition) of `partitions` partitions.
async fn fetch_all(gw: &KafkaGateway, partitions: i32) -> usize {
    let parts = (0..partitions)
        .map(|p| {
            fetch_request::FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(i32::MAX)
        })
        .collect();
    let req =
        FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(0).with_max_bytes(i32::MAX).with_topics(
            vec![
                fetch_request::FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(parts),
            ],
        );
    let resp: FetchResponse = call(gw, ApiKey::Fetch, 12, &req).await;
    resp.responses[0].partitions.iter().map(|p| p.records.as_ref().map_or(0, Bytes::len)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_response_never_exceeds_the_broker_limit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("t", 4, TopicConfig::default()).await.unwrap();
    const LIMIT: usize = 200_000;
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig { fetch_max_bytes: LIMIT, ..KafkaConfig::default() });
    // 4 partitions x 10 batches of ~20 KB: 800 KB stored.
    for p in 0..4 {
        for _ in 0..10 {
            produce(&gw, p, batch(20_000)).await;
        }
    }
    let got = fetch_all(&gw, 4).await;
    assert!(got > 0, "records are returned");
    assert!(got <= LIMIT + 20_100, "{got} record bytes in one response, limit {LIMIT} (+ one batch)");

    // The default (55 MiB, as Kafka) returns all 800 KB.
    let unlimited = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    assert!(fetch_all(&unlimited, 4).await >= 800_000);

    // A first batch larger than the limit still comes back whole, alone.
    let tiny = KafkaGateway::new(broker.clone(), KafkaConfig { fetch_max_bytes: 1000, ..KafkaConfig::default() });
    let got = fetch_all(&tiny, 4).await;
    assert!((20_000..20_100).contains(&got), "one whole batch: {got}");
    broker.shutdown().await.unwrap();
}
