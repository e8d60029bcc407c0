//! Push consumers (basic.consume): one task per consumer pops from its
//! queue's topic as long as its prefetch (and the channel's) allows and
//! writes basic.deliver frames. Every delivery is recorded in the
//! channel's unacked table before it is written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fjord_amqp_codec::protocol::basic;
use fjord_amqp_codec::{AMQPClass, encode_content};
use fjord_messaging::{ConsumeModel, Popped, ReceiptHandle};
use parking_lot::Mutex;

use crate::AmqpGateway;
use crate::channel::ChannelShared;
use crate::deadletter::{QueueRef, Reason};
use crate::delivery::Unacked;
use crate::mapping;
use crate::model::{AMQP_GROUP, int_arg};

/// Most messages one pop asks for.
const MAX_BATCH: u32 = 256;
/// How long one pop waits for messages (a cancel takes effect within it).
const POLL: Duration = Duration::from_millis(500);
/// How often a consumer outranked by a higher `x-priority` looks again.
const OUTRANKED_POLL: Duration = Duration::from_millis(20);

/// One basic.consume.
#[derive(Debug)]
pub(crate) struct Consumer {
    /// Unique in the cluster (a connection-style id).
    pub(crate) id: u64,
    pub(crate) tag: String,
    pub(crate) topic: String,
    pub(crate) no_ack: bool,
    pub(crate) exclusive: bool,
    /// Per-consumer prefetch (0 = unlimited).
    pub(crate) prefetch: u32,
    /// The queue's `x-message-ttl`.
    pub(crate) queue_ttl: Option<i64>,
    /// The queue's `x-delivery-limit`.
    pub(crate) delivery_limit: Option<i64>,
    /// The queue, for dead-lettering.
    pub(crate) queue: Arc<QueueRef>,
    pub(crate) unacked: AtomicU32,
    /// Held while deliveries are written; `false` once cancelled, so no
    /// delivery follows cancel-ok.
    pub(crate) active: tokio::sync::Mutex<bool>,
    stop: AtomicBool,
    /// The queue went away: tell the client (basic.cancel from the server).
    server_cancelled: AtomicBool,
    /// The client understands a server-sent basic.cancel.
    pub(crate) cancel_notify: bool,
    /// `x-priority` of basic.consume (default 0): consumers of a lower
    /// priority receive only while every higher one is out of credit.
    pub(crate) priority: i64,
    /// Set once it has left its queue (see [`AmqpGateway::consumer_ended`]).
    pub(crate) left: AtomicBool,
}

impl Consumer {
    pub(crate) fn new(
        id: u64,
        tag: String,
        queue: Arc<QueueRef>,
        no_ack: bool,
        exclusive: bool,
        prefetch: u32,
        cancel_notify: bool,
    ) -> Consumer {
        let args = &queue.queue.arguments;
        Consumer {
            id,
            tag,
            topic: queue.queue.topic.clone(),
            no_ack,
            exclusive,
            prefetch,
            queue_ttl: int_arg(args, "x-message-ttl"),
            delivery_limit: int_arg(args, "x-delivery-limit"),
            queue: queue.clone(),
            unacked: AtomicU32::new(0),
            active: tokio::sync::Mutex::new(true),
            stop: AtomicBool::new(false),
            server_cancelled: AtomicBool::new(false),
            cancel_notify,
            priority: 0,
            left: AtomicBool::new(false),
        }
    }

    /// The server ends this consumer (its queue is gone): no delivery
    /// follows, and a client that understands it gets a basic.cancel at
    /// once.
    pub(crate) async fn cancel_by_server(&self, ch: &ChannelShared) {
        self.server_cancelled.store(true, Ordering::Release);
        self.stop();
        let mut active = self.active.lock().await;
        if *active {
            *active = false;
            if self.cancel_notify {
                let cancel = basic::Cancel { consumer_tag: self.tag.as_str().into(), nowait: true };
                let frame = crate::connection::method_frame(ch.id, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)));
                let _ = ch.out.send(frame).await;
            }
        }
        ch.credit.notify_waiters();
    }

    /// Stops the delivery task (after its current poll).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Every live consumer, by topic: consumer counts, exclusivity, and
/// server-sent cancels when a queue is deleted.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_topic: Mutex<HashMap<String, Vec<Registered>>>,
    /// Consumers on other nodes of queues led here, by topic: (node,
    /// consumer id) → exclusive (see [`crate::remote_consumers`]).
    remote: Mutex<HashMap<String, RemoteConsumers>>,
}

/// (node, consumer id) → exclusive.
type RemoteConsumers = HashMap<(i32, u64), bool>;

/// A consumer and its channel.
type Registered = (Weak<Consumer>, Arc<ChannelShared>);

impl Registry {
    /// Consumers of `topic` here and, for a queue led here, on other nodes.
    pub(crate) fn count(&self, topic: &str) -> usize {
        let here =
            self.by_topic.lock().get(topic).map_or(0, |v| v.iter().filter(|(c, _)| c.strong_count() > 0).count());
        here + self.remote.lock().get(topic).map_or(0, HashMap::len)
    }

    pub(crate) fn has_exclusive(&self, topic: &str) -> bool {
        let here = self
            .by_topic
            .lock()
            .get(topic)
            .is_some_and(|v| v.iter().any(|(c, _)| c.upgrade().is_some_and(|c| c.exclusive)));
        here || self.remote.lock().get(topic).is_some_and(|m| m.values().any(|x| *x))
    }

    /// Admits a consumer of another node unless the queue is in exclusive
    /// use (or it wants exclusive use of a queue with consumers).
    pub(crate) fn join_remote(&self, topic: &str, node: i32, id: u64, exclusive: bool) -> bool {
        if self.has_exclusive(topic) || (exclusive && self.count(topic) > 0) {
            return false;
        }
        self.remote.lock().entry(topic.to_string()).or_default().insert((node, id), exclusive);
        true
    }

    /// A consumer of another node left.
    pub(crate) fn leave_remote(&self, topic: &str, node: i32, id: u64) {
        let mut m = self.remote.lock();
        if let Some(t) = m.get_mut(topic) {
            t.remove(&(node, id));
            if t.is_empty() {
                m.remove(topic);
            }
        }
    }

    /// Drops every consumer of `node`; returns the topics it had any on.
    pub(crate) fn drop_remote_node(&self, node: i32) -> Vec<String> {
        let mut m = self.remote.lock();
        let mut topics = Vec::new();
        m.retain(|topic, t| {
            let before = t.len();
            t.retain(|(n, _), _| *n != node);
            if t.len() != before {
                topics.push(topic.clone());
            }
            !t.is_empty()
        });
        topics
    }

    /// Nodes with consumers registered here.
    pub(crate) fn remote_nodes(&self) -> Vec<i32> {
        let mut nodes: Vec<i32> = self.remote.lock().values().flat_map(|t| t.keys().map(|(n, _)| *n)).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    pub(crate) fn add(&self, c: &Arc<Consumer>, ch: &Arc<ChannelShared>) {
        let mut m = self.by_topic.lock();
        let v = m.entry(c.topic.clone()).or_default();
        v.retain(|(w, _)| w.strong_count() > 0);
        v.push((Arc::downgrade(c), ch.clone()));
    }

    /// Whether `c` is its queue's active consumer under
    /// `x-single-active-consumer`: the longest-registered live one.
    pub(crate) fn is_single_active(&self, c: &Arc<Consumer>) -> bool {
        let m = self.by_topic.lock();
        let first = m.get(&c.topic).and_then(|v| v.iter().find_map(|(w, _)| w.upgrade().filter(|x| !x.stopped())));
        first.is_some_and(|f| Arc::ptr_eq(&f, c))
    }

    /// Whether a live consumer of `c`'s queue with a higher `x-priority`
    /// could take a message now (it has credit), so `c` must leave the
    /// queue to it.
    pub(crate) fn outranked(&self, c: &Arc<Consumer>) -> bool {
        let m = self.by_topic.lock();
        let Some(v) = m.get(&c.topic) else { return false };
        v.iter()
            .any(|(w, ch)| w.upgrade().is_some_and(|o| o.priority > c.priority && !o.stopped() && credit(ch, &o) > 0))
    }

    /// Removes a consumer; returns how many the topic still has.
    pub(crate) fn remove(&self, c: &Arc<Consumer>) -> usize {
        let mut m = self.by_topic.lock();
        let Some(v) = m.get_mut(&c.topic) else { return 0 };
        v.retain(|(w, _)| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(c)));
        let n = v.len();
        if n == 0 {
            m.remove(&c.topic);
        }
        n
    }

    /// The queue is gone: every consumer stops and tells its client.
    pub(crate) async fn cancel_all(&self, topic: &str) {
        let list = self.by_topic.lock().remove(topic).unwrap_or_default();
        for (w, ch) in list {
            if let Some(c) = w.upgrade() {
                c.cancel_by_server(&ch).await;
            }
        }
    }
}

/// How many more messages `c` may be sent now.
pub(crate) fn credit(ch: &ChannelShared, c: &Consumer) -> u32 {
    if c.no_ack {
        return MAX_BATCH;
    }
    let own = match c.prefetch {
        0 => MAX_BATCH,
        p => p.saturating_sub(c.unacked.load(Ordering::Acquire)),
    };
    let st = ch.state.lock();
    let global = match st.global_prefetch {
        0 => MAX_BATCH,
        p => p.saturating_sub(st.unacked.len() as u32),
    };
    own.min(global).min(MAX_BATCH)
}

/// Waits (at most one poll) until acks may have freed credit.
pub(crate) async fn wait_for_credit(ch: &ChannelShared, c: &Consumer) {
    let woken = ch.credit.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    if credit(ch, c) == 0 && !c.stopped() {
        let _ = tokio::time::timeout(POLL, woken).await;
    }
}

/// The delivery loop of one consumer.
pub(crate) async fn run(gw: Arc<AmqpGateway>, ch: Arc<ChannelShared>, c: Arc<Consumer>) {
    let single_active = matches!(
        c.queue.queue.arguments.inner().get("x-single-active-consumer"),
        Some(fjord_amqp_codec::AMQPValue::Boolean(true))
    );
    while !c.stopped() {
        if single_active && !gw.consumers.is_single_active(&c) {
            // Waits its turn: the active consumer cancels or goes away.
            tokio::time::sleep(POLL).await;
            continue;
        }
        let want = credit(&ch, &c);
        if want == 0 {
            wait_for_credit(&ch, &c).await;
            continue;
        }
        if gw.consumers.outranked(&c) {
            // A higher-priority consumer has room: it takes what comes.
            tokio::time::sleep(OUTRANKED_POLL).await;
            continue;
        }
        let args = &c.queue.queue.arguments;
        let popped = match crate::priority::pop(&gw, &c.topic, args, want as usize, POLL).await {
            Ok(p) => p,
            Err(e) => {
                if gw.messaging.broker().topic(&c.topic).is_none() {
                    // Deleted under us (by another protocol's admin, say).
                    c.cancel_by_server(&ch).await;
                    break;
                }
                tracing::warn!(topic = %c.topic, error = %e, "amqp consumer could not pop");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if popped.is_empty() {
            continue;
        }
        deliver(&gw, &ch, &c, popped).await;
    }
    gw.consumers.remove(&c);
}

/// Takes the channel's next delivery tag; with `unacked`, records the
/// delivery (and counts it against its consumer's prefetch) before its
/// frame exists, so an ack never outruns it.
pub(crate) fn register(ch: &ChannelShared, unacked: Option<Unacked>) -> u64 {
    let mut st = ch.state.lock();
    st.next_tag += 1;
    let tag = st.next_tag;
    if let Some(u) = unacked {
        if let Some(c) = &u.consumer {
            c.unacked.fetch_add(1, Ordering::AcqRel);
        }
        st.unacked.insert(tag, u);
    }
    tag
}

/// Appends a basic.deliver with its content to `buf`.
pub(crate) fn encode_deliver(
    ch: &ChannelShared,
    c: &Consumer,
    tag: u64,
    redelivered: bool,
    (exchange, routing_key, props): (String, String, fjord_amqp_codec::BasicProperties),
    message: &fjord_messaging::StoredMessage,
    buf: &mut Vec<u8>,
) {
    let d = basic::Deliver {
        consumer_tag: c.tag.as_str().into(),
        delivery_tag: tag,
        redelivered,
        exchange: exchange.into(),
        routing_key: routing_key.into(),
    };
    let body = message.body.as_deref().unwrap_or_default();
    let m = AMQPClass::Basic(basic::AMQPMethod::Deliver(d));
    if let Err(e) = encode_content(ch.id, m, props, body, ch.frame_max, buf) {
        tracing::warn!(error = %e, "amqp: could not encode a delivery");
    }
}

async fn deliver(gw: &AmqpGateway, ch: &ChannelShared, c: &Arc<Consumer>, popped: Vec<Popped>) {
    let model = ConsumeModel::Clustering;
    let active = c.active.lock().await;
    if !*active || c.stopped() {
        drop(active);
        let receipts: Vec<ReceiptHandle> = popped.into_iter().map(|p| p.receipt).collect();
        if let Err(e) = gw.messaging.release_many_at_leaders(AMQP_GROUP, &model, &receipts).await {
            tracing::warn!(error = %e, "amqp: could not requeue deliveries of a cancelled consumer");
        }
        return;
    }
    let now = gw.messaging.broker().clock().now_ms();
    let mut buf = Vec::new();
    let mut settle = Vec::new();
    let (mut expired, mut over_limit) = (Vec::new(), Vec::new());
    let (mut delivered, mut redelivered) = (0u64, 0u64);
    for p in popped {
        if mapping::expires_at(&p.message, c.queue_ttl).is_some_and(|at| at <= now) {
            expired.push((p.message, p.receipt));
            continue;
        }
        // Returned more than the limit allows (RabbitMQ: delivery count > limit).
        if c.delivery_limit.is_some_and(|l| i64::from(p.attempt) > l.saturating_add(1)) {
            over_limit.push((p.message, p.receipt));
            continue;
        }
        let message = Arc::new(p.message);
        delivered += 1;
        redelivered += u64::from(p.attempt > 1);
        if c.no_ack {
            settle.push(p.receipt.clone());
        }
        let unacked = (!c.no_ack).then(|| Unacked {
            receipt: Some(p.receipt),
            consumer: Some(c.clone()),
            queue: c.queue.clone(),
            message: message.clone(),
            attempt: p.attempt,
        });
        let tag = register(ch, unacked);
        let (exchange, routing_key, props) = mapping::from_stored(&message);
        encode_deliver(ch, c, tag, p.attempt > 1, (exchange, routing_key, props), &message, &mut buf);
    }
    if !buf.is_empty() {
        let _ = ch.out.send(buf).await;
    }
    crate::instrument::count("rabbitmq_global_messages_delivered_total", delivered);
    crate::instrument::count("rabbitmq_global_messages_redelivered_total", redelivered);
    drop(active);
    gw.dead_letter(&c.queue, expired, Reason::Expired).await;
    gw.dead_letter(&c.queue, over_limit, Reason::DeliveryLimit).await;
    if !settle.is_empty()
        && let Err(e) = gw.messaging.ack_many_at_leaders(AMQP_GROUP, &model, &settle, false).await
    {
        tracing::warn!(error = %e, "amqp: could not settle no-ack or expired deliveries");
    }
}
