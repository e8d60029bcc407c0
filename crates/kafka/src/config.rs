//! Gateway settings.

use std::time::Duration;

/// Settings of the Kafka gateway (Kafka broker config names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `socket.request.max.bytes`: largest request frame accepted (Produce).
    pub max_request_bytes: usize,
    /// Largest frame for every API other than Produce: these carry no
    /// record data, so a much lower limit bounds what an unauthenticated
    /// peer can make the broker read and decode.
    pub max_control_request_bytes: usize,
    /// `connections.max.idle.ms`: a connection that sends no request for
    /// this long is closed (clients reconnect when they need to). The time
    /// a request is being handled (a long-poll Fetch, a JoinGroup waiting
    /// for its rebalance) does not count. Default 10 minutes, as Kafka.
    pub connections_max_idle: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            max_request_bytes: 100 * 1024 * 1024,
            max_control_request_bytes: 8 * 1024 * 1024,
            connections_max_idle: Duration::from_secs(600),
        }
    }
}
