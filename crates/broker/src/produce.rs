//! Produce, list offsets and delete records.

use bytes::BytesMut;
use fjord_log::{Durability, ReadBound};

use crate::broker::Broker;
use crate::error::{BrokerError, Result, blocking};
use std::sync::Arc;

use fjord_log::AppendInfo;
use fjord_log::batch::BatchHeader;

use crate::commit::{Until, Written};

use crate::partition::{Partition, TopicPartition};
use crate::producers::{Check, Sequenced};

/// Outcome of a produce to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResult {
    /// Offset of the first appended record.
    pub base_offset: u64,
    /// Offset of the last appended record.
    pub last_offset: u64,
    /// Append time when the topic uses log-append time.
    pub log_append_time: Option<i64>,
    /// Log start offset after the append.
    pub log_start_offset: u64,
}

/// A produce written to its partition's log (offsets assigned), not yet
/// acknowledged: [`Broker::produce_acknowledged`] waits for that.
#[derive(Debug)]
#[must_use = "a written produce is acknowledged only once awaited"]
pub struct WrittenProduce {
    partition: Arc<Partition>,
    written: Written,
    result: ProduceResult,
    /// What was appended (none for a recognised retry): counted once
    /// acknowledged.
    fresh: Option<AppendInfo>,
    acks: Acks,
}

/// When a produce is acknowledged (Kafka's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once every in-sync replica holds it durably (the high watermark
    /// covers it) and at least `min.insync.replicas` are in sync: what
    /// every gateway but Kafka's `acks=1` asks for.
    #[default]
    All,
    /// Once the leader holds it durably under the topic's policy; it
    /// becomes visible when the in-sync replicas hold it too.
    Leader,
}

/// Which offset a list-offsets query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (next offset a consumer would see).
    Latest,
    /// The last stable offset (the latest a `read_committed` consumer
    /// would see).
    LatestStable,
    /// The first offset whose timestamp is `>=` this (ms).
    Timestamp(i64),
    /// The record with the largest timestamp.
    MaxTimestamp,
}

/// Answer to a list-offsets query: `None` when no record matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// Offset found.
    pub offset: u64,
    /// Its timestamp, when the query was by time.
    pub timestamp: Option<i64>,
    /// Leader epoch of the partition.
    pub leader_epoch: i32,
}

impl Broker {
    /// Appends record batches to a partition, creating the topic when
    /// auto-creation is on. Returns once the partition's durability policy
    /// acknowledges the append; the records are then visible to fetches.
    pub async fn produce(&self, tp: &TopicPartition, data: BytesMut) -> Result<ProduceResult> {
        self.produce_acks(tp, data, Acks::All).await
    }

    /// [`Broker::produce`], acknowledged as `acks` says.
    pub async fn produce_acks(&self, tp: &TopicPartition, data: BytesMut, acks: Acks) -> Result<ProduceResult> {
        let written = self.produce_written(tp, data, acks).await?;
        self.produce_acknowledged(written).await
    }

    /// The first half of [`Broker::produce_acks`]: returns once the batches
    /// are in the log with their offsets (or recognised as an idempotent
    /// producer's retry), before they are acknowledged. A connection that
    /// writes one request's batches before the next request's, and waits
    /// for the acknowledgements meanwhile, keeps its order and overlaps the
    /// replication rounds ([`Broker::produce_acknowledged`]). Dropping the
    /// result leaves the write in the log, as a client gone before its
    /// answer does.
    pub async fn produce_written(&self, tp: &TopicPartition, data: BytesMut, acks: Acks) -> Result<WrittenProduce> {
        if *self.shutdown.borrow() {
            return Err(BrokerError::ShuttingDown);
        }
        crate::broker::refuse_internal(&tp.topic, "an internal topic is written by the broker only")?;
        let partition = self.partition_or_create(tp).await?;
        self.check_leader(tp)?;
        if acks == Acks::All {
            self.check_in_sync(tp, false)?;
        }
        let header = BatchHeader::parse(&data).map_err(|e| BrokerError::log(tp.to_string(), e.into()))?;
        refuse_control_batches(&data)?;
        let Some(sequenced) = Sequenced::of(&header) else {
            let (info, written) = Self::write(&partition, data).await?;
            let result = Self::result_of(&partition, &info);
            return Ok(WrittenProduce { partition, written, result, fresh: Some(info), acks });
        };
        // Idempotent: one batch per request (as Kafka requires for v2
        // batches), checked and appended under this producer's lock.
        if header.total_len() != data.len() {
            return Err(BrokerError::InvalidRequest(
                "an idempotent produce must carry exactly one record batch".into(),
            ));
        }
        if header.is_transactional() {
            return Err(BrokerError::InvalidRequest("transactional batches are not supported yet".into()));
        }
        // The placement names this node before the partition takes the
        // leader's role (while it may still be copying the old leader's
        // last batches): until then an idempotent write is refused as
        // retriable, never checked against a table still catching up.
        if !partition.commit.leading() {
            return Err(self.not_leader(tp, None));
        }
        // A failed log refuses every write until it is recovered: said
        // before the sequence check, so a client's pipelined batches all
        // get the same retriable refusal, rather than the first one that
        // and the next OUT_OF_ORDER (which librdkafka answers with an
        // epoch bump, re-sending other partitions' possibly written
        // batches under it: duplicates).
        partition.log().check_writable().map_err(|e| BrokerError::log(tp.to_string(), e))?;
        // The batch is in the producer's state as soon as it is in the log
        // (the append queue applies it before answering), before its
        // commit: a retry of a batch still waiting for its commit (the
        // client timed out, the wait failed, the request was dropped) is
        // then a duplicate and waits for that same write, instead of being
        // appended again. The producer's lock covers check and write only,
        // so its next batches are written while this one waits (as Kafka
        // pipelines up to five).
        // Check and write run in a task of their own: a caller dropped
        // between them (its client gone, its Produce timed out) must not
        // release the lock while its write is still queued.
        let guard = partition.producers.producer_lock(sequenced.producer_id).lock_owned().await;
        let p = partition.clone();
        let step = tokio::spawn(async move {
            let _guard = guard;
            let check = loop {
                match p.producers.check(&sequenced) {
                    Some(check) => break check?,
                    // Not loaded yet, or cut meanwhile (a recovery): loaded
                    // from the log.
                    None => p.producers.ensure_loaded(p.log()).await?,
                }
            };
            match check {
                Check::Duplicate(m) => {
                    let result = ProduceResult {
                        base_offset: m.base_offset,
                        last_offset: m.last_offset,
                        log_append_time: m.log_append_time,
                        log_start_offset: p.log().log_start_offset(),
                    };
                    Ok::<_, BrokerError>((result, p.written_at(m.last_offset), None))
                }
                Check::Append => {
                    let (info, written) = Self::write(&p, data).await?;
                    Ok((Self::result_of(&p, &info), written, Some(info)))
                }
            }
        });
        let (result, written, fresh) =
            step.await.map_err(|e| BrokerError::internal(format!("an idempotent append failed: {e}")))??;
        Ok(WrittenProduce { partition, written, result, fresh, acks })
    }

    /// The second half of [`Broker::produce_acks`]: waits until the write
    /// counts as acknowledged under its `acks`.
    pub async fn produce_acknowledged(&self, w: WrittenProduce) -> Result<ProduceResult> {
        self.acknowledge(&w.partition, w.written, w.acks, Until::Committed).await?;
        if let Some(info) = w.fresh {
            self.count_produced(&w.partition, &info);
        }
        Ok(ProduceResult { log_start_offset: w.partition.log().log_start_offset(), ..w.result })
    }

    /// Appends record batches to a partition of an internal topic that this
    /// node leads (the broker's own state, such as the messaging layer's
    /// timer shards; clients cannot write there). Returns once they are
    /// committed as `acks=all` would be; deposed while waiting, it fails at
    /// once with [`BrokerError::NotCommitted`] (possibly written: the new
    /// leader may hold it), or not leader once the write is cut. Refused as
    /// not leading until the
    /// partition has taken the leader's role, so a writer never appends
    /// behind a term it has not replayed.
    pub async fn append_internal(&self, tp: &TopicPartition, data: BytesMut) -> Result<ProduceResult> {
        if *self.shutdown.borrow() {
            return Err(BrokerError::ShuttingDown);
        }
        if !crate::offsets::is_internal_topic(&tp.topic) {
            return Err(BrokerError::internal(format!("{tp} is not an internal topic")));
        }
        let partition = self.partition(tp)?;
        self.check_leader(tp)?;
        if !partition.commit.leading() {
            return Err(self.not_leader(tp, None));
        }
        self.check_in_sync(tp, false)?;
        let (info, written) = Self::write(&partition, data).await?;
        self.acknowledge(&partition, written, Acks::All, Until::CommittedWhileLeading).await?;
        Ok(Self::result_of(&partition, &info))
    }

    /// Writes `data` (offsets assigned); not yet committed.
    async fn write(partition: &Arc<Partition>, data: BytesMut) -> Result<(AppendInfo, Written)> {
        let tp = partition.id();
        partition.append(data).await?.map_err(|e| BrokerError::log(tp.to_string(), e))
    }

    /// Waits until a write counts as acknowledged under `acks`; with
    /// `acks=all`, outlasting a change of leader unless `until` says not.
    async fn acknowledge(&self, partition: &Arc<Partition>, written: Written, acks: Acks, until: Until) -> Result<()> {
        let tp = partition.id();
        match acks {
            Acks::All => {
                let committed = match until {
                    Until::Committed => partition.committed(written).await,
                    Until::CommittedWhileLeading => partition.committed_while_leading(written).await,
                };
                if let Err(e) = committed {
                    // Cut from this log (the new leader's lacks it): "not
                    // leader" tells the client it was not written, and it
                    // retries there. Otherwise its fate is unknown here (a
                    // deposed node that learned nothing in its grace, a
                    // failed fsync): "timed out", possibly written — never
                    // "not leader" for a write that may have survived,
                    // which librdkafka re-sends under a new epoch after a
                    // bump (a duplicate).
                    // The broker's own writers, failed at once when
                    // deposed, hear the same: "not leader" only once the
                    // write is cut.
                    if partition.cut_since(written) {
                        self.check_leader(tp)?;
                    }
                    return Err(BrokerError::NotCommitted { tp: tp.to_string(), source: e });
                }
                // Committed by fewer replicas than the topic requires (the
                // in-sync set shrank while this write waited).
                self.check_in_sync(tp, true)
            }
            Acks::Leader => partition
                .locally_durable(written)
                .await
                .map_err(|source| BrokerError::NotCommitted { tp: tp.to_string(), source }),
        }
    }

    fn count_produced(&self, partition: &Partition, info: &AppendInfo) {
        let (records, now) = (info.last_offset + 1 - info.base_offset, self.clock.now_ms());
        let bytes = info.bytes as u64;
        partition.traffic.produced(records, bytes, now);
        self.traffic.produced(records, bytes, now);
    }

    fn result_of(partition: &Partition, info: &AppendInfo) -> ProduceResult {
        ProduceResult {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time: info.log_append_time,
            log_start_offset: partition.log().log_start_offset(),
        }
    }

    /// Refuses an `acks=all` write to a partition with fewer in-sync
    /// replicas than its `min.insync.replicas` (by default 2 where it has
    /// 3 or more replicas, else 1). A single node always has enough.
    fn check_in_sync(&self, tp: &TopicPartition, appended: bool) -> Result<()> {
        let Some(placed) = self.placement().and_then(|p| p.partition(tp).cloned()) else { return Ok(()) };
        let configured = self.topic(&tp.topic).and_then(|t| t.record().config.min_insync_replicas());
        let min = configured.unwrap_or(if placed.replicas.len() >= 3 { 2 } else { 1 });
        if placed.isr.len() >= min {
            return Ok(());
        }
        Err(BrokerError::NotEnoughReplicas { tp: tp.to_string(), in_sync: placed.isr.len(), required: min, appended })
    }

    /// Looks up an offset by position or time.
    pub async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<ListedOffset>> {
        let partition = self.led_partition(tp)?;
        let leader_epoch = partition.leader_epoch();
        let log = partition.log().clone();
        let hw = log.high_watermark();
        let found = match spec {
            OffsetSpec::Earliest => Some((log.log_start_offset(), None)),
            OffsetSpec::Latest => Some((hw, None)),
            OffsetSpec::LatestStable => Some((partition.last_stable_offset().await?, None)),
            OffsetSpec::Timestamp(ts) => blocking(move || log.offset_for_timestamp(ts))
                .await?
                .map_err(|e| BrokerError::log(tp.to_string(), e))?
                .filter(|(o, _)| *o < hw)
                .map(|(o, t)| (o, Some(t))),
            OffsetSpec::MaxTimestamp => blocking(move || log.max_timestamp_offset())
                .await?
                .map_err(|e| BrokerError::log(tp.to_string(), e))?
                .filter(|(o, _)| *o < hw)
                .map(|(o, t)| (o, Some(t))),
        };
        Ok(found.map(|(offset, timestamp)| ListedOffset { offset, timestamp, leader_epoch }))
    }

    /// Makes records before `offset` unreadable; returns the new log start.
    pub async fn delete_records(&self, tp: &TopicPartition, offset: u64) -> Result<u64> {
        let log = self.led_partition(tp)?.log().clone();
        blocking(move || log.delete_records_before(offset)).await?.map_err(|e| BrokerError::log(tp.to_string(), e))
    }

    /// Reads decoded records for a consumer (gateways that need records,
    /// not bytes), counted as fetched traffic. Bounded by the high
    /// watermark.
    pub async fn read_records(
        &self,
        tp: &TopicPartition,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Vec<fjord_log::batch::Record>> {
        self.read_records_as(tp, offset, max_bytes, true).await
    }

    /// As [`Broker::read_records`], for tools that look at messages without
    /// consuming them (the admin API's browsing and queries): not counted
    /// as fetched traffic.
    pub async fn peek_records(
        &self,
        tp: &TopicPartition,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Vec<fjord_log::batch::Record>> {
        self.read_records_as(tp, offset, max_bytes, false).await
    }

    async fn read_records_as(
        &self,
        tp: &TopicPartition,
        offset: u64,
        max_bytes: usize,
        consumer: bool,
    ) -> Result<Vec<fjord_log::batch::Record>> {
        let partition = self.partition(tp)?;
        let log = partition.log().clone();
        let records = blocking(move || log.read_records(offset, max_bytes, ReadBound::HighWatermark))
            .await?
            .map_err(|e| BrokerError::log(tp.to_string(), e))?;
        if consumer {
            let bytes: usize = records.iter().map(payload_bytes).sum();
            partition.traffic.fetched(records.len() as u64, bytes as u64);
            self.traffic.fetched(records.len() as u64, bytes as u64);
        }
        Ok(records)
    }

    /// Fsyncs partitions whose durability is interval-based. Returns how
    /// many logs were flushed.
    pub async fn flush_interval_logs(&self) -> Result<usize> {
        let logs: Vec<_> = self
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .filter(|p| matches!(p.log().config().durability, Durability::Interval(_)))
            .map(|p| p.log().clone())
            .collect();
        let n = logs.len();
        blocking(move || logs.iter().try_for_each(|l| l.flush())).await?.map_err(|e| BrokerError::log("flush", e))?;
        Ok(n)
    }
}

/// Key, value and header bytes of a decoded record (what a consumer of
/// decoded records receives; raw fetches count batch bytes instead).
fn payload_bytes(r: &fjord_log::batch::Record) -> usize {
    r.key.as_ref().map_or(0, |k| k.len())
        + r.value.as_ref().map_or(0, |v| v.len())
        + r.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len())).sum::<usize>()
}

/// Control batches (transaction markers) are the broker's to write: one
/// from a client could end another producer's transaction.
fn refuse_control_batches(data: &[u8]) -> Result<()> {
    let mut pos = 0;
    while let Ok(h) = BatchHeader::parse(&data[pos..]) {
        if h.is_control() {
            return Err(BrokerError::InvalidRequest("control batches are written by the broker, not produced".into()));
        }
        pos += h.total_len();
        if pos >= data.len() {
            break;
        }
    }
    Ok(())
}
