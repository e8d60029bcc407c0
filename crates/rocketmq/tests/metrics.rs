//! Request and connection metrics of the remoting gateway over a real TCP
//! connection, recorded with a test recorder installed on this thread. The
//! whole gateway runs on a current-thread runtime inside
//! `metrics::with_local_recorder`, so its tasks record into it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_log::SystemClock;
use fjord_messaging::{Messaging, MessagingConfig};
use fjord_metrics_testing::TestRecorder;
use fjord_rocketmq::{RocketMqConfig, RocketMqGateway};
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::codes::{request as rq, response};
use fjord_rocketmq_codec::frame::{DEFAULT_MAX_FRAME, decode_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DURATION: &str = "fjord_request_duration_seconds";
const ERRORS: &str = "fjord_request_errors_total";
const RMQ: (&str, &str) = ("protocol", "rocketmq");

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

#[test]
fn requests_and_connections_are_recorded() {
    let rec = TestRecorder::default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&rec, || {
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
            broker.create_topic("t", 1, TopicConfig::default()).await.unwrap();
            let messaging = Messaging::open(broker.clone(), MessagingConfig::default()).await.unwrap();
            messaging.start();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let config = RocketMqConfig { broker_addr: addr.to_string(), ..Default::default() };
            let gw = RocketMqGateway::new(messaging, config);
            let (stop, rx) = tokio::sync::watch::channel(false);
            let server = tokio::spawn(fjord_rocketmq::serve(
                vec![fjord_net::Acceptor::with_default_caps(listener, "rocketmq")],
                gw,
                rx,
            ));

            let mut sock = TcpStream::connect(addr).await.unwrap();
            let cluster = call(&mut sock, RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO), 1).await;
            assert_eq!(cluster.code, response::SUCCESS);
            let api = [RMQ, ("api", "GET_BROKER_CLUSTER_INFO")];
            assert_eq!(rec.observations(DURATION, &api).len(), 1);
            assert_eq!(rec.counter(ERRORS, &api), 0);
            assert_eq!(rec.gauge_history("fjord_connections", &[RMQ]), vec![1.0]);
            assert_eq!(rec.counter("fjord_connections_accepted_total", &[RMQ]), 1);

            // A route for a topic that does not exist: an error code.
            let route = RemotingCommand::request(rq::GET_ROUTEINFO_BY_TOPIC).with_field("topic", "nope");
            assert_eq!(call(&mut sock, route, 2).await.code, response::TOPIC_NOT_EXIST);
            let api = [RMQ, ("api", "GET_ROUTEINFO_BY_TOPIC")];
            assert_eq!(rec.observations(DURATION, &api).len(), 1);
            assert_eq!(rec.counter(ERRORS, &api), 1);

            // A pull that finds nothing is not an error.
            let pull = RemotingCommand::request(rq::PULL_MESSAGE)
                .with_field("consumerGroup", "cg")
                .with_field("topic", "t")
                .with_field("queueId", 0)
                .with_field("queueOffset", 0)
                .with_field("sysFlag", 4)
                .with_field("suspendTimeoutMillis", 0)
                .with_field("subscription", "*")
                .with_field("expressionType", "TAG");
            assert_eq!(call(&mut sock, pull, 3).await.code, response::PULL_NOT_FOUND);
            let api = [RMQ, ("api", "PULL_MESSAGE")];
            assert_eq!(rec.observations(DURATION, &api).len(), 1);
            assert_eq!(rec.counter(ERRORS, &api), 0);

            // A code Fjord does not serve.
            let unknown = call(&mut sock, RemotingCommand::request(9999), 4).await;
            assert_eq!(unknown.code, response::REQUEST_CODE_NOT_SUPPORTED);
            let api = [RMQ, ("api", "UNKNOWN")];
            assert_eq!(rec.observations(DURATION, &api).len(), 1);
            assert_eq!(rec.counter(ERRORS, &api), 1);

            drop(sock);
            assert_eq!(rec.gauge_back_to_zero("fjord_connections", &[RMQ]).await, vec![1.0, 0.0]);

            // A frame too large to read is refused and closes the
            // connection: an error of no known request.
            let mut sock = TcpStream::connect(addr).await.unwrap();
            sock.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
            let mut rest = Vec::new();
            let _ = sock.read_to_end(&mut rest).await;
            assert_eq!(rec.gauge_back_to_zero("fjord_connections", &[RMQ]).await, vec![1.0, 0.0, 1.0, 0.0]);
            assert_eq!(rec.counter(ERRORS, &api), 2);
            assert_eq!(rec.observations(DURATION, &api).len(), 1, "refused frames are not timed");
            assert_eq!(rec.counter("fjord_connections_accepted_total", &[RMQ]), 2);

            // A connection still open at shutdown is counted out too.
            let mut sock = TcpStream::connect(addr).await.unwrap();
            let cluster = call(&mut sock, RemotingCommand::request(rq::GET_BROKER_CLUSTER_INFO), 5).await;
            assert_eq!(cluster.code, response::SUCCESS);
            stop.send(true).unwrap();
            server.await.unwrap().unwrap();
            assert_eq!(rec.gauge_back_to_zero("fjord_connections", &[RMQ]).await, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
            drop(sock);
            broker.shutdown().await.unwrap();
        });
    });
}
