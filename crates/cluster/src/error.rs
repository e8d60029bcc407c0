//! The cluster runtime's one error type.

use fjord_cluster_codec::CodecError;

/// Every way a cluster operation fails.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A peer could not be reached.
    #[error("node at {addr} is unreachable: {reason}")]
    Unreachable {
        /// Its address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A peer refused the handshake (another cluster, another node).
    #[error("node at {addr} refused the connection: {message}")]
    Refused {
        /// Its address.
        addr: String,
        /// What it said.
        message: String,
    },
    /// The connection broke before the answer came.
    #[error("connection to {0} was lost")]
    ConnectionLost(String),
    /// No answer in time.
    #[error("{kind} request to {addr} timed out")]
    Timeout {
        /// The peer.
        addr: String,
        /// The request kind.
        kind: String,
    },
    /// The peer answered with an error.
    #[error("node {node} answered: {message}")]
    Remote {
        /// The peer's id.
        node: u64,
        /// Its message.
        message: String,
    },
    /// A frame or body broke the internode protocol.
    #[error("internode protocol error: {0}")]
    Codec(#[source] CodecError),
    /// Socket or file I/O.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The controller's storage failed.
    #[error("controller storage: {0}")]
    Storage(#[from] fjord_controller::ControllerError),
    /// openraft refused or failed an operation.
    #[error("controller quorum: {0}")]
    Raft(String),
    /// No controller leader could be reached in time.
    #[error("no controller leader is reachable: {0}")]
    NoLeader(String),
    /// A heartbeat from a node's incarnation that announced its shutdown.
    #[error("node {0} is shutting down; its heartbeats renew no lease")]
    ShuttingDown(u64),
    /// A node's heartbeat was refused: it serves from metadata older than
    /// the leader had applied half a lease ago.
    #[error("node {node} serves metadata index {applied}, behind the {needed} it should have applied by now")]
    Behind {
        /// The node.
        node: u64,
        /// What it has applied.
        applied: u64,
        /// What the leader had applied half a lease ago.
        needed: u64,
    },
    /// The controller rejected a metadata change.
    #[error("{message}")]
    Rejected {
        /// Why, as the metadata state machine classifies it.
        reason: fjord_controller::Rejection,
        /// What was wrong.
        message: String,
    },
    /// The `[cluster]` settings are unusable.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// A message body could not be encoded or decoded.
    #[error("internode message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias of the cluster runtime.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
