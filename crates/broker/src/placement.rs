//! Which node leads each partition, as the cluster layer tells the broker.
//!
//! A broker alone (`fjord serve` without `[cluster]`) leads every
//! partition it holds and decides topic changes itself. In a cluster, the
//! cluster layer (`fjord-cluster`) installs two things:
//! - a [`Placement`]: the nodes and every partition's leader, replicas and
//!   leader epoch, from the controller quorum's metadata. The broker serves
//!   produce, fetch and offset requests only for partitions it leads and
//!   answers the others with [`BrokerError::NotLeader`], naming the leader
//!   when it knows it (gateways turn that into their protocol's redirect);
//! - a [`MetadataAuthority`]: topic creation, deletion, growth and
//!   configuration go to the controller quorum instead of this node's disk.
//!   The cluster layer applies the committed result on every node through
//!   the `*_local` methods (the same code a single node runs).
//!
//! The broker never learns how the cluster agrees; it only reads the result.

use crate::CommittedOffset;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::metadata::NodeInfo;
use crate::partition::{Partition, TopicPartition};
use crate::topic::TopicConfig;

/// Where one partition is led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlacement {
    /// The leader's node id.
    pub leader: i32,
    /// Bumped by every leader change.
    pub leader_epoch: i32,
    /// Every replica, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas, the leader included.
    pub isr: Vec<i32>,
    /// Bumped by every change of leader or in-sync set.
    pub partition_epoch: i32,
    /// Replicas a reassignment in progress adds.
    pub adding: Vec<i32>,
    /// Replicas a reassignment in progress removes.
    pub removing: Vec<i32>,
}

/// The cluster as the controller quorum last described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The node currently leading the controller quorum (-1: none known).
    pub controller_id: i32,
    /// Nodes that serve clients (registered and not fenced).
    pub nodes: Vec<NodeInfo>,
    /// Registered nodes whose lease ran out: they serve nothing.
    pub fenced: Vec<NodeInfo>,
    /// The controller quorum's voters.
    pub controllers: Vec<i32>,
    /// Partitions of each topic, in index order.
    pub topics: HashMap<String, Vec<PartitionPlacement>>,
}

impl Placement {
    /// A node by id.
    pub fn node(&self, id: i32) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.node_id == id)
    }

    /// One partition's placement.
    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionPlacement> {
        self.topics.get(&tp.topic)?.get(tp.partition as usize)
    }

    /// How a protocol that numbers queues per broker (RocketMQ remoting)
    /// numbers `topic`'s partitions on `node`, stable across changes of
    /// leader: first the partitions whose preferred leader (first replica)
    /// is `node`, then every other one, each group in partition order.
    /// Returns that order and the size of the first group. The numbering
    /// changes only when a partition's preferred leader does (a
    /// reassignment): a client's queue keeps naming the same partition
    /// while leaders move, so its position in the queue stays valid.
    pub fn queue_order(&self, topic: &str, node: i32) -> (Vec<u32>, usize) {
        let Some(parts) = self.topics.get(topic) else { return (Vec::new(), 0) };
        let (mut order, others): (Vec<u32>, Vec<u32>) =
            (0..parts.len() as u32).partition(|i| parts[*i as usize].replicas.first() == Some(&node));
        let first = order.len();
        order.extend(others);
        (order, first)
    }
}

/// The internal topic holding committed offsets, as Kafka's
/// `__consumer_offsets`: a group is coordinated by the leader of partition
/// `hash(group) % partitions`, which stores its commits (see
/// [`crate::offsets`]).
pub const OFFSETS_TOPIC: &str = "__fjord_offsets";

/// The internal topic holding scheduled (delayed) messages until they are
/// due, with the timer's delivery journal: each partition is a timer shard
/// run by its leader (see `fjord-messaging`'s timer), so a delay survives
/// the loss of the node that accepted it like any replicated write.
pub const TIMER_TOPIC: &str = "__fjord_timer";

/// The internal topic holding the pop/ack state of per-message
/// acknowledgement queues (`fjord-messaging`'s pop queues: RocketMQ 5.x
/// simple consumers, AMQP queues): a queue's changes are records of
/// partition `hash(queue) % partitions`, whose leader keeps every queue of
/// it, so a queue's deliveries and acks survive the loss of the node that
/// served it like any replicated write (KIP-932's `__share_group_state`).
pub const POP_TOPIC: &str = "__fjord_pop";

/// A boxed future, for the object-safe [`MetadataAuthority`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The cluster's side of the broker: decides topic changes for the whole
/// cluster, and reaches the node that serves what this one does not. Each
/// topic change returns once it is committed *and applied on this node*,
/// so a caller that creates a topic can use it right away.
pub trait MetadataAuthority: Send + Sync + std::fmt::Debug {
    /// Creates a topic with `replication_factor` replicas per partition
    /// (`None`: the cluster's default). `here`: every partition led by this
    /// node (when it serves), as RabbitMQ's default `client-local` queue
    /// locator places a queue on the node its declaring client is
    /// connected to; otherwise spread over the serving nodes.
    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: u32,
        replication_factor: Option<u16>,
        config: &'a TopicConfig,
        here: bool,
    ) -> BoxFuture<'a, Result<()>>;
    /// Replicas per partition of a topic created without saying (before
    /// the cap by serving nodes): what Kafka admins read as
    /// `default.replication.factor`.
    fn default_replication_factor(&self) -> u16;
    /// Deletes a topic everywhere.
    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Grows a topic to `total` partitions.
    fn create_partitions<'a>(&'a self, name: &'a str, total: u32) -> BoxFuture<'a, Result<()>>;
    /// Replaces a topic's configuration overrides.
    fn set_topic_config<'a>(&'a self, name: &'a str, config: &'a TopicConfig) -> BoxFuture<'a, Result<()>>;
    /// Replaces a consumer group's settings (empty: removes them).
    fn set_group_config<'a>(&'a self, group: &'a str, config: &'a crate::GroupConfig) -> BoxFuture<'a, Result<()>>;
    /// Applies a document change if the scope is still at `expect`; returns
    /// once this node has applied the outcome (see [`crate::documents`]).
    fn update_documents<'a>(
        &'a self,
        scope: &'a str,
        expect: u64,
        change: &'a crate::DocumentChange,
    ) -> BoxFuture<'a, Result<crate::DocumentUpdate>>;
    /// Calls a service on `node` (see [`crate::services`]).
    fn call_service<'a>(
        &'a self,
        node: i32,
        name: &'a str,
        payload: bytes::Bytes,
    ) -> BoxFuture<'a, Result<bytes::Bytes>>;
    /// Stores offsets on `node`, the coordinator of `group`: for callers
    /// whose clients commit to another node (RocketMQ consumers commit to
    /// the broker of each queue). Per-partition outcomes, in order.
    fn commit_offsets_at<'a>(
        &'a self,
        node: i32,
        group: &'a str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> BoxFuture<'a, Result<Vec<Result<()>>>>;
    /// Starts moving a partition to `target` replicas (`None`: cancels the
    /// reassignment in progress).
    fn reassign_partition<'a>(&'a self, tp: &'a TopicPartition, target: Option<Vec<i32>>) -> BoxFuture<'a, Result<()>>;
    /// Starts emptying node `node`: its replicas move to other nodes.
    fn decommission_node(&self, node: i32) -> BoxFuture<'_, Result<()>>;
    /// Elects `tp`'s leader: its preferred replica, or (`unclean`) any
    /// serving replica when no leader serves.
    fn elect_leader<'a>(&'a self, tp: &'a TopicPartition, unclean: bool) -> BoxFuture<'a, Result<()>>;
    /// Reads offsets of `group` from `node`, its coordinator.
    fn fetch_offsets_at<'a>(
        &'a self,
        node: i32,
        group: &'a str,
        partitions: Vec<TopicPartition>,
    ) -> BoxFuture<'a, Result<Vec<Option<CommittedOffset>>>>;
    /// The states of `partitions` as `node` (their leader) reports them;
    /// `None` for one it does not lead.
    fn partition_states_at(
        &self,
        node: i32,
        partitions: Vec<TopicPartition>,
    ) -> BoxFuture<'_, Result<Vec<Option<crate::PartitionState>>>>;
}

/// Who leads a partition, from this node's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This node.
    Local,
    /// Another node, known and serving.
    Remote(NodeInfo),
    /// Nobody that can serve it now (its leader is fenced or unknown).
    Unavailable,
}

impl Broker {
    /// Installs the cluster's placement (the cluster layer calls this after
    /// every metadata change). Fetches waiting on partitions that moved
    /// away are not woken: they answer at their deadline, and the next
    /// request is redirected.
    pub fn set_placement(&self, placement: Placement) {
        self.install_placement_with(|_| Some(placement));
    }

    /// Installs the placement `change` makes of the installed one (none:
    /// keeps it), with this node's pending resignations applied; one
    /// install at a time, so a change never reinstalls an older view.
    pub(crate) fn install_placement_with(&self, change: impl FnOnce(Option<&Placement>) -> Option<Placement>) {
        {
            let mut slot = self.placement.write();
            let Some(mut placement) = change(slot.as_deref()) else { return };
            self.apply_resignations(&mut placement);
            *slot = Some(Arc::new(placement));
        }
        for topic in self.topics() {
            self.adopt_leader_epochs(&topic);
        }
        self.placement_changes.send_modify(|n| *n += 1);
    }

    /// Moves partition `tp` to `target` replicas, preferred leader first,
    /// while it keeps serving (`None`: cancels a move in progress). Returns
    /// once the move started; the new replicas copy the log, and the old
    /// ones go once the new are in sync.
    pub async fn reassign_partition(&self, tp: &TopicPartition, target: Option<Vec<i32>>) -> Result<()> {
        let topic = self.topic(&tp.topic).ok_or_else(|| BrokerError::UnknownTopic(tp.topic.to_string()))?;
        if topic.partition(tp.partition).is_none() {
            return Err(BrokerError::UnknownPartition { topic: tp.topic.to_string(), partition: tp.partition });
        }
        if let Some(authority) = self.authority() {
            return authority.reassign_partition(tp, target).await;
        }
        match target {
            Some(t) if t == [self.config.node_id] => Ok(()),
            Some(t) => Err(BrokerError::InvalidReplicaAssignment(format!(
                "{t:?}: this broker is a single node ({})",
                self.config.node_id
            ))),
            None => Err(BrokerError::NoReassignmentInProgress(tp.to_string())),
        }
    }

    /// Elects `tp`'s leader (Kafka's ElectLeaders): the preferred replica
    /// when it is in sync and serving; `unclean`: any serving replica when
    /// no leader serves (it may lose committed records). A single node
    /// leads everything already.
    pub async fn elect_leader(&self, tp: &TopicPartition, unclean: bool) -> Result<()> {
        let topic = self.topic(&tp.topic).ok_or_else(|| BrokerError::UnknownTopic(tp.topic.to_string()))?;
        if topic.partition(tp.partition).is_none() {
            return Err(BrokerError::UnknownPartition { topic: tp.topic.to_string(), partition: tp.partition });
        }
        match self.authority() {
            Some(authority) => authority.elect_leader(tp, unclean).await,
            None => Err(BrokerError::ElectionNotNeeded(tp.to_string())),
        }
    }

    /// Starts emptying node `node` (in a cluster): every replica it holds
    /// moves to another serving node, and it gets no new ones.
    pub async fn decommission_node(&self, node: i32) -> Result<()> {
        match self.authority() {
            Some(authority) => authority.decommission_node(node).await,
            None => Err(BrokerError::InvalidRequest("a single node cannot be decommissioned".into())),
        }
    }

    /// Watches placement installs (a counter bumped by each).
    pub fn subscribe_placement(&self) -> tokio::sync::watch::Receiver<u64> {
        self.placement_changes.subscribe()
    }

    /// Waits until this node serves as a member of its cluster (the
    /// installed placement lists it) and returns that placement; `None` at
    /// once on a single node. Layers that must tell the other nodes about
    /// this run of the node (what its earlier run held is gone) wait here.
    pub async fn joined(&self) -> Option<Arc<Placement>> {
        self.config.cluster_id.as_ref()?;
        let me = self.config.node_id;
        let mut changes = self.placement_changes.subscribe();
        loop {
            if let Some(p) = self.placement().filter(|p| p.node(me).is_some()) {
                return Some(p);
            }
            // The sender lives as long as the broker, which the caller holds.
            if changes.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The partitions of `topic` led here take the epochs the cluster gives
    /// them, so their batches and fencing agree with what clients are told
    /// (called for every topic when the placement changes, and for a topic
    /// created or grown here afterwards).
    pub(crate) fn adopt_leader_epochs(&self, topic: &crate::Topic) {
        let Some(placement) = self.placement() else { return };
        let Some(parts) = placement.topics.get(&topic.name()) else { return };
        let me = self.config.node_id;
        for (i, a) in parts.iter().enumerate() {
            let Some(p) = topic.partition(i as u32) else { continue };
            // Leading commits with the other in-sync replicas; following
            // takes the leader's commit point (see `crate::replicas`).
            let others: Vec<i32> = a.isr.iter().copied().filter(|r| *r != me).collect();
            let elected = p.set_replica_role_at(a.leader == me, &others, a.partition_epoch);
            if elected {
                self.elections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if topic.name() == OFFSETS_TOPIC {
                if elected {
                    // Commits the old leader stored reached this log, not
                    // this node's map of them.
                    // Their groups' stored membership too, which this
                    // node's coordinator takes over.
                    let (groups, consumer) = (self.groups.clone(), self.consumer_groups.clone());
                    self.offsets.reload_in_background(i as u32, move |stored| {
                        let n = crate::group_store::restore(&groups, &consumer, stored);
                        if n > 0 {
                            tracing::info!(partition = i, groups = n, "coordinator moved here: groups restored");
                        }
                    });
                } else if a.leader != me {
                    self.offsets.mark_stale(i as u32);
                    self.unload_groups_of(i as u32);
                }
            }
            if a.leader == me {
                p.raise_leader_epoch(a.leader_epoch);
            }
        }
    }

    /// Forgets the consumer groups whose offsets live on `__fjord_offsets`
    /// partition `index`, which another node leads now: their membership
    /// is that coordinator's (see `GroupCoordinator::unload`).
    fn unload_groups_of(&self, index: u32) {
        let moved = |g: &str| self.offsets.shard_of(g) == Some(index);
        let dropped = self.groups.unload(moved) + self.consumer_groups().unload(moved);
        if dropped > 0 {
            tracing::info!(partition = index, groups = dropped, "coordinator moved away: group states dropped here");
        }
    }

    /// The installed placement; `None` on a single node.
    pub fn placement(&self) -> Option<Arc<Placement>> {
        self.placement.read().clone()
    }

    /// The cluster's lease on this node's roles now runs until `until`
    /// (renewed by each heartbeat the controller answers). Past it this
    /// node leads no partition and coordinates no group, whatever its
    /// placement says, until renewed: checked by every request, not left
    /// to the task that notices the lapse — a process resumed after a
    /// pause runs requests that were queued meanwhile before any timer
    /// (the checker found an OffsetFetch answered that way from a map its
    /// successor had moved past).
    pub fn renew_lease(&self, until: tokio::time::Instant) {
        *self.lease_until.lock() = Some(until);
    }

    /// Whether this node's lease has run out (never on a single node).
    pub fn lease_lapsed(&self) -> bool {
        self.lease_until.lock().is_some_and(|until| tokio::time::Instant::now() >= until)
    }

    /// Hands topic changes to the cluster's authority. Set once, at start.
    pub fn set_metadata_authority(&self, authority: Arc<dyn MetadataAuthority>) {
        let _ = self.authority.set(authority);
    }

    pub(crate) fn authority(&self) -> Option<&Arc<dyn MetadataAuthority>> {
        self.authority.get()
    }

    /// Who leads `tp`. A single node leads everything it holds.
    pub fn leadership(&self, tp: &TopicPartition) -> Leadership {
        let Some(placement) = self.placement() else { return Leadership::Local };
        match placement.partition(tp) {
            Some(p) if p.leader == self.config.node_id && self.lease_lapsed() => Leadership::Unavailable,
            Some(p) if p.leader == self.config.node_id => Leadership::Local,
            Some(p) => placement.node(p.leader).cloned().map_or(Leadership::Unavailable, Leadership::Remote),
            // Not in the cluster's metadata (yet): a topic this node holds
            // but the controller does not know is not served.
            None => Leadership::Unavailable,
        }
    }

    /// Which node coordinates `group` (its offsets, membership and pops).
    /// A single node coordinates every group.
    pub fn coordinator(&self, group: &str) -> Leadership {
        let Some(placement) = self.placement() else { return Leadership::Local };
        let Some(parts) = placement.topics.get(OFFSETS_TOPIC).filter(|p| !p.is_empty()) else {
            return Leadership::Unavailable;
        };
        let index = (fjord_log::key_hash(group.as_bytes()) % parts.len() as u64) as u32;
        self.leadership(&TopicPartition::new(OFFSETS_TOPIC, index))
    }

    /// How many nodes serve clients: 1 alone. Topics that every node needs
    /// a partition of (retry and dead-letter topics) get this many.
    pub fn serving_nodes(&self) -> u32 {
        self.placement().map_or(1, |p| p.nodes.len().max(1) as u32)
    }

    /// The partitions of `topic` this node leads, ascending: every one on a
    /// single node. What this node serves to protocols that number queues
    /// per broker (RocketMQ) and where it puts messages whose partition it
    /// picks itself.
    pub fn led_partitions(&self, topic: &str) -> Vec<u32> {
        let Some(t) = self.topic(topic) else { return Vec::new() };
        let n = t.partitions().len() as u32;
        match self.placement() {
            None => (0..n).collect(),
            Some(_) if self.lease_lapsed() => Vec::new(),
            Some(p) => match p.topics.get(topic) {
                Some(parts) => {
                    (0..n).filter(|i| parts.get(*i as usize).is_some_and(|a| a.leader == self.config.node_id)).collect()
                }
                None => Vec::new(),
            },
        }
    }

    /// [`Placement::queue_order`] for this node; alone, every partition in
    /// order, all in the first group.
    pub fn queue_order(&self, topic: &str) -> (Vec<u32>, usize) {
        match self.placement() {
            Some(p) => p.queue_order(topic, self.config.node_id),
            None => {
                let n = self.topic(topic).map_or(0, |t| t.partitions().len() as u32);
                ((0..n).collect(), n as usize)
            }
        }
    }

    /// The partition numbered `index` among those of `topic` this node
    /// leads, for protocols that number queues per broker (RocketMQ).
    /// Alone, that is partition `index` itself (when the topic exists or
    /// not: the caller's lookup reports a missing one).
    pub fn led_partition_at(&self, topic: &str, index: u32) -> Option<u32> {
        if self.placement().is_none() {
            return Some(index);
        }
        self.led_partitions(topic).get(index as usize).copied()
    }

    /// The number of `tp` among the partitions of its topic this node
    /// leads (the inverse of [`Broker::led_partition_at`]).
    pub fn led_index_of(&self, tp: &TopicPartition) -> Option<u32> {
        if self.placement().is_none() {
            return Some(tp.partition);
        }
        self.led_partitions(&tp.topic).iter().position(|p| *p == tp.partition).map(|i| i as u32)
    }

    /// The partition, if this node leads it: what produce, fetch and
    /// offset requests are served from.
    pub fn led_partition(&self, tp: &TopicPartition) -> Result<Arc<Partition>> {
        let p = self.partition(tp)?;
        self.check_leader(tp)?;
        Ok(p)
    }

    pub(crate) fn check_leader(&self, tp: &TopicPartition) -> Result<()> {
        let leader = match self.leadership(tp) {
            Leadership::Local => return Ok(()),
            Leadership::Remote(leader) => Some(leader),
            Leadership::Unavailable => None,
        };
        Err(self.not_leader(tp, leader))
    }

    /// NOT_LEADER for `tp`, naming `leader` (when one serves) and the
    /// leader epoch the placement gives the partition.
    pub(crate) fn not_leader(&self, tp: &TopicPartition, leader: Option<NodeInfo>) -> BrokerError {
        let leader_epoch = self.placement().and_then(|p| p.partition(tp).map(|a| a.leader_epoch)).unwrap_or(-1);
        BrokerError::NotLeader { tp: tp.to_string(), leader, leader_epoch }
    }
}
