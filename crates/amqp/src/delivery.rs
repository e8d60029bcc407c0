//! Consumption on a channel: basic.consume (starting a [`crate::consumer`]
//! task), basic.get, and settling deliveries — ack, requeue (with
//! `x-delivery-limit`), or reject (dead-letter).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fjord_amqp_codec::AMQPClass;
use fjord_amqp_codec::protocol::basic;
use fjord_messaging::{ConsumeModel, ReceiptHandle, StoredMessage};

use crate::connection::{Conn, method_frame};
use crate::consumer::{self, Consumer};
use crate::deadletter::{QueueRef, Reason};
use crate::exception::{AmqpException, MethodResult};
use crate::mapping;
use crate::model::AMQP_GROUP;

/// Messages to dead-letter, grouped by the queue they leave.
type ByQueue = Vec<(Arc<QueueRef>, Vec<(StoredMessage, ReceiptHandle)>)>;

fn ok(class: AMQPClass) -> MethodResult<Option<AMQPClass>> {
    Ok(Some(class))
}

/// An unacked delivery.
#[derive(Debug)]
pub(crate) struct Unacked {
    /// The pop it came from; `None` for a stream queue's delivery (read,
    /// not popped: settling it only returns credit).
    pub(crate) receipt: Option<ReceiptHandle>,
    pub(crate) consumer: Option<Arc<Consumer>>,
    /// Where it came from and what it was, for dead-lettering.
    pub(crate) queue: Arc<QueueRef>,
    pub(crate) message: Arc<StoredMessage>,
    /// Which delivery of the message this is (1 = first).
    pub(crate) attempt: u32,
}

/// Returns deliveries to their queues; one returned more often than its
/// queue's `x-delivery-limit` allows is dead-lettered instead (RabbitMQ's
/// quorum queues count every return).
pub(crate) async fn requeue(gw: &crate::AmqpGateway, taken: Vec<Unacked>) {
    let (over, back): (Vec<Unacked>, Vec<Unacked>) = taken.into_iter().partition(|u| {
        crate::model::int_arg(&u.queue.queue.arguments, "x-delivery-limit").is_some_and(|l| i64::from(u.attempt) > l)
    });
    let back: Vec<ReceiptHandle> = back.into_iter().filter_map(|u| u.receipt).collect();
    if !back.is_empty()
        && let Err(e) = gw.messaging.release_many_at_leaders(AMQP_GROUP, &ConsumeModel::Clustering, &back).await
    {
        tracing::warn!(error = %e, "amqp: could not requeue deliveries");
    }
    for (q, msgs) in by_queue(over) {
        gw.dead_letter(&q, msgs, Reason::DeliveryLimit).await;
    }
}

/// Deliveries grouped by the queue they came from (each queue has its own
/// dead-letter settings).
fn by_queue(taken: Vec<Unacked>) -> ByQueue {
    let mut out: ByQueue = Vec::new();
    for u in taken {
        let Some(receipt) = u.receipt else { continue };
        let m = ((*u.message).clone(), receipt);
        match out.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, v)) => v.push(m),
            None => out.push((u.queue, vec![m])),
        }
    }
    out
}

/// What becomes of settled deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// basic.ack: done.
    Ack,
    /// nack/reject with requeue: back to the queue.
    Requeue,
    /// nack/reject without requeue: dead-lettered or dropped.
    Reject,
}

impl From<Option<bool>> for Settle {
    /// `None` is an ack; `Some(requeue)` a nack or reject.
    fn from(requeue: Option<bool>) -> Settle {
        match requeue {
            None => Settle::Ack,
            Some(true) => Settle::Requeue,
            Some(false) => Settle::Reject,
        }
    }
}

impl Conn {
    pub(crate) async fn consume(&mut self, id: u16, vhost: &str, c: basic::Consume) -> MethodResult<Option<AMQPClass>> {
        let snapshot = self.gw.model.snapshot();
        let v = snapshot.get(vhost).ok_or_else(|| AmqpException::not_allowed("no such vhost"))?;
        let q = self
            .gw
            .find_queue(v, vhost, c.queue.as_str())
            .ok_or_else(|| AmqpException::not_found(format!("no queue '{}' in vhost '{vhost}'", c.queue)))?;
        self.gw.streamed_here(vhost, &q)?;
        if q.owner.is_some_and(|o| o != self.id) {
            return Err(AmqpException::resource_locked(format!("queue '{}' in vhost '{vhost}' is exclusive", q.name)));
        }
        let queue_node = self.gw.queue_node(&q.topic);
        // A queue led elsewhere checks exclusivity at its node (on join).
        if queue_node.is_none()
            && (self.gw.consumers.has_exclusive(&q.topic) || (c.exclusive && self.gw.consumers.count(&q.topic) > 0))
        {
            return Err(AmqpException::access_refused(format!(
                "queue '{}' in vhost '{vhost}' in exclusive use",
                q.name
            )));
        }
        let cancel_notify = self.cancel_notify;
        let gw = self.gw.clone();
        let ch = self.channel(id)?;
        let tag = if c.consumer_tag.as_str().is_empty() {
            format!("amq.ctag-{:016x}", crate::ops::rand_u64())
        } else {
            c.consumer_tag.to_string()
        };
        if ch.consumers.contains_key(&tag) {
            return Err(AmqpException::not_allowed(format!("attempt to reuse consumer tag '{tag}'")));
        }
        let stream = if crate::stream::is_stream(&q) {
            // As RabbitMQ: stream consumers ack (acks return credit) and
            // must have a prefetch.
            if c.no_ack {
                return Err(AmqpException::precondition_failed("stream queues do not support auto-ack consumers"));
            }
            if ch.prefetch == 0 && ch.shared.state.lock().global_prefetch == 0 {
                return Err(AmqpException::precondition_failed("stream consumers need a basic.qos prefetch count"));
            }
            Some(crate::stream::start_of(&c.arguments, gw.messaging.broker().clock().now_ms())?)
        } else {
            None
        };
        gw.touch(&q.topic);
        let queue = Arc::new(QueueRef { vhost: vhost.to_string(), queue: q });
        let (queue_name, consumer_id) = (queue.queue.name.clone(), gw.next_id());
        let mut consumer =
            Consumer::new(consumer_id, tag.clone(), queue, c.no_ack, c.exclusive, ch.prefetch, cancel_notify);
        consumer.priority = match c.arguments.inner().get("x-priority") {
            None => 0,
            Some(_) => crate::model::int_arg(&c.arguments, "x-priority").ok_or_else(|| {
                AmqpException::precondition_failed("invalid arg 'x-priority': an integer is expected")
            })?,
        };
        let consumer = Arc::new(consumer);
        if let Some(node) = queue_node {
            gw.join_at_queue_node(node, &consumer, &queue_name, vhost).await?;
        }
        let ch = self.channel(id)?;
        gw.consumers.add(&consumer, &ch.shared);
        if !c.nowait {
            let reply = basic::ConsumeOk { consumer_tag: tag.as_str().into() };
            let _ = ch.shared.out.send(method_frame(id, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(reply)))).await;
        }
        let task = match stream {
            Some(start) => tokio::spawn(crate::stream::run(gw, ch.shared.clone(), consumer.clone(), start)),
            None => tokio::spawn(consumer::run(gw, ch.shared.clone(), consumer.clone())),
        };
        ch.consumers.insert(tag, (consumer, task));
        Ok(None)
    }

    pub(crate) async fn get(&mut self, id: u16, vhost: &str, g: basic::Get) -> MethodResult<Option<AMQPClass>> {
        let snapshot = self.gw.model.snapshot();
        let v = snapshot.get(vhost).ok_or_else(|| AmqpException::not_allowed("no such vhost"))?;
        let q = self
            .gw
            .find_queue(v, vhost, g.queue.as_str())
            .ok_or_else(|| AmqpException::not_found(format!("no queue '{}' in vhost '{vhost}'", g.queue)))?;
        if crate::stream::is_stream(&q) {
            // As RabbitMQ: a stream is read by consumers with an offset.
            return Err(AmqpException::not_implemented("basic.get not supported by stream queues"));
        }
        if q.owner.is_some_and(|o| o != self.id) {
            return Err(AmqpException::resource_locked(format!("queue '{}' in vhost '{vhost}' is exclusive", q.name)));
        }
        self.gw.touch(&q.topic);
        let ttl = crate::model::int_arg(&q.arguments, "x-message-ttl");
        let limit = crate::model::int_arg(&q.arguments, "x-delivery-limit");
        let queue = Arc::new(QueueRef { vhost: vhost.to_string(), queue: q.clone() });
        let internal = |e: fjord_messaging::MessagingError| AmqpException::internal_error(e.to_string());
        let model = ConsumeModel::Clustering;
        loop {
            let popped = pop_while_moving(&self.gw, &q.topic, &q.arguments).await;
            let Some(p) = popped.map_err(internal)?.pop() else {
                return ok(AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})));
            };
            let now = self.gw.messaging.broker().clock().now_ms();
            if mapping::expires_at(&p.message, ttl).is_some_and(|at| at <= now) {
                self.gw.dead_letter(&queue, vec![(p.message, p.receipt)], Reason::Expired).await;
                continue;
            }
            if limit.is_some_and(|l| i64::from(p.attempt) > l.saturating_add(1)) {
                self.gw.dead_letter(&queue, vec![(p.message, p.receipt)], Reason::DeliveryLimit).await;
                continue;
            }
            let message = Arc::new(p.message);
            let ch = self.channel(id)?;
            let unacked = (!g.no_ack).then(|| Unacked {
                receipt: Some(p.receipt.clone()),
                consumer: None,
                queue: queue.clone(),
                message: message.clone(),
                attempt: p.attempt,
            });
            let tag = consumer::register(&ch.shared, unacked);
            let (ready, _) = self.gw.depth(&q.topic).await;
            let (exchange, routing_key, props) = mapping::from_stored(&message);
            let get_ok = basic::GetOk {
                delivery_tag: tag,
                redelivered: p.attempt > 1,
                exchange: exchange.into(),
                routing_key: routing_key.into(),
                message_count: u32::try_from(ready).unwrap_or(u32::MAX),
            };
            let mut buf = Vec::new();
            let body = message.body.as_deref().unwrap_or_default();
            let m = AMQPClass::Basic(basic::AMQPMethod::GetOk(get_ok));
            fjord_amqp_codec::encode_content(id, m, props, body, self.frame_max, &mut buf)
                .map_err(|e| AmqpException::internal_error(e.to_string()))?;
            let _ = self.out.send(buf).await;
            crate::instrument::count("rabbitmq_global_messages_delivered_total", 1);
            crate::instrument::count("rabbitmq_global_messages_redelivered_total", u64::from(p.attempt > 1));
            if g.no_ack {
                // The message is the client's now: an ack that fails (its
                // queue still moving after the settle's wait) is logged,
                // not a reason to close the connection; the message comes
                // back after `consumer_timeout` (at least once).
                let one = std::slice::from_ref(&p.receipt);
                let settled = match self.gw.messaging.ack_many_at_leaders(AMQP_GROUP, &model, one, true).await {
                    Ok(mut r) => r.pop().unwrap_or(Ok(())),
                    Err(e) => Err(e),
                };
                if let Err(e) = settled {
                    tracing::warn!(queue = %q.name, error = %e, "amqp: a no-ack basic.get's message could not be settled");
                }
            }
            return Ok(None);
        }
    }

    /// basic.ack (`requeue` None), basic.nack / basic.reject (requeue or
    /// drop). In tx mode the settlement waits for commit.
    pub(crate) async fn settle(
        &mut self,
        id: u16,
        tag: u64,
        multiple: bool,
        requeue: Option<bool>,
    ) -> MethodResult<Option<AMQPClass>> {
        let ch = self.channel(id)?;
        if let Some((_, acks)) = ch.tx.as_mut() {
            let how = Settle::from(requeue);
            if multiple {
                let tags: Vec<u64> = ch.shared.state.lock().unacked.range(..=tag).map(|(t, _)| *t).collect();
                acks.extend(tags.into_iter().map(|t| (t, how)));
            } else {
                acks.push((tag, how));
            }
            return Ok(None);
        }
        self.settle_now(id, tag, multiple, Settle::from(requeue)).await?;
        Ok(None)
    }

    /// Settles now: acks, requeues, or rejects (dead-letters, or drops
    /// without a dead-letter exchange).
    pub(crate) async fn settle_now(&mut self, id: u16, tag: u64, multiple: bool, action: Settle) -> MethodResult<()> {
        let ch = self.channel(id)?;
        let taken: Vec<Unacked> = {
            let mut st = ch.shared.state.lock();
            if multiple {
                let keys: Vec<u64> = st.unacked.range(..=tag).map(|(t, _)| *t).collect();
                if tag != 0 && keys.is_empty() {
                    return Err(AmqpException::precondition_failed(format!("unknown delivery tag {tag}")));
                }
                keys.into_iter().filter_map(|k| st.unacked.remove(&k)).collect()
            } else {
                match st.unacked.remove(&tag) {
                    Some(u) => vec![u],
                    None => return Err(AmqpException::precondition_failed(format!("unknown delivery tag {tag}"))),
                }
            }
        };
        for u in &taken {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_sub(1, Ordering::AcqRel);
            }
        }
        ch.shared.credit.notify_waiters();
        let gw = self.gw.clone();
        // Settlements need no answer: their durability wait runs off the
        // read loop (later synchronous methods wait for them: `fence`).
        let ch = self.channel(id)?;
        ch.settling.retain(|s| !s.is_finished());
        ch.settling.push(tokio::spawn(async move {
            let model = ConsumeModel::Clustering;
            match action {
                Settle::Requeue => requeue(&gw, taken).await,
                Settle::Ack => {
                    crate::instrument::count("rabbitmq_global_messages_acknowledged_total", taken.len() as u64);
                    let receipts: Vec<ReceiptHandle> = taken.into_iter().filter_map(|u| u.receipt).collect();
                    // basic.ack has no answer to wait for: a machine crash
                    // within the next sync (a second) redelivers these.
                    if let Err(e) = gw.messaging.ack_many_at_leaders(AMQP_GROUP, &model, &receipts, false).await {
                        tracing::warn!(error = %e, "amqp: could not settle deliveries");
                    }
                }
                Settle::Reject => {
                    for (q, msgs) in by_queue(taken) {
                        gw.dead_letter(&q, msgs, Reason::Rejected).await;
                    }
                }
            }
        }));
        Ok(())
    }
}

/// How long a basic.get waits for its queue to be served again while it
/// moves (a leader change, a node lost), as a quorum queue's get waits for
/// its new leader.
const GET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One message of `topic` for basic.get; a pop failing because the queue
/// or its pop shard is moving is made again for up to [`GET_WAIT`]
/// ([`fjord_messaging::moving`]). A pop whose outcome was unknown may have
/// taken a message: it comes back after `consumer_timeout` (at least
/// once).
async fn pop_while_moving(
    gw: &crate::AmqpGateway,
    topic: &str,
    args: &fjord_amqp_codec::FieldTable,
) -> fjord_messaging::Result<Vec<fjord_messaging::Popped>> {
    let wait = fjord_messaging::moving::MoveWait::new("an amqp basic.get", GET_WAIT);
    loop {
        match crate::priority::pop(gw, topic, args, 1, std::time::Duration::ZERO).await {
            Err(e) if e.moving() => wait.again(e).await?,
            r => return r,
        }
    }
}
