//! Stream queues (`x-queue-type: stream`): the queue's topic read as a log.
//!
//! A stream consumer does not pop: it reads the topic from an offset its
//! `x-stream-offset` argument picks (`first`, `last`, `next`, an offset, a
//! timestamp, or an interval such as `1h` back from now) and every consumer
//! sees every message, as RabbitMQ streams and Kafka consumers do. Acks only
//! return prefetch credit; nothing is removed (retention does that:
//! `x-max-age` and `x-max-length-bytes` become the topic's `retention.ms` and
//! `retention.bytes`). Each delivery carries its offset in the
//! `x-stream-offset` header. Declaring a stream queue over an existing
//! topic (written by Kafka or RocketMQ clients) reads that topic.

use std::sync::Arc;
use std::time::Duration;

use fjord_amqp_codec::{AMQPValue, FieldTable};
use fjord_broker::{OffsetSpec, TopicPartition};
use fjord_messaging::{ConsumeModel, PullRequest, StoredMessage};

use crate::AmqpGateway;
use crate::channel::ChannelShared;
use crate::consumer::Consumer;
use crate::delivery::Unacked;
use crate::exception::{AmqpException, MethodResult};
use crate::mapping;
use crate::model::{AMQP_GROUP, Queue, int_arg, string_arg};

/// How long one read waits for new messages (a cancel takes effect within it).
const POLL: Duration = Duration::from_millis(500);

/// Where a stream consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// The oldest retained message.
    First,
    /// The newest message.
    Last,
    /// The next message written.
    Next,
    /// This offset (clamped to what is retained).
    Offset(u64),
    /// The first message stored at or after this time (ms).
    Timestamp(i64),
}

/// Whether a queue is a stream queue.
pub fn is_stream(q: &Queue) -> bool {
    string_arg(&q.arguments, "x-queue-type").is_some_and(|t| t == "stream")
}

/// Milliseconds of a RabbitMQ interval (`7D`, `12h`, `30m`, `10s`, `1Y`, `1M`).
pub fn interval_ms(s: &str) -> Option<i64> {
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok().filter(|n| *n >= 0)?;
    let ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'D' => 86_400_000,
        'M' => 30 * 86_400_000,
        'Y' => 365 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms)
}

/// The topic settings a stream queue's arguments ask for (`retention.ms`
/// from `x-max-age`, `retention.bytes` from `x-max-length-bytes`), or a 406
/// for a declaration RabbitMQ refuses too.
pub fn declare_checks(
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    args: &FieldTable,
) -> MethodResult<Vec<(String, String)>> {
    let bad = |what: &str| AmqpException::precondition_failed(format!("invalid property '{what}' for stream queue"));
    if !durable {
        return Err(bad("non-durable"));
    }
    if exclusive {
        return Err(bad("exclusive"));
    }
    if auto_delete {
        return Err(bad("auto-delete"));
    }
    let mut config = Vec::new();
    if let Some(age) = string_arg(args, "x-max-age") {
        let ms = interval_ms(&age)
            .ok_or_else(|| AmqpException::precondition_failed(format!("invalid x-max-age '{age}'")))?;
        config.push(("retention.ms".to_string(), ms.to_string()));
    }
    if let Some(bytes) = int_arg(args, "x-max-length-bytes") {
        if bytes <= 0 {
            return Err(AmqpException::precondition_failed("x-max-length-bytes must be positive"));
        }
        config.push(("retention.bytes".to_string(), bytes.to_string()));
    }
    Ok(config)
}

/// A consumer's `x-stream-offset` (default `next`).
pub fn start_of(args: &FieldTable, now_ms: i64) -> MethodResult<StreamStart> {
    let bad = |v: &dyn std::fmt::Debug| AmqpException::precondition_failed(format!("invalid x-stream-offset {v:?}"));
    let Some(v) = args.inner().get("x-stream-offset") else { return Ok(StreamStart::Next) };
    Ok(match v {
        AMQPValue::Timestamp(secs) => {
            StreamStart::Timestamp(i64::try_from(*secs).unwrap_or(i64::MAX).saturating_mul(1000))
        }
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            let s = string_arg(args, "x-stream-offset").unwrap_or_default();
            match s.as_str() {
                "first" => StreamStart::First,
                "last" => StreamStart::Last,
                "next" => StreamStart::Next,
                other => StreamStart::Timestamp(now_ms - interval_ms(other).ok_or_else(|| bad(&other))?),
            }
        }
        _ => match int_arg(args, "x-stream-offset") {
            Some(n) if n >= 0 => StreamStart::Offset(n as u64),
            _ => return Err(bad(v)),
        },
    })
}

/// Where to start on one partition.
async fn resolve(gw: &AmqpGateway, tp: &TopicPartition, start: StreamStart) -> u64 {
    let Ok(p) = gw.messaging.broker().partition(tp) else { return 0 };
    let (first, end) = (p.log_start_offset(), p.high_watermark());
    match start {
        StreamStart::First => first,
        StreamStart::Last => end.saturating_sub(1).max(first),
        StreamStart::Next => end,
        StreamStart::Offset(o) => o.clamp(first, end),
        StreamStart::Timestamp(ts) => match gw.messaging.broker().list_offset(tp, OffsetSpec::Timestamp(ts)).await {
            Ok(Some(l)) => l.offset,
            _ => end,
        },
    }
}

/// The delivery loop of a stream consumer.
pub(crate) async fn run(gw: Arc<AmqpGateway>, ch: Arc<ChannelShared>, c: Arc<Consumer>, start: StreamStart) {
    let Some(topic) = gw.messaging.broker().topic(&c.topic) else {
        c.cancel_by_server(&ch).await;
        gw.consumers.remove(&c);
        return;
    };
    let mut cursors = Vec::new();
    for p in topic.partitions() {
        let tp = p.id().clone();
        let at = resolve(&gw, &tp, start).await;
        cursors.push((tp, at));
    }
    let single = cursors.len() == 1;
    let mut next = 0usize;
    while !c.stopped() {
        let want = crate::consumer::credit(&ch, &c);
        if want == 0 {
            crate::consumer::wait_for_credit(&ch, &c).await;
            continue;
        }
        let mut got_any = false;
        for _ in 0..cursors.len() {
            let i = next % cursors.len();
            next = next.wrapping_add(1);
            let (tp, at) = &mut cursors[i];
            let req = PullRequest {
                group: AMQP_GROUP.to_string(),
                model: ConsumeModel::Clustering,
                partition: tp.clone(),
                offset: Some(*at),
                max_messages: want as usize,
                filter: fjord_filter::Filter::All,
                // One partition long-polls; several are polled in turn.
                wait: if single { POLL } else { Duration::ZERO },
            };
            match gw.messaging.pull(req).await {
                Ok(pulled) => {
                    *at = pulled.next_offset.max(*at);
                    if !pulled.messages.is_empty() {
                        got_any = true;
                        deliver(&ch, &c, pulled.messages).await;
                        break;
                    }
                }
                Err(e) => {
                    if gw.messaging.broker().topic(&c.topic).is_none() {
                        c.cancel_by_server(&ch).await;
                        gw.consumers.remove(&c);
                        return;
                    }
                    tracing::warn!(topic = %c.topic, error = %e, "amqp stream consumer could not read");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        if !got_any && !single {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    gw.consumers.remove(&c);
}

async fn deliver(ch: &ChannelShared, c: &Arc<Consumer>, messages: Vec<StoredMessage>) {
    let active = c.active.lock().await;
    if !*active || c.stopped() {
        return;
    }
    let mut buf = Vec::new();
    let n = messages.len() as u64;
    for m in messages {
        let message = Arc::new(m);
        let unacked = Unacked {
            receipt: None,
            consumer: Some(c.clone()),
            queue: c.queue.clone(),
            message: message.clone(),
            attempt: 1,
        };
        let tag = crate::consumer::register(ch, Some(unacked));
        let (exchange, routing_key, props) = mapping::from_stored(&message);
        let mut headers = props.headers().clone().unwrap_or_default();
        let offset = i64::try_from(message.offset).unwrap_or(i64::MAX);
        headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(offset));
        let props = props.with_headers(headers);
        crate::consumer::encode_deliver(ch, c, tag, false, (exchange, routing_key, props), &message, &mut buf);
    }
    if !buf.is_empty() {
        let _ = ch.out.send(buf).await;
    }
    crate::instrument::count("rabbitmq_global_messages_delivered_total", n);
    drop(active);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_intervals_parse_as_rabbitmq_writes_them() {
        let arg = |v: AMQPValue| {
            let mut t = FieldTable::default();
            t.insert("x-stream-offset".into(), v);
            start_of(&t, 10_000_000)
        };
        assert_eq!(start_of(&FieldTable::default(), 0), Ok(StreamStart::Next));
        assert_eq!(arg(AMQPValue::LongString("first".into())), Ok(StreamStart::First));
        assert_eq!(arg(AMQPValue::LongString("last".into())), Ok(StreamStart::Last));
        assert_eq!(arg(AMQPValue::LongLongInt(42)), Ok(StreamStart::Offset(42)));
        assert_eq!(arg(AMQPValue::ShortShortUInt(7)), Ok(StreamStart::Offset(7)));
        assert_eq!(arg(AMQPValue::Timestamp(1_700_000_000)), Ok(StreamStart::Timestamp(1_700_000_000_000)));
        assert_eq!(arg(AMQPValue::LongString("1h".into())), Ok(StreamStart::Timestamp(10_000_000 - 3_600_000)));
        assert!(arg(AMQPValue::LongString("soon".into())).is_err());
        assert!(arg(AMQPValue::LongLongInt(-1)).is_err());
        assert!(arg(AMQPValue::Boolean(true)).is_err());
        assert_eq!(interval_ms("7D"), Some(7 * 86_400_000));
        assert_eq!(interval_ms("h"), None);
        assert_eq!(interval_ms("9999999999999999Y"), None);
    }

    #[test]
    fn stream_declarations_are_checked_and_map_to_retention() {
        let mut args = FieldTable::default();
        args.insert("x-max-age".into(), AMQPValue::LongString("2D".into()));
        args.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(1 << 30));
        let config = declare_checks(true, false, false, &args).expect("valid");
        assert_eq!(
            config,
            vec![("retention.ms".into(), "172800000".into()), ("retention.bytes".into(), "1073741824".into())]
        );
        assert_eq!(declare_checks(false, false, false, &args).map_err(|e| e.code), Err(406));
        assert_eq!(declare_checks(true, true, false, &args).map_err(|e| e.code), Err(406));
        assert_eq!(declare_checks(true, false, true, &args).map_err(|e| e.code), Err(406));
    }
}
