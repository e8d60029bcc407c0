//! Sending messages: partition choice, id assignment, immediate or
//! scheduled storage.

use std::sync::atomic::{AtomicU32, Ordering};

use fjord_broker::TopicPartition;
use fjord_log::batch::{BatchBuilder, NewRecord};

use crate::Messaging;
use crate::error::{MessagingError, Result};
use crate::message::{Message, headers, new_message_id};

/// Which partition a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioning {
    /// By message group when it has one (the same group always lands on
    /// the same partition, which is what makes FIFO possible), round robin
    /// otherwise.
    #[default]
    Auto,
    /// This partition (the client chose; RocketMQ producers pick a queue).
    Explicit(u32),
}

/// Where a sent message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The message id (assigned by the broker when the producer gave none).
    pub id: String,
    /// Target partition.
    pub partition: TopicPartition,
    /// Offset in the target partition; `None` for a scheduled message,
    /// which gets its offset when it is delivered.
    pub offset: Option<u64>,
    /// When a scheduled message becomes visible.
    pub deliver_at: Option<i64>,
}

/// Round-robin counter for messages without a group.
#[derive(Debug, Default)]
pub(crate) struct RoundRobin(AtomicU32);

/// Stable partition of a message group (FNV-1a, so it never changes
/// between releases).
pub fn partition_for_group(group: &str, partitions: u32) -> u32 {
    (fjord_log::key_hash(group.as_bytes()) % u64::from(partitions.max(1))) as u32
}

impl Messaging {
    /// Stores one message: immediately visible, or handed to the timer
    /// when it has a future delivery time. Returns once it is durable.
    pub async fn send(&self, msg: Message, partitioning: Partitioning) -> Result<SendReceipt> {
        Ok(self.send_batch(vec![msg], partitioning).await?.remove(0))
    }

    /// Stores messages for one topic. Immediate messages for the same
    /// partition are appended as one batch (atomically); scheduled ones go
    /// to the timer. Receipts are in input order.
    pub async fn send_batch(&self, msgs: Vec<Message>, partitioning: Partitioning) -> Result<Vec<SendReceipt>> {
        self.send_with(msgs, partitioning, &[]).await
    }

    /// [`Messaging::send_batch`] with extra system headers on every message
    /// (retry and dead-letter bookkeeping).
    pub(crate) async fn send_with(
        &self,
        msgs: Vec<Message>,
        partitioning: Partitioning,
        extra: &[(&str, String)],
    ) -> Result<Vec<SendReceipt>> {
        let Some(first) = msgs.first() else {
            return Err(MessagingError::InvalidRequest("nothing to send".into()));
        };
        let topic = first.topic.clone();
        if msgs.iter().any(|m| m.topic != topic) {
            return Err(MessagingError::InvalidRequest("a batch must be for one topic".into()));
        }
        let partitions = self.led_partitions(&topic).await?;
        let now = self.broker.clock().now_ms();
        let max_delay = self.config.max_delay.as_millis() as i64;
        let mut receipts = Vec::with_capacity(msgs.len());
        let mut immediate: Vec<(u32, Vec<(usize, NewRecord)>)> = Vec::new();
        let mut scheduled = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            m.validate()?;
            let p = self.route(m, partitioning, &partitions)?;
            let id = m.id.clone().unwrap_or_else(|| new_message_id(now));
            let deliver_at = m.delivery.deliver_at(now, max_delay)?;
            receipts.push(SendReceipt {
                id: id.clone(),
                partition: TopicPartition::new(&topic, p),
                offset: None,
                deliver_at,
            });
            match deliver_at {
                Some(at) => scheduled.push((i, self.timer_record(m, &id, at, p, extra))),
                None => match immediate.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, v)) => v.push((i, m.to_record(&id, None, extra))),
                    None => immediate.push((p, vec![(i, m.to_record(&id, None, extra))])),
                },
            }
        }
        if !scheduled.is_empty() {
            let recs: Vec<_> = scheduled.iter().map(|(_, r)| r.clone()).collect();
            self.schedule(recs).await?;
        }
        for (p, recs) in immediate {
            let tp = TopicPartition::new(&topic, p);
            let base = self.append_records(&tp, recs.iter().map(|(_, r)| r), now).await?;
            for (n, (i, _)) in recs.iter().enumerate() {
                receipts[*i].offset = Some(base + n as u64);
            }
        }
        Ok(receipts)
    }

    /// The record the timer stores: the message plus where it goes.
    /// The partition `m` goes to: the one asked for, or one of `led` (the
    /// partitions this node leads; every one on a single node) by message
    /// group or round robin.
    pub(crate) fn route(&self, m: &Message, partitioning: Partitioning, led: &[u32]) -> Result<u32> {
        Ok(match partitioning {
            Partitioning::Explicit(p) => {
                // Checked now: a scheduled message would otherwise fail only
                // when it is due.
                let exists = self.broker.topic(&m.topic).is_some_and(|t| p < t.partitions().len() as u32);
                if !exists {
                    let topic = m.topic.clone();
                    return Err(fjord_broker::BrokerError::UnknownPartition { topic, partition: p }.into());
                }
                p
            }
            Partitioning::Auto => {
                let n = led.len() as u32;
                if n == 0 {
                    // A cluster whose partitions of this topic are all led
                    // elsewhere: the client must send to another node.
                    return Err(fjord_broker::BrokerError::NotLeader {
                        tp: format!("{} (no partition led here)", m.topic),
                        leader: None,
                        leader_epoch: -1,
                    }
                    .into());
                }
                let i = match &m.group {
                    Some(g) => partition_for_group(g, n),
                    None => self.sends.0.fetch_add(1, Ordering::Relaxed) % n,
                };
                led[i as usize]
            }
        })
    }

    pub(crate) fn timer_record(
        &self,
        m: &Message,
        id: &str,
        at: i64,
        partition: u32,
        extra: &[(&str, String)],
    ) -> NewRecord {
        let mut h: Vec<(&str, String)> =
            vec![(headers::TIMER_TOPIC, m.topic.clone()), (headers::TIMER_PARTITION, partition.to_string())];
        h.extend(extra.iter().cloned());
        m.to_record(id, Some(at), &h)
    }

    /// The partitions of a topic this node leads (all of them alone),
    /// creating the topic when the broker auto-creates.
    pub(crate) async fn led_partitions(&self, topic: &str) -> Result<Vec<u32>> {
        self.broker.partition_or_create(&TopicPartition::new(topic, 0)).await?;
        if self.broker.topic(topic).is_none() {
            return Err(fjord_broker::BrokerError::UnknownTopic(topic.to_string()).into());
        }
        Ok(self.broker.led_partitions(topic))
    }

    /// Appends records as one batch; returns the first offset.
    pub(crate) async fn append_records<'a>(
        &self,
        tp: &TopicPartition,
        recs: impl IntoIterator<Item = &'a NewRecord>,
        now: i64,
    ) -> Result<u64> {
        let mut b = BatchBuilder::new(now);
        for r in recs {
            b.push(r);
        }
        let data = b.try_build().map_err(|e| MessagingError::InvalidMessage(e.to_string()))?;
        Ok(self.broker.produce(tp, data).await?.base_offset)
    }
}
