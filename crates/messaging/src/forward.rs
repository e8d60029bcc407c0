//! Sends stored on the node that leads the partition, for callers whose
//! clients are connected to another node (an AMQP publish routed to a queue
//! another node leads, a message dead-lettered there, a delayed message
//! whose queue lives elsewhere): [`Messaging::send_batch_to_leaders`].
//!
//! The call is the broker's node-to-node service [`SERVICE`]; the leader
//! runs the same send as for a local client (delays go to *its* timer,
//! next to the partition they are for) and answers once the messages are
//! stored as that send promises. The serving node only ever stores what it
//! leads itself — a request reaching a node that no longer leads the
//! partition fails (retriable) instead of being passed on, so a placement
//! change cannot make requests loop.
//!
//! Payload: JSON, bodies base64; the reply says the receipts or the error
//! by kind, so the caller reports what the leader did.

use std::sync::{Arc, Weak};

use base64::Engine;
use bytes::Bytes;
use fjord_broker::{BrokerError, Leadership, TopicPartition};
use serde::{Deserialize, Serialize};

use crate::Messaging;
use crate::error::{MessagingError, Result};
use crate::message::{Delivery, Message};
use crate::send::{Partitioning, SendReceipt};

/// The service's name.
pub(crate) const SERVICE: &str = "messaging.send";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    topic: String,
    /// `None`: [`Partitioning::Auto`].
    partition: Option<u32>,
    extra: Vec<(String, String)>,
    messages: Vec<WireMessage>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireMessage {
    body: String,
    tag: Option<String>,
    keys: Vec<String>,
    id: Option<String>,
    group: Option<String>,
    properties: Vec<(String, String)>,
    /// A RocketMQ delay level; else `deliver_at`; neither: immediate.
    #[serde(default)]
    delay_level: Option<u8>,
    #[serde(default)]
    deliver_at: Option<i64>,
    born_timestamp: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireReceipt {
    id: String,
    partition: u32,
    offset: Option<u64>,
    deliver_at: Option<i64>,
}

/// What the leader answered.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Stored(Vec<WireReceipt>),
    /// The caller's mistake (bad message or request): not retriable.
    Invalid(String),
    /// Anything else (not the leader any more, storage failure): retriable.
    Failed(String),
}

impl WireMessage {
    fn from_message(m: &Message) -> WireMessage {
        let (delay_level, deliver_at) = match m.delivery {
            Delivery::Immediate => (None, None),
            Delivery::DelayLevel(l) => (Some(l), None),
            Delivery::At(t) => (None, Some(t)),
        };
        WireMessage {
            body: B64.encode(&m.body),
            tag: m.tag.clone(),
            keys: m.keys.clone(),
            id: m.id.clone(),
            group: m.group.clone(),
            properties: m.properties.clone(),
            delay_level,
            deliver_at,
            born_timestamp: m.born_timestamp,
        }
    }

    fn into_message(self, topic: &str) -> std::result::Result<Message, String> {
        let body = B64.decode(&self.body).map_err(|e| format!("a forwarded body is not base64: {e}"))?;
        let delivery = match (self.delay_level, self.deliver_at) {
            (Some(l), _) => Delivery::DelayLevel(l),
            (None, Some(t)) => Delivery::At(t),
            (None, None) => Delivery::Immediate,
        };
        Ok(Message {
            topic: topic.to_string(),
            body: Bytes::from(body),
            tag: self.tag,
            keys: self.keys,
            id: self.id,
            group: self.group,
            properties: self.properties,
            delivery,
            born_timestamp: self.born_timestamp,
        })
    }
}

impl Messaging {
    /// [`Messaging::send_batch`] for clients that may be connected to any
    /// node: what this node leads is stored here; a batch for a partition
    /// led elsewhere (or, unpartitioned, for a topic this node leads no
    /// partition of) is stored by its leader. Same receipts, same
    /// durability.
    pub async fn send_batch_to_leaders(
        &self,
        msgs: Vec<Message>,
        partitioning: Partitioning,
    ) -> Result<Vec<SendReceipt>> {
        self.send_to_leaders(msgs, partitioning, &[]).await
    }

    pub(crate) async fn send_to_leaders(
        &self,
        msgs: Vec<Message>,
        partitioning: Partitioning,
        extra: &[(&str, String)],
    ) -> Result<Vec<SendReceipt>> {
        match self.remote_leader(&msgs, partitioning).await? {
            Some(node) => self.forward(node, msgs, partitioning, extra).await,
            None => self.send_with(msgs, partitioning, extra).await,
        }
    }

    /// The node to send to when it is not this one.
    async fn remote_leader(&self, msgs: &[Message], partitioning: Partitioning) -> Result<Option<i32>> {
        let Some(topic) = msgs.first().map(|m| m.topic.as_str()) else { return Ok(None) };
        if self.broker.placement().is_none() {
            return Ok(None);
        }
        let leader_of = |p: u32| match self.broker.leadership(&TopicPartition::new(topic, p)) {
            Leadership::Local => None,
            Leadership::Remote(n) => Some(n.node_id),
            // Nobody serves it: the local send reports that.
            Leadership::Unavailable => None,
        };
        Ok(match partitioning {
            Partitioning::Explicit(p) => leader_of(p),
            Partitioning::Auto => {
                if !self.led_partitions(topic).await?.is_empty() {
                    return Ok(None);
                }
                let count = self.broker.topic(topic).map_or(0, |t| t.partitions().len() as u32);
                (0..count).find_map(leader_of)
            }
        })
    }

    async fn forward(
        &self,
        node: i32,
        msgs: Vec<Message>,
        partitioning: Partitioning,
        extra: &[(&str, String)],
    ) -> Result<Vec<SendReceipt>> {
        let topic = msgs.first().map(|m| m.topic.clone()).unwrap_or_default();
        let req = Request {
            topic: topic.clone(),
            partition: match partitioning {
                Partitioning::Auto => None,
                Partitioning::Explicit(p) => Some(p),
            },
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            messages: msgs.iter().map(WireMessage::from_message).collect(),
        };
        let payload =
            serde_json::to_vec(&req).map_err(|e| MessagingError::Internal(format!("encoding a send: {e}")))?;
        let reply = self.broker.call_service(node, SERVICE, Bytes::from(payload)).await?;
        let reply: Reply = serde_json::from_slice(&reply)
            .map_err(|e| MessagingError::Internal(format!("node {node} answered a send with: {e}")))?;
        match reply {
            Reply::Stored(receipts) if receipts.len() == msgs.len() => Ok(receipts
                .into_iter()
                .map(|r| SendReceipt {
                    id: r.id,
                    partition: TopicPartition::new(&topic, r.partition),
                    offset: r.offset,
                    deliver_at: r.deliver_at,
                })
                .collect()),
            Reply::Stored(r) => {
                Err(MessagingError::Internal(format!("node {node} stored {} of {} messages", r.len(), msgs.len())))
            }
            Reply::Invalid(m) => Err(MessagingError::InvalidMessage(m)),
            Reply::Failed(m) => Err(BrokerError::Unavailable(format!("node {node}: {m}")).into()),
        }
    }

    /// Registers the service on this node's broker.
    pub(crate) fn register_forwarding(self: &Arc<Self>) {
        let me: Weak<Messaging> = Arc::downgrade(self);
        self.broker.register_service(
            SERVICE,
            Arc::new(move |payload: Bytes| {
                let me = me.clone();
                Box::pin(async move {
                    let m = me.upgrade().ok_or_else(|| "shutting down".to_string())?;
                    let reply = m.serve(&payload).await;
                    serde_json::to_vec(&reply).map(Bytes::from).map_err(|e| e.to_string())
                })
            }),
        );
    }

    /// Stores a forwarded send, only where this node leads.
    async fn serve(&self, payload: &[u8]) -> Reply {
        let req: Request = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => return Reply::Invalid(format!("malformed forwarded send: {e}")),
        };
        let mut msgs = Vec::with_capacity(req.messages.len());
        for w in req.messages {
            match w.into_message(&req.topic) {
                Ok(m) => msgs.push(m),
                Err(e) => return Reply::Invalid(e),
            }
        }
        let partitioning = req.partition.map_or(Partitioning::Auto, Partitioning::Explicit);
        let extra: Vec<(&str, String)> = req.extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        match self.send_with(msgs, partitioning, &extra).await {
            Ok(receipts) => Reply::Stored(
                receipts
                    .into_iter()
                    .map(|r| WireReceipt {
                        id: r.id,
                        partition: r.partition.partition,
                        offset: r.offset,
                        deliver_at: r.deliver_at,
                    })
                    .collect(),
            ),
            Err(e @ (MessagingError::InvalidMessage(_) | MessagingError::InvalidRequest(_))) => {
                Reply::Invalid(e.to_string())
            }
            Err(e) => Reply::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_the_wire_unchanged() {
        for delivery in [Delivery::Immediate, Delivery::DelayLevel(3), Delivery::At(1_700_000_000_000)] {
            let m = Message {
                topic: "t".into(),
                body: Bytes::from_static(b"\x00\xffbody"),
                tag: Some("tag".into()),
                keys: vec!["k1".into(), "k2".into()],
                id: Some("id".into()),
                group: Some("g".into()),
                properties: vec![("a".into(), "1".into()), ("b".into(), "".into())],
                delivery,
                born_timestamp: Some(5),
            };
            let json = serde_json::to_vec(&WireMessage::from_message(&m)).unwrap();
            let back = serde_json::from_slice::<WireMessage>(&json).unwrap().into_message("t").unwrap();
            assert_eq!(back, m);
        }
        let bad = WireMessage {
            body: "***".into(),
            tag: None,
            keys: vec![],
            id: None,
            group: None,
            properties: vec![],
            delay_level: None,
            deliver_at: None,
            born_timestamp: None,
        };
        assert!(bad.into_message("t").is_err());
    }
}
