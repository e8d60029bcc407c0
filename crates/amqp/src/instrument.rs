//! Gateway metrics through the `metrics` facade (no-ops until the process
//! installs a recorder; this crate never installs one). Besides the
//! families every gateway reports (`fjord_request_duration_seconds`,
//! `fjord_request_errors_total`, `fjord_connections`,
//! `fjord_connections_accepted_total`, all with `protocol="amqp"`; `api`
//! is the method, `basic.publish`, `queue.declare`, ..., counted when it
//! was handled, errors when it raised an exception), the gateway reports
//! RabbitMQ's own names (rabbitmq_prometheus), so dashboards built for
//! RabbitMQ read Fjord:
//!
//! - `rabbitmq_global_messages_received_total`: messages published;
//! - `rabbitmq_global_messages_routed_total`: published messages routed
//!   to at least one queue;
//! - `rabbitmq_global_messages_unroutable_returned_total` and
//!   `..._unroutable_dropped_total`: published messages that went nowhere,
//!   returned (mandatory) or dropped;
//! - `rabbitmq_global_messages_confirmed_total`: publisher confirms sent;
//! - `rabbitmq_global_messages_delivered_total` (consumers and
//!   basic.get), `..._redelivered_total`, `..._acknowledged_total`;
//! - `rabbitmq_global_messages_dead_lettered_total{reason}`;
//! - per queue, sampled every few seconds: `rabbitmq_queue_messages_ready`,
//!   `rabbitmq_queue_messages_unacked`, `rabbitmq_queue_messages`,
//!   `rabbitmq_queue_consumers`, labelled `vhost` and `queue`.

use fjord_amqp_codec::AMQPClass;
use fjord_gateway_metrics::GatewayMetrics;

/// The AMQP gateway's request and connection metrics.
pub(crate) const METRICS: GatewayMetrics = GatewayMetrics::new("amqp");

/// A method's `api` label: `class.method` as the spec names them.
pub(crate) fn api_name(m: &AMQPClass) -> &'static str {
    match (m.get_amqp_class_id(), m.get_amqp_method_id()) {
        (20, 10) => "channel.open",
        (20, 20) => "channel.flow",
        (20, 40) => "channel.close",
        (20, 41) => "channel.close-ok",
        (40, 10) => "exchange.declare",
        (40, 20) => "exchange.delete",
        (40, 30) => "exchange.bind",
        (40, 40) => "exchange.unbind",
        (50, 10) => "queue.declare",
        (50, 20) => "queue.bind",
        (50, 30) => "queue.purge",
        (50, 40) => "queue.delete",
        (50, 50) => "queue.unbind",
        (60, 10) => "basic.qos",
        (60, 20) => "basic.consume",
        (60, 30) => "basic.cancel",
        (60, 40) => "basic.publish",
        (60, 70) => "basic.get",
        (60, 80) => "basic.ack",
        (60, 90) => "basic.reject",
        (60, 100) => "basic.recover-async",
        (60, 110) => "basic.recover",
        (60, 120) => "basic.nack",
        (85, 10) => "confirm.select",
        (90, 10) => "tx.select",
        (90, 20) => "tx.commit",
        (90, 30) => "tx.rollback",
        _ => "other",
    }
}

/// Adds `n` to a global counter.
pub(crate) fn count(name: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(name).increment(n);
    }
}

/// Counts dead-lettered messages.
pub(crate) fn dead_lettered(reason: &'static str, n: u64) {
    metrics::counter!("rabbitmq_global_messages_dead_lettered_total", "reason" => reason).increment(n);
}

/// Sets one queue's gauges.
pub(crate) fn queue_sample(vhost: &str, queue: &str, ready: u64, unacked: u64, consumers: usize) {
    let labels = [("vhost", vhost.to_string()), ("queue", queue.to_string())];
    metrics::gauge!("rabbitmq_queue_messages_ready", &labels).set(ready as f64);
    metrics::gauge!("rabbitmq_queue_messages_unacked", &labels).set(unacked as f64);
    metrics::gauge!("rabbitmq_queue_messages", &labels).set((ready + unacked) as f64);
    metrics::gauge!("rabbitmq_queue_consumers", &labels).set(consumers as f64);
}
