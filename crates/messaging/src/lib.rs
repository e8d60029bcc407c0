//! # fjord-messaging: messaging semantics over the broker core
//!
//! The broker core ([`fjord_broker`]) stores records in partitions and keeps
//! Kafka-style committed offsets. This crate adds what RocketMQ is chosen
//! for, once, for every gateway: message properties ([`message`]), broker-side
//! tag and SQL92 filtering ([`fjord_filter`]), queries by key, id, offset and
//! time ([`query`]), delayed and scheduled delivery ([`timer`]), per-message
//! acknowledgement ("pop", [`pop`]), retry with back-off and dead-letter
//! queues ([`retry`]), ordered consumption with partition locks ([`order`]),
//! clustering vs broadcasting progress ([`pull`]), transactional half
//! messages with check-back ([`tx`]), and a directory of the clients
//! consuming for each group ([`members`]).
//!
//! ## Where the state lives
//! Every piece of messaging state is on a replicated internal topic, so it
//! survives the loss of the node that wrote it like any acknowledged
//! write: scheduled messages, transactional (half) messages with their
//! decisions and check-backs, and the timer's journal on `__fjord_timer`
//! (see [`timer`] and [`tx`]); the pop queues' state (deliveries, acks,
//! invisibility) on `__fjord_pop` (see [`pop`]). Per-group settings (max
//! attempts, FIFO) are the broker's group configs ([`groups`]). An earlier
//! version's node-local logs under `<data>/messaging/` are moved onto them
//! once at start.
//!
//! ## Durability
//! Every state change is committed on its internal partition before it is
//! acknowledged (`group-commit` there: fsynced by its in-sync replicas), so
//! an acknowledged schedule, pop, ack or invisibility change survives kill
//! -9, power loss and, with replicas, the loss of its node. Each state
//! machine moves its partition's start past what it no longer needs, so a
//! new leader replays only what still matters.
//!
//! ## Invariants worth naming
//! - A scheduled message is delivered into its target partition exactly
//!   once, never before its time (see [`timer`] for how a crash between
//!   delivering and recording the delivery is resolved).
//! - A popped message is redelivered only when its invisibility expired
//!   without an ack; an acknowledged ack is never undone.
//! - A group's committed progress on a partition is its lowest unacked
//!   offset: everything below it was acked (or filtered out).

pub mod error;
mod forward;
pub mod groups;
mod journal;
pub mod members;
pub mod message;
pub mod moving;
pub mod order;
pub mod pop;
pub mod pull;
pub mod query;
pub mod retry;
pub mod send;
pub mod timer;
pub mod tx;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fjord_broker::Broker;
use fjord_log::Durability;
use tokio::task::JoinHandle;

pub use error::{MessagingError, Result};
pub use groups::{GroupSettings, UNLIMITED_ATTEMPTS};
pub use members::GroupMember;
pub use message::{Delivery, Message, StoredMessage};
pub use pop::{PopRequest, Popped, ReceiptHandle};
pub use pull::{ConsumeModel, OffsetReset, PullRequest, Pulled};
pub use query::QueryResult;
pub use send::{Partitioning, SendReceipt};
pub use tx::{CheckClaim, HalfReceipt, OpenTransaction, TxOutcome};

/// Settings of the messaging layer.
#[derive(Debug, Clone)]
pub struct MessagingConfig {
    /// Furthest a message may be scheduled ahead (default 40 days).
    pub max_delay: Duration,
    /// Resolution of the timer (default 100 ms): messages become visible at
    /// most about this much after their time under normal load.
    pub timer_tick: Duration,
    /// Back-off between consumption attempts of a failed message; the last
    /// step repeats. RocketMQ's: 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m
    /// 20m 30m 1h 2h.
    pub retry_backoff: Vec<Duration>,
    /// Deliveries of one message before it goes to the dead-letter queue,
    /// unless a group sets its own (default 16, as RocketMQ).
    pub max_attempts: u32,
    /// How long an ordered-consumption partition lock lasts without renewal
    /// (default 60 s, RocketMQ's).
    pub order_lock_ttl: Duration,
    /// Most messages a pop queue holds back at once for busy FIFO groups.
    pub max_held_per_queue: usize,
    /// Write a snapshot and trim the journals at least this often.
    pub snapshot_interval: Duration,
    /// Durability of the internal journals; the broker's by default.
    pub durability: Durability,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        let s = Duration::from_secs;
        let m = |n: u64| Duration::from_secs(60 * n);
        MessagingConfig {
            max_delay: s(40 * 86_400),
            timer_tick: Duration::from_millis(100),
            retry_backoff: vec![
                s(10),
                s(30),
                m(1),
                m(2),
                m(3),
                m(4),
                m(5),
                m(6),
                m(7),
                m(8),
                m(9),
                m(10),
                m(20),
                m(30),
                m(60),
                m(120),
            ],
            max_attempts: 16,
            order_lock_ttl: s(60),
            max_held_per_queue: 10_000,
            snapshot_interval: s(30),
            durability: Durability::GroupCommit,
        }
    }
}

impl MessagingConfig {
    /// The back-off before attempt `attempt + 1` (1-based `attempt`).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.retry_backoff.len().saturating_sub(1));
        self.retry_backoff.get(i).copied().unwrap_or(Duration::from_secs(10))
    }
}

/// The messaging layer of one broker. Open it after the broker and before
/// the gateways start: opening recovers the timer and pop state.
#[derive(Debug)]
pub struct Messaging {
    pub(crate) broker: Arc<Broker>,
    pub(crate) config: MessagingConfig,
    pub(crate) timer: timer::TimerService,
    pub(crate) pop: pop::PopService,
    /// When forwarded calls last used each topic here.
    pub(crate) remote_use: forward::RemoteUse,
    /// Deliveries popped here for consumers on other nodes.
    pub(crate) remote_holds: forward::RemoteHolds,
    /// This run's id, sent with forwarded pops (see `forward::holds`).
    pub(crate) session: u64,
    pub(crate) locks: order::PartitionLocks,
    pub(crate) sends: send::RoundRobin,
    pub(crate) groups: groups::GroupTable,
    pub(crate) members: members::MemberDirectory,
    dir: PathBuf,
    /// Lets `&self` methods hand an owned handle to blocking tasks.
    me: std::sync::Weak<Messaging>,
    /// Turns `true` when [`Messaging::shutdown`] starts.
    stop: tokio::sync::watch::Sender<bool>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl Messaging {
    /// Opens (recovering) the messaging state under the broker's data
    /// directory.
    pub async fn open(broker: Arc<Broker>, config: MessagingConfig) -> Result<Arc<Messaging>> {
        let dir = broker.config().data_dir.join("messaging");
        let timer = timer::TimerService::new(&config);
        let pop = pop::PopService::new(&broker, &dir.join("pop"));
        groups::migrate_legacy(&broker, &dir).await?;
        let m = Arc::new_cyclic(|me| Messaging {
            broker,
            locks: order::PartitionLocks::new(config.order_lock_ttl),
            config,
            timer,
            pop,
            sends: Default::default(),
            groups: Default::default(),
            members: Default::default(),
            dir,
            me: me.clone(),
            stop: tokio::sync::watch::channel(false).0,
            tasks: Default::default(),
            remote_use: Default::default(),
            remote_holds: Default::default(),
            session: uuid::Uuid::new_v4().as_u64_pair().0,
        });
        m.register_forwarding();
        m.reconcile_timer().await;
        m.reconcile_pop_shards().await;
        if m.broker.placement().is_none() && m.broker.config().cluster_id.is_none() {
            // Alone, this node leads every timer shard already.
            m.finish_recovery().await?;
        }
        // A deleted topic takes its pop queues along: one created again
        // under the name (offsets from 0) is popped from its start.
        let me = Arc::downgrade(&m);
        m.broker.on_topic_deleted(Arc::new(move |topic: &str| {
            let Some(m) = me.upgrade() else { return };
            m.pop.drop_topic(topic);
            let topic = topic.to_string();
            tokio::spawn(async move {
                for s in m.pop.shards.serving() {
                    if let Err(e) = s.forget(&m, &topic).await {
                        tracing::warn!(%topic, shard = %s.tp, error = %e, "could not drop the pop queues of a deleted topic (dropped at the shard's next trim)");
                    }
                }
            });
        }));
        Ok(m)
    }

    /// What opening could not finish before the timer shards are served:
    /// the transactions and scheduled messages of an earlier version's
    /// node-local logs moved onto the shards. Run at open alone; in a cluster once the node has joined.
    async fn finish_recovery(&self) -> Result<()> {
        tx::migrate(self).await?;
        self.migrate_legacy_timer().await?;
        pop::migrate_legacy(&self.self_ref()?).await
    }

    /// [`Messaging::finish_recovery`] in a cluster: once the node has
    /// joined, retried until it succeeds (the shards may not be served yet).
    fn spawn_recovery(self: &Arc<Self>) -> JoinHandle<()> {
        let me = Arc::downgrade(self);
        let broker = self.broker.clone();
        let stop = self.stop.subscribe();
        tokio::spawn(async move {
            // A node stopped before it joined never gets there.
            let mut stop = stop;
            let mut broker_stop = broker.shutdown_signal();
            let joined = tokio::select! {
                p = broker.joined() => p,
                _ = stop.wait_for(|s| *s) => return,
                _ = broker_stop.wait_for(|s| *s) => return,
            };
            if joined.is_none() {
                return;
            }
            loop {
                let Some(m) = me.upgrade() else { return };
                let outcome = tokio::select! {
                    r = m.finish_recovery() => r,
                    _ = m.stopping() => return,
                };
                match outcome {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(error = %e, "messaging recovery waits for the timer shards"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = m.stopping() => return,
                }
            }
        })
    }

    pub(crate) fn self_ref(&self) -> Result<Arc<Messaging>> {
        self.me.upgrade().ok_or(MessagingError::ShuttingDown)
    }

    /// The broker underneath.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The settings in force.
    pub fn config(&self) -> &MessagingConfig {
        &self.config
    }

    /// Where the messaging state lives.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Starts the timer dispatcher and the pop maintenance (dead-lettering,
    /// progress commits, snapshots); [`Messaging::shutdown`] stops them.
    pub fn start(self: &Arc<Self>) {
        let mut tasks = self.tasks.lock();
        tasks.push(timer::spawn_dispatcher(self.clone()));
        if self.broker.config().cluster_id.is_some() {
            tasks.push(self.spawn_recovery());
        }
        tasks.push(pop::spawn_maintenance(self.clone()));
        tasks.extend(self.spawn_session_announcement());
    }

    /// Resolves when shutdown starts (the messaging layer's or the broker's).
    pub(crate) async fn stopping(&self) {
        let mut mine = self.stop.subscribe();
        let mut broker = self.broker.shutdown_signal();
        tokio::select! {
            _ = mine.wait_for(|s| *s) => {}
            _ = broker.wait_for(|s| *s) => {}
        }
    }

    /// Stops the background tasks (letting a delivery in progress finish),
    /// writes final snapshots and closes the internal logs. Call after the
    /// gateways stopped and before [`Broker::shutdown`].
    pub async fn shutdown(&self) -> Result<()> {
        self.pop_flush(TASK_GRACE).await;
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        // A task in the middle of a call to an unreachable node (a pop
        // maintenance commit, a delivery to a remote target) would hold the
        // stop for its whole timeout: after a grace it is cut short. Each
        // is safe to stop anywhere, as a crash would (the timer's intent
        // and done records, idempotent commits).
        let deadline = tokio::time::Instant::now() + TASK_GRACE;
        for mut t in tasks {
            match tokio::time::timeout_at(deadline, &mut t).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "messaging task failed"),
                Err(_) => {
                    tracing::warn!("a messaging task did not stop within {TASK_GRACE:?}; cut short");
                    t.abort();
                }
            }
        }
        self.timer.close().await?;
        self.pop.shards.close();
        Ok(())
    }
}

/// How long [`Messaging::shutdown`] lets its background tasks finish what
/// they are doing.
const TASK_GRACE: Duration = Duration::from_secs(5);

#[doc(hidden)]
pub mod bench_support {
    pub use crate::timer::wheel::TimingWheel;
}
