//! Storage metrics through the `metrics` facade. They cost next to nothing
//! until the process installs a recorder (the admin API's Prometheus
//! exporter); fjord-log never installs one.
//!
//! - `fjord_fsync_duration_seconds` (histogram, seconds, no labels): one
//!   observation per `fsync`/`fdatasync` issued by this crate, successful
//!   or not: segment data (each append under [`crate::Durability::EveryWrite`],
//!   each group-commit or interval flush round, segment rolls, truncation,
//!   and the sync after recovery at open), the files replaced by
//!   [`crate::write_atomic`] (index and key-index files, checkpoints, and the
//!   small metadata files other crates write through it) and their
//!   directories.
//! - `fjord_fsync_errors_total` (counter): those calls that returned an
//!   error (which poisons the log on the write path).
//! - `fjord_poisoned_logs` (gauge): live logs that refuse writes after a
//!   failed write or fsync, until [`crate::Log::recover`] succeeds.

use std::time::Instant;

/// Runs one fsync, recording its duration and whether it failed.
pub(crate) fn fsync(sync: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    let start = Instant::now();
    let result = sync();
    metrics::histogram!("fjord_fsync_duration_seconds").record(start.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!("fjord_fsync_errors_total").increment(1);
    }
    result
}

/// Moves the `fjord_poisoned_logs` gauge by `delta` (+1 when a log is
/// poisoned, -1 when it recovers or is dropped poisoned).
pub(crate) fn poisoned_logs(delta: f64) {
    metrics::gauge!("fjord_poisoned_logs").increment(delta);
}

#[cfg(test)]
mod tests {
    use fjord_metrics_testing::TestRecorder;

    #[test]
    fn failed_fsyncs_are_timed_and_counted() {
        let rec = TestRecorder::default();
        metrics::with_local_recorder(&rec, || {
            assert!(super::fsync(|| Ok(())).is_ok());
            assert!(super::fsync(|| Err(std::io::Error::other("EIO"))).is_err());
        });
        assert_eq!(rec.observations("fjord_fsync_duration_seconds", &[]).len(), 2);
        assert_eq!(rec.counter("fjord_fsync_errors_total", &[]), 1);
    }
}
