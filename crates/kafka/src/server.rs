//! The Kafka listener: accepts connections and runs one task per
//! connection until shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::Broker;
use fjord_kafka_codec::kafka_protocol::messages::{ApiKey, ResponseKind};
use fjord_kafka_codec::{CodecError, decode_request, encode_response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{self, RequestContext};
use crate::config::KafkaConfig;
use crate::connection;
use crate::error::KafkaError;

/// Everything a connection needs: the broker core and gateway-wide state.
#[derive(Debug)]
pub struct KafkaGateway {
    pub(crate) broker: Arc<Broker>,
    pub(crate) config: KafkaConfig,
    pub(crate) consumer_groups: fjord_broker::group::ConsumerGroups,
    pub(crate) fetch_sessions: crate::api::fetch_sessions::FetchSessions,
}

impl KafkaGateway {
    /// A gateway over `broker`.
    pub fn new(broker: Arc<Broker>, config: KafkaConfig) -> Arc<KafkaGateway> {
        let consumer_groups = crate::api::consumer_groups::coordinator(&broker, config.consumer_heartbeat_interval_ms);
        Arc::new(KafkaGateway { broker, config, consumer_groups, fetch_sessions: Default::default() })
    }

    /// Handles one request frame (without its size prefix) and returns the
    /// response frame (with its size prefix), or `None` when the request
    /// gets no answer (Produce with `acks=0`). An error means the
    /// connection must be closed.
    pub async fn handle_frame(&self, frame: Bytes, client_host: &str) -> Result<Option<Bytes>, KafkaError> {
        match decode_request(frame) {
            Ok(request) => {
                let ctx = RequestContext { gw: self, header: &request.header, client_host };
                let version = request.header.request_api_version;
                let correlation_id = request.header.correlation_id;
                match api::handle(&ctx, request.request).await? {
                    Some(body) => Ok(Some(encode_response(request.api, version, correlation_id, &body)?)),
                    None => Ok(None),
                }
            }
            Err(CodecError::UnsupportedVersion { api: ApiKey::ApiVersions, correlation_id, .. }) => {
                // KIP-511: answer in v0 with the supported ranges so the
                // client can pick a version both sides speak.
                let body = api::api_versions::unsupported_version();
                Ok(Some(encode_response(ApiKey::ApiVersions, 0, correlation_id, &ResponseKind::ApiVersions(body))?))
            }
            Err(e) => {
                tracing::info!(client_host, error = %e, "closing kafka connection after a request it cannot serve");
                Err(e.into())
            }
        }
    }

    /// The broker core behind this gateway.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

/// How long connections get to finish their current request at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves Kafka clients on `listener` until `shutdown` turns true; then
/// stops accepting, lets each connection finish the request it is
/// handling, and returns.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<KafkaGateway>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), KafkaError> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let gw = gateway.clone();
                    let stop = shutdown.clone();
                    connections.spawn(async move {
                        if let Err(e) = connection::run(stream, peer, gw, stop).await {
                            tracing::debug!(%peer, error = %e, "kafka connection closed");
                        }
                    });
                }
                // Accept errors (EMFILE, aborted handshakes) concern one
                // connection attempt; back off briefly instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a kafka connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(remaining = connections.len(), "kafka connections did not finish in time; closing them");
        connections.shutdown().await;
    }
    Ok(())
}
