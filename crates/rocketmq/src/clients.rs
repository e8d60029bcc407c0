//! Who is connected: producer and consumer groups by client id, from
//! heartbeats, with the connection each client speaks on.
//!
//! RocketMQ clients announce themselves with a heartbeat every 30 s; a
//! client is forgotten when it unregisters, when its connection closes,
//! or when no heartbeat arrived for [`crate::RocketMqConfig::client_expiry`].
//! A consumer group's membership change is pushed to its members
//! (NOTIFY_CONSUMER_IDS_CHANGED) so they rebalance at once instead of at
//! their next 20 s rebalance tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI32, Ordering};

use bytes::Bytes;
use fjord_rocketmq_codec::bodies::{ConsumerData, HeartbeatData, SubscriptionData};
use fjord_rocketmq_codec::codes::request;
use fjord_rocketmq_codec::{FLAG_ONEWAY, Language, RemotingCommand, SerializeType};
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// A connection that can be written to from outside its own task.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::Sender<Bytes>,
    pub(crate) serialize_type: SerializeType,
    /// The peer's address, for operators.
    pub(crate) addr: String,
    /// The client's language and release, from its requests (operators'
    /// consumer-connection listings show them).
    pub(crate) language: Language,
    pub(crate) version: i32,
}

impl ConnHandle {
    /// Sends a broker-initiated one-way request; dropped (with a log line)
    /// when the connection's queue is full, as the client will retry or
    /// catch up on its own schedule.
    pub(crate) fn send_oneway(&self, mut cmd: RemotingCommand) -> bool {
        static OPAQUE: AtomicI32 = AtomicI32::new(1 << 30);
        cmd.opaque = OPAQUE.fetch_add(1, Ordering::Relaxed);
        cmd.flag |= FLAG_ONEWAY;
        cmd.serialize_type = self.serialize_type;
        let ok = self.tx.try_send(cmd.encode()).is_ok();
        if !ok {
            tracing::debug!(conn = self.id, code = cmd.code, "connection queue full; broker request dropped");
        }
        ok
    }
}

#[derive(Debug, Clone)]
struct ConsumerClient {
    conn: ConnHandle,
    data: ConsumerData,
    last_seen_ms: i64,
}

#[derive(Debug, Clone)]
struct ProducerClient {
    conn: ConnHandle,
    last_seen_ms: i64,
}

#[derive(Debug, Default)]
struct Inner {
    consumers: HashMap<String, BTreeMap<String, ConsumerClient>>,
    producers: HashMap<String, BTreeMap<String, ProducerClient>>,
}

/// The registry.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    inner: Mutex<Inner>,
}

impl Clients {
    /// Records a heartbeat; returns the consumer groups whose membership
    /// (or subscriptions) changed.
    pub(crate) fn heartbeat(&self, conn: &ConnHandle, hb: &HeartbeatData, now_ms: i64) -> Vec<String> {
        let mut changed = Vec::new();
        let mut g = self.inner.lock();
        for c in &hb.consumer_data_set {
            let members = g.consumers.entry(c.group_name.clone()).or_default();
            let fresh = ConsumerClient { conn: conn.clone(), data: c.clone(), last_seen_ms: now_ms };
            match members.insert(hb.client_id.clone(), fresh) {
                Some(old) if old.data.subscription_data_set == c.subscription_data_set && old.conn.id == conn.id => {}
                _ => changed.push(c.group_name.clone()),
            }
        }
        for p in &hb.producer_data_set {
            let members = g.producers.entry(p.group_name.clone()).or_default();
            members.insert(hb.client_id.clone(), ProducerClient { conn: conn.clone(), last_seen_ms: now_ms });
        }
        changed
    }

    /// Records that a producer of `group` sends on `conn`: producers may
    /// send (and leave transactions open) before their first heartbeat.
    pub(crate) fn touch_producer(&self, group: &str, conn: &ConnHandle, now_ms: i64) {
        if group.is_empty() {
            return;
        }
        let mut g = self.inner.lock();
        let members = g.producers.entry(group.to_string()).or_default();
        match members.values_mut().find(|p| p.conn.id == conn.id) {
            Some(p) => p.last_seen_ms = now_ms,
            None => {
                members
                    .insert(format!("conn-{}", conn.id), ProducerClient { conn: conn.clone(), last_seen_ms: now_ms });
            }
        }
    }

    /// Whether a consumer group consumes in broadcasting mode.
    pub(crate) fn is_broadcasting(&self, group: &str) -> bool {
        self.inner.lock().consumers.get(group).is_some_and(|m| m.values().any(|c| c.data.is_broadcasting()))
    }

    /// Removes a client from the named groups; returns changed consumer groups.
    pub(crate) fn unregister(&self, client_id: &str, producer: Option<&str>, consumer: Option<&str>) -> Vec<String> {
        let mut g = self.inner.lock();
        if let Some(p) = producer
            && let Some(m) = g.producers.get_mut(p)
        {
            m.remove(client_id);
        }
        let mut changed = Vec::new();
        if let Some(c) = consumer
            && let Some(m) = g.consumers.get_mut(c)
            && m.remove(client_id).is_some()
        {
            changed.push(c.to_string());
        }
        g.consumers.retain(|_, m| !m.is_empty());
        g.producers.retain(|_, m| !m.is_empty());
        changed
    }

    /// Forgets every client of a closed connection, and clients silent
    /// since before `expired_before_ms`; returns changed consumer groups.
    pub(crate) fn remove_where(&self, conn_id: Option<u64>, expired_before_ms: i64) -> Vec<String> {
        let mut g = self.inner.lock();
        let gone = |conn: &ConnHandle, seen: i64| Some(conn.id) == conn_id || seen < expired_before_ms;
        let mut changed = Vec::new();
        for (group, m) in g.consumers.iter_mut() {
            let before = m.len();
            m.retain(|_, c| !gone(&c.conn, c.last_seen_ms));
            if m.len() != before {
                changed.push(group.clone());
            }
        }
        for m in g.producers.values_mut() {
            m.retain(|_, p| !gone(&p.conn, p.last_seen_ms));
        }
        g.consumers.retain(|_, m| !m.is_empty());
        g.producers.retain(|_, m| !m.is_empty());
        changed
    }

    /// Client ids of a consumer group, sorted (clients sort them too).
    pub(crate) fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.inner.lock().consumers.get(group).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// A consumer group's subscription to a topic, from any member.
    pub(crate) fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        let g = self.inner.lock();
        g.consumers
            .get(group)?
            .values()
            .flat_map(|c| c.data.subscription_data_set.iter())
            .filter(|s| s.topic == topic)
            .max_by_key(|s| s.sub_version)
            .cloned()
    }

    /// The producer groups with a live connection (whose transactions this
    /// node can check back).
    pub(crate) fn producer_groups(&self) -> Vec<String> {
        self.inner.lock().producers.keys().cloned().collect()
    }

    /// One live connection of a producer group (for check-backs).
    pub(crate) fn producer_conn(&self, group: &str) -> Option<ConnHandle> {
        let g = self.inner.lock();
        g.producers.get(group)?.values().max_by_key(|p| p.last_seen_ms).map(|p| p.conn.clone())
    }

    /// The connected consumers of `group`, as the admin API shows them.
    pub(crate) fn consumers(&self, group: &str) -> Vec<fjord_messaging::GroupMember> {
        let g = self.inner.lock();
        let Some(members) = g.consumers.get(group) else { return Vec::new() };
        members
            .iter()
            .map(|(id, c)| fjord_messaging::GroupMember {
                client_id: id.clone(),
                client_host: c.conn.addr.clone(),
                topics: c.data.subscription_data_set.iter().map(|s| s.topic.clone()).collect(),
                source: "rocketmq",
            })
            .collect()
    }

    /// A consumer group's live clients, with what they last said in a
    /// heartbeat (for `GET_CONSUMER_CONNECTION_LIST`).
    pub(crate) fn consumer_clients(&self, group: &str) -> Vec<(String, ConnHandle, ConsumerData)> {
        let g = self.inner.lock();
        let Some(members) = g.consumers.get(group) else { return Vec::new() };
        members.iter().map(|(id, c)| (id.clone(), c.conn.clone(), c.data.clone())).collect()
    }

    /// Groups with a live client subscribed to `topic`.
    pub(crate) fn groups_subscribed_to(&self, topic: &str) -> Vec<String> {
        let g = self.inner.lock();
        g.consumers
            .iter()
            .filter(|(_, m)| m.values().any(|c| c.data.subscription_data_set.iter().any(|s| s.topic == topic)))
            .map(|(group, _)| group.clone())
            .collect()
    }

    /// Tells every member of `group` that its membership changed.
    pub(crate) fn notify_changed(&self, group: &str) {
        let members: Vec<ConnHandle> = {
            let g = self.inner.lock();
            g.consumers.get(group).map(|m| m.values().map(|c| c.conn.clone()).collect()).unwrap_or_default()
        };
        for conn in members {
            conn.send_oneway(
                RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED).with_field("consumerGroup", group),
            );
        }
    }
}
