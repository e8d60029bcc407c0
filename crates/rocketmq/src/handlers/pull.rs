//! PULL_MESSAGE: offset reads with broker-side filtering and long polling.

use std::time::Duration;

use bytes::BytesMut;
use fjord_filter::{Filter, FilterKind};
use fjord_messaging::{ConsumeModel, PullRequest};
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::codes::response;

use super::{ok, queue};
use crate::RocketMqGateway;
use crate::error::{Handled, Reject};
use crate::mapping::{Position, to_ext};

/// `PullSysFlag` bits.
const FLAG_COMMIT_OFFSET: i32 = 0x1;
const FLAG_SUSPEND: i32 = 0x2;
const FLAG_SUBSCRIPTION: i32 = 0x4;

/// Most messages one pull returns, whatever the client asks.
const MAX_PULL_MESSAGES: usize = 1024;

/// The subscription filter of a pull: the request's own expression when it
/// carries one, else what the group's heartbeat registered.
fn filter(gw: &RocketMqGateway, req: &RemotingCommand, group: &str, topic: &str, flags: i32) -> Result<Filter, Reject> {
    let (expr, kind) = if flags & FLAG_SUBSCRIPTION != 0 {
        (req.field("subscription").unwrap_or("*").to_string(), req.field("expressionType").map(str::to_string))
    } else {
        match gw.clients.subscription(group, topic) {
            Some(s) => (s.sub_string, s.expression_type),
            None => {
                return Err(Reject::new(
                    response::SUBSCRIPTION_NOT_EXIST,
                    format!("the consumer's subscription not exist, group: {group} topic: {topic}"),
                ));
            }
        }
    };
    let kind = match kind.as_deref() {
        Some(k) if k.eq_ignore_ascii_case("SQL92") => FilterKind::Sql92,
        None | Some("") => FilterKind::Tag,
        Some(k) if k.eq_ignore_ascii_case("TAG") => FilterKind::Tag,
        Some(k) => {
            return Err(Reject::new(response::SUBSCRIPTION_PARSE_FAILED, format!("unknown expression type {k}")));
        }
    };
    Filter::parse(kind, &expr).map_err(|e| Reject::new(response::SUBSCRIPTION_PARSE_FAILED, e.to_string()))
}

pub(crate) async fn pull(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let group = req.required("consumerGroup")?;
    let tp = queue(gw, req)?;
    let offset: i64 = req.parse("queueOffset")?;
    let max = req.parse_opt::<i32>("maxMsgNums")?.unwrap_or(32).clamp(1, MAX_PULL_MESSAGES as i32) as usize;
    let flags: i32 = req.parse_opt("sysFlag")?.unwrap_or(0);
    let suspend_ms: i64 = req.parse_opt("suspendTimeoutMillis")?.unwrap_or(0);
    let filter = filter(gw, req, group, &tp.topic, flags)?;
    let wait = if flags & FLAG_SUSPEND != 0 {
        Duration::from_millis(suspend_ms.max(0) as u64).min(gw.config.max_long_poll)
    } else {
        Duration::ZERO
    };
    if !gw.active(&tp) {
        return idle(gw, req, group, &tp, offset, wait).await;
    }
    let p = gw.broker().partition(&tp)?;
    if flags & FLAG_COMMIT_OFFSET != 0
        && let Some(commit) = req.parse_opt::<i64>("commitOffset")?
        && commit >= 0
    {
        gw.messaging.commit(group, &ConsumeModel::Clustering, &tp, commit as u64).await?;
    }
    let (min, hw) = (p.log_start_offset(), p.high_watermark());
    let moved = |next: u64| {
        RemotingCommand::response_to(req, response::PULL_OFFSET_MOVED, Some("offset moved".into()))
            .with_field("nextBeginOffset", next)
            .with_field("minOffset", min)
            .with_field("maxOffset", hw)
            .with_field("suggestWhichBrokerId", 0)
    };
    let offset = match u64::try_from(offset) {
        Ok(o) if hw == 0 && o != 0 => return Ok(moved(0)),
        Ok(o) if o < min => return Ok(moved(min)),
        Ok(o) if o > hw => return Ok(moved(hw)),
        Ok(o) => o,
        Err(_) => return Ok(moved(min)),
    };
    let pulled = gw
        .messaging
        .pull(PullRequest {
            group: group.to_string(),
            model: ConsumeModel::Clustering,
            partition: tp.clone(),
            offset: Some(offset),
            max_messages: max,
            filter,
            wait,
        })
        .await?;
    let (min, hw) = (p.log_start_offset(), pulled.high_watermark);
    let resp = if pulled.messages.is_empty() {
        let code =
            if pulled.next_offset > offset { response::PULL_RETRY_IMMEDIATELY } else { response::PULL_NOT_FOUND };
        RemotingCommand::response_to(req, code, Some("no new message".into()))
    } else {
        let mut body = BytesMut::new();
        for m in &pulled.messages {
            to_ext(
                m,
                gw.queue_of_message(m),
                Position::of_message(gw.broker(), &m.topic, m.partition, m.offset),
                gw.store_host,
            )
            .encode_into(&mut body);
        }
        ok(req).with_body(body.freeze())
    };
    Ok(resp
        .with_field("nextBeginOffset", pulled.next_offset)
        .with_field("minOffset", min)
        .with_field("maxOffset", hw)
        .with_field("suggestWhichBrokerId", 0))
}

/// A pull from an idle queue: its partition is led by another node (see
/// `queues.rs`), whose queue for it delivers. Waits out the long poll (cut
/// short when leadership changes, so a queue becoming active here is
/// pulled again at once), then answers no new message; the next offset is
/// the group's committed progress when that is further than the
/// consumer's, so a queue that becomes active goes on from there. Nothing
/// is committed through an idle queue.
async fn idle(
    gw: &RocketMqGateway,
    req: &RemotingCommand,
    group: &str,
    tp: &fjord_broker::TopicPartition,
    offset: i64,
    wait: Duration,
) -> Handled {
    let mut changes = gw.broker().subscribe_placement();
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = changes.changed() => {}
    }
    let asked = u64::try_from(offset).unwrap_or(0);
    let next = match gw.messaging.committed(group, &ConsumeModel::Clustering, tp).await {
        Ok(Some(c)) => c.max(asked),
        // No progress, or the coordinator cannot answer now: the
        // consumer's own position stands.
        Ok(None) | Err(_) => asked,
    };
    let p = gw.broker().partition(tp)?;
    Ok(RemotingCommand::response_to(req, response::PULL_NOT_FOUND, Some("no new message".into()))
        .with_field("nextBeginOffset", next)
        .with_field("minOffset", p.log_start_offset())
        .with_field("maxOffset", p.high_watermark())
        .with_field("suggestWhichBrokerId", 0))
}
