//! Reads from the closest replica (Kafka's KIP-392, with its
//! `RackAwareReplicaSelector`): a partition's leader names, for a consumer
//! in a given rack, an in-sync follower in that rack to read from instead
//! (unless the leader is in that rack itself), and an in-sync follower
//! serves such reads up to its own high watermark — the leader's commit
//! point as the follower last learned it, never beyond, so a consumer
//! reading there sees only committed records (guarantee 4 of
//! `docs/design/replication.md`).
//!
//! Only in-sync followers are named and only in-sync followers serve: one
//! that fell behind (or was cut off) answers NOT_LEADER_OR_FOLLOWER, so its
//! consumers go back to the leader instead of waiting on a stale copy.

use std::sync::Arc;

use crate::broker::Broker;
use crate::error::Result;
use crate::partition::{Partition, TopicPartition};

impl Broker {
    /// The in-sync follower a consumer in `client_rack` should read `tp`
    /// from, when this node leads `tp` and is not in that rack itself.
    /// `None`: read from the leader.
    pub fn preferred_read_replica(&self, tp: &TopicPartition, client_rack: &str) -> Option<i32> {
        if client_rack.is_empty() || self.config.rack.as_deref() == Some(client_rack) {
            return None;
        }
        let placement = self.placement()?;
        let p = placement.partition(tp)?;
        if p.leader != self.config.node_id {
            return None;
        }
        p.isr
            .iter()
            .copied()
            .filter(|r| *r != p.leader)
            .find(|r| placement.node(*r).is_some_and(|n| n.rack.as_deref() == Some(client_rack)))
    }

    /// `tp` with the leader epoch a consumer's fetch is checked against:
    /// led here, or with `follower_reads` also followed here in sync (see
    /// [`Broker::readable_partition`]). What fetches are served from.
    pub fn fetchable_partition(&self, tp: &TopicPartition, follower_reads: bool) -> Result<(Arc<Partition>, i32)> {
        if follower_reads {
            return self.readable_partition(tp);
        }
        let p = self.led_partition(tp)?;
        let epoch = p.leader_epoch();
        Ok((p, epoch))
    }

    /// `tp` with the leader epoch clients are checked against, if this node
    /// leads it or is one of its in-sync followers: what a consumer may
    /// read from here (a follower up to its high watermark).
    pub fn readable_partition(&self, tp: &TopicPartition) -> Result<(Arc<Partition>, i32)> {
        let not_here = match self.led_partition(tp) {
            Ok(p) => {
                let epoch = p.leader_epoch();
                return Ok((p, epoch));
            }
            Err(e) => e,
        };
        let Some(placement) = self.placement() else { return Err(not_here) };
        let me = self.config.node_id;
        match placement.partition(tp) {
            Some(p) if p.leader >= 0 && p.isr.contains(&me) && placement.node(me).is_some() => {
                Ok((self.partition(tp)?, p.leader_epoch))
            }
            _ => Err(not_here),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fjord_log::SystemClock;

    use crate::placement::{PartitionPlacement, Placement};
    use crate::{Broker, BrokerConfig, NodeInfo, TopicConfig, TopicPartition};

    /// Nodes 1-3 in racks r1-r3; partition `t`-0 led by `leader` with
    /// `isr` in sync.
    fn placement(leader: i32, isr: &[i32]) -> Placement {
        let node = |id: i32| NodeInfo { node_id: id, listeners: Default::default(), rack: Some(format!("r{id}")) };
        let part = PartitionPlacement {
            leader,
            leader_epoch: 4,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            partition_epoch: 1,
            adding: vec![],
            removing: vec![],
        };
        Placement {
            controller_id: 1,
            nodes: (1..=3).map(node).collect(),
            topics: [("t".to_string(), vec![part])].into(),
            ..Placement::default()
        }
    }

    async fn node_1() -> (tempfile::TempDir, Arc<Broker>) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig { node_id: 1, rack: Some("r1".into()), ..BrokerConfig::new(dir.path()) };
        let b = Broker::open(config, Arc::new(SystemClock)).await.unwrap();
        b.create_topic("t", 1, TopicConfig::default()).await.unwrap();
        (dir, b)
    }

    #[tokio::test]
    async fn a_leader_names_the_in_sync_follower_in_the_consumers_rack() {
        let (_dir, b) = node_1().await;
        let tp = TopicPartition::new("t", 0);
        b.set_placement(placement(1, &[1, 2, 3]));
        assert_eq!(b.preferred_read_replica(&tp, "r2"), Some(2));
        assert_eq!(b.preferred_read_replica(&tp, "r1"), None, "the leader is in that rack");
        assert_eq!(b.preferred_read_replica(&tp, "r9"), None, "no replica there");
        assert_eq!(b.preferred_read_replica(&tp, ""), None, "no rack given");
        b.set_placement(placement(1, &[1, 3]));
        assert_eq!(b.preferred_read_replica(&tp, "r2"), None, "node 2 is out of sync");
        assert_eq!(b.readable_partition(&tp).unwrap().1, 4);
    }

    #[tokio::test]
    async fn only_an_in_sync_follower_serves_consumers() {
        let (_dir, b) = node_1().await;
        let tp = TopicPartition::new("t", 0);
        b.set_placement(placement(2, &[1, 2, 3]));
        assert!(b.led_partition(&tp).is_err());
        let (_, epoch) = b.readable_partition(&tp).expect("an in-sync follower serves reads");
        assert_eq!(epoch, 4, "checked against the leader's epoch");
        assert_eq!(b.preferred_read_replica(&tp, "r3"), None, "only a leader names replicas");
        b.set_placement(placement(2, &[2, 3]));
        assert!(b.readable_partition(&tp).is_err(), "out of sync: back to the leader");
        b.set_placement(placement(-1, &[1, 2, 3]));
        assert!(b.readable_partition(&tp).is_err(), "no leader: nothing committed to learn");
    }

    /// Found by fjord-chaos: a paused coordinator, resumed, answered an
    /// OffsetFetch queued during the pause from the map its successor had
    /// moved past, before its heartbeat task noticed the lease had run out.
    #[tokio::test(start_paused = true)]
    async fn a_node_whose_lease_ran_out_leads_nothing_until_it_is_renewed() {
        let (_dir, b) = node_1().await;
        let tp = TopicPartition::new("t", 0);
        b.set_placement(placement(1, &[1, 2, 3]));
        assert!(b.led_partition(&tp).is_ok(), "no lease yet: the placement decides");
        b.renew_lease(tokio::time::Instant::now() + std::time::Duration::from_secs(2));
        assert!(b.led_partition(&tp).is_ok());
        assert_eq!(b.led_partitions("t"), vec![0]);
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        assert!(b.lease_lapsed());
        assert!(b.led_partition(&tp).is_err(), "the placement still names it, the lease does not");
        assert!(b.led_partitions("t").is_empty());
        assert!(!matches!(b.coordinator("g"), crate::Leadership::Local));
        b.renew_lease(tokio::time::Instant::now() + std::time::Duration::from_secs(2));
        assert!(b.led_partition(&tp).is_ok(), "renewed");
    }
}
