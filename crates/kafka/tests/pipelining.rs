//! Produce requests pipelined on one connection: each request's batches are
//! written before the next request's (a producer's order holds), the waits
//! for their acknowledgements overlap, and the answers leave in the order
//! of the requests.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use fjord_broker::{Broker, BrokerConfig, TopicConfig, TopicPartition};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::Decodable;
use fjord_log::SystemClock;
use fjord_log::batch::{BatchBuilder, NewRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const V: i16 = common::PRODUCE_VERSION;

/// A Produce frame with its size prefix, as it goes on the wire.
fn produce(correlation_id: i32, topic: &str, acks: i16, records: Bytes) -> Vec<u8> {
    let body = common::produce_frame(correlation_id, topic, acks, 30_000, records);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The next answer: its correlation id, error code and base offset.
async fn answer(sock: &mut TcpStream) -> (i32, i16, i64) {
    let read = async {
        let len = sock.read_u32().await.unwrap() as usize;
        let mut buf = vec![0u8; len];
        sock.read_exact(&mut buf).await.unwrap();
        Bytes::from(buf)
    };
    let mut body = tokio::time::timeout(Duration::from_secs(20), read).await.expect("an answer");
    let header = ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(V)).unwrap();
    let resp = ProduceResponse::decode(&mut body, V).unwrap();
    assert!(!body.has_remaining());
    let p = &resp.responses[0].partition_responses[0];
    (header.correlation_id, p.error_code, p.base_offset)
}

fn batch(value: &str, producer: Option<(i64, i32)>) -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    if let Some((id, seq)) = producer {
        b = b.producer(id, 0, seq);
    }
    b.push(&NewRecord { value: Some(Bytes::from(value.to_string())), ..Default::default() });
    b.build().freeze()
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An acks=all Produce waiting for a follower does not hold up the next
/// requests' writes on the same connection; an idempotent producer's
/// batches sent back to back are written in their order; every answer
/// comes once its own write is acknowledged, in the order of the requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_while_earlier_produces_wait_and_answers_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("slow", 1, TopicConfig::default()).await.unwrap();
    broker.create_topic("fast", 1, TopicConfig::default()).await.unwrap();
    let slow = broker.partition(&TopicPartition::new("slow", 0)).unwrap();
    let fast = broker.partition(&TopicPartition::new("fast", 0)).unwrap();
    // Leading "slow" with an in-sync follower that copies nothing yet: its
    // acks=all writes wait.
    slow.set_replica_role(true, &[2]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        fjord_kafka::serve(fjord_net::Acceptor::with_default_caps(listener, "kafka"), gw, rx).await
    });

    let mut sock = TcpStream::connect(addr).await.unwrap();
    let mut requests = Vec::new();
    for seq in 0..5 {
        requests.extend(produce(seq + 1, "slow", -1, batch(&format!("s{seq}"), Some((7, seq)))));
    }
    requests.extend(produce(6, "fast", 1, batch("f", None)));
    sock.write_all(&requests).await.unwrap();

    // Every batch is written while the first is still waiting for the
    // follower (the idempotent ones in their order: the answers below give
    // sequence n offset n).
    until("the acks=1 produce behind five waiting ones to be written", || fast.high_watermark() == 1).await;
    assert_eq!(slow.log_end_offset(), 5);
    assert_eq!(slow.high_watermark(), 0, "nothing on 'slow' is committed yet");
    // The acks=1 answer is ready but must not overtake the waiting ones.
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sock.peek(&mut byte)).await.is_err(),
        "an answer left before the first request's"
    );

    // The follower holds the first three: their answers go, the others
    // still wait.
    slow.follower_fetched(2, 3, 3);
    for seq in 0..3 {
        assert_eq!(answer(&mut sock).await, (seq + 1, 0, i64::from(seq)));
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), sock.peek(&mut byte)).await.is_err());
    slow.follower_fetched(2, 5, 5);
    for seq in 3..5 {
        assert_eq!(answer(&mut sock).await, (seq + 1, 0, i64::from(seq)));
    }
    assert_eq!(answer(&mut sock).await, (6, 0, 0));

    stop.send(true).unwrap();
    server.await.unwrap().unwrap();
    broker.shutdown().await.unwrap();
}
