//! The leader's in-sync set: shrunk when a follower stays behind, grown
//! when one catches up, each change proposed to the controller with the
//! epochs the leader read (a stale proposal changes nothing there). A
//! leader whose log cannot be written (its disk full or failing) resigns
//! instead, when another in-sync replica serves: producers move to a
//! replica that can take their writes rather than wait for the disk. It
//! stops serving the partition at once (see `fjord_broker`'s `resign`)
//! and proposes the change until the controller has made it, or answers
//! that nobody else can lead.

use std::sync::Arc;
use std::time::Duration;

use fjord_controller::{Command, Rejection};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::node::ClusterNode;

/// How often a leader looks at its followers.
const TICK: Duration = Duration::from_millis(250);

/// Keeps the in-sync sets of the partitions this node leads, until `stop`.
pub(crate) async fn run(node: Arc<ClusterNode>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let (commands, failed) = changes(&node);
        // A leader that cannot write stops serving now; the controller is
        // asked below to move the lead.
        for tp in failed {
            node.broker.resign(&tp);
        }
        for Proposal { cmd, partition, joining, epoch } in commands {
            tracing::info!(?cmd, "leadership or in-sync replicas change");
            match node.propose(cmd, node.cfg.lease).await {
                Ok(_) => {}
                // Refused: the members it proposed stop holding the commit
                // back. Any other failure leaves its outcome unknown: they
                // count until the placement decides (or a while passes).
                Err(crate::ClusterError::Rejected { reason, .. }) => {
                    tracing::debug!(?reason, "in-sync replicas change refused");
                    for r in joining {
                        partition.in_sync_refused(r, epoch);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "in-sync replicas change not applied"),
            }
        }
        resign(&node).await;
    }
}

/// One in-sync set change to propose, with the followers it adds (already
/// counting towards the partition's commit: see `propose_in_sync`) and the
/// partition epoch it was made from.
struct Proposal {
    cmd: Command,
    partition: Arc<fjord_broker::Partition>,
    joining: Vec<i32>,
    epoch: i32,
}

/// The in-sync set changes this node's partitions need now, and the
/// partitions it leads whose log cannot be written while another in-sync
/// replica serves (to resign).
fn changes(node: &ClusterNode) -> (Vec<Proposal>, Vec<fjord_broker::TopicPartition>) {
    let me = node.broker.config().node_id;
    let Some(placement) = node.broker.placement() else { return (Vec::new(), Vec::new()) };
    let now = Instant::now();
    let lag = node.cfg.replica_lag;
    let (mut out, mut failed) = (Vec::new(), Vec::new());
    for (name, parts) in &placement.topics {
        let Some(topic) = node.broker.topic(name) else { continue };
        for (i, a) in parts.iter().enumerate() {
            if a.leader != me || a.replicas.len() < 2 {
                continue;
            }
            let Some(p) = topic.partition(i as u32) else { continue };
            // Not before this node leads in the placement's epoch.
            if p.leader_epoch() != a.leader_epoch {
                continue;
            }
            // A log recovered in place resigns even alone: it needs a new
            // epoch (`resign` below asks for one when nobody else can lead).
            if p.write_failure().is_some() || p.needs_new_epoch() {
                let other = a.isr.iter().any(|r| *r != me && placement.node(*r).is_some());
                if other || p.needs_new_epoch() {
                    failed.push(fjord_broker::TopicPartition::new(name.as_str(), i as u32));
                }
                continue;
            }
            let (since, followers) = p.followers();
            let hw = p.high_watermark();
            let progress = |r: i32| followers.iter().find(|(n, _)| *n == r).map(|(_, f)| *f);
            let mut isr = vec![me];
            let mut joining = Vec::new();
            for r in a.replicas.iter().copied().filter(|r| *r != me) {
                let f = progress(r);
                let keep = if a.isr.contains(&r) {
                    // Behind for too long (never caught up this term: since
                    // the term began) leaves.
                    let at = f.and_then(|f| f.caught_up_at).unwrap_or(since);
                    now.duration_since(at) < lag
                } else {
                    // Back once it holds durably all that is committed, and
                    // has been at the log end lately.
                    let caught_up = f.is_some_and(|f| {
                        f.durable >= hw && f.caught_up_at.is_some_and(|at| now.duration_since(at) < lag)
                    }) && placement.node(r).is_some();
                    // Counted towards the commit from now on, if it still
                    // holds all that is committed (checked with the commit
                    // point locked): the placement must never name a
                    // member that lacks a committed record.
                    let joins = caught_up && p.propose_in_sync(r, a.partition_epoch);
                    if joins {
                        joining.push(r);
                    }
                    joins
                };
                if keep {
                    isr.push(r);
                }
            }
            let same = isr.len() == a.isr.len() && isr.iter().all(|r| a.isr.contains(r));
            if !same {
                let cmd = Command::AlterIsr {
                    name: name.clone(),
                    partition: i as u32,
                    leader: me as u64,
                    leader_epoch: a.leader_epoch,
                    partition_epoch: a.partition_epoch,
                    isr: isr.into_iter().map(|r| r as u64).collect(),
                };
                out.push(Proposal { cmd, partition: p.clone(), joining, epoch: a.partition_epoch });
            }
        }
    }
    (out, failed)
}

/// Proposes each pending resignation of this node's, as the controller
/// last described the partition; a refusal because no other replica can
/// lead ends it (this node leads on — in a new epoch if its log lost a
/// tail in place), a stale one is retried with the newer epochs on the
/// next tick.
async fn resign(node: &ClusterNode) {
    let me = node.broker.config().node_id as u64;
    for (tp, a) in node.broker.resignations() {
        let partition = node.broker.topic(&tp.topic).and_then(|t| t.partition(tp.partition));
        let lost_tail = partition.is_some_and(|p| p.needs_new_epoch());
        let cmd = Command::ResignLeadership {
            name: tp.topic.to_string(),
            partition: tp.partition,
            leader: me,
            leader_epoch: a.leader_epoch,
            partition_epoch: a.partition_epoch,
        };
        tracing::info!(?cmd, "leadership or in-sync replicas change");
        match node.propose(cmd, node.cfg.lease).await {
            Ok(_) => {}
            Err(crate::ClusterError::Rejected { reason: Rejection::NoEligibleLeader, .. }) if lost_tail => {
                let renew = Command::RenewLeaderEpoch {
                    name: tp.topic.to_string(),
                    partition: tp.partition,
                    leader: me,
                    leader_epoch: a.leader_epoch,
                    partition_epoch: a.partition_epoch,
                };
                tracing::info!(?renew, "no other replica can lead a log that lost a tail: a new epoch for it");
                // Granted, the new placement ends the resignation.
                if let Err(e) = node.propose(renew, node.cfg.lease).await {
                    tracing::debug!(partition = %tp, error = %e, "new leader epoch not granted yet");
                }
            }
            Err(crate::ClusterError::Rejected { reason: Rejection::NoEligibleLeader, .. }) => {
                node.broker.withdraw_resignation(&tp);
            }
            Err(e) => tracing::debug!(partition = %tp, error = %e, "resignation not applied yet"),
        }
    }
}
