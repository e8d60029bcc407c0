//! `[cluster]`: the controller quorum a node joins, if any.

use serde::{Deserialize, Serialize};

use crate::de;

/// `[cluster]`: several nodes acting as one broker. Without `controllers`
/// the node runs alone (the default); with them it joins the cluster whose
/// controller quorum they name, with `node.id` as its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The controller quorum's voters as `id@host:port` (their internode
    /// addresses), the same list on every node; 1, 3 or 5 of them. Empty:
    /// no cluster. Default `[]`. Env `FJORD_CLUSTER__CONTROLLERS`.
    #[serde(deserialize_with = "de::string_list")]
    pub controllers: Vec<String>,
    /// The cluster's id, the same on every node (Kafka clients see it);
    /// nodes of different clusters refuse each other. Required with
    /// `controllers`. Default `""`. Env `FJORD_CLUSTER__CLUSTER_ID`.
    #[serde(deserialize_with = "de::string")]
    pub cluster_id: String,
    /// Where this node listens for other nodes. Default `0.0.0.0:9700`.
    /// Env `FJORD_CLUSTER__BIND`.
    #[serde(deserialize_with = "de::string")]
    pub bind: String,
    /// The `host:port` other nodes reach this one at; `""`: the bound
    /// address. Default `""`. Env `FJORD_CLUSTER__ADVERTISED`.
    #[serde(deserialize_with = "de::opt_string", serialize_with = "de::ser_opt_string")]
    pub advertised: Option<String>,
    /// Milliseconds between a node's heartbeats to the controller leader.
    /// Default `1000`. Env `FJORD_CLUSTER__HEARTBEAT_INTERVAL_MS`.
    pub heartbeat_interval_ms: u64,
    /// Milliseconds without a heartbeat after which a node is fenced: its
    /// partitions are unavailable until it is back. Default `6000`.
    /// Env `FJORD_CLUSTER__LEASE_MS`.
    pub lease_ms: u64,
    /// Milliseconds a controller waits for the leader before it calls an
    /// election (randomized up to one and a half times that). Default `1000`.
    /// Env `FJORD_CLUSTER__ELECTION_TIMEOUT_MS`.
    pub election_timeout_ms: u64,
    /// Replicas per partition of a topic created without saying (Kafka's
    /// `default.replication.factor`), capped by the serving nodes when the
    /// topic is created: default `3`, so a cluster of three or more nodes
    /// keeps every partition (internal ones too) on three of them and one
    /// node keeps one copy. Env `FJORD_CLUSTER__DEFAULT_REPLICATION_FACTOR`.
    pub default_replication_factor: u16,
    /// Milliseconds a follower may stay behind its leader's log end before
    /// it leaves the in-sync replicas (Kafka's `replica.lag.time.max.ms`).
    /// Default `10000`. Env `FJORD_CLUSTER__REPLICA_LAG_MS`.
    pub replica_lag_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            controllers: Vec::new(),
            cluster_id: String::new(),
            bind: "0.0.0.0:9700".into(),
            advertised: None,
            heartbeat_interval_ms: 1000,
            lease_ms: 6000,
            election_timeout_ms: 1000,
            default_replication_factor: 3,
            replica_lag_ms: 10_000,
        }
    }
}

impl ClusterSettings {
    /// Whether this node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.controllers.is_empty()
    }

    /// The voters as (id, address).
    pub fn voters(&self) -> Result<Vec<(u64, String)>, String> {
        self.controllers
            .iter()
            .map(|v| {
                let (id, addr) = v.split_once('@').ok_or_else(|| format!("`{v}` is not id@host:port"))?;
                let id: u64 = id.trim().parse().map_err(|_| format!("`{v}`: `{id}` is not a node id"))?;
                if id == 0 || id > i32::MAX as u64 {
                    return Err(format!("`{v}`: node ids are 1 to {}", i32::MAX));
                }
                if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none_or(|p| p == 0) {
                    return Err(format!("`{v}`: `{addr}` is not host:port"));
                }
                Ok((id, addr.trim().to_string()))
            })
            .collect()
    }
}
