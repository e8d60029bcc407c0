//! Gateway metrics through the `metrics` facade (no-ops until the process
//! installs a recorder; this crate never installs one).
//!
//! - `fjord_request_duration_seconds{protocol="rocketmq_grpc", api}`
//!   (histogram, seconds): one observation per RPC that reached the
//!   service, from the moment tonic handed over the decoded request until
//!   the method returned its response. Server-streaming RPCs
//!   (ReceiveMessage, PullMessage) build their whole answer before
//!   returning, so they are measured until it is complete, long-poll wait
//!   included (up to the client's `long_polling_timeout`, capped by
//!   [`crate::GrpcConfig::max_long_poll`]); SendMessage includes the wait
//!   for durability. Telemetry, a long-lived bidirectional stream, is
//!   measured only until the call returns its response stream (setting it
//!   up), not over the stream's lifetime.
//! - `fjord_request_errors_total{protocol="rocketmq_grpc", api}` (counter):
//!   RPCs answered with a gRPC error status, or whose response's top-level
//!   `Status.code` is not OK; for the streaming ReceiveMessage and
//!   PullMessage, any status item that is neither OK nor MESSAGE_NOT_FOUND
//!   (a long poll that found nothing is not an error). Requests tonic
//!   refuses before the service sees them (undecodable bodies, unknown
//!   methods) are not counted.
//! - `fjord_connections{protocol="rocketmq_grpc"}` (gauge) and
//!   `fjord_connections_accepted_total{protocol="rocketmq_grpc"}`
//!   (counter): TCP connections of the gRPC listener, counted by wrapping
//!   each accepted socket in [`Counted`] (HTTP/2 multiplexes many calls
//!   over one connection).
//!
//! `api` is the RPC method name (`QueryRoute`, `SendMessage`,
//! `ReceiveMessage`, `Telemetry`, ...).

use std::pin::Pin;
use std::task::{Context, Poll};

use fjord_gateway_metrics::{ConnectionGuard, GatewayMetrics};
use fjord_net::IdleStream;
use fjord_rocketmq_proto::tonic::transport::server::{Connected, TcpConnectInfo};

use fjord_grpc_authority::Rewriter;
use fjord_rocketmq_proto::v2::{self, Code};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// This gateway's request and connection metrics.
pub(crate) const METRICS: GatewayMetrics = GatewayMetrics::new("rocketmq_grpc");

/// Whether an answer counts as a request error.
pub(crate) trait Outcome {
    fn failed(&self) -> bool;
}

fn not_ok(status: Option<&v2::Status>) -> bool {
    status.is_none_or(|s| s.code != Code::Ok as i32)
}

/// A status item of a streamed receive or pull: only OK and "no new
/// message" are not errors.
fn streamed_failed(status: &v2::Status) -> bool {
    status.code != Code::Ok as i32 && status.code != Code::MessageNotFound as i32
}

macro_rules! status_outcome {
    ($($t:ty),* $(,)?) => {
        $(impl Outcome for $t {
            fn failed(&self) -> bool {
                not_ok(self.status.as_ref())
            }
        })*
    };
}

status_outcome!(
    v2::QueryRouteResponse,
    v2::HeartbeatResponse,
    v2::SendMessageResponse,
    v2::QueryAssignmentResponse,
    v2::AckMessageResponse,
    v2::ForwardMessageToDeadLetterQueueResponse,
    v2::UpdateOffsetResponse,
    v2::GetOffsetResponse,
    v2::QueryOffsetResponse,
    v2::EndTransactionResponse,
    v2::NotifyClientTerminationResponse,
    v2::ChangeInvisibleDurationResponse,
    v2::RecallMessageResponse,
    v2::SyncLiteSubscriptionResponse,
);

impl Outcome for Vec<v2::ReceiveMessageResponse> {
    fn failed(&self) -> bool {
        use v2::receive_message_response::Content;
        self.iter().any(|r| matches!(&r.content, Some(Content::Status(s)) if streamed_failed(s)))
    }
}

impl Outcome for Vec<v2::PullMessageResponse> {
    fn failed(&self) -> bool {
        use v2::pull_message_response::Content;
        self.iter().any(|r| matches!(&r.content, Some(Content::Status(s)) if streamed_failed(s)))
    }
}

/// An accepted socket that counts itself in the connection metrics until
/// the server drops it (when the HTTP/2 connection ends, however it ends).
#[derive(Debug)]
pub(crate) struct Counted {
    io: IdleStream<TcpStream>,
    /// Until the first request's headers decided it is not needed (see
    /// `crate::authority`).
    rewriter: Option<Box<Rewriter>>,
    _guard: ConnectionGuard,
}

impl Counted {
    pub(crate) fn new(io: IdleStream<TcpStream>) -> Counted {
        Counted { io, rewriter: Some(Box::new(Rewriter::new())), _guard: METRICS.connection() }
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.get_ref().connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            let Some(r) = this.rewriter.as_mut() else { return Pin::new(&mut this.io).poll_read(cx, buf) };
            let out = r.output();
            if !out.is_empty() {
                let n = out.len().min(buf.remaining());
                buf.put_slice(&out.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if r.finished() {
                this.rewriter = None;
                continue;
            }
            // What was read already and not rewritten yet comes first.
            r.resume().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if !r.output().is_empty() {
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            std::task::ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client closed: what is left is no whole frame.
                return Poll::Ready(Ok(()));
            }
            r.push(read.filled()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{ok, status};

    #[test]
    fn statuses_decide_errors() {
        let route = |s| v2::QueryRouteResponse { status: s, message_queues: vec![] };
        assert!(!route(Some(ok())).failed());
        assert!(route(Some(status(Code::TopicNotFound, "no"))).failed());
        assert!(route(None).failed());
        let item = |s| v2::ReceiveMessageResponse { content: Some(v2::receive_message_response::Content::Status(s)) };
        assert!(!vec![item(status(Code::MessageNotFound, "no new message"))].failed());
        assert!(!vec![item(ok())].failed());
        assert!(vec![item(status(Code::IllegalFilterExpression, "bad"))].failed());
    }
}
