//! The Kafka listener: accepts connections and runs one task per
//! connection until shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fjord_broker::Broker;
use fjord_kafka_codec::kafka_protocol::messages::{ApiKey, ResponseKind};
use fjord_kafka_codec::{CodecError, Piece, decode_request, encode_fetch_response, encode_response};
use fjord_log::LogSlice;
use fjord_net::{Acceptor, LogLimiter};
use tokio::sync::watch;

use crate::api::{self, Handled, Reply, RequestContext};
use crate::config::KafkaConfig;
use crate::connection;
use crate::error::KafkaError;
use crate::instrument;

/// Everything a connection needs: the broker core and gateway-wide state.
#[derive(Debug)]
pub struct KafkaGateway {
    pub(crate) broker: Arc<Broker>,
    pub(crate) config: KafkaConfig,
    pub(crate) fetch_sessions: crate::api::fetch_sessions::FetchSessions,
}

impl KafkaGateway {
    /// A gateway over `broker`.
    pub fn new(broker: Arc<Broker>, config: KafkaConfig) -> Arc<KafkaGateway> {
        Arc::new(KafkaGateway { broker, config, fetch_sessions: Default::default() })
    }

    /// Handles one request frame (without its size prefix) and returns the
    /// response frame (with its size prefix), or `None` when the request
    /// gets no answer (Produce with `acks=0`). An error means the
    /// connection must be closed.
    pub async fn handle_frame(&self, frame: Bytes, client_host: &str) -> Result<Option<Bytes>, KafkaError> {
        let answer = match self.respond(frame, client_host).await? {
            Pending::Ready(answer) => answer,
            Pending::Later(later) => later.await?,
        };
        match answer.out {
            Some(out) => Ok(Some(out.materialize()?)),
            None => Ok(None),
        }
    }

    /// As [`KafkaGateway::handle_frame`], with Fetch record data left in
    /// the log files for the connection to send without copying, whether
    /// the answer carries an error code (for the request metrics), and a
    /// Produce's acknowledgement left to await once its batches are
    /// written.
    pub(crate) async fn respond(&self, frame: Bytes, client_host: &str) -> Result<Pending, KafkaError> {
        match decode_request(frame) {
            Ok(request) => {
                let ctx = RequestContext { gw: self, header: &request.header, client_host };
                let version = request.header.request_api_version;
                let correlation_id = request.header.correlation_id;
                let api = request.api;
                Ok(match api::handle(&ctx, request.request).await? {
                    Handled::Now(reply) => Pending::Ready(answer(api, version, correlation_id, reply)?),
                    Handled::Later(later) => {
                        Pending::Later(Box::pin(async move { answer(api, version, correlation_id, later.await) }))
                    }
                })
            }
            Err(CodecError::UnsupportedVersion { api: ApiKey::ApiVersions, correlation_id, .. }) => {
                // KIP-511: answer in v0 with the supported ranges so the
                // client can pick a version both sides speak.
                let body = api::api_versions::unsupported_version();
                let bytes = encode_response(ApiKey::ApiVersions, 0, correlation_id, &ResponseKind::ApiVersions(body))?;
                Ok(Pending::Ready(Answer { out: Some(Outgoing::Bytes(bytes)), error: true }))
            }
            Err(e) => {
                // A client sending garbage in a loop must not fill the log.
                static LOG: LogLimiter = LogLimiter::new(Duration::from_secs(10));
                if let Some(suppressed) = LOG.check() {
                    tracing::info!(client_host, error = %e, suppressed, "closing kafka connection after a request it cannot serve");
                }
                Err(e.into())
            }
        }
    }

    /// The broker core behind this gateway.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

/// Encodes a handler's reply in the request's version.
fn answer(api: ApiKey, version: i16, correlation_id: i32, reply: Option<Reply>) -> Result<Answer, KafkaError> {
    let error = reply.as_ref().is_some_and(instrument::reply_has_error);
    let out = match reply {
        Some(Reply::Body(body)) => Some(Outgoing::Bytes(encode_response(api, version, correlation_id, &body)?)),
        Some(Reply::Fetch(f)) => {
            let lens: Vec<Option<usize>> = f.files.iter().map(|s| s.as_ref().map(LogSlice::len)).collect();
            let (pieces, _) = encode_fetch_response(version, correlation_id, &f.response, &lens)?;
            Some(Outgoing::Pieces { pieces, files: f.files })
        }
        None => None,
    };
    Ok(Answer { out, error })
}

/// A request frame handled as far as the connection's order requires.
pub(crate) enum Pending {
    /// Answered.
    Ready(Answer),
    /// Its answer follows (a Produce waiting for its acknowledgements; its
    /// batches are written): the connection goes on with the next request
    /// meanwhile and sends the answers in order.
    Later(futures_util::future::BoxFuture<'static, Result<Answer, KafkaError>>),
}

/// What a request frame produced.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The response, if the request gets one.
    pub(crate) out: Option<Outgoing>,
    /// Whether the response carries an error code.
    pub(crate) error: bool,
}

/// An encoded response on its way out.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// All in memory.
    Bytes(Bytes),
    /// Encoded pieces with record data to be sent from log files.
    Pieces { pieces: Vec<Piece>, files: Vec<Option<LogSlice>> },
}

impl Outgoing {
    /// The whole response in memory (reads the file ranges).
    pub(crate) fn materialize(self) -> Result<Bytes, KafkaError> {
        match self {
            Outgoing::Bytes(b) => Ok(b),
            Outgoing::Pieces { pieces, files } => {
                let mut out = bytes::BytesMut::new();
                for p in pieces {
                    match p {
                        Piece::Bytes(b) => out.extend_from_slice(&b),
                        Piece::Records(i) => {
                            let slice = files.get(i).and_then(Option::as_ref).ok_or(KafkaError::MissingRecords(i))?;
                            let data = slice.to_bytes().map_err(|e| KafkaError::Io {
                                context: "reading fetched records",
                                source: std::io::Error::other(e.to_string()),
                            })?;
                            out.extend_from_slice(&data);
                        }
                    }
                }
                Ok(out.freeze())
            }
        }
    }
}

/// How long connections get to finish their current request at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves Kafka clients accepted by `acceptor` (which applies the
/// connection caps) until `shutdown` turns true; then stops accepting,
/// lets each connection finish the request it is handling, and returns.
pub async fn serve(
    acceptor: Acceptor,
    gateway: Arc<KafkaGateway>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), KafkaError> {
    let stop = shutdown.clone();
    fjord_net::serve_connections("kafka", acceptor, shutdown, DRAIN, move |stream, peer| {
        let (gw, stop) = (gateway.clone(), stop.clone());
        let guard = instrument::METRICS.connection();
        async move {
            let _guard = guard;
            if let Err(e) = connection::run(stream, peer, gw, stop).await {
                tracing::debug!(%peer, error = %e, "kafka connection closed");
            }
        }
    })
    .await;
    Ok(())
}
