//! Retry with back-off and dead-letter queues.
//!
//! - **Pop consumers** are retried in place: an unacked message becomes
//!   visible again when its invisibility ends ([`Messaging::nack`] sets it
//!   to the back-off of its attempt). After `max_attempts` deliveries the
//!   maintenance task moves it to the group's dead-letter queue.
//! - **Offset-based consumers** (RocketMQ push/pull) report a failed
//!   message with [`Messaging::consume_failed`]: a copy goes to the group's
//!   retry topic `%RETRY%<group>`, scheduled after the back-off (through the
//!   durable timer), or to `%DLQ%<group>` once out of attempts. Their
//!   consumers read the retry topic like any other.
//!
//! Every copy keeps the message's id, keys, tag, group and properties, and
//! records its origin (topic, partition, offset) and the attempts made, so
//! a dead-lettered message can be sent back where it came from.

use fjord_broker::{BrokerError, TopicPartition};

use crate::Messaging;
use crate::error::{MessagingError, Result};
use crate::message::{Delivery, StoredMessage, headers};
use crate::pop::state::{InFlight, QueueState};
use crate::pop::{QueueId, ReceiptHandle};
use crate::pull::ConsumeModel;
use crate::send::{Partitioning, SendReceipt};

/// Prefix of retry topics.
pub const RETRY_PREFIX: &str = "%RETRY%";

/// Prefix of dead-letter topics.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// The retry topic of a group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of a group.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

impl Messaging {
    /// Creates the group's retry topic if it does not exist yet, so its
    /// consumers can subscribe before the first failure (RocketMQ brokers
    /// do this on a consumer's heartbeat).
    pub async fn ensure_retry_topic(&self, group: &str) -> Result<()> {
        self.ensure_topic(&retry_topic(group)).await
    }

    async fn ensure_topic(&self, name: &str) -> Result<()> {
        if self.broker.topic(name).is_some() {
            return Ok(());
        }
        // Keyed: dead-lettered messages are looked up by id to be re-sent.
        // One partition per serving node (one alone): in a cluster every
        // node leads one, so each retries and dead-letters locally.
        let partitions = self.broker.serving_nodes();
        match self.broker.create_topic(name, partitions, crate::query::keyed_topic_config()).await {
            Ok(_) | Err(BrokerError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Origin headers for a copy of `m`: the first origin is kept across
    /// retries, so a dead-lettered copy points at the original message.
    fn origin_headers(m: &StoredMessage, attempts: u32) -> Vec<(&'static str, String)> {
        let (t, p, o) = match &m.origin {
            Some((t, p, o)) => (t.clone(), *p, *o),
            None => (m.topic.clone(), m.partition, Some(m.offset)),
        };
        let mut h = vec![
            (headers::ORIGIN_TOPIC, t),
            (headers::ORIGIN_PARTITION, p.to_string()),
            (headers::ATTEMPT, attempts.to_string()),
        ];
        if let Some(o) = o {
            h.push((headers::ORIGIN_OFFSET, o.to_string()));
        }
        h
    }

    /// A consumer of `group` failed to process `m` (delivered with
    /// `m.attempt` earlier attempts). Sends a copy to the retry topic after
    /// the back-off, or to the dead-letter queue when this was attempt
    /// `max_attempts` (given, else the group's setting, else the broker
    /// default).
    pub async fn consume_failed(
        &self,
        group: &str,
        m: &StoredMessage,
        max_attempts: Option<u32>,
    ) -> Result<SendReceipt> {
        let attempts = m.attempt + 1;
        if attempts >= max_attempts.unwrap_or_else(|| self.max_attempts(group)) {
            return self.dead_letter(group, m, attempts).await;
        }
        let topic = retry_topic(group);
        self.ensure_topic(&topic).await?;
        let mut copy = m.resend_as(&topic);
        copy.delivery = Delivery::At(self.broker.clock().now_ms() + self.config.backoff(attempts).as_millis() as i64);
        let h = Self::origin_headers(m, attempts);
        Ok(self.send_with(vec![copy], Partitioning::Auto, &h).await?.remove(0))
    }

    /// Moves `m` to the group's dead-letter queue.
    pub async fn dead_letter(&self, group: &str, m: &StoredMessage, attempts: u32) -> Result<SendReceipt> {
        let topic = dlq_topic(group);
        self.ensure_topic(&topic).await?;
        let h = Self::origin_headers(m, attempts);
        let r = self.send_with(vec![m.resend_as(&topic)], Partitioning::Auto, &h).await?.remove(0);
        tracing::info!(group, id = ?m.id, attempts, "message moved to the dead-letter queue");
        Ok(r)
    }

    /// Dead-letters a popped message that used up its attempts, then acks
    /// it. A crash in between leaves it in flight: it is dead-lettered
    /// again (a duplicate in the DLQ, never a loss).
    pub(crate) async fn dead_letter_popped(&self, q: &QueueId, offset: u64, f: InFlight) -> Result<()> {
        let tp = TopicPartition::new(&q.topic, q.partition);
        let group = ConsumeModel::base_group(&q.group).to_string();
        match self.broker.read_records(&tp, offset, 1).await?.into_iter().find(|r| r.offset == offset) {
            Some(r) => {
                let m = StoredMessage::from_record(&q.topic, q.partition, &r);
                self.dead_letter(&group, &StoredMessage { attempt: f.attempt.saturating_sub(1), ..m }, f.attempt)
                    .await?;
            }
            None => tracing::warn!(%tp, offset, "message out of attempts is gone; nothing to dead-letter"),
        }
        self.ack_internal(q, offset, f.seq).await?;
        Ok(())
    }

    /// A pop consumer gives up on a delivery (RocketMQ 5's
    /// ForwardMessageToDeadLetterQueue): the message goes to the group's
    /// dead-letter queue with `attempts` recorded, then the delivery is
    /// acknowledged. A stale receipt is refused before anything is copied.
    pub async fn dead_letter_receipt(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipt: &ReceiptHandle,
        attempts: u32,
    ) -> Result<SendReceipt> {
        let (topic, partition, offset, seq) = receipt.parse()?;
        let tp = TopicPartition::new(&topic, partition);
        let q = self.queue_id(group, model, &tp);
        let current = |s: &QueueState| s.inflight.get(&offset).is_some_and(|f| f.seq == seq);
        if !self.pop.queue(&q).is_some_and(|s| current(&s.lock())) {
            return Err(MessagingError::InvalidReceipt(receipt.0.clone()));
        }
        let m = self.query_by_offset(&tp, offset).await?;
        let r = self.dead_letter(group, &StoredMessage { attempt: attempts.saturating_sub(1), ..m }, attempts).await?;
        self.ack(group, model, receipt).await?;
        Ok(r)
    }

    /// Messages in a group's dead-letter queue from `offset`, at most `max`.
    pub async fn dlq_list(&self, group: &str, offset: u64, max: usize) -> Result<Vec<StoredMessage>> {
        let topic = dlq_topic(group);
        if self.broker.topic(&topic).is_none() {
            return Ok(Vec::new());
        }
        let tp = TopicPartition::new(&topic, 0);
        let recs = self.broker.read_records(&tp, offset, 1 << 20).await?;
        Ok(recs.iter().take(max).map(|r| StoredMessage::from_record(&topic, 0, r)).collect())
    }

    /// Sends a dead-lettered message (by id) back to its original topic,
    /// with its attempts reset.
    pub async fn dlq_resend(&self, group: &str, id: &str) -> Result<SendReceipt> {
        let m = self.query_by_id(&dlq_topic(group), id).await?;
        let Some((origin, _, _)) = &m.origin else {
            return Err(MessagingError::InvalidRequest(format!("message {id} has no original topic")));
        };
        Ok(self.send_batch(vec![m.resend_as(origin)], Partitioning::Auto).await?.remove(0))
    }
}
