//! Batch mode: what the broker itself can take.
//!
//! Producers send pre-encoded RecordBatch v2 in hand-encoded Produce
//! requests. Each producer builds its request once: one batch of
//! `--batch-records` records for every partition it owns (as a Kafka client
//! sends one request per broker with a batch for each ready partition).
//! Before each send only the batch timestamps, the first record's first 8
//! value bytes (the send time in µs, for end-to-end latency) and the CRCs are
//! rewritten, and the correlation id. Up to `--pipeline` requests are in
//! flight per connection; responses arrive in request order and are
//! matched by correlation id.
//!
//! Consumers send Fetch requests and count records from the 61-byte batch
//! headers (`last_offset_delta + 1`), walking batches by their length,
//! without decoding records; end-to-end latency is read from the first
//! record of each batch and counted for every record of the batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use fjord_kafka_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_kafka_codec::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use fjord_kafka_codec::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse,
};
use fjord_kafka_codec::kafka_protocol::protocol::StrBytes;
use fjord_log::batch::{BatchBuilder, Compression, HEADER_LEN, NewRecord, compute_crc};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc};

use super::stats::{Stats, record};
use super::wire::{self, FETCH_VERSION, PRODUCE_VERSION};
use super::{Run, TopicPartition};
use crate::units::now_us;

const BASE_TIMESTAMP_POS: usize = 27;
const MAX_TIMESTAMP_POS: usize = 35;
const CRC_POS: usize = 17;
const ATTRIBUTES_POS: usize = 21;
const LAST_OFFSET_DELTA_POS: usize = 23;
const CONTROL_BIT: i16 = 0x20;
const COMPRESSION_MASK: i16 = 0x07;

/// Pseudo-random lowercase text (xorshift), so compressed runs compress
/// like text rather than like zeros or noise.
pub(crate) fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// Builds the batch a producer sends to each of its partitions.
pub(crate) fn build_batch(records: u32, message_size: usize, codec: Compression, seed: u64) -> Result<BytesMut> {
    let mut b = BatchBuilder::new((now_us() / 1000) as i64).compression(codec);
    let data = payload(records as usize * message_size, seed);
    for i in 0..records as usize {
        b.push(&NewRecord {
            timestamp: None,
            key: None,
            value: Some(Bytes::copy_from_slice(&data[i * message_size..(i + 1) * message_size])),
            headers: Vec::new(),
        });
    }
    b.try_build().context("building the record batch")
}

/// Zigzag varint as used in v2 records.
fn varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Position in an uncompressed batch of the first record's value, if that
/// value has at least 8 bytes.
pub(crate) fn first_value_pos(batch: &[u8]) -> Option<usize> {
    let mut p = HEADER_LEN;
    varint(batch, &mut p)?; // record length
    p += 1; // attributes
    varint(batch, &mut p)?; // timestamp delta
    varint(batch, &mut p)?; // offset delta
    let key = varint(batch, &mut p)?;
    if key > 0 {
        p += key as usize;
    }
    let value = varint(batch, &mut p)?;
    (value >= 8 && p + 8 <= batch.len()).then_some(p)
}

/// A Produce request built once and re-stamped before every send.
#[derive(Debug)]
pub(crate) struct ProduceFrame {
    /// The whole frame, size prefix included.
    pub(crate) frame: BytesMut,
    /// Where each batch starts in `frame`.
    pub(crate) batches: Vec<usize>,
    batch_len: usize,
    /// Offset of the first record's value inside a batch (uncompressed only).
    value_pos: Option<usize>,
}

impl ProduceFrame {
    pub(crate) fn new(tps: &[TopicPartition], batch: &[u8], acks: i16) -> Result<ProduceFrame> {
        let batch_bytes = Bytes::copy_from_slice(batch);
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for tp in tps {
            let pd = PartitionProduceData::default().with_index(tp.partition).with_records(Some(batch_bytes.clone()));
            match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic.as_str()) {
                Some(t) => t.partition_data.push(pd),
                None => topics.push(
                    TopicProduceData::default().with_name(wire::topic_name(&tp.topic)).with_partition_data(vec![pd]),
                ),
            }
        }
        let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(topics);
        let frame = wire::encode_request(ApiKey::Produce, PRODUCE_VERSION, 0, &req)?;
        // Find the batches in encoding order.
        let mut batches = Vec::with_capacity(tps.len());
        let mut from = 0;
        for _ in tps {
            let at = frame[from..]
                .windows(batch.len())
                .position(|w| w == batch)
                .context("batch not found in the encoded Produce request")?;
            batches.push(from + at);
            from += at + batch.len();
        }
        let compressed = i16::from_be_bytes([batch[ATTRIBUTES_POS], batch[ATTRIBUTES_POS + 1]]) & COMPRESSION_MASK != 0;
        let value_pos = if compressed { None } else { first_value_pos(batch) };
        Ok(ProduceFrame { frame, batches, batch_len: batch.len(), value_pos })
    }

    /// Sets the correlation id, the timestamps (`now_us`), and the CRCs.
    pub(crate) fn stamp(&mut self, correlation_id: i32, now_us: u64) {
        self.frame[wire::CORRELATION_POS..wire::CORRELATION_POS + 4].copy_from_slice(&correlation_id.to_be_bytes());
        let ms = ((now_us / 1000) as i64).to_be_bytes();
        for &at in &self.batches {
            let b = &mut self.frame[at..at + self.batch_len];
            b[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8].copy_from_slice(&ms);
            b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&ms);
            if let Some(v) = self.value_pos {
                b[v..v + 8].copy_from_slice(&now_us.to_be_bytes());
            }
            let crc = compute_crc(b);
            b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        }
    }
}

/// One batch-mode producer connection owning `tps`.
pub(crate) async fn producer(
    run: Arc<Run>,
    index: usize,
    tps: Vec<TopicPartition>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let a = &run.args;
    let batch =
        build_batch(a.batch_records, a.message_size, a.compression.log(), 0x9e37_79b9_7f4a_7c15 ^ index as u64)?;
    let mut req = ProduceFrame::new(&tps, &batch, a.acks.code())?;
    let records = u64::from(a.batch_records) * tps.len() as u64;
    let bytes = records * a.message_size as u64;
    let interval = run.rate_per_producer().map(|r| Duration::from_secs_f64(records as f64 / r));
    let (rd, mut wr) = wire::connect(&a.bootstrap).await?;
    let acks = a.acks.code() != 0;
    let window = Arc::new(Semaphore::new(a.pipeline.max(1)));
    let (tx, rx) = mpsc::unbounded_channel::<(i32, Instant)>();
    let reader = acks.then(|| {
        let (stats, window) = (stats.clone(), window.clone());
        let per_partition = u64::from(a.batch_records);
        let message_size = a.message_size as u64;
        tokio::spawn(read_acks(rd, rx, window, stats, per_partition, message_size))
    });
    let mut next = tokio::time::Instant::now();
    let mut correlation_id: i32 = 0;
    while !stop.load(Ordering::Relaxed) {
        if acks {
            window.acquire().await.context("pipeline window closed")?.forget();
        }
        if let Some(iv) = interval {
            tokio::time::sleep_until(next).await;
            // Catch up after a stall, but by at most one second's worth.
            next = (next + iv).max(tokio::time::Instant::now() - Duration::from_secs(1));
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        correlation_id = correlation_id.wrapping_add(1);
        req.stamp(correlation_id, now_us());
        if acks {
            tx.send((correlation_id, Instant::now())).ok().context("response reader ended")?;
        }
        wr.write_all(&req.frame).await.context("sending a Produce request")?;
        if !acks {
            stats.published(records, bytes);
        }
    }
    drop(tx);
    if let Some(reader) = reader {
        reader.await.context("response reader panicked")??;
    }
    wr.shutdown().await.ok();
    Ok(())
}

async fn read_acks(
    mut rd: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    mut in_flight: mpsc::UnboundedReceiver<(i32, Instant)>,
    window: Arc<Semaphore>,
    stats: Arc<Stats>,
    per_partition: u64,
    message_size: u64,
) -> Result<()> {
    let mut reported = false;
    while let Some((expected, sent)) = in_flight.recv().await {
        let frame = wire::read_frame(&mut rd).await?;
        let latency = sent.elapsed().as_micros() as u64;
        if wire::correlation_id(&frame) != Some(expected) {
            bail!(
                "Produce response out of order: expected correlation id {expected}, got {:?}",
                wire::correlation_id(&frame)
            );
        }
        let (_, resp): (i32, ProduceResponse) = wire::decode_response(ApiKey::Produce, PRODUCE_VERSION, frame)?;
        let (mut ok, mut failed) = (0u64, 0u64);
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code == 0 {
                    ok += per_partition;
                } else {
                    failed += per_partition;
                    if !reported {
                        reported = true;
                        eprintln!(
                            "produce error on {}-{}: code {} {}",
                            t.name.0.as_str(),
                            p.index,
                            p.error_code,
                            p.error_message.as_ref().map_or("", StrBytes::as_str)
                        );
                    }
                }
            }
        }
        stats.published(ok, ok * message_size);
        if failed > 0 {
            stats.pub_errors.fetch_add(failed, Ordering::Relaxed);
        }
        if ok > 0 {
            let mut h = stats.pub_latency.lock().unwrap_or_else(|e| e.into_inner());
            record(&mut h, latency, ok);
        }
        window.add_permits(1);
    }
    Ok(())
}

/// What a fetch response held for one partition.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Walked {
    /// Offset to fetch next.
    pub(crate) next_offset: i64,
    /// Data records at or after the fetch offset.
    pub(crate) records: u64,
    /// (send time in µs, records) per batch.
    pub(crate) stamps: Vec<(u64, u64)>,
}

/// Walks the batches of a fetched partition by their headers.
pub(crate) fn walk(data: &[u8], fetch_offset: i64, now_us: u64) -> Walked {
    let be_i64 = |p: usize| i64::from_be_bytes(data[p..p + 8].try_into().unwrap_or_default());
    let be_i32 = |p: usize| i32::from_be_bytes(data[p..p + 4].try_into().unwrap_or_default());
    let mut w = Walked { next_offset: fetch_offset, ..Walked::default() };
    let mut pos = 0usize;
    while pos + HEADER_LEN <= data.len() {
        let Ok(len) = usize::try_from(be_i32(pos + 8)) else { break };
        let total = 12 + len;
        if total < HEADER_LEN || pos + total > data.len() {
            break; // a partial batch ends a fetch response
        }
        let base = be_i64(pos);
        let last = base + i64::from(be_i32(pos + LAST_OFFSET_DELTA_POS));
        let attrs = i16::from_be_bytes([data[pos + ATTRIBUTES_POS], data[pos + ATTRIBUTES_POS + 1]]);
        if last >= w.next_offset {
            let n = (last + 1 - base.max(w.next_offset)) as u64;
            if attrs & CONTROL_BIT == 0 {
                w.records += n;
                let batch = &data[pos..pos + total];
                let base_ms = be_i64(pos + BASE_TIMESTAMP_POS);
                let stamp = (attrs & COMPRESSION_MASK == 0)
                    .then(|| first_value_pos(batch))
                    .flatten()
                    .map(|v| u64::from_be_bytes(batch[v..v + 8].try_into().unwrap_or_default()))
                    // Only trust values that look like a recent send time.
                    .filter(|t| *t <= now_us + 1_000_000 && *t + 3_600_000_000 >= now_us)
                    .unwrap_or((base_ms.max(0) as u64) * 1000);
                w.stamps.push((stamp, n));
            }
            w.next_offset = last + 1;
        }
        pos += total;
    }
    w
}

/// One batch-mode consumer connection reading `tps` from offset 0.
pub(crate) async fn consumer(
    run: Arc<Run>,
    tps: Vec<TopicPartition>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let a = &run.args;
    let (mut rd, mut wr) = wire::connect(&a.bootstrap).await?;
    let mut offsets = vec![0i64; tps.len()];
    let partition_max = i32::try_from(a.partition_max_bytes).unwrap_or(i32::MAX);
    let max_wait = i32::try_from(a.fetch_max_wait.as_millis()).unwrap_or(i32::MAX);
    let mut correlation_id = 0i32;
    let mut reported = false;
    let mut topics: Vec<String> = Vec::new();
    for tp in &tps {
        if !topics.contains(&tp.topic) {
            topics.push(tp.topic.clone());
        }
    }
    let names: Vec<_> = topics.iter().map(|t| wire::topic_name(t)).collect();
    while !stop.load(Ordering::Relaxed) {
        let fetch_topics = topics
            .iter()
            .zip(&names)
            .map(|(t, name)| {
                FetchTopic::default().with_topic(name.clone()).with_partitions(
                    tps.iter()
                        .zip(&offsets)
                        .filter(|(tp, _)| &tp.topic == t)
                        .map(|(tp, off)| {
                            FetchPartition::default()
                                .with_partition(tp.partition)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(*off)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(partition_max)
                        })
                        .collect(),
                )
            })
            .collect();
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait)
            .with_min_bytes(1)
            .with_max_bytes(i32::try_from(a.fetch_max_bytes).unwrap_or(i32::MAX))
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(fetch_topics);
        correlation_id = correlation_id.wrapping_add(1);
        wr.write_all(&wire::encode_request(ApiKey::Fetch, FETCH_VERSION, correlation_id, &req)?).await?;
        let frame = wire::read_frame(&mut rd).await?;
        let (corr, resp): (i32, FetchResponse) = wire::decode_response(ApiKey::Fetch, FETCH_VERSION, frame)?;
        if corr != correlation_id {
            bail!("Fetch response with correlation id {corr}, expected {correlation_id}");
        }
        let now = now_us();
        let mut total = 0u64;
        let mut stamps: Vec<(u64, u64)> = Vec::new();
        for t in &resp.responses {
            for p in &t.partitions {
                let Some(i) =
                    tps.iter().position(|tp| tp.partition == p.partition_index && tp.topic == t.topic.0.as_str())
                else {
                    continue;
                };
                if p.error_code != 0 {
                    if !reported {
                        reported = true;
                        eprintln!("fetch error on {}: code {}", tps[i], p.error_code);
                    }
                    continue;
                }
                let data: &[u8] = p.records.as_deref().unwrap_or_default();
                let w = walk(data, offsets[i], now);
                offsets[i] = w.next_offset;
                total += w.records;
                stamps.extend(w.stamps);
            }
        }
        if total > 0 {
            stats.consumed(total, total * a.message_size as u64);
            let mut h = stats.e2e_latency.lock().unwrap_or_else(|e| e.into_inner());
            for (sent, n) in stamps {
                record(&mut h, now.saturating_sub(sent), n);
            }
        } else if has_errors(&resp) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Whether a response carried only errors (then back off a little instead
/// of spinning; a plain empty long poll already waited on the broker).
fn has_errors(resp: &FetchResponse) -> bool {
    resp.error_code != 0 || resp.responses.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }

    #[test]
    fn frame_stamps_every_batch_with_a_valid_crc() {
        let batch = build_batch(10, 100, Compression::None, 7).expect("batch");
        assert!(fjord_log::batch::validate(&batch).is_ok());
        let tps = [tp("a", 0), tp("a", 1), tp("b", 0)];
        let mut f = ProduceFrame::new(&tps, &batch, -1).expect("frame");
        assert_eq!(f.batches.len(), 3);
        f.stamp(42, 1_700_000_000_123_456);
        assert_eq!(&f.frame[8..12], &42i32.to_be_bytes());
        for &at in &f.batches {
            let b = &f.frame[at..at + batch.len()];
            let h = fjord_log::batch::validate(b).expect("valid after stamping");
            assert_eq!(h.base_timestamp, 1_700_000_000_123);
            let w = walk(b, 0, 1_700_000_000_200_000);
            assert_eq!(w, Walked { next_offset: 10, records: 10, stamps: vec![(1_700_000_000_123_456, 10)] });
        }
        // The frame decodes as a Produce request carrying the stamped batches.
        let body = Bytes::copy_from_slice(&f.frame[4..]);
        let decoded = fjord_kafka_codec::decode_request(body).expect("decodes");
        assert_eq!(decoded.header.correlation_id, 42);
    }

    #[test]
    fn walk_skips_records_before_the_offset_and_stops_at_partial_batches() {
        let mut one = build_batch(5, 16, Compression::None, 1).expect("batch");
        fjord_log::batch::set_base_offset(&mut one, 10);
        let mut two = build_batch(5, 16, Compression::None, 2).expect("batch");
        fjord_log::batch::set_base_offset(&mut two, 15);
        let mut data = one.to_vec();
        data.extend_from_slice(&two);
        data.extend_from_slice(&two[..30]);
        let w = walk(&data, 12, now_us());
        assert_eq!((w.next_offset, w.records, w.stamps.len()), (20, 8, 2));
        assert_eq!(walk(&data[..40], 12, 0).next_offset, 12);
    }

    #[test]
    fn compressed_batches_use_the_header_timestamp() {
        let batch = build_batch(100, 100, Compression::Lz4, 3).expect("batch");
        let tps = [tp("a", 0)];
        let mut f = ProduceFrame::new(&tps, &batch, 1).expect("frame");
        assert!(f.value_pos.is_none());
        f.stamp(1, 5_000_123);
        let b = &f.frame[f.batches[0]..f.batches[0] + batch.len()];
        assert!(fjord_log::batch::validate(b).is_ok());
        assert_eq!(walk(b, 0, 6_000_000).stamps, vec![(5_000_000, 100)]);
    }
}
