//! Idle remoting connections (RocketMQ's `serverChannelMaxIdleTimeSeconds`):
//! closed when nothing arrives and nothing is in flight for the idle time,
//! kept while a long-poll pull outlasts it.
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
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    broker.create_topic("quiet", 1, TopicConfig::default()).await.unwrap();
    let messaging = Messaging::open(broker, MessagingConfig::default()).await.unwrap();
    messaging.start();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = RocketMqConfig { broker_addr: addr.to_string(), connection_max_idle: IDLE, ..Default::default() };
    let gw = RocketMqGateway::new(messaging, config);
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(fjord_rocketmq::serve(vec![listener], gw, rx));
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
