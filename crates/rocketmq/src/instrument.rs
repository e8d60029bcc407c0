//! Gateway metrics through the `metrics` facade (no-ops until the process
//! installs a recorder; this crate never installs one).
//!
//! - `fjord_request_duration_seconds{protocol="rocketmq", api}` (histogram,
//!   seconds): one observation per request command read from a connection,
//!   from the moment it was decoded until its response was queued for the
//!   connection's writer task (one-way requests: until handled). Requests
//!   wait for a free slot of [`crate::RocketMqConfig::max_in_flight`]
//!   before the clock starts. PULL_MESSAGE includes its long-poll wait
//!   (up to the client's suspend timeout, capped by
//!   [`crate::RocketMqConfig::max_long_poll`]); sends include the wait for
//!   durability.
//! - `fjord_request_errors_total{protocol="rocketmq", api}` (counter):
//!   requests whose response code is not SUCCESS (0), one-way requests
//!   included (their response is not sent), except the pull statuses
//!   PULL_NOT_FOUND and PULL_RETRY_IMMEDIATELY, which are how RocketMQ says
//!   "no new message" and not errors. Frames refused before a command could
//!   be decoded (too large, malformed: the connection is closed) count
//!   under `api="UNKNOWN"`, without a duration observation.
//! - `fjord_connections{protocol="rocketmq"}` (gauge) and
//!   `fjord_connections_accepted_total{protocol="rocketmq"}` (counter):
//!   connections of both listeners (name server and broker ports); see
//!   [`fjord_gateway_metrics::ConnectionGuard`].
//!
//! `api` is the request code's name in [`crate::handlers::SUPPORTED`]
//! (`SEND_MESSAGE_V2`, `PULL_MESSAGE`, `HEART_BEAT`, ...), `UNKNOWN` for
//! codes Fjord does not serve.

use fjord_gateway_metrics::GatewayMetrics;
use fjord_rocketmq_codec::codes::response;

/// The `api` label of a request with code `code`.
pub(crate) fn api_name(code: i32) -> &'static str {
    crate::handlers::SUPPORTED.iter().find(|(c, _)| *c == code).map_or("UNKNOWN", |&(_, name)| name)
}

/// Whether a response with code `code` counts as a request error.
pub(crate) fn is_error(code: i32) -> bool {
    !matches!(code, response::SUCCESS | response::PULL_NOT_FOUND | response::PULL_RETRY_IMMEDIATELY)
}

/// This gateway's request and connection metrics.
pub(crate) const METRICS: GatewayMetrics = GatewayMetrics::new("rocketmq");

#[cfg(test)]
mod tests {
    use fjord_rocketmq_codec::codes::request as rq;

    use super::*;

    #[test]
    fn served_codes_have_their_names() {
        assert_eq!(api_name(rq::SEND_MESSAGE), "SEND_MESSAGE");
        assert_eq!(api_name(rq::PULL_MESSAGE), "PULL_MESSAGE");
        assert_eq!(api_name(rq::HEART_BEAT), "HEART_BEAT");
        assert_eq!(api_name(rq::GET_ROUTEINFO_BY_TOPIC), "GET_ROUTEINFO_BY_TOPIC");
        assert_eq!(api_name(rq::REGISTER_BROKER), "UNKNOWN");
        assert_eq!(api_name(-7), "UNKNOWN");
    }

    #[test]
    fn empty_pulls_are_not_errors() {
        assert!(!is_error(response::SUCCESS));
        assert!(!is_error(response::PULL_NOT_FOUND));
        assert!(!is_error(response::PULL_RETRY_IMMEDIATELY));
        assert!(is_error(response::PULL_OFFSET_MOVED));
        assert!(is_error(response::SYSTEM_ERROR));
        assert!(is_error(response::TOPIC_NOT_EXIST));
    }
}
