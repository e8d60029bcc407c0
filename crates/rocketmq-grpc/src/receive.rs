//! ReceiveMessage, AckMessage, ChangeInvisibleDuration and
//! ForwardMessageToDeadLetterQueue: per-message acknowledgement ("pop").

use std::time::Duration;

use fjord_filter::{Filter, FilterKind};
use fjord_messaging::pop::StartFrom;
use fjord_messaging::{ConsumeModel, PopRequest, ReceiptHandle};
use fjord_rocketmq_proto::v2::{self, Code};

use crate::GrpcGateway;
use crate::convert::{Delivered, Fail, duration, ok, status, to_proto};

/// Invisibility when the client gives none (push consumers renew it
/// themselves; the Java proxy's default).
const DEFAULT_INVISIBLE: Duration = Duration::from_secs(60);

pub(crate) fn filter(f: Option<&v2::FilterExpression>) -> Result<Filter, Fail> {
    let Some(f) = f else { return Ok(Filter::All) };
    let kind = match v2::FilterType::try_from(f.r#type) {
        Ok(v2::FilterType::Sql) => FilterKind::Sql92,
        _ => FilterKind::Tag,
    };
    Filter::parse(kind, &f.expression).map_err(|e| Fail::new(Code::IllegalFilterExpression, e.to_string()))
}

pub(crate) fn group_name(g: Option<&v2::Resource>) -> Result<&str, Fail> {
    g.map(|g| g.name.as_str())
        .filter(|g| !g.is_empty())
        .ok_or(Fail::new(Code::IllegalConsumerGroup, "no consumer group"))
}

impl GrpcGateway {
    /// The messages of one receive, as the response stream's items: a
    /// status first, then the messages (none and MESSAGE_NOT_FOUND when
    /// the long poll found nothing).
    pub(crate) async fn receive(
        &self,
        _client: &str,
        req: v2::ReceiveMessageRequest,
    ) -> Vec<v2::ReceiveMessageResponse> {
        use v2::receive_message_response::Content;
        let r = async {
            let group = group_name(req.group.as_ref())?.to_string();
            let group_key = group.clone();
            let mq = req.message_queue.as_ref().ok_or(Fail::new(Code::BadRequest, "no message queue"))?;
            let topic = mq.topic.as_ref().map(|t| t.name.clone()).ok_or(Fail::new(Code::IllegalTopic, "no topic"))?;
            self.broker()
                .topic(&topic)
                .ok_or_else(|| Fail::new(Code::TopicNotFound, format!("topic {topic} does not exist")))?;
            let invisible = req.invisible_duration.as_ref().map_or(DEFAULT_INVISIBLE, duration);
            if invisible < Duration::from_secs(1) {
                return Err(Fail::new(Code::IllegalInvisibleTime, "the invisible duration must be at least 1 s"));
            }
            let wait =
                req.long_polling_timeout.as_ref().map_or(Duration::ZERO, duration).min(self.config.max_long_poll);
            let popped = self
                .messaging
                .pop(PopRequest {
                    group,
                    model: ConsumeModel::Clustering,
                    topic,
                    // The queue only picks the broker (as the Java proxy
                    // pops): every queue of the topic is served.
                    partition: None,
                    max_messages: usize::try_from(req.batch_size).unwrap_or(1).clamp(1, self.config.max_batch),
                    invisible,
                    filter: filter(req.filter_expression.as_ref())?,
                    fifo: self.messaging.group_settings(&group_key).is_some_and(|g| g.fifo),
                    wait,
                    start: StartFrom::Earliest,
                    durable: true,
                    id: None,
                })
                .await?;
            Ok::<_, Fail>((popped, invisible))
        }
        .await;
        match r {
            Err(f) => vec![v2::ReceiveMessageResponse { content: Some(Content::Status(f.status())) }],
            Ok((popped, _)) if popped.is_empty() => vec![v2::ReceiveMessageResponse {
                content: Some(Content::Status(status(Code::MessageNotFound, "no new message"))),
            }],
            Ok((popped, invisible)) => {
                let mut out = vec![v2::ReceiveMessageResponse { content: Some(Content::Status(ok())) }];
                for p in popped {
                    let d = Delivered {
                        receipt_handle: Some(p.receipt.0),
                        attempt: Some(p.attempt),
                        invisible: Some(invisible),
                    };
                    out.push(v2::ReceiveMessageResponse {
                        content: Some(Content::Message(to_proto(
                            &p.message,
                            self.queue_of(&p.message),
                            &self.config.endpoint,
                            d,
                        ))),
                    });
                }
                // As the Java proxy: the delivery time closes the stream.
                let now = crate::convert::timestamp(self.now_ms());
                out.push(v2::ReceiveMessageResponse { content: Some(Content::DeliveryTimestamp(now)) });
                out
            }
        }
    }

    pub(crate) async fn ack(&self, req: v2::AckMessageRequest) -> v2::AckMessageResponse {
        let group = match group_name(req.group.as_ref()) {
            Ok(g) => g.to_string(),
            Err(f) => return v2::AckMessageResponse { status: Some(f.status()), entries: vec![] },
        };
        let receipts: Vec<ReceiptHandle> =
            req.entries.iter().map(|e| ReceiptHandle(e.receipt_handle.clone())).collect();
        let results = match self.messaging.ack_many(&group, &ConsumeModel::Clustering, &receipts).await {
            Ok(r) => r,
            Err(e) => return v2::AckMessageResponse { status: Some(Fail::from(e).status()), entries: vec![] },
        };
        let entries: Vec<v2::AckMessageResultEntry> = req
            .entries
            .into_iter()
            .zip(results)
            .map(|(e, r)| v2::AckMessageResultEntry {
                message_id: e.message_id,
                receipt_handle: e.receipt_handle,
                status: Some(r.map_or_else(|e| Fail::from(e).status(), |()| ok())),
            })
            .collect();
        let all_ok = entries.iter().all(|e| e.status.as_ref().is_some_and(|s| s.code == Code::Ok as i32));
        let status = if all_ok || entries.len() == 1 {
            entries.first().and_then(|e| e.status.clone()).or(Some(ok()))
        } else {
            Some(status(Code::MultipleResults, "some acks failed"))
        };
        v2::AckMessageResponse { status, entries }
    }

    pub(crate) async fn change_invisible(
        &self,
        req: v2::ChangeInvisibleDurationRequest,
    ) -> v2::ChangeInvisibleDurationResponse {
        let r = async {
            let group = group_name(req.group.as_ref())?;
            let d = req.invisible_duration.as_ref().map_or(DEFAULT_INVISIBLE, duration);
            let receipt = ReceiptHandle(req.receipt_handle.clone());
            Ok::<_, Fail>(self.messaging.change_invisibility(group, &ConsumeModel::Clustering, &receipt, d).await?)
        }
        .await;
        match r {
            Ok(h) => v2::ChangeInvisibleDurationResponse { status: Some(ok()), receipt_handle: h.0 },
            Err(f) => v2::ChangeInvisibleDurationResponse { status: Some(f.status()), receipt_handle: String::new() },
        }
    }

    pub(crate) async fn forward_to_dlq(
        &self,
        req: v2::ForwardMessageToDeadLetterQueueRequest,
    ) -> v2::ForwardMessageToDeadLetterQueueResponse {
        let r = async {
            let group = group_name(req.group.as_ref())?;
            let receipt = ReceiptHandle(req.receipt_handle.clone());
            let attempts = u32::try_from(req.delivery_attempt).unwrap_or(1).max(1);
            self.messaging.dead_letter_receipt(group, &ConsumeModel::Clustering, &receipt, attempts).await?;
            Ok::<_, Fail>(())
        }
        .await;
        v2::ForwardMessageToDeadLetterQueueResponse { status: Some(r.map_or_else(|f| f.status(), |()| ok())) }
    }
}
