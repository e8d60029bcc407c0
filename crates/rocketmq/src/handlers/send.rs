//! SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE and
//! CONSUMER_SEND_MSG_BACK.

use std::io::Read;

use bytes::Bytes;
use fjord_broker::{BrokerError, TopicPartition};
use fjord_messaging::{MessagingError, Partitioning, SendReceipt, StoredMessage};
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::codes::{request, response};
use fjord_rocketmq_codec::message::{decode_batch, decode_properties, encode_offset_msg_id, prop, property, sys_flag};

use super::ok;
use crate::RocketMqGateway;
use crate::connection::Peer;
use crate::error::{Handled, Reject};
use crate::mapping::{Position, to_message};

/// A send request's header, under its long (v1) or short (v2) names.
struct SendHeader<'a> {
    producer_group: &'a str,
    topic: &'a str,
    default_queues: u32,
    queue_id: i32,
    sys_flag: i32,
    born_ms: Option<i64>,
    properties: Vec<(String, String)>,
    batch: bool,
}

fn parse_header(req: &RemotingCommand) -> Result<SendHeader<'_>, Reject> {
    let v2 = req.code != request::SEND_MESSAGE;
    let name = |long: &'static str, short: &'static str| if v2 { short } else { long };
    let field = |long: &'static str, short: &'static str| req.field(name(long, short));
    let num = |long: &'static str, short: &'static str| -> Result<Option<i64>, Reject> {
        match field(long, short) {
            None | Some("") | Some("null") => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                Reject::new(response::SYSTEM_ERROR, format!("send header field {long} is not a number: {v}"))
            }),
        }
    };
    let topic = field("topic", "b").ok_or(Reject::new(response::SYSTEM_ERROR, "missing header field `topic`"))?;
    Ok(SendHeader {
        producer_group: field("producerGroup", "a").unwrap_or(""),
        topic,
        default_queues: num("defaultTopicQueueNums", "d")?.unwrap_or(4).clamp(1, 1024) as u32,
        queue_id: num("queueId", "e")?.unwrap_or(-1) as i32,
        sys_flag: num("sysFlag", "f")?.unwrap_or(0) as i32,
        born_ms: num("bornTimestamp", "g")?,
        properties: decode_properties(field("properties", "i").unwrap_or("")),
        // Java clients batch with SEND_BATCH_MESSAGE, the C++ client with
        // SEND_MESSAGE and `batch` = 1.
        batch: req.code == request::SEND_BATCH_MESSAGE
            || matches!(field("batch", "m").map(str::trim), Some("1" | "true")),
    })
}

/// Creates a topic on a producer's first send when auto-creation is on
/// (RocketMQ: the producer sends with `defaultTopic` = TBW102).
pub(crate) async fn ensure_topic(gw: &RocketMqGateway, topic: &str, queues: u32) -> Result<u32, Reject> {
    if let Some(t) = gw.broker().topic(topic) {
        return Ok(t.partitions().len() as u32);
    }
    if let Some(group) = topic.strip_prefix(fjord_messaging::retry::RETRY_PREFIX) {
        gw.messaging.ensure_retry_topic(group).await?;
    } else if !gw.broker().auto_create_topics() {
        return Err(Reject::new(response::TOPIC_NOT_EXIST, format!("topic[{topic}] not exist, apply first please!")));
    } else {
        let queues = queues.clamp(1, gw.config.max_auto_create_queues.max(1));
        match gw.broker().create_topic(topic, queues, fjord_messaging::query::keyed_topic_config()).await {
            Ok(_) | Err(BrokerError::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    gw.broker()
        .topic(topic)
        .map(|t| t.partitions().len() as u32)
        .ok_or_else(|| Reject::new(response::TOPIC_NOT_EXIST, format!("topic {topic} does not exist")))
}

/// Undoes the client's zlib compression, refusing bodies that inflate
/// beyond the largest message the broker stores.
fn inflate(body: Bytes, max: usize) -> Result<Bytes, Reject> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let n = flate2::read::ZlibDecoder::new(&body[..])
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Reject::new(response::MESSAGE_ILLEGAL, format!("compressed body does not inflate: {e}")))?;
    if n > max {
        return Err(Reject::new(response::MESSAGE_ILLEGAL, format!("the inflated body exceeds {max} bytes")));
    }
    Ok(Bytes::from(out))
}

pub(crate) async fn send(gw: &RocketMqGateway, peer: &Peer, req: &RemotingCommand) -> Handled {
    let h = parse_header(req)?;
    gw.clients.touch_producer(h.producer_group, &peer.conn, gw.now_ms());
    let partitions = ensure_topic(gw, h.topic, h.default_queues).await?;
    let partitioning = match u32::try_from(h.queue_id) {
        // A write queue of this broker; a stale route's queue id wraps.
        Ok(q) => {
            let queues = if gw.broker().placement().is_some() { gw.write_queues(h.topic) } else { partitions };
            Partitioning::Explicit(gw.partition_of(h.topic, (q % queues.max(1)) as i32)?.partition)
        }
        Err(_) => Partitioning::Auto,
    };
    let now = gw.now_ms();
    let max_body = gw.broker().config().log_defaults.max_message_bytes;
    let compressed = h.sys_flag & sys_flag::COMPRESSED != 0;
    let entries: Vec<(Bytes, Vec<(String, String)>)> = if h.batch {
        decode_batch(req.body.clone())?
            .into_iter()
            .map(|e| {
                let mut props = h.properties.clone();
                props.extend(e.properties);
                (e.body, props)
            })
            .collect()
    } else {
        vec![(req.body.clone(), h.properties.clone())]
    };
    let mut msgs = Vec::with_capacity(entries.len());
    for (body, props) in &entries {
        let body = if compressed { inflate(body.clone(), max_body)? } else { body.clone() };
        msgs.push(to_message(h.topic, body, props, h.born_ms, now)?);
    }
    let transactional = h.sys_flag & sys_flag::TRANSACTION_MASK == sys_flag::TRANSACTION_PREPARED
        || prop(&h.properties, property::TRAN_MSG) == Some("true");
    if transactional {
        let [msg] = <[_; 1]>::try_from(msgs)
            .map_err(|_| Reject::new(response::MESSAGE_ILLEGAL, "a batch cannot be transactional"))?;
        let group = prop(&h.properties, property::PGROUP).unwrap_or(h.producer_group).to_string();
        let r = gw.messaging.send_half(msg, partitioning, &group).await?;
        return Ok(send_response(
            req,
            gw,
            &r.partition,
            &[encode_offset_msg_id(&gw.store_host, r.handle as i64)],
            r.handle as i64,
        ));
    }
    let count = msgs.len();
    // A write queue whose partition another node leads now (a failover):
    // that node stores the batch.
    let here = match partitioning {
        Partitioning::Explicit(p) => gw.active(&TopicPartition::new(h.topic, p)),
        Partitioning::Auto => true,
    };
    let sent = if here {
        gw.messaging.send_batch(msgs, partitioning).await
    } else {
        gw.messaging.send_batch_to_leaders(msgs, partitioning).await
    };
    let receipts = match sent {
        Ok(r) => r,
        Err(e) => return stored_unconfirmed(gw, req, h.topic, partitioning, count, e),
    };
    let Some(first) = receipts.first() else {
        return Err(Reject::new(response::MESSAGE_ILLEGAL, "the batch holds no message"));
    };
    let ids: Vec<String> = receipts.iter().map(|r| offset_id(gw, r)).collect();
    Ok(send_response(req, gw, &first.partition.clone(), &ids, first.offset.map_or(-1, |o| o as i64)))
}

/// A send that failed: refused, or — its write made but its commit not
/// confirmed — answered as RocketMQ's own broker answers a message it
/// stored but could not flush or replicate in time: `FLUSH_DISK_TIMEOUT`
/// (one node) or `FLUSH_SLAVE_TIMEOUT` (a cluster), a send result the
/// Java client returns to the application without retrying (unless it sets
/// `retryAnotherBrokerWhenNotStoreOK`). An error would make it send the
/// message again: a second copy whenever the first survives
/// (rocketmq-client-cpp retries any status but SEND_OK regardless). Only for a
/// send to a known queue (every RocketMQ client names one); the offset is
/// unknown (-1).
fn stored_unconfirmed(
    gw: &RocketMqGateway,
    req: &RemotingCommand,
    topic: &str,
    partitioning: Partitioning,
    count: usize,
    e: MessagingError,
) -> Handled {
    let Partitioning::Explicit(p) = partitioning else { return Err(e.into()) };
    if !e.possibly_written() {
        return Err(e.into());
    }
    tracing::warn!(topic, partition = p, error = %e, "a send's commit is not confirmed; answered as stored, not flushed");
    let code =
        if gw.broker().placement().is_some() { response::FLUSH_SLAVE_TIMEOUT } else { response::FLUSH_DISK_TIMEOUT };
    let ids = vec![encode_offset_msg_id(&gw.store_host, -1); count.max(1)];
    let mut resp = send_response(req, gw, &TopicPartition::new(topic, p), &ids, -1);
    resp.code = code;
    resp.remark = Some(e.to_string());
    Ok(resp)
}

fn offset_id(gw: &RocketMqGateway, r: &SendReceipt) -> String {
    let pos = r.offset.map_or(-1, |o| Position::of_message(gw.broker(), &r.partition.topic, r.partition.partition, o));
    encode_offset_msg_id(&gw.store_host, pos)
}

fn send_response(
    req: &RemotingCommand,
    gw: &RocketMqGateway,
    tp: &TopicPartition,
    ids: &[String],
    queue_offset: i64,
) -> RemotingCommand {
    ok(req)
        .with_field("msgId", ids.join(","))
        .with_field("queueId", gw.queue_of(tp))
        .with_field("queueOffset", queue_offset)
        .with_field(property::MSG_REGION, "DefaultRegion")
        .with_field(property::TRACE_ON, "true")
}

/// A consumer failed to process a message: retry it later through the
/// group's retry topic, or dead-letter it once out of attempts.
pub(crate) async fn send_back(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let group = req.required("group")?;
    let pos: i64 = req.parse("offset")?;
    let delay_level: i32 = req.parse_opt("delayLevel")?.unwrap_or(0);
    let max_reconsume = req
        .parse_opt::<i32>("maxReconsumeTimes")?
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(gw.config.max_reconsume_times);
    let (tp, offset) = Position(pos)
        .resolve(gw.broker())
        .ok_or_else(|| Reject::new(response::SYSTEM_ERROR, format!("look message by offset failed, {pos}")))?;
    let m = read_one(gw, &tp, offset).await?;
    if delay_level < 0 {
        gw.messaging.dead_letter(group, &m, m.attempt + 1).await?;
    } else {
        // RocketMQ counts re-consumptions; Fjord counts deliveries.
        gw.messaging.consume_failed(group, &m, Some(max_reconsume + 1)).await?;
    }
    Ok(ok(req))
}

/// The message at `offset`.
pub(crate) async fn read_one(gw: &RocketMqGateway, tp: &TopicPartition, offset: u64) -> Result<StoredMessage, Reject> {
    let m = gw.messaging.query_by_offset(tp, offset).await?;
    Ok(m)
}
