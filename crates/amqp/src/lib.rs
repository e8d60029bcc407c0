//! # fjord-amqp: AMQP 0-9-1 (RabbitMQ's protocol) over Fjord
//!
//! RabbitMQ clients (pika, amqp-client, amqp091-go, lapin, amqplib) connect
//! to port 5672, open channels, declare exchanges and queues, bind them,
//! publish to exchanges and consume from queues with per-message acks.
//! This gateway maps that onto the one message model:
//!
//! - **Queues are topics** ([`model::queue_topic`]): a queue `hello` of
//!   virtual host `/` is the topic `hello`, so what pika publishes a Kafka
//!   or RocketMQ consumer reads, and any existing topic is a queue.
//! - **Deliveries are pops** of the consumer group [`model::AMQP_GROUP`]
//!   ([`fjord_messaging::pop`]): each delivery is invisible to other
//!   consumers until acked; a nack, a reject with requeue, or the end of
//!   its channel makes it visible again (redelivered). Acks, pops and
//!   requeues are journaled by the messaging layer, so nothing unacked is
//!   lost across a crash and nothing acked comes back after a process
//!   crash (pops and acks are synced within a second, not waited for: a
//!   machine crash in that second redelivers); at start every delivery of
//!   the group is released, since no connection survives.
//! - **Across nodes** a queue is used through any node: its publishes,
//!   pops, acks and counts go to the node leading it (the messaging
//!   layer's forwarded calls, `send_batch_to_leaders`, `pop_at_leader`,
//!   `ack_many_at_leaders`, `release_many_at_leaders`).
//! - **Exchanges and bindings** are definitions ([`model`]), routed in
//!   memory and kept durably in the broker's document scopes (a file on a
//!   single node, the controller quorum in a cluster: the same on every
//!   node).
//! - **Publishes** are appended in channel order by a per-channel
//!   publisher ([`publish`]) in batches; with confirms on, a publish is
//!   acked once it is durable in every queue it was routed to.
//!
//! Layout: [`connection`] (handshake, heartbeats, channel dispatch),
//! `reader` (frames out of one read buffer), [`channel`] (the methods),
//! [`consumer`] (push delivery with prefetch), [`publish`], [`ops`]
//! (declare/delete/bind on the model and the broker), [`mapping`]
//! (properties ↔ record headers), [`conns`] (open connections).
//!
//! ## Invariants worth naming
//! - A frame's announced size is checked against `frame_max` before its
//!   payload is read; a content body's announced size against
//!   `max_message_size` before any of it is buffered.
//! - After `basic.cancel-ok` no delivery for that consumer tag is sent.
//! - A delivery is in a channel's unacked table before its frame is
//!   written, so an ack can never race ahead of its bookkeeping.

pub mod access;
pub mod alarm;
pub mod channel;
pub mod connection;
pub mod conns;
pub mod consumer;
pub mod deadletter;
mod delivery;
pub mod error;
pub mod exception;
mod expiry;
mod instrument;
pub mod manage;
pub mod mapping;
mod maxlen;
pub mod model;
pub mod ops;
pub mod priority;
pub mod publish;
mod reader;
mod remote_consumers;
mod server;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fjord_messaging::{ConsumeModel, Messaging};
use fjord_net::RequestBudget;

pub use error::{AmqpError, Result};
pub use server::serve;

/// Settings of the AMQP gateway.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// Largest frame the server accepts and proposes (default 131072, as
    /// RabbitMQ).
    pub frame_max: u32,
    /// Most channels per connection (default 2047, as RabbitMQ).
    pub channel_max: u16,
    /// Heartbeat interval proposed, seconds (default 60; 0 = off).
    pub heartbeat: u16,
    /// Largest message body accepted (default 128 MiB, RabbitMQ's
    /// `max_message_size`).
    pub max_message_size: u64,
    /// How long an unacked delivery stays with its consumer before it is
    /// redelivered (RabbitMQ's `consumer_timeout`, default 30 min).
    pub consumer_timeout: Duration,
    /// How long a new connection may take to finish its handshake.
    pub handshake_timeout: Duration,
    /// Broker-wide budget for request bytes being read.
    pub request_budget: RequestBudget,
    /// The user (name, password) created with every permission on `/`
    /// when the data directory has no users yet (RabbitMQ's
    /// `default_user`/`default_pass`; default guest/guest).
    pub default_user: (String, String),
    /// Users who may log in from loopback addresses only (RabbitMQ's
    /// `loopback_users`; default `guest`).
    pub loopback_users: Vec<String>,
    /// Publishers are blocked while the data directory's file system has
    /// less free space than this (RabbitMQ's `disk_free_limit`, 50 MB).
    pub disk_free_limit: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            consumer_timeout: Duration::from_secs(30 * 60),
            handshake_timeout: Duration::from_secs(10),
            request_budget: RequestBudget::new(fjord_net::DEFAULT_REQUEST_BUDGET_BYTES),
            default_user: ("guest".into(), "guest".into()),
            loopback_users: vec!["guest".into()],
            disk_free_limit: alarm::DEFAULT_DISK_FREE_LIMIT,
        }
    }
}

/// The AMQP gateway of one broker.
#[derive(Debug)]
pub struct AmqpGateway {
    pub(crate) messaging: Arc<Messaging>,
    pub(crate) config: AmqpConfig,
    pub(crate) model: model::Model,
    pub(crate) users: access::Users,
    pub(crate) consumers: consumer::Registry,
    /// When each queue (by topic) was last used — declared, consumed
    /// from, or read with basic.get — for `x-expires`.
    pub(crate) last_used: parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The disk alarm: true while publishers are blocked.
    pub(crate) alarm: tokio::sync::watch::Sender<bool>,
    pub(crate) disk_free_limit: AtomicU64,
    /// Free bytes at the last check (`u64::MAX`: unknown).
    pub(crate) disk_free: AtomicU64,
    /// Open connections (management: list, close; forced closes).
    pub(crate) connections: conns::Connections,
    next_id: AtomicU64,
}

impl AmqpGateway {
    /// Loads the definitions, deletes the topics of transient queues left
    /// by the previous run and returns every queue's deliveries (no
    /// connection survived a restart).
    pub async fn open(messaging: Arc<Messaging>, config: AmqpConfig) -> Result<Arc<AmqpGateway>> {
        let dir = messaging.broker().config().data_dir.join("amqp");
        let (model, mut transient) = model::Model::open(messaging.broker().clone(), &dir).await?;
        let (user, pass) = &config.default_user;
        let users =
            access::Users::open(messaging.broker().clone(), &dir, (user, pass), config.loopback_users.clone()).await?;
        let cluster = messaging.broker().config().cluster_id.is_some();
        if !cluster {
            transient.extend(model.drop_transient().await?);
            delete_topics(&messaging, transient).await;
        }
        // Requeues go on for ever; queues with a delivery limit apply it.
        // Built in, not stored: nothing to agree on with a cluster at start.
        let unlimited =
            fjord_messaging::GroupSettings { max_attempts: fjord_messaging::UNLIMITED_ATTEMPTS, fifo: false };
        messaging.set_builtin_group_settings(model::AMQP_GROUP, unlimited);
        messaging.set_connection_bound(model::AMQP_GROUP);
        for v in model.snapshot().values() {
            for q in v.queues.values() {
                if messaging.broker().topic(&q.topic).is_some() {
                    messaging.release_all(model::AMQP_GROUP, &ConsumeModel::Clustering, &q.topic).await?;
                }
            }
        }
        let disk_free_limit = config.disk_free_limit;
        // Connection ids own exclusive queues, which every node sees: unique
        // in the cluster.
        let first_id = (u64::from(messaging.broker().config().node_id.unsigned_abs()) << 40) | 1;
        let gateway = Arc::new(AmqpGateway {
            messaging,
            config,
            model,
            users,
            consumers: Default::default(),
            last_used: Default::default(),
            alarm: tokio::sync::watch::Sender::new(false),
            disk_free_limit: AtomicU64::new(disk_free_limit),
            disk_free: AtomicU64::new(u64::MAX),
            connections: Default::default(),
            next_id: AtomicU64::new(first_id),
        });
        gateway.register_consumer_service();
        if cluster {
            // What this node's earlier run left goes once the node has
            // joined (its metadata current, the quorum reachable).
            tokio::spawn(drop_transient_when_joined(gateway.clone()));
        }
        Ok(gateway)
    }

    /// The definitions.
    pub fn model(&self) -> &model::Model {
        &self.model
    }

    /// Users and permissions.
    pub fn users(&self) -> &access::Users {
        &self.users
    }

    /// The open connections.
    pub fn connections(&self) -> &conns::Connections {
        &self.connections
    }

    /// Marks a queue as used now (`x-expires` counts from here).
    pub(crate) fn touch(&self, topic: &str) {
        self.last_used.lock().insert(topic.to_string(), std::time::Instant::now());
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Deletes the topics of transient queues that are gone.
async fn delete_topics(messaging: &Messaging, topics: Vec<String>) {
    for topic in topics {
        match messaging.broker().delete_topic(&topic).await {
            Ok(()) | Err(fjord_broker::BrokerError::UnknownTopic(_)) => {}
            Err(e) => tracing::warn!(%topic, error = %e, "could not delete a transient queue's topic"),
        }
    }
}

/// A cluster node's [`model::Model::drop_transient`]: waits until the node
/// serves (its placement lists it), then retries until the change lands.
async fn drop_transient_when_joined(gw: Arc<AmqpGateway>) {
    if gw.messaging.broker().joined().await.is_none() {
        return;
    }
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        match gw.model.drop_transient().await {
            Ok(topics) => {
                gw.announce_consumer_reset().await;
                return delete_topics(&gw.messaging, topics).await;
            }
            Err(e) => tracing::warn!(error = %e, "amqp: could not yet remove this node's transient definitions"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(5));
    }
}
