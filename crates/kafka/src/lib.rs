//! # fjord-kafka: the Kafka protocol gateway
//!
//! Accepts Kafka client connections, decodes requests with
//! `fjord-kafka-codec` (which guards `kafka-protocol`'s decoders against
//! hostile frames), maps them onto the protocol-agnostic broker core
//! (`fjord-broker`) and encodes the answers.
//!
//! ## Connections
//! Each connection is one task that reads a frame, handles it, writes the
//! response, and only then reads the next frame, as Kafka brokers do: the
//! responses of one connection leave in request order, which clients rely
//! on. Clients pipeline by having several requests in flight on the socket;
//! they wait in the socket buffer meanwhile.
//!
//! ## Limits before trust
//! - The 4-byte size prefix is checked against [`KafkaConfig::max_request_bytes`]
//!   before anything is read or allocated; requests other than Produce are
//!   limited further by [`KafkaConfig::max_control_request_bytes`], checked
//!   from the first four body bytes (API key and version).
//! - Unknown API keys and malformed frames close the connection (Kafka does
//!   the same); an unsupported `ApiVersions` version is answered with
//!   `UNSUPPORTED_VERSION` and the supported list so the client can retry.
//! - Errors of one client never affect another: nothing in a connection
//!   task can take the process down.
//!
//! ## Module map
//! - [`server`]: the accept loop and connection tasks.
//! - `api`: one module per API family (metadata, produce, fetch, offsets,
//!   groups, admin, configs, producer ids).
//! - `errors`: broker-core errors to Kafka error codes.
//! - `instrument`: request and connection metrics (`fjord_request_duration_seconds`,
//!   `fjord_request_errors_total`, `fjord_connections`,
//!   `fjord_connections_accepted_total`, all with `protocol="kafka"`)
//!   through the `metrics` facade.

mod api;
mod config;
mod connection;
mod error;
mod errors;
mod instrument;
pub mod server;

pub use config::KafkaConfig;
pub use error::KafkaError;
pub use server::{KafkaGateway, serve};
