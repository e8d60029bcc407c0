//! Offset-based consumption: PullMessage, UpdateOffset, GetOffset,
//! QueryOffset (RocketMQ 5's lite pull consumers).

use std::time::Duration;

use fjord_broker::{OffsetSpec, TopicPartition};
use fjord_messaging::{ConsumeModel, PullRequest};
use fjord_rocketmq_proto::v2::{self, Code};

use crate::GrpcGateway;
use crate::convert::{Delivered, Fail, duration, millis, ok, status, to_proto};
use crate::receive::{filter, group_name as group};

/// The partition behind a message queue of this broker (queues are
/// numbered per broker: the partitions this node leads, in order).
fn partition(gw: &GrpcGateway, mq: Option<&v2::MessageQueue>) -> Result<TopicPartition, Fail> {
    let mq = mq.ok_or(Fail::new(Code::BadRequest, "no message queue"))?;
    let topic = mq.topic.as_ref().map(|t| t.name.clone()).filter(|t| !t.is_empty());
    let topic = topic.ok_or(Fail::new(Code::IllegalTopic, "no topic"))?;
    let id =
        u32::try_from(mq.id).map_err(|_| Fail::new(Code::BadRequest, format!("queue id {} is negative", mq.id)))?;
    let p = gw
        .broker()
        .led_partition_at(&topic, id)
        .ok_or_else(|| Fail::new(Code::HaNotAvailable, format!("queue {id} of topic {topic} is not on this broker")))?;
    Ok(TopicPartition::new(topic, p))
}

impl GrpcGateway {
    /// A pull's response stream: status, the messages, then the next offset.
    pub(crate) async fn pull(&self, req: v2::PullMessageRequest) -> Vec<v2::PullMessageResponse> {
        use v2::pull_message_response::Content;
        let r = async {
            let tp = partition(self, req.message_queue.as_ref())?;
            let group = group(req.group.as_ref())?.to_string();
            let p = self.broker().partition(&tp)?;
            let offset = u64::try_from(req.offset).map_err(|_| Fail::new(Code::IllegalOffset, "negative offset"))?;
            let (start, end) = (p.log_start_offset(), p.high_watermark());
            if offset < start || offset > end {
                return Err(Fail::new(Code::IllegalOffset, format!("offset {offset} is outside [{start}, {end}]")));
            }
            let wait =
                req.long_polling_timeout.as_ref().map_or(Duration::ZERO, duration).min(self.config.max_long_poll);
            Ok::<_, Fail>(
                self.messaging
                    .pull(PullRequest {
                        group,
                        model: ConsumeModel::Clustering,
                        partition: tp,
                        offset: Some(offset),
                        max_messages: usize::try_from(req.batch_size).unwrap_or(1).clamp(1, self.config.max_batch),
                        filter: filter(req.filter_expression.as_ref())?,
                        wait,
                    })
                    .await?,
            )
        }
        .await;
        match r {
            Err(f) => vec![v2::PullMessageResponse { content: Some(Content::Status(f.status())) }],
            Ok(pulled) => {
                let found = !pulled.messages.is_empty();
                let head = if found { ok() } else { status(Code::MessageNotFound, "no new message") };
                let mut out = vec![v2::PullMessageResponse { content: Some(Content::Status(head)) }];
                for m in &pulled.messages {
                    out.push(v2::PullMessageResponse {
                        content: Some(Content::Message(to_proto(
                            m,
                            self.queue_of(m),
                            &self.config.endpoint,
                            Delivered::default(),
                        ))),
                    });
                }
                out.push(v2::PullMessageResponse { content: Some(Content::NextOffset(pulled.next_offset as i64)) });
                out
            }
        }
    }

    pub(crate) async fn update_offset(&self, req: v2::UpdateOffsetRequest) -> v2::UpdateOffsetResponse {
        let r = async {
            let tp = partition(self, req.message_queue.as_ref())?;
            let g = group(req.group.as_ref())?;
            let offset = u64::try_from(req.offset).map_err(|_| Fail::new(Code::IllegalOffset, "negative offset"))?;
            self.broker().partition(&tp)?;
            self.messaging.commit(g, &ConsumeModel::Clustering, &tp, offset).await?;
            Ok::<_, Fail>(())
        }
        .await;
        v2::UpdateOffsetResponse { status: Some(r.map_or_else(|f| f.status(), |()| ok())) }
    }

    pub(crate) async fn get_offset(&self, req: v2::GetOffsetRequest) -> v2::GetOffsetResponse {
        let r = async {
            let tp = partition(self, req.message_queue.as_ref())?;
            let g = group(req.group.as_ref())?;
            self.messaging
                .committed(g, &ConsumeModel::Clustering, &tp)
                .await?
                .ok_or_else(|| Fail::new(Code::OffsetNotFound, format!("group {g} has no offset on {tp}")))
        }
        .await;
        match r {
            Ok(o) => v2::GetOffsetResponse { status: Some(ok()), offset: o as i64 },
            Err(f) => v2::GetOffsetResponse { status: Some(f.status()), offset: 0 },
        }
    }

    pub(crate) async fn query_offset(&self, req: v2::QueryOffsetRequest) -> v2::QueryOffsetResponse {
        let r = async {
            let tp = partition(self, req.message_queue.as_ref())?;
            let spec = match v2::QueryOffsetPolicy::try_from(req.query_offset_policy) {
                Ok(v2::QueryOffsetPolicy::Beginning) => OffsetSpec::Earliest,
                Ok(v2::QueryOffsetPolicy::End) => OffsetSpec::Latest,
                Ok(v2::QueryOffsetPolicy::Timestamp) => OffsetSpec::Timestamp(
                    req.timestamp.as_ref().map(millis).ok_or(Fail::new(Code::BadRequest, "no timestamp"))?,
                ),
                Err(_) => return Err(Fail::new(Code::BadRequest, "unknown offset policy")),
            };
            let found = self.broker().list_offset(&tp, spec).await?;
            let end = self.broker().partition(&tp)?.high_watermark();
            Ok::<_, Fail>(found.map_or(end, |f| f.offset))
        }
        .await;
        match r {
            Ok(o) => v2::QueryOffsetResponse { status: Some(ok()), offset: o as i64 },
            Err(f) => v2::QueryOffsetResponse { status: Some(f.status()), offset: 0 },
        }
    }
}
