//! # fjord: the broker binary
//!
//! Wiring only: configuration → broker core → protocol listeners, plus
//! logging and signal handling. `anyhow` is used here and nowhere below.

pub mod dev_cluster;
mod limits;
pub mod serve;
pub mod telemetry;
