//! Offset commands: committed progress, queue bounds, lookup by time.

use fjord_broker::OffsetSpec;
use fjord_messaging::ConsumeModel;
use fjord_rocketmq_codec::RemotingCommand;
use fjord_rocketmq_codec::codes::response;

use super::{ok, queue};
use crate::RocketMqGateway;
use crate::error::{Handled, Reject};

pub(crate) async fn query_consumer_offset(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let group = req.required("consumerGroup")?;
    let tp = queue(gw, req)?;
    if let Some(o) = gw.messaging.committed(group, &ConsumeModel::Clustering, &tp).await? {
        return Ok(ok(req).with_field("offset", o));
    }
    // RocketMQ: a group without progress on a queue that still holds its
    // first message starts from 0, whatever its consume-from setting.
    let p = gw.broker().partition(&tp)?;
    if p.log_start_offset() == 0 {
        return Ok(ok(req).with_field("offset", 0));
    }
    Err(Reject::new(response::QUERY_NOT_FOUND, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first"))
}

pub(crate) async fn update_consumer_offset(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let group = req.required("consumerGroup")?;
    let tp = queue(gw, req)?;
    let offset: i64 = req.parse("commitOffset")?;
    let offset = u64::try_from(offset).map_err(|_| Reject::new(response::SYSTEM_ERROR, "negative commitOffset"))?;
    gw.broker().partition(&tp)?;
    if !gw.active(&tp) {
        // An idle queue (`queues.rs`): the consumer's position there is
        // not its progress; the queue of the partition's leader commits.
        return Ok(ok(req));
    }
    gw.messaging.commit(group, &ConsumeModel::Clustering, &tp, offset).await?;
    Ok(ok(req))
}

pub(crate) fn max_offset(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let p = gw.broker().partition(&queue(gw, req)?)?;
    Ok(ok(req).with_field("offset", p.high_watermark()))
}

pub(crate) fn min_offset(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let p = gw.broker().partition(&queue(gw, req)?)?;
    Ok(ok(req).with_field("offset", p.log_start_offset()))
}

pub(crate) async fn earliest_store_time(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let tp = queue(gw, req)?;
    let start = gw.broker().partition(&tp)?.log_start_offset();
    let m = gw.messaging.query_by_offset(&tp, start).await?;
    Ok(ok(req).with_field("timestamp", m.timestamp))
}

pub(crate) async fn search_by_timestamp(gw: &RocketMqGateway, req: &RemotingCommand) -> Handled {
    let tp = queue(gw, req)?;
    let ts: i64 = req.parse("timestamp")?;
    let found = gw.broker().list_offset(&tp, OffsetSpec::Timestamp(ts)).await?;
    let offset = match found {
        Some(f) => f.offset,
        // Nothing at or after that time: the end of the queue.
        None => gw.broker().partition(&tp)?.high_watermark(),
    };
    Ok(ok(req).with_field("offset", offset))
}
