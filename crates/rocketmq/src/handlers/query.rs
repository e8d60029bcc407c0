//! QUERY_MESSAGE (by key or unique id) and VIEW_MESSAGE_BY_ID (by offset
//! message id).

use bytes::BytesMut;
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::codes::response;

use super::ok;
use crate::RocketMqGateway;
use crate::error::{Handled, Reject};
use crate::mapping::{Position, to_ext};

/// Most messages one query returns.
const MAX_QUERY: usize = 64;

pub(crate) async fn query_message(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let topic = req.required("topic")?;
    let key = req.required("key")?;
    let max = req.parse_opt::<i32>("maxNum")?.unwrap_or(32).clamp(1, MAX_QUERY as i32) as usize;
    let begin: i64 = req.parse_opt("beginTimestamp")?.unwrap_or(0);
    let end: i64 = req.parse_opt("endTimestamp")?.filter(|e| *e > 0).unwrap_or(i64::MAX);
    let by_id = req.flag_field("_UNIQUE_KEY_QUERY")?;
    let found = if by_id {
        match gw.messaging.query_by_id(topic, key).await {
            Ok(m) => vec![m],
            Err(fjord_messaging::MessagingError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        }
    } else {
        gw.messaging.query_by_key(topic, key, max).await?
    };
    let mut body = BytesMut::new();
    let mut n = 0;
    for m in found.iter().filter(|m| m.timestamp >= begin && m.timestamp <= end).take(max) {
        to_ext(
            m,
            gw.queue_of_message(m),
            Position::of_message(gw.broker(), &m.topic, m.partition, m.offset),
            gw.store_host,
        )
        .encode_into(&mut body);
        n += 1;
    }
    if n == 0 {
        return Err(Reject::new(response::QUERY_NOT_FOUND, format!("no message with key {key} in topic {topic}")));
    }
    Ok(ok(req)
        .with_field("indexLastUpdateTimestamp", gw.now_ms())
        .with_field("indexLastUpdatePhyoffset", 0)
        .with_body(body.freeze()))
}

pub(crate) async fn view_by_id(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let pos: i64 = req.parse("offset")?;
    let (tp, offset) = Position(pos)
        .resolve(gw.broker())
        .ok_or_else(|| Reject::new(response::SYSTEM_ERROR, format!("can not find message by the offset, {pos}")))?;
    let m = gw.messaging.query_by_offset(&tp, offset).await?;
    let mut body = BytesMut::new();
    to_ext(&m, gw.queue_of_message(&m), pos, gw.store_host).encode_into(&mut body);
    Ok(ok(req).with_body(body.freeze()))
}
