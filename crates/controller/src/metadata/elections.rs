//! Leaders and in-sync replicas: the controller's half of replication
//! (`docs/design/replication.md` §3, following Kafka's KRaft rules).
//!
//! - A fenced node leaves every in-sync set it is in, unless it is the
//!   last member (the partition then waits for it: no unclean election);
//!   partitions it led get the first in-sync replica, in replica order,
//!   that is serving, with a new leader epoch.
//! - A node that registers again (it restarted) may have lost what it had
//!   not made durable: partitions it led are handed to another serving
//!   in-sync replica when there is one, and otherwise get a new leader
//!   epoch, so the batches it writes from now on never share an epoch with
//!   a tail its followers may hold and it lost. Like a fenced node (as
//!   KRaft fences a broker's old incarnation), it leaves every in-sync set
//!   it is not the last member of: it comes back in once its leader has
//!   seen it catch up, so a replica whose disk lost anything is never
//!   elected on the strength of what it held before.
//! - A leader changes its partition's in-sync set only with the epochs it
//!   read ([`Command::AlterIsr`](super::Command::AlterIsr)); the set keeps
//!   the leader, names only replicas, and adds only live nodes (serving or
//!   being decommissioned, never fenced).
//!
//! - A leader that cannot write (a full or failing disk) resigns: the
//!   first other serving in-sync replica leads and it leaves the in-sync
//!   set; with no such replica it keeps the lead and the partition waits.
//!   Once its log is recovered in place (cut back to its last fsync), it
//!   leads again only in a new leader epoch (handed over when it can be,
//!   else renewed for it): a rewrite of the offsets it lost in the epoch
//!   they were written in would look, to a follower holding them, like the
//!   same records.
//! - An election on request (Kafka's ElectLeaders) gives the preferred
//!   replica the lead when it is in sync and serving; an unclean one, asked
//!   for explicitly, may pick a replica out of sync when no serving one is.
//! - A topic with `unclean.leader.election.enable=true` gets that unclean
//!   election from the controller itself, as soon as one of its
//!   partitions has no serving leader and no serving in-sync replica
//!   (after a fencing, a node's return, or the setting's change), with a
//!   warning: available again at the price of what the old in-sync
//!   replicas had committed beyond the new leader. Other topics wait.
//!
//! Every change of leader or in-sync set bumps the partition epoch; every
//! leader change bumps the leader epoch.

use super::{Metadata, NodeState, PartitionAssignment, Rejection, Reply, rejected};
use crate::NodeId;

impl Metadata {
    /// `id` was fenced: elections for what it led, and it leaves in-sync
    /// sets.
    pub(super) fn node_fenced(&mut self, id: NodeId) {
        let serving = self.serving_nodes();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                let isr = p.in_sync();
                if !isr.contains(&id) && p.leader != id {
                    continue;
                }
                if p.leader == id {
                    let Some(next) = successor(p, &isr, id, &serving) else { continue };
                    p.leader = next;
                    p.leader_epoch += 1;
                }
                if isr.len() > 1 {
                    p.isr = isr.into_iter().filter(|r| *r != id).collect();
                }
                p.partition_epoch += 1;
            }
        }
    }

    /// `id` registered again after a restart.
    pub(super) fn node_restarted(&mut self, id: NodeId) {
        let serving = self.serving_nodes();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                let isr = p.in_sync();
                if p.leader == id {
                    if let Some(next) = successor(p, &isr, id, &serving) {
                        p.leader = next;
                    }
                    p.leader_epoch += 1;
                } else if !isr.contains(&id) {
                    continue;
                }
                if isr.len() > 1 && p.leader != id {
                    p.isr = isr.into_iter().filter(|r| *r != id).collect();
                }
                p.partition_epoch += 1;
            }
        }
    }

    pub(super) fn alter_isr(
        &mut self,
        name: &str,
        partition: u32,
        leader: NodeId,
        (leader_epoch, partition_epoch): (i32, i32),
        isr: &[NodeId],
    ) -> Reply {
        // A decommissioning node is alive (it heartbeats) though it leads
        // nothing new: it may rejoin the in-sync set of a partition it is
        // leaving, whose move waits for a full set (refusing the whole
        // change would keep the new replicas out too, and the move stuck).
        let live = self.live_nodes();
        let p = match self.led_as_read(name, partition, leader, (leader_epoch, partition_epoch)) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let current = p.in_sync();
        let mut seen = std::collections::BTreeSet::new();
        let valid = isr.contains(&leader)
            && isr.iter().all(|r| p.replicas.contains(r) && seen.insert(*r))
            && isr.iter().all(|r| current.contains(r) || live.contains(r));
        if !valid {
            return rejected(
                Rejection::Invalid,
                "an in-sync set holds the leader and distinct replicas, and adds only live (not fenced) nodes",
            );
        }
        p.isr = isr.to_vec();
        p.partition_epoch += 1;
        Reply::Ok
    }

    pub(super) fn elect_leader(&mut self, name: &str, partition: u32, unclean: bool) -> Reply {
        let serving = self.serving_nodes();
        let Some(p) = self.topics.get_mut(name).and_then(|t| t.partitions.get_mut(partition as usize)) else {
            return rejected(Rejection::UnknownTopic, format!("no partition {name}-{partition}"));
        };
        let isr = p.in_sync();
        let next = if unclean {
            if serving.contains(&p.leader) {
                return rejected(Rejection::ElectionNotNeeded, format!("{name}-{partition} has a serving leader"));
            }
            match unclean_candidate(p, &isr, &serving) {
                Some(n) => n,
                None => {
                    return rejected(Rejection::NoEligibleLeader, format!("no replica of {name}-{partition} serves"));
                }
            }
        } else {
            let Some(preferred) = p.replicas.first().copied() else {
                return rejected(Rejection::NoEligibleLeader, format!("{name}-{partition} has no replicas"));
            };
            if preferred == p.leader {
                return rejected(Rejection::ElectionNotNeeded, format!("node {preferred} leads {name}-{partition}"));
            }
            if !isr.contains(&preferred) || !serving.contains(&preferred) {
                return rejected(
                    Rejection::NoEligibleLeader,
                    format!("the preferred replica {preferred} of {name}-{partition} is not in sync and serving"),
                );
            }
            preferred
        };
        install_leader(p, &isr, next, &format!("{name}-{partition}"), "unclean election");
        Reply::Ok
    }

    pub(super) fn resign_leadership(
        &mut self,
        name: &str,
        partition: u32,
        leader: NodeId,
        (leader_epoch, partition_epoch): (i32, i32),
    ) -> Reply {
        let serving = self.serving_nodes();
        let p = match self.led_as_read(name, partition, leader, (leader_epoch, partition_epoch)) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let isr = p.in_sync();
        let Some(next) = successor(p, &isr, leader, &serving) else {
            return rejected(
                Rejection::NoEligibleLeader,
                format!("no other in-sync replica of {name}-{partition} serves"),
            );
        };
        p.leader = next;
        p.isr = isr.into_iter().filter(|r| *r != leader).collect();
        p.leader_epoch += 1;
        p.partition_epoch += 1;
        Reply::Ok
    }

    /// A new leader epoch for the same leader (see
    /// [`Command::RenewLeaderEpoch`](super::Command::RenewLeaderEpoch)).
    pub(super) fn renew_leader_epoch(
        &mut self,
        name: &str,
        partition: u32,
        leader: NodeId,
        epochs: (i32, i32),
    ) -> Reply {
        let p = match self.led_as_read(name, partition, leader, epochs) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        p.leader_epoch += 1;
        p.partition_epoch += 1;
        Reply::Ok
    }

    /// The controller's own unclean elections (see the module docs):
    /// partitions of topics that allow them, with no serving leader, get
    /// their first serving in-sync replica, else their first serving
    /// replica, which is then the only one in sync.
    pub(super) fn unclean_elections(&mut self) {
        let serving = self.serving_nodes();
        for (name, t) in self.topics.iter_mut() {
            if t.config.get("unclean.leader.election.enable").is_none_or(|v| v.trim() != "true") {
                continue;
            }
            for (i, p) in t.partitions.iter_mut().enumerate() {
                if serving.contains(&p.leader) {
                    continue;
                }
                let isr = p.in_sync();
                let Some(next) = unclean_candidate(p, &isr, &serving) else { continue };
                install_leader(p, &isr, next, &format!("{name}-{i}"), "unclean election (the topic allows it)");
            }
        }
    }

    /// The partition a leader changes, if it is still as that leader read
    /// it (the same leader, leader epoch and partition epoch): the
    /// compare-and-set of every leader's proposal.
    fn led_as_read(
        &mut self,
        name: &str,
        partition: u32,
        leader: NodeId,
        (leader_epoch, partition_epoch): (i32, i32),
    ) -> Result<&mut PartitionAssignment, Reply> {
        let Some(p) = self.topics.get_mut(name).and_then(|t| t.partitions.get_mut(partition as usize)) else {
            return Err(rejected(Rejection::UnknownTopic, format!("no partition {name}-{partition}")));
        };
        if p.leader != leader || p.leader_epoch != leader_epoch || p.partition_epoch != partition_epoch {
            return Err(rejected(
                Rejection::Conflict,
                format!(
                    "{name}-{partition} is at leader {} epoch {} partition epoch {}",
                    p.leader, p.leader_epoch, p.partition_epoch
                ),
            ));
        }
        Ok(p)
    }

    /// Nodes that may lead (registered and not fenced or leaving).
    pub(super) fn serving_nodes(&self) -> Vec<NodeId> {
        self.nodes.values().filter(|n| n.state == NodeState::Active).map(|n| n.id).collect()
    }

    /// Nodes that heartbeat: serving or being decommissioned.
    fn live_nodes(&self) -> Vec<NodeId> {
        self.nodes.values().filter(|n| n.state != NodeState::Fenced).map(|n| n.id).collect()
    }
}

/// Who takes over from `leaving`: the first other replica, in replica
/// order (the preferred first), that is in sync and serving.
/// The replica an unclean election picks: the first serving in-sync
/// replica, else the first serving one.
fn unclean_candidate(p: &PartitionAssignment, isr: &[NodeId], serving: &[NodeId]) -> Option<NodeId> {
    let clean = p.replicas.iter().copied().find(|r| isr.contains(r) && serving.contains(r));
    clean.or_else(|| p.replicas.iter().copied().find(|r| serving.contains(r)))
}

/// Makes `next` the partition's leader in a new epoch. One out of the
/// in-sync set `isr` becomes its only member: an unclean election, logged
/// as `why` with what it may lose.
fn install_leader(p: &mut PartitionAssignment, isr: &[NodeId], next: NodeId, partition: &str, why: &str) {
    if !isr.contains(&next) {
        tracing::warn!(partition, leader = next, "{why}: records the old in-sync replicas had committed may be lost");
        p.isr = vec![next];
    }
    p.leader = next;
    p.leader_epoch += 1;
    p.partition_epoch += 1;
}

fn successor(p: &PartitionAssignment, isr: &[NodeId], leaving: NodeId, serving: &[NodeId]) -> Option<NodeId> {
    p.replicas.iter().copied().find(|r| *r != leaving && isr.contains(r) && serving.contains(r))
}
