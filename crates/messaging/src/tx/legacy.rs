//! The node-local transaction logs of earlier versions
//! (`<data>/messaging/tx/half`: half messages; `tx/journal`: decisions,
//! copies handed to the timer, check-backs): what they still hold moves
//! onto the timer shards once, then the directory is deleted.
//!
//! - A commit decided but not confirmed as handed to the timer is
//!   scheduled, unless a copy carrying its `fjord.half-ref` is on a shard
//!   already (a crash between the two steps).
//! - An open transaction's half is stored again as a half on a shard,
//!   carrying `fjord.half-ref` (its old handle), unless one is there
//!   already; the old journal then records it as moved. Its producer still
//!   holds the old handle: an END_TRANSACTION with it is refused ("not
//!   open"), and the check-back, asked with the new handle, decides it.
//!   Check counts start again at 0.
//!
//! Each step is recorded in the old journal before the next, and each
//! store is looked up first, so a crash midway moves nothing twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::Broker;
use fjord_log::batch::{Header, NewRecord};
use serde::{Deserialize, Serialize};

use super::TxOutcome;
use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::journal::Journal;
use crate::message::{header, headers};

#[derive(Debug, Serialize, Deserialize)]
enum TxEntry {
    /// Decided (or, with `Rollback`, moved onto the shards by this
    /// migration: no longer open here).
    Decided {
        handle: u64,
        outcome: TxOutcome,
    },
    Scheduled {
        handle: u64,
    },
    Checked {
        handle: u64,
    },
}

/// What the old logs still hold.
struct Leftovers {
    half: Journal,
    journal: Journal,
    /// Open transactions (half-log offsets).
    open: Vec<u64>,
    /// Commits not confirmed as scheduled.
    unconfirmed: Vec<u64>,
}

/// Moves what an earlier version's node-local transaction logs hold onto
/// the timer shards, then deletes them (nothing to do without them).
pub(crate) async fn migrate(m: &Messaging) -> Result<()> {
    let dir = m.dir().join("tx");
    if !dir.join("half").exists() {
        return Ok(());
    }
    let (b, d, durability) = (m.broker.clone(), dir.clone(), m.config.durability);
    let left = Arc::new(blocking(move || open(&b, &d, durability)).await??);
    let (moved, committed) = (left.open.len(), left.unconfirmed.len());
    for &handle in &left.unconfirmed {
        if !m.timer_has_record_with(headers::HALF_REF, &handle.to_string()).await? {
            let copy = half_record(&left, handle, true, m.broker.clock().now_ms()).await?;
            m.schedule(vec![copy]).await?;
        }
        write(&left, TxEntry::Scheduled { handle }).await?;
    }
    for &handle in &left.open {
        if !m.timer_has_record_with(headers::HALF_REF, &handle.to_string()).await? {
            let rec = half_record(&left, handle, false, 0).await?;
            m.store_half(rec).await?;
        }
        write(&left, TxEntry::Decided { handle, outcome: TxOutcome::Rollback }).await?;
    }
    blocking(move || -> Result<()> {
        left.half.close()?;
        left.journal.close()?;
        std::fs::remove_dir_all(&dir).map_err(|e| MessagingError::io("remove the old transaction logs", &dir, e))
    })
    .await??;
    tracing::info!(open = moved, committed, "moved the transactions of an earlier version onto the timer shards");
    Ok(())
}

/// Opens the old logs and lists what is left to move. Blocking file I/O.
fn open(broker: &Broker, dir: &Path, durability: fjord_log::Durability) -> Result<Leftovers> {
    let base = &broker.config().log_defaults;
    let clock = broker.clock().clone();
    let half = Journal::open(&dir.join("half"), "old half log", base, durability, clock.clone())?;
    let journal = Journal::open(&dir.join("journal"), "old tx journal", base, durability, clock)?;
    let mut open = BTreeMap::new();
    half.scan(0, |r| {
        open.insert(r.offset, ());
        Ok(())
    })?;
    let mut unconfirmed = BTreeMap::new();
    journal.scan(0, |r| {
        let e: TxEntry = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
            .map_err(|e| MessagingError::Corrupt { what: "old tx journal", detail: e.to_string() })?;
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
            TxEntry::Checked { .. } => {}
        }
        Ok(())
    })?;
    Ok(Leftovers { half, journal, open: open.into_keys().collect(), unconfirmed: unconfirmed.into_keys().collect() })
}

async fn write(left: &Arc<Leftovers>, e: TxEntry) -> Result<()> {
    let left = left.clone();
    blocking(move || -> Result<()> {
        let v = serde_json::to_vec(&e).map_err(|e| MessagingError::Internal(format!("encode tx entry: {e}")))?;
        let off = left.journal.append_value(v, 0)?;
        left.journal.sync(off)
    })
    .await?
}

/// The old half at `handle` as a record for the shards, marked with its
/// old handle: a committed copy due at its time (not before `now`), or
/// (`committed` false) an open half keeping its producer group.
async fn half_record(left: &Arc<Leftovers>, handle: u64, committed: bool, now: i64) -> Result<NewRecord> {
    let left = left.clone();
    blocking(move || -> Result<NewRecord> {
        let r = left.half.read(handle, 1)?.into_iter().find(|r| r.offset == handle);
        let Some(r) = r else {
            return Err(MessagingError::Corrupt {
                what: "old half log",
                detail: format!("half message {handle} is missing"),
            });
        };
        let mut hs: Vec<Header> = r
            .headers
            .iter()
            .filter(|h| {
                !committed
                    || (h.key.as_ref() != headers::DELIVER_AT.as_bytes()
                        && h.key.as_ref() != headers::PRODUCER_GROUP.as_bytes())
            })
            .cloned()
            .collect();
        if committed {
            let due = header(&r, headers::DELIVER_AT).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0).max(now);
            hs.push(Header {
                key: Bytes::from_static(headers::DELIVER_AT.as_bytes()),
                value: Some(Bytes::from(due.to_string())),
            });
        }
        hs.push(Header {
            key: Bytes::from_static(headers::HALF_REF.as_bytes()),
            value: Some(Bytes::from(handle.to_string())),
        });
        Ok(NewRecord { timestamp: Some(r.timestamp), key: r.key.clone(), value: r.value.clone(), headers: hs })
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::{MessagingConfig, TxOutcome};
    use fjord_broker::{BrokerConfig, TopicConfig, TopicPartition};
    use fjord_log::ManualClock;

    const T0: i64 = 1_700_000_000_000;

    async fn open_node(dir: &Path, clock: Arc<ManualClock>) -> Arc<Messaging> {
        let b = Broker::open(BrokerConfig::new(dir), clock).await.expect("broker");
        if b.topic("t").is_none() {
            b.create_topic("t", 1, TopicConfig::default()).await.expect("topic");
        }
        Messaging::open(b, MessagingConfig::default()).await.expect("messaging")
    }

    async fn visible(m: &Messaging) -> Vec<String> {
        m.deliver_due().await.expect("deliver");
        let recs = m.broker.read_records(&TopicPartition::new("t", 0), 0, 1 << 20).await.expect("read");
        recs.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string()).collect()
    }

    /// An earlier version's logs: `open` halves left open, `committed`
    /// halves decided as commits but not confirmed as scheduled.
    fn old_logs(m: &Messaging, clock: &Arc<ManualClock>, open: &[&str], committed: &[&str]) {
        let dir = m.dir().join("tx");
        let base = &m.broker.config().log_defaults;
        let d = fjord_log::Durability::EveryWrite;
        let half = Journal::open(&dir.join("half"), "old half log", base, d, clock.clone()).expect("half");
        let journal = Journal::open(&dir.join("journal"), "old journal", base, d, clock.clone()).expect("journal");
        for body in open.iter().chain(committed) {
            let msg = Message::new("t", Bytes::from(body.to_string()));
            let rec = m.timer_record(&msg, body, 0, 0, &[(headers::PRODUCER_GROUP, "pg".to_string())]);
            let handle = half.append(&rec, T0).expect("append");
            half.sync(handle).expect("sync");
            if committed.contains(body) {
                let e = serde_json::to_vec(&TxEntry::Decided { handle, outcome: TxOutcome::Commit }).expect("json");
                let o = journal.append_value(e, 0).expect("decide");
                journal.sync(o).expect("sync");
            }
        }
        half.close().expect("close");
        journal.close().expect("close");
    }

    /// Committed transactions are delivered once; open ones become open
    /// transactions on the shards, decided through their check-back.
    #[tokio::test]
    async fn an_earlier_versions_transactions_move_onto_the_shards() {
        let dir = tempfile::tempdir().expect("tmp");
        let clock = Arc::new(ManualClock::new(T0));
        let m = open_node(dir.path(), clock.clone()).await;
        old_logs(&m, &clock, &["open-1", "open-2"], &["done-1"]);
        m.shutdown().await.expect("shutdown");
        m.broker().shutdown().await.expect("broker shutdown");
        drop(m);
        let m = open_node(dir.path(), clock.clone()).await;
        assert!(!m.dir().join("tx").exists(), "the old logs are gone");
        assert_eq!(visible(&m).await, vec!["done-1"]);
        assert_eq!(m.timer_stats().open_transactions, 2);
        let claim = crate::CheckClaim {
            groups: vec!["pg".into()],
            topics: vec![],
            first_after_ms: 0,
            interval_ms: 60_000,
            max_checks: 15,
            max: 10,
        };
        let due = m.claim_checks(&claim).await.expect("claim");
        let mut bodies: Vec<String> = due
            .iter()
            .map(|t| String::from_utf8_lossy(t.message.body.as_deref().unwrap_or_default()).to_string())
            .collect();
        bodies.sort();
        assert_eq!(bodies, vec!["open-1", "open-2"]);
        for t in &due {
            m.end_transaction(t.handle, TxOutcome::Commit).await.expect("commit");
        }
        let mut seen = visible(&m).await;
        seen.sort();
        assert_eq!(seen, vec!["done-1", "open-1", "open-2"]);
        // Moved once: a restart moves and delivers nothing more.
        drop(m);
        let m = open_node(dir.path(), clock).await;
        assert_eq!(visible(&m).await.len(), 3);
        assert_eq!(m.timer_stats().open_transactions, 0);
    }
}
