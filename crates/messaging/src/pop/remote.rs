//! Reaching a pop shard wherever it is led: here, or through the
//! messaging service of the node that leads it. A call is served only by
//! the shard's leader (never passed on).

use fjord_broker::placement::POP_TOPIC;
use fjord_broker::{BrokerError, TopicPartition};
use serde::{Deserialize, Serialize};

use super::service::{PopEntry, QueueId};
use super::shard::{Loaded, shard_of};
use crate::Messaging;
use crate::error::{MessagingError, Result};

/// A call to a shard another node leads.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ShardCall {
    Load { shard: u32, q: QueueId, epoch: i32 },
    Write { shard: u32, changes: Vec<(u64, PopEntry)> },
    Reset { shard: u32, q: QueueId, offset: u64 },
}

/// Its answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ShardAnswer {
    Loaded(Loaded),
    Written { refused: Vec<(QueueId, u64)> },
    Reset,
}

impl Messaging {
    async fn pop_shard_call(&self, index: u32, call: ShardCall) -> Result<ShardAnswer> {
        match self.internal_leader(&TopicPartition::new(POP_TOPIC, index))? {
            Some(node) => self.call_pop_shard(node, call).await,
            None => {
                if self.pop.shards.get(index).is_none() {
                    // Led here, not loaded yet: the placement changed
                    // moments ago.
                    self.reconcile_pop_shards().await;
                }
                self.serve_pop_shard(call).await
            }
        }
    }

    /// Loads `q` for serving it in `epoch` of its partition: its token and
    /// state.
    pub(crate) async fn pop_shard_load(&self, q: &QueueId, epoch: i32) -> Result<Loaded> {
        let shard = shard_of(q, self.pop_shard_count()?);
        match self.pop_shard_call(shard, ShardCall::Load { shard, q: q.clone(), epoch }).await? {
            ShardAnswer::Loaded(loaded) => Ok(loaded),
            other => Err(MessagingError::Internal(format!("a pop shard answered a load with {other:?}"))),
        }
    }

    /// Writes changes to shard `shard`; returns the refused queues.
    pub(crate) async fn pop_shard_write(
        &self,
        shard: u32,
        changes: Vec<(u64, PopEntry)>,
    ) -> Result<Vec<(QueueId, u64)>> {
        match self.pop_shard_call(shard, ShardCall::Write { shard, changes }).await? {
            ShardAnswer::Written { refused } => Ok(refused),
            other => Err(MessagingError::Internal(format!("a pop shard answered a write with {other:?}"))),
        }
    }

    /// Resets `q` at its shard (whoever serves it loads it again).
    pub(crate) async fn pop_shard_reset(&self, q: &QueueId, offset: u64) -> Result<()> {
        let shard = shard_of(q, self.pop_shard_count()?);
        match self.pop_shard_call(shard, ShardCall::Reset { shard, q: q.clone(), offset }).await? {
            ShardAnswer::Reset => Ok(()),
            other => Err(MessagingError::Internal(format!("a pop shard answered a reset with {other:?}"))),
        }
    }

    /// Serves a shard call (from here or another node) on a shard led here.
    pub(crate) async fn serve_pop_shard(&self, call: ShardCall) -> Result<ShardAnswer> {
        let shard = |index: u32| {
            self.pop.shards.get(index).ok_or_else(|| {
                let tp = TopicPartition::new(POP_TOPIC, index);
                MessagingError::from(BrokerError::Unavailable(format!("{tp} is not served here now")))
            })
        };
        match call {
            ShardCall::Load { shard: i, q, epoch } => Ok(ShardAnswer::Loaded(shard(i)?.load(self, q, epoch).await?)),
            ShardCall::Write { shard: i, changes } => {
                Ok(ShardAnswer::Written { refused: shard(i)?.write(self, changes).await? })
            }
            ShardCall::Reset { shard: i, q, offset } => {
                shard(i)?.reset(self, q, offset).await?;
                Ok(ShardAnswer::Reset)
            }
        }
    }

    /// Follows the leadership of the pop shards (at open, on placement
    /// changes and once a second).
    pub(crate) async fn reconcile_pop_shards(&self) {
        self.pop.shards.reconcile(&self.broker).await;
    }
}
