//! # fjord-net: what every listener shares
//!
//! Each protocol gateway owns its wire format; how sockets are admitted,
//! bounded and timed out is the same for all of them and lives here, so a
//! hostile or stalled client meets the same limits on every port:
//!
//! - [`Acceptor`] wraps a `TcpListener`. It caps the connections of its
//!   listener (Kafka's `max.connections`: at the cap it stops accepting,
//!   so new clients wait in the kernel's backlog) and, through a shared
//!   [`IpLimits`] table, the connections of one client IP across all
//!   listeners (`max.connections.per.ip`: the surplus connection is closed
//!   at once, as Kafka does). Accept errors (out of file descriptors,
//!   aborted handshakes) never end the loop and never spin it: it backs
//!   off from 10 ms up to 1 s, logging at most once per interval.
//! - [`RequestBudget`] is the broker-wide budget for bytes of requests
//!   being read or handled (Kafka's `queued.max.request.bytes`). A
//!   connection reserves a frame's announced size *before* reading its
//!   body and holds the reservation until the request has been handled;
//!   when the budget is spent, connections stop reading their sockets
//!   (TCP flow control pushes back on the clients) until memory is
//!   released, instead of growing. HTTP/2 (gRPC) bodies are counted frame
//!   by frame until their message is whole and taken ([`BudgetBody`]).
//! - [`IdleStream`] fails a read that has waited longer than the idle
//!   time for its next byte: idleness is measured from the last byte
//!   received, not from the last complete request, so a peer that stops
//!   halfway through a frame is closed like one that sends nothing.
//! - [`LogLimiter`] rate-limits log lines caused by clients (malformed
//!   frames, refused connections), counting what it suppressed, so one
//!   host cannot fill the disk with log.
//!
//! ## Invariants worth naming
//! - An [`Admitted`] connection holds one slot of its listener and one of
//!   its IP until it is dropped, however the connection ends.
//! - A [`BudgetPermit`] never exceeds the whole budget: a request larger
//!   than the budget waits until it is the only one holding it, so it can
//!   still be served and cannot deadlock.
//!
//! ## Metrics (through the `metrics` facade)
//! - `fjord_connections_refused_total{protocol, reason}`: `reason` is
//!   `per_ip_limit`; connections waiting for a listener slot are not
//!   refused, only delayed.
//! - `fjord_accept_errors_total{protocol}`: failed `accept` calls.
//! - `fjord_request_budget_bytes_in_use` (gauge, read from
//!   [`RequestBudget::in_use`] by the admin's `/metrics` when scraped) and
//!   `fjord_request_budget_waits_total` (counter: reservations that had
//!   to wait for memory to be released).

mod accept;
mod body;
mod budget;
mod idle;
mod ratelog;
mod serve;

pub use accept::{Acceptor, Admitted, IpLimits};
pub use body::BudgetBody;
pub use budget::{BudgetPermit, RequestBudget};
pub use idle::IdleStream;
pub use ratelog::LogLimiter;
pub use serve::serve_connections;

/// Default cap on one listener's open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap on one client IP's open connections, all listeners together.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;
/// Default broker-wide budget for request bytes being read or handled.
pub const DEFAULT_REQUEST_BUDGET_BYTES: u64 = 512 * 1024 * 1024;
