//! # fjord-controller: cluster metadata kept by a Raft quorum
//!
//! A cluster's metadata — its nodes with their listeners, racks and
//! liveness, its topics with each partition's replicas, leader and leader
//! epoch — is the state machine [`Metadata`], changed only by
//! [`Command`]s committed through a Raft quorum of controller nodes (1, 3
//! or 5). Consensus is `openraft` (pinned, see
//! `docs/design/openraft-0.9-notes.md`); this crate supplies what openraft
//! asks of an application: the type configuration ([`TypeConfig`]), the
//! durable log store and the state machine ([`store`]).
//!
//! ## Invariants
//! - [`Metadata::apply`] is deterministic: it reads nothing but the state
//!   and the command, so every node that applies the same log reaches the
//!   same metadata. Placement decisions are made by the proposer and
//!   written into the command; `apply` only validates them.
//! - A command that breaks a rule (a topic that exists, an unknown node)
//!   changes nothing and is answered with [`Reply::Rejected`]; the log entry
//!   stays (Raft logs are never edited), its effect is nil everywhere.
//! - Leader epochs only grow: every leader change of a partition bumps its
//!   epoch, and a partition has one leader per epoch.
//! - Raft's vote is on disk before it is answered, log entries before the
//!   append is acknowledged (see [`store`]).

use std::io::Cursor;

mod error;
pub mod metadata;
pub mod store;

pub use error::ControllerError;
pub use metadata::{
    Command, DocumentScope, MAX_DOCUMENT, MAX_DOCUMENT_KEY, MAX_DOCUMENTS, Metadata, NodeRecord, NodeState,
    PartitionAssignment, Rejection, Reply, TopicAssignment,
};

/// A node's id in the cluster (`[cluster] node_id`), stable across restarts.
pub type NodeId = u64;

/// How a controller voter or learner is reached: its internode address.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the node's internode listener.
    pub addr: String,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata quorum.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = NodeAddr,
        SnapshotData = Cursor<Vec<u8>>,
);
