//! The messaging layer on another node: sends stored, and pop queues popped,
//! acked and released, on the node that leads the partition, for callers
//! whose clients are connected elsewhere — an AMQP client on node 1 using a
//! queue node 2 leads (its publishes, dead-lettering and delays; its
//! consumers, gets, acks, rejects and purges).
//!
//! The calls go over the broker's node-to-node service [`SERVICE`]. The
//! leader runs them as for a local client (a delay goes to *its* timer, a
//! pop to *its* pop queue and journal), so every invariant of the local
//! path holds there; the caller gets the same receipts and the same
//! durability. The serving node only ever acts on what it leads itself —
//! a request reaching a node that no longer leads the partition fails
//! (retriable) instead of being passed on, so a placement change cannot
//! make requests loop.
//!
//! Payload: JSON (bodies base64); replies carry the outcome or the error
//! by kind, so the caller reports what the leader did. Filtered pops are
//! not forwarded (AMQP does not filter; RocketMQ clients go to the leader).

mod holds;
mod pop;
mod send;

pub(crate) use holds::RemoteHolds;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use fjord_broker::{BrokerError, Leadership, TopicPartition};
use serde::{Deserialize, Serialize};

use crate::Messaging;
use crate::error::{MessagingError, Result};
use crate::message::Message;
use crate::pop::{Popped, ReceiptHandle};

/// The service's name.
pub(crate) const SERVICE: &str = "messaging";

/// A forwarded call.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Send {
        partition: Option<u32>,
        extra: Vec<(String, String)>,
        messages: Vec<Message>,
    },
    Pop(pop::WirePop),
    Settle {
        group: String,
        instance: Option<String>,
        how: pop::Settle,
        receipts: Vec<ReceiptHandle>,
    },
    Depths {
        group: String,
        instance: Option<String>,
        topics: Vec<String>,
    },
    ReadySizes {
        group: String,
        instance: Option<String>,
        topic: String,
    },
    /// The caller's node started a new session: release what it held.
    Forget {
        session: u64,
    },
    /// Take back a pop whose answer never reached the caller's consumer
    /// (see `Messaging::abandon_pop`).
    Abandon {
        session: u64,
        group: String,
        instance: Option<String>,
        topic: String,
        id: u64,
    },
    /// The timer's calls (see `crate::timer::remote`).
    Timer(crate::timer::Call),
    /// A pop shard's calls (see `crate::pop::remote`).
    PopShard(crate::pop::ShardCall),
}

/// What the leader answered.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Sent(Vec<send::WireReceipt>),
    Popped(Vec<Popped>),
    /// Per receipt: `None` settled, `Some(error)` not.
    Settled(Vec<Option<String>>),
    /// (ready, unacked) per topic, in order.
    Depths(Vec<(u64, u64)>),
    /// Body sizes of the ready messages, in pop order.
    Sizes(Vec<u64>),
    Forgotten,
    /// How many deliveries an `Abandon` took back.
    Abandoned(usize),
    Timer(crate::timer::Answer),
    PopShard(crate::pop::ShardAnswer),
    /// The caller's mistake (bad message, receipt or request): not retriable.
    Invalid(String),
    /// Too few in-sync replicas for the write, which was not appended:
    /// retriable, and retried by the caller for a while.
    TooFewReplicas {
        tp: String,
        in_sync: usize,
        required: usize,
    },
    /// Anything else (not the leader any more, storage failure): retriable.
    Failed(String),
    /// Written, commit not confirmed (see
    /// [`MessagingError::PossiblyWritten`]).
    PossiblyWritten(String),
}

impl Reply {
    fn from_error(e: MessagingError) -> Reply {
        match e {
            MessagingError::InvalidMessage(_)
            | MessagingError::InvalidRequest(_)
            | MessagingError::InvalidReceipt(_) => Reply::Invalid(e.to_string()),
            MessagingError::Broker(BrokerError::NotEnoughReplicas { tp, in_sync, required, appended: false }) => {
                Reply::TooFewReplicas { tp, in_sync, required }
            }
            e if e.possibly_written() => Reply::PossiblyWritten(e.to_string()),
            e => Reply::Failed(e.to_string()),
        }
    }
}

/// When forwarded calls last touched each topic (the leader's view of
/// consumers on other nodes, for idle-queue expiry).
#[derive(Debug, Default)]
pub(crate) struct RemoteUse(parking_lot::Mutex<HashMap<String, Instant>>);

impl Messaging {
    /// When a forwarded call from another node last used `topic` here (a
    /// pop, ack or send), if one did since this node started.
    pub fn last_remote_use(&self, topic: &str) -> Option<Instant> {
        self.remote_use.0.lock().get(topic).copied()
    }

    /// The node leading partition `p` of `topic` when it is not this one
    /// (`None` also when nobody serves it: the local call reports that).
    pub(crate) fn remote_leader_of(&self, topic: &str, p: u32) -> Option<i32> {
        self.broker.placement()?;
        match self.broker.leadership(&TopicPartition::new(topic, p)) {
            Leadership::Remote(n) => Some(n.node_id),
            Leadership::Local | Leadership::Unavailable => None,
        }
    }

    /// Where partition `tp` of an internal topic (a timer or pop shard) is
    /// led: `None` here (alone, every one is), or the node to ask;
    /// "unavailable" (retriable) while it has no leader.
    pub(crate) fn internal_leader(&self, tp: &TopicPartition) -> Result<Option<i32>> {
        match self.broker.leadership(tp) {
            Leadership::Local => Ok(None),
            Leadership::Remote(n) => Ok(Some(n.node_id)),
            Leadership::Unavailable => Err(BrokerError::Unavailable(format!("{tp} has no leader now")).into()),
        }
    }

    /// For a call on any partition of `topic`: the node to ask when this
    /// one leads none of its partitions.
    pub(crate) fn remote_leader_for_topic(&self, topic: &str) -> Option<i32> {
        self.broker.placement()?;
        if !self.broker.led_partitions(topic).is_empty() {
            return None;
        }
        let count = self.broker.topic(topic).map_or(0, |t| t.partitions().len() as u32);
        (0..count).find_map(|p| self.remote_leader_of(topic, p))
    }

    /// Calls the service on `node`.
    async fn call(&self, node: i32, req: &Request) -> Result<Reply> {
        let payload = serde_json::to_vec(req).map_err(|e| MessagingError::Internal(format!("encoding a call: {e}")))?;
        let reply = self.broker.call_service(node, SERVICE, Bytes::from(payload)).await?;
        match serde_json::from_slice(&reply) {
            Ok(Reply::Invalid(m)) => Err(MessagingError::InvalidRequest(m)),
            Ok(Reply::Failed(m)) => Err(BrokerError::Unavailable(format!("node {node}: {m}")).into()),
            Ok(Reply::PossiblyWritten(m)) => Err(MessagingError::PossiblyWritten(format!("node {node}: {m}"))),
            Ok(Reply::TooFewReplicas { tp, in_sync, required }) => {
                Err(BrokerError::NotEnoughReplicas { tp, in_sync, required, appended: false }.into())
            }
            Ok(r) => Ok(r),
            Err(e) => Err(MessagingError::Internal(format!("node {node} answered with: {e}"))),
        }
    }

    /// Makes a timer call on `node` (see `crate::timer`'s remote calls).
    pub(crate) async fn call_timer(&self, node: i32, call: crate::timer::Call) -> Result<crate::timer::Answer> {
        match self.call(node, &Request::Timer(call)).await? {
            Reply::Timer(a) => Ok(a),
            other => Err(MessagingError::Internal(format!("node {node} answered a timer call with {other:?}"))),
        }
    }

    /// Makes a pop shard call on `node` (see `crate::pop`'s shards).
    pub(crate) async fn call_pop_shard(
        &self,
        node: i32,
        call: crate::pop::ShardCall,
    ) -> Result<crate::pop::ShardAnswer> {
        match self.call(node, &Request::PopShard(call)).await? {
            Reply::PopShard(a) => Ok(a),
            other => Err(MessagingError::Internal(format!("node {node} answered a pop shard call with {other:?}"))),
        }
    }

    /// Registers the service on this node's broker.
    pub(crate) fn register_forwarding(self: &Arc<Self>) {
        let me: Weak<Messaging> = Arc::downgrade(self);
        self.broker.register_service(
            SERVICE,
            Arc::new(move |caller: i32, payload: Bytes| {
                let me = me.clone();
                Box::pin(async move {
                    let m = me.upgrade().ok_or_else(|| "shutting down".to_string())?;
                    let reply = m.serve(caller, &payload).await;
                    serde_json::to_vec(&reply).map(Bytes::from).map_err(|e| e.to_string())
                })
            }),
        );
    }

    /// Serves a forwarded call from node `caller`, only on what this node
    /// leads.
    async fn serve(&self, caller: i32, payload: &[u8]) -> Reply {
        let req: Request = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => return Reply::Invalid(format!("malformed forwarded call: {e}")),
        };
        match req {
            Request::Send { partition, extra, messages } => {
                if let Some(m) = messages.first() {
                    self.touched(&m.topic);
                }
                self.serve_send(partition, extra, messages).await
            }
            Request::Pop(p) => {
                self.touched(&p.topic);
                self.serve_pop(caller, p).await
            }
            Request::Settle { group, instance, how, receipts } => {
                if let Some(Ok(tp)) = receipts.first().map(ReceiptHandle::partition) {
                    self.touched(&tp.topic);
                }
                self.unhold(caller, &receipts);
                self.serve_settle(group, instance, how, receipts).await
            }
            Request::Forget { session } => {
                self.forget(caller, session).await;
                Reply::Forgotten
            }
            Request::Abandon { session, group, instance, topic, id } => {
                let holder = crate::pop::Holder { node: caller, session };
                match self.abandon_pop(&group, &pop::model(instance), &topic, holder, id).await {
                    Ok(n) => Reply::Abandoned(n),
                    Err(e) => Reply::from_error(e),
                }
            }
            Request::ReadySizes { group, instance, topic } => {
                match self.pop_ready_sizes(&group, &pop::model(instance), &topic).await {
                    Ok(sizes) => Reply::Sizes(sizes),
                    Err(e) => Reply::from_error(e),
                }
            }
            Request::Depths { group, instance, topics } => {
                let model = pop::model(instance);
                Reply::Depths(topics.iter().map(|t| self.pop_depth(&group, &model, t)).collect())
            }
            Request::Timer(call) => match self.serve_timer(call).await {
                Ok(answer) => Reply::Timer(answer),
                Err(e) => Reply::from_error(e),
            },
            Request::PopShard(call) => match self.serve_pop_shard(call).await {
                Ok(answer) => Reply::PopShard(answer),
                Err(e) => Reply::from_error(e),
            },
        }
    }

    fn touched(&self, topic: &str) {
        let mut used = self.remote_use.0.lock();
        match used.get_mut(topic) {
            Some(at) => *at = Instant::now(),
            None => {
                used.insert(topic.to_string(), Instant::now());
            }
        }
    }
}

/// Serde for `Bytes` as base64 text (forwarded bodies in JSON).
pub(crate) mod b64 {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub(crate) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64.decode(text.as_bytes()).map(Bytes::from).map_err(serde::de::Error::custom)
    }
}

/// Serde for `Option<Bytes>` as base64 text or null.
pub(crate) mod b64_opt {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(b: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => super::b64::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::b64")] Bytes);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::message::{Delivery, StoredMessage};

    #[test]
    fn messages_and_deliveries_cross_the_wire_unchanged() {
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
            let json = serde_json::to_vec(&m).unwrap();
            assert_eq!(serde_json::from_slice::<Message>(&json).unwrap(), m);
        }
        for (key, body) in [(None, None), (Some(Bytes::from_static(b"k")), Some(Bytes::from_static(b"\x01\x02")))] {
            let p = Popped {
                message: StoredMessage {
                    topic: "t".into(),
                    partition: 1,
                    offset: 7,
                    timestamp: 9,
                    record_key: key,
                    body,
                    id: Some("x".into()),
                    tag: None,
                    keys: vec![],
                    group: None,
                    attempt: 2,
                    deliver_at: None,
                    origin: Some(("o".into(), 0, Some(3))),
                    properties: vec![("h".into(), "v".into())],
                },
                receipt: ReceiptHandle("1 7 2 t".into()),
                attempt: 2,
                invisible_until: 99,
            };
            let json = serde_json::to_vec(&p).unwrap();
            assert_eq!(serde_json::from_slice::<Popped>(&json).unwrap(), p);
        }
        assert!(serde_json::from_str::<Message>(r#"{"topic":"t","body":"***","tag":null,"keys":[],"id":null,"group":null,"properties":[],"delivery":"Immediate","born_timestamp":null}"#).is_err());
    }

    #[tokio::test]
    async fn hostile_or_stale_calls_get_an_answer_not_a_crash() {
        use fjord_broker::{Broker, BrokerConfig, TopicConfig};

        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path()), Arc::new(fjord_log::SystemClock)).await.unwrap();
        b.create_topic("q", 1, TopicConfig::default()).await.unwrap();
        let m = Messaging::open(b, crate::MessagingConfig::default()).await.unwrap();
        for garbage in [&b""[..], b"{", b"[1,2]", b"{\"Pop\":{}}", &[0xff; 64]] {
            assert!(matches!(m.serve(2, garbage).await, Reply::Invalid(_)), "{garbage:?}");
        }
        // A receipt this node never handed out, a pop of a topic it lacks.
        let settle = Request::Settle {
            group: "g".into(),
            instance: None,
            how: pop::Settle::Ack,
            receipts: vec![ReceiptHandle("0 5 1 q".into()), ReceiptHandle("garbage".into())],
        };
        match m.serve(2, &serde_json::to_vec(&settle).unwrap()).await {
            Reply::Settled(r) => assert!(r.iter().all(Option::is_some), "{r:?}"),
            Reply::Invalid(_) => {}
            other => panic!("{other:?}"),
        }
        let body = Message::new("q", "x");
        let send = Request::Send { partition: Some(9), extra: vec![], messages: vec![body] };
        assert!(matches!(m.serve(2, &serde_json::to_vec(&send).unwrap()).await, Reply::Invalid(_) | Reply::Failed(_)));
        m.shutdown().await.unwrap();
        m.broker().shutdown().await.unwrap();
    }
}
