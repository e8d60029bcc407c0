//! Consumers of a queue on other nodes, known to the queue's node: a
//! consumer whose queue another node leads joins it there (service
//! [`SERVICE`]) and leaves it when it ends, so the queue's node counts
//! every consumer of the cluster — for exclusive consumers, declare-ok and
//! management counts, `queue.delete if-unused` and auto-delete, which the
//! queue's node alone decides (when the last consumer anywhere leaves).
//!
//! Entries of a node that is lost (fenced, removed) are dropped by the
//! queue's node, and a node that starts again tells the others to drop
//! what its earlier run had joined; either may auto-delete a queue.
//! Consumer priorities and single-active-consumer still rank only the
//! consumers of one node.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::AmqpGateway;
use crate::consumer::Consumer;
use crate::exception::{AmqpException, MethodResult};

/// The service's name.
pub(crate) const SERVICE: &str = "amqp.consumers";

/// How long a consume waits for an unreachable queue node's successor
/// (messaging's sends wait as long for a partition's new leader).
const FAILOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
enum Call {
    Join {
        topic: String,
        id: u64,
        exclusive: bool,
    },
    Leave {
        topic: String,
        id: u64,
    },
    Count {
        topic: String,
    },
    /// The calling node started again: drop what its earlier run joined.
    Reset,
}

#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Joined,
    /// Exclusive use by another consumer (or others present for an
    /// exclusive one).
    Refused,
    Done,
    Count(u64),
}

impl AmqpGateway {
    /// Registers the service on this node's broker.
    pub(crate) fn register_consumer_service(self: &Arc<Self>) {
        let me: Weak<AmqpGateway> = Arc::downgrade(self);
        self.messaging.broker().register_service(
            SERVICE,
            Arc::new(move |caller: i32, payload: Bytes| {
                let me = me.clone();
                Box::pin(async move {
                    let gw = me.upgrade().ok_or_else(|| "shutting down".to_string())?;
                    let call: Call = serde_json::from_slice(&payload).map_err(|e| format!("malformed call: {e}"))?;
                    let answer = gw.serve_consumer_call(caller, call).await;
                    serde_json::to_vec(&answer).map(Bytes::from).map_err(|e| e.to_string())
                })
            }),
        );
    }

    async fn serve_consumer_call(&self, caller: i32, call: Call) -> Answer {
        match call {
            Call::Join { topic, id, exclusive } => {
                if self.consumers.join_remote(&topic, caller, id, exclusive) {
                    Answer::Joined
                } else {
                    Answer::Refused
                }
            }
            Call::Leave { topic, id } => {
                self.consumers.leave_remote(&topic, caller, id);
                self.auto_delete_if_unused(&topic).await;
                Answer::Done
            }
            Call::Count { topic } => Answer::Count(self.consumers.count(&topic) as u64),
            Call::Reset => {
                for topic in self.consumers.drop_remote_node(caller) {
                    self.auto_delete_if_unused(&topic).await;
                }
                Answer::Done
            }
        }
    }

    async fn call_consumers(&self, node: i32, call: &Call) -> Result<Answer, String> {
        let payload = serde_json::to_vec(call).map_err(|e| e.to_string())?;
        let reply = self.messaging.broker().call_service(node, SERVICE, Bytes::from(payload)).await;
        let reply = reply.map_err(|e| e.to_string())?;
        serde_json::from_slice(&reply).map_err(|e| format!("node {node} answered with: {e}"))
    }

    /// Admits a new consumer of a queue another node leads: joins it there
    /// (exclusivity is checked against every consumer of the cluster). A
    /// node out of reach is waited out while the queue fails over (up to
    /// [`FAILOVER_WAIT`]), and the join goes to its new node — as a quorum
    /// queue's consume waits for its new leader; then RabbitMQ's answer, a
    /// connection error 541.
    pub(crate) async fn join_at_queue_node(
        &self,
        mut node: i32,
        c: &Consumer,
        queue: &str,
        vhost: &str,
    ) -> MethodResult<()> {
        let call = Call::Join { topic: c.topic.clone(), id: c.id, exclusive: c.exclusive };
        let deadline = tokio::time::Instant::now() + FAILOVER_WAIT;
        loop {
            let e = match self.call_consumers(node, &call).await {
                Ok(Answer::Joined) => return Ok(()),
                Ok(Answer::Refused) => {
                    return Err(AmqpException::access_refused(format!(
                        "queue '{queue}' in vhost '{vhost}' in exclusive use"
                    )));
                }
                Ok(other) => {
                    return Err(AmqpException::internal_error(format!("node {node} answered a join with {other:?}")));
                }
                Err(e) => e,
            };
            // Polled: a failover takes moments, and this wait is bounded.
            loop {
                if self.leads(&c.topic) {
                    return Ok(());
                }
                match self.queue_node(&c.topic) {
                    Some(other) if other != node => {
                        node = other;
                        break;
                    }
                    _ if tokio::time::Instant::now() >= deadline => {
                        return Err(AmqpException::internal_error(format!(
                            "timed out consuming from queue '{queue}' in vhost '{vhost}': its node {node} is unreachable: {e}"
                        )));
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        }
    }

    /// A consumer ended (cancelled, its channel closed, its queue gone):
    /// it leaves its queue's node, which auto-deletes the queue once the
    /// last consumer anywhere left. Runs once per consumer.
    pub(crate) async fn consumer_ended(&self, c: &Arc<Consumer>) {
        if c.left.swap(true, Ordering::AcqRel) {
            return;
        }
        self.consumers.remove(c);
        match self.queue_node(&c.topic) {
            Some(node) => {
                let call = Call::Leave { topic: c.topic.clone(), id: c.id };
                if let Err(e) = self.call_consumers(node, &call).await {
                    // Its node drops it when it finds this node gone or
                    // restarted; until then it counts one consumer too many.
                    tracing::warn!(node, topic = %c.topic, error = %e, "amqp: could not leave a queue's node");
                }
            }
            None => self.auto_delete_if_unused(&c.topic).await,
        }
    }

    /// Consumers of a queue in the whole cluster (asked at its node).
    pub(crate) async fn consumer_count(&self, topic: &str) -> u64 {
        let Some(node) = self.queue_node(topic) else { return self.consumers.count(topic) as u64 };
        match self.call_consumers(node, &Call::Count { topic: topic.to_string() }).await {
            Ok(Answer::Count(n)) => n,
            other => {
                tracing::warn!(node, %topic, answer = ?other, "amqp: could not count a queue's consumers at its node");
                self.consumers.count(topic) as u64
            }
        }
    }

    /// Deletes an auto-delete queue of `topic` that has no consumer left.
    async fn auto_delete_if_unused(&self, topic: &str) {
        if self.consumers.count(topic) > 0 {
            return;
        }
        let snapshot = self.model.snapshot();
        for (vhost, v) in snapshot.iter() {
            if let Some(q) = v.queues.values().find(|q| q.topic == topic && q.auto_delete)
                && let Err(e) = self.remove_queue(vhost, q).await
            {
                tracing::warn!(queue = %q.name, error = %e, "amqp: could not auto-delete a queue");
            }
        }
    }

    /// Drops the consumers of nodes that no longer serve (fenced or
    /// removed): run by the expiry loop.
    pub(crate) async fn drop_lost_consumers(&self) {
        let Some(placement) = self.messaging.broker().placement() else { return };
        for node in self.consumers.remote_nodes() {
            if placement.node(node).is_none() {
                for topic in self.consumers.drop_remote_node(node) {
                    self.auto_delete_if_unused(&topic).await;
                }
            }
        }
    }

    /// Tells every other node that this run of this node has no consumers
    /// yet (what its earlier run joined is dropped there).
    pub(crate) async fn announce_consumer_reset(&self) {
        let b = self.messaging.broker();
        let me = b.config().node_id;
        let Some(placement) = b.placement() else { return };
        for n in placement.nodes.iter().filter(|n| n.node_id != me) {
            if let Err(e) = self.call_consumers(n.node_id, &Call::Reset).await {
                tracing::debug!(node = n.node_id, error = %e, "amqp: consumer reset not delivered");
            }
        }
    }
}
