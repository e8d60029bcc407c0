//! Riding out a move: a call that failed because what it works on is
//! moving (a leader change, a node lost, a shard still loading at its new
//! leader: [`MessagingError::moving`]) is made again through the new
//! leader, every [`MOVE_POLL`], for a bounded time — as Kafka clients
//! retry a produce through a partition's new leader. Each caller decides
//! which failures are worth another attempt (only those that surely did
//! nothing, or whose repetition is harmless); this module holds the
//! policy they share: how often, for how long, and what is said.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{MessagingError, Result};

/// Time between attempts.
pub const MOVE_POLL: Duration = Duration::from_millis(100);

/// The time left for attempts at one call.
#[derive(Debug, Clone, Copy)]
pub struct MoveWait {
    deadline: Instant,
    what: &'static str,
}

impl MoveWait {
    /// Attempts at `what` (for the logs) for up to `wait` from now.
    pub fn new(what: &'static str, wait: Duration) -> MoveWait {
        MoveWait { deadline: Instant::now() + wait, what }
    }

    /// After an attempt failed with `e`, worth making again: waits
    /// [`MOVE_POLL`] and returns, or returns `e` once the time is up.
    pub async fn again(&self, e: MessagingError) -> Result<()> {
        if Instant::now() >= self.deadline {
            return Err(e);
        }
        tracing::debug!(error = %e, what = self.what, "moving: asking again");
        tokio::time::sleep(MOVE_POLL).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use fjord_broker::BrokerError;

    fn moving() -> MessagingError {
        MessagingError::Broker(BrokerError::Unavailable("moving".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_poll_until_the_wait_is_over_then_give_the_last_failure() {
        let start = Instant::now();
        let wait = MoveWait::new("test", Duration::from_millis(450));
        let mut attempts = 0;
        let last = loop {
            attempts += 1;
            if let Err(e) = wait.again(moving()).await {
                break e;
            }
        };
        assert_eq!(attempts, 6, "at 0, 100, 200, 300, 400 and 500 ms");
        assert!(last.moving());
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }
}
