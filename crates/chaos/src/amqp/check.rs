//! The AMQP workload's checks (each must count 0) and totals.
//!
//! - Every value the broker confirmed is delivered at least once.
//! - Once every fault is repaired, each publisher gets a publish confirmed
//!   and the consumers get deliveries again.
//!
//! Values delivered more than once are counted ([`AmqpTotals::redelivered`])
//! and not failed: AMQP promises at least once, and a failover delivers
//! again what was in flight.

use std::collections::{BTreeSet, HashMap};

use crate::check::Finding;
use crate::history::{Entry, Event};

/// What the AMQP clients did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AmqpTotals {
    /// Values published.
    pub(crate) published: u64,
    /// Values confirmed.
    pub(crate) confirmed: u64,
    /// Values the broker refused (nack) or whose confirm never came.
    pub(crate) unconfirmed: u64,
    /// Distinct values delivered.
    pub(crate) delivered: u64,
    /// Deliveries of a value after its first.
    pub(crate) redelivered: u64,
}

/// Counts what happened.
pub(crate) fn totals(history: &[Entry]) -> AmqpTotals {
    let mut t = AmqpTotals::default();
    let mut reads: HashMap<&str, u64> = HashMap::new();
    for e in history {
        match &e.event {
            Event::AmqpPublish { .. } => t.published += 1,
            Event::AmqpConfirm { .. } => t.confirmed += 1,
            Event::AmqpNack { .. } | Event::AmqpUnsure { .. } => t.unconfirmed += 1,
            Event::AmqpRead { value, .. } => *reads.entry(value).or_default() += 1,
            _ => {}
        }
    }
    t.delivered = reads.len() as u64;
    t.redelivered = reads.values().map(|n| n - 1).sum();
    t
}

/// Runs the checks (all 0 when the workload did not run).
pub(crate) fn check(history: &[Entry]) -> Vec<Finding> {
    let read: BTreeSet<&str> = history
        .iter()
        .filter_map(|e| match &e.event {
            Event::AmqpRead { value, .. } => Some(value.as_str()),
            _ => None,
        })
        .collect();
    let mut lost = Finding::new("AMQP confirmed messages never delivered");
    for e in history {
        if let Event::AmqpConfirm { value } = &e.event
            && !read.contains(value.as_str())
        {
            lost.hit(|| format!("{value} confirmed at {}ms, never delivered", e.at), &[value]);
        }
    }
    vec![lost, progress(history)]
}

/// Once every fault is repaired, each publisher gets a confirm and the
/// consumers a delivery.
fn progress(history: &[Entry]) -> Finding {
    let mut c = Finding::new("AMQP clients stalled after the repair");
    let Some(healed) = history.iter().position(|e| e.event == Event::Healed) else { return c };
    let (before, after) = history.split_at(healed);
    let publishers: BTreeSet<u32> = before
        .iter()
        .filter_map(|e| match e.event {
            Event::AmqpPublish { publisher, .. } => Some(publisher),
            _ => None,
        })
        .collect();
    for p in publishers {
        let prefix = format!("amqp{p}:");
        if !after.iter().any(|e| matches!(&e.event, Event::AmqpConfirm { value } if value.starts_with(&prefix))) {
            c.hit(|| format!("AMQP publisher {p} got nothing confirmed after the repair"), &[]);
        }
    }
    let consumed_before = before.iter().any(|e| matches!(e.event, Event::AmqpRead { .. }));
    let consumed_after =
        after.iter().any(|e| matches!(e.event, Event::AmqpRead { consumer, .. } if consumer != super::DRAIN));
    if consumed_before && !consumed_after {
        c.hit(|| "the AMQP consumers got nothing after the repair".into(), &[]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::DRAIN;

    fn at(ms: u64, event: Event) -> Entry {
        Entry { at: ms, event }
    }

    fn publish(v: &str) -> Event {
        Event::AmqpPublish { publisher: 0, value: v.into() }
    }

    fn confirm(v: &str) -> Event {
        Event::AmqpConfirm { value: v.into() }
    }

    fn read(c: u32, v: &str) -> Event {
        Event::AmqpRead { consumer: c, value: v.into(), redelivered: false }
    }

    #[test]
    fn a_confirmed_value_never_delivered_is_lost_and_an_unconfirmed_one_is_not() {
        let h = vec![
            at(1, publish("amqp0:0")),
            at(2, publish("amqp0:1")),
            at(3, publish("amqp0:2")),
            at(4, confirm("amqp0:0")),
            at(5, confirm("amqp0:1")),
            at(6, Event::AmqpUnsure { value: "amqp0:2".into(), error: "gone".into() }),
            at(7, read(0, "amqp0:0")),
            at(8, read(DRAIN, "amqp0:0")),
        ];
        let f = check(&h);
        assert_eq!(f[0].count, 1, "{f:?}");
        assert_eq!(f[0].values, vec!["amqp0:1".to_string()]);
        let t = totals(&h);
        assert_eq!((t.published, t.confirmed, t.unconfirmed, t.delivered, t.redelivered), (3, 2, 1, 1, 1));
    }

    #[test]
    fn publishers_and_consumers_must_go_on_after_the_repair() {
        let h = vec![
            at(1, publish("amqp0:0")),
            at(2, confirm("amqp0:0")),
            at(3, read(0, "amqp0:0")),
            at(4, Event::Healed),
            at(5, publish("amqp0:1")),
            at(6, read(DRAIN, "amqp0:1")),
        ];
        let f = check(&h);
        assert_eq!(f[1].count, 2, "{f:?}");
        let mut ok = h.clone();
        ok.push(at(7, confirm("amqp0:1")));
        ok.push(at(8, read(1, "amqp0:1")));
        assert_eq!(check(&ok)[1].count, 0);
    }
}
