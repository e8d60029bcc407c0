//! # fjord-rocketmq-codec: RocketMQ's remoting protocol, bytes in, typed values out
//!
//! RocketMQ 4.x clients talk to the name server and the brokers with one
//! message type, [`RemotingCommand`]: a code, an `opaque` request id, flag
//! bits, an optional remark and a map of named string fields, with a body.
//! The header is either a JSON object or RocketMQ's compact binary layout
//! (the high byte of the header length says which); a response is written
//! in its request's serialization. See [`command`] for the frame layout.
//!
//! The body depends on the code: JSON for routes, heartbeats and locks
//! ([`bodies`]), the commitlog encoding for pulled and queried messages
//! ([`message::MessageExt`]), a batch encoding for SEND_BATCH_MESSAGE
//! ([`message::decode_batch`]).
//!
//! ## Invariants
//! - No decoder allocates from a length it has not checked against the
//!   bytes actually present; [`frame::decode_stream`] refuses a frame over
//!   its maximum before buffering its body. Header maps are capped at
//!   [`command::MAX_EXT_FIELDS`] fields, batches at
//!   [`message::MAX_BATCH_MESSAGES`] messages.
//! - No tokio here: the gateway (`fjord-rocketmq`) owns sockets.

pub mod admin;
pub mod bodies;
pub mod codes;
pub mod command;
pub mod error;
pub mod frame;
pub mod message;

pub use command::{FLAG_ONEWAY, FLAG_RESPONSE, Language, RemotingCommand, SerializeType};
pub use error::{CodecError, Result};
pub use message::MessageExt;
