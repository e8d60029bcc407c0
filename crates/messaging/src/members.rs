//! Who is consuming: the connected clients of each consumer group, as the
//! gateways that track them report it, for operators (the admin API lists
//! them and refuses offset resets while a group has members).
//!
//! Each gateway owns its clients' lifecycle (heartbeats, expiry, telemetry
//! streams) and publishes a group's whole member list whenever it changes,
//! under its own source name, so two gateways never overwrite each other.
//! Nothing here is durable: after a restart clients reconnect and are
//! published again.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::Messaging;

/// One connected consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The client's id (RocketMQ `clientID`, `x-mq-client-id`).
    pub client_id: String,
    /// Where it connects from, when known.
    pub client_host: String,
    /// Topics it subscribes to.
    pub topics: Vec<String>,
    /// Which gateway reported it (`rocketmq`, `rocketmq_grpc`).
    pub source: &'static str,
}

/// Members by (group, source).
#[derive(Debug, Default)]
pub(crate) struct MemberDirectory {
    groups: RwLock<BTreeMap<(String, &'static str), Vec<GroupMember>>>,
}

impl Messaging {
    /// Replaces what `source` knows of `group`'s members (an empty list
    /// removes them).
    pub fn publish_members(&self, source: &'static str, group: &str, members: Vec<GroupMember>) {
        let mut g = self.members.groups.write();
        if members.is_empty() {
            g.remove(&(group.to_string(), source));
        } else {
            g.insert((group.to_string(), source), members);
        }
    }

    /// The connected members of `group`, from every gateway.
    pub fn group_members(&self, group: &str) -> Vec<GroupMember> {
        let g = self.members.groups.read();
        g.range((group.to_string(), "")..).take_while(|((n, _), _)| n == group).flat_map(|(_, m)| m.clone()).collect()
    }

    /// Groups that have connected members.
    pub fn groups_with_members(&self) -> Vec<String> {
        let mut names: Vec<String> = self.members.groups.read().keys().map(|(n, _)| n.clone()).collect();
        names.dedup();
        names
    }
}
