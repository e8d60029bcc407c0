//! The metadata state machine: nodes, topic placement, and per-group
//! configuration (as Kafka keeps `GROUP` config resources in its metadata
//! log): settings every node reads on its hot paths, so each node serves
//! them from its copy.
//!
//! Liveness follows KRaft: heartbeats go to the controller leader and stay
//! in its memory; only a change of a node's state (fenced, unfenced,
//! decommissioned) is written to the log, so an idle cluster does not grow
//! its log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id.
    pub id: NodeId,
    /// Internode `host:port` (controller traffic, forwarding, replication).
    pub internode: String,
    /// Client listeners by protocol name (`kafka`, `rocketmq_namesrv`,
    /// `rocketmq_broker`, `rocketmq_grpc`, `amqp`, `http`): advertised
    /// `host:port`.
    pub listeners: BTreeMap<String, String>,
    /// Rack, for rack-aware placement.
    pub rack: Option<String>,
    /// Liveness and lifecycle.
    pub state: NodeState,
    /// Bumped by every registration: a restarted node registers again, and
    /// leases name the incarnation they belong to.
    pub incarnation: u64,
}

/// Where a node is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Heartbeating: may lead partitions.
    Active,
    /// Missed its lease: its partitions are unavailable (or, with replicas,
    /// led elsewhere) until it heartbeats again.
    Fenced,
    /// Being emptied: gets no new partitions.
    Decommissioning,
}

/// Where one partition lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Replicas, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// Current leader.
    pub leader: NodeId,
    /// Bumped by every leader change.
    pub leader_epoch: i32,
    /// In-sync replicas, the leader included: those holding everything
    /// committed, from which a new leader is elected. Empty in metadata
    /// written before replication existed: the leader alone (see
    /// [`PartitionAssignment::in_sync`]).
    #[serde(default)]
    pub isr: Vec<NodeId>,
    /// Bumped by every change of leader or in-sync set: a leader's
    /// [`Command::AlterIsr`] names the one it read, so a stale one changes
    /// nothing.
    #[serde(default)]
    pub partition_epoch: i32,
    /// Replicas a reassignment in progress adds (they copy the log and
    /// join the in-sync set before it completes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<NodeId>,
    /// Replicas a reassignment in progress removes once it completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<NodeId>,
}

impl PartitionAssignment {
    /// A new partition: every replica in sync, `leader` leading in epoch 0.
    pub fn new(replicas: Vec<NodeId>, leader: NodeId) -> PartitionAssignment {
        PartitionAssignment {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// The in-sync replicas (the leader alone where none were recorded).
    pub fn in_sync(&self) -> Vec<NodeId> {
        if self.isr.is_empty() { vec![self.leader] } else { self.isr.clone() }
    }
}

/// A topic's identity, configuration overrides and placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicAssignment {
    /// Topic id (UUID text), the same on every node.
    pub id: String,
    /// Configuration overrides (Kafka config names).
    pub config: BTreeMap<String, String>,
    /// Partitions in index order.
    pub partitions: Vec<PartitionAssignment>,
}

/// A change to the metadata, proposed to the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A node joins, or rejoins after a restart (new incarnation).
    RegisterNode {
        /// The node's id.
        id: NodeId,
        /// Internode `host:port`.
        internode: String,
        /// Advertised client listeners.
        listeners: BTreeMap<String, String>,
        /// Rack.
        rack: Option<String>,
    },
    /// A node's lease ran out (decided by the controller leader).
    FenceNode {
        /// The node.
        id: NodeId,
    },
    /// A node is shutting down cleanly (Kafka's controlled shutdown): it
    /// is fenced at once, without waiting for its lease to run out, so its
    /// partitions get new leaders while it still answers their clients.
    ShutdownNode {
        /// The node.
        id: NodeId,
    },
    /// A fenced node heartbeats again.
    UnfenceNode {
        /// The node.
        id: NodeId,
    },
    /// Starts emptying a node.
    DecommissionNode {
        /// The node.
        id: NodeId,
    },
    /// Forgets a node that leads and replicates nothing.
    RemoveNode {
        /// The node.
        id: NodeId,
    },
    /// Creates a topic with its placement.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Identity, config and placement.
        topic: TopicAssignment,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Topic name.
        name: String,
        /// The id of the topic the proposer meant (absent in an earlier
        /// version's log): a retry finds it among the deleted ids and
        /// succeeds, and a topic recreated under the name is not deleted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Adds partitions to a topic.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// The new partitions, appended in order.
        added: Vec<PartitionAssignment>,
        /// How many partitions the proposer saw (absent in an earlier
        /// version's log): a retry of a change that committed finds them
        /// added already and succeeds instead of adding them again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u32>,
    },
    /// Replaces a topic's configuration overrides.
    AlterTopicConfig {
        /// Topic name.
        name: String,
        /// The new overrides.
        config: BTreeMap<String, String>,
    },
    /// Moves a partition: new replicas and leader, epoch bumped.
    AssignPartition {
        /// Topic name.
        name: String,
        /// Partition index.
        partition: u32,
        /// New replicas.
        replicas: Vec<NodeId>,
        /// New leader (one of `replicas`).
        leader: NodeId,
    },
    /// A partition's leader changes its in-sync replicas (a follower fell
    /// behind or caught up). Applied only if `leader`, `leader_epoch` and
    /// `partition_epoch` are still the partition's (else
    /// [`Rejection::Conflict`]).
    AlterIsr {
        /// Topic name.
        name: String,
        /// Partition index.
        partition: u32,
        /// The proposing leader.
        leader: NodeId,
        /// Its leader epoch.
        leader_epoch: i32,
        /// The partition epoch it read.
        partition_epoch: i32,
        /// The new in-sync replicas (the leader included).
        isr: Vec<NodeId>,
    },
    /// Starts moving a partition to `target` replicas (Kafka's
    /// AlterPartitionReassignments): the new ones are added and copy the
    /// log; [`Command::CompleteReassignment`] drops the others once every
    /// target replica is in sync. `None` cancels a reassignment in
    /// progress (the added replicas go).
    ReassignPartition {
        /// Topic name.
        name: String,
        /// Partition index.
        partition: u32,
        /// The replicas wanted, preferred leader first.
        target: Option<Vec<NodeId>>,
    },
    /// Finishes a reassignment whose target replicas are all in sync
    /// (proposed by the controller leader with the partition epoch it read).
    CompleteReassignment {
        /// Topic name.
        name: String,
        /// Partition index.
        partition: u32,
        /// The partition epoch the proposer read.
        partition_epoch: i32,
    },
    /// Elects a partition's leader (Kafka's ElectLeaders): its preferred
    /// replica (the first) when that one is in sync and serving; or, with
    /// `unclean` and no serving leader, a serving in-sync replica, else any
    /// serving replica (which may lose what the others had committed: an
    /// operator's explicit choice).
    ElectLeader {
        /// Topic name.
        name: String,
        /// Partition index.
        partition: u32,
        /// Unclean election.
        unclean: bool,
    },
    /// The leader cannot write its partition's log (its disk is full or
    /// failing): the first other in-sync replica that serves leads, and the
    /// old leader leaves the in-sync set until, recovered, it has caught up
    /// as a follower (Kafka takes a failed log directory's replicas
    /// offline). Compare-and-set on the epochs the leader read; refused
    /// when no other in-sync replica serves (the partition waits for the
    /// disk instead of electing uncleanly).
    ResignLeadership {
        /// Topic name.
        name: String,
        /// Partition index.
        partition: u32,
        /// The node giving up the lead.
        leader: NodeId,
        /// The leader epoch it leads in.
        leader_epoch: i32,
        /// The partition epoch it read.
        partition_epoch: i32,
    },
    /// A leader whose log was cut in place (recovered after a write
    /// failure) and that no other in-sync replica can replace asks for a
    /// new leader epoch for itself: the records it writes next must never
    /// share an epoch with the tail it lost, which its followers may hold
    /// (they cut it by `OffsetForLeaderEpoch` once the epoch moves on).
    /// Compare-and-set on the epochs the leader read.
    RenewLeaderEpoch {
        /// Topic name.
        name: String,
        /// Partition index.
        partition: u32,
        /// The node leading it.
        leader: NodeId,
        /// The leader epoch whose tail it lost.
        leader_epoch: i32,
        /// The partition epoch it read.
        partition_epoch: i32,
    },
    /// Replaces a consumer group's configuration (empty: removes it).
    SetGroupConfig {
        /// Group name.
        group: String,
        /// The new settings (names owned by the layer that reads them).
        config: BTreeMap<String, String>,
    },
    /// Changes entries of a document scope if the scope is still at
    /// version `expect` (see [`DocumentScope`]).
    UpdateDocuments {
        /// Scope name.
        scope: String,
        /// The version the proposer read.
        expect: u64,
        /// Entries to add or replace.
        set: BTreeMap<String, String>,
        /// Entries to remove.
        remove: Vec<String>,
    },
}

/// The outcome of applying a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Reply {
    /// Applied (also the reply to Raft's own blank and membership entries).
    #[default]
    Ok,
    /// Broke a rule; nothing changed.
    Rejected {
        /// Why.
        reason: Rejection,
        /// What was wrong, for people.
        message: String,
    },
}

/// Why a command was rejected: what a gateway maps to its protocol's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// The topic exists.
    TopicExists,
    /// No such topic.
    UnknownTopic,
    /// No such node, or a node in the wrong state.
    UnknownNode,
    /// A malformed command (placement naming no replicas, a partition count
    /// that shrinks, ...).
    Invalid,
    /// A document scope moved past the version the proposer read, or a
    /// partition past the epochs an [`Command::AlterIsr`] named: read again
    /// and retry.
    Conflict,
    /// A reassignment was cancelled or completed where none is in
    /// progress.
    NoReassignment,
    /// The partition already has the leader an election would give it.
    ElectionNotNeeded,
    /// No replica may lead (the preferred one is out of sync or down; for
    /// an unclean election, none serves).
    NoEligibleLeader,
}

/// The cluster's metadata, as of the last applied log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Nodes by id.
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicAssignment>,
    /// Ids of the most recently deleted topics (at most
    /// [`DELETED_TOPICS_KEPT`], oldest first): a node that was down while
    /// a topic was deleted still holds its data, and deletes it on seeing
    /// its id here, rather than keeping data nobody can reach.
    #[serde(default)]
    pub deleted_topic_ids: std::collections::VecDeque<String>,
    /// Consumer groups' own settings by group name (groups without any are
    /// absent).
    #[serde(default)]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Document scopes by name: definitions the layers above keep for the
    /// whole cluster (AMQP's virtual hosts and users).
    #[serde(default)]
    pub documents: BTreeMap<String, DocumentScope>,
}

/// Deleted topic ids the metadata remembers.
pub const DELETED_TOPICS_KEPT: usize = 10_000;

fn rejected(reason: Rejection, message: impl Into<String>) -> Reply {
    Reply::Rejected { reason, message: message.into() }
}

impl Metadata {
    /// Applies one committed command (deterministic; see the crate docs).
    pub fn apply(&mut self, cmd: &Command) -> Reply {
        match cmd {
            Command::RegisterNode { id, internode, listeners, rack } => {
                let restarted = self.nodes.contains_key(id);
                let incarnation = self.nodes.get(id).map_or(1, |n| n.incarnation + 1);
                let state = match self.nodes.get(id).map(|n| n.state) {
                    Some(NodeState::Decommissioning) => NodeState::Decommissioning,
                    _ => NodeState::Active,
                };
                let record = NodeRecord {
                    id: *id,
                    internode: internode.clone(),
                    listeners: listeners.clone(),
                    rack: rack.clone(),
                    state,
                    incarnation,
                };
                self.nodes.insert(*id, record);
                if restarted {
                    self.node_restarted(*id);
                }
                self.unclean_elections();
                Reply::Ok
            }
            // A clean shutdown is fenced as a lapsed lease is; only the
            // controller leader's lease keeping differs (`fjord-cluster`).
            Command::FenceNode { id } | Command::ShutdownNode { id } => {
                let reply = self.set_state(*id, NodeState::Active, NodeState::Fenced);
                if reply == Reply::Ok {
                    self.node_fenced(*id);
                    self.unclean_elections();
                }
                reply
            }
            Command::UnfenceNode { id } => {
                let reply = self.set_state(*id, NodeState::Fenced, NodeState::Active);
                self.unclean_elections();
                reply
            }
            Command::DecommissionNode { id } => match self.nodes.get_mut(id) {
                Some(n) => {
                    n.state = NodeState::Decommissioning;
                    Reply::Ok
                }
                None => rejected(Rejection::UnknownNode, format!("node {id} is not registered")),
            },
            Command::RemoveNode { id } => {
                if !self.nodes.contains_key(id) {
                    return rejected(Rejection::UnknownNode, format!("node {id} is not registered"));
                }
                if let Some((t, p)) = self.partitions_on(*id).next() {
                    return rejected(Rejection::Invalid, format!("node {id} still holds {t}-{p}"));
                }
                self.nodes.remove(id);
                Reply::Ok
            }
            Command::CreateTopic { name, topic } => {
                if let Some(existing) = self.topics.get(name) {
                    // The same id: a proposer's retry of this very command,
                    // its first attempt committed but unanswered (its
                    // leader stalled or was deposed).
                    if existing.id == topic.id {
                        return Reply::Ok;
                    }
                    return rejected(Rejection::TopicExists, format!("topic '{name}' already exists"));
                }
                if let Err(r) = self.check_placement(&topic.partitions) {
                    return r;
                }
                self.topics.insert(name.clone(), topic.clone());
                Reply::Ok
            }
            Command::DeleteTopic { name, id } => match self.topics.get(name) {
                Some(t) if id.as_ref().is_none_or(|id| *id == t.id) => {
                    let t = self.topics.remove(name).expect("present");
                    self.deleted_topic_ids.push_back(t.id);
                    while self.deleted_topic_ids.len() > DELETED_TOPICS_KEPT {
                        self.deleted_topic_ids.pop_front();
                    }
                    Reply::Ok
                }
                // A retry of a delete that committed.
                _ if id.as_ref().is_some_and(|id| self.deleted_topic_ids.contains(id)) => Reply::Ok,
                _ => rejected(Rejection::UnknownTopic, format!("no topic '{name}'")),
            },
            Command::CreatePartitions { name, added, from } => {
                let Some(have) = self.topics.get(name).map(|t| t.partitions.len()) else {
                    return rejected(Rejection::UnknownTopic, format!("no topic '{name}'"));
                };
                if let Some(from) = from.map(|f| f as usize)
                    && have != from
                {
                    // The count asked for (a retry of this change, committed
                    // already).
                    if have == from + added.len() {
                        return Reply::Ok;
                    }
                    return rejected(
                        Rejection::Conflict,
                        format!("topic '{name}' has {have} partitions, not the {from} this change was made for"),
                    );
                }
                if let Err(r) = self.check_placement(added) {
                    return r;
                }
                if let Some(t) = self.topics.get_mut(name) {
                    t.partitions.extend(added.iter().cloned());
                }
                Reply::Ok
            }
            Command::AlterTopicConfig { name, config } => match self.topics.get_mut(name) {
                Some(t) => {
                    t.config = config.clone();
                    self.unclean_elections();
                    Reply::Ok
                }
                None => rejected(Rejection::UnknownTopic, format!("no topic '{name}'")),
            },
            Command::AssignPartition { name, partition, replicas, leader } => {
                let proposed = [PartitionAssignment::new(replicas.clone(), *leader)];
                if let Err(r) = self.check_placement(&proposed) {
                    return r;
                }
                let Some(p) = self.topics.get_mut(name).and_then(|t| t.partitions.get_mut(*partition as usize)) else {
                    return rejected(Rejection::UnknownTopic, format!("no partition {name}-{partition}"));
                };
                // Still in sync: the new leader and the old members kept.
                let mut isr: Vec<NodeId> = p.in_sync().into_iter().filter(|r| replicas.contains(r)).collect();
                if !isr.contains(leader) {
                    isr.insert(0, *leader);
                }
                p.replicas = replicas.clone();
                p.isr = isr;
                p.adding.clear();
                p.removing.clear();
                p.partition_epoch += 1;
                if p.leader != *leader {
                    p.leader = *leader;
                    p.leader_epoch += 1;
                }
                Reply::Ok
            }
            Command::AlterIsr { name, partition, leader, leader_epoch, partition_epoch, isr } => {
                self.alter_isr(name, *partition, *leader, (*leader_epoch, *partition_epoch), isr)
            }
            Command::ReassignPartition { name, partition, target } => {
                self.reassign(name, *partition, target.as_deref())
            }
            Command::CompleteReassignment { name, partition, partition_epoch } => {
                self.complete_reassignment(name, *partition, *partition_epoch)
            }
            Command::ElectLeader { name, partition, unclean } => self.elect_leader(name, *partition, *unclean),
            Command::ResignLeadership { name, partition, leader, leader_epoch, partition_epoch } => {
                self.resign_leadership(name, *partition, *leader, (*leader_epoch, *partition_epoch))
            }
            Command::RenewLeaderEpoch { name, partition, leader, leader_epoch, partition_epoch } => {
                self.renew_leader_epoch(name, *partition, *leader, (*leader_epoch, *partition_epoch))
            }
            Command::SetGroupConfig { group, config } => {
                if group.is_empty() {
                    return rejected(Rejection::Invalid, "a group config needs a group name");
                }
                if config.is_empty() {
                    self.group_configs.remove(group);
                } else {
                    self.group_configs.insert(group.clone(), config.clone());
                }
                Reply::Ok
            }
            Command::UpdateDocuments { scope, expect, set, remove } => {
                documents::update(&mut self.documents, scope, *expect, set, remove)
            }
        }
    }

    fn set_state(&mut self, id: NodeId, from: NodeState, to: NodeState) -> Reply {
        match self.nodes.get_mut(&id) {
            Some(n) if n.state == from => {
                n.state = to;
                Reply::Ok
            }
            // Fencing a decommissioning node, or unfencing an active one,
            // changes nothing: not an error, the proposer raced a heartbeat.
            Some(_) => Reply::Ok,
            None => rejected(Rejection::UnknownNode, format!("node {id} is not registered")),
        }
    }

    fn check_placement(&self, parts: &[PartitionAssignment]) -> Result<(), Reply> {
        for p in parts {
            if p.replicas.is_empty() || !p.replicas.contains(&p.leader) {
                return Err(rejected(Rejection::Invalid, "a partition needs replicas including its leader"));
            }
            if let Some(n) = p.replicas.iter().find(|n| !self.nodes.contains_key(n)) {
                return Err(rejected(Rejection::UnknownNode, format!("node {n} is not registered")));
            }
        }
        Ok(())
    }

    /// Partitions (topic, index) that `node` leads or replicates.
    pub fn partitions_on(&self, node: NodeId) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.topics.iter().flat_map(move |(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .filter(move |(_, p)| p.replicas.contains(&node) || p.leader == node)
                .map(move |(i, _)| (name.as_str(), i as u32))
        })
    }

    /// Serializes the whole state (a snapshot's body).
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Reads a snapshot's body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metadata, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

mod documents;
mod elections;
mod reassign;
pub use documents::{DocumentScope, MAX_DOCUMENT, MAX_DOCUMENT_KEY, MAX_DOCUMENTS};

#[cfg(test)]
mod tests;
