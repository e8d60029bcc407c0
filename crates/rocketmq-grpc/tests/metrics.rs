//! Request and connection metrics of the gRPC gateway through the
//! generated client, recorded with a test recorder installed on this
//! thread. Server and client run on a current-thread runtime inside
//! `metrics::with_local_recorder`, so tonic's connection tasks record into
//! it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_log::SystemClock;
use fjord_messaging::{Messaging, MessagingConfig};
use fjord_metrics_testing::TestRecorder;
use fjord_rocketmq_grpc::{GrpcConfig, GrpcGateway};
use fjord_rocketmq_proto::prost_types::Duration as PDuration;
use fjord_rocketmq_proto::tonic::Request;
use fjord_rocketmq_proto::v2::{self, Code, messaging_service_client::MessagingServiceClient};
use tokio::net::TcpListener;

const DURATION: &str = "fjord_request_duration_seconds";
const ERRORS: &str = "fjord_request_errors_total";
const GRPC: (&str, &str) = ("protocol", "rocketmq_grpc");

fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource { resource_namespace: String::new(), name: name.into() })
}

#[test]
fn rpcs_and_connections_are_recorded() {
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
            let addr = listener.local_addr().unwrap().to_string();
            let gw = GrpcGateway::new(messaging, GrpcConfig { endpoint: addr.clone(), ..Default::default() });
            let (stop, rx) = tokio::sync::watch::channel(false);
            let server = tokio::spawn(fjord_rocketmq_grpc::serve(
                fjord_net::Acceptor::with_default_caps(listener, "rocketmq_grpc"),
                gw,
                rx,
            ));

            let mut c = MessagingServiceClient::connect(format!("http://{addr}")).await.unwrap();
            let route = c.query_route(v2::QueryRouteRequest { topic: resource("t"), endpoints: None }).await.unwrap();
            let route = route.into_inner();
            assert_eq!(route.status.as_ref().unwrap().code, Code::Ok as i32);
            let api = [GRPC, ("api", "QueryRoute")];
            assert_eq!(rec.observations(DURATION, &api).len(), 1);
            assert_eq!(rec.counter(ERRORS, &api), 0);
            assert_eq!(rec.gauge_history("fjord_connections", &[GRPC]), vec![1.0]);
            assert_eq!(rec.counter("fjord_connections_accepted_total", &[GRPC]), 1);

            // A status other than OK in the body is an error.
            let sent = c.send_message(v2::SendMessageRequest { messages: vec![] }).await.unwrap().into_inner();
            assert_eq!(sent.status.unwrap().code, Code::BadRequest as i32);
            let api = [GRPC, ("api", "SendMessage")];
            assert_eq!(rec.observations(DURATION, &api).len(), 1);
            assert_eq!(rec.counter(ERRORS, &api), 1);

            // A receive that finds nothing (after its long poll) is not.
            let mut req = Request::new(v2::ReceiveMessageRequest {
                group: resource("g"),
                message_queue: route.message_queues.first().cloned(),
                filter_expression: Some(v2::FilterExpression {
                    r#type: v2::FilterType::Tag as i32,
                    expression: "*".into(),
                }),
                batch_size: 16,
                invisible_duration: Some(PDuration { seconds: 30, nanos: 0 }),
                auto_renew: false,
                long_polling_timeout: Some(PDuration { seconds: 0, nanos: 50_000_000 }),
                attempt_id: None,
            });
            req.metadata_mut().insert("x-mq-client-id", "test-client".parse().unwrap());
            let mut stream = c.receive_message(req).await.unwrap().into_inner();
            let mut codes = Vec::new();
            while let Some(item) = stream.message().await.unwrap() {
                if let Some(v2::receive_message_response::Content::Status(s)) = item.content {
                    codes.push(s.code);
                }
            }
            assert_eq!(codes, vec![Code::MessageNotFound as i32]);
            drop(stream);
            let api = [GRPC, ("api", "ReceiveMessage")];
            let waited = rec.observations(DURATION, &api);
            assert_eq!(waited.len(), 1);
            assert!(waited[0] >= 0.04, "the long poll is part of the duration: {waited:?}");
            assert_eq!(rec.counter(ERRORS, &api), 0);

            // A gRPC error status is an error too.
            let err = c.telemetry(tokio_stream::iter(Vec::<v2::TelemetryCommand>::new())).await.unwrap_err();
            assert_eq!(err.code(), fjord_rocketmq_proto::tonic::Code::InvalidArgument);
            let api = [GRPC, ("api", "Telemetry")];
            assert_eq!(rec.observations(DURATION, &api).len(), 1);
            assert_eq!(rec.counter(ERRORS, &api), 1);

            // All calls shared one HTTP/2 connection, which closes with
            // the client.
            assert_eq!(rec.counter("fjord_connections_accepted_total", &[GRPC]), 1);
            drop(c);
            assert_eq!(rec.gauge_back_to_zero("fjord_connections", &[GRPC]).await, vec![1.0, 0.0]);

            // A connection still open at shutdown is counted out too.
            let mut c = MessagingServiceClient::connect(format!("http://{addr}")).await.unwrap();
            c.heartbeat(v2::HeartbeatRequest::default()).await.unwrap();
            assert_eq!(rec.gauge_history("fjord_connections", &[GRPC]), vec![1.0, 0.0, 1.0]);
            stop.send(true).unwrap();
            server.await.unwrap().unwrap();
            assert_eq!(rec.gauge_back_to_zero("fjord_connections", &[GRPC]).await, vec![1.0, 0.0, 1.0, 0.0]);
            drop(c);
            broker.shutdown().await.unwrap();
        });
    });
}
