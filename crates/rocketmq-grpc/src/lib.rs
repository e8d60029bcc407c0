//! # fjord-rocketmq-grpc: RocketMQ 5.x's gRPC protocol over Fjord
//!
//! RocketMQ 5.x clients speak `apache.rocketmq.v2.MessagingService` to a
//! proxy. Fjord is that proxy and the broker at once: routes name this
//! node's gRPC endpoint, and every RPC maps onto [`fjord_messaging`]:
//!
//! | RPC | messaging layer |
//! | --- | --- |
//! | QueryRoute, QueryAssignment | topics and partitions (queue id = partition) |
//! | SendMessage | `send` / `send_half` (normal, FIFO by message group, delay by delivery timestamp, transactional) |
//! | EndTransaction, Telemetry's RecoverOrphanedTransactionCommand | `end_transaction`, check-back of open transactions |
//! | ReceiveMessage, AckMessage, ChangeInvisibleDuration | `pop`, `ack_many`, `change_invisibility` (receipt handles are the layer's) |
//! | ForwardMessageToDeadLetterQueue | `dead_letter_receipt` (`%DLQ%<group>`) |
//! | PullMessage, UpdateOffset, GetOffset, QueryOffset | `pull`, `commit`, `committed`, list offsets |
//! | Heartbeat, Telemetry (Settings), NotifyClientTermination | the client registry ([`clients`]) |
//!
//! Errors are RocketMQ statuses in the response body (as the Java proxy
//! answers), never gRPC errors, except for a request that cannot be
//! decoded at all.
//!
//! ## Invariants
//! - A send is answered only once the messaging layer made it durable.
//! - A receive never waits longer than the client's long-polling timeout
//!   (capped by [`GrpcConfig::max_long_poll`]), so it answers before the
//!   client's own deadline.
//!
//! ## Metrics
//! Every RPC is recorded in `fjord_request_duration_seconds` and
//! `fjord_request_errors_total`, and every connection in
//! `fjord_connections` and `fjord_connections_accepted_total`, all with
//! `protocol="rocketmq_grpc"`, through the `metrics` facade; the
//! `instrument` module defines each precisely.

pub mod clients;
mod convert;
mod instrument;
mod offsets;
mod receive;
mod route;
mod send;
mod service;
mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use fjord_broker::Broker;
use fjord_messaging::Messaging;
use fjord_net::{Acceptor, BudgetBody, IdleStream};
use fjord_rocketmq_proto::tonic::body::Body;
use fjord_rocketmq_proto::tonic::codegen::http;
use fjord_rocketmq_proto::v2::messaging_service_server::MessagingServiceServer;
use tokio::sync::watch;

/// Errors that stop the gRPC listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrpcError {
    /// The gRPC server failed.
    #[error("gRPC server error: {0}")]
    Transport(#[from] fjord_rocketmq_proto::tonic::transport::Error),
}

/// Settings of the gRPC gateway.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// The address clients are sent to (`host:port`, the advertised gRPC
    /// listener).
    pub endpoint: String,
    /// Broker name in routes.
    pub broker_name: String,
    /// Longest a ReceiveMessage or PullMessage waits for messages.
    pub max_long_poll: Duration,
    /// Most messages one receive returns.
    pub max_batch: usize,
    /// An open transaction is checked back with a producer after this long
    /// (RocketMQ: 6 s).
    pub transaction_timeout: Duration,
    /// Time between two check-backs of one transaction (RocketMQ: 60 s).
    pub transaction_check_interval: Duration,
    /// Check-backs before an unresolved transaction is rolled back (15).
    pub transaction_check_max: u32,
    /// A connection from which no byte arrives for this long is closed.
    /// The server pings every connection every 30 s and live clients
    /// answer, so only dead or stalled peers reach it (120 s, as the
    /// remoting gateway).
    pub connection_max_idle: Duration,
    /// The broker-wide budget for request bytes being read or handled:
    /// request bodies count against it frame by frame until their message
    /// is whole ([`fjord_net::BudgetBody`]).
    pub request_budget: fjord_net::RequestBudget,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:8081".into(),
            broker_name: "broker-0".into(),
            max_long_poll: Duration::from_secs(30),
            max_batch: 32,
            transaction_timeout: Duration::from_secs(6),
            transaction_check_interval: Duration::from_secs(60),
            transaction_check_max: 15,
            connection_max_idle: Duration::from_secs(120),
            request_budget: fjord_net::RequestBudget::default(),
        }
    }
}

/// The gateway shared by every call.
#[derive(Debug)]
pub struct GrpcGateway {
    pub(crate) messaging: Arc<Messaging>,
    pub(crate) config: GrpcConfig,
    pub(crate) clients: clients::Clients,
}

impl GrpcGateway {
    /// A gateway over the messaging layer.
    pub fn new(messaging: Arc<Messaging>, config: GrpcConfig) -> Arc<GrpcGateway> {
        Arc::new(GrpcGateway { messaging, config, clients: Default::default() })
    }

    pub(crate) fn broker(&self) -> &Arc<Broker> {
        self.messaging.broker()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.broker().clock().now_ms()
    }
}

/// Serves gRPC on the connections `acceptor` admits until `stop` turns
/// true.
pub async fn serve(acceptor: Acceptor, gw: Arc<GrpcGateway>, mut stop: watch::Receiver<bool>) -> Result<(), GrpcError> {
    let checker = tokio::spawn(telemetry::run_checker(gw.clone(), stop.clone()));
    let idle = gw.config.connection_max_idle;
    // The acceptor never yields an error (it backs off on failed accepts
    // itself): tonic retries failed accepts at once, which spins a core
    // while the process is out of file descriptors.
    let incoming = futures_util::stream::unfold(acceptor, move |acceptor| async move {
        let (stream, _, admitted) = acceptor.accept().await;
        let io = instrument::Counted::new(IdleStream::new(stream, idle).holding(admitted));
        Some((Ok::<_, std::io::Error>(io), acceptor))
    });
    let budget = gw.config.request_budget.clone();
    let svc = MessagingServiceServer::new(service::Service(gw)).max_decoding_message_size(16 << 20);
    let count_bodies = tower::util::MapRequestLayer::new(move |req: http::Request<Body>| {
        let budget = budget.clone();
        req.map(|body| Body::new(BudgetBody::new(body, budget)))
    });
    let result = fjord_rocketmq_proto::tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(count_bodies)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.changed().await;
        })
        .await;
    checker.abort();
    Ok(result?)
}
