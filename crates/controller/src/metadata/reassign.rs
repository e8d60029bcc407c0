//! Moving a partition's replicas (Kafka's KIP-455 reassignments): the
//! target replicas are added first and copy the log as followers; once
//! every one of them is in sync, the reassignment completes — the replicas
//! not in the target go, and a leader among them hands over to the first
//! in-sync target replica. Producers keep writing throughout: the leader
//! stays until the end, and the data is never anywhere but in the log
//! being copied.
//!
//! While a reassignment runs, `replicas` is the target followed by the
//! replicas being removed, `adding` and `removing` say which are which;
//! cancelling drops the added ones.

use std::collections::BTreeSet;

use super::{Metadata, Rejection, Reply, rejected};
use crate::NodeId;

impl Metadata {
    pub(super) fn reassign(&mut self, name: &str, partition: u32, target: Option<&[NodeId]>) -> Reply {
        if let Some(target) = target {
            let mut seen = BTreeSet::new();
            if target.is_empty() || !target.iter().all(|r| seen.insert(*r)) {
                return rejected(Rejection::Invalid, "a reassignment names distinct replicas, at least one");
            }
            if let Some(n) = target.iter().find(|n| !self.nodes.contains_key(n)) {
                return rejected(Rejection::UnknownNode, format!("node {n} is not registered"));
            }
        }
        let Some(p) = self.topics.get_mut(name).and_then(|t| t.partitions.get_mut(partition as usize)) else {
            return rejected(Rejection::UnknownTopic, format!("no partition {name}-{partition}"));
        };
        // What the partition had before any reassignment in progress.
        let original: Vec<NodeId> = p.replicas.iter().copied().filter(|r| !p.adding.contains(r)).collect();
        let Some(target) = target else {
            if p.adding.is_empty() && p.removing.is_empty() {
                return rejected(
                    Rejection::NoReassignment,
                    format!("no reassignment of {name}-{partition} in progress"),
                );
            }
            p.isr = p.in_sync().into_iter().filter(|r| original.contains(r)).collect();
            if !original.contains(&p.leader) {
                // It led as an added replica: back to an original one.
                if let Some(next) = original.iter().find(|r| p.isr.contains(r)).copied() {
                    p.leader = next;
                    p.leader_epoch += 1;
                }
            }
            if p.isr.is_empty() {
                p.isr = vec![p.leader];
            }
            p.replicas = original;
            p.adding.clear();
            p.removing.clear();
            p.partition_epoch += 1;
            return Reply::Ok;
        };
        let adding: Vec<NodeId> = target.iter().copied().filter(|r| !original.contains(r)).collect();
        let removing: Vec<NodeId> = original.iter().copied().filter(|r| !target.contains(r)).collect();
        let mut replicas = target.to_vec();
        replicas.extend(removing.iter().copied());
        p.isr = p.in_sync().into_iter().filter(|r| replicas.contains(r)).collect();
        p.replicas = replicas;
        p.adding = adding;
        p.removing = removing;
        p.partition_epoch += 1;
        Reply::Ok
    }

    pub(super) fn complete_reassignment(&mut self, name: &str, partition: u32, partition_epoch: i32) -> Reply {
        let serving = self.serving_nodes();
        let Some(p) = self.topics.get_mut(name).and_then(|t| t.partitions.get_mut(partition as usize)) else {
            return rejected(Rejection::UnknownTopic, format!("no partition {name}-{partition}"));
        };
        if p.adding.is_empty() && p.removing.is_empty() {
            return rejected(Rejection::NoReassignment, format!("no reassignment of {name}-{partition} in progress"));
        }
        if p.partition_epoch != partition_epoch {
            return rejected(
                Rejection::Conflict,
                format!("{name}-{partition} is at partition epoch {}", p.partition_epoch),
            );
        }
        let isr = p.in_sync();
        let target: Vec<NodeId> = p.replicas.iter().copied().filter(|r| !p.removing.contains(r)).collect();
        if !target.iter().all(|r| isr.contains(r)) {
            return rejected(Rejection::Invalid, "every target replica must be in sync first");
        }
        if !target.contains(&p.leader) {
            let next = target.iter().find(|r| serving.contains(r)).or(target.first()).copied();
            if let Some(next) = next {
                p.leader = next;
                p.leader_epoch += 1;
            }
        }
        p.isr = isr.into_iter().filter(|r| target.contains(r)).collect();
        p.replicas = target;
        p.adding.clear();
        p.removing.clear();
        p.partition_epoch += 1;
        Reply::Ok
    }
}
