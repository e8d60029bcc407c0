//! Transactional messages (RocketMQ's half messages): a message stored but
//! invisible until its producer commits it; a rollback discards it; a
//! transaction left open is checked back with its producer (the gateway
//! asks) and rolled back after `max_checks` checks.
//!
//! ## Design
//! - Half messages live on the replicated timer shards (`__fjord_timer`),
//!   decisions and check-backs as journal records of the same shard (see
//!   [`crate::timer::halves`]): a transaction survives the loss of the
//!   node that accepted it exactly as it survives a restart, and a commit
//!   hands the message to the timer without leaving the shard, so it is
//!   delivered exactly once, at its own delivery time.
//! - `send_half` is acknowledged once the half is committed on its shard's
//!   replicas (acks=all under the topic's durability).
//! - A transaction's handle is its shard and offset ([`handle_of`]): any
//!   node reaches the shard's leader with it (END_TRANSACTION arrives at
//!   whichever broker the client picks).
//! - Check-backs: each gateway, on each node, claims the due transactions
//!   of the producers connected to it ([`CheckClaim`]) from every shard's
//!   leader; a claim is recorded on the shard before the producer is
//!   asked, so two nodes never check one transaction within an interval.
//! - An earlier version's node-local transaction logs (`tx/half`,
//!   `tx/journal`) move onto the shards once ([`legacy`]).

mod legacy;

use fjord_broker::TopicPartition;
use fjord_broker::placement::TIMER_TOPIC;
use fjord_log::batch::NewRecord;
use serde::{Deserialize, Serialize};

use crate::Messaging;
use crate::error::{MessagingError, Result};
use crate::message::{Message, StoredMessage, headers, new_message_id};
use crate::send::Partitioning;
use crate::timer::{Answer, Call, ShardAt};

/// How long a decision waits for its shard to be served (see
/// [`Messaging::end_transaction`]); within a forwarded call's time.
const DECIDE_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// One attempt at a decision.
enum Tried {
    /// Answered (decided, or failed in a way that may have decided it).
    Done(Result<()>),
    /// Surely decided nothing (the shard not served now): worth again.
    Again(MessagingError),
}

impl Tried {
    /// A local decision's outcome: a write refused before anything was
    /// written is tried again.
    fn decided(r: Result<()>) -> Tried {
        match r {
            Err(e) if e.surely_unwritten() => Tried::Again(e),
            done => Tried::Done(done),
        }
    }
}

/// Makes `attempt` again while it surely decided nothing, for up to
/// [`DECIDE_WAIT`] ([`crate::moving`]); the last failure after that.
async fn decided_while_moving<F, Fut>(mut attempt: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Tried>,
{
    let wait = crate::moving::MoveWait::new("a transaction's decision", DECIDE_WAIT);
    loop {
        match attempt().await {
            Tried::Done(r) => return r,
            Tried::Again(e) => wait.again(e).await?,
        }
    }
}

pub(crate) use legacy::migrate;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTransaction {
    /// Transaction handle.
    pub handle: u64,
    /// Producer group to ask.
    pub producer_group: String,
    /// The half message.
    pub message: StoredMessage,
    /// Check-backs made before this one.
    pub checks: u32,
}

/// Which open transactions a gateway claims for check-back, and RocketMQ's
/// schedule: first after `first_after_ms`, again every `interval_ms`,
/// rolled back at the `max_checks`-th.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckClaim {
    /// Transactions of these producer groups (those the gateway can ask).
    pub groups: Vec<String>,
    /// And transactions for these topics (a gRPC gateway asks any client
    /// publishing to the topic).
    pub topics: Vec<String>,
    /// Age of a transaction before its first check-back.
    pub first_after_ms: i64,
    /// Time between two check-backs.
    pub interval_ms: i64,
    /// The check-back count at which a transaction is rolled back instead.
    pub max_checks: u32,
    /// At most this many transactions per shard and round.
    pub max: usize,
}

impl CheckClaim {
    pub(crate) fn matches(&self, group: &str, topic: &str) -> bool {
        self.groups.iter().any(|g| g == group) || self.topics.iter().any(|t| t == topic)
    }
}

/// Bits of a handle holding the half's offset in its shard; the bits above
/// hold the shard's index + 1 (so no handle of an earlier version, a
/// node-local log offset, is ever taken for one).
const OFFSET_BITS: u32 = 48;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Shards a handle can name (handles stay positive as an `i64`).
const MAX_SHARDS: u64 = (1 << (63 - OFFSET_BITS)) - 1;

/// The handle of the transaction whose half is at `offset` of timer shard
/// `shard`.
pub(crate) fn handle_of(shard: u32, offset: u64) -> u64 {
    ((u64::from(shard) + 1) << OFFSET_BITS) | (offset & OFFSET_MASK)
}

/// [`handle_of`], refusing a shard or offset a handle cannot name.
pub(crate) fn checked_handle(shard: u32, offset: u64) -> Result<u64> {
    if offset > OFFSET_MASK || u64::from(shard) >= MAX_SHARDS {
        return Err(MessagingError::Internal(format!("half message at {shard}:{offset} cannot be named by a handle")));
    }
    Ok(handle_of(shard, offset))
}

/// The shard and offset a handle names.
fn split(handle: u64) -> Result<(u32, u64)> {
    let shard = handle >> OFFSET_BITS;
    if shard == 0 || shard > MAX_SHARDS {
        return Err(MessagingError::InvalidRequest(format!("transaction {handle} is not open")));
    }
    Ok(((shard - 1) as u32, handle & OFFSET_MASK))
}

impl Messaging {
    /// Stores a half message: invisible until committed; acknowledged once
    /// committed on its timer shard.
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
        let handle = self.store_half(rec).await?;
        Ok(HalfReceipt { id, handle, partition: TopicPartition::new(&msg.topic, p) })
    }

    /// Stores a half message's record on a shard (one this node serves, or
    /// through a node serving one); returns its handle once committed.
    pub(crate) async fn store_half(&self, rec: NewRecord) -> Result<u64> {
        if self.serves_a_timer_shard() {
            let (shard, offset) = self.store_here(vec![rec]).await?;
            return checked_handle(shard, offset);
        }
        let node = self.shard_leading_node()?;
        match self.call_timer(node, Call::StoreHalf { record: (&rec).into() }).await? {
            Answer::HalfStored { handle } => Ok(handle),
            other => Err(MessagingError::Internal(format!("node {node} answered a half with {other:?}"))),
        }
    }

    /// Commits or rolls back a transaction, at its shard's leader. Ending
    /// one that is not open (a second decision, or an unknown handle) is
    /// refused.
    ///
    /// A shard that is moving (no leader for a moment, its new leader still
    /// loading it, a deposed one refusing the write) is waited out for up
    /// to [`DECIDE_WAIT`], as sends wait for a partition's new leader: a
    /// RocketMQ producer's decision is one-way, and one lost here waits for
    /// the next check-back instead. Only attempts that surely decided
    /// nothing are made again.
    pub async fn end_transaction(&self, handle: u64, outcome: TxOutcome) -> Result<()> {
        let (shard, offset) = split(handle)?;
        if self.broker.topic(TIMER_TOPIC).and_then(|t| t.partition(shard)).is_none() {
            return Err(MessagingError::InvalidRequest(format!("transaction {handle} names no timer shard")));
        }
        decided_while_moving(|| async move {
            match self.shard_at(shard) {
                Ok(ShardAt::Here(s)) => Tried::decided(s.decide(self, offset, outcome).await),
                // That node waits for its shard itself.
                Ok(ShardAt::Node(node)) => {
                    Tried::Done(match self.call_timer(node, Call::EndTransaction { handle, outcome }).await {
                        Ok(Answer::TransactionEnded) => Ok(()),
                        Ok(other) => {
                            Err(MessagingError::Internal(format!("node {node} answered a decision with {other:?}")))
                        }
                        Err(e) => Err(e),
                    })
                }
                Err(e) => Tried::Again(e),
            }
        })
        .await
    }

    /// [`Messaging::end_transaction`] in a shard served here (asked by
    /// another node): a shard this node is still loading is waited for.
    pub(crate) async fn end_transaction_here(&self, handle: u64, outcome: TxOutcome) -> Result<()> {
        let (shard, offset) = split(handle)?;
        decided_while_moving(|| async move {
            match self.serving_or_unavailable(shard) {
                Ok(s) => Tried::decided(s.decide(self, offset, outcome).await),
                Err(e) => Tried::Again(e),
            }
        })
        .await
    }

    /// One round of check-backs over every shard: the open transactions
    /// `claim` selects, recorded as checked (the caller asks their
    /// producers). A transaction reaching `claim.max_checks` is rolled
    /// back instead of returned. A shard that cannot answer now is skipped
    /// (its transactions wait for a later round).
    pub async fn claim_checks(&self, claim: &CheckClaim) -> Result<Vec<OpenTransaction>> {
        if claim.groups.is_empty() && claim.topics.is_empty() {
            return Ok(Vec::new());
        }
        let count = self.broker.topic(TIMER_TOPIC).map_or(0, |t| t.partitions().len() as u32);
        let mut out = Vec::new();
        for shard in 0..count {
            let claimed = match self.shard_at(shard) {
                Ok(ShardAt::Here(s)) => s.claim_checks(self, claim).await,
                Ok(ShardAt::Node(node)) => {
                    match self.call_timer(node, Call::ClaimChecks { shard, claim: claim.clone() }).await {
                        Ok(Answer::Checks(c)) => Ok(c),
                        Ok(other) => {
                            Err(MessagingError::Internal(format!("node {node} answered a claim with {other:?}")))
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match claimed {
                Ok(c) => out.extend(c),
                Err(e) => tracing::debug!(shard, error = %e, "transaction check-backs of a timer shard wait"),
            }
        }
        Ok(out)
    }

    /// [`Messaging::claim_checks`] in shard `shard`, served here.
    pub(crate) async fn claim_checks_here(&self, shard: u32, claim: &CheckClaim) -> Result<Vec<OpenTransaction>> {
        self.serving_or_unavailable(shard)?.claim_checks(self, claim).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_name_their_shard_and_offset_and_never_an_earlier_versions_offset() {
        for (shard, offset) in [(0, 0), (0, 42), (3, OFFSET_MASK), (7, 1 << 40)] {
            let h = checked_handle(shard, offset).expect("handle");
            assert!(i64::try_from(h).is_ok(), "fits RocketMQ's commitLogOffset");
            assert_eq!(split(h).expect("split"), (shard, offset));
        }
        assert!(split(12_345).is_err(), "an earlier version's handle (a log offset) is not open");
        assert!(checked_handle(0, OFFSET_MASK + 1).is_err());
    }
}
