//! Idle remoting connections (RocketMQ's `serverChannelMaxIdleTimeSeconds`):
//! closed when nothing arrives and nothing is in flight for the idle time,
//! also halfway through a frame, kept while a long-poll pull outlasts it;
//! and the request budget stops reading while it is spent.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_log::SystemClock;
use fjord_messaging::{Messaging, MessagingConfig};
use fjord_rocketmq::{RocketMqConfig, RocketMqGateway};
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::codes::{request as rq, response};
use fjord_rocketmq_codec::frame::{DEFAULT_MAX_FRAME, decode_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IDLE: Duration = Duration::from_millis(300);

async fn start() -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>, tempfile::TempDir) {
    start_with(fjord_net::RequestBudget::default()).await
}

async fn start_with(
    request_budget: fjord_net::RequestBudget,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("quiet", 1, TopicConfig::default()).await.unwrap();
    let messaging = Messaging::open(broker, MessagingConfig::default()).await.unwrap();
    messaging.start();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = RocketMqConfig {
        broker_addr: addr.to_string(),
        connection_max_idle: IDLE,
        request_budget,
        ..Default::default()
    };
    let gw = RocketMqGateway::new(messaging, config);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(fjord_rocketmq::serve(vec![fjord_net::Acceptor::with_default_caps(listener, "rocketmq")], gw, rx));
    (addr, stop, dir)
}

async fn call(sock: &mut TcpStream, mut cmd: RemotingCommand, opaque: i32) -> RemotingCommand {
    cmd.opaque = opaque;
    sock.write_all(&cmd.encode()).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        if let Some(resp) = decode_stream(&mut buf, DEFAULT_MAX_FRAME).unwrap()
            && resp.is_response()
            && resp.opaque == opaque
        {
            return resp;
        }
        let n = tokio::time::timeout(Duration::from_secs(20), sock.read_buf(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed while waiting for a response");
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_time() {
    let (addr, _stop, _dir) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    assert_eq!(call(&mut sock, RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO), 1).await.code, response::SUCCESS);
    let silent = Instant::now();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut byte)).await.unwrap().unwrap();
    assert_eq!(n, 0, "closed by the broker");
    assert!(silent.elapsed() >= IDLE - Duration::from_millis(50), "not before the idle time: {:?}", silent.elapsed());
    let mut other = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        call(&mut other, RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO), 1).await.code,
        response::SUCCESS
    );
}

#[tokio::test]
async fn a_long_poll_pull_longer_than_the_idle_time_is_answered() {
    let (addr, _stop, _dir) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let pull = RemotingCommand::request(rq::PULL_MESSAGE)
        .with_field("consumerGroup", "cg")
        .with_field("topic", "quiet")
        .with_field("queueId", 0)
        .with_field("queueOffset", 0)
        .with_field("maxMsgNums", 32)
        // FLAG_SUSPEND | FLAG_SUBSCRIPTION
        .with_field("sysFlag", 6)
        .with_field("commitOffset", -1)
        .with_field("suspendTimeoutMillis", 1000)
        .with_field("subscription", "*")
        .with_field("expressionType", "TAG");
    let asked = Instant::now();
    let resp = call(&mut sock, pull, 1).await;
    let waited = asked.elapsed();
    assert!(
        matches!(resp.code, response::PULL_NOT_FOUND | response::PULL_RETRY_IMMEDIATELY),
        "{} {:?}",
        resp.code,
        resp.remark
    );
    assert!(waited >= Duration::from_millis(900), "the pull was suspended: {waited:?}");
    assert_eq!(call(&mut sock, RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO), 2).await.code, response::SUCCESS);
}

/// Waits until the broker closes `sock`; panics after 10 s.
async fn closed_by_broker(sock: &mut TcpStream) {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(_)) => panic!("unexpected bytes"),
        Err(_) => panic!("still open after 10 s"),
    }
}

#[tokio::test]
async fn a_peer_that_stalls_halfway_through_a_frame_is_closed_after_the_idle_time() {
    let (addr, _stop, _dir) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    // Announces a 4 MB frame, sends 3 MB, goes silent.
    sock.write_all(&4_000_000i32.to_be_bytes()).await.unwrap();
    sock.write_all(&vec![0u8; 3_000_000]).await.unwrap();
    let start = Instant::now();
    closed_by_broker(&mut sock).await;
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_trickled_request_is_not_idle_between_its_bytes() {
    let (addr, _stop, _dir) = start().await;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let mut cmd = RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO);
    cmd.opaque = 9;
    for b in cmd.encode().iter() {
        sock.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(IDLE / 4).await;
    }
    let mut buf = BytesMut::new();
    loop {
        if let Some(resp) = decode_stream(&mut buf, DEFAULT_MAX_FRAME).unwrap() {
            assert_eq!((resp.opaque, resp.code), (9, response::SUCCESS));
            break;
        }
        assert!(sock.read_buf(&mut buf).await.unwrap() > 0, "answered, not closed");
    }
}

#[tokio::test]
async fn a_spent_request_budget_stops_reading_until_memory_is_released() {
    let budget = fjord_net::RequestBudget::new(64 * 1024);
    let (addr, _stop, _dir) = start_with(budget.clone()).await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    a.write_all(&(64 * 1024i32).to_be_bytes()).await.unwrap();
    a.write_all(&[0u8; 100]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while budget.in_use() < 64 * 1024 {
        assert!(Instant::now() < deadline, "A's frame reserved the budget");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut b = TcpStream::connect(addr).await.unwrap();
    let asked = Instant::now();
    assert_eq!(call(&mut b, RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO), 1).await.code, response::SUCCESS);
    assert!(asked.elapsed() >= IDLE - Duration::from_millis(50), "B waited for A: {:?}", asked.elapsed());
    closed_by_broker(&mut a).await;
    assert_eq!(budget.in_use(), 0);

    // Waiting for memory longer than the idle time is not idleness: the
    // request is answered once memory is released, not closed.
    let hog = budget.reserve(64 * 1024).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let waiting =
        tokio::spawn(async move { call(&mut c, RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO), 2).await.code });
    tokio::time::sleep(IDLE * 3).await;
    assert!(!waiting.is_finished(), "not read while the budget is spent");
    drop(hog);
    assert_eq!(waiting.await.unwrap(), response::SUCCESS);
}
