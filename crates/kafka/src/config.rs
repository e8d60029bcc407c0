//! Gateway settings.

use std::time::Duration;

use fjord_net::RequestBudget;

/// Settings of the Kafka gateway (Kafka broker config names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `socket.request.max.bytes`: largest request frame accepted (Produce).
    pub max_request_bytes: usize,
    /// Largest frame for every API other than Produce: these carry no
    /// record data, so a much lower limit bounds what an unauthenticated
    /// peer can make the broker read and decode.
    pub max_control_request_bytes: usize,
    /// `connections.max.idle.ms`: a connection from which no byte arrives
    /// for this long while it is being read is closed (clients reconnect
    /// when they need to); a peer that stops halfway through a frame is
    /// idle too. The time a request is being handled (a long-poll Fetch, a
    /// JoinGroup waiting for its rebalance) does not count. Default 10
    /// minutes, as Kafka.
    pub connections_max_idle: Duration,
    /// Kafka's broker-side `fetch.max.bytes`: the most record bytes one
    /// Fetch response carries, whatever the request asks (55 MiB, as
    /// Kafka). A first batch larger than this is still returned whole, so
    /// consumers always make progress.
    pub fetch_max_bytes: usize,
    /// `replica.selector.class` is Kafka's `RackAwareReplicaSelector`
    /// (KIP-392): a leader sends a consumer whose rack holds an in-sync
    /// follower (and not the leader) to that follower, and a follower serves
    /// consumers' reads (Fetch v11+) up to its high watermark.
    pub rack_aware_reads: bool,
    /// The broker-wide budget for request bytes being read or handled
    /// (`queued.max.request.bytes`), shared with the other gateways.
    pub request_budget: RequestBudget,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            max_request_bytes: 100 * 1024 * 1024,
            max_control_request_bytes: 8 * 1024 * 1024,
            connections_max_idle: Duration::from_secs(600),
            fetch_max_bytes: 55 * 1024 * 1024,
            rack_aware_reads: false,
            request_budget: RequestBudget::default(),
        }
    }
}
