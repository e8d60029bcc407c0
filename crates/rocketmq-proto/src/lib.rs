//! The RocketMQ 5.x gRPC interface, package `apache.rocketmq.v2`, as prost
//! messages and a tonic client and server.
//!
//! The `.proto` files under `proto/apache/rocketmq/v2/` are a transcription of
//! the interface published in the apache/rocketmq-apis repository (`main`):
//! package, service and RPC names, message and field names, field numbers,
//! types and enum values follow it exactly, so what this crate encodes is what
//! RocketMQ 5.x clients and proxies put on the wire. Code is generated at build
//! time with `protox` and `tonic-prost-build`; no `protoc` is needed.
//!
//! What is here:
//! - [`v2`]: every message and enum of `definition.proto`, `service.proto` and
//!   `admin.proto`, plus the services `MessagingService` (the data plane
//!   clients use: routes, send, receive/ack, pull and offsets, transactions,
//!   the `Telemetry` stream, ...) and `Admin`, each with a client module
//!   (`v2::messaging_service_client`, `v2::admin_client`) and a server module
//!   (`v2::messaging_service_server`, `v2::admin_server`).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, e.g. for gRPC reflection.
//! - Re-exports of the [`tonic`], [`prost`] and [`prost_types`] versions the
//!   generated code is built against.
//!
//! Well-known types map to [`prost_types`]: `google.protobuf.Timestamp` is
//! [`prost_types::Timestamp`] and `google.protobuf.Duration` is
//! [`prost_types::Duration`].

pub use prost;
pub use prost_types;
pub use tonic;

/// Generated code of package `apache.rocketmq.v2`.
///
/// The type and field docs come from the comments of the `.proto` files.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
pub mod v2 {
    tonic::include_proto!("apache.rocketmq.v2");
}

/// Encoded `google.protobuf.FileDescriptorSet` of the interface, with its
/// imports (`google/protobuf/timestamp.proto`, `duration.proto`) and source
/// info, e.g. for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/apache.rocketmq.v2.bin"));
