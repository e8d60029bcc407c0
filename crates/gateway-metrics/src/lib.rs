//! The metric families every protocol gateway reports, through the
//! `metrics` facade (no-ops until the process installs a recorder; this
//! crate never installs one). Each gateway owns one [`GatewayMetrics`]
//! named after its protocol and decides, in its own `instrument` module,
//! what a request's duration covers and what counts as an error; the
//! families and labels are the same for all of them:
//!
//! - `fjord_request_duration_seconds{protocol, api}` (histogram, seconds);
//! - `fjord_request_errors_total{protocol, api}` (counter);
//! - `fjord_connections{protocol}` (gauge) and
//!   `fjord_connections_accepted_total{protocol}` (counter), kept by
//!   [`ConnectionGuard`].

use std::time::Instant;

/// The request and connection metrics of one protocol.
#[derive(Debug, Clone, Copy)]
pub struct GatewayMetrics {
    protocol: &'static str,
}

impl GatewayMetrics {
    /// Metrics labelled `protocol` (`kafka`, `rocketmq`, `rocketmq_grpc`, ...).
    pub const fn new(protocol: &'static str) -> GatewayMetrics {
        GatewayMetrics { protocol }
    }

    /// Records one handled request of `api` that started at `start`, and
    /// counts it as an error when `failed`.
    pub fn request_done(&self, api: &'static str, start: Instant, failed: bool) {
        metrics::histogram!("fjord_request_duration_seconds", "protocol" => self.protocol, "api" => api)
            .record(start.elapsed().as_secs_f64());
        if failed {
            self.request_failed(api);
        }
    }

    /// Counts one request answered with an error, or refused before it
    /// could be handled (no duration observation).
    pub fn request_failed(&self, api: &'static str) {
        metrics::counter!("fjord_request_errors_total", "protocol" => self.protocol, "api" => api).increment(1);
    }

    /// Counts an accepted connection; see [`ConnectionGuard`].
    pub fn connection(&self) -> ConnectionGuard {
        metrics::counter!("fjord_connections_accepted_total", "protocol" => self.protocol).increment(1);
        metrics::gauge!("fjord_connections", "protocol" => self.protocol).increment(1.0);
        ConnectionGuard { protocol: self.protocol }
    }
}

/// One open connection in `fjord_connections`: counted out when dropped,
/// whichever way its task ends (closed by the client, an error, shutdown,
/// or the task aborted).
#[derive(Debug)]
pub struct ConnectionGuard {
    protocol: &'static str,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics::gauge!("fjord_connections", "protocol" => self.protocol).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use fjord_metrics_testing::TestRecorder;

    use super::*;

    #[test]
    fn requests_and_connections_carry_the_protocol_label() {
        let rec = TestRecorder::default();
        let m = GatewayMetrics::new("demo");
        metrics::with_local_recorder(&rec, || {
            m.request_done("Ping", Instant::now(), false);
            m.request_done("Ping", Instant::now(), true);
            m.request_failed("Unknown");
            let a = m.connection();
            let b = m.connection();
            drop(a);
            drop(b);
        });
        let ping = [("protocol", "demo"), ("api", "Ping")];
        assert_eq!(rec.observations("fjord_request_duration_seconds", &ping).len(), 2);
        assert_eq!(rec.counter("fjord_request_errors_total", &ping), 1);
        assert_eq!(rec.counter("fjord_request_errors_total", &[("protocol", "demo"), ("api", "Unknown")]), 1);
        assert_eq!(rec.counter("fjord_connections_accepted_total", &[("protocol", "demo")]), 2);
        assert_eq!(rec.gauge_history("fjord_connections", &[("protocol", "demo")]), vec![1.0, 2.0, 1.0, 0.0]);
    }
}
