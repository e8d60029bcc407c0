//! Rate-limited logging of events clients cause.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Lets one log line through per interval and counts the others, so a
/// client sending garbage in a loop costs a line every few seconds, not a
/// line per frame.
///
/// ```
/// # use std::time::Duration;
/// let limiter = fjord_net::LogLimiter::new(Duration::from_secs(10));
/// if let Some(suppressed) = limiter.check() {
///     println!("malformed frame ({suppressed} more since the last line)");
/// }
/// ```
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> LogLimiter {
        LogLimiter { interval, last: Mutex::new(None), suppressed: AtomicU64::new(0) }
    }

    /// `Some(n)` when a line may be logged now, `n` being the events
    /// suppressed since the previous line; `None` (and one more suppressed
    /// event) otherwise.
    pub fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock();
        if last.is_some_and(|t| now.saturating_duration_since(t) < self.interval) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_with_the_count_of_the_rest() {
        let l = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(l.check(), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.check(), None);
        }
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(l.check(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(l.check(), Some(1001));
        assert_eq!(l.check(), None);
    }
}
