//! What a leader does to a client's batches before they are queued, per
//! the topic's configuration (Kafka's `LogValidator`): timestamps of
//! CreateTime topics must lie within `message.timestamp.before.max.ms` /
//! `.after.max.ms` of the broker's clock, and batches are recompressed
//! when the topic fixes a codec (`compression.type` other than
//! `producer`). Replica appends are taken as the leader wrote them.
//!
//! Runs before the append queues its batches, outside every lock, so a
//! recompression costs only its own appender's time.

use bytes::BytesMut;

use crate::batch::{self, BatchHeader, TimestampType};
use crate::config::LogConfig;
use crate::error::{LogError, Result};
use crate::segment::Located;

/// Checks `data`'s batches (already split and validated: `headers`)
/// against `cfg` at `now`, and recompresses them when the topic asks for
/// another codec; returns the batches to write and their headers.
pub(super) fn admit(
    data: BytesMut,
    headers: Vec<Located>,
    cfg: &LogConfig,
    now: i64,
) -> Result<(BytesMut, Vec<Located>)> {
    if cfg.timestamp_type == TimestampType::CreateTime {
        for (_, h) in &headers {
            check_timestamps(h, cfg, now)?;
        }
    }
    let Some(target) = cfg.recompress else { return Ok((data, headers)) };
    let differs = |h: &BatchHeader| !h.is_control() && h.compression().is_ok_and(|c| c != target.codec);
    if !headers.iter().any(|(_, h)| differs(h)) {
        return Ok((data, headers));
    }
    let mut out = BytesMut::with_capacity(data.len());
    for (off, h) in &headers {
        let bytes = &data[*off..*off + h.total_len()];
        if differs(h) {
            out.extend_from_slice(&batch::recompress(bytes, target.codec, target.level)?);
        } else {
            out.extend_from_slice(bytes);
        }
    }
    // Sizes changed: split again (the new CRCs are checked on the way, and
    // a batch that grew past the limit is refused as Kafka refuses it).
    let headers = super::append::split_and_validate(&out, cfg.max_message_bytes)?;
    Ok((out, headers))
}

/// A CreateTime batch's timestamps against the topic's bounds. The first
/// record's timestamp stands for the earliest and the batch's largest for
/// the latest (the records are not decoded here: compressed batches would
/// need inflating).
fn check_timestamps(h: &BatchHeader, cfg: &LogConfig, now: i64) -> Result<()> {
    if h.is_control() {
        return Ok(());
    }
    let early = now.saturating_sub(h.base_timestamp);
    if early > cfg.timestamp_before_max_ms {
        return Err(LogError::TimestampOutOfRange {
            timestamp: h.base_timestamp,
            now,
            reason: format!(
                "more than message.timestamp.before.max.ms ({} ms) before the broker's time",
                cfg.timestamp_before_max_ms
            ),
        });
    }
    let late = h.max_timestamp.saturating_sub(now);
    if late > cfg.timestamp_after_max_ms {
        return Err(LogError::TimestampOutOfRange {
            timestamp: h.max_timestamp,
            now,
            reason: format!(
                "more than message.timestamp.after.max.ms ({} ms) after the broker's time",
                cfg.timestamp_after_max_ms
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::batch::{BatchBuilder, Compression, NewRecord};
    use crate::config::Recompress;

    fn batch(ts: i64, codec: Compression) -> BytesMut {
        let mut b = BatchBuilder::new(ts).compression(codec);
        for i in 0..20 {
            b.push(&NewRecord {
                value: Some(Bytes::from(format!("value {i} value value value"))),
                ..Default::default()
            });
        }
        b.try_build().expect("built")
    }

    fn admitted(data: BytesMut, cfg: &LogConfig, now: i64) -> Result<(BytesMut, Vec<Located>)> {
        let headers = super::super::append::split_and_validate(&data, cfg.max_message_bytes)?;
        admit(data, headers, cfg, now)
    }

    #[test]
    fn batches_are_recompressed_with_the_topics_codec_keeping_their_records() {
        let mut data = batch(1_000, Compression::None);
        data.extend_from_slice(&batch(1_000, Compression::Lz4));
        let cfg = LogConfig {
            recompress: Some(Recompress { codec: Compression::Zstd, level: Some(5) }),
            ..LogConfig::default()
        };
        let (out, headers) = admitted(data.clone(), &cfg, 1_000).expect("admitted");
        assert_eq!(headers.len(), 2);
        for ((off, h), original) in headers.iter().zip(crate::batch::BatchSplitter::new(data.freeze())) {
            assert_eq!(h.compression().expect("codec"), Compression::Zstd);
            let stored = Bytes::copy_from_slice(&out[*off..*off + h.total_len()]);
            let (_, got) = crate::batch::decode_records(&stored).expect("decoded");
            let (_, want) = crate::batch::decode_records(&original.expect("batch")).expect("decoded");
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_batch_already_in_the_topics_codec_is_kept_byte_for_byte() {
        let data = batch(1_000, Compression::Gzip);
        let cfg = LogConfig {
            recompress: Some(Recompress { codec: Compression::Gzip, level: None }),
            ..LogConfig::default()
        };
        let (out, _) = admitted(data.clone(), &cfg, 1_000).expect("admitted");
        assert_eq!(out, data);
    }

    #[test]
    fn timestamps_outside_the_topics_bounds_are_refused() {
        let cfg = LogConfig { timestamp_before_max_ms: 1_000, timestamp_after_max_ms: 500, ..LogConfig::default() };
        let now = 1_000_000;
        assert!(admitted(batch(now - 1_000, Compression::None), &cfg, now).is_ok());
        assert!(admitted(batch(now + 500, Compression::None), &cfg, now).is_ok());
        let early = admitted(batch(now - 1_001, Compression::None), &cfg, now).unwrap_err();
        assert!(matches!(early, LogError::TimestampOutOfRange { .. }), "{early}");
        let late = admitted(batch(now + 501, Compression::None), &cfg, now).unwrap_err();
        assert!(late.to_string().contains("after.max.ms"), "{late}");
        let append_time = LogConfig { timestamp_type: TimestampType::LogAppendTime, ..cfg };
        assert!(admitted(batch(0, Compression::None), &append_time, now).is_ok(), "LogAppendTime topics replace them");
    }
}
