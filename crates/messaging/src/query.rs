//! Finding messages by key, id, offset and time without scanning whole
//! partitions: keys and ids come from the log store's key index (the
//! broker must run with `storage.key_index` on and the headers of
//! [`crate::message::indexed_headers`] indexed), offsets and times from its
//! offset and time indexes.

use std::sync::Arc;

use fjord_broker::{Partition, TopicPartition};

use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::message::StoredMessage;

/// Messages found by a query, oldest first per partition.
pub type QueryResult = Vec<StoredMessage>;

/// The configuration of a topic whose messages are looked up by key and id
/// (the key index on): RocketMQ gateways create their topics, and this
/// layer its retry and dead-letter topics, with it.
pub fn keyed_topic_config() -> fjord_broker::TopicConfig {
    fjord_broker::TopicConfig::from_entries([("fjord.key.index", "true")]).unwrap_or_default()
}

impl Messaging {
    fn logs(&self, topic: &str) -> Result<Vec<(u32, Arc<Partition>)>> {
        let t = self.broker.topic(topic).ok_or_else(|| fjord_broker::BrokerError::UnknownTopic(topic.to_string()))?;
        Ok(t.partitions().iter().map(|p| (p.id().partition, p.clone())).collect())
    }

    /// Messages of `topic` carrying `key` (a message key, or the record
    /// key of a Kafka record), at most `limit`.
    pub async fn query_by_key(&self, topic: &str, key: &str, limit: usize) -> Result<QueryResult> {
        let logs = self.logs(topic)?;
        let (topic, key) = (topic.to_string(), key.to_string());
        blocking(move || {
            let mut out = Vec::new();
            for (p, log) in logs {
                let hw = log.high_watermark();
                let recs = log
                    .lookup_key(key.as_bytes(), limit.saturating_sub(out.len()))
                    .map_err(|e| MessagingError::log(format!("{topic}-{p}"), e))?;
                for r in recs.iter().filter(|r| r.offset < hw) {
                    let m = StoredMessage::from_record(&topic, p, r);
                    if m.keys.contains(&key) || r.key.as_deref() == Some(key.as_bytes()) {
                        out.push(m);
                    }
                }
            }
            Ok(out)
        })
        .await?
    }

    /// The message of `topic` with this unique id. A message that is still
    /// scheduled is found in the timer (its `offset` is then the timer's,
    /// and `deliver_at` says when it will be delivered).
    pub async fn query_by_id(&self, topic: &str, id: &str) -> Result<StoredMessage> {
        let logs = self.logs(topic)?;
        let (t, i) = (topic.to_string(), id.to_string());
        let found = blocking(move || -> Result<Option<StoredMessage>> {
            for (p, log) in logs {
                let hw = log.high_watermark();
                let recs = log.lookup_key(i.as_bytes(), 16).map_err(|e| MessagingError::log(format!("{t}-{p}"), e))?;
                if let Some(m) = recs
                    .iter()
                    .filter(|r| r.offset < hw)
                    .map(|r| StoredMessage::from_record(&t, p, r))
                    .find(|m| m.id.as_deref() == Some(i.as_str()))
                {
                    return Ok(Some(m));
                }
            }
            Ok(None)
        })
        .await??;
        if let Some(m) = found {
            return Ok(m);
        }
        match self.find_scheduled(topic, id).await? {
            Some(m) => Ok(m),
            None => Err(MessagingError::NotFound(format!("no message with id {id} in topic {topic}"))),
        }
    }

    /// The message at an offset.
    pub async fn query_by_offset(&self, tp: &TopicPartition, offset: u64) -> Result<StoredMessage> {
        let recs = self.broker.read_records(tp, offset, 1).await?;
        recs.iter()
            .find(|r| r.offset == offset)
            .map(|r| StoredMessage::from_record(&tp.topic, tp.partition, r))
            .ok_or_else(|| MessagingError::NotFound(format!("no message at offset {offset} of {tp}")))
    }

    /// Messages of `topic` whose timestamp is in `[start_ms, end_ms]`, at
    /// most `limit`. Starts at the time index's offset for `start_ms` in
    /// each partition and stops at the first record of a batch past the
    /// range, so only the range (plus at most one index interval) is read.
    pub async fn query_by_time(&self, topic: &str, start_ms: i64, end_ms: i64, limit: usize) -> Result<QueryResult> {
        if end_ms < start_ms {
            return Err(MessagingError::InvalidRequest("query end is before its start".into()));
        }
        let logs = self.logs(topic)?;
        let t = topic.to_string();
        blocking(move || {
            let mut out = Vec::new();
            for (p, log) in logs {
                let ctx = |e| MessagingError::log(format!("{t}-{p}"), e);
                let Some((mut offset, _)) = log.offset_for_timestamp(start_ms).map_err(ctx)? else { continue };
                // First offset whose batch is entirely after the range.
                let stop = log.offset_for_timestamp(end_ms.saturating_add(1)).map_err(ctx)?.map(|(o, _)| o);
                let hw = log.high_watermark();
                'part: while offset < hw && stop.is_none_or(|s| offset < s) && out.len() < limit {
                    let recs = log.read_committed(offset, 1 << 20).map_err(ctx)?;
                    let Some(last) = recs.last().map(|r| r.offset) else { break };
                    for r in &recs {
                        if out.len() >= limit {
                            break 'part;
                        }
                        if (start_ms..=end_ms).contains(&r.timestamp) {
                            out.push(StoredMessage::from_record(&t, p, r));
                        }
                    }
                    offset = last + 1;
                }
            }
            Ok(out)
        })
        .await?
    }
}
