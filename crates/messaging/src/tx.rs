//! Transactional messages (RocketMQ's half messages): a message stored but
//! invisible until its producer commits it; a rollback discards it; a
//! transaction left open is reported for check-back (the gateway asks the
//! producer) and rolled back after `max_checks` unanswered checks.
//!
//! ## Design
//! - `send_half` appends the message, with its target and producer group,
//!   to the internal half log (`tx/half/`); durable before it returns.
//! - `end_transaction` first journals the decision (`tx/journal/`), then on
//!   commit hands a copy to the durable timer (due at its own delivery
//!   time, or now), which delivers it exactly once; the copy carries
//!   `fjord.half-ref`, and a `Scheduled` record follows.
//! - Restart: the half log gives the open transactions, the journal their
//!   decisions and checks; a commit decided but not confirmed as scheduled
//!   is looked up in the timer log by its `fjord.half-ref` and scheduled
//!   only if absent, so a commit never yields two copies.
//! - Both logs are trimmed to their ends whenever no transaction is open.
//!   "No transaction is open" must include halves appended but not yet
//!   registered: an append and its registration happen under one lock
//!   (`appending`), and the trim reads the half log's end under that lock,
//!   so a trim never passes a half message whose producer is still waiting
//!   for its fsync.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::{Broker, TopicPartition};
use fjord_log::batch::{Header, NewRecord};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{MessagingError, Result, blocking};
use crate::journal::Journal;
use crate::message::{Message, StoredMessage, header, headers, new_message_id};
use crate::send::Partitioning;
use crate::{Messaging, MessagingConfig};

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxOutcome {
    /// Make the message visible (at its delivery time).
    Commit,
    /// Discard it.
    Rollback,
}

/// A stored half message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfReceipt {
    /// Message id.
    pub id: String,
    /// Transaction handle: pass to [`Messaging::end_transaction`].
    pub handle: u64,
    /// Where it will go on commit.
    pub partition: TopicPartition,
}

/// An open transaction due for a check-back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    /// Transaction handle.
    pub handle: u64,
    /// Producer group to ask.
    pub producer_group: String,
    /// The half message.
    pub message: StoredMessage,
    /// Check-backs already made.
    pub checks: u32,
}

#[derive(Debug, Serialize, Deserialize)]
enum TxEntry {
    Decided { handle: u64, outcome: TxOutcome },
    Scheduled { handle: u64 },
    Checked { handle: u64 },
}

#[derive(Debug, Clone)]
struct Open {
    born_ms: i64,
    group: String,
    checks: u32,
    /// When it was last checked back (in memory only: after a restart every
    /// open transaction is due again, which costs one extra check).
    last_check_ms: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct TxService {
    half: Arc<Journal>,
    journal: Arc<Journal>,
    open: Mutex<BTreeMap<u64, Open>>,
    /// Held from a half's append until it is in `open`, and by a trim while
    /// it decides where to cut (see the module doc).
    appending: Mutex<()>,
    /// Serialises decisions per broker so one handle is decided once.
    decide: tokio::sync::Mutex<()>,
}

impl TxService {
    pub(crate) async fn open(
        broker: &Arc<Broker>,
        dir: &Path,
        config: &MessagingConfig,
    ) -> Result<(TxService, Vec<u64>)> {
        let (b, dir, durability) = (broker.clone(), dir.to_path_buf(), config.durability);
        let clock = broker.clock().clone();
        blocking(move || -> Result<(TxService, Vec<u64>)> {
            std::fs::create_dir_all(&dir).map_err(|e| MessagingError::io("create tx directory", &dir, e))?;
            let base = &b.config().log_defaults;
            let half = Journal::open(&dir.join("half"), "half log", base, durability, clock.clone())?;
            let journal = Journal::open(&dir.join("journal"), "tx journal", base, durability, clock)?;
            let mut open = BTreeMap::new();
            half.scan(0, |r| {
                let group = header(&r, headers::PRODUCER_GROUP).unwrap_or_default().to_string();
                open.insert(r.offset, Open { born_ms: r.timestamp, group, checks: 0, last_check_ms: None });
                Ok(())
            })?;
            let mut unconfirmed = BTreeMap::new();
            journal.scan(0, |r| {
                let e: TxEntry = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                    .map_err(|e| MessagingError::Corrupt { what: "tx journal", detail: e.to_string() })?;
                match e {
                    TxEntry::Decided { handle, outcome } => {
                        open.remove(&handle);
                        if outcome == TxOutcome::Commit {
                            unconfirmed.insert(handle, ());
                        }
                    }
                    TxEntry::Scheduled { handle } => {
                        unconfirmed.remove(&handle);
                    }
                    TxEntry::Checked { handle } => {
                        if let Some(o) = open.get_mut(&handle) {
                            o.checks += 1;
                        }
                    }
                }
                Ok(())
            })?;
            let svc = TxService {
                half: Arc::new(half),
                journal: Arc::new(journal),
                open: Mutex::new(open),
                appending: Mutex::new(()),
                decide: Default::default(),
            };
            Ok((svc, unconfirmed.into_keys().collect()))
        })
        .await?
    }

    fn write(&self, e: &TxEntry) -> Result<()> {
        let v = serde_json::to_vec(e).map_err(|e| MessagingError::Internal(format!("encode tx entry: {e}")))?;
        let off = self.journal.append_value(v, 0)?;
        self.journal.sync(off)
    }

    /// Recovers the half log and the journal after a failed write poisoned
    /// them. Halves past the half log's durable point were never
    /// acknowledged (their sync failed) and are cut: they stop being open,
    /// so a new half written at their offset is not taken for them.
    /// Blocking file I/O.
    pub(crate) fn recover(&self) -> Result<()> {
        if let Some(end) = self.half.recover()? {
            let _a = self.appending.lock();
            self.open.lock().retain(|handle, _| *handle < end);
        }
        self.journal.recover().map(|_| ())
    }

    pub(crate) async fn close(&self) -> Result<()> {
        let (h, j) = (self.half.clone(), self.journal.clone());
        blocking(move || -> Result<()> {
            h.close()?;
            j.close()
        })
        .await?
    }
}

impl Messaging {
    /// Stores a half message: durable, invisible until committed.
    pub async fn send_half(
        &self,
        msg: Message,
        partitioning: Partitioning,
        producer_group: &str,
    ) -> Result<HalfReceipt> {
        msg.validate()?;
        let partitions = self.led_partitions(&msg.topic).await?;
        let p = self.route(&msg, partitioning, &partitions)?;
        let now = self.broker.clock().now_ms();
        let id = msg.id.clone().unwrap_or_else(|| new_message_id(now));
        let at = msg.delivery.deliver_at(now, self.config.max_delay.as_millis() as i64)?.unwrap_or(0);
        let rec = self.timer_record(&msg, &id, at, p, &[(headers::PRODUCER_GROUP, producer_group.to_string())]);
        let me = self.self_ref()?;
        let group = producer_group.to_string();
        let handle = blocking(move || -> Result<u64> {
            let off = {
                let _a = me.tx.appending.lock();
                let off = me.tx.half.append(&rec, now)?;
                me.tx.open.lock().insert(off, Open { born_ms: now, group, checks: 0, last_check_ms: None });
                off
            };
            // A failed sync leaves it open (and unacknowledged): the
            // producer's check-back or the check limit ends it.
            me.tx.half.sync(off)?;
            Ok(off)
        })
        .await??;
        Ok(HalfReceipt { id, handle, partition: TopicPartition::new(&msg.topic, p) })
    }

    /// Commits or rolls back a transaction. Ending one that is not open (a
    /// second decision, or an unknown handle) is refused.
    pub async fn end_transaction(&self, handle: u64, outcome: TxOutcome) -> Result<()> {
        let _d = self.tx.decide.lock().await;
        if !self.tx.open.lock().contains_key(&handle) {
            return Err(MessagingError::InvalidRequest(format!("transaction {handle} is not open")));
        }
        let me = self.self_ref()?;
        blocking(move || me.tx.write(&TxEntry::Decided { handle, outcome })).await??;
        self.tx.open.lock().remove(&handle);
        if outcome == TxOutcome::Commit {
            self.schedule_committed(handle, false).await?;
        }
        self.trim_tx_when_idle().await
    }

    /// Hands a committed half message to the timer (once: `check` first
    /// looks for an earlier copy, for commits interrupted by a crash).
    async fn schedule_committed(&self, handle: u64, check: bool) -> Result<()> {
        if let Some(copy) = self.committed_copy(handle, check).await? {
            self.schedule(vec![copy]).await?;
        }
        let me = self.self_ref()?;
        blocking(move || me.tx.write(&TxEntry::Scheduled { handle })).await??;
        Ok(())
    }

    /// The record to schedule for a committed half message; `None` when
    /// `check` finds one scheduled already.
    async fn committed_copy(&self, handle: u64, check: bool) -> Result<Option<NewRecord>> {
        // Every shard is asked (the copy may be on one another node leads
        // now); a shard that cannot be asked fails the recovery, which is
        // retried, rather than risk a second copy.
        if check && self.timer_has_record_with(headers::HALF_REF, &handle.to_string()).await? {
            return Ok(None);
        }
        let me = self.self_ref()?;
        let now = self.broker.clock().now_ms();
        let copy = blocking(move || -> Result<Option<NewRecord>> {
            let href = handle.to_string();
            let r = me.tx.half.read(handle, 1)?.into_iter().find(|r| r.offset == handle);
            let Some(r) = r else {
                return Err(MessagingError::Corrupt {
                    what: "half log",
                    detail: format!("half message {handle} is missing"),
                });
            };
            let due = header(&r, headers::DELIVER_AT).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0).max(now);
            let mut hs: Vec<Header> = r
                .headers
                .iter()
                .filter(|h| {
                    h.key.as_ref() != headers::DELIVER_AT.as_bytes()
                        && h.key.as_ref() != headers::PRODUCER_GROUP.as_bytes()
                })
                .cloned()
                .collect();
            hs.push(Header {
                key: Bytes::from_static(headers::DELIVER_AT.as_bytes()),
                value: Some(Bytes::from(due.to_string())),
            });
            hs.push(Header { key: Bytes::from_static(headers::HALF_REF.as_bytes()), value: Some(Bytes::from(href)) });
            Ok(Some(NewRecord {
                timestamp: Some(r.timestamp),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: hs,
            }))
        })
        .await??;
        Ok(copy)
    }

    /// Finishes commits a crash interrupted (called once after opening).
    pub(crate) async fn recover_commits(&self, unconfirmed: Vec<u64>) -> Result<()> {
        for handle in unconfirmed {
            self.schedule_committed(handle, true).await?;
        }
        self.trim_tx_when_idle().await
    }

    async fn trim_tx_when_idle(&self) -> Result<()> {
        // The usual case (others open) without a trip to the blocking pool;
        // the decision itself is re-checked under `appending`.
        if !self.tx.open.lock().is_empty() {
            return Ok(());
        }
        let me = self.self_ref()?;
        blocking(move || -> Result<()> {
            // Decisions are serialised (`decide`), so every journal entry
            // below its end belongs to a transaction that is over once
            // nothing is open; entries written after the cut lie past it.
            let (half_end, journal_end) = {
                let _a = me.tx.appending.lock();
                if !me.tx.open.lock().is_empty() {
                    return Ok(());
                }
                (me.tx.half.end(), me.tx.journal.end())
            };
            me.tx.half.trim_before(half_end)?;
            me.tx.journal.trim_before(journal_end)
        })
        .await?
    }

    /// Open transactions older than `older_than_ms`, for check-back, at
    /// most `max`.
    pub async fn open_transactions(&self, older_than_ms: i64, max: usize) -> Result<Vec<OpenTransaction>> {
        self.transactions_to_check(older_than_ms, 0, max).await
    }

    /// Open transactions due for a check-back (RocketMQ's schedule): older
    /// than `first_after_ms` and not checked within the last `interval_ms`,
    /// at most `max`. [`Messaging::record_check`] restarts the interval.
    pub async fn transactions_to_check(
        &self,
        first_after_ms: i64,
        interval_ms: i64,
        max: usize,
    ) -> Result<Vec<OpenTransaction>> {
        let now = self.broker.clock().now_ms();
        let due: Vec<(u64, Open)> = self
            .tx
            .open
            .lock()
            .iter()
            .filter(|(_, o)| o.born_ms <= now - first_after_ms)
            .filter(|(_, o)| o.last_check_ms.is_none_or(|t| now - t >= interval_ms))
            .take(max)
            .map(|(h, o)| (*h, o.clone()))
            .collect();
        let half = self.tx.half.clone();
        blocking(move || -> Result<Vec<OpenTransaction>> {
            let mut out = Vec::new();
            for (handle, o) in due {
                // One unreadable half must not stop the others' check-backs.
                let read = match half.read(handle, 1) {
                    Ok(rs) => rs,
                    Err(e) => {
                        tracing::error!(handle, error = %e, "open transaction's half message unreadable");
                        continue;
                    }
                };
                if let Some(r) = read.into_iter().find(|r| r.offset == handle) {
                    let topic = header(&r, headers::TIMER_TOPIC).unwrap_or_default().to_string();
                    let p = header(&r, headers::TIMER_PARTITION).and_then(|v| v.parse().ok()).unwrap_or(0);
                    let message = StoredMessage::from_record(&topic, p, &r);
                    out.push(OpenTransaction { handle, producer_group: o.group, message, checks: o.checks });
                }
            }
            Ok(out)
        })
        .await?
    }

    /// Records a check-back of an open transaction; after `max_checks` it
    /// is rolled back (RocketMQ: 15). Returns whether it is still open.
    pub async fn record_check(&self, handle: u64, max_checks: u32) -> Result<bool> {
        let now = self.broker.clock().now_ms();
        let checks = match self.tx.open.lock().get_mut(&handle) {
            Some(o) => {
                o.checks += 1;
                o.last_check_ms = Some(now);
                o.checks
            }
            None => return Ok(false),
        };
        let me = self.self_ref()?;
        blocking(move || me.tx.write(&TxEntry::Checked { handle })).await??;
        if checks >= max_checks {
            tracing::info!(handle, checks, "transaction unresolved after its check-backs; rolled back");
            self.end_transaction(handle, TxOutcome::Rollback).await?;
            return Ok(false);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_broker::{BrokerConfig, TopicConfig};
    use fjord_log::ManualClock;

    const T0: i64 = 1_700_000_000_000;

    async fn open(dir: &Path, clock: Arc<ManualClock>) -> Arc<Messaging> {
        let b = Broker::open(BrokerConfig::new(dir), clock).await.expect("broker");
        if b.topic("t").is_none() {
            b.create_topic("t", 1, TopicConfig::default()).await.expect("topic");
        }
        Messaging::open(b, MessagingConfig::default()).await.expect("messaging")
    }

    async fn visible(m: &Messaging) -> usize {
        m.deliver_due().await.expect("deliver");
        m.broker.read_records(&TopicPartition::new("t", 0), 0, 1 << 20).await.expect("read").len()
    }

    async fn decide_only(m: &Messaging, handle: u64) {
        let me = m.self_ref().expect("me");
        blocking(move || me.tx.write(&TxEntry::Decided { handle, outcome: TxOutcome::Commit }))
            .await
            .expect("join")
            .expect("write");
    }

    /// Transactions begun while others end: a trim (run when no
    /// transaction is open) never removes a half whose producer is still
    /// waiting for its fsync, so every one can be checked back and
    /// committed. Before the fix, a trim between a half's append and its
    /// registration cut it off ("offset out of range" on every check).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn trims_never_cut_off_a_half_still_being_stored() {
        let dir = tempfile::tempdir().expect("tmp");
        let clock = Arc::new(ManualClock::new(T0));
        let m = open(dir.path(), clock).await;
        let rounds = 300;
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        let h = m.send_half(Message::new("t", "x"), Partitioning::Auto, "pg").await.expect("half");
                        let due = m.open_transactions(0, usize::MAX).await.expect("check round");
                        assert!(due.iter().any(|t| t.handle == h.handle), "open half {} readable", h.handle);
                        m.end_transaction(h.handle, TxOutcome::Commit).await.expect("commit");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(visible(&m).await, 2 * rounds);
    }

    /// Crash after the commit decision, before the copy was scheduled: the
    /// restart schedules it.
    #[tokio::test]
    async fn commit_decided_then_crash_is_delivered_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let clock = Arc::new(ManualClock::new(T0));
        let m = open(dir.path(), clock.clone()).await;
        let h = m.send_half(Message::new("t", "x"), Partitioning::Auto, "pg").await.expect("half");
        decide_only(&m, h.handle).await;
        drop(m);
        let m = open(dir.path(), clock.clone()).await;
        assert_eq!(visible(&m).await, 1);
        drop(m);
        let m = open(dir.path(), clock).await;
        assert_eq!(visible(&m).await, 1, "no second copy after another restart");
    }

    /// Crash after the copy was scheduled, before that was recorded: the
    /// restart finds the copy and does not schedule another.
    #[tokio::test]
    async fn commit_scheduled_then_crash_is_not_duplicated() {
        let dir = tempfile::tempdir().expect("tmp");
        let clock = Arc::new(ManualClock::new(T0));
        let m = open(dir.path(), clock.clone()).await;
        let h = m.send_half(Message::new("t", "x"), Partitioning::Auto, "pg").await.expect("half");
        decide_only(&m, h.handle).await;
        let copy = m.committed_copy(h.handle, false).await.expect("copy").expect("some");
        m.schedule(vec![copy]).await.expect("schedule");
        drop(m);
        let m = open(dir.path(), clock).await;
        assert_eq!(visible(&m).await, 1);
    }
}
