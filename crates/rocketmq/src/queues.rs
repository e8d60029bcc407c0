//! Queue ids are per broker in RocketMQ: a route lists, for each broker,
//! how many queues of a topic it serves, and clients address `(broker,
//! queue)`. In a Fjord cluster each node is broker `broker-<id>` and its
//! queues are the partitions it leads, numbered from 0 in partition order;
//! alone, a node leads every partition and queue `q` is partition `q`.

use fjord_broker::TopicPartition;
use fjord_rocketmq_codec::codes::response;

use crate::RocketMqGateway;
use crate::error::Reject;

impl RocketMqGateway {
    /// The partition behind queue `queue` of `topic` on this broker.
    pub(crate) fn partition_of(&self, topic: &str, queue: i32) -> Result<TopicPartition, Reject> {
        let q = u32::try_from(queue)
            .map_err(|_| Reject::new(response::SYSTEM_ERROR, format!("queueId {queue} is negative")))?;
        match self.broker().led_partition_at(topic, q) {
            Some(p) => Ok(TopicPartition::new(topic, p)),
            // Its route moved (a node joined or left): the client asks the
            // name server again and retries, as for any unavailable broker.
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

    /// The queue id of partition `tp` on this broker (-1: not led here).
    pub(crate) fn queue_of(&self, tp: &TopicPartition) -> i32 {
        self.broker().led_index_of(tp).map_or(-1, |q| q as i32)
    }
}
