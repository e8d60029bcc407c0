//! Errors of the broker core. Gateways map them to their protocol's codes.

use fjord_log::LogError;

use crate::group::GroupError;

/// Errors returned by the broker core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The topic does not exist (and auto-creation is off or not allowed).
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// The topic exists but not the partition.
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Requested partition.
        partition: u32,
    },
    /// A topic with this name exists already.
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// The topic name is not acceptable.
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName {
        /// Offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A partition count is out of range or decreases.
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// A replication factor is zero or larger than the nodes that could
    /// hold the replicas.
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// A replica assignment names unknown nodes or repeats one.
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// The partition already has the leader an election would give it.
    #[error("{0} already has the leader an election would give it")]
    ElectionNotNeeded(String),
    /// No replica of the partition may lead now.
    #[error("no replica of {tp} may lead: {reason}")]
    NoEligibleLeader {
        /// The partition.
        tp: String,
        /// Why.
        reason: String,
        /// A preferred-replica election (else unclean).
        preferred: bool,
    },
    /// A reassignment was cancelled where none is in progress.
    #[error("no reassignment of {0} is in progress")]
    NoReassignmentInProgress(String),
    /// A topic configuration key or value is invalid.
    #[error("invalid topic config '{key}': {reason}")]
    InvalidConfig {
        /// Configuration key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// An operation was refused by the log store.
    #[error("{context}: {source}")]
    Log {
        /// Topic-partition or component involved.
        context: String,
        /// Underlying error.
        #[source]
        source: LogError,
    },
    /// A consumer-group operation failed.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A request argument is invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An idempotent producer's batch does not follow its previous one.
    #[error("producer {producer_id}: sequence {got} does not follow {expected_after:?}")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Last sequence appended in this epoch, if any.
        expected_after: Option<i32>,
        /// First sequence of the refused batch.
        got: i32,
    },
    /// An idempotent producer wrote with an epoch older than its current one
    /// (a zombie instance was fenced by a newer one).
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch of the refused batch.
        epoch: i16,
        /// Current epoch.
        current: i16,
    },
    /// A transaction marker from a coordinator older than the one the
    /// partition last heard from for this producer (a deposed coordinator).
    #[error("producer {producer_id}: coordinator epoch {coordinator_epoch} is older than {current}")]
    CoordinatorFenced {
        /// Producer id.
        producer_id: i64,
        /// The refused marker's coordinator epoch.
        coordinator_epoch: i32,
        /// The newest the partition has seen.
        current: i32,
    },
    /// The topic's data exists but could not be loaded at start (a partition
    /// that cannot be opened, a corrupt `topic.json`): it is served by no
    /// one and never re-created over, until an operator repairs or deletes it.
    #[error("topic '{topic}' is offline: {reason}")]
    TopicOffline {
        /// Topic name.
        topic: String,
        /// Why it could not be loaded.
        reason: String,
    },
    /// The broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// Something no request caused went wrong: a broken invariant, a task
    /// that died, a stored file that cannot be read. Gateways report it as
    /// a server-side error (never as the client's bad request); the cause,
    /// when there is one, is kept as the error's source.
    #[error("internal error: {what}{}", .source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Internal {
        /// What failed.
        what: String,
        /// Why, when another error caused it.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A write reached the log but was not committed: the log failed (a
    /// full disk, an I/O error) or was cut while the write waited. Whether
    /// it survives depends on what the recovery keeps, so the client must
    /// treat it as possibly written and retry (an idempotent producer's
    /// retry is then recognised as the same batch, never written twice):
    /// never "not written".
    #[error("{tp}: written but not committed: {source}")]
    NotCommitted {
        /// The partition.
        tp: String,
        /// Why the wait failed.
        #[source]
        source: LogError,
    },

    /// The cluster cannot decide now (no controller quorum, a lost
    /// connection): retriable.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),

    /// An `acks=all` write to a partition with fewer in-sync replicas than
    /// it requires (`min.insync.replicas`): retriable.
    #[error("{tp} has {in_sync} in-sync replicas, fewer than the {required} it requires{}", if *.appended { " (the write is in the log but not acknowledged)" } else { "" })]
    NotEnoughReplicas {
        /// The partition.
        tp: String,
        /// In-sync replicas now.
        in_sync: usize,
        /// `min.insync.replicas`.
        required: usize,
        /// Whether the write was appended before the set shrank.
        appended: bool,
    },

    /// This node does not lead the partition (in a cluster): the client
    /// must go to `leader`, or retry later when no leader serves it.
    #[error("this node does not lead {tp}{}", .leader.as_ref().map(|l| format!("; node {} does", l.node_id)).unwrap_or_default())]
    NotLeader {
        /// The partition.
        tp: String,
        /// Its current leader, when one is serving.
        leader: Option<crate::metadata::NodeInfo>,
        /// The leader epoch the cluster's metadata gives it.
        leader_epoch: i32,
    },
}

impl BrokerError {
    /// An internal error without an underlying cause.
    pub fn internal(what: impl Into<String>) -> BrokerError {
        BrokerError::Internal { what: what.into(), source: None }
    }

    /// An internal error caused by `source`.
    pub fn internal_from(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> BrokerError {
        BrokerError::Internal { what: what.into(), source: Some(Box::new(source)) }
    }

    pub(crate) fn log(context: impl Into<String>, source: LogError) -> Self {
        BrokerError::Log { context: context.into(), source }
    }

    /// The log store error inside, if any.
    pub fn log_error(&self) -> Option<&LogError> {
        match self {
            BrokerError::Log { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias for the broker core.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// Runs blocking log work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| BrokerError::internal_from("a blocking task failed", e))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn internal_errors_keep_their_cause() {
        let io = std::io::Error::other("disk on fire");
        let e = BrokerError::internal_from("reading topic.json", io);
        assert_eq!(e.to_string(), "internal error: reading topic.json: disk on fire");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("disk on fire"));
        assert!(BrokerError::internal("no cause").source().is_none());
    }
}
