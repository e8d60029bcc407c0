//! Counting the allocations of a closure. The test binary that includes this
//! installs the tracking allocator itself:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: tracking_allocator::Allocator<std::alloc::System> = tracking_allocator::Allocator::system();
//! ```
//!
//! (`tracking-allocator` does the `unsafe` part; the workspace forbids
//! `unsafe` in our own code, tests included.)
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use tracking_allocator::{AllocationGroupId, AllocationGroupToken, AllocationRegistry, AllocationTracker};

/// The allocation group being measured (0: none).
static GROUP: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time (test threads run in parallel).
static MEASURING: Mutex<()> = Mutex::new(());

struct Tracker;

impl AllocationTracker for Tracker {
    fn allocated(&self, _addr: usize, object_size: usize, _wrapped_size: usize, group_id: AllocationGroupId) {
        if group_id.as_usize().get() == GROUP.load(Ordering::Relaxed) {
            LARGEST.fetch_max(object_size, Ordering::Relaxed);
            TOTAL.fetch_add(object_size, Ordering::Relaxed);
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn deallocated(&self, _: usize, _: usize, _: usize, _: AllocationGroupId, _: AllocationGroupId) {}
}

/// What a closure allocated on its thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// The largest single allocation (bytes).
    pub(crate) largest: usize,
    /// All allocations added up (bytes), frees not subtracted.
    pub(crate) total: usize,
    /// Number of allocations.
    pub(crate) count: usize,
}

/// Runs `f`, counting the allocations it makes on this thread.
pub(crate) fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        AllocationRegistry::set_global_tracker(Tracker).expect("no other tracker");
        AllocationRegistry::enable_tracking();
    });
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let mut token = AllocationGroupToken::register().expect("allocation group");
    LARGEST.store(0, Ordering::Relaxed);
    TOTAL.store(0, Ordering::Relaxed);
    COUNT.store(0, Ordering::Relaxed);
    GROUP.store(token.id().as_usize().get(), Ordering::Relaxed);
    let r = {
        let _in_group = token.enter();
        f()
    };
    GROUP.store(0, Ordering::Relaxed);
    let usage = Usage {
        largest: LARGEST.load(Ordering::Relaxed),
        total: TOTAL.load(Ordering::Relaxed),
        count: COUNT.load(Ordering::Relaxed),
    };
    (r, usage)
}
