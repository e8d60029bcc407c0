//! An earlier version's node-local pop state (`messaging/pop/`: a snapshot
//! and a journal), moved onto the `__fjord_pop` shards once at start.
//!
//! On a single node it is the queues' truth: every queue goes to its shard
//! as it was, then the directory is deleted (a crash midway moves the same
//! states again). In a cluster that version used it only in the leader
//! epoch it was loaded in, and reopened every queue from the group's
//! committed offset after a restart, which is what a queue new to its shard
//! does now: the directory is deleted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::service::{PopEntry, QueueId};
use super::shard::{Kept, shard_of};
use super::state::QueueState;
use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::journal::Journal;

const SNAPSHOT: &str = "snapshot.json";

#[derive(Debug, Deserialize)]
struct Snapshot {
    journal_from: u64,
    queues: Vec<(QueueId, QueueState)>,
}

/// Reads the old state: every queue it held. Blocking file I/O.
fn read(m: &Messaging, dir: &Path) -> Result<HashMap<QueueId, QueueState>> {
    let base = &m.broker.config().log_defaults;
    let journal =
        Journal::open(&dir.join("journal"), "old pop journal", base, m.config.durability, m.pop.clock.clone())?;
    let path = dir.join(SNAPSHOT);
    let snap: Option<Snapshot> = match std::fs::read(&path) {
        Ok(b) => Some(
            serde_json::from_slice(&b)
                .map_err(|e| MessagingError::Corrupt { what: "old pop snapshot", detail: e.to_string() })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(MessagingError::io("read the old pop snapshot", &path, e)),
    };
    let (mut queues, from): (HashMap<QueueId, QueueState>, u64) = match snap {
        Some(s) => (s.queues.into_iter().collect(), s.journal_from),
        None => (HashMap::new(), 0),
    };
    journal.scan(from, |r| {
        let e: PopEntry = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
            .map_err(|e| MessagingError::Corrupt { what: "old pop journal", detail: e.to_string() })?;
        match &e {
            PopEntry::Forget { topic } => queues.retain(|q, _| &q.topic != topic),
            PopEntry::Drop { topic, partition } => queues.retain(|q, _| &q.topic != topic || q.partition != *partition),
            _ => {
                let Some(q) = e.queue().cloned() else { return Ok(()) };
                let mut slot = queues.remove(&q);
                e.apply_to(&mut slot);
                if let Some(s) = slot {
                    queues.insert(q, s);
                }
            }
        }
        Ok(())
    })?;
    journal.close()?;
    Ok(queues)
}

/// Moves the old state onto the shards (this node leads them all: a
/// single node), or drops it in a cluster; nothing to do without it.
pub(crate) async fn migrate(m: &Arc<Messaging>) -> Result<()> {
    let dir = m.pop.legacy_dir.clone();
    if !dir.exists() {
        return Ok(());
    }
    if m.broker.config().cluster_id.is_none() {
        let (me, d) = (m.clone(), dir.clone());
        let queues = blocking(move || read(&me, &d)).await??;
        let count = m.pop_shard_count()?;
        let mut by_shard: HashMap<u32, Vec<Kept>> = HashMap::new();
        let n = queues.len();
        for (q, state) in queues {
            let k = Kept { q: q.clone(), epoch: -1, token: None, state: Some(state) };
            by_shard.entry(shard_of(&q, count)).or_default().push(k);
        }
        for (index, kept) in by_shard {
            let shard = m.pop.shards.get(index).ok_or_else(|| {
                MessagingError::Internal(format!("pop shard {index} is not served here to move old state onto"))
            })?;
            shard.restore(m, kept).await?;
        }
        tracing::info!(queues = n, "moved the pop queues of an earlier version onto the pop shards");
    } else {
        tracing::info!(dir = %dir.display(), "dropping an earlier version's node-local pop state (queues reopen from their groups' committed progress)");
    }
    let d = dir.clone();
    blocking(move || std::fs::remove_dir_all(&d))
        .await?
        .map_err(|e| MessagingError::io("remove the old pop state", &dir, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use fjord_broker::{Broker, BrokerConfig, TopicConfig};
    use fjord_log::ManualClock;

    use super::*;
    use crate::pop::state::InFlight;
    use crate::{ConsumeModel, Message, MessagingConfig, Partitioning, PopRequest};

    /// An earlier version's journal: queue `g` on `q`/0 opened at 0, with
    /// 0..3 delivered (seq 7, 8, 9) and 0 acked.
    fn write_old_state(dir: &Path, clock: Arc<ManualClock>) {
        let base = fjord_log::LogConfig::default();
        let j = Journal::open(&dir.join("journal"), "old", &base, fjord_log::Durability::EveryWrite, clock).unwrap();
        let q = QueueId { group: "g".into(), topic: "q".into(), partition: 0 };
        let f = |seq| InFlight { visible_at: 1_700_000_600_000, attempt: 1, seq, group: None, holder: None, pop: None };
        let entries = [
            PopEntry::Open { q: q.clone(), start: 0, acked: vec![], delivered: vec![] },
            PopEntry::Pop {
                q: q.clone(),
                upto: 3,
                delivered: vec![(0, f(7)), (1, f(8)), (2, f(9))],
                held: vec![],
                unheld: vec![],
                dropped: vec![],
            },
            PopEntry::Ack { q, offset: 0, seq: 7 },
        ];
        for e in entries {
            let off = j.append_value(serde_json::to_vec(&e).unwrap(), 0).unwrap();
            j.sync(off).unwrap();
        }
        j.close().unwrap();
    }

    #[tokio::test]
    async fn an_earlier_versions_pop_queues_move_onto_the_shards() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let open = || async {
            let b = Broker::open(BrokerConfig::new(dir.path()), clock.clone()).await.unwrap();
            if b.topic("q").is_none() {
                b.create_topic("q", 1, TopicConfig::default()).await.unwrap();
            }
            Messaging::open(b, MessagingConfig::default()).await.unwrap()
        };
        let m = open().await;
        for i in 0..4 {
            m.send(Message::new("q", format!("m{i}")), Partitioning::Auto).await.unwrap();
        }
        m.shutdown().await.unwrap();
        m.broker.shutdown().await.unwrap();
        drop(m);
        let old = dir.path().join("messaging").join("pop");
        std::fs::create_dir_all(&old).unwrap();
        write_old_state(&old, clock.clone());

        let m = open().await;
        assert!(!old.exists(), "moved, then deleted");
        let g = ConsumeModel::Clustering;
        // 1 and 2 are still in flight (their receipts valid), 0 acked: only
        // 3 is handed out.
        let req = PopRequest { invisible: Duration::from_secs(60), ..PopRequest::new("g", "q", 10) };
        let got = m.pop(req).await.unwrap();
        assert_eq!(got.iter().map(|p| p.message.offset).collect::<Vec<_>>(), vec![3]);
        let old_receipt = crate::ReceiptHandle::new("q", 0, 1, 8);
        m.ack("g", &g, &old_receipt).await.unwrap();
        assert_eq!(m.pop_depth("g", &g, "q"), (0, 2));
        m.shutdown().await.unwrap();
        m.broker.shutdown().await.unwrap();
    }
}
