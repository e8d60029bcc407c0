//! The generated tonic server and client talk to each other over loopback:
//! a unary RPC, a server-streaming RPC, the bidirectional `Telemetry` stream,
//! and an RPC the test server does not implement.

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;

use fjord_rocketmq_proto::tonic::codegen::tokio_stream::{self, Stream, StreamExt as _};
use fjord_rocketmq_proto::tonic::transport::Server;
use fjord_rocketmq_proto::tonic::transport::server::TcpIncoming;
use fjord_rocketmq_proto::tonic::{Code, Request, Response, Status, Streaming};
use fjord_rocketmq_proto::v2;
use fjord_rocketmq_proto::v2::messaging_service_client::MessagingServiceClient;
use fjord_rocketmq_proto::v2::messaging_service_server::{MessagingService, MessagingServiceServer, SERVICE_NAME};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Answers QueryRoute, ReceiveMessage and Telemetry; everything else is
/// UNIMPLEMENTED.
#[derive(Debug, Default)]
struct TestService;

fn ok() -> Option<v2::Status> {
    Some(v2::Status { code: v2::Code::Ok.into(), message: "OK".into() })
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in this test"))
}

#[fjord_rocketmq_proto::tonic::async_trait]
impl MessagingService for TestService {
    async fn query_route(
        &self,
        request: Request<v2::QueryRouteRequest>,
    ) -> Result<Response<v2::QueryRouteResponse>, Status> {
        let topic = request.into_inner().topic;
        let queues = (0..4)
            .map(|id| v2::MessageQueue {
                topic: topic.clone(),
                id,
                permission: v2::Permission::ReadWrite.into(),
                broker: None,
                accept_message_types: vec![v2::MessageType::Normal.into()],
            })
            .collect();
        Ok(Response::new(v2::QueryRouteResponse { status: ok(), message_queues: queues }))
    }

    async fn heartbeat(&self, _: Request<v2::HeartbeatRequest>) -> Result<Response<v2::HeartbeatResponse>, Status> {
        unimplemented()
    }

    async fn send_message(
        &self,
        _: Request<v2::SendMessageRequest>,
    ) -> Result<Response<v2::SendMessageResponse>, Status> {
        unimplemented()
    }

    async fn query_assignment(
        &self,
        _: Request<v2::QueryAssignmentRequest>,
    ) -> Result<Response<v2::QueryAssignmentResponse>, Status> {
        unimplemented()
    }

    type ReceiveMessageStream = BoxStream<v2::ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        request: Request<v2::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        use v2::receive_message_response::Content;
        let batch = request.into_inner().batch_size;
        let mut items = vec![Content::Status(ok().unwrap_or_default())];
        items.extend((0..batch).map(|i| {
            Content::Message(v2::Message {
                body: format!("m{i}").into_bytes(),
                system_properties: Some(v2::SystemProperties {
                    message_id: format!("id-{i}"),
                    receipt_handle: Some(format!("rh-{i}")),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }));
        let stream = tokio_stream::iter(items).map(|c| Ok(v2::ReceiveMessageResponse { content: Some(c) }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ack_message(&self, _: Request<v2::AckMessageRequest>) -> Result<Response<v2::AckMessageResponse>, Status> {
        unimplemented()
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        _: Request<v2::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<v2::ForwardMessageToDeadLetterQueueResponse>, Status> {
        unimplemented()
    }

    type PullMessageStream = BoxStream<v2::PullMessageResponse>;

    async fn pull_message(
        &self,
        _: Request<v2::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        unimplemented()
    }

    async fn update_offset(
        &self,
        _: Request<v2::UpdateOffsetRequest>,
    ) -> Result<Response<v2::UpdateOffsetResponse>, Status> {
        unimplemented()
    }

    async fn get_offset(&self, _: Request<v2::GetOffsetRequest>) -> Result<Response<v2::GetOffsetResponse>, Status> {
        unimplemented()
    }

    async fn query_offset(
        &self,
        _: Request<v2::QueryOffsetRequest>,
    ) -> Result<Response<v2::QueryOffsetResponse>, Status> {
        unimplemented()
    }

    async fn end_transaction(
        &self,
        _: Request<v2::EndTransactionRequest>,
    ) -> Result<Response<v2::EndTransactionResponse>, Status> {
        unimplemented()
    }

    type TelemetryStream = BoxStream<v2::TelemetryCommand>;

    /// Answers each client frame with an OK status echoing its command.
    async fn telemetry(
        &self,
        request: Request<Streaming<v2::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let replies = request.into_inner().map(|frame| frame.map(|c| v2::TelemetryCommand { status: ok(), ..c }));
        Ok(Response::new(Box::pin(replies)))
    }

    async fn notify_client_termination(
        &self,
        _: Request<v2::NotifyClientTerminationRequest>,
    ) -> Result<Response<v2::NotifyClientTerminationResponse>, Status> {
        unimplemented()
    }

    async fn change_invisible_duration(
        &self,
        _: Request<v2::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<v2::ChangeInvisibleDurationResponse>, Status> {
        unimplemented()
    }

    async fn recall_message(
        &self,
        _: Request<v2::RecallMessageRequest>,
    ) -> Result<Response<v2::RecallMessageResponse>, Status> {
        unimplemented()
    }

    async fn sync_lite_subscription(
        &self,
        _: Request<v2::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<v2::SyncLiteSubscriptionResponse>, Status> {
        unimplemented()
    }
}

/// Starts the test server on an ephemeral loopback port.
fn serve() -> SocketAddr {
    let incoming = TcpIncoming::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind loopback");
    let addr = incoming.local_addr().expect("local addr");
    tokio::spawn(Server::builder().add_service(MessagingServiceServer::new(TestService)).serve_with_incoming(incoming));
    addr
}

#[tokio::test]
async fn client_and_server_over_loopback() {
    assert_eq!(SERVICE_NAME, "apache.rocketmq.v2.MessagingService");
    let addr = serve();
    let mut client = MessagingServiceClient::connect(format!("http://{addr}")).await.expect("connect");
    let topic = Some(v2::Resource { resource_namespace: "ns".into(), name: "orders".into() });

    let route = client
        .query_route(v2::QueryRouteRequest { topic: topic.clone(), endpoints: None })
        .await
        .expect("query route")
        .into_inner();
    assert_eq!(route.status.map(|s| s.code()), Some(v2::Code::Ok));
    assert_eq!(route.message_queues.len(), 4);
    assert!(route.message_queues.iter().all(|q| q.topic == topic));

    let mut received = client
        .receive_message(v2::ReceiveMessageRequest { batch_size: 3, ..Default::default() })
        .await
        .expect("receive message")
        .into_inner();
    let mut handles = Vec::new();
    while let Some(item) = received.message().await.expect("stream item") {
        if let Some(v2::receive_message_response::Content::Message(m)) = item.content {
            handles.extend(m.system_properties.and_then(|sp| sp.receipt_handle));
        }
    }
    assert_eq!(handles, ["rh-0", "rh-1", "rh-2"]);

    let frames = vec![
        v2::TelemetryCommand {
            status: None,
            command: Some(v2::telemetry_command::Command::Settings(v2::Settings {
                client_type: Some(v2::ClientType::Producer.into()),
                ..Default::default()
            })),
        },
        v2::TelemetryCommand {
            status: None,
            command: Some(v2::telemetry_command::Command::ThreadStackTrace(v2::ThreadStackTrace {
                nonce: "n1".into(),
                thread_stack_trace: Some("main".into()),
            })),
        },
    ];
    let mut replies = client.telemetry(tokio_stream::iter(frames.clone())).await.expect("telemetry").into_inner();
    let mut echoed = Vec::new();
    while let Some(reply) = replies.message().await.expect("telemetry reply") {
        assert_eq!(reply.status.as_ref().map(v2::Status::code), Some(v2::Code::Ok));
        echoed.push(v2::TelemetryCommand { status: None, ..reply });
    }
    assert_eq!(echoed, frames);

    let err = client.heartbeat(v2::HeartbeatRequest::default()).await.expect_err("not implemented here");
    assert_eq!(err.code(), Code::Unimplemented);
}
