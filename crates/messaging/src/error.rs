//! Errors of the messaging layer. Gateways map them to their protocol's codes.

use fjord_broker::BrokerError;
use fjord_filter::FilterError;
use fjord_log::LogError;

/// Errors returned by [`crate::Messaging`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// The broker core refused the operation.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A subscription expression does not parse.
    #[error("invalid subscription expression: {0}")]
    Filter(#[from] FilterError),
    /// A message is malformed (bad property name, delay out of range...).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// A request argument is invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A receipt handle does not name a message this group holds in flight
    /// (it was acked already, or its invisibility expired and the message
    /// was handed out again).
    #[error("receipt handle is stale or unknown: {0}")]
    InvalidReceipt(String),
    /// No message with this id or key is known.
    #[error("message not found: {0}")]
    NotFound(String),
    /// An internal log (timer, pop journal) failed.
    #[error("{context}: {source}")]
    Log {
        /// Component involved.
        context: String,
        /// Underlying error.
        #[source]
        source: LogError,
    },
    /// A file of the messaging state could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File involved.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored messaging state is damaged.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which state.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// A blocking task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
    /// A write was made but its commit was not confirmed (it timed out, or
    /// the node that took it stopped leading before it knew): it may or
    /// may not survive. Never "not written": a client that retries may
    /// store it twice.
    #[error("written, but not known to be committed: {0}")]
    PossiblyWritten(String),
}

impl MessagingError {
    /// Whether the write this error answers may have been stored (its
    /// outcome is unknown), as opposed to refused before anything was
    /// written: gateways answer it with their protocol's "stored, not
    /// confirmed" where it has one.
    pub fn possibly_written(&self) -> bool {
        matches!(
            self,
            MessagingError::PossiblyWritten(_)
                | MessagingError::Broker(
                    BrokerError::NotCommitted { .. } | BrokerError::NotEnoughReplicas { appended: true, .. }
                )
        )
    }

    /// Whether an internal write failed before anything was written (not
    /// the leader, too few replicas to start, shutting down); any other
    /// failure may have left it in the log.
    pub(crate) fn surely_unwritten(&self) -> bool {
        matches!(
            self,
            MessagingError::Broker(
                BrokerError::NotLeader { .. }
                    | BrokerError::NotEnoughReplicas { appended: false, .. }
                    | BrokerError::ShuttingDown
            )
        )
    }

    /// Whether the failure is one a queue's or shard's move causes (no
    /// leader for a moment, a deposed leader, a node lost, an outcome not
    /// known): the same call made shortly after, through the new leader,
    /// may succeed. Not while shutting down.
    pub fn moving(&self) -> bool {
        match self {
            MessagingError::Broker(BrokerError::ShuttingDown) => false,
            MessagingError::Broker(BrokerError::Unavailable(_)) => true,
            e => e.surely_unwritten() || e.possibly_written(),
        }
    }

    pub(crate) fn log(context: impl Into<String>, source: LogError) -> Self {
        MessagingError::Log { context: context.into(), source }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        MessagingError::Io { op, path: path.display().to_string(), source }
    }
}

/// Result of messaging operations.
pub type Result<T, E = MessagingError> = std::result::Result<T, E>;

/// Runs blocking file work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| MessagingError::Internal(format!("blocking task failed: {e}")))
}
