//! Once a second, each node looks after the queues it holds: those unused
//! for their `x-expires` are deleted; the queue gauges
//! ([`crate::instrument`]) are sampled; drop-head queues left over their
//! length limit are trimmed ([`crate::maxlen`]); and expiry without
//! consumers: queues with `x-message-ttl` or
//! a dead-letter exchange and no consumer have their expired head messages
//! dead-lettered (reason `expired`), as RabbitMQ expires at the head. A
//! queue with consumers expires at delivery instead (see [`crate::consumer`]),
//! so the sweep never reorders what a consumer receives.
//!
//! Looking at the head is a pop taken back unchanged when the message has
//! not expired ([`fjord_messaging::Messaging::unpop_many`]), so the message
//! is not counted as redelivered.

use std::sync::Arc;
use std::time::Duration;

use fjord_messaging::{ConsumeModel, PopRequest};
use tokio::sync::watch;

use crate::AmqpGateway;
use crate::deadletter::{QueueRef, Reason};
use crate::mapping;
use crate::maxlen::HeadLimits;
use crate::model::{AMQP_GROUP, int_arg, string_arg};

/// Ticks between two samples of the queue gauges.
const SAMPLE_EVERY: u64 = 5;

/// Most messages one queue expires per sweep.
const MAX_PER_SWEEP: usize = 10_000;

/// Sweeps until `stop` turns true.
pub(crate) async fn run(gw: Arc<AmqpGateway>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    let mut lengths = Lengths::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        ticks += 1;
        gw.drop_lost_consumers().await;
        for (vhost, v) in gw.model.snapshot().iter() {
            // Each queue is looked after by its own node (in a cluster every
            // node has every definition).
            for q in v.queues.values().filter(|q| gw.leads(&q.topic)) {
                if ticks % SAMPLE_EVERY == 1 {
                    let (ready, unacked) = gw.depth(&q.topic).await;
                    crate::instrument::queue_sample(vhost, &q.name, ready, unacked, gw.consumers.count(&q.topic));
                }
                if let Some(expires) = int_arg(&q.arguments, "x-expires").filter(|e| *e > 0)
                    && gw.consumers.count(&q.topic) == 0
                {
                    let idle = {
                        let mut used = gw.last_used.lock();
                        let here = *used.entry(q.topic.clone()).or_insert_with(std::time::Instant::now);
                        // Consumers on other nodes use it through forwarded calls.
                        let last = gw.messaging.last_remote_use(&q.topic).map_or(here, |r| r.max(here));
                        last.elapsed()
                    };
                    if idle.as_millis() >= expires as u128 {
                        tracing::info!(queue = %q.name, %vhost, "amqp: queue unused for x-expires, deleting it");
                        if let Err(e) = gw.remove_queue(vhost, q).await {
                            tracing::warn!(queue = %q.name, error = %e, "amqp: could not delete an expired queue");
                        }
                        gw.last_used.lock().remove(&q.topic);
                        continue;
                    }
                }
                if let Some(limits) = HeadLimits::of(q) {
                    let queue = QueueRef { vhost: vhost.clone(), queue: q.clone() };
                    lengths.look(&gw, &queue, limits, ticks).await;
                }
                let ttl = int_arg(&q.arguments, "x-message-ttl");
                let dlx = string_arg(&q.arguments, "x-dead-letter-exchange");
                if (ttl.is_none() && dlx.is_none()) || gw.consumers.count(&q.topic) > 0 {
                    continue;
                }
                let queue = QueueRef { vhost: vhost.clone(), queue: q.clone() };
                sweep(&gw, &queue, ttl).await;
            }
        }
        lengths.forget_older(ticks);
    }
}

/// What the sweep saw of each drop-head queue's log, by topic (queues
/// gone are forgotten).
#[derive(Default)]
struct Lengths {
    seen: std::collections::HashMap<String, Seen>,
}

/// One drop-head queue at the sweep's last look.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The end its log had.
    end: u64,
    /// The end at which it was last found within its limits.
    within: Option<u64>,
    /// The look's tick.
    tick: u64,
}

impl Lengths {
    /// Trims `q` when nothing was published to it since the previous look
    /// (a publisher's own trim is done) and it was not found within its
    /// limits at this end of its log yet: what remains over a limit then
    /// is a trim that was missed.
    async fn look(&mut self, gw: &AmqpGateway, q: &QueueRef, limits: HeadLimits, tick: u64) {
        let Some(t) = gw.messaging.broker().topic(&q.queue.topic) else { return };
        let end: u64 = t.partitions().iter().map(|p| p.high_watermark()).sum();
        let last = self.seen.get(&q.queue.topic).copied().unwrap_or(Seen { end: u64::MAX, within: None, tick: 0 });
        let mut within = last.within;
        if end == last.end && within != Some(end) {
            match crate::maxlen::trim(gw, q, limits).await {
                Some(0) => within = Some(end),
                Some(dropped) => {
                    tracing::info!(queue = %q.queue.name, dropped, "amqp: a queue left over its length limit was trimmed");
                    within = Some(end);
                }
                // Tried again at the next look.
                None => {}
            }
        }
        self.seen.insert(q.queue.topic.clone(), Seen { end, within, tick });
    }

    /// Forgets the queues not looked at in `tick`.
    fn forget_older(&mut self, tick: u64) {
        self.seen.retain(|_, seen| seen.tick == tick);
    }
}

async fn sweep(gw: &AmqpGateway, q: &QueueRef, ttl: Option<i64>) {
    let model = ConsumeModel::Clustering;
    if gw.depth(&q.queue.topic).await.0 == 0 {
        return;
    }
    for _ in 0..MAX_PER_SWEEP {
        let mut req = PopRequest::new(AMQP_GROUP, q.queue.topic.as_str(), 1);
        req.invisible = Duration::from_secs(60);
        let Ok(mut popped) = gw.messaging.pop(req).await else { return };
        let Some(p) = popped.pop() else { return };
        let now = gw.messaging.broker().clock().now_ms();
        if mapping::expires_at(&p.message, ttl).is_some_and(|at| at <= now) {
            gw.dead_letter(q, vec![(p.message, p.receipt)], Reason::Expired).await;
            continue;
        }
        if let Err(e) = gw.messaging.unpop_many(AMQP_GROUP, &model, &[p.receipt]).await {
            tracing::warn!(queue = %q.queue.name, error = %e, "amqp: could not put back a queue's head");
        }
        return;
    }
}
