//! Channels: their state, content assembly (publish → header → bodies),
//! and the methods of the channel, exchange, queue, basic, confirm and tx
//! classes. A channel exception closes only its channel: its consumers
//! stop and its unacked deliveries return to their queues.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use fjord_amqp_codec::protocol::{basic, channel as chan, confirm, exchange, queue, tx};
use fjord_amqp_codec::{AMQPClass, AMQPFrame, BasicProperties};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::access::Right;
use crate::connection::Conn;
use crate::consumer::Consumer;
use crate::delivery::{Settle, Unacked, requeue};
use crate::exception::{AmqpException, MethodResult};
use crate::mapping::Published;
use crate::model::{Binding, Exchange, ExchangeKind};
use crate::ops::QueueSpec;
use crate::publish::{self, PubCmd, Routed};

/// What the channel's tasks share with it.
#[derive(Debug)]
pub(crate) struct ChannelShared {
    pub(crate) id: u16,
    pub(crate) vhost: String,
    pub(crate) out: mpsc::Sender<Vec<u8>>,
    pub(crate) frame_max: u32,
    pub(crate) state: parking_lot::Mutex<Deliveries>,
    /// Woken when acks free prefetch credit (or consumers stop).
    pub(crate) credit: Notify,
}

/// Delivery tags and what they stand for.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    pub(crate) next_tag: u64,
    pub(crate) unacked: BTreeMap<u64, Unacked>,
    /// basic.qos with global=true (0 = unlimited).
    pub(crate) global_prefetch: u32,
}

/// A publish waiting for its content header and body.
#[derive(Debug)]
struct Content {
    publish: basic::Publish,
    properties: Option<BasicProperties>,
    size: u64,
    body: Vec<u8>,
}

/// What a transaction holds until commit: publishes, and settlements.
type TxBuffer = (Vec<Routed>, Vec<(u64, Settle)>);

/// One open channel.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) shared: Arc<ChannelShared>,
    content: Option<Content>,
    pub(crate) publisher: mpsc::Sender<PubCmd>,
    pub(crate) publisher_task: JoinHandle<()>,
    pub(crate) confirm: bool,
    pub(crate) next_confirm: u64,
    /// In tx mode: publishes and acks held until commit.
    pub(crate) tx: Option<TxBuffer>,
    pub(crate) consumers: HashMap<String, (Arc<Consumer>, JoinHandle<()>)>,
    /// basic.qos with global=false: for consumers created afterwards.
    pub(crate) prefetch: u32,
    /// channel.close was sent; waiting for close-ok.
    pub(crate) closing: bool,
    /// Settlements (acks, requeues, rejects) still being applied: later
    /// synchronous methods wait for them, so a basic.get after a requeue
    /// sees the message back, as on RabbitMQ's channel.
    pub(crate) settling: Vec<JoinHandle<()>>,
}

fn ok(class: AMQPClass) -> MethodResult<Option<AMQPClass>> {
    Ok(Some(class))
}

impl Conn {
    /// Checks the connection's user's `right` on a resource of its vhost.
    fn allow(&self, right: Right, kind: &str, name: &str) -> MethodResult<()> {
        self.gw.users.check(&self.user, &self.vhost, right, kind, name)
    }

    fn new_channel(&self, id: u16) -> Channel {
        let shared = Arc::new(ChannelShared {
            id,
            vhost: self.vhost.clone(),
            out: self.out.clone(),
            frame_max: self.frame_max,
            state: Default::default(),
            credit: Notify::new(),
        });
        let (publisher, rx) = mpsc::channel(1024);
        let publisher_task = tokio::spawn(publish::run(self.gw.clone(), shared.clone(), rx));
        Channel {
            shared,
            content: None,
            publisher,
            publisher_task,
            confirm: false,
            next_confirm: 0,
            tx: None,
            consumers: HashMap::new(),
            settling: Vec::new(),
            prefetch: 0,
            closing: false,
        }
    }

    /// A frame for channel `id`.
    pub(crate) async fn on_channel_frame(&mut self, id: u16, frame: AMQPFrame) -> MethodResult<()> {
        if let AMQPFrame::Method(_, AMQPClass::Channel(chan::AMQPMethod::Open(_))) = frame {
            if self.channels.contains_key(&id) {
                return Err(AmqpException::channel_error(format!("channel {id} is already open")));
            }
            if id > self.channel_max {
                return Err(AmqpException::channel_error(format!(
                    "channel {id} is above channel_max {}",
                    self.channel_max
                )));
            }
            let c = self.new_channel(id);
            self.channels.insert(id, c);
            self.send(id, AMQPClass::Channel(chan::AMQPMethod::OpenOk(chan::OpenOk {}))).await;
            return Ok(());
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            // Both sides closed at once: the peer's close-ok for our close
            // arrives after we answered its close.
            if let AMQPFrame::Method(_, AMQPClass::Channel(chan::AMQPMethod::CloseOk(_))) = frame {
                return Ok(());
            }
            return Err(AmqpException::channel_error(format!("expected 'channel.open' on channel {id}")));
        };
        if ch.closing {
            // After channel.close only close/close-ok count.
            match frame {
                AMQPFrame::Method(_, AMQPClass::Channel(chan::AMQPMethod::CloseOk(_))) => {
                    self.channels.remove(&id);
                }
                AMQPFrame::Method(_, AMQPClass::Channel(chan::AMQPMethod::Close(_))) => {
                    self.channels.remove(&id);
                    self.send(id, AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {}))).await;
                }
                _ => {}
            }
            return Ok(());
        }
        match frame {
            AMQPFrame::Method(_, m) => {
                if ch.content.is_some() {
                    return Err(AmqpException::unexpected_frame("expected a content header"));
                }
                if let Some(reply) = self.on_method(id, m).await? {
                    self.send(id, reply).await;
                }
                Ok(())
            }
            AMQPFrame::Header(_, h) => {
                let max = self.gw.config.max_message_size;
                let Some(c) = ch.content.as_mut().filter(|c| c.properties.is_none()) else {
                    return Err(AmqpException::unexpected_frame("content header without basic.publish"));
                };
                if h.class_id != 60 {
                    return Err(AmqpException::frame_error(format!("content header of class {}", h.class_id)));
                }
                if h.body_size > max {
                    ch.content = None;
                    return Err(AmqpException::precondition_failed(format!(
                        "message size {} is larger than configured max size {max}",
                        h.body_size
                    )));
                }
                c.properties = Some(h.properties);
                c.size = h.body_size;
                c.body = Vec::with_capacity(h.body_size.min(1 << 20) as usize);
                if c.size == 0 {
                    self.publish_content(id).await?;
                }
                Ok(())
            }
            AMQPFrame::Body(_, b) => {
                let Some(c) = ch.content.as_mut().filter(|c| c.properties.is_some()) else {
                    return Err(AmqpException::unexpected_frame("content body without a header"));
                };
                if c.body.len() as u64 + b.len() as u64 > c.size {
                    return Err(AmqpException::frame_error("content body longer than its header said"));
                }
                c.body.extend_from_slice(&b);
                if c.body.len() as u64 == c.size {
                    self.publish_content(id).await?;
                }
                Ok(())
            }
            _ => Err(AmqpException::unexpected_frame("unexpected frame")),
        }
    }

    pub(crate) fn channel(&mut self, id: u16) -> MethodResult<&mut Channel> {
        self.channels.get_mut(&id).ok_or_else(|| AmqpException::channel_error("channel is not open"))
    }

    /// Waits until the channel's publisher stored everything sent before,
    /// and its settlements are applied.
    pub(crate) async fn fence(&mut self, id: u16) -> MethodResult<()> {
        let (tx, rx) = oneshot::channel();
        let ch = self.channel(id)?;
        let settling = std::mem::take(&mut ch.settling);
        if ch.publisher.send(PubCmd::Fence(tx)).await.is_ok() {
            let _ = rx.await;
        }
        for s in settling {
            let _ = s.await;
        }
        Ok(())
    }

    /// A whole publish arrived: route it and hand it to the publisher.
    async fn publish_content(&mut self, id: u16) -> MethodResult<()> {
        let vhost = self.vhost.clone();
        let ch = self.channel(id)?;
        let Some(c) = ch.content.take() else { return Ok(()) };
        let props = c.properties.unwrap_or_default();
        let p = c.publish;
        let topics = self.gw.route(&vhost, p.exchange.as_str(), p.routing_key.as_str(), props.headers().as_ref())?;
        let deliver_at = self.gw.delay(&vhost, p.exchange.as_str(), props.headers().as_ref());
        let ch = self.channel(id)?;
        let confirm = ch.confirm.then(|| {
            ch.next_confirm += 1;
            ch.next_confirm
        });
        let routed = Routed {
            confirm,
            deliver_at,
            topics,
            mandatory: p.mandatory,
            message: Published {
                exchange: p.exchange.to_string(),
                routing_key: p.routing_key.to_string(),
                properties: props,
                body: Bytes::from(c.body),
            },
        };
        if let Some((held, _)) = ch.tx.as_mut() {
            held.push(routed);
            return Ok(());
        }
        ch.publisher
            .send(PubCmd::Publish(Box::new(routed)))
            .await
            .map_err(|_| AmqpException::internal_error("the channel's publisher stopped"))
    }

    /// Closes a channel because of `e` (channel.close sent; close-ok awaited).
    pub(crate) async fn fail_channel(&mut self, id: u16, e: AmqpException, class_id: u16, method_id: u16) {
        tracing::debug!(conn = self.id, channel = id, code = e.code, text = %e.text, "closing amqp channel");
        if let Some(mut ch) = self.channels.remove(&id) {
            ch.content = None;
            self.release_channel(ch).await;
            let mut placeholder = self.new_channel(id);
            placeholder.closing = true;
            placeholder.publisher_task.abort();
            self.channels.insert(id, placeholder);
        }
        let close = chan::Close { reply_code: e.code, reply_text: e.reply_text().into(), class_id, method_id };
        self.send(id, AMQPClass::Channel(chan::AMQPMethod::Close(close))).await;
    }

    /// Ends a channel's work: stores what it published, stops its
    /// consumers and returns its unacked deliveries to their queues.
    async fn release_channel(&self, ch: Channel) {
        let Channel { shared, publisher, publisher_task, consumers, .. } = ch;
        drop(publisher);
        let _ = publisher_task.await;
        for (c, _) in consumers.values() {
            c.stop();
            *c.active.lock().await = false;
        }
        shared.credit.notify_waiters();
        for (c, task) in consumers.into_values() {
            let _ = task.await;
            self.after_consumer_gone(&c).await;
        }
        let taken: Vec<Unacked> = std::mem::take(&mut shared.state.lock().unacked).into_values().collect();
        requeue(&self.gw, taken).await;
    }

    /// Auto-delete: a queue whose last consumer went is deleted.
    async fn after_consumer_gone(&self, c: &Arc<Consumer>) {
        self.gw.consumer_ended(c).await;
    }

    /// Closes every channel (the connection is ending) and deletes the
    /// connection's exclusive queues.
    pub(crate) async fn close_all_channels(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            if let Some(ch) = self.channels.remove(&id) {
                self.release_channel(ch).await;
            }
        }
        let snapshot = self.gw.model.snapshot();
        if let Some(v) = snapshot.get(&self.vhost) {
            for q in v.queues.values().filter(|q| q.owner == Some(self.id)) {
                if let Err(e) = self.gw.remove_queue(&self.vhost, q).await {
                    tracing::warn!(queue = %q.name, error = %e, "amqp: could not delete an exclusive queue");
                }
            }
        }
    }

    /// One method on an open channel; returns the reply to send, if any.
    async fn on_method(&mut self, id: u16, m: AMQPClass) -> MethodResult<Option<AMQPClass>> {
        let vhost = self.vhost.clone();
        match m {
            AMQPClass::Basic(basic::AMQPMethod::Publish(p)) => {
                if p.immediate {
                    // As RabbitMQ since 3.0.
                    return Err(AmqpException::not_implemented("immediate=true"));
                }
                self.allow(Right::Write, "exchange", p.exchange.as_str())?;
                let ch = self.channel(id)?;
                ch.content = Some(Content { publish: p, properties: None, size: 0, body: Vec::new() });
                Ok(None)
            }
            AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => self.settle(id, a.delivery_tag, a.multiple, None).await,
            AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => {
                self.settle(id, n.delivery_tag, n.multiple, Some(n.requeue)).await
            }
            AMQPClass::Basic(basic::AMQPMethod::Reject(r)) => {
                self.settle(id, r.delivery_tag, false, Some(r.requeue)).await
            }
            AMQPClass::Channel(chan::AMQPMethod::Close(_)) => {
                if let Some(ch) = self.channels.remove(&id) {
                    self.release_channel(ch).await;
                }
                ok(AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})))
            }
            AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => Ok(None),
            // Pausing deliveries is not implemented (as in RabbitMQ, which
            // answers active=false the same way; prefetch is the tool).
            AMQPClass::Channel(chan::AMQPMethod::Flow(f)) if !f.active => {
                Err(AmqpException::not_implemented("active=false"))
            }
            AMQPClass::Channel(chan::AMQPMethod::Flow(f)) => {
                ok(AMQPClass::Channel(chan::AMQPMethod::FlowOk(chan::FlowOk { active: f.active })))
            }
            AMQPClass::Access(_) => Err(AmqpException::not_implemented("access.request is not supported")),
            other => {
                // Everything else sees the channel's earlier publishes stored.
                self.fence(id).await?;
                self.on_sync_method(id, &vhost, other).await
            }
        }
    }

    async fn on_sync_method(&mut self, id: u16, vhost: &str, m: AMQPClass) -> MethodResult<Option<AMQPClass>> {
        use AMQPClass as C;
        let nowait_none = |nowait: bool, reply: AMQPClass| Ok(if nowait { None } else { Some(reply) });
        match m {
            C::Exchange(exchange::AMQPMethod::Declare(d)) => {
                let kind = ExchangeKind::parse(d.kind.as_str());
                let kind = match kind {
                    Some(k) => k,
                    None if d.passive => ExchangeKind::Direct,
                    None => return Err(AmqpException::command_invalid(format!("unknown exchange type '{}'", d.kind))),
                };
                if kind == ExchangeKind::XDelayedMessage
                    && !d.passive
                    && crate::model::string_arg(&d.arguments, "x-delayed-type")
                        .and_then(|t| ExchangeKind::parse(&t))
                        .is_none_or(|t| t == ExchangeKind::XDelayedMessage)
                {
                    return Err(AmqpException::precondition_failed(
                        "Invalid argument, 'x-delayed-type' must be an existing exchange type",
                    ));
                }
                if !d.passive {
                    self.allow(Right::Configure, "exchange", d.exchange.as_str())?;
                    if let Some(alt) = crate::model::string_arg(&d.arguments, "alternate-exchange") {
                        self.allow(Right::Write, "exchange", &alt)?;
                        self.allow(Right::Read, "exchange", d.exchange.as_str())?;
                    }
                }
                let e = Exchange {
                    name: d.exchange.to_string(),
                    kind,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: d.arguments,
                    home: None,
                };
                self.gw.declare_exchange(vhost, e, d.passive).await?;
                nowait_none(d.nowait, C::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})))
            }
            C::Exchange(exchange::AMQPMethod::Delete(d)) => {
                self.allow(Right::Configure, "exchange", d.exchange.as_str())?;
                self.gw.delete_exchange(vhost, d.exchange.as_str(), d.if_unused).await?;
                nowait_none(d.nowait, C::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})))
            }
            C::Exchange(exchange::AMQPMethod::Bind(b)) => {
                self.allow(Right::Write, "exchange", b.destination.as_str())?;
                self.allow(Right::Read, "exchange", b.source.as_str())?;
                let binding =
                    Binding::new(b.source.as_str(), b.destination.as_str(), true, b.routing_key.as_str(), b.arguments);
                self.gw.change_binding(vhost, binding, true).await?;
                nowait_none(b.nowait, C::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})))
            }
            C::Exchange(exchange::AMQPMethod::Unbind(b)) => {
                self.allow(Right::Write, "exchange", b.destination.as_str())?;
                self.allow(Right::Read, "exchange", b.source.as_str())?;
                let binding =
                    Binding::new(b.source.as_str(), b.destination.as_str(), true, b.routing_key.as_str(), b.arguments);
                self.gw.change_binding(vhost, binding, false).await?;
                nowait_none(b.nowait, C::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})))
            }
            C::Queue(queue::AMQPMethod::Declare(d)) => {
                let mut name = d.queue.to_string();
                let server_named = name.is_empty() && !d.passive;
                if !d.passive {
                    if server_named {
                        // Named first, so the check sees the real name.
                        name = self.gw.server_queue_name();
                    }
                    self.allow(Right::Configure, "queue", &name)?;
                    if let Some(dlx) = crate::model::string_arg(&d.arguments, "x-dead-letter-exchange") {
                        self.allow(Right::Write, "exchange", &dlx)?;
                        self.allow(Right::Read, "queue", &name)?;
                    }
                }
                let spec = QueueSpec {
                    name,
                    server_named,
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: d.arguments,
                };
                let r = self.gw.declare_queue(vhost, self.id, spec).await?;
                let ok =
                    queue::DeclareOk { queue: r.name.into(), message_count: r.messages, consumer_count: r.consumers };
                nowait_none(d.nowait, C::Queue(queue::AMQPMethod::DeclareOk(ok)))
            }
            C::Queue(queue::AMQPMethod::Bind(b)) => {
                self.allow(Right::Write, "queue", b.queue.as_str())?;
                self.allow(Right::Read, "exchange", b.exchange.as_str())?;
                let binding =
                    Binding::new(b.exchange.as_str(), b.queue.as_str(), false, b.routing_key.as_str(), b.arguments);
                self.gw.change_binding(vhost, binding, true).await?;
                nowait_none(b.nowait, C::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})))
            }
            C::Queue(queue::AMQPMethod::Unbind(b)) => {
                self.allow(Right::Write, "queue", b.queue.as_str())?;
                self.allow(Right::Read, "exchange", b.exchange.as_str())?;
                let binding =
                    Binding::new(b.exchange.as_str(), b.queue.as_str(), false, b.routing_key.as_str(), b.arguments);
                self.gw.change_binding(vhost, binding, false).await?;
                ok(C::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})))
            }
            C::Queue(queue::AMQPMethod::Purge(p)) => {
                self.allow(Right::Read, "queue", p.queue.as_str())?;
                let n = self.gw.purge_queue(vhost, p.queue.as_str()).await?;
                nowait_none(p.nowait, C::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: n })))
            }
            C::Queue(queue::AMQPMethod::Delete(d)) => {
                self.allow(Right::Configure, "queue", d.queue.as_str())?;
                let n = self.gw.delete_queue(vhost, self.id, d.queue.as_str(), d.if_unused, d.if_empty).await?;
                nowait_none(d.nowait, C::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: n })))
            }
            C::Basic(basic::AMQPMethod::Qos(q)) => {
                let ch = self.channel(id)?;
                if q.global {
                    ch.shared.state.lock().global_prefetch = u32::from(q.prefetch_count);
                    ch.shared.credit.notify_waiters();
                } else {
                    ch.prefetch = u32::from(q.prefetch_count);
                }
                ok(C::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})))
            }
            C::Basic(basic::AMQPMethod::Consume(c)) => {
                self.allow(Right::Read, "queue", c.queue.as_str())?;
                self.consume(id, vhost, c).await
            }
            C::Basic(basic::AMQPMethod::Cancel(c)) => {
                let gw = self.gw.clone();
                let ch = self.channel(id)?;
                if let Some((consumer, task)) = ch.consumers.remove(c.consumer_tag.as_str()) {
                    consumer.stop();
                    *consumer.active.lock().await = false;
                    let shared = ch.shared.clone();
                    shared.credit.notify_waiters();
                    // The task ends within a poll; the queue may auto-delete then.
                    tokio::spawn(async move {
                        let _ = task.await;
                        gw.consumer_ended(&consumer).await;
                    });
                }
                let reply = C::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk { consumer_tag: c.consumer_tag }));
                nowait_none(c.nowait, reply)
            }
            C::Basic(basic::AMQPMethod::Get(g)) => {
                self.allow(Right::Read, "queue", g.queue.as_str())?;
                self.get(id, vhost, g).await
            }
            C::Basic(basic::AMQPMethod::Recover(_)) | C::Basic(basic::AMQPMethod::RecoverAsync(_)) => {
                let ch = self.channel(id)?;
                let all: Vec<Unacked> = std::mem::take(&mut ch.shared.state.lock().unacked).into_values().collect();
                for u in &all {
                    if let Some(c) = &u.consumer {
                        c.unacked.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                ch.shared.credit.notify_waiters();
                requeue(&self.gw, all).await;
                ok(C::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})))
            }
            C::Confirm(confirm::AMQPMethod::Select(s)) => {
                let ch = self.channel(id)?;
                if ch.tx.is_some() {
                    return Err(AmqpException::precondition_failed("cannot switch from tx to confirm mode"));
                }
                ch.confirm = true;
                nowait_none(s.nowait, C::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})))
            }
            C::Tx(tx::AMQPMethod::Select(_)) => {
                let ch = self.channel(id)?;
                if ch.confirm {
                    return Err(AmqpException::precondition_failed("cannot switch from confirm to tx mode"));
                }
                ch.tx.get_or_insert_with(Default::default);
                ok(C::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})))
            }
            C::Tx(tx::AMQPMethod::Commit(_)) => {
                let ch = self.channel(id)?;
                let Some((publishes, acks)) = ch.tx.as_mut().map(std::mem::take) else {
                    return Err(AmqpException::precondition_failed("channel is not transactional"));
                };
                for p in publishes {
                    let _ = ch.publisher.send(PubCmd::Publish(Box::new(p))).await;
                }
                self.fence(id).await?;
                for (tag, how) in acks {
                    self.settle_now(id, tag, false, how).await?;
                }
                ok(C::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})))
            }
            C::Tx(tx::AMQPMethod::Rollback(_)) => {
                let ch = self.channel(id)?;
                let Some(held) = ch.tx.as_mut() else {
                    return Err(AmqpException::precondition_failed("channel is not transactional"));
                };
                *held = Default::default();
                ok(C::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})))
            }
            C::Channel(chan::AMQPMethod::Open(_)) => Err(AmqpException::channel_error("channel is already open")),
            other => Err(AmqpException::command_invalid(format!(
                "method {}.{} is not valid from a client here",
                other.get_amqp_class_id(),
                other.get_amqp_method_id()
            ))),
        }
    }
}
