//! Pop, ack and invisibility changes on one queue.

use std::sync::Arc;
use std::time::Duration;

use fjord_broker::{BrokerError, Partition, TopicPartition};

use super::service::{Lead, PopEntry, QueueId, Served};
use super::state::{Holder, InFlight, QueueState};
use super::writer::Ticket;
use super::{PopRequest, Popped, ReceiptHandle, StartFrom};
use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::message::StoredMessage;
use crate::pull::ConsumeModel;

/// One ack to apply: index in the request, offset, delivery sequence.
type AckAt = (usize, u64, u64);

/// Messages picked by one pop, and the journal's record of them.
struct Picks<'a> {
    tp: &'a TopicPartition,
    invisible_until: i64,
    holder: Option<Holder>,
    /// The pop's name, recorded with a holder's deliveries.
    pop: Option<u64>,
    out: Vec<Popped>,
    delivered: Vec<(u64, InFlight)>,
}

impl Picks<'_> {
    fn deliver(&mut self, s: &mut QueueState, m: StoredMessage, attempt: u32, group: Option<u64>, seq: u64) {
        // A first delivery here may follow an earlier leader's.
        let attempt = if attempt == 1 { s.first_attempt(m.offset) } else { attempt };
        let f = InFlight { visible_at: self.invisible_until, attempt, seq, group, holder: self.holder, pop: self.pop };
        s.inflight.insert(m.offset, f);
        self.delivered.push((m.offset, f));
        let receipt = ReceiptHandle::new(&self.tp.topic, self.tp.partition, m.offset, seq);
        self.out.push(Popped { receipt, attempt, invisible_until: self.invisible_until, message: m });
    }
}

/// What one pop on one queue needs to know.
struct Ask<'a> {
    req: &'a PopRequest,
    max: usize,
    now: i64,
    max_attempts: u32,
    held_cap: usize,
    holder: Option<Holder>,
}

impl Messaging {
    /// Receives up to `max_messages` messages, each invisible to the group
    /// for `invisible`. Expired deliveries come first (attempt + 1), then
    /// held-back FIFO messages whose group is free, then new ones.
    pub async fn pop(&self, req: PopRequest) -> Result<Vec<Popped>> {
        self.pop_for(req, Holder { node: self.broker.config().node_id, session: self.session }).await
    }

    /// [`Messaging::pop`] for a consumer connected to `holder` (this node,
    /// or the node that forwarded the pop). A pop its caller gave up while
    /// it ran (`Messaging::abandon_pop` reached this node first) takes
    /// back what it took and answers nothing: nobody is there to get it.
    pub(crate) async fn pop_for(&self, req: PopRequest, holder: Holder) -> Result<Vec<Popped>> {
        if self.pop.is_abandoned(holder, req.id) {
            return Ok(Vec::new());
        }
        let (group, model, id) = (req.group.clone(), req.model.clone(), req.id);
        let out = self.pop_for_taking(req, holder).await?;
        if !out.is_empty() && self.pop.is_abandoned(holder, id) {
            let receipts: Vec<ReceiptHandle> = out.into_iter().map(|p| p.receipt).collect();
            self.unpop_many(&group, &model, &receipts).await?;
            return Ok(Vec::new());
        }
        Ok(out)
    }

    async fn pop_for_taking(&self, req: PopRequest, holder: Holder) -> Result<Vec<Popped>> {
        if req.max_messages == 0 || req.max_messages > 1024 {
            return Err(MessagingError::InvalidRequest("max_messages must be within 1..=1024".into()));
        }
        let deadline = tokio::time::Instant::now() + req.wait;
        loop {
            let partitions = self.pop_partitions(&req)?;
            // Subscribe before reading so no arrival is missed.
            let mut watches: Vec<_> = partitions.iter().map(|p| p.subscribe()).collect();
            let mut out = Vec::new();
            for p in &partitions {
                if out.len() >= req.max_messages {
                    break;
                }
                match self.pop_queue(&req, p.id().partition, p.clone(), req.max_messages - out.len(), holder).await {
                    Ok(got) => out.extend(got),
                    // What earlier partitions gave is handed out (they are
                    // in flight now): failing the whole pop would leave
                    // them invisible to everyone, unless taken back.
                    Err(e) if !out.is_empty() => {
                        tracing::debug!(partition = %p.id(), error = %e, "a partition of a pop failed; answering the others'");
                        return Ok(out);
                    }
                    Err(e) => return Err(e),
                }
            }
            if !out.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(out);
            }
            let changed = futures_any(&mut watches);
            // Also wake for invisibility expiry: re-check at least every second.
            let wake = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn pop_partitions(&self, req: &PopRequest) -> Result<Vec<Arc<fjord_broker::Partition>>> {
        let topic =
            self.broker.topic(&req.topic).ok_or_else(|| fjord_broker::BrokerError::UnknownTopic(req.topic.clone()))?;
        let mut parts = topic.partitions();
        if req.partition.is_none() {
            // Pops without a partition take from what this node leads.
            let led = self.broker.led_partitions(&req.topic);
            parts.retain(|p| led.contains(&p.id().partition));
        }
        match req.partition {
            Some(p) => {
                parts.retain(|x| x.id().partition == p);
                if parts.is_empty() {
                    return Err(
                        fjord_broker::BrokerError::UnknownPartition { topic: req.topic.clone(), partition: p }.into()
                    );
                }
            }
            None if !parts.is_empty() => {
                let k = (self.pop.rotate.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize) % parts.len();
                parts.rotate_left(k);
            }
            None => {}
        }
        Ok(parts)
    }

    pub(crate) fn queue_id(&self, group: &str, model: &ConsumeModel, tp: &TopicPartition) -> QueueId {
        QueueId { group: model.group_key(group), topic: tp.topic.clone(), partition: tp.partition }
    }

    /// The queue, served here from now on: loaded from its shard, or
    /// created (at the group's committed offset, or where the request says)
    /// when the shard does not know it.
    pub(super) async fn open_queue(&self, q: &QueueId, log: &Partition, start: StartFrom) -> Result<Arc<Served>> {
        if let Some(s) = self.pop.queue(q) {
            return Ok(s);
        }
        let tp = q.tp();
        let epoch = match self.pop.lead(&tp) {
            Lead::Alone(epoch) | Lead::Leading(epoch) => epoch,
            // Only the leader pops (it alone sees the group's progress).
            Lead::NotLeading => {
                return Err(BrokerError::NotLeader { tp: tp.to_string(), leader: None, leader_epoch: -1 }.into());
            }
        };
        let gate = self.pop.opening.lock().entry(q.clone()).or_default().clone();
        let opened = {
            let _one = gate.lock().await;
            match self.pop.queue(q) {
                Some(s) => Ok(s),
                None => self.load_queue(q, log, start, epoch).await,
            }
        };
        let mut opening = self.pop.opening.lock();
        if opening.get(q).is_some_and(|g| Arc::strong_count(g) <= 2) {
            opening.remove(q);
        }
        opened
    }

    /// The queue if this node may serve it, loaded from its shard if it
    /// is not yet (an ack or requeue of a delivery the previous server
    /// made, arriving before any pop here).
    pub(super) async fn served_queue(&self, q: &QueueId) -> Result<Option<Arc<Served>>> {
        if let Some(s) = self.pop.queue(q) {
            return Ok(Some(s));
        }
        if self.pop.lead(&q.tp()) == Lead::NotLeading {
            return Ok(None);
        }
        let Ok(p) = self.broker.partition(&q.tp()) else { return Ok(None) };
        self.open_queue(q, &p, StartFrom::Earliest).await.map(Some)
    }

    async fn load_queue(&self, q: &QueueId, log: &Partition, start: StartFrom, epoch: i32) -> Result<Arc<Served>> {
        let super::shard::Loaded { token, state, previous_epoch } = self.pop_shard_load(q, epoch).await?;
        self.pop_unpoison(q);
        let served = match state {
            Some(mut state) => {
                self.pop.seen(&state);
                // Deliveries whose consumers' connections are gone go back
                // at once. Those recorded without their holder (an earlier
                // version's) count as gone when the queue was served by
                // another node or this one before a restart (another epoch)
                // until now, but not in a reload in the same epoch (this
                // node after a write it cannot account for: the consumers
                // are still connected).
                if self.is_connection_bound(&q.group) {
                    let unknown_lost = previous_epoch != Some(epoch);
                    self.sort_held(q, &mut state, self.pop.clock.now_ms(), unknown_lost);
                }
                Arc::new(Served::new(state, token, epoch))
            }
            None => {
                // New to the shard: from the group's committed progress
                // (an earlier version's queue, or a Kafka client's commit).
                let committed = self.broker.committed_offset(&q.group, &q.tp()).await?.map(|c| {
                    let base = c.offset.max(0) as u64;
                    (base, super::progress::decode(base, &c.metadata))
                });
                let (start, progress) = match committed {
                    Some((o, p)) => (o, p),
                    None => match start {
                        StartFrom::Earliest => (log.log_start_offset(), Default::default()),
                        StartFrom::Latest => (log.high_watermark(), Default::default()),
                    },
                };
                let super::progress::Progress { acked, delivered } = progress;
                let served = Arc::new(Served::new(QueueState::opened(start, &acked, &delivered), token, epoch));
                let ticket = self.pop_write(&served, PopEntry::Open { q: q.clone(), start, acked, delivered })?;
                self.pop_settle(Some(ticket), true).await?;
                served
            }
        };
        self.pop.queues.lock().insert(q.clone(), served.clone());
        Ok(served)
    }

    async fn pop_queue(
        &self,
        req: &PopRequest,
        partition: u32,
        log: Arc<Partition>,
        max: usize,
        holder: Holder,
    ) -> Result<Vec<Popped>> {
        let tp = TopicPartition::new(&req.topic, partition);
        let q = self.queue_id(&req.group, &req.model, &tp);
        // Only a connection-bound group's deliveries end with their holder.
        let holder = self.is_connection_bound(&req.group).then_some(holder);
        let ask = (req.clone(), self.max_attempts(&req.group), self.config.max_held_per_queue);
        let me = self.self_ref()?;
        let state = self.open_queue(&q, &log, req.start).await?;
        let (out, ticket) = blocking(move || -> Result<(Vec<Popped>, Option<Ticket>)> {
            let (req, max_attempts, held_cap) = ask;
            let now = me.pop.clock.now_ms();
            let a = Ask { req: &req, max, now, max_attempts, held_cap, holder };
            let mut s = state.lock();
            let (out, entry) = me.take(&q, &mut s, &log, &a)?;
            let ticket = match entry.map(|e| me.pop_write(&state, e)).transpose() {
                Ok(t) => t,
                Err(e) => {
                    // Changed here, never to reach the shard: served no
                    // more, the queue is loaded again without the change.
                    drop(s);
                    me.pop.unserve(&q, state.token);
                    return Err(e);
                }
            };
            Ok((out, ticket))
        })
        .await??;
        self.pop_settle(ticket, req.durable).await?;
        Ok(out)
    }

    /// Picks messages under the queue lock; returns them and the journal
    /// entry describing the change.
    fn take(
        &self,
        q: &QueueId,
        s: &mut QueueState,
        log: &Partition,
        a: &Ask<'_>,
    ) -> Result<(Vec<Popped>, Option<PopEntry>)> {
        let tp = q.tp();
        // A read that fails stops the picking; what was picked before it
        // is answered with its change (the state in memory has it
        // already), the failure only when nothing was.
        let mut failed: Option<MessagingError> = None;
        let read = |o: u64, max: usize, failed: &mut Option<MessagingError>| match log.read_committed(o, max) {
            Ok(recs) => Some(recs),
            Err(e) => {
                *failed = Some(MessagingError::log(tp.to_string(), e));
                None
            }
        };
        let invisible_until = a.now + a.req.invisible.as_millis() as i64;
        let pop = a.holder.and(a.req.id);
        let mut k = Picks { tp: &tp, invisible_until, holder: a.holder, pop, out: Vec::new(), delivered: Vec::new() };
        let (mut held, mut unheld, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
        // 1. Expired deliveries, oldest first.
        let expired: Vec<(u64, InFlight)> = s
            .inflight
            .iter()
            .filter(|(_, f)| f.visible_at <= a.now && f.attempt < a.max_attempts)
            .map(|(o, f)| (*o, *f))
            .collect();
        for (o, f) in expired {
            if k.out.len() >= a.max {
                break;
            }
            if a.req.fifo && f.group.is_some_and(|g| s.group_busy(g, o)) {
                continue;
            }
            if o < log.log_start_offset() {
                // Deleted (retention, DeleteRecords) while in flight: a read
                // there fails for good, which would fail every pop after.
                s.ack(o, f.seq);
                dropped.push(o);
                continue;
            }
            let Some(recs) = read(o, 1, &mut failed) else { break };
            match recs.into_iter().find(|r| r.offset == o) {
                Some(r) => {
                    let m = StoredMessage::from_record(&tp.topic, tp.partition, &r);
                    k.deliver(s, m, f.attempt + 1, f.group, self.pop.seq());
                }
                None => {
                    // Gone (retention or DeleteRecords): nothing to deliver.
                    s.ack(o, f.seq);
                    dropped.push(o);
                }
            }
        }
        // 2. Held FIFO messages whose group is free now.
        let ready: Vec<(u64, u64)> = s.held.iter().map(|(o, g)| (*o, *g)).collect();
        for (o, g) in ready {
            if k.out.len() >= a.max || failed.is_some() {
                break;
            }
            if o < log.log_start_offset() {
                // Deleted while held back: nothing to deliver (the shard
                // applies it as unheld and acked).
                s.held.remove(&o);
                s.acked.insert(o);
                unheld.push(o);
                dropped.push(o);
                continue;
            }
            if s.group_busy(g, o) {
                continue;
            }
            let Some(recs) = read(o, 1, &mut failed) else { break };
            if let Some(r) = recs.into_iter().find(|r| r.offset == o) {
                s.held.remove(&o);
                unheld.push(o);
                let m = StoredMessage::from_record(&tp.topic, tp.partition, &r);
                k.deliver(s, m, 1, Some(g), self.pop.seq());
            }
        }
        // 3. New messages.
        let start = s.next;
        let mut offset = start.max(log.log_start_offset());
        let hw = log.high_watermark();
        let mut chunk = crate::pull::first_read(a.max);
        'scan: while k.out.len() < a.max && offset < hw && failed.is_none() {
            let Some(recs) = read(offset, chunk, &mut failed) else { break };
            chunk = crate::pull::next_read(chunk);
            let Some(last) = recs.last().map(|r| r.offset) else { break };
            for r in recs {
                if k.out.len() >= a.max {
                    break 'scan;
                }
                // Acked on the node that led before (see `progress`).
                if s.acked.contains(r.offset) {
                    offset = r.offset + 1;
                    continue;
                }
                let m = StoredMessage::from_record(&tp.topic, tp.partition, &r);
                if a.req.filter.matches(&m) {
                    let group =
                        if a.req.fifo { m.group.as_deref().map(|g| fjord_log::key_hash(g.as_bytes())) } else { None };
                    match group {
                        Some(g) if s.group_busy(g, r.offset) => {
                            if s.held.len() >= a.held_cap {
                                break 'scan;
                            }
                            s.held.insert(r.offset, g);
                            held.push((r.offset, g));
                        }
                        _ => k.deliver(s, m, 1, group, self.pop.seq()),
                    }
                }
                offset = r.offset + 1;
            }
            debug_assert!(offset > last || k.out.len() >= a.max);
        }
        s.advance(offset);
        let Picks { out, delivered, .. } = k;
        let changed =
            !delivered.is_empty() || !held.is_empty() || !unheld.is_empty() || !dropped.is_empty() || offset != start;
        if let Some(e) = failed.filter(|_| !changed) {
            return Err(e);
        }
        let entry = changed.then(|| PopEntry::Pop { q: q.clone(), upto: offset, delivered, held, unheld, dropped });
        Ok((out, entry))
    }

    /// Acknowledges one delivery. Fails with [`MessagingError::InvalidReceipt`]
    /// when the receipt is stale (acked already, or redelivered since).
    pub async fn ack(&self, group: &str, model: &ConsumeModel, receipt: &ReceiptHandle) -> Result<()> {
        self.ack_many(group, model, std::slice::from_ref(receipt)).await?.remove(0)
    }

    /// Acknowledges several deliveries with one journal write per queue and
    /// one wait for durability (RocketMQ's batch ack). Results are per
    /// receipt, in order; the call fails as a whole only when the journal
    /// does.
    pub async fn ack_many(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipts: &[ReceiptHandle],
    ) -> Result<Vec<Result<()>>> {
        self.ack_many_with(group, model, receipts, true).await
    }

    /// [`Messaging::ack_many`] answered once the acks are applied and
    /// written, before they are durable: a crash of the machine before the
    /// next sync (within a second) delivers those messages again. For
    /// acks nobody waits for (AMQP's `basic.ack`).
    pub async fn ack_many_unsynced(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipts: &[ReceiptHandle],
    ) -> Result<Vec<Result<()>>> {
        self.ack_many_with(group, model, receipts, false).await
    }

    async fn ack_many_with(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipts: &[ReceiptHandle],
        durable: bool,
    ) -> Result<Vec<Result<()>>> {
        let mut results: Vec<Result<()>> = Vec::with_capacity(receipts.len());
        let mut by_queue: Vec<(QueueId, Vec<AckAt>)> = Vec::new();
        for (i, r) in receipts.iter().enumerate() {
            match r.parse() {
                Ok((topic, partition, offset, seq)) => {
                    results.push(Ok(()));
                    let q = self.queue_id(group, model, &TopicPartition::new(topic, partition));
                    match by_queue.iter_mut().find(|(k, _)| *k == q) {
                        Some((_, v)) => v.push((i, offset, seq)),
                        None => by_queue.push((q, vec![(i, offset, seq)])),
                    }
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let mut stale = Vec::new();
        let mut tickets = Vec::new();
        for (q, acks) in by_queue {
            let Some(state) = self.served_queue(&q).await? else {
                stale.extend(acks.iter().map(|(i, _, _)| *i));
                continue;
            };
            let mut s = state.lock();
            let mut done = Vec::new();
            for (i, offset, seq) in acks {
                if s.ack(offset, seq) {
                    done.push((offset, seq));
                } else {
                    stale.push(i);
                }
            }
            if !done.is_empty() {
                tickets.push(self.pop_write(&state, PopEntry::Acks { q, acks: done })?);
            }
        }
        self.pop_settle(tickets, durable).await?;
        for i in stale {
            results[i] = Err(MessagingError::InvalidReceipt(receipts[i].0.clone()));
        }
        Ok(results)
    }

    /// Makes a delivery invisible for `invisible` from now (extend, or
    /// shorten: zero makes it visible at once). Returns the new receipt;
    /// the old one becomes stale.
    pub async fn change_invisibility(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipt: &ReceiptHandle,
        invisible: Duration,
    ) -> Result<ReceiptHandle> {
        let (topic, partition, offset, seq) = receipt.parse()?;
        let q = self.queue_id(group, model, &TopicPartition::new(&topic, partition));
        let state = self.served_queue(&q).await?.ok_or_else(|| MessagingError::InvalidReceipt(receipt.0.clone()))?;
        let (ticket, handle) = {
            let mut s = state.lock();
            let Some(f) = s.inflight.get(&offset).copied().filter(|f| f.seq == seq) else {
                return Err(MessagingError::InvalidReceipt(receipt.0.clone()));
            };
            let nf = InFlight {
                visible_at: self.pop.clock.now_ms() + invisible.as_millis() as i64,
                seq: self.pop.seq(),
                ..f
            };
            s.inflight.insert(offset, nf);
            let ticket = self.pop_write(&state, PopEntry::Invisible { q, offset, f: nf })?;
            (ticket, ReceiptHandle::new(&topic, partition, offset, nf.seq))
        };
        self.pop_settle(Some(ticket), true).await?;
        Ok(handle)
    }

    /// Consumption failed: the message becomes visible again after the
    /// back-off for its attempt count (10 s, 30 s, 1 m ... by default).
    pub async fn nack(
        &self,
        group: &str,
        model: &ConsumeModel,
        receipt: &ReceiptHandle,
        attempt: u32,
    ) -> Result<ReceiptHandle> {
        let backoff = self.config.backoff(attempt);
        self.change_invisibility(group, model, receipt, backoff).await
    }

    /// Moves a group's pop queue to `offset` (reset): here when served
    /// here, else at its shard (its server loads it again).
    pub(crate) async fn reset_pop_queue(&self, q: QueueId, offset: u64) -> Result<()> {
        let Some(state) = self.pop.queue(&q) else { return self.pop_shard_reset(&q, offset).await };
        let ticket = {
            let mut s = state.lock();
            s.reset(offset);
            self.pop_write(&state, PopEntry::Reset { q, offset })?
        };
        self.pop_settle(Some(ticket), true).await
    }

    /// Acks an in-flight message on the broker's behalf (dead-lettered).
    pub(crate) async fn ack_internal(&self, q: &QueueId, offset: u64, seq: u64) -> Result<bool> {
        let Some(state) = self.pop.queue(q) else { return Ok(false) };
        let ticket = {
            let mut s = state.lock();
            if !s.ack(offset, seq) {
                return Ok(false);
            }
            self.pop_write(&state, PopEntry::Ack { q: q.clone(), offset, seq })?
        };
        self.pop_settle(Some(ticket), true).await?;
        Ok(true)
    }
}

/// Resolves when any of the watches changes (or all senders are gone).
async fn futures_any(watches: &mut [tokio::sync::watch::Receiver<u64>]) {
    if watches.is_empty() {
        std::future::pending::<()>().await;
    }
    let futs = watches.iter_mut().map(|w| Box::pin(async move { w.changed().await.is_ok() }));
    let (ok, _, _) = futures_util::future::select_all(futs).await;
    if !ok {
        std::future::pending::<()>().await;
    }
}
