//! Making deliveries visible again at once, many at a time: what a
//! per-message-ack protocol needs when a consumer goes away (AMQP returns
//! a closed channel's unacked messages to its queue) or when a broker
//! restarts with nobody left holding them.

use fjord_broker::TopicPartition;

use super::ReceiptHandle;
use super::service::PopEntry;
use super::state::InFlight;
use crate::Messaging;
use crate::error::Result;
use crate::pull::ConsumeModel;

impl Messaging {
    /// Makes each delivery visible again at once (a requeue), with one
    /// journal write per queue and one wait for durability. Stale or
    /// unknown receipts are skipped: the message was acked, or already
    /// redelivered to someone else. Returns how many were released.
    pub async fn release_many(&self, group: &str, model: &ConsumeModel, receipts: &[ReceiptHandle]) -> Result<usize> {
        self.release(group, model, receipts, false).await
    }

    /// Takes deliveries back as if they had not happened: visible at once
    /// and with the attempt count they had before, so the next delivery is
    /// not a redelivery. For looking at a queue's head without consuming it
    /// (the AMQP gateway's expiry sweep).
    pub async fn unpop_many(&self, group: &str, model: &ConsumeModel, receipts: &[ReceiptHandle]) -> Result<usize> {
        self.release(group, model, receipts, true).await
    }

    async fn release(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipts: &[ReceiptHandle],
        undo: bool,
    ) -> Result<usize> {
        let mut by_queue: Vec<(super::QueueId, Vec<(u64, u64)>)> = Vec::new();
        for r in receipts {
            let Ok((topic, partition, offset, seq)) = r.parse() else { continue };
            let q = self.queue_id(group, model, &TopicPartition::new(topic, partition));
            match by_queue.iter_mut().find(|(k, _)| *k == q) {
                Some((_, v)) => v.push((offset, seq)),
                None => by_queue.push((q, vec![(offset, seq)])),
            }
        }
        self.release_at(by_queue, undo).await
    }

    /// Makes the given deliveries (offset, delivery sequence) visible now,
    /// per queue; `undo` takes their attempt back too.
    async fn release_at(&self, by_queue: Vec<(super::QueueId, Vec<(u64, u64)>)>, undo: bool) -> Result<usize> {
        let (mut released, mut tickets) = (0, Vec::new());
        for (q, deliveries) in by_queue {
            let Some(state) = self.served_queue(&q).await? else { continue };
            let mut s = state.lock();
            let now = self.pop.clock.now_ms();
            for (offset, seq) in deliveries {
                let Some(f) = s.inflight.get(&offset).copied().filter(|f| f.seq == seq) else { continue };
                let attempt = if undo { f.attempt.saturating_sub(1) } else { f.attempt };
                let nf = InFlight { visible_at: now, seq: self.pop.seq(), attempt, ..f };
                s.inflight.insert(offset, nf);
                tickets.push(self.pop_write(&state, PopEntry::Invisible { q: q.clone(), offset, f: nf })?);
                released += 1;
            }
        }
        self.pop_settle(tickets, true).await?;
        Ok(released)
    }

    /// Takes back what the pop named `id` handed to `holder` and is still
    /// invisible with it: that pop's answer never reached its consumer (it
    /// failed after taking them, or was lost on its way back), so nobody
    /// would ack or release them before their invisibility ran out — an
    /// AMQP consumer's is half an hour (the checker's seed 3). Visible at
    /// once, with the attempt count they had before. Only the queues of
    /// `topic` this node serves (loaded from their shards if need be: a
    /// failed write sends a queue back there); returns how many.
    pub(crate) async fn abandon_pop(
        &self,
        group: &str,
        model: &ConsumeModel,
        topic: &str,
        holder: super::Holder,
        id: u64,
    ) -> Result<usize> {
        let Some(t) = self.broker.topic(topic) else { return Ok(0) };
        // Before the scan: a pop of that name still running here takes
        // back what it takes (`pop_for`); one that took already is found.
        self.pop.abandon(holder, id);
        let mut by_queue = Vec::new();
        let mut led = 0;
        for p in t.partitions() {
            if self.pop.lead(p.id()) == super::service::Lead::NotLeading {
                continue;
            }
            led += 1;
            let q = self.queue_id(group, model, p.id());
            let Some(state) = self.served_queue(&q).await? else { continue };
            let now = self.pop.clock.now_ms();
            let taken: Vec<(u64, u64)> = state
                .lock()
                .inflight
                .iter()
                .filter(|(_, f)| f.holder == Some(holder) && f.pop == Some(id) && f.visible_at > now)
                .map(|(o, f)| (*o, f.seq))
                .collect();
            if !taken.is_empty() {
                by_queue.push((q, taken));
            }
        }
        if led == 0 && self.broker.placement().is_some() {
            // Asked here on a stale view of who serves the queues: the
            // caller asks again where they are now.
            return Err(
                fjord_broker::BrokerError::Unavailable(format!("no queue of {topic} is served here now")).into()
            );
        }
        let n = self.release_at(by_queue, true).await?;
        if n > 0 {
            tracing::info!(
                topic,
                group,
                pop = id,
                deliveries = n,
                "took back a pop whose answer never reached its consumer"
            );
        }
        Ok(n)
    }

    /// Makes every delivery of `group` on `topic` visible at once: after a
    /// restart this node's consumers hold no deliveries of a
    /// connection-bound protocol (AMQP), so they go back to their queue
    /// instead of waiting out their invisibility (those consumers on other
    /// nodes hold stay out).
    pub async fn release_all(&self, group: &str, model: &ConsumeModel, topic: &str) -> Result<usize> {
        let base = self.queue_id(group, model, &TopicPartition::new(topic, 0));
        // The queues this node may serve, loaded (from their shards) first.
        if let Some(t) = self.broker.topic(topic) {
            for p in t.partitions() {
                if self.pop.lead(p.id()) != super::service::Lead::NotLeading {
                    let q = self.queue_id(group, model, p.id());
                    self.open_queue(&q, &p, super::StartFrom::Earliest).await?;
                }
            }
        }
        let now = self.pop.clock.now_ms();
        let queues: Vec<_> = self
            .pop
            .queues
            .lock()
            .iter()
            .filter(|(q, _)| q.group == base.group && q.topic == topic)
            .map(|(q, s)| (q.clone(), s.clone()))
            .collect();
        // Taken under each queue's lock; release_at checks them again under
        // it. Not those a live holder (a consumer connected to another
        // node) still holds.
        let live = self.holder_liveness();
        let by_queue = queues
            .into_iter()
            .map(|(q, state)| {
                let s = state.lock();
                let waiting = s
                    .inflight
                    .iter()
                    .filter(|(_, f)| f.visible_at > now && !f.holder.is_some_and(|h| live.is_live(&h)))
                    .map(|(o, f)| (*o, f.seq))
                    .collect();
                (q, waiting)
            })
            .collect();
        self.release_at(by_queue, false).await
    }

    /// A group's backlog on `topic`: messages ready to be popped (never
    /// handed out, or whose invisibility ran out) and messages in flight
    /// (handed out, not acked). Partitions the group never popped count
    /// from its committed offset (or the log start).
    pub fn pop_depth(&self, group: &str, model: &ConsumeModel, topic: &str) -> (u64, u64) {
        let Some(t) = self.broker.topic(topic) else { return (0, 0) };
        let now = self.pop.clock.now_ms();
        let (mut ready, mut unacked) = (0u64, 0u64);
        for p in t.partitions() {
            let q = self.queue_id(group, model, p.id());
            let hw = p.high_watermark();
            match self.pop.queue(&q) {
                Some(state) => {
                    let s = state.lock();
                    let waiting = s.inflight.values().filter(|f| f.visible_at > now).count() as u64;
                    let expired = s.inflight.len() as u64 - waiting;
                    ready += hw.saturating_sub(s.next) - s.acked_ahead(hw) + expired + s.held.len() as u64;
                    unacked += waiting;
                }
                None => {
                    let from = self
                        .broker
                        .offsets()
                        .get(&q.group, &q.topic, q.partition)
                        .map_or(p.log_start_offset(), |c| c.offset.max(0) as u64);
                    ready += hw.saturating_sub(from.max(p.log_start_offset()));
                }
            }
        }
        (ready, unacked)
    }
}
