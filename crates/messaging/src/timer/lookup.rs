//! Lookups across every timer shard, each asked of the node that leads and
//! serves it: whether a transaction's commit was handed to the timer
//! already (its `fjord.half-ref`), and a still-scheduled message by id.
//!
//! A lookup answers from every shard or fails: a shard that has no leader
//! now, or whose leader has not replayed it yet, makes it retriable rather
//! than "not found" — the commit recovery would otherwise schedule a
//! second copy of a message whose first one sits on a shard another node
//! leads (a node's own shards move away when it restarts). Only committed
//! records count (below the shard's high watermark): a copy above it may
//! still be cut with a deposed leader's tail.

use fjord_broker::placement::TIMER_TOPIC;
use serde::{Deserialize, Serialize};

use super::ShardAt;
use super::remote::{Answer, Call};
use super::shard::Shard;
use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::message::{StoredMessage, header, headers};

/// What a lookup looks for in a shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Wanted {
    /// A record whose `name` header is `value` (the key index holds it).
    Header { name: String, value: String },
    /// The still-scheduled message of `topic` with this id.
    Scheduled { topic: String, id: String },
}

/// What a shard holds of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Found {
    Nothing,
    Record,
    Scheduled(Box<StoredMessage>),
}

impl Messaging {
    /// Whether any timer shard holds a committed record whose `name` header
    /// is `value`; fails (retriable) when a shard cannot be asked now.
    pub(crate) async fn timer_has_record_with(&self, name: &str, value: &str) -> Result<bool> {
        let wanted = Wanted::Header { name: name.to_string(), value: value.to_string() };
        Ok(!matches!(self.look_up_every_shard(wanted).await?, Found::Nothing))
    }

    /// A still-scheduled message of `topic` with this id, in any shard.
    pub(crate) async fn find_scheduled(&self, topic: &str, id: &str) -> Result<Option<StoredMessage>> {
        let wanted = Wanted::Scheduled { topic: topic.to_string(), id: id.to_string() };
        match self.look_up_every_shard(wanted).await? {
            Found::Scheduled(m) => Ok(Some(*m)),
            Found::Nothing | Found::Record => Ok(None),
        }
    }

    /// Asks every shard in turn (this node's directly, the others' leaders
    /// by a call) until one holds what is wanted.
    async fn look_up_every_shard(&self, wanted: Wanted) -> Result<Found> {
        let count = self.broker.topic(TIMER_TOPIC).map_or(0, |t| t.partitions().len() as u32);
        for shard in 0..count {
            let found = match self.shard_at(shard)? {
                ShardAt::Node(node) => {
                    let call = Call::Lookup { shard, wanted: wanted.clone() };
                    match self.call_timer(node, call).await? {
                        Answer::LookedUp(found) => found,
                        other => {
                            let what = format!("node {node} answered a lookup with {other:?}");
                            return Err(MessagingError::Internal(what));
                        }
                    }
                }
                ShardAt::Here(s) => {
                    let wanted = wanted.clone();
                    blocking(move || look_up(&s, &wanted)).await??
                }
            };
            if !matches!(found, Found::Nothing) {
                return Ok(found);
            }
        }
        Ok(Found::Nothing)
    }

    /// Looks in shard `index`, which this node must serve (a call from
    /// another node, or this node's own lookup).
    pub(super) async fn look_up_here(&self, index: u32, wanted: Wanted) -> Result<Found> {
        let shard = self.serving_or_unavailable(index)?;
        blocking(move || look_up(&shard, &wanted)).await?
    }
}

/// Blocking file I/O.
fn look_up(shard: &Shard, wanted: &Wanted) -> Result<Found> {
    let value = match wanted {
        Wanted::Header { value, .. } => value,
        Wanted::Scheduled { id, .. } => id,
    };
    let recs =
        shard.partition.lookup_key(value.as_bytes(), 16).map_err(|e| MessagingError::log(shard.tp.to_string(), e))?;
    for r in recs {
        match wanted {
            Wanted::Header { name, value } if header(&r, name) == Some(value.as_str()) => return Ok(Found::Record),
            Wanted::Scheduled { topic, id } => {
                let m = StoredMessage::from_record(topic, 0, &r);
                if m.id.as_deref() == Some(id.as_str()) && header(&r, headers::TIMER_TOPIC) == Some(topic.as_str()) {
                    let partition = header(&r, headers::TIMER_PARTITION).and_then(|p| p.parse().ok()).unwrap_or(0);
                    return Ok(Found::Scheduled(Box::new(StoredMessage { partition, ..m })));
                }
            }
            Wanted::Header { .. } => {}
        }
    }
    Ok(Found::Nothing)
}
