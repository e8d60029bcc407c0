//! Forwarded sends: [`Messaging::send_batch_to_leaders`].

use std::time::Duration;

use fjord_broker::{BrokerError, Leadership, TopicPartition};
use serde::{Deserialize, Serialize};

use super::{Reply, Request};
use crate::Messaging;
use crate::error::{MessagingError, Result};
use crate::message::Message;
use crate::send::{Partitioning, SendReceipt};

/// Longest wait for a leader and for enough in-sync replicas, together,
/// before a send through any node is refused (see
/// [`Messaging::send_batch_to_leaders`]).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// A [`SendReceipt`] on the wire (the topic is the request's).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WireReceipt {
    id: String,
    partition: u32,
    offset: Option<u64>,
    deliver_at: Option<i64>,
}

impl Messaging {
    /// [`Messaging::send_batch`] for clients that may be connected to any
    /// node: what this node leads is stored here; a batch for a partition
    /// led elsewhere (or, unpartitioned, for a topic this node leads no
    /// partition of) is stored by its leader. Same receipts, same
    /// durability.
    pub async fn send_batch_to_leaders(
        &self,
        msgs: Vec<Message>,
        partitioning: Partitioning,
    ) -> Result<Vec<SendReceipt>> {
        // A single node leads everything: no lookups on its hot path.
        let single = self.broker.placement().is_none();
        let Some(topic) = msgs.first().map(|m| m.topic.clone()).filter(|_| !single) else {
            return self.send_with(msgs, partitioning, &[]).await;
        };
        if let Partitioning::Auto = partitioning {
            // Creates the topic first where the broker auto-creates.
            self.led_partitions(&topic).await?;
        }
        let partition = match partitioning {
            Partitioning::Auto => None,
            Partitioning::Explicit(p) => Some(p),
        };
        // One bound for the whole send: waiting for a leader, then for
        // enough in-sync replicas.
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut changes = self.broker.subscribe_placement();
        self.await_leader(&topic, partition, &mut changes, deadline).await;
        // Too few in-sync replicas, nothing written: the set grows back
        // through the metadata within seconds of a follower's return, and
        // a client that cannot retry by itself (AMQP) is better served by
        // a late confirm than a nack (Kafka clients retry this error).
        loop {
            changes.borrow_and_update();
            match self.send_once(&topic, msgs.clone(), partitioning, partition).await {
                Err(MessagingError::Broker(BrokerError::NotEnoughReplicas { appended: false, .. }))
                    if tokio::time::Instant::now() < deadline
                        && tokio::time::timeout_at(deadline, changes.changed()).await.is_ok_and(|r| r.is_ok()) => {}
                outcome => return outcome,
            }
        }
    }

    /// One attempt of [`Messaging::send_batch_to_leaders`].
    async fn send_once(
        &self,
        topic: &str,
        msgs: Vec<Message>,
        partitioning: Partitioning,
        partition: Option<u32>,
    ) -> Result<Vec<SendReceipt>> {
        let remote = match partition {
            Some(p) => self.remote_leader_of(topic, p),
            None => self.remote_leader_for_topic(topic),
        };
        let Some(node) = remote else { return self.send_with(msgs, partitioning, &[]).await };
        if msgs.iter().any(|m| m.topic != topic) {
            return Err(MessagingError::InvalidRequest("a batch must be for one topic".into()));
        }
        let n = msgs.len();
        match self.call(node, &Request::Send { partition, extra: Vec::new(), messages: msgs }).await? {
            Reply::Sent(receipts) if receipts.len() == n => Ok(receipts
                .into_iter()
                .map(|r| SendReceipt {
                    id: r.id,
                    partition: TopicPartition::new(topic, r.partition),
                    offset: r.offset,
                    deliver_at: r.deliver_at,
                })
                .collect()),
            other => Err(MessagingError::Internal(format!("node {node} answered a send of {n} with {other:?}"))),
        }
    }

    /// Waits, until `deadline` at most, until partition `partition` of
    /// `topic` (any of its partitions when `None`) has a serving leader: an
    /// election takes a moment after a leader's loss, and a client that
    /// cannot retry by itself (an AMQP publisher's message would be nacked)
    /// is better served by a late answer, as RabbitMQ's quorum queues hold
    /// publishes while they elect. Returns at once when one has (or the
    /// topic does not exist: the send reports it).
    async fn await_leader(
        &self,
        topic: &str,
        partition: Option<u32>,
        changes: &mut tokio::sync::watch::Receiver<u64>,
        deadline: tokio::time::Instant,
    ) {
        let has_leader = || {
            let Some(t) = self.broker.topic(topic) else { return true };
            let count = t.partitions().len() as u32;
            let mut parts = partition.map_or(0..count, |p| p..p + 1);
            parts.any(|p| self.broker.leadership(&TopicPartition::new(topic, p)) != Leadership::Unavailable)
        };
        if has_leader() {
            return;
        }
        let _ = tokio::time::timeout_at(deadline, async {
            while !has_leader() {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    pub(super) async fn serve_send(
        &self,
        partition: Option<u32>,
        extra: Vec<(String, String)>,
        messages: Vec<Message>,
    ) -> Reply {
        let partitioning = partition.map_or(Partitioning::Auto, Partitioning::Explicit);
        let extra: Vec<(&str, String)> = extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        match self.send_with(messages, partitioning, &extra).await {
            Ok(receipts) => Reply::Sent(
                receipts
                    .into_iter()
                    .map(|r| WireReceipt {
                        id: r.id,
                        partition: r.partition.partition,
                        offset: r.offset,
                        deliver_at: r.deliver_at,
                    })
                    .collect(),
            ),
            Err(e) => Reply::from_error(e),
        }
    }
}
