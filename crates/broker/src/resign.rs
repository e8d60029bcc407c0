//! Leaders that resigned: a partition led here whose log could not be
//! written (a full or failing disk poisoned it) hands its lead to another
//! in-sync replica, and from that moment this node serves it no more in
//! the leader epoch it resigned in — even once its log is recovered and
//! even while the placement it holds still names it (its own metadata may
//! lag: a full disk stalls the controller store too). Otherwise a
//! recovered ex-leader with stale metadata would answer reads from state
//! the new leader has moved past (committed offsets fetched back from
//! before acknowledged commits, a chaos finding) and take writes in an
//! epoch that is over.
//!
//! Invariant: while a resignation is pending, every placement installed
//! here shows the partition without a leader, and the resignation ends
//! only when the placement moves it to another epoch or the controller
//! answers that no other replica can lead (then this node leads on).

use std::collections::HashMap;

use crate::Broker;
use crate::partition::TopicPartition;
use crate::placement::{PartitionPlacement, Placement};

/// The leader (in a placement) of a partition nobody leads now.
const NO_LEADER: i32 = -1;

/// Pending resignations: each partition with its placement as the
/// controller last described it (what to propose the change against).
pub(crate) type Resignations = parking_lot::Mutex<HashMap<TopicPartition, PartitionPlacement>>;

impl Broker {
    /// Stops leading `tp` at once and records the resignation, to be
    /// proposed with [`Broker::resignations`]. Returns false if this node
    /// does not lead `tp` (nothing to resign).
    pub fn resign(&self, tp: &TopicPartition) -> bool {
        let Some(placement) = self.placement() else { return false };
        let Some(a) = placement.partition(tp).filter(|a| a.leader == self.config.node_id) else {
            return false;
        };
        tracing::warn!(partition = %tp, leader_epoch = a.leader_epoch, "resigning the lead: its log cannot be written");
        self.resigned.lock().insert(tp.clone(), a.clone());
        // Against the placement installed by then (a newer one may have
        // moved the partition on already, ending the resignation).
        self.install_placement_with(|now| now.cloned());
        true
    }

    /// Pending resignations, each with the partition's placement as the
    /// controller describes it (its leader and epochs, to propose with).
    pub fn resignations(&self) -> Vec<(TopicPartition, PartitionPlacement)> {
        self.resigned.lock().iter().map(|(tp, a)| (tp.clone(), a.clone())).collect()
    }

    /// The controller refused the resignation of `tp` because no other
    /// replica can lead: this node leads it on.
    pub fn withdraw_resignation(&self, tp: &TopicPartition) {
        let Some(a) = self.resigned.lock().remove(tp) else { return };
        tracing::info!(partition = %tp, leader_epoch = a.leader_epoch, "no other replica can lead: leading on");
        self.install_placement_with(|now| {
            let mut p = now?.clone();
            if let Some(slot) = p.topics.get_mut(&tp.topic).and_then(|t| t.get_mut(tp.partition as usize))
                && slot.leader == NO_LEADER
                && slot.leader_epoch == a.leader_epoch
            {
                *slot = a;
            }
            Some(p)
        });
    }

    /// Applies pending resignations to a placement about to be installed:
    /// a partition still led here in the epoch resigned in shows no
    /// leader; a resignation the placement has moved past is over.
    pub(crate) fn apply_resignations(&self, placement: &mut Placement) {
        let me = self.config.node_id;
        let mut resigned = self.resigned.lock();
        resigned.retain(|tp, was| {
            let Some(slot) = placement.topics.get_mut(&tp.topic).and_then(|t| t.get_mut(tp.partition as usize)) else {
                return false;
            };
            if slot.leader == NO_LEADER && slot.leader_epoch == was.leader_epoch {
                return true; // already applied (a reinstall of this view)
            }
            if slot.leader != me || slot.leader_epoch != was.leader_epoch {
                return false;
            }
            *was = slot.clone();
            slot.leader = NO_LEADER;
            slot.isr.retain(|r| *r != me);
            true
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use fjord_log::SystemClock;

    use crate::placement::{Leadership, OFFSETS_TOPIC, PartitionPlacement, Placement};
    use crate::{Broker, BrokerConfig, NodeInfo, TopicConfig, TopicPartition};

    fn placement(topic: &str, leader: i32, leader_epoch: i32, partition_epoch: i32) -> Placement {
        let node = |id| NodeInfo { node_id: id, listeners: Default::default(), rack: None };
        let part = PartitionPlacement {
            leader,
            leader_epoch,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            partition_epoch,
            adding: vec![],
            removing: vec![],
        };
        Placement {
            controller_id: 2,
            nodes: vec![node(1), node(2)],
            topics: [(topic.to_string(), vec![part])].into(),
            ..Placement::default()
        }
    }

    /// Node 1's broker, in a directory kept while the test runs.
    async fn node_1() -> (tempfile::TempDir, Arc<Broker>) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig { node_id: 1, ..BrokerConfig::new(dir.path()) };
        let b = Broker::open(config, Arc::new(SystemClock)).await.unwrap();
        (dir, b)
    }

    #[tokio::test]
    async fn a_resigned_leader_serves_nothing_in_that_epoch_whatever_its_stale_placement_says() {
        let (_dir, b) = node_1().await;
        b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
        let tp = TopicPartition::new("t", 0);
        b.set_placement(placement("t", 1, 3, 7));
        assert_eq!(b.leadership(&tp), Leadership::Local);

        assert!(b.resign(&tp));
        assert_eq!(b.leadership(&tp), Leadership::Unavailable);
        assert!(b.produce(&tp, Default::default()).await.is_err());
        // The metadata this node applies lags (its controller store is as
        // full as its log): it still names this node, even with a newer
        // in-sync set. Not served; the resignation is proposed against it.
        b.set_placement(placement("t", 1, 3, 7));
        assert_eq!(b.leadership(&tp), Leadership::Unavailable);
        b.set_placement(placement("t", 1, 3, 8));
        assert_eq!(b.leadership(&tp), Leadership::Unavailable);
        let pending = b.resignations();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].1.leader, pending[0].1.leader_epoch, pending[0].1.partition_epoch), (1, 3, 8));
        // The controller made it: another node leads, in a new epoch.
        b.set_placement(placement("t", 2, 4, 9));
        assert!(b.resignations().is_empty());
        assert!(matches!(b.leadership(&tp), Leadership::Remote(n) if n.node_id == 2));
        // Elected again later (a new epoch): served.
        b.set_placement(placement("t", 1, 5, 10));
        assert_eq!(b.leadership(&tp), Leadership::Local);

        // Nobody else can lead: the controller refuses, and this node leads on.
        assert!(b.resign(&tp));
        b.withdraw_resignation(&tp);
        assert_eq!(b.leadership(&tp), Leadership::Local);
        assert!(b.resignations().is_empty());
        assert!(!b.resign(&TopicPartition::new("t", 1)), "not led here: nothing to resign");
    }

    fn one(value: &str) -> bytes::BytesMut {
        let mut b = fjord_log::batch::BatchBuilder::new(1_000);
        b.push(&fjord_log::batch::NewRecord { value: Some(value.to_string().into()), ..Default::default() });
        b.build()
    }

    /// The checker's seed 10: a leader whose poisoned log was recovered in
    /// place (cut back to its last fsync) wrote the offsets it had lost
    /// again in the same epoch; a follower that had copied the lost records
    /// could not tell them apart (same offsets, same epoch), and its
    /// progress reported for them counted towards the new ones' commit.
    /// Now the recovery resigns first, forgets followers' progress past the
    /// cut, and the replica writes again only in a newer epoch — so the
    /// follower's fetch (last epoch 3, at the lost offset's end) is told to
    /// cut back where epoch 3 ends here.
    #[tokio::test]
    async fn a_leader_recovered_in_place_writes_again_only_in_a_new_epoch() {
        let (_dir, b) = node_1().await;
        b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
        let tp = TopicPartition::new("t", 0);
        // Node 2 replicates but is out of sync: node 1 commits alone, and
        // no other replica can take the lead.
        let mut alone = placement("t", 1, 3, 7);
        alone.topics.get_mut("t").unwrap()[0].isr = vec![1];
        b.set_placement(alone.clone());
        let p = b.partition(&tp).unwrap();
        assert_eq!(b.produce(&tp, one("kept")).await.unwrap().base_offset, 0);

        p.log().inject_fsync_failure(true);
        assert!(b.produce(&tp, one("lost")).await.is_err());
        assert_eq!(p.log_end_offset(), 2, "written, never fsynced");
        // Node 2 copied it and holds it durably.
        p.follower_fetched(2, 2, 2);
        p.log().inject_fsync_failure(false);
        assert_eq!(b.recover_poisoned_logs().await, 1);
        assert_eq!(p.log_end_offset(), 1, "cut back to the last fsync");
        assert_eq!(b.leadership(&tp), Leadership::Unavailable, "resigned before the recovery");
        assert_eq!(b.resignations().len(), 1);
        let (_, followers) = p.followers();
        assert!(followers.iter().all(|(_, f)| f.durable <= 1 && f.log_end <= 1), "{followers:?}");

        // Nobody else can lead (the controller refuses the resignation):
        // leading on in epoch 3 writes nothing.
        b.withdraw_resignation(&tp);
        assert_eq!(b.leadership(&tp), Leadership::Local);
        assert!(p.needs_new_epoch());
        let refused = b.produce(&tp, one("rewritten in epoch 3")).await;
        assert!(matches!(refused, Err(crate::BrokerError::NotLeader { .. })), "{refused:?}");
        assert_eq!(p.log_end_offset(), 1);

        // A new epoch for the same leader: writes go on, in it.
        let mut renewed = alone;
        let slot = &mut renewed.topics.get_mut("t").unwrap()[0];
        (slot.leader_epoch, slot.partition_epoch) = (4, 8);
        b.set_placement(renewed);
        assert!(!p.needs_new_epoch());
        assert_eq!(b.produce(&tp, one("new")).await.unwrap().base_offset, 1);
        assert_eq!(p.last_epoch(), 4);
        assert_eq!(p.end_offset_for_epoch(3), Some((3, 1)), "a follower at epoch 3 cuts back to offset 1");
    }

    #[tokio::test]
    async fn a_resigned_offsets_shard_coordinates_no_group() {
        let (_dir, b) = node_1().await;
        let shards = b.topic(OFFSETS_TOPIC).unwrap().partitions().len();
        let mut p = placement(OFFSETS_TOPIC, 1, 3, 7);
        let part = p.topics[OFFSETS_TOPIC][0].clone();
        p.topics.insert(OFFSETS_TOPIC.to_string(), vec![part; shards]);
        b.set_placement(p.clone());
        let group = "g";
        let shard = b.offsets().shard_of(group).unwrap();
        assert_eq!(b.coordinator(group), Leadership::Local);
        assert!(b.resign(&TopicPartition::new(OFFSETS_TOPIC, shard)));
        assert_eq!(b.coordinator(group), Leadership::Unavailable);
        b.set_placement(p);
        assert_eq!(b.coordinator(group), Leadership::Unavailable, "not with the placement from before either");
    }
}
