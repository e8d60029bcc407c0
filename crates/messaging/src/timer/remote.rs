//! The timer's calls to other nodes: scheduling into a shard another node
//! leads (this one leads none), and reading and appending to a target
//! partition another node leads (a shard delivers wherever its targets
//! are). Each runs at the node that leads what it touches, or fails
//! (retriable) there.

use std::collections::HashSet;

use bytes::Bytes;
use fjord_broker::placement::TIMER_TOPIC;
use fjord_broker::{BrokerError, Leadership, TopicPartition};
use fjord_log::batch::{Header, NewRecord};
use serde::{Deserialize, Serialize};

use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::forward::{b64, b64_opt};
use crate::message::{header, headers};

/// A call to the timer of another node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Call {
    /// Store these scheduled messages in a shard led there.
    Schedule { records: Vec<WireRecord> },
    /// The partition's high watermark, and which of `refs` appear as
    /// `fjord.timer-ref` headers at or after `from` (when given).
    Probe { topic: String, partition: u32, from: Option<u64>, refs: Vec<String> },
    /// Append these delivered copies.
    Deliver { topic: String, partition: u32, records: Vec<WireRecord> },
    /// Look in timer shard `shard` (served there).
    Lookup { shard: u32, wanted: super::lookup::Wanted },
    /// Store this half message in a shard led there.
    StoreHalf { record: WireRecord },
    /// End this transaction (its shard is led there).
    EndTransaction { handle: u64, outcome: crate::tx::TxOutcome },
    /// A round of check-backs in shard `shard` (led there).
    ClaimChecks { shard: u32, claim: crate::tx::CheckClaim },
}

/// What the other node's timer answered.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    Scheduled,
    Probed {
        high_watermark: u64,
        found: Vec<String>,
    },
    Delivered,
    /// The target topic or partition does not exist.
    Gone,
    LookedUp(super::lookup::Found),
    HalfStored {
        handle: u64,
    },
    TransactionEnded,
    Checks(Vec<crate::tx::OpenTransaction>),
}

/// A record on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireRecord {
    timestamp: Option<i64>,
    #[serde(with = "b64_opt")]
    key: Option<Bytes>,
    #[serde(with = "b64_opt")]
    value: Option<Bytes>,
    headers: Vec<WireHeader>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireHeader {
    #[serde(with = "b64")]
    key: Bytes,
    #[serde(with = "b64_opt")]
    value: Option<Bytes>,
}

impl From<&NewRecord> for WireRecord {
    fn from(r: &NewRecord) -> Self {
        WireRecord {
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.iter().map(|h| WireHeader { key: h.key.clone(), value: h.value.clone() }).collect(),
        }
    }
}

impl From<WireRecord> for NewRecord {
    fn from(r: WireRecord) -> Self {
        NewRecord {
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers.into_iter().map(|h| Header { key: h.key, value: h.value }).collect(),
        }
    }
}

/// Bodies per forwarded delivery, well under the node-to-node frame cap.
const DELIVER_CHUNK_BYTES: usize = 8 << 20;

impl Messaging {
    /// Schedules through a node that leads a timer shard (this one leads
    /// none now).
    pub(super) async fn schedule_remote(&self, recs: Vec<NewRecord>) -> Result<()> {
        let node = self.shard_leading_node()?;
        let records = recs.iter().map(WireRecord::from).collect();
        match self.call_timer(node, Call::Schedule { records }).await? {
            Answer::Scheduled => Ok(()),
            other => Err(MessagingError::Internal(format!("node {node} answered a schedule with {other:?}"))),
        }
    }

    /// A node that leads a timer shard (round robin over the shards).
    pub(crate) fn shard_leading_node(&self) -> Result<i32> {
        let count = self.broker.topic(TIMER_TOPIC).map_or(0, |t| t.partitions().len());
        let start = self.timer.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let node = (0..count).find_map(|i| self.remote_leader_of(TIMER_TOPIC, ((start + i) % count) as u32));
        node.ok_or_else(|| BrokerError::Unavailable("no timer shard is served now".into()).into())
    }

    /// `tp`'s high watermark and which of `refs` its records at or after
    /// `from` carry, asked of its leader; `None`: the partition does not
    /// exist.
    pub(super) async fn target_probe(
        &self,
        tp: &TopicPartition,
        from: Option<u64>,
        refs: Vec<String>,
    ) -> Result<Option<(u64, Vec<String>)>> {
        match self.target_leader(tp)? {
            None => self.probe_here(tp, from, refs).await,
            Some(node) => {
                let call = Call::Probe { topic: tp.topic.to_string(), partition: tp.partition, from, refs };
                match self.call_timer(node, call).await? {
                    Answer::Probed { high_watermark, found } => Ok(Some((high_watermark, found))),
                    Answer::Gone => Ok(None),
                    other => Err(MessagingError::Internal(format!("node {node} answered a probe with {other:?}"))),
                }
            }
        }
    }

    /// Appends delivered copies to `tp` at its leader; `false`: the
    /// partition does not exist (never created again by a delivery).
    pub(super) async fn target_append(&self, tp: &TopicPartition, recs: Vec<NewRecord>) -> Result<bool> {
        let Some(node) = self.target_leader(tp)? else { return self.append_here(tp, &recs).await };
        let mut chunk = Vec::new();
        let mut bytes = 0;
        let mut chunks = Vec::new();
        for r in &recs {
            let size = r.value.as_ref().map_or(0, |v| v.len()) + r.key.as_ref().map_or(0, |k| k.len());
            if !chunk.is_empty() && bytes + size > DELIVER_CHUNK_BYTES {
                chunks.push(std::mem::take(&mut chunk));
                bytes = 0;
            }
            bytes += size;
            chunk.push(WireRecord::from(r));
        }
        chunks.push(chunk);
        for records in chunks {
            let call = Call::Deliver { topic: tp.topic.to_string(), partition: tp.partition, records };
            match self.call_timer(node, call).await? {
                Answer::Delivered => {}
                Answer::Gone => return Ok(false),
                other => {
                    return Err(MessagingError::Internal(format!("node {node} answered a delivery with {other:?}")));
                }
            }
        }
        Ok(true)
    }

    /// The node to ask about `tp`: `None` for this one.
    fn target_leader(&self, tp: &TopicPartition) -> Result<Option<i32>> {
        match self.broker.leadership(tp) {
            Leadership::Local => Ok(None),
            Leadership::Remote(n) => Ok(Some(n.node_id)),
            // Not in the cluster's metadata: gone, unless the topic is
            // still here (its leader is away).
            Leadership::Unavailable if self.broker.topic(&tp.topic).is_none() => Ok(None),
            Leadership::Unavailable => Err(BrokerError::Unavailable(format!("{tp} has no leader now")).into()),
        }
    }

    async fn probe_here(
        &self,
        tp: &TopicPartition,
        from: Option<u64>,
        refs: Vec<String>,
    ) -> Result<Option<(u64, Vec<String>)>> {
        let p = match self.broker.partition(tp) {
            Ok(p) => p,
            Err(BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if self.broker.placement().is_some() && !p.is_leading() {
            return Err(BrokerError::Unavailable(format!("{tp} is not led here")).into());
        }
        let hw = p.high_watermark();
        let Some(from) = from else { return Ok(Some((hw, Vec::new()))) };
        let name = tp.to_string();
        let found = blocking(move || -> Result<Vec<String>> {
            let wanted: HashSet<String> = refs.into_iter().collect();
            let mut found = Vec::new();
            let mut offset = from.max(p.log_start_offset());
            while offset < p.log_end_offset() {
                let recs = p.read_appended(offset, 1 << 20).map_err(|e| MessagingError::log(name.clone(), e))?;
                let Some(last) = recs.last().map(|r| r.offset) else { break };
                for r in &recs {
                    if let Some(v) = header(r, headers::TIMER_REF).filter(|v| wanted.contains(*v)) {
                        // A copy not committed yet may still be cut, or
                        // committed: its delivery is undecided until then.
                        if r.offset >= p.high_watermark() {
                            return Err(BrokerError::Unavailable(format!(
                                "{name}: a delivered copy at {} is not committed yet",
                                r.offset
                            ))
                            .into());
                        }
                        found.push(v.to_string());
                    }
                }
                offset = last + 1;
            }
            Ok(found)
        })
        .await??;
        Ok(Some((hw, found)))
    }

    async fn append_here(&self, tp: &TopicPartition, recs: &[NewRecord]) -> Result<bool> {
        // No auto-creation: a topic deleted meanwhile stays deleted.
        match self.broker.partition(tp) {
            Ok(_) => {}
            Err(BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let append = self.append_records(tp, recs, self.broker.clock().now_ms());
        let Ok(appended) = tokio::time::timeout(super::WRITE_DEADLINE, append).await else {
            return Err(BrokerError::Unavailable(format!("{tp} did not commit in time")).into());
        };
        match appended {
            Ok(_) => Ok(true),
            Err(MessagingError::Broker(BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. })) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Serves a timer call from another node.
    pub(crate) async fn serve_timer(&self, call: Call) -> Result<Answer> {
        match call {
            Call::Schedule { records } => {
                self.schedule_here(records.into_iter().map(NewRecord::from).collect()).await.map(|()| Answer::Scheduled)
            }
            Call::Probe { topic, partition, from, refs } => {
                let tp = TopicPartition::new(&topic, partition);
                self.local_only(&tp)?;
                Ok(match self.probe_here(&tp, from, refs).await? {
                    Some((high_watermark, found)) => Answer::Probed { high_watermark, found },
                    None => Answer::Gone,
                })
            }
            Call::Deliver { topic, partition, records } => {
                let tp = TopicPartition::new(&topic, partition);
                let recs: Vec<NewRecord> = records.into_iter().map(NewRecord::from).collect();
                match self.local_only(&tp) {
                    Ok(()) => self
                        .append_here(&tp, &recs)
                        .await
                        .map(|there| if there { Answer::Delivered } else { Answer::Gone }),
                    Err(e) => Err(e),
                }
            }
            Call::Lookup { shard, wanted } => self.look_up_here(shard, wanted).await.map(Answer::LookedUp),
            Call::StoreHalf { record } => {
                let (shard, offset) = self.store_here(vec![NewRecord::from(record)]).await?;
                Ok(Answer::HalfStored { handle: crate::tx::checked_handle(shard, offset)? })
            }
            Call::EndTransaction { handle, outcome } => {
                self.end_transaction_here(handle, outcome).await.map(|()| Answer::TransactionEnded)
            }
            Call::ClaimChecks { shard, claim } => self.claim_checks_here(shard, &claim).await.map(Answer::Checks),
        }
    }

    /// A call about `tp` is served only by its leader (never passed on).
    fn local_only(&self, tp: &TopicPartition) -> Result<()> {
        match self.broker.leadership(tp) {
            Leadership::Local => Ok(()),
            Leadership::Unavailable if self.broker.topic(&tp.topic).is_none() => Ok(()),
            _ => Err(BrokerError::Unavailable(format!("{tp} is not led here")).into()),
        }
    }
}
