//! Consumer-protocol coordinator tests. All run on a paused Tokio clock; `advance` + `settle`
//! step time and let the timer task fire.

mod admin;
mod basic;
mod prop;
mod static_members;
mod stored;
mod timeouts;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use uuid::Uuid;

use super::{
    ConsumerGroupConfig, ConsumerGroupState, ConsumerGroups, ConsumerHeartbeat, ConsumerHeartbeatResponse,
    TopicMetadataSource, TopicPartitions,
};
use crate::group::{GroupError, GroupErrorKind};

pub(super) const SESSION: Duration = Duration::from_secs(45);
pub(super) const HEARTBEAT: Duration = Duration::from_secs(5);
pub(super) const REBALANCE: Duration = Duration::from_secs(20);
pub(super) const GROUP: &str = "g";

/// An in-memory topic table.
#[derive(Debug, Default)]
pub(super) struct Topics {
    topics: Mutex<BTreeMap<String, (Uuid, u32)>>,
    /// Group configs: (group, name) → value.
    settings: Mutex<BTreeMap<(String, String), String>>,
}

impl Topics {
    pub(super) fn with(topics: &[(&str, u32)]) -> Arc<Self> {
        let table = Topics::default();
        for (name, partitions) in topics {
            table.create(name, *partitions);
        }
        Arc::new(table)
    }

    pub(super) fn create(&self, name: &str, partitions: u32) -> Uuid {
        let id = Uuid::new_v4();
        self.topics.lock().insert(name.to_owned(), (id, partitions));
        id
    }

    pub(super) fn set_partitions(&self, name: &str, partitions: u32) {
        if let Some(entry) = self.topics.lock().get_mut(name) {
            entry.1 = partitions;
        }
    }

    pub(super) fn delete(&self, name: &str) {
        self.topics.lock().remove(name);
    }

    pub(super) fn id(&self, name: &str) -> Uuid {
        self.topics.lock()[name].0
    }

    pub(super) fn set_group_setting(&self, group: &str, name: &str, value: &str) {
        self.settings.lock().insert((group.to_owned(), name.to_owned()), value.to_owned());
    }
}

impl TopicMetadataSource for Topics {
    fn topic(&self, name: &str) -> Option<(Uuid, u32)> {
        self.topics.lock().get(name).copied()
    }

    fn topic_names(&self) -> Vec<String> {
        self.topics.lock().keys().cloned().collect()
    }

    fn group_setting(&self, group: &str, name: &str) -> Option<String> {
        self.settings.lock().get(&(group.to_owned(), name.to_owned())).cloned()
    }
}

pub(super) fn config() -> ConsumerGroupConfig {
    ConsumerGroupConfig { session_timeout: SESSION, heartbeat_interval: HEARTBEAT, ..ConsumerGroupConfig::default() }
}

pub(super) fn coordinator(topics: &Arc<Topics>) -> ConsumerGroups {
    ConsumerGroups::new(config(), Arc::clone(topics) as Arc<dyn TopicMetadataSource>)
}

/// A v1 join of `member_id` subscribing to `topics`.
pub(super) fn join_req(member_id: &str, topics: &[&str]) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        member_epoch: 0,
        rebalance_timeout: Some(REBALANCE),
        subscribed_topic_names: Some(topics.iter().map(|t| (*t).to_owned()).collect()),
        owned_partitions: Some(Vec::new()),
        client_id: format!("client-{member_id}"),
        client_host: "/127.0.0.1".to_owned(),
        member_id_required: true,
        ..ConsumerHeartbeat::default()
    }
}

/// A regular (non-full) heartbeat.
pub(super) fn hb_req(member_id: &str, epoch: i32, owned: Option<Vec<TopicPartitions>>) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        member_epoch: epoch,
        owned_partitions: owned,
        client_id: format!("client-{member_id}"),
        client_host: "/127.0.0.1".to_owned(),
        member_id_required: true,
        ..ConsumerHeartbeat::default()
    }
}

/// Lets the timer task run after the clock moved.
pub(super) async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

pub(super) async fn advance(duration: Duration) {
    tokio::time::advance(duration).await;
    settle().await;
}

/// A partition as `(topic id, partition)`.
pub(super) type Tp = (Uuid, i32);

pub(super) fn flatten(list: &[TopicPartitions]) -> BTreeSet<Tp> {
    list.iter().flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic_id, *p))).collect()
}

pub(super) fn unflatten(set: &BTreeSet<Tp>) -> Vec<TopicPartitions> {
    let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in set {
        by_topic.entry(*topic).or_default().push(*partition);
    }
    by_topic.into_iter().map(|(topic_id, partitions)| TopicPartitions { topic_id, partitions }).collect()
}

pub(super) fn tps(topic: Uuid, partitions: &[i32]) -> BTreeSet<Tp> {
    partitions.iter().map(|p| (topic, *p)).collect()
}

/// A well-behaved test consumer: takes new partitions at once, and gives up revoked ones
/// before its next heartbeat (so every heartbeat acknowledges the previous response).
#[derive(Debug, Clone)]
pub(super) struct Client {
    pub(super) member_id: String,
    pub(super) instance_id: Option<String>,
    pub(super) epoch: i32,
    pub(super) owned: BTreeSet<Tp>,
}

impl Client {
    /// Joins with a fresh member id.
    pub(super) fn join(c: &ConsumerGroups, member_id: &str, topics: &[&str]) -> (Client, ConsumerHeartbeatResponse) {
        Client::join_with(c, join_req(member_id, topics))
    }

    pub(super) fn join_static(
        c: &ConsumerGroups,
        member_id: &str,
        instance: &str,
        topics: &[&str],
    ) -> (Client, ConsumerHeartbeatResponse) {
        Client::join_with(
            c,
            ConsumerHeartbeat { instance_id: Some(instance.to_owned()), ..join_req(member_id, topics) },
        )
    }

    pub(super) fn join_with(c: &ConsumerGroups, request: ConsumerHeartbeat) -> (Client, ConsumerHeartbeatResponse) {
        let instance_id = request.instance_id.clone();
        let response = c.heartbeat(request).expect("join");
        let mut client =
            Client { member_id: response.member_id.clone(), instance_id, epoch: 0, owned: BTreeSet::new() };
        client.apply(&response);
        check(c);
        (client, response)
    }

    pub(super) fn apply(&mut self, response: &ConsumerHeartbeatResponse) {
        self.epoch = response.member_epoch;
        if let Some(assignment) = &response.assignment {
            self.owned = flatten(assignment);
        }
    }

    pub(super) fn request(&self) -> ConsumerHeartbeat {
        ConsumerHeartbeat {
            instance_id: self.instance_id.clone(),
            ..hb_req(&self.member_id, self.epoch, Some(unflatten(&self.owned)))
        }
    }

    /// Heartbeats reporting what it owns, then applies the response.
    pub(super) fn heartbeat(&mut self, c: &ConsumerGroups) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let response = c.heartbeat(self.request())?;
        self.apply(&response);
        check(c);
        Ok(response)
    }
}

/// Asserts the group's invariants.
pub(super) fn check(c: &ConsumerGroups) {
    if let Some(result) = c.inspect(GROUP, |g| g.check_invariants()) {
        result.expect("group invariants");
    }
}

/// Heartbeats every client until the group is Stable (or panics after a bound).
pub(super) fn converge(c: &ConsumerGroups, clients: &mut [Client]) {
    for _ in 0..20 {
        for client in clients.iter_mut() {
            client.heartbeat(c).expect("heartbeat");
        }
        assert_disjoint(clients);
        if state(c) == ConsumerGroupState::Stable {
            return;
        }
    }
    panic!("group did not converge: {:?}", c.describe(&[GROUP.to_owned()]));
}

pub(super) fn state(c: &ConsumerGroups) -> ConsumerGroupState {
    c.list().into_iter().find(|l| l.group_id == GROUP).map(|l| l.state).expect("group listed")
}

pub(super) fn group_epoch(c: &ConsumerGroups) -> i32 {
    c.inspect(GROUP, |g| g.group_epoch).expect("group exists")
}

/// No partition is consumed by two clients.
pub(super) fn assert_disjoint(clients: &[Client]) {
    let mut seen = BTreeMap::new();
    for client in clients {
        for tp in &client.owned {
            if let Some(other) = seen.insert(*tp, client.member_id.clone()) {
                panic!("{tp:?} owned by {other} and {}", client.member_id);
            }
        }
    }
}
