//! # fjord-rocketmq: RocketMQ's remoting protocol over Fjord
//!
//! RocketMQ 4.x clients (and 5.x clients in remoting mode) find brokers
//! through a name server and then talk to the brokers directly. Fjord
//! answers both roles from one process: the name server port (9876) and
//! the broker port (10911) accept the same commands, and every route points
//! at this node's broker address.
//!
//! ## Mapping
//! - A RocketMQ topic is a Fjord topic; its message queues are the topic's
//!   partitions (queue id = partition, queue offset = partition offset).
//! - Messages go through [`fjord_messaging`]: `TAGS`, `KEYS`, `UNIQ_KEY`
//!   and the sharding key become the message's tag, keys, id and group;
//!   `DELAY` levels and `__STARTDELIVERTIME`/`TIMER_*` schedule it; other
//!   properties are kept as properties (Kafka consumers see all of them as
//!   headers). A transactional send stores a half message; END_TRANSACTION
//!   commits or rolls it back and [`handlers::tx`] checks back with the
//!   producer group for transactions left open.
//! - Pulls read with the consumer group's subscription (from its
//!   heartbeat, or the request) as a broker-side filter; offsets are the
//!   broker's committed offsets, shared with Kafka consumer groups of the
//!   same name.
//! - A "commit log offset" (what RocketMQ's offset message ids encode) is
//!   not a position in one shared log here: see [`mapping::Position`].
//!
//! ## Invariants
//! - A send is acknowledged only after the messaging layer made it durable
//!   (the broker's durability policy).
//! - Frames are capped before their body is read; a connection runs at most
//!   [`RocketMqConfig::max_in_flight`] requests at once.
//!
//! ## Metrics
//! Request durations and errors and connection counts go through the
//! `metrics` facade with `protocol="rocketmq"` (`fjord_request_duration_seconds`,
//! `fjord_request_errors_total`, `fjord_connections`,
//! `fjord_connections_accepted_total`); the `instrument` module defines
//! each precisely.

mod clients;
mod connection;
mod error;
pub mod handlers;
mod instrument;
pub mod mapping;
mod queues;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::Broker;
use fjord_messaging::Messaging;

pub use error::RocketMqError;
pub use server::serve;

/// Settings of the RocketMQ gateway.
#[derive(Debug, Clone)]
pub struct RocketMqConfig {
    /// Cluster name in routes and cluster listings.
    pub cluster_name: String,
    /// This broker's name in routes (message queues are named by it).
    pub broker_name: String,
    /// The broker address clients are sent to (`host:port`).
    pub broker_addr: String,
    /// Largest frame accepted (RocketMQ's default: 16 MiB).
    pub max_frame_bytes: usize,
    /// Requests running at once per connection.
    pub max_in_flight: usize,
    /// Longest a pull waits for messages, whatever the client asks.
    pub max_long_poll: Duration,
    /// Queues of a topic created by a producer's first send, at most.
    pub max_auto_create_queues: u32,
    /// A transaction still open after this long is checked back with its
    /// producer group (RocketMQ's `transactionTimeOut`, 6 s).
    pub transaction_timeout: Duration,
    /// Time between two check-backs of one transaction (RocketMQ's
    /// `transactionCheckInterval`, 60 s).
    pub transaction_check_interval: Duration,
    /// Check-backs after which an unresolved transaction is rolled back
    /// (RocketMQ's `transactionCheckMax`, 15).
    pub transaction_check_max: u32,
    /// A client without a heartbeat for this long is forgotten (120 s).
    pub client_expiry: Duration,
    /// A connection from which no byte arrives for this long while none of
    /// its requests is being handled is closed (also halfway through a
    /// frame) (RocketMQ's
    /// `serverChannelMaxIdleTimeSeconds`, 120 s; clients heartbeat every
    /// 30 s).
    pub connection_max_idle: Duration,
    /// Retries before a message goes to the dead-letter queue when the
    /// client does not say (RocketMQ's default `maxReconsumeTimes`, 16).
    pub max_reconsume_times: u32,
    /// The broker-wide budget for request bytes being read or handled,
    /// shared with the other gateways: a frame's size is reserved before
    /// its body is read and released once its request is handled.
    pub request_budget: fjord_net::RequestBudget,
}

impl Default for RocketMqConfig {
    fn default() -> Self {
        RocketMqConfig {
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-0".into(),
            broker_addr: "127.0.0.1:10911".into(),
            max_frame_bytes: fjord_rocketmq_codec::frame::DEFAULT_MAX_FRAME,
            max_in_flight: 256,
            max_long_poll: Duration::from_secs(30),
            max_auto_create_queues: 8,
            transaction_timeout: Duration::from_secs(6),
            transaction_check_interval: Duration::from_secs(60),
            transaction_check_max: 15,
            client_expiry: Duration::from_secs(120),
            connection_max_idle: Duration::from_secs(120),
            max_reconsume_times: 16,
            request_budget: fjord_net::RequestBudget::default(),
        }
    }
}

/// The gateway: shared by every connection of both listeners.
#[derive(Debug)]
pub struct RocketMqGateway {
    pub(crate) messaging: Arc<Messaging>,
    pub(crate) config: RocketMqConfig,
    pub(crate) store_host: SocketAddr,
    pub(crate) clients: clients::Clients,
}

impl RocketMqGateway {
    /// A gateway over the messaging layer.
    pub fn new(messaging: Arc<Messaging>, config: RocketMqConfig) -> Arc<RocketMqGateway> {
        // Offset message ids carry an IP and port; a hostname in the
        // advertised address cannot be encoded, so ids then name loopback.
        let store_host = config.broker_addr.parse().unwrap_or_else(|_| {
            let port = config.broker_addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(10911);
            SocketAddr::from(([127, 0, 0, 1], port))
        });
        Arc::new(RocketMqGateway { messaging, config, store_host, clients: Default::default() })
    }

    pub(crate) fn broker(&self) -> &Arc<Broker> {
        self.messaging.broker()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.broker().clock().now_ms()
    }

    fn connection_closed(&self, conn_id: u64) {
        for g in self.clients.remove_where(Some(conn_id), i64::MIN) {
            self.members_changed(&g);
        }
    }

    /// A consumer group's membership changed: its members are told (they
    /// rebalance), and the messaging layer's directory is updated.
    pub(crate) fn members_changed(&self, group: &str) {
        self.clients.notify_changed(group);
        self.messaging.publish_members("rocketmq", group, self.clients.consumers(group));
    }
}
