//! The HTTP listener: connections within the caps, read-idle deadlines,
//! request bodies read against a deadline and the broker-wide request
//! budget.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fjord_net::{Acceptor, IdleStream};
use tokio::net::TcpStream;

use crate::{AdminState, ApiError, MAX_BODY_BYTES};

/// The acceptor as an axum listener: every connection is wrapped in an
/// [`IdleStream`] holding its admission slot.
struct Admitting {
    acceptor: Acceptor,
    idle: Duration,
}

impl axum::serve::Listener for Admitting {
    type Io = IdleStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        let (stream, peer, admitted) = self.acceptor.accept().await;
        (IdleStream::new(stream, self.idle).holding(admitted), peer)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.acceptor.local_addr()
    }
}

/// Serves the admin API on the connections `acceptor` admits until `stop`
/// resolves, then finishes the requests in flight.
pub async fn serve(
    acceptor: Acceptor,
    state: AdminState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let idle = state.config.connections_max_idle;
    let app = crate::router(state);
    axum::serve(Admitting { acceptor, idle }, app).with_graceful_shutdown(stop).await
}

/// The client's address, for handlers (`ConnectInfo<PeerAddr>`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Admitting>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Admitting>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// Serves the RabbitMQ-compatible management API ([`crate::rabbit`]) on
/// the connections `acceptor` admits until `stop` resolves.
pub async fn serve_rabbitmq_management(
    acceptor: Acceptor,
    state: AdminState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let idle = state.config.connections_max_idle;
    let app = crate::rabbit::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(state, read_body))
        .into_make_service_with_connect_info::<PeerAddr>();
    axum::serve(Admitting { acceptor, idle }, app).with_graceful_shutdown(stop).await
}

/// Reads a request's body before any handler runs: within
/// [`crate::AdminConfig::body_timeout`] (408 after it), at most
/// [`MAX_BODY_BYTES`] (413 above it), with its size reserved in the
/// broker-wide request budget until the response is ready. Handlers then
/// never wait on a slow client, so they are never cancelled halfway for
/// one.
pub(crate) async fn read_body(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let has_body = announced.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.run(req).await;
    }
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large().into_response();
    }
    let reserve = announced.map_or(MAX_BODY_BYTES, |n| n as usize);
    let _reserved = s.config.request_budget.reserve(reserve).await;
    let (parts, body) = req.into_parts();
    let timeout = s.config.body_timeout;
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            // `to_bytes` reports the size cap as a length-limit error
            // somewhere in the source chain.
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return too_large().into_response();
                }
                source = err.source();
            }
            return ApiError::bad_request(format!("reading the request body failed: {e}")).into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request body did not arrive within {timeout:?}"),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}
