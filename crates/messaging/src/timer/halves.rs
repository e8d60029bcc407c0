//! Transactional (half) messages on the timer's shards.
//!
//! A half message is a scheduled message whose time is not known yet: it
//! is stored on a timer shard like one (target topic and partition, its
//! own delivery time), marked by the producer group it came from
//! (`fjord.producer-group`), and kept out of the wheel while its
//! transaction is open. The decision is a journal record of the same shard
//! (`Decided`): a commit files the half in the wheel, so the timer delivers
//! it exactly once, at its time, as any scheduled message; a rollback
//! forgets it. Check-backs are journal records too (`Checked`, with their
//! time). Everything about a transaction is therefore in one replicated
//! log: a node that comes to lead the shard replays the open transactions,
//! their checks and their decisions exactly as a restart did, and a commit
//! needs no hand-over between two stores (nothing to look up after a
//! crash).
//!
//! A transaction is named by a handle made of its shard and offset
//! ([`crate::tx::handle_of`]), so any node reaches the shard's leader with
//! it. Decisions and check rounds of a shard are serialised
//! (`Shard::deciding`): a transaction is decided once.
//!
//! Invariants: an open half is never trimmed (the shard's start stays at or
//! below its oldest open half); a decision is acknowledged only once
//! committed on the shard; a write whose outcome is unknown stops the shard
//! until it is loaded again, so memory never disagrees with the log.

use std::collections::BTreeMap;

use fjord_log::batch::{NewRecord, Record};

use super::Entry;
use super::shard::{Shard, read_offsets};
use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::message::{StoredMessage, header, header_in, headers};
use crate::tx::{CheckClaim, OpenTransaction, TxOutcome, handle_of};

/// An open transaction of a shard.
#[derive(Debug, Clone)]
pub(crate) struct OpenHalf {
    /// When the half was stored (check-backs start after a timeout).
    pub(super) born_ms: i64,
    /// Producer group to ask.
    pub(super) group: String,
    /// Target topic.
    pub(super) topic: String,
    /// Check-backs made.
    pub(super) checks: u32,
    /// When it was last checked back.
    pub(super) last_check_ms: Option<i64>,
    /// Its delivery time once committed (0: at once).
    pub(super) deliver_at: i64,
}

impl OpenHalf {
    /// A half message stored now; `None` for an ordinary schedule.
    pub(super) fn of_new(r: &NewRecord, now: i64) -> Option<OpenHalf> {
        Some(OpenHalf {
            born_ms: now,
            group: header_in(&r.headers, headers::PRODUCER_GROUP)?.to_string(),
            topic: header_in(&r.headers, headers::TIMER_TOPIC).unwrap_or_default().to_string(),
            checks: 0,
            last_check_ms: None,
            deliver_at: super::deliver_at_of_new(r),
        })
    }

    /// A half message read back from the shard; `None` for anything else.
    pub(super) fn of_record(r: &Record) -> Option<OpenHalf> {
        Some(OpenHalf {
            born_ms: r.timestamp,
            group: header(r, headers::PRODUCER_GROUP)?.to_string(),
            topic: header(r, headers::TIMER_TOPIC)?.to_string(),
            checks: 0,
            last_check_ms: None,
            deliver_at: super::deliver_at_of(r),
        })
    }
}

/// Replays a decision: the halves leave the open set; committed ones are
/// pending at their delivery time.
pub(super) fn replay_decided(
    open: &mut BTreeMap<u64, OpenHalf>,
    pending: &mut BTreeMap<u64, i64>,
    offsets: &[u64],
    outcome: TxOutcome,
) {
    for o in offsets {
        if let Some(half) = open.remove(o)
            && outcome == TxOutcome::Commit
        {
            pending.insert(*o, half.deliver_at);
        }
    }
}

/// Replays a round of check-backs made at `at_ms`.
pub(super) fn replay_checked(open: &mut BTreeMap<u64, OpenHalf>, offsets: &[u64], at_ms: i64) {
    for o in offsets {
        if let Some(half) = open.get_mut(o) {
            half.checks += 1;
            half.last_check_ms = Some(at_ms);
        }
    }
}

impl Shard {
    /// Ends the open transaction whose half is at `offset`; refused when it
    /// is not open (decided already, or unknown). Returns once the decision
    /// is committed on the shard.
    pub(crate) async fn decide(&self, m: &Messaging, offset: u64, outcome: TxOutcome) -> Result<()> {
        let _d = self.deciding.lock().await;
        let _w = self.writers.read().await;
        if !self.serving() {
            return Err(self.not_serving());
        }
        let Some(half) = self.halves.lock().get(&offset).cloned() else {
            let handle = handle_of(self.tp.partition, offset);
            return Err(MessagingError::InvalidRequest(format!("transaction {handle} is not open")));
        };
        self.write_tx(m, &Entry::Decided { offsets: vec![offset], outcome }).await?;
        self.halves.lock().remove(&offset);
        if outcome == TxOutcome::Commit {
            let now = m.broker.clock().now_ms();
            self.wheel.lock().insert(half.deliver_at.max(now), offset);
        }
        Ok(())
    }

    /// One round of check-backs: the open transactions `claim` selects are
    /// recorded as checked and returned for the caller to ask their
    /// producers about; those reaching `claim.max_checks` are rolled back
    /// instead.
    pub(crate) async fn claim_checks(&self, m: &Messaging, claim: &CheckClaim) -> Result<Vec<OpenTransaction>> {
        let _d = self.deciding.lock().await;
        let _w = self.writers.read().await;
        if !self.serving() {
            return Err(self.not_serving());
        }
        let now = m.broker.clock().now_ms();
        let due: Vec<u64> = self
            .halves
            .lock()
            .iter()
            .filter(|(_, h)| h.born_ms <= now - claim.first_after_ms)
            .filter(|(_, h)| h.last_check_ms.is_none_or(|t| now - t >= claim.interval_ms))
            .filter(|(_, h)| claim.matches(&h.group, &h.topic))
            .take(claim.max)
            .map(|(o, _)| *o)
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        self.write_tx(m, &Entry::Checked { offsets: due.clone() }).await?;
        let (mut ask, mut expired) = (Vec::new(), Vec::new());
        {
            let mut open = self.halves.lock();
            replay_checked(&mut open, &due, now);
            for o in due {
                let Some(h) = open.get(&o) else { continue };
                if h.checks >= claim.max_checks {
                    expired.push(o);
                } else {
                    ask.push((o, h.group.clone(), h.checks.saturating_sub(1)));
                }
            }
        }
        if !expired.is_empty() {
            self.write_tx(m, &Entry::Decided { offsets: expired.clone(), outcome: TxOutcome::Rollback }).await?;
            let mut open = self.halves.lock();
            for o in &expired {
                open.remove(o);
            }
            tracing::info!(shard = %self.tp, count = expired.len(), max = claim.max_checks, "transactions unresolved after their check-backs; rolled back");
        }
        let offsets: Vec<u64> = ask.iter().map(|(o, _, _)| *o).collect();
        let p = self.partition.clone();
        let records = blocking(move || read_offsets(&p, &offsets)).await??;
        let by_offset: BTreeMap<u64, Record> = records.into_iter().map(|r| (r.offset, r)).collect();
        let shard = self.tp.partition;
        Ok(ask
            .into_iter()
            .filter_map(|(o, producer_group, checks)| {
                let r = by_offset.get(&o)?;
                let topic = header(r, headers::TIMER_TOPIC).unwrap_or_default();
                let partition = header(r, headers::TIMER_PARTITION).and_then(|v| v.parse().ok()).unwrap_or(0);
                Some(OpenTransaction {
                    handle: handle_of(shard, o),
                    producer_group,
                    message: StoredMessage::from_record(topic, partition, r),
                    checks,
                })
            })
            .collect())
    }

    /// How many transactions of this shard are open.
    pub(crate) fn open_transactions(&self) -> usize {
        self.halves.lock().len()
    }

    async fn write_tx(&self, m: &Messaging, entry: &Entry) -> Result<()> {
        match self.journal(m, entry).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.stop_unless_unwritten(&e, "a transaction record");
                Err(e)
            }
        }
    }
}
