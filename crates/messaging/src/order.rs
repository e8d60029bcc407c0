//! Ordered consumption: a partition consumed in order is locked to one
//! consumer of the group at a time. Locks expire when not renewed within
//! the TTL, so a dead consumer's partitions move on (RocketMQ's
//! `lockBatchMQ`: clients renew every 20 s, locks last 60 s).
//!
//! Locks live in memory: after a broker restart clients simply lock again
//! at their next renewal.

use std::collections::HashMap;
use std::time::Duration;

use fjord_broker::TopicPartition;
use parking_lot::Mutex;

use crate::Messaging;

#[derive(Debug)]
pub(crate) struct PartitionLocks {
    ttl: Duration,
    held: Mutex<HashMap<(String, TopicPartition), (String, i64)>>,
}

impl PartitionLocks {
    pub(crate) fn new(ttl: Duration) -> Self {
        PartitionLocks { ttl, held: Default::default() }
    }
}

impl Messaging {
    /// Locks (or renews) partitions for `client` in `group`; returns those
    /// it now holds. A partition held by another live client is not granted.
    pub fn lock_partitions(&self, group: &str, client: &str, partitions: &[TopicPartition]) -> Vec<TopicPartition> {
        let now = self.broker.clock().now_ms();
        let ttl = self.locks.ttl.as_millis() as i64;
        let mut held = self.locks.held.lock();
        let mut granted = Vec::new();
        for tp in partitions {
            let key = (group.to_string(), tp.clone());
            let free = match held.get(&key) {
                Some((owner, expires)) => owner == client || *expires <= now,
                None => true,
            };
            if free {
                held.insert(key, (client.to_string(), now + ttl));
                granted.push(tp.clone());
            }
        }
        granted
    }

    /// Releases the client's locks on these partitions.
    pub fn unlock_partitions(&self, group: &str, client: &str, partitions: &[TopicPartition]) {
        let mut held = self.locks.held.lock();
        for tp in partitions {
            let key = (group.to_string(), tp.clone());
            if held.get(&key).is_some_and(|(owner, _)| owner == client) {
                held.remove(&key);
            }
        }
    }

    /// The live holder of a partition's lock.
    pub fn lock_holder(&self, group: &str, tp: &TopicPartition) -> Option<String> {
        let now = self.broker.clock().now_ms();
        self.locks
            .held
            .lock()
            .get(&(group.to_string(), tp.clone()))
            .filter(|(_, expires)| *expires > now)
            .map(|(owner, _)| owner.clone())
    }
}
