//! The tonic service: reads the client id and hands each RPC to its module,
//! recording each call in the request metrics (see `crate::instrument`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use fjord_rocketmq_proto::tonic::{self, Request, Response, Status, Streaming};
use fjord_rocketmq_proto::v2::{self, Code, messaging_service_server::MessagingService};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::GrpcGateway;
use crate::clients::CLIENT_ID_HEADER;
use crate::convert::{ok, status};
use crate::instrument::{self, Outcome};

pub(crate) struct Service(pub(crate) Arc<GrpcGateway>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn client_id<T>(req: &Request<T>) -> String {
    req.metadata().get(CLIENT_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// A unary answer, recorded in the request metrics.
fn unary<T: Outcome>(api: &'static str, start: Instant, answer: T) -> Result<Response<T>, Status> {
    instrument::METRICS.request_done(api, start, answer.failed());
    Ok(Response::new(answer))
}

/// A server-streamed answer built in full, recorded in the request metrics.
fn streamed<T: Send + 'static>(
    api: &'static str,
    start: Instant,
    items: Vec<T>,
) -> Result<Response<BoxStream<T>>, Status>
where
    Vec<T>: Outcome,
{
    instrument::METRICS.request_done(api, start, items.failed());
    Ok(Response::new(Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))))
}

#[tonic::async_trait]
impl MessagingService for Service {
    async fn query_route(
        &self,
        req: Request<v2::QueryRouteRequest>,
    ) -> Result<Response<v2::QueryRouteResponse>, Status> {
        let start = Instant::now();
        unary("QueryRoute", start, self.0.query_route(req.into_inner()).await)
    }

    async fn heartbeat(&self, _req: Request<v2::HeartbeatRequest>) -> Result<Response<v2::HeartbeatResponse>, Status> {
        unary("Heartbeat", Instant::now(), v2::HeartbeatResponse { status: Some(ok()) })
    }

    async fn send_message(
        &self,
        req: Request<v2::SendMessageRequest>,
    ) -> Result<Response<v2::SendMessageResponse>, Status> {
        let start = Instant::now();
        let client = client_id(&req);
        unary("SendMessage", start, self.0.send_message(&client, req.into_inner()).await)
    }

    async fn query_assignment(
        &self,
        req: Request<v2::QueryAssignmentRequest>,
    ) -> Result<Response<v2::QueryAssignmentResponse>, Status> {
        let start = Instant::now();
        unary("QueryAssignment", start, self.0.query_assignment(req.into_inner()).await)
    }

    type ReceiveMessageStream = BoxStream<v2::ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        req: Request<v2::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, Status> {
        let start = Instant::now();
        let client = client_id(&req);
        streamed("ReceiveMessage", start, self.0.receive(&client, req.into_inner()).await)
    }

    async fn ack_message(
        &self,
        req: Request<v2::AckMessageRequest>,
    ) -> Result<Response<v2::AckMessageResponse>, Status> {
        let start = Instant::now();
        unary("AckMessage", start, self.0.ack(req.into_inner()).await)
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        req: Request<v2::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<v2::ForwardMessageToDeadLetterQueueResponse>, Status> {
        let start = Instant::now();
        unary("ForwardMessageToDeadLetterQueue", start, self.0.forward_to_dlq(req.into_inner()).await)
    }

    type PullMessageStream = BoxStream<v2::PullMessageResponse>;

    async fn pull_message(
        &self,
        req: Request<v2::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, Status> {
        let start = Instant::now();
        streamed("PullMessage", start, self.0.pull(req.into_inner()).await)
    }

    async fn update_offset(
        &self,
        req: Request<v2::UpdateOffsetRequest>,
    ) -> Result<Response<v2::UpdateOffsetResponse>, Status> {
        let start = Instant::now();
        unary("UpdateOffset", start, self.0.update_offset(req.into_inner()).await)
    }

    async fn get_offset(&self, req: Request<v2::GetOffsetRequest>) -> Result<Response<v2::GetOffsetResponse>, Status> {
        let start = Instant::now();
        unary("GetOffset", start, self.0.get_offset(req.into_inner()).await)
    }

    async fn query_offset(
        &self,
        req: Request<v2::QueryOffsetRequest>,
    ) -> Result<Response<v2::QueryOffsetResponse>, Status> {
        let start = Instant::now();
        unary("QueryOffset", start, self.0.query_offset(req.into_inner()).await)
    }

    async fn end_transaction(
        &self,
        req: Request<v2::EndTransactionRequest>,
    ) -> Result<Response<v2::EndTransactionResponse>, Status> {
        let start = Instant::now();
        unary("EndTransaction", start, self.0.end_transaction(req.into_inner()).await)
    }

    type TelemetryStream = ReceiverStream<Result<v2::TelemetryCommand, Status>>;

    async fn telemetry(
        &self,
        req: Request<Streaming<v2::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, Status> {
        let start = Instant::now();
        let client = client_id(&req);
        if client.is_empty() {
            instrument::METRICS.request_done("Telemetry", start, true);
            return Err(Status::invalid_argument(format!("the {CLIENT_ID_HEADER} header is required")));
        }
        let commands = ReceiverStream::new(self.0.telemetry(client, req.into_inner()));
        instrument::METRICS.request_done("Telemetry", start, false);
        Ok(Response::new(commands))
    }

    async fn notify_client_termination(
        &self,
        req: Request<v2::NotifyClientTerminationRequest>,
    ) -> Result<Response<v2::NotifyClientTerminationResponse>, Status> {
        let start = Instant::now();
        let client = client_id(&req);
        let group = self.0.clients.group_of(&client);
        self.0.clients.remove(&client);
        if let Some(group) = group {
            self.0.messaging.publish_members("rocketmq_grpc", &group, self.0.clients.consumers(&group));
        }
        unary("NotifyClientTermination", start, v2::NotifyClientTerminationResponse { status: Some(ok()) })
    }

    async fn change_invisible_duration(
        &self,
        req: Request<v2::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<v2::ChangeInvisibleDurationResponse>, Status> {
        let start = Instant::now();
        unary("ChangeInvisibleDuration", start, self.0.change_invisible(req.into_inner()).await)
    }

    async fn recall_message(
        &self,
        _req: Request<v2::RecallMessageRequest>,
    ) -> Result<Response<v2::RecallMessageResponse>, Status> {
        let answer = v2::RecallMessageResponse {
            status: Some(status(Code::NotImplemented, "recalling scheduled messages is not supported")),
            message_id: String::new(),
        };
        unary("RecallMessage", Instant::now(), answer)
    }

    async fn sync_lite_subscription(
        &self,
        _req: Request<v2::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<v2::SyncLiteSubscriptionResponse>, Status> {
        let answer = v2::SyncLiteSubscriptionResponse {
            status: Some(status(Code::NotImplemented, "lite topics are not supported")),
        };
        unary("SyncLiteSubscription", Instant::now(), answer)
    }
}
