//! Connected 5.x clients: their latest Settings (from the Telemetry
//! stream) and a sender for pushing commands to them (transaction
//! check-backs). Clients are identified by the `x-mq-client-id` metadata
//! header every call carries.

use std::collections::HashMap;

use fjord_rocketmq_proto::tonic::Status;
use fjord_rocketmq_proto::v2;
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// The metadata header naming the calling client.
pub const CLIENT_ID_HEADER: &str = "x-mq-client-id";

pub(crate) type TelemetryTx = mpsc::Sender<Result<v2::TelemetryCommand, Status>>;

#[derive(Debug, Clone)]
struct Client {
    settings: Option<v2::Settings>,
    telemetry: Option<(u64, TelemetryTx)>,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Clients {
    inner: Mutex<HashMap<String, Client>>,
}

impl Clients {
    pub(crate) fn attach(&self, client: &str, stream: u64, tx: TelemetryTx) {
        let mut g = self.inner.lock();
        let c = g.entry(client.to_string()).or_insert(Client { settings: None, telemetry: None });
        c.telemetry = Some((stream, tx));
    }

    pub(crate) fn detach(&self, client: &str, stream: u64) {
        let mut g = self.inner.lock();
        if let Some(c) = g.get_mut(client)
            && c.telemetry.as_ref().is_some_and(|(s, _)| *s == stream)
        {
            c.telemetry = None;
        }
    }

    pub(crate) fn set_settings(&self, client: &str, s: v2::Settings) {
        let mut g = self.inner.lock();
        g.entry(client.to_string()).or_insert(Client { settings: None, telemetry: None }).settings = Some(s);
    }

    pub(crate) fn remove(&self, client: &str) {
        self.inner.lock().remove(client);
    }

    /// The clients with a telemetry stream, and the topics they publish to:
    /// whose transactions this node can check back.
    pub(crate) fn checkable(&self) -> (Vec<String>, Vec<String>) {
        let g = self.inner.lock();
        let live = || g.iter().filter(|(_, c)| c.telemetry.is_some());
        let clients = live().map(|(id, _)| id.clone()).collect();
        let mut topics: Vec<String> = live()
            .filter_map(|(_, c)| match c.settings.as_ref().and_then(|s| s.pub_sub.as_ref()) {
                Some(v2::settings::PubSub::Publishing(p)) => Some(p.topics.iter().map(|t| t.name.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        topics.sort();
        topics.dedup();
        (clients, topics)
    }

    /// A telemetry stream to ask about a transaction: the producing client's
    /// own, else any client publishing to `topic`.
    pub(crate) fn checker_for(&self, client: &str, topic: &str) -> Option<TelemetryTx> {
        let g = self.inner.lock();
        if let Some((_, tx)) = g.get(client).and_then(|c| c.telemetry.as_ref()) {
            return Some(tx.clone());
        }
        g.values().find_map(|c| {
            let publishes = matches!(
                c.settings.as_ref().and_then(|s| s.pub_sub.as_ref()),
                Some(v2::settings::PubSub::Publishing(p)) if p.topics.iter().any(|t| t.name == topic)
            );
            if publishes { c.telemetry.as_ref().map(|(_, tx)| tx.clone()) } else { None }
        })
    }

    /// The consumer group `client`'s settings subscribe it to.
    pub(crate) fn group_of(&self, client: &str) -> Option<String> {
        self.inner.lock().get(client).and_then(subscribed_group)
    }

    /// The clients of consumer `group` with a live telemetry stream.
    pub(crate) fn consumers(&self, group: &str) -> Vec<fjord_messaging::GroupMember> {
        let g = self.inner.lock();
        let mut out: Vec<fjord_messaging::GroupMember> = g
            .iter()
            .filter(|(_, c)| c.telemetry.is_some() && subscribed_group(c).as_deref() == Some(group))
            .map(|(id, c)| fjord_messaging::GroupMember {
                client_id: id.clone(),
                client_host: String::new(),
                topics: match c.settings.as_ref().and_then(|s| s.pub_sub.as_ref()) {
                    Some(v2::settings::PubSub::Subscription(s)) => {
                        s.subscriptions.iter().filter_map(|e| e.topic.as_ref().map(|t| t.name.clone())).collect()
                    }
                    _ => Vec::new(),
                },
                source: "rocketmq_grpc",
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }
}

fn subscribed_group(c: &Client) -> Option<String> {
    match c.settings.as_ref()?.pub_sub.as_ref()? {
        v2::settings::PubSub::Subscription(s) => s.group.as_ref().map(|g| g.name.clone()),
        _ => None,
    }
}
