//! Writing transaction markers: what a transaction coordinator asks of
//! each partition of a transaction it ends (Kafka's WriteTxnMarkers;
//! `docs/design/transactions.md` §3–4).
//!
//! A marker is checked against its producer's state and written under
//! that producer's lock (so no batch of the producer comes between the
//! check and the write), by the partition's leader only, and answered once
//! committed on the in-sync replicas while this node still leads: a marker
//! the coordinator was told is written survives the leader's loss.

use fjord_log::control::{TxnMarker, marker_batch};

use crate::broker::Broker;
use crate::error::{BrokerError, Result};
use crate::partition::TopicPartition;

impl Broker {
    /// Ends `producer_id`'s transaction in `tp` with `marker` (written even
    /// when none is open: it changes nothing else then). Refused when the
    /// producer epoch is older than the partition's (INVALID_PRODUCER_EPOCH)
    /// or the coordinator epoch older than the last marker's
    /// (TRANSACTION_COORDINATOR_FENCED); NOT_LEADER when this node does not
    /// lead `tp`. Returns the marker's offset once it is committed.
    pub async fn write_txn_marker(
        &self,
        tp: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
    ) -> Result<u64> {
        let partition = self.led_partition(tp)?;
        if !partition.commit.leading() {
            return Err(self.not_leader(tp, None));
        }
        let lock = partition.producers.producer_lock(producer_id);
        let (info, written) = {
            let _producer = lock.lock().await;
            loop {
                partition.producers.ensure_loaded(partition.log()).await?;
                // Unloaded again by a cut meanwhile: load and check again.
                if let Some(check) =
                    partition.producers.check_marker(producer_id, producer_epoch, marker.coordinator_epoch)
                {
                    check?;
                    break;
                }
            }
            let bytes = marker_batch(producer_id, producer_epoch, marker, self.clock.now_ms());
            partition.append(bytes).await?.map_err(|e| BrokerError::log(tp.to_string(), e))?
        };
        partition.committed_while_leading(written).await.map_err(|e| BrokerError::log(tp.to_string(), e))?;
        Ok(info.base_offset)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use bytes::Bytes;
    use fjord_log::SystemClock;
    use fjord_log::batch::{BatchBuilder, NewRecord};
    use fjord_log::control::TxnMarker;

    use crate::{Broker, BrokerConfig, BrokerError, TopicConfig, TopicPartition};

    #[tokio::test]
    async fn markers_are_checked_against_the_producer_and_its_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
        b.create_topic("m", 1, TopicConfig::default()).await.unwrap();
        let tp = TopicPartition::new("m", 0);
        let p = b.partition(&tp).unwrap();
        let mut data = BatchBuilder::new(1_700_000_000_000).producer(7, 2, 0).transactional(true);
        data.push(&NewRecord { value: Some(Bytes::from_static(b"v")), ..Default::default() });
        let (_, w) = p.append(data.build()).await.unwrap().unwrap();
        p.committed(w).await.unwrap();
        assert_eq!(p.last_stable_offset().await.unwrap(), 0);

        let m = |commit, coordinator_epoch| TxnMarker { commit, coordinator_epoch };
        let old = b.write_txn_marker(&tp, 7, 1, m(true, 5)).await;
        assert!(matches!(old, Err(BrokerError::InvalidProducerEpoch { .. })), "{old:?}");
        assert_eq!(b.write_txn_marker(&tp, 7, 2, m(true, 5)).await.unwrap(), 1);
        assert_eq!(p.last_stable_offset().await.unwrap(), 2, "committed: readable");
        let fenced = b.write_txn_marker(&tp, 7, 2, m(false, 4)).await;
        assert!(matches!(fenced, Err(BrokerError::CoordinatorFenced { current: 5, .. })), "{fenced:?}");
        // Nothing open: written, and nothing else changes; a newer producer
        // epoch (TV2) passes.
        assert_eq!(b.write_txn_marker(&tp, 7, 3, m(false, 5)).await.unwrap(), 2);
        assert!(p.aborted_transactions(0, 3).is_empty(), "no transaction was open to abort");
        assert_eq!(p.last_stable_offset().await.unwrap(), 3);
        let unknown = b.write_txn_marker(&TopicPartition::new("m", 1), 7, 3, m(true, 5)).await;
        assert!(
            matches!(unknown, Err(BrokerError::UnknownPartition { .. } | BrokerError::UnknownTopic(_))),
            "{unknown:?}"
        );
    }
}
