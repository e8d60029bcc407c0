//! The gateway over gRPC with the generated client: the wire shapes 5.x
//! clients rely on (stream order, digests, attempts) and error statuses.

use std::io::Write;
use std::sync::Arc;

use fjord_broker::{Broker, BrokerConfig};
use fjord_log::SystemClock;
use fjord_messaging::{Messaging, MessagingConfig};
use fjord_rocketmq_grpc::{GrpcConfig, GrpcGateway};
use fjord_rocketmq_proto::prost_types::Duration as PDuration;
use fjord_rocketmq_proto::tonic::Request;
use fjord_rocketmq_proto::tonic::transport::Channel;
use fjord_rocketmq_proto::v2::{self, Code, messaging_service_client::MessagingServiceClient};
use tokio::net::TcpListener;

async fn start() -> (MessagingServiceClient<Channel>, tokio::sync::watch::Sender<bool>, tempfile::TempDir) {
    start_with(fjord_net::RequestBudget::default()).await
}

async fn start_with(
    request_budget: fjord_net::RequestBudget,
) -> (MessagingServiceClient<Channel>, tokio::sync::watch::Sender<bool>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.expect("broker");
    let messaging = Messaging::open(broker, MessagingConfig::default()).await.expect("messaging");
    messaging.start();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let gw = GrpcGateway::new(messaging, GrpcConfig { endpoint: addr.clone(), request_budget, ..Default::default() });
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(fjord_rocketmq_grpc::serve(fjord_net::Acceptor::with_default_caps(listener, "rocketmq_grpc"), gw, rx));
    let client = MessagingServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    (client, stop, dir)
}

fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource { resource_namespace: String::new(), name: name.into() })
}

fn code(s: &Option<v2::Status>) -> Code {
    Code::try_from(s.as_ref().map_or(0, |s| s.code)).unwrap_or(Code::Unspecified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_receive_ack_and_the_shapes_clients_need() {
    let (mut c, _stop, _dir) = start().await;
    let route = c.query_route(v2::QueryRouteRequest { topic: resource("t"), endpoints: None }).await.expect("route");
    let route = route.into_inner();
    assert_eq!(code(&route.status), Code::Ok);
    assert!(route.message_queues[0].accept_message_types.contains(&(v2::MessageType::Transaction as i32)));

    // A gzip body is stored inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"hello gzip").expect("gzip");
    let msg = v2::Message {
        topic: resource("t"),
        user_properties: [("color".to_string(), "red".to_string())].into(),
        system_properties: Some(v2::SystemProperties {
            tag: Some("TagA".into()),
            keys: vec!["k1".into()],
            message_id: "01ABC".into(),
            body_encoding: v2::Encoding::Gzip as i32,
            message_type: v2::MessageType::Normal as i32,
            ..Default::default()
        }),
        body: gz.finish().expect("gzip"),
    };
    let sent = c.send_message(v2::SendMessageRequest { messages: vec![msg] }).await.expect("send").into_inner();
    assert_eq!(code(&sent.status), Code::Ok);
    assert_eq!(sent.entries[0].message_id, "01ABC", "the client's id is echoed");

    let mut req = Request::new(v2::ReceiveMessageRequest {
        group: resource("g"),
        message_queue: route.message_queues.first().cloned(),
        filter_expression: Some(v2::FilterExpression { r#type: v2::FilterType::Tag as i32, expression: "TagA".into() }),
        batch_size: 16,
        invisible_duration: Some(PDuration { seconds: 30, nanos: 0 }),
        auto_renew: false,
        long_polling_timeout: Some(PDuration { seconds: 5, nanos: 0 }),
        attempt_id: None,
    });
    req.metadata_mut().insert("x-mq-client-id", "test-client".parse().expect("header"));
    let mut stream = c.receive_message(req).await.expect("receive").into_inner();
    let mut items = Vec::new();
    while let Some(item) = stream.message().await.expect("stream") {
        items.push(item.content.expect("content"));
    }
    use v2::receive_message_response::Content;
    assert!(matches!(&items[0], Content::Status(s) if s.code == Code::Ok as i32), "status first: {items:?}");
    let Content::Message(m) = &items[1] else { panic!("then the message: {items:?}") };
    assert!(matches!(items.last(), Some(Content::DeliveryTimestamp(_))), "the delivery time closes the stream");
    let sp = m.system_properties.as_ref().expect("system properties");
    assert_eq!(m.body, b"hello gzip");
    assert_eq!(sp.body_encoding, v2::Encoding::Identity as i32);
    assert_eq!(
        sp.body_digest.as_ref().map(|d| d.checksum.clone()),
        Some(format!("{:08X}", crc32fast::hash(b"hello gzip")))
    );
    assert_eq!((sp.delivery_attempt, sp.message_id.as_str(), sp.tag.as_deref()), (Some(1), "01ABC", Some("TagA")));
    assert_eq!(m.user_properties.get("color").map(String::as_str), Some("red"));
    let receipt = sp.receipt_handle.clone().expect("receipt handle");

    let ack = |handle: &str| v2::AckMessageRequest {
        group: resource("g"),
        topic: resource("t"),
        entries: vec![v2::AckMessageEntry {
            message_id: "01ABC".into(),
            receipt_handle: handle.into(),
            lite_topic: None,
        }],
    };
    let bad = c.ack_message(ack("nonsense")).await.expect("ack").into_inner();
    assert_eq!(code(&bad.entries[0].status), Code::InvalidReceiptHandle);
    let good = c.ack_message(ack(&receipt)).await.expect("ack").into_inner();
    assert_eq!(code(&good.status), Code::Ok);
    let again = c.ack_message(ack(&receipt)).await.expect("ack").into_inner();
    assert_eq!(code(&again.entries[0].status), Code::InvalidReceiptHandle, "a receipt acks once");

    // Offsets: the end of queue 0 and an offset pull's stream shape.
    let q0 = route.message_queues[0].clone();
    let end = c
        .query_offset(v2::QueryOffsetRequest {
            message_queue: Some(q0.clone()),
            query_offset_policy: v2::QueryOffsetPolicy::End as i32,
            timestamp: None,
        })
        .await
        .expect("query offset")
        .into_inner();
    assert_eq!(code(&end.status), Code::Ok);
    let pulled = c
        .pull_message(v2::PullMessageRequest {
            group: resource("puller"),
            message_queue: Some(q0),
            offset: 0,
            batch_size: 10,
            filter_expression: None,
            long_polling_timeout: None,
        })
        .await
        .expect("pull")
        .into_inner();
    let mut pulled = pulled;
    let mut last = None;
    while let Some(item) = pulled.message().await.expect("stream") {
        last = item.content;
    }
    assert_eq!(last, Some(v2::pull_message_response::Content::NextOffset(end.offset)), "the next offset closes a pull");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_statuses_not_crashes() {
    let (mut c, _stop, _dir) = start().await;
    let end = c
        .end_transaction(v2::EndTransactionRequest {
            topic: resource("t"),
            message_id: "x".into(),
            transaction_id: "not-a-handle".into(),
            resolution: v2::TransactionResolution::Commit as i32,
            ..Default::default()
        })
        .await
        .expect("end")
        .into_inner();
    assert_eq!(code(&end.status), Code::InvalidTransactionId);
    let fifo_without_group = v2::Message {
        topic: resource("t"),
        system_properties: Some(v2::SystemProperties {
            message_type: v2::MessageType::Fifo as i32,
            message_id: "m".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = c.send_message(v2::SendMessageRequest { messages: vec![fifo_without_group] }).await.expect("send");
    assert_eq!(code(&r.into_inner().status), Code::IllegalMessageGroup);
    let r = c.send_message(v2::SendMessageRequest { messages: vec![] }).await.expect("send");
    assert_eq!(code(&r.into_inner().status), Code::BadRequest);
    let inv = c
        .change_invisible_duration(v2::ChangeInvisibleDurationRequest {
            group: resource("g"),
            topic: resource("t"),
            receipt_handle: "0 0 0 t".into(),
            invisible_duration: Some(PDuration { seconds: 5, nanos: 0 }),
            ..Default::default()
        })
        .await
        .expect("change")
        .into_inner();
    assert_eq!(code(&inv.status), Code::InvalidReceiptHandle);
    // Telemetry needs the client id header.
    let stream = tokio_stream::iter(Vec::<v2::TelemetryCommand>::new());
    let err = c.telemetry(stream).await.expect_err("refused");
    assert_eq!(err.code(), fjord_rocketmq_proto::tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_wait_while_the_request_budget_is_spent() {
    let budget = fjord_net::RequestBudget::new(1 << 20);
    let (mut c, _stop, _dir) = start_with(budget.clone()).await;
    let send = |c: &mut MessagingServiceClient<Channel>| {
        let mut c = c.clone();
        let msg = v2::Message {
            topic: resource("t"),
            user_properties: Default::default(),
            system_properties: Some(v2::SystemProperties {
                message_id: "01BUDGET".into(),
                message_type: v2::MessageType::Normal as i32,
                ..Default::default()
            }),
            body: vec![1u8; 4096],
        };
        tokio::spawn(async move { c.send_message(v2::SendMessageRequest { messages: vec![msg] }).await })
    };
    // Served normally; nothing stays reserved afterwards.
    let sent = send(&mut c).await.expect("task").expect("send").into_inner();
    assert_eq!(code(&sent.status), Code::Ok);
    assert_eq!(budget.in_use(), 0);
    // With the budget spent elsewhere, the body is not read.
    let hog = budget.reserve(1 << 20).await;
    let pending = send(&mut c);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "a send was read while the request budget was spent");
    drop(hog);
    let sent = pending.await.expect("task").expect("send").into_inner();
    assert_eq!(code(&sent.status), Code::Ok);
    assert_eq!(budget.in_use(), 0);
}
