//! Per-message acknowledgement ("pop" consumption): a consumer group
//! receives messages with an invisibility duration and acks each one, or
//! changes its invisibility (nack / extend). A message not acked in time is
//! visible again with its attempt count incremented; after
//! `max_attempts` deliveries it goes to the group's dead-letter queue. This
//! is what RocketMQ's SimpleConsumer, AMQP queues and Kafka share groups
//! need.
//!
//! ## FIFO
//! A FIFO pop hands out a message of a message group only when no earlier
//! message of that group is unacked (in flight, waiting for redelivery or
//! held back itself): later messages of a busy group are *held* (at most
//! `max_held_per_queue` per queue) while other groups go on.
//!
//! ## Durability and failover
//! A queue is served by the node leading its partition and kept by its
//! shard, a partition of the replicated internal topic `__fjord_pop`
//! ([`shard`]). Every pop, ack, invisibility change and reset is queued
//! for the shard under the queue's lock (so the shard sees the changes in
//! their order) and answered once committed there ([`writer`]). A node
//! that comes to serve a queue — after a restart, or taking a partition
//! over — loads it from its shard, exactly as the last server left it: in
//! flight deliveries stay invisible until their time and their receipts
//! stay valid, acked messages are never delivered again. A pop whose write
//! did not commit is delivered again (at least once); an acknowledged ack
//! is never undone. Callers whose pops and acks have no answer to make
//! durable (AMQP: `basic.ack` has none, and every unacked delivery goes
//! back to its queue when its connection goes) may skip the wait
//! ([`PopRequest::durable`], [`Messaging::ack_many_unsynced`]).
//!
//! A connection-bound group's deliveries (AMQP) record their holder and
//! the name of the pop that made them ([`PopRequest::id`]): a pop that
//! failed after taking messages (its write reached the shard, or its
//! answer was lost on its way back from another node) is taken back by
//! that name (`Messaging::abandon_pop`, in the background from
//! [`Messaging::pop_at_leader`]); otherwise its messages would stay
//! invisible for the whole `consumer_timeout` while the connection lives.
//! A pop that meets a failure after taking some messages (a read, a later
//! partition) answers those instead of the failure.

mod legacy;
mod progress;
mod queue;
mod ready;
mod release;
mod remote;
mod service;
pub(crate) mod shard;
pub(crate) mod state;
#[cfg(test)]
mod tests;
mod writer;

use std::time::Duration;

use fjord_broker::TopicPartition;
use fjord_filter::Filter;

use crate::error::{MessagingError, Result};
use crate::message::StoredMessage;
use crate::pull::ConsumeModel;
pub(crate) use legacy::migrate as migrate_legacy;
pub(crate) use remote::{ShardAnswer, ShardCall};
pub(crate) use service::{PopService, QueueId, spawn_maintenance};
pub(crate) use state::Holder;

/// Where a new queue (no state, no committed offset) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The oldest retained message (default: a new group sees what is
    /// retained, as a queue would).
    #[default]
    Earliest,
    /// Only messages sent from now on.
    Latest,
}

/// A pop request.
#[derive(Debug, Clone)]
pub struct PopRequest {
    /// Consumer group.
    pub group: String,
    /// Clustering (one progress per group) or broadcasting (one per
    /// instance).
    pub model: ConsumeModel,
    /// Topic.
    pub topic: String,
    /// One partition, or `None` for any (rotating across them).
    pub partition: Option<u32>,
    /// Most messages returned.
    pub max_messages: usize,
    /// How long popped messages stay invisible to the group.
    pub invisible: Duration,
    /// Broker-side filter; non-matching messages are skipped (acked).
    pub filter: Filter,
    /// Hold back later messages of a busy message group.
    pub fifo: bool,
    /// Long-poll up to this long when nothing is available.
    pub wait: Duration,
    /// Where a brand-new queue starts.
    pub start: StartFrom,
    /// Answer only once the pop's change is committed on its shard (the
    /// default). `false` answers at once: a crash before the change is
    /// written (within moments) delivers those messages again. For protocols that hand
    /// every unacked delivery back after a restart anyway (AMQP), where
    /// waiting buys nothing.
    pub durable: bool,
    /// The caller's name for this pop, unique in its messaging session
    /// ([`crate::Messaging::pop_at_leader`] gives one when `None`): a
    /// connection-bound group's deliveries record it, so a pop whose
    /// answer is lost can be taken back (`Messaging::abandon_pop`).
    pub id: Option<u64>,
}

impl PopRequest {
    /// A request for up to `max` messages of `topic`, 30 s invisible, no
    /// filter, not FIFO, no wait.
    pub fn new(group: impl Into<String>, topic: impl Into<String>, max: usize) -> Self {
        PopRequest {
            group: group.into(),
            model: ConsumeModel::Clustering,
            topic: topic.into(),
            partition: None,
            max_messages: max,
            invisible: Duration::from_secs(30),
            filter: Filter::All,
            fifo: false,
            wait: Duration::ZERO,
            start: StartFrom::Earliest,
            durable: true,
            id: None,
        }
    }
}

/// A popped message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Popped {
    /// The message.
    pub message: StoredMessage,
    /// Pass back to ack or change invisibility.
    pub receipt: ReceiptHandle,
    /// Which delivery this is (1 = first).
    pub attempt: u32,
    /// Invisible to the group until then (ms).
    pub invisible_until: i64,
}

/// Names one delivery of one message to one group: topic, partition,
/// offset and the delivery's sequence number. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ReceiptHandle(pub String);

impl ReceiptHandle {
    pub(crate) fn new(topic: &str, partition: u32, offset: u64, seq: u64) -> Self {
        ReceiptHandle(format!("{partition:x} {offset:x} {seq:x} {topic}"))
    }

    /// The topic and partition it names.
    pub(crate) fn partition(&self) -> Result<TopicPartition> {
        let (topic, partition, _, _) = self.parse()?;
        Ok(TopicPartition::new(topic, partition))
    }

    pub(crate) fn parse(&self) -> Result<(String, u32, u64, u64)> {
        let bad = || MessagingError::InvalidReceipt(self.0.clone());
        let mut it = self.0.splitn(4, ' ');
        let mut hex = || it.next().and_then(|s| u64::from_str_radix(s, 16).ok());
        let (Some(p), Some(o), Some(s)) = (hex(), hex(), hex()) else { return Err(bad()) };
        let topic = it.next().filter(|t| !t.is_empty()).ok_or_else(bad)?;
        Ok((topic.to_string(), u32::try_from(p).map_err(|_| bad())?, o, s))
    }
}

impl std::fmt::Display for ReceiptHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
