//! The disk alarm and forced closes: what the broker tells open
//! connections from outside their own traffic.
//!
//! - **Disk alarm** (RabbitMQ's `disk_free_limit`): once a second the free
//!   space of the data directory's file system is compared with the limit.
//!   While it is below, connections that support it get
//!   `connection.blocked` ("low on disk"), and a connection that publishes
//!   is no longer read from (its publish waits, nothing is refused or
//!   lost) until the space is back, when `connection.unblocked` follows.
//!   Consumers keep being served, so queues can drain.
//! - **Revocations**: deleting a user or a virtual host closes the
//!   connections using it with 320 CONNECTION_FORCED, as RabbitMQ does.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::AmqpGateway;

/// RabbitMQ's default `disk_free_limit`: 50 MB.
pub const DEFAULT_DISK_FREE_LIMIT: u64 = 50_000_000;

/// Something that ends connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// This user was deleted.
    User(String),
    /// This virtual host was deleted.
    VHost(String),
}

/// The disk alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStatus {
    /// Publishing stops below this many free bytes.
    pub limit_bytes: u64,
    /// Free bytes at the last check (`None` if it could not be read).
    pub free_bytes: Option<u64>,
    /// Whether publishing is blocked.
    pub alarm: bool,
}

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available().saturating_mul(s.fragment_size()))
}

impl AmqpGateway {
    /// The disk alarm's limit, the free space last seen and whether the
    /// alarm is on.
    pub fn disk_status(&self) -> DiskStatus {
        let free = self.disk_free.load(Ordering::Acquire);
        DiskStatus {
            limit_bytes: self.disk_free_limit.load(Ordering::Acquire),
            free_bytes: (free != u64::MAX).then_some(free),
            alarm: *self.alarm.borrow(),
        }
    }

    /// Sets the free-space limit (RabbitMQ's `set_disk_free_limit`) and
    /// re-checks at once.
    pub async fn set_disk_free_limit(&self, bytes: u64) -> DiskStatus {
        self.disk_free_limit.store(bytes, Ordering::Release);
        self.check_disk().await;
        self.disk_status()
    }

    /// Compares the free space with the limit and raises or clears the
    /// alarm.
    async fn check_disk(&self) {
        let dir = self.messaging.broker().config().data_dir.clone();
        let free = tokio::task::spawn_blocking(move || free_bytes(&dir)).await.ok().flatten();
        self.disk_free.store(free.unwrap_or(u64::MAX), Ordering::Release);
        // An unreadable file system does not block publishers.
        let low = free.is_some_and(|f| f < self.disk_free_limit.load(Ordering::Acquire));
        let changed = self.alarm.send_if_modified(|on| std::mem::replace(on, low) != low);
        if changed {
            if low {
                tracing::warn!(free = ?free, "disk alarm: free space below the limit, AMQP publishers are blocked");
            } else {
                tracing::info!(free = ?free, "disk alarm cleared, AMQP publishers resume");
            }
        }
    }

    /// Ends the connections of a deleted user or virtual host.
    pub(crate) fn revoke(&self, r: Revoked) {
        match &r {
            Revoked::User(u) => self.connections.close_where(|c| c.user == *u, &format!("user '{u}' is deleted")),
            Revoked::VHost(v) => self.connections.close_where(|c| c.vhost == *v, &format!("vhost '{v}' is deleted")),
        };
    }
}

/// Checks the disk once a second until `stop` turns true.
pub(crate) async fn run(gw: Arc<AmqpGateway>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => gw.check_disk().await,
            _ = stop.changed() => return,
        }
    }
}
