//! Priority queues (`x-max-priority`): a queue's topic gets one partition
//! per priority level and a message goes to the partition of its
//! `priority` property; consumers take from the highest non-empty level
//! first. Levels are capped at [`MAX_LEVELS`]: with `x-max-priority` above
//! 9, priorities share levels proportionally (RabbitMQ, too, advises 1-10).
//! Within a level, order is publish order.

use std::time::Duration;

use fjord_amqp_codec::FieldTable;
use fjord_messaging::{PopRequest, Popped};

use crate::AmqpGateway;
use crate::model::{AMQP_GROUP, int_arg};

/// Most partitions (levels) a priority queue gets.
pub const MAX_LEVELS: u32 = 10;

/// How many levels (partitions) a queue with these arguments has: 1 for a
/// plain queue.
pub fn levels(args: &FieldTable) -> u32 {
    match int_arg(args, "x-max-priority") {
        Some(max) if max > 0 => (max.min(255) as u32).min(MAX_LEVELS - 1) + 1,
        _ => 1,
    }
}

/// The level (partition) of a message with `priority` in a queue with
/// these arguments; `None` for a plain queue.
pub fn level(args: &FieldTable, priority: Option<u8>) -> Option<u32> {
    let max = int_arg(args, "x-max-priority").filter(|m| *m > 0)?.min(255) as u32;
    let levels = levels(args);
    let p = u32::from(priority.unwrap_or(0)).min(max);
    Some(p * (levels - 1) / max)
}

/// Pops up to `max` messages of a queue's topic: for a priority queue from
/// its highest non-empty level, otherwise from any partition; waits up to
/// `wait` when there is nothing.
pub(crate) async fn pop(
    gw: &AmqpGateway,
    topic: &str,
    args: &FieldTable,
    max: usize,
    wait: Duration,
) -> fjord_messaging::Result<Vec<Popped>> {
    let mut req = PopRequest::new(AMQP_GROUP, topic, max);
    req.invisible = gw.config.consumer_timeout;
    // Every unacked delivery goes back to its queue after a restart, so a
    // pop that did not reach the disk costs nothing: no fsync per pop.
    req.durable = false;
    let levels = levels(args);
    if levels > 1 {
        for p in (0..levels).rev() {
            let r = PopRequest { partition: Some(p), ..req.clone() };
            let got = gw.messaging.pop_at_leader(r).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }
    req.wait = wait;
    // From the queue's node, wherever the client is.
    gw.messaging.pop_at_leader(req).await
}

#[cfg(test)]
mod tests {
    use fjord_amqp_codec::AMQPValue;

    use super::*;

    fn args(max: i64) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("x-max-priority".into(), AMQPValue::LongLongInt(max));
        t
    }

    #[test]
    fn levels_and_buckets() {
        assert_eq!(levels(&FieldTable::default()), 1);
        assert_eq!(level(&FieldTable::default(), Some(5)), None);
        assert_eq!(levels(&args(5)), 6);
        assert_eq!((0..=7).map(|p| level(&args(5), Some(p)).unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5, 5, 5]);
        assert_eq!(level(&args(5), None), Some(0));
        assert_eq!(levels(&args(255)), 10);
        assert_eq!(level(&args(255), Some(255)), Some(9));
        assert_eq!(level(&args(255), Some(0)), Some(0));
        assert_eq!(level(&args(255), Some(128)), Some(4));
    }
}
