//! `connections.max.idle.ms`: a connection that sends nothing for the idle
//! time is closed, but the time a request is being handled (a long-poll
//! Fetch) does not count as idle.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::*;
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use fjord_log::SystemClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IDLE: Duration = Duration::from_millis(300);

async fn roundtrip<Req: Encodable>(sock: &mut TcpStream, key: ApiKey, v: i16, req: &Req) -> bytes::Bytes {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
        .with_correlation_id(7)
        .encode(&mut body, key.request_header_version(v))
        .unwrap();
    req.encode(&mut body, v).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    sock.write_all(&frame).await.unwrap();
    let len = sock.read_i32().await.unwrap();
    let mut resp = vec![0u8; len as usize];
    sock.read_exact(&mut resp).await.unwrap();
    let mut resp = bytes::Bytes::from(resp);
    assert_eq!(resp.get_i32(), 7);
    if key.response_header_version(v) >= 1 {
        // Flexible response headers end with (empty) tagged fields.
        assert_eq!(resp.get_u8(), 0);
    }
    resp
}

async fn api_versions_ok(sock: &mut TcpStream) -> bool {
    let mut resp = roundtrip(sock, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    ApiVersionsResponse::decode(&mut resp, 3).unwrap().error_code == 0
}

async fn start() -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("quiet", 1, TopicConfig::default()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gw = KafkaGateway::new(broker, KafkaConfig { connections_max_idle: IDLE, ..KafkaConfig::default() });
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _stop = stop;
        fjord_kafka::serve(listener, gw, rx).await
    });
    (addr, dir)
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_time() {
    let (addr, _dir) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    assert!(api_versions_ok(&mut sock).await);
    let silent = Instant::now();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut byte)).await.unwrap().unwrap();
    assert_eq!(n, 0, "closed by the broker");
    assert!(silent.elapsed() >= IDLE - Duration::from_millis(50), "not before the idle time: {:?}", silent.elapsed());
    // Other connections are served as before.
    let mut other = TcpStream::connect(addr).await.unwrap();
    assert!(api_versions_ok(&mut other).await);
}

#[tokio::test]
async fn a_long_poll_longer_than_the_idle_time_is_answered() {
    let (addr, _dir) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(1000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("quiet")))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let asked = Instant::now();
    let mut resp = roundtrip(&mut sock, ApiKey::Fetch, 12, &fetch).await;
    let waited = asked.elapsed();
    let resp = FetchResponse::decode(&mut resp, 12).unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    assert!(waited >= Duration::from_millis(900), "the fetch waited its max_wait: {waited:?}");
    // Still open right after a request that outlasted the idle time.
    assert!(api_versions_ok(&mut sock).await);
}
