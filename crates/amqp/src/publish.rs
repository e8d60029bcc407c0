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
use crate::mapping::{self, Published};

/// Publishes taken into one batch at most.
const MAX_BATCH: usize = 512;
/// Body bytes appended to one topic in one call at most (a record batch
/// must stay under the topic's `max.message.bytes`).
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// One append: the batch indexes of its messages, and the messages.
type Call = (Vec<usize>, Vec<Message>);

/// A routed publish.
#[derive(Debug)]
pub(crate) struct Routed {
    /// Confirm-mode delivery tag.
    pub(crate) confirm: Option<u64>,
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
    // Per topic, in publish order, cut into calls of bounded size.
    let mut calls: Vec<(String, Vec<usize>, Vec<Message>, usize)> = Vec::new();
    for (i, r) in batch.iter().enumerate() {
        for t in &r.topics {
            let m = mapping::to_message(&r.message, t);
            let size = m.body.len();
            match calls.iter_mut().rev().find(|c| &c.0 == t) {
                Some(c) if c.3 + size <= MAX_BATCH_BYTES => {
                    c.1.push(i);
                    c.2.push(m);
                    c.3 += size;
                }
                _ => calls.push((t.clone(), vec![i], vec![m], size)),
            }
        }
    }
    let mut failed = vec![false; batch.len()];
    // Calls for one topic run in order; topics run concurrently.
    let mut by_topic: Vec<(String, Vec<Call>)> = Vec::new();
    for (t, idx, msgs, _) in calls {
        match by_topic.iter_mut().find(|(x, _)| *x == t) {
            Some((_, v)) => v.push((idx, msgs)),
            None => by_topic.push((t, vec![(idx, msgs)])),
        }
    }
    let runs = by_topic.into_iter().map(|(topic, parts)| async move {
        let mut bad = Vec::new();
        for (idx, msgs) in parts {
            if let Err(e) = gw.messaging.send_batch(msgs, Partitioning::Auto).await {
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
