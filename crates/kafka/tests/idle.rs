//! `connections.max.idle.ms`: a connection that sends nothing for the idle
//! time is closed, also halfway through a frame, but the time a request is
//! being handled (a long-poll Fetch) does not count as idle; and the
//! request budget (`queued.max.request.bytes`) stops reading sockets while
//! it is spent.
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
    start_with(KafkaConfig { connections_max_idle: IDLE, ..KafkaConfig::default() }).await
}

async fn start_with(config: KafkaConfig) -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("quiet", 1, TopicConfig::default()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gw = KafkaGateway::new(broker, config);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _stop = stop;
        fjord_kafka::serve(fjord_net::Acceptor::with_default_caps(listener, "kafka"), gw, rx).await
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

/// The head of a Produce frame announcing `size` bytes, with the API key
/// and version so the control-frame limit does not apply.
fn produce_head(size: i32) -> Vec<u8> {
    let mut head = size.to_be_bytes().to_vec();
    head.extend_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
    head.extend_from_slice(&9i16.to_be_bytes());
    head
}

/// Waits until the broker closes `sock` (EOF or reset); panics after 10 s.
async fn closed_by_broker(sock: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => start.elapsed(),
        Ok(Ok(_)) => panic!("unexpected response to a partial frame"),
        Err(_) => panic!("still open after 10 s"),
    }
}

#[tokio::test]
async fn a_peer_that_stalls_halfway_through_a_frame_is_closed_after_the_idle_time() {
    let (addr, _dir) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    // 90% of a 10 MB Produce frame, then silence.
    sock.write_all(&produce_head(10_000_000)).await.unwrap();
    sock.write_all(&vec![0u8; 9_000_000]).await.unwrap();
    let waited = closed_by_broker(&mut sock).await;
    assert!(waited < Duration::from_secs(5), "closed after about the idle time, not never: {waited:?}");
}

#[tokio::test]
async fn a_trickling_peer_is_not_idle_between_its_bytes() {
    let (addr, _dir) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    // ApiVersions v3, one byte every IDLE/3: slow, but never idle.
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(3)
        .with_correlation_id(7)
        .encode(&mut body, ApiKey::ApiVersions.request_header_version(3))
        .unwrap();
    ApiVersionsRequest::default().encode(&mut body, 3).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    for b in &frame {
        sock.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(IDLE / 3).await;
    }
    let len = sock.read_i32().await.expect("answered, not closed");
    assert!(len > 0);
}

#[tokio::test]
async fn a_spent_request_budget_stops_reading_until_memory_is_released() {
    let config = KafkaConfig {
        connections_max_idle: Duration::from_millis(1500),
        request_budget: fjord_net::RequestBudget::new(64 * 1024),
        ..KafkaConfig::default()
    };
    let budget = config.request_budget.clone();
    let (addr, _dir) = start_with(config).await;
    // A announces a frame as large as the whole budget and stalls.
    let mut a = TcpStream::connect(addr).await.unwrap();
    a.write_all(&produce_head(64 * 1024)).await.unwrap();
    a.write_all(&[0u8; 100]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while budget.in_use() < 64 * 1024 {
        assert!(Instant::now() < deadline, "A's frame reserved the budget");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // B's small request waits: the broker does not read it meanwhile.
    let mut b = TcpStream::connect(addr).await.unwrap();
    let asked = Instant::now();
    assert!(api_versions_ok(&mut b).await, "B is served once A's bytes are released");
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_millis(1000), "B waited for A's reservation: {waited:?}");
    closed_by_broker(&mut a).await;
    assert_eq!(budget.in_use(), 0, "every reservation was given back");
}
