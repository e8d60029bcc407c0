//! The serving node's side of the pop shards: changes made under a queue's
//! lock are queued for its shard in that order, and one task per shard
//! sends everything queued meanwhile in one write (to the shard's leader,
//! here or on another node), so concurrent pops and acks share a commit.
//!
//! A change is answered once its write is committed (or at once when its
//! caller does not wait, see [`PopRequest::durable`](super::PopRequest)).
//! When a write fails, or the shard refuses a queue's changes (another
//! node loaded it since), the queue stops being served here and its later
//! changes are dropped: a change missing from the shard must not be
//! followed by one that assumes it (a pop's "handed out up to" would count
//! the missing deliveries as done). The queue's next use loads it from its
//! shard, which holds what was committed: an unknown pop is delivered
//! again, an unknown ack is acked again by nobody — at least once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use fjord_broker::BrokerError;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use super::service::{PopEntry, QueueId, Served};
use super::shard::shard_of;
use crate::Messaging;
use crate::error::{MessagingError, Result};

/// Most bytes of changes (about) in one write, well under the shard's
/// `max.message.bytes` and the node-to-node frame cap.
const MAX_WRITE_BYTES: usize = 4 << 20;

/// What became of a write.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Written; these queues' changes (under these tokens) were refused.
    Written(Arc<HashSet<(QueueId, u64)>>),
    /// Not written, or not known to be.
    Failed(Arc<MessagingError>),
}

/// A change on its way; [`Messaging::pop_settle`] waits for it.
#[derive(Debug)]
pub(crate) struct Ticket {
    outcome: watch::Receiver<Option<Outcome>>,
    q: QueueId,
    token: u64,
}

#[derive(Debug)]
struct Pending {
    changes: Vec<(u64, PopEntry)>,
    done: watch::Sender<Option<Outcome>>,
}

impl Default for Pending {
    fn default() -> Self {
        Pending { changes: Vec::new(), done: watch::channel(None).0 }
    }
}

/// One shard's queue of changes.
#[derive(Debug, Default)]
struct Writer {
    pending: Mutex<Pending>,
    wake: Notify,
    /// Queues (with their token) whose changes are dropped from now on.
    poisoned: Mutex<HashSet<(QueueId, u64)>>,
    /// Its task ended (shutdown): changes are refused.
    closed: std::sync::atomic::AtomicBool,
}

/// The writers, by shard.
#[derive(Debug, Default)]
pub(crate) struct Writers(Mutex<HashMap<u32, Arc<Writer>>>);

impl Messaging {
    /// Queues a change of `q` (served here under `served`'s token) for its
    /// shard. Call under the queue's lock, so changes keep its order.
    pub(crate) fn pop_write(&self, served: &Served, e: PopEntry) -> Result<Ticket> {
        let q = e.queue().cloned().ok_or_else(|| MessagingError::Internal("a pop change names no queue".into()))?;
        let count = self.pop_shard_count()?;
        let writer = self.writer(shard_of(&q, count))?;
        if writer.poisoned.lock().contains(&(q.clone(), served.token)) {
            let e = Arc::new(not_served(&q));
            return Ok(Ticket { outcome: watch::channel(Some(Outcome::Failed(e))).1, q, token: served.token });
        }
        let mut p = writer.pending.lock();
        if writer.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(MessagingError::ShuttingDown);
        }
        p.changes.push((served.token, e));
        let outcome = p.done.subscribe();
        drop(p);
        writer.wake.notify_one();
        Ok(Ticket { outcome, q, token: served.token })
    }

    /// Waits for the changes a caller queued when `durable` (else returns
    /// at once: the writers send them within moments anyway). Changes of
    /// queues in different shards go in different writes: each is waited
    /// for; the first failure is returned.
    pub(crate) async fn pop_settle(&self, tickets: impl IntoIterator<Item = Ticket>, durable: bool) -> Result<()> {
        if !durable {
            return Ok(());
        }
        for mut t in tickets {
            let outcome = t
                .outcome
                .wait_for(Option::is_some)
                .await
                .map_err(|_| MessagingError::ShuttingDown)?
                .clone()
                .ok_or(MessagingError::ShuttingDown)?;
            match outcome {
                Outcome::Written(refused) if refused.contains(&(t.q.clone(), t.token)) => return Err(not_served(&t.q)),
                Outcome::Written(_) => {}
                Outcome::Failed(e) => return Err(share(&e)),
            }
        }
        Ok(())
    }

    /// Waits (a while at most) until every change queued so far is sent:
    /// at shutdown, so what callers did not wait for is not left behind.
    pub(crate) async fn pop_flush(&self, within: std::time::Duration) {
        let writers: Vec<Arc<Writer>> = self.pop.writers.0.lock().values().cloned().collect();
        let waits = writers.iter().map(|w| {
            let mut rx = w.pending.lock().done.subscribe();
            w.wake.notify_one();
            async move {
                let _ = rx.wait_for(Option::is_some).await;
            }
        });
        let _ = tokio::time::timeout(within, futures_util::future::join_all(waits)).await;
    }

    /// Forgets what was poisoned for `q` (it was loaded again).
    pub(crate) fn pop_unpoison(&self, q: &QueueId) {
        let Ok(count) = self.pop_shard_count() else { return };
        if let Some(w) = self.pop.writers.0.lock().get(&shard_of(q, count)) {
            w.poisoned.lock().retain(|(p, _)| p != q);
        }
    }

    /// Partitions of `__fjord_pop` (fixed once created).
    pub(crate) fn pop_shard_count(&self) -> Result<usize> {
        match self.broker.topic(fjord_broker::placement::POP_TOPIC) {
            Some(t) => Ok(t.partitions().len()),
            None => Err(BrokerError::Unavailable("the pop state topic does not exist yet".into()).into()),
        }
    }

    fn writer(&self, shard: u32) -> Result<Arc<Writer>> {
        let mut all = self.pop.writers.0.lock();
        if let Some(w) = all.get(&shard) {
            return Ok(w.clone());
        }
        let w = Arc::new(Writer::default());
        all.insert(shard, w.clone());
        let me = self.self_ref()?;
        tokio::spawn(run(Arc::downgrade(&me), shard, w.clone()));
        Ok(w)
    }
}

fn not_served(q: &QueueId) -> MessagingError {
    BrokerError::Unavailable(format!("the pop queue of {} on {} moved (loaded again at its next use)", q.group, q.tp()))
        .into()
}

/// The error again, for each waiter of a write.
fn share(e: &MessagingError) -> MessagingError {
    if e.possibly_written() {
        MessagingError::PossiblyWritten(e.to_string())
    } else {
        BrokerError::Unavailable(e.to_string()).into()
    }
}

/// Sends the shard's changes, one write at a time, until shutdown (then
/// once more, so what was queued before is not left behind).
async fn run(m: Weak<Messaging>, shard: u32, w: Arc<Writer>) {
    loop {
        let stopping = {
            let Some(m) = m.upgrade() else { return };
            tokio::select! {
                _ = w.wake.notified() => false,
                _ = m.stopping() => true,
            }
        };
        let Some(m) = m.upgrade() else { return };
        let Pending { changes, done } = {
            let mut p = w.pending.lock();
            if stopping {
                w.closed.store(true, std::sync::atomic::Ordering::Release);
            }
            std::mem::take(&mut *p)
        };
        let outcome = send(&m, shard, &w, changes).await;
        done.send_replace(Some(outcome));
        if stopping {
            return;
        }
    }
}

async fn send(m: &Messaging, shard: u32, w: &Writer, changes: Vec<(u64, PopEntry)>) -> Outcome {
    let mut refused: HashSet<(QueueId, u64)> = HashSet::new();
    let changes: Vec<(u64, PopEntry)> = {
        let poisoned = w.poisoned.lock();
        changes
            .into_iter()
            .filter(|(t, e)| match e.queue() {
                Some(q) if poisoned.contains(&(q.clone(), *t)) => {
                    refused.insert((q.clone(), *t));
                    false
                }
                _ => true,
            })
            .collect()
    };
    let touched: HashSet<(QueueId, u64)> =
        changes.iter().filter_map(|(t, e)| e.queue().map(|q| (q.clone(), *t))).collect();
    let mut chunks: Vec<Vec<(u64, PopEntry)>> = Vec::new();
    let mut bytes = 0;
    for c in changes {
        let w = c.1.weight();
        match chunks.last_mut() {
            Some(last) if bytes + w <= MAX_WRITE_BYTES => last.push(c),
            _ => {
                bytes = 0;
                chunks.push(vec![c]);
            }
        }
        bytes += w;
    }
    for chunk in chunks {
        match m.pop_shard_write(shard, chunk).await {
            Ok(r) => refused.extend(r),
            Err(e) => {
                // Nothing of this write may be followed by more changes.
                poison(m, w, &touched);
                return Outcome::Failed(Arc::new(e));
            }
        }
    }
    poison(m, w, &refused);
    Outcome::Written(Arc::new(refused))
}

fn poison(m: &Messaging, w: &Writer, queues: &HashSet<(QueueId, u64)>) {
    if queues.is_empty() {
        return;
    }
    w.poisoned.lock().extend(queues.iter().cloned());
    for (q, token) in queues {
        tracing::debug!(group = %q.group, tp = %q.tp(), "pop queue handed back to its shard");
        m.pop.unserve(q, *token);
    }
}
