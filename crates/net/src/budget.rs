//! The broker-wide budget for bytes of requests being read or handled.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of request frames that may be in memory at once, across every
/// connection of every listener (Kafka's `queued.max.request.bytes`).
///
/// A connection reserves a frame's announced size before reading its body
/// and keeps the [`BudgetPermit`] until the request is handled. The
/// semaphore is fair: a large request waiting for memory is not starved by
/// a stream of small ones behind it.
///
/// Budgets compare by size (so settings holding one compare as settings).
#[derive(Debug, Clone)]
pub struct RequestBudget {
    sem: Arc<Semaphore>,
    total: u32,
}

/// Reserved request bytes, given back when dropped.
///
/// No metric is touched per reservation (one per frame is too hot a path
/// for a registry lookup): `/metrics` reads [`RequestBudget::in_use`] when
/// it is scraped.
#[derive(Debug)]
pub struct BudgetPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PartialEq for RequestBudget {
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total
    }
}

impl Eq for RequestBudget {}

impl Default for RequestBudget {
    fn default() -> Self {
        RequestBudget::new(crate::DEFAULT_REQUEST_BUDGET_BYTES)
    }
}

impl RequestBudget {
    /// A budget of `bytes` (clamped to 1 ..= 4 GiB - 1, what one semaphore
    /// acquisition can take).
    pub fn new(bytes: u64) -> RequestBudget {
        let total = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        RequestBudget { sem: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.total)
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> u64 {
        self.total() - self.sem.available_permits() as u64
    }

    /// Reserves `bytes` (at most the whole budget) if that much is free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<BudgetPermit> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.total);
        if n == 0 {
            return Some(BudgetPermit { _permit: None });
        }
        let permit = self.sem.clone().try_acquire_many_owned(n).ok()?;
        Some(BudgetPermit { _permit: Some(permit) })
    }

    /// Reserves `bytes` (at most the whole budget), waiting while too much
    /// is reserved by others.
    pub async fn reserve(&self, bytes: usize) -> BudgetPermit {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.total);
        if n == 0 {
            return BudgetPermit { _permit: None };
        }
        if let Some(permit) = self.try_reserve(bytes) {
            return permit;
        }
        metrics::counter!("fjord_request_budget_waits_total").increment(1);
        let permit = match self.sem.clone().acquire_many_owned(n).await {
            Ok(p) => p,
            // The semaphore is never closed; an unbounded permit is the only
            // sane answer if it ever were.
            Err(_) => return BudgetPermit { _permit: None },
        };
        BudgetPermit { _permit: Some(permit) }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reservations_wait_until_memory_is_released() {
        let b = RequestBudget::new(100);
        let first = b.reserve(60).await;
        assert_eq!(b.in_use(), 60);
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(50).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "60 + 50 exceeds the budget of 100");
        drop(first);
        let second = waiter.await.expect("task");
        assert_eq!(b.in_use(), 50);
        drop(second);
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_larger_than_the_budget_takes_all_of_it() {
        let b = RequestBudget::new(100);
        let huge = b.reserve(1 << 30).await;
        assert_eq!(b.in_use(), 100);
        let small = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(1).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!small.is_finished());
        drop(huge);
        drop(small.await.expect("task"));
        assert_eq!(b.in_use(), 0);
        drop(b.reserve(0).await);
    }
}
