//! # fjord-kafka-codec: Kafka wire framing for Fjord
//!
//! Bytes in, typed frames out; no I/O and no async runtime. The message
//! structs are `kafka-protocol`'s; this crate decides which of them Fjord
//! accepts and makes decoding them safe:
//!
//! - [`versions`]: the APIs and versions Fjord advertises, all taken from one
//!   Kafka release (4.1), because clients such as kafka-python infer the
//!   broker's version from the advertised maxima.
//! - [`frame`]: request header parsing, request decoding, response
//!   encoding (with the 4-byte size prefix).
//! - `guard`: a schema walk over every advertised request that runs *before*
//!   `kafka-protocol` decodes it.
//!
//! ## Why a guard
//! `kafka-protocol` sizes `Vec::with_capacity(n)` (and maps) from counts
//! read off the wire. A frame of a few bytes claiming 2^31 elements makes it
//! request tens of gigabytes; the allocation fails and Rust aborts the whole
//! process, which no `catch_unwind` can stop. The guard walks the same
//! schema first and rejects a frame whose element counts exceed the bytes
//! that remain (every element takes at least one byte on the wire) or whose
//! decoded size, element count times the in-memory size of the element
//! type, exceeds a budget proportional to the frame. Only frames that pass
//! are handed to `kafka-protocol`.
//!
//! ## Invariants
//! - [`frame::decode_request`] never allocates more than
//!   [`frame::decode_budget`] bytes for collections, whatever the input.
//! - Only APIs and versions listed in [`versions::SUPPORTED_APIS`] are decoded;
//!   anything else is an error the gateway can answer (`ApiVersions`) or
//!   close the connection on.
//! - Record batches inside Produce requests stay raw `Bytes`: they are
//!   validated by `fjord-log`'s allocation-free checker, never by
//!   `kafka-protocol`'s record decoder.

mod error;
pub mod fetch;
pub mod frame;
mod guard;
pub mod versions;

pub use error::CodecError;
pub use fetch::{Piece, encode_fetch_response};
pub use frame::{RequestFrame, decode_request, encode_response, peek_api};
pub use kafka_protocol;
pub use versions::{SUPPORTED_APIS, supported_range};
