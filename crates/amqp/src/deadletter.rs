//! Dead-lettering: a message rejected without requeue, expired, pushed out
//! by `x-max-length` or over its queue's `x-delivery-limit` is republished
//! to the queue's `x-dead-letter-exchange` (with `x-dead-letter-routing-key`
//! or its own routing keys), carrying RabbitMQ's `x-death` history, and only
//! then acked in its queue: a crash in between delivers it twice, never
//! loses it. Without a dead-letter exchange the message is dropped.

use fjord_amqp_codec::{AMQPValue, BasicProperties, FieldArray, FieldTable};
use fjord_messaging::{ConsumeModel, Partitioning, ReceiptHandle, StoredMessage};

use crate::AmqpGateway;
use crate::mapping::{self, Published};
use crate::model::{AMQP_GROUP, Queue, string_arg};

/// Why a message is dead-lettered (`x-death`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// basic.reject / basic.nack with requeue=false.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// Pushed out by `x-max-length` (drop-head) or refused by it
    /// (reject-publish-dlx).
    Maxlen,
    /// Returned more often than `x-delivery-limit` allows.
    DeliveryLimit,
}

impl Reason {
    /// The name RabbitMQ writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A queue as seen by the tasks that deliver from it.
#[derive(Debug, Clone)]
pub struct QueueRef {
    /// Its virtual host.
    pub vhost: String,
    /// Its definition when the consumer started.
    pub queue: Queue,
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// The properties of the dead-lettered copy: `x-death` updated (an entry
/// per queue and reason, most recent first, with a count), the first and
/// last death recorded, the per-message expiration removed.
pub fn dead_props(
    mut props: BasicProperties,
    queue: &str,
    reason: Reason,
    exchange: &str,
    routing_key: &str,
    now_ms: i64,
) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |t: &FieldTable| {
        string_arg(t, "queue").as_deref() == Some(queue) && string_arg(t, "reason").as_deref() == Some(reason.as_str())
    };
    let previous = deaths.iter().position(|d| matches!(d, AMQPValue::FieldTable(t) if same(t)));
    let entry = match previous.map(|i| deaths.remove(i)) {
        Some(AMQPValue::FieldTable(mut t)) => {
            let count = crate::model::int_arg(&t, "count").unwrap_or(0) + 1;
            t.insert("count".into(), AMQPValue::LongLongInt(count));
            t.insert("time".into(), AMQPValue::Timestamp((now_ms / 1000) as u64));
            t
        }
        _ => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), long(reason.as_str()));
            t.insert("queue".into(), long(queue));
            t.insert("time".into(), AMQPValue::Timestamp((now_ms / 1000) as u64));
            t.insert("exchange".into(), long(exchange));
            t.insert("routing-keys".into(), AMQPValue::FieldArray(FieldArray::from(vec![long(routing_key)])));
            if let Some(e) = props.expiration() {
                t.insert("original-expiration".into(), long(e.as_str()));
            }
            t
        }
    };
    deaths.insert(0, AMQPValue::FieldTable(entry));
    if !headers.inner().contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), long(reason.as_str()));
        headers.insert("x-first-death-queue".into(), long(queue));
        headers.insert("x-first-death-exchange".into(), long(exchange));
    }
    headers.insert("x-last-death-reason".into(), long(reason.as_str()));
    headers.insert("x-last-death-queue".into(), long(queue));
    headers.insert("x-last-death-exchange".into(), long(exchange));
    headers.insert("x-death".into(), AMQPValue::FieldArray(FieldArray::from(deaths)));
    // The copy must not expire again on the way (RabbitMQ removes it).
    let mut out = BasicProperties::default().with_headers(headers);
    macro_rules! keep {
        ($($get:ident => $with:ident),*) => {
            $(if let Some(v) = props.$get().clone() { out = out.$with(v); })*
        };
    }
    keep!(content_type => with_content_type, content_encoding => with_content_encoding,
        delivery_mode => with_delivery_mode, priority => with_priority, correlation_id => with_correlation_id,
        reply_to => with_reply_to, message_id => with_message_id, timestamp => with_timestamp,
        kind => with_type, user_id => with_user_id, app_id => with_app_id, cluster_id => with_cluster_id);
    props = out;
    props
}

impl AmqpGateway {
    /// Dead-letters `msgs` of queue `q` (republishing when it has a
    /// dead-letter exchange), then acks them in `q`. On a failure to
    /// republish they are returned to `q` instead.
    pub(crate) async fn dead_letter(&self, q: &QueueRef, msgs: Vec<(StoredMessage, ReceiptHandle)>, reason: Reason) {
        if msgs.is_empty() {
            return;
        }
        let model = ConsumeModel::Clustering;
        crate::instrument::dead_lettered(reason.as_str(), msgs.len() as u64);
        let receipts: Vec<ReceiptHandle> = msgs.iter().map(|(_, r)| r.clone()).collect();
        if let Some(dlx) = string_arg(&q.queue.arguments, "x-dead-letter-exchange")
            && let Err(e) = self.republish(q, &dlx, &msgs, reason).await
        {
            tracing::warn!(queue = %q.queue.name, error = %e, "amqp: dead-lettering failed; messages stay in the queue");
            let _ = self.messaging.release_many_at_leaders(AMQP_GROUP, &model, &receipts).await;
            return;
        }
        if let Err(e) = self.messaging.ack_many_at_leaders(AMQP_GROUP, &model, &receipts, true).await {
            tracing::warn!(queue = %q.queue.name, error = %e, "amqp: could not settle dead-lettered messages");
        }
    }

    /// Dead-letters a publish that queue `q` refused (reject-publish-dlx).
    pub(crate) async fn dead_letter_published(&self, q: &QueueRef, p: &Published, reason: Reason) {
        let Some(dlx) = string_arg(&q.queue.arguments, "x-dead-letter-exchange") else { return };
        let now = self.messaging.broker().clock().now_ms();
        let props = dead_props(p.properties.clone(), &q.queue.name, reason, &p.exchange, &p.routing_key, now);
        let key = string_arg(&q.queue.arguments, "x-dead-letter-routing-key").unwrap_or_else(|| p.routing_key.clone());
        let Ok(topics) = self.route(&q.vhost, &dlx, &key, props.headers().as_ref()) else { return };
        let copy = Published { exchange: dlx, routing_key: key, properties: props, body: p.body.clone() };
        for t in topics {
            let one = vec![mapping::to_message(&copy, &t)];
            if let Err(e) = self.messaging.send_batch_to_leaders(one, Partitioning::Auto).await {
                tracing::warn!(queue = %q.queue.name, error = %e, "amqp: could not dead-letter a refused publish");
            }
        }
    }

    async fn republish(
        &self,
        q: &QueueRef,
        dlx: &str,
        msgs: &[(StoredMessage, ReceiptHandle)],
        reason: Reason,
    ) -> Result<(), String> {
        let now = self.messaging.broker().clock().now_ms();
        let dl_key = string_arg(&q.queue.arguments, "x-dead-letter-routing-key");
        let mut by_topic: Vec<(String, Vec<fjord_messaging::Message>)> = Vec::new();
        for (m, _) in msgs {
            let (exchange, key, props) = mapping::from_stored(m);
            let props = dead_props(props, &q.queue.name, reason, &exchange, &key, now);
            let key = dl_key.clone().unwrap_or(key);
            // A dead-letter exchange that does not exist drops the message.
            let Ok(topics) = self.route(&q.vhost, dlx, &key, props.headers().as_ref()) else { continue };
            let p = Published {
                exchange: dlx.to_string(),
                routing_key: key,
                properties: props,
                body: m.body.clone().unwrap_or_default(),
            };
            for t in topics {
                let msg = mapping::to_message(&p, &t);
                match by_topic.iter_mut().find(|(x, _)| *x == t) {
                    Some((_, v)) => v.push(msg),
                    None => by_topic.push((t, vec![msg])),
                }
            }
        }
        for (_, batch) in by_topic {
            // The dead-letter queue may live on another node.
            self.messaging.send_batch_to_leaders(batch, Partitioning::Auto).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_death_counts_per_queue_and_reason_most_recent_first() {
        let p = BasicProperties::default().with_expiration("5000".into());
        let p = dead_props(p, "work", Reason::Expired, "", "work", 1_000_000);
        assert!(p.expiration().is_none(), "the copy does not expire again");
        let p = dead_props(p, "retry", Reason::Rejected, "dlx", "work", 2_000_000);
        let p = dead_props(p, "work", Reason::Expired, "", "work", 3_000_000);
        let h = p.headers().clone().unwrap();
        let AMQPValue::FieldArray(deaths) = h.inner().get("x-death").unwrap() else { panic!() };
        let entries: Vec<(String, String, i64)> = deaths
            .as_slice()
            .iter()
            .map(|d| {
                let AMQPValue::FieldTable(t) = d else { panic!() };
                (
                    string_arg(t, "queue").unwrap(),
                    string_arg(t, "reason").unwrap(),
                    crate::model::int_arg(t, "count").unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, vec![("work".into(), "expired".into(), 2), ("retry".into(), "rejected".into(), 1)]);
        assert_eq!(string_arg(&h, "x-first-death-reason").as_deref(), Some("expired"));
        assert_eq!(string_arg(&h, "x-last-death-queue").as_deref(), Some("work"));
        let AMQPValue::FieldTable(first) = &deaths.as_slice()[0] else { panic!() };
        assert_eq!(string_arg(first, "original-expiration").as_deref(), Some("5000"));
    }
}
