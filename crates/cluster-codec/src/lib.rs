//! # fjord-cluster-codec: the frames nodes exchange
//!
//! One TCP connection per pair of peers carries every internode exchange
//! (Raft messages of the controller quorum, metadata writes forwarded to
//! its leader, node heartbeats, requests forwarded between nodes), several
//! at once: each request carries a correlation id its response repeats.
//! This crate is pure — bytes in, frames out, no I/O — so the decoder can
//! be fuzzed and its golden bytes checked without a network.
//!
//! ## Wire format (all integers big-endian)
//! ```text
//! frame  = length:u32  kind:u16  flags:u8  correlation:u32  body
//!          `length` counts the bytes after itself (7 + body length)
//! flags  = bit 0: response, bit 1: error (body = UTF-8 message); other bits 0
//! ```
//! Bodies are defined per [`Kind`]: [`Hello`], [`Heartbeat`],
//! [`ServiceCall`] and the replica fetch ([`ReplicaFetch`],
//! [`ReplicaFetchResponse`]) have binary layouts here (a service call's payload
//! is its service's own encoding); Raft messages and forwarded requests are opaque
//! bytes encoded by their owners (the controller serializes openraft's own
//! types), bounded by the frame cap like everything else.
//!
//! ## Invariants
//! - A frame's length is checked against the connection's cap before
//!   anything is allocated for it, and before the peer authenticated (the
//!   first frame must be a [`Hello`]).
//! - Decoding never panics; an unknown kind decodes (as [`Kind::Unknown`])
//!   so a newer peer gets an error response instead of a dropped link.
//! - `decode(encode(f)) == f` for every frame (property-tested).

mod frame;
mod messages;
mod replication;

pub use frame::{FLAG_ERROR, FLAG_RESPONSE, Frame, HEADER_LEN, Kind, decode, encode};
pub use messages::{Heartbeat, HeartbeatAck, Hello, ServiceCall};
pub use replication::{FetchPartition, FetchStatus, FetchedPartition, ReplicaFetch, ReplicaFetchResponse};

/// Default cap on one frame (64 MiB: a Raft snapshot chunk or a batch of
/// replicated records, with room).
pub const DEFAULT_MAX_FRAME: u32 = 64 << 20;

/// Why bytes are not a valid frame or body. Every variant means the peer
/// broke the protocol: the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The length prefix exceeds the cap (checked before allocating).
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: u32,
        /// The cap.
        max: u32,
    },
    /// The length prefix is below the fixed header.
    #[error("frame length {0} is shorter than its header")]
    TooShort(u32),
    /// Flags with bits this version does not define.
    #[error("unknown frame flags {0:#04x}")]
    BadFlags(u8),
    /// A body ended early or has bytes left over.
    #[error("malformed {what} body: {reason}")]
    Body {
        /// The body's kind.
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
}
