//! Queue ids are per broker in RocketMQ: a route lists, for each broker,
//! how many queues of a topic it serves, and clients address `(broker,
//! queue)` — a request names only the topic and the queue id, the broker
//! being the connection's. In a Fjord cluster each node is broker
//! `broker-<id>`, and its queue ids must name the same partition for as long
//! as clients may hold a route: a push consumer keeps its position per
//! queue across route changes, so a queue that came to name another
//! partition after a leader change had the consumer read that partition
//! from the other one's position, skipping messages (the fault-injection
//! checker's RocketMQ workload found it).
//!
//! So a node numbers *every* partition of a topic, leaders or not
//! ([`fjord_broker::Placement::queue_order`]): first those it is the
//! preferred leader of — its write queues (`writeQueueNums`), where
//! producers send — then all the others, read-only. A queue is active on
//! the node leading its partition and idle elsewhere: a pull there waits
//! (long polling) and answers "no new message" with the group's committed
//! progress as the next offset, and offset updates through it are
//! ignored, so an idle queue neither delivers nor moves the group's
//! progress back. A send to a write queue whose partition is led by
//! another node (after a failover) is stored by that node. Alone, a node
//! leads every partition and queue `q` is partition `q`.

use fjord_broker::{Leadership, TopicPartition};
use fjord_rocketmq_codec::codes::response;

use crate::RocketMqGateway;
use crate::error::Reject;

impl RocketMqGateway {
    /// The partition behind queue `queue` of `topic` on this broker.
    pub(crate) fn partition_of(&self, topic: &str, queue: i32) -> Result<TopicPartition, Reject> {
        let q = u32::try_from(queue)
            .map_err(|_| Reject::new(response::SYSTEM_ERROR, format!("queueId {queue} is negative")))?;
        if self.broker().placement().is_none() {
            // Alone: the caller's lookup reports a partition that does not
            // exist.
            return Ok(TopicPartition::new(topic, q));
        }
        match self.broker().queue_order(topic).0.get(q as usize) {
            Some(p) => Ok(TopicPartition::new(topic, *p)),
            // A route of before the topic had as many partitions: the
            // client asks the name server again and retries.
            None => Err(Reject::new(
                response::SERVICE_NOT_AVAILABLE,
                format!("queueId {queue} of topic {topic} is not on {}", self.config.broker_name),
            )),
        }
    }

    /// The queue id of a stored message on this broker.
    pub(crate) fn queue_of_message(&self, m: &fjord_messaging::StoredMessage) -> i32 {
        self.queue_of(&TopicPartition::new(&m.topic, m.partition))
    }

    /// The queue id of partition `tp` on this broker (-1: no such partition).
    pub(crate) fn queue_of(&self, tp: &TopicPartition) -> i32 {
        if self.broker().placement().is_none() {
            return tp.partition as i32;
        }
        self.broker().queue_order(&tp.topic).0.iter().position(|p| *p == tp.partition).map_or(-1, |q| q as i32)
    }

    /// How many of `topic`'s queues on this broker take sends (those it is
    /// the preferred leader of; alone, all).
    pub(crate) fn write_queues(&self, topic: &str) -> u32 {
        self.broker().queue_order(topic).1 as u32
    }

    /// Whether `tp`'s queue is active here: this node leads the partition
    /// (alone, always).
    pub(crate) fn active(&self, tp: &TopicPartition) -> bool {
        self.broker().placement().is_none() || matches!(self.broker().leadership(tp), Leadership::Local)
    }
}
