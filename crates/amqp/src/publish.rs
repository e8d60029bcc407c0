//! The publisher of one channel: appends routed publishes in channel
//! order, in batches (whatever arrived while the previous batch was being
//! stored), then writes `basic.return` for unroutable mandatory messages
//! and, in confirm mode, `basic.ack`/`basic.nack` once every copy is
//! durable. Other methods of the channel wait for it with a fence, so a
//! publish is stored before anything the client sent after it.

use std::sync::Arc;

use fjord_amqp_codec::protocol::basic;
use fjord_amqp_codec::{AMQPClass, reply};
use fjord_messaging::{Message, Partitioning};
use tokio::sync::{mpsc, oneshot};

use crate::AmqpGateway;
use crate::channel::ChannelShared;
use crate::connection::method_frame;
use crate::deadletter::{QueueRef, Reason};
use crate::instrument;
use crate::mapping::{self, Published};
use crate::maxlen::{LengthLimits, Overflow};

/// Publishes taken into one batch at most.
const MAX_BATCH: usize = 512;
/// Body bytes appended to one topic in one call at most (a record batch
/// must stay under the topic's `max.message.bytes`).
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// One append: the batch indexes of its messages, the messages, and the
/// priority level (partition) they all go to.
type Call = (Vec<usize>, Vec<Message>, Option<u32>);

/// Where an append goes: topic, and priority level for priority queues.
type Target = (String, Option<u32>);

/// A routed publish.
#[derive(Debug)]
pub(crate) struct Routed {
    /// Confirm-mode delivery tag.
    pub(crate) confirm: Option<u64>,
    /// When a delayed-message exchange delivers it (ms since the epoch).
    pub(crate) deliver_at: Option<i64>,
    /// Topics of the queues it goes to.
    pub(crate) topics: Vec<String>,
    pub(crate) mandatory: bool,
    pub(crate) message: Published,
}

/// Work for the publisher.
#[derive(Debug)]
pub(crate) enum PubCmd {
    /// Store (and confirm) this.
    Publish(Box<Routed>),
    /// Answer once everything before is stored.
    Fence(oneshot::Sender<()>),
}

/// The publisher's loop; ends when the channel drops its sender.
pub(crate) async fn run(gw: Arc<AmqpGateway>, ch: Arc<ChannelShared>, mut rx: mpsc::Receiver<PubCmd>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut fences = Vec::new();
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                PubCmd::Publish(p) => batch.push(*p),
                PubCmd::Fence(f) => fences.push(f),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            store(&gw, &ch, batch).await;
        }
        for f in fences {
            let _ = f.send(());
        }
    }
}

async fn store(gw: &AmqpGateway, ch: &ChannelShared, batch: Vec<Routed>) {
    let mut failed = vec![false; batch.len()];
    let mut topics: Vec<&str> = Vec::new();
    for t in batch.iter().flat_map(|r| r.topics.iter()) {
        if !topics.contains(&t.as_str()) {
            topics.push(t);
        }
    }
    let mut limits = Limits::load(gw, &ch.vhost, &topics).await;
    // Per topic, in publish order, cut into calls of bounded size.
    let mut calls: Vec<(Target, Vec<usize>, Vec<Message>, usize)> = Vec::new();
    for (i, r) in batch.iter().enumerate() {
        for t in &r.topics {
            if !limits.admit(t, r.message.body.len() as u64) {
                // reject-publish(-dlx): this queue refuses it; confirms say nack.
                failed[i] = true;
                if let Some(q) = limits.dead_letter_refused(t) {
                    gw.dead_letter_published(&q, &r.message, Reason::Maxlen).await;
                }
                continue;
            }
            let mut m = mapping::to_message(&r.message, t);
            if let Some(at) = r.deliver_at {
                m.delivery = fjord_messaging::message::Delivery::At(at);
            }
            let size = m.body.len();
            let target = (t.clone(), limits.level(t, *r.message.properties.priority()));
            match calls.iter_mut().rev().find(|c| c.0 == target) {
                Some(c) if c.3 + size <= MAX_BATCH_BYTES => {
                    c.1.push(i);
                    c.2.push(m);
                    c.3 += size;
                }
                _ => calls.push((target, vec![i], vec![m], size)),
            }
        }
    }
    // Calls for one topic run in order; topics run concurrently.
    let mut by_topic: Vec<(String, Vec<Call>)> = Vec::new();
    for ((t, level), idx, msgs, _) in calls {
        match by_topic.iter_mut().find(|(x, _)| *x == t) {
            Some((_, v)) => v.push((idx, msgs, level)),
            None => by_topic.push((t, vec![(idx, msgs, level)])),
        }
    }
    let runs = by_topic.into_iter().map(|(topic, parts)| async move {
        let mut bad = Vec::new();
        for (idx, msgs, level) in parts {
            let partitioning = level.map_or(Partitioning::Auto, Partitioning::Explicit);
            // Stored by the queue's node, whichever node the client is on.
            if let Err(e) = gw.messaging.send_batch_to_leaders(msgs, partitioning).await {
                tracing::warn!(%topic, error = %e, "amqp publish could not be stored");
                bad.extend(idx);
            }
        }
        bad
    });
    for bad in futures_util::future::join_all(runs).await {
        for i in bad {
            failed[i] = true;
        }
    }
    // x-max-length with drop-head: the oldest go (dead-lettered).
    limits.drop_heads(gw).await;
    let routed = batch.iter().filter(|r| !r.topics.is_empty()).count() as u64;
    let returned = batch.iter().filter(|r| r.topics.is_empty() && r.mandatory).count() as u64;
    instrument::count("rabbitmq_global_messages_received_total", batch.len() as u64);
    instrument::count("rabbitmq_global_messages_routed_total", routed);
    instrument::count("rabbitmq_global_messages_unroutable_returned_total", returned);
    instrument::count("rabbitmq_global_messages_unroutable_dropped_total", batch.len() as u64 - routed - returned);
    let mut out = Vec::new();
    for r in &batch {
        if r.mandatory && r.topics.is_empty() {
            let ret = basic::Return {
                reply_code: reply::NO_ROUTE,
                reply_text: "NO_ROUTE".into(),
                exchange: r.message.exchange.as_str().into(),
                routing_key: r.message.routing_key.as_str().into(),
            };
            let m = AMQPClass::Basic(basic::AMQPMethod::Return(ret));
            if let Err(e) = fjord_amqp_codec::encode_content(
                ch.id,
                m,
                r.message.properties.clone(),
                &r.message.body,
                ch.frame_max,
                &mut out,
            ) {
                tracing::warn!(error = %e, "amqp: could not encode a basic.return");
            }
        }
    }
    let tags: Vec<(u64, bool)> = batch.iter().zip(&failed).filter_map(|(r, f)| r.confirm.map(|t| (t, *f))).collect();
    instrument::count("rabbitmq_global_messages_confirmed_total", tags.iter().filter(|(_, f)| !f).count() as u64);
    if let Some(&(last, _)) = tags.last() {
        if tags.iter().all(|(_, f)| !f) {
            let multiple = tags.len() > 1;
            let ack = basic::Ack { delivery_tag: last, multiple };
            out.extend(method_frame(ch.id, AMQPClass::Basic(basic::AMQPMethod::Ack(ack))));
        } else {
            for (tag, f) in tags {
                let m = if f {
                    basic::AMQPMethod::Nack(basic::Nack { delivery_tag: tag, multiple: false, requeue: false })
                } else {
                    basic::AMQPMethod::Ack(basic::Ack { delivery_tag: tag, multiple: false })
                };
                out.extend(method_frame(ch.id, AMQPClass::Basic(m)));
            }
        }
    }
    if !out.is_empty() {
        let _ = ch.out.send(out).await;
    }
}

/// `x-max-length`, `x-max-length-bytes` and `x-max-priority` of the
/// queues one batch goes to, looked up once per topic per batch.
struct Limits {
    queues: Vec<Known>,
}

/// A queue's length limits and what its ready part holds as admitted so
/// far (RabbitMQ counts ready messages and their body bytes).
struct Limit {
    queue: Arc<QueueRef>,
    max_len: Option<u64>,
    max_bytes: Option<u64>,
    overflow: Overflow,
    ready: u64,
    ready_bytes: u64,
}

impl Limit {
    /// RabbitMQ's `will_overflow`: whether one more message of `size` body
    /// bytes would take the ready part over a limit.
    fn would_overflow(&self, size: u64) -> bool {
        self.max_len.is_some_and(|m| self.ready + 1 > m) || self.max_bytes.is_some_and(|m| self.ready_bytes + size > m)
    }
}

/// What a batch needs to know of one topic's queue.
struct Known {
    topic: String,
    limit: Option<Limit>,
    /// The queue's arguments, when it is a priority queue.
    priority: Option<fjord_amqp_codec::FieldTable>,
}

impl Limits {
    /// Looks up the queues of `topics` in `vhost`, with the ready part of
    /// those that refuse publishes over a length limit (a drop-head queue
    /// takes every publish and is measured after, by `drop_heads`).
    async fn load(gw: &AmqpGateway, vhost: &str, topics: &[&str]) -> Limits {
        let snapshot = gw.model.snapshot();
        let mut queues = Vec::new();
        for topic in topics {
            let q = snapshot.get(vhost).and_then(|v| v.queues.values().find(|q| q.topic == *topic));
            let mut limit = None;
            if let Some((q, l)) = q.and_then(|q| LengthLimits::of(q).map(|l| (q, l))) {
                let (ready, sizes) = if l.overflow == Overflow::DropHead {
                    (0, None)
                } else {
                    crate::maxlen::ready_part(gw, topic, l.max_bytes.is_some()).await
                };
                let queue = Arc::new(QueueRef { vhost: vhost.to_string(), queue: q.clone() });
                let ready_bytes = sizes.map_or(0, |s| s.iter().sum());
                limit = Some(Limit {
                    queue,
                    max_len: l.max_len,
                    max_bytes: l.max_bytes,
                    overflow: l.overflow,
                    ready,
                    ready_bytes,
                });
            }
            let priority = q.filter(|q| crate::priority::levels(&q.arguments) > 1).map(|q| q.arguments.clone());
            queues.push(Known { topic: topic.to_string(), limit, priority });
        }
        Limits { queues }
    }

    fn known(&mut self, topic: &str) -> Option<&mut Known> {
        self.queues.iter_mut().find(|k| k.topic == topic)
    }

    /// The priority level (partition) of a message with `priority` in the
    /// queue of `topic`, if that is a priority queue.
    fn level(&mut self, topic: &str, priority: Option<u8>) -> Option<u32> {
        crate::priority::level(self.known(topic)?.priority.as_ref()?, priority)
    }

    /// Whether a message of `size` body bytes may go to `topic` (counting
    /// it if so).
    fn admit(&mut self, topic: &str, size: u64) -> bool {
        match self.known(topic).and_then(|k| k.limit.as_mut()) {
            Some(l) if l.overflow != Overflow::DropHead && l.would_overflow(size) => false,
            Some(l) => {
                l.ready += 1;
                l.ready_bytes += size;
                true
            }
            None => true,
        }
    }

    /// The queue to dead-letter a refused publish from (reject-publish-dlx).
    fn dead_letter_refused(&mut self, topic: &str) -> Option<Arc<QueueRef>> {
        match self.known(topic)?.limit.as_ref()? {
            l if l.overflow == Overflow::RejectPublishDlx => Some(l.queue.clone()),
            _ => None,
        }
    }

    /// Trims drop-head queues back within their limits, oldest first
    /// (dead-lettered with reason `maxlen`).
    async fn drop_heads(&mut self, gw: &AmqpGateway) {
        for Known { limit, .. } in &self.queues {
            let Some(l) = limit.as_ref().filter(|l| l.overflow == Overflow::DropHead) else { continue };
            let limits = crate::maxlen::HeadLimits { max_len: l.max_len, max_bytes: l.max_bytes };
            crate::maxlen::trim(gw, &l.queue, limits).await;
        }
    }
}
