//! The RocketMQ workload's checks (each must count 0) and totals.
//!
//! - Every value answered SEND_OK is in the topic's committed log (read
//!   with a Kafka client once everything is repaired): else the brokers
//!   lost an acknowledged write.
//! - Every value answered SEND_OK is delivered at least once.
//! - Once every fault is repaired, each producer gets a SEND_OK and the
//!   consumers get deliveries again.
//!
//! Values delivered more than once are counted ([`RmqTotals::redelivered`])
//! and not failed: push consumers are at least once.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::check::Finding;
use crate::history::{Entry, Event};

/// What the RocketMQ clients did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RmqTotals {
    /// Values sent.
    pub(crate) sent: u64,
    /// Values answered SEND_OK.
    pub(crate) acked: u64,
    /// Values whose send failed or was answered another status.
    pub(crate) unsure: u64,
    /// Distinct values delivered.
    pub(crate) delivered: u64,
    /// Deliveries of a value after its first.
    pub(crate) redelivered: u64,
}

/// Counts what happened.
pub(crate) fn totals(history: &[Entry]) -> RmqTotals {
    let mut t = RmqTotals::default();
    let mut reads: HashMap<&str, u64> = HashMap::new();
    for e in history {
        match &e.event {
            Event::RmqSend { .. } => t.sent += 1,
            Event::RmqOk { .. } => t.acked += 1,
            Event::RmqUnsure { .. } => t.unsure += 1,
            Event::RmqRead { value, .. } => *reads.entry(value).or_default() += 1,
            _ => {}
        }
    }
    t.delivered = reads.len() as u64;
    t.redelivered = reads.values().map(|n| n - 1).sum();
    t
}

/// Whether every acknowledged value has been delivered (the final drain
/// waits for it).
/// Deliveries so far (the drain's measure of progress).
pub(crate) fn reads(history: &[Entry]) -> usize {
    history.iter().filter(|e| matches!(e.event, Event::RmqRead { .. })).count()
}

pub(crate) fn all_delivered(history: &[Entry]) -> bool {
    let read = delivered(history);
    history.iter().all(|e| !matches!(&e.event, Event::RmqOk { value } if !read.contains(value.as_str())))
}

/// Runs the checks (all 0 when the workload did not run); `log`: the
/// values of the topic's committed log, when it could be read.
pub(crate) fn check(history: &[Entry], log: Option<&HashSet<String>>) -> Vec<Finding> {
    let read = delivered(history);
    let mut lost = Finding::new("RocketMQ acknowledged sends lost");
    let mut undelivered = Finding::new("RocketMQ acknowledged sends never delivered");
    for e in history {
        let Event::RmqOk { value } = &e.event else { continue };
        if log.is_some_and(|l| !l.contains(value)) {
            lost.hit(|| format!("{value} answered SEND_OK at {}ms, not in the committed log", e.at), &[value]);
        } else if !read.contains(value.as_str()) {
            undelivered.hit(|| format!("{value} answered SEND_OK at {}ms, never delivered", e.at), &[value]);
        }
    }
    vec![lost, undelivered, progress(history)]
}

/// The values delivered to a consumer.
fn delivered(history: &[Entry]) -> HashSet<&str> {
    history
        .iter()
        .filter_map(|e| match &e.event {
            Event::RmqRead { value, .. } => Some(value.as_str()),
            _ => None,
        })
        .collect()
}

/// Once every fault is repaired, each producer gets a SEND_OK and the
/// consumers a delivery.
fn progress(history: &[Entry]) -> Finding {
    let mut c = Finding::new("RocketMQ clients stalled after the repair");
    let Some(healed) = history.iter().position(|e| e.event == Event::Healed) else { return c };
    let (before, after) = history.split_at(healed);
    let producers: BTreeSet<u32> = before
        .iter()
        .filter_map(|e| match e.event {
            Event::RmqSend { producer, .. } => Some(producer),
            _ => None,
        })
        .collect();
    for p in producers {
        let prefix = format!("rmq{p}:");
        if !after.iter().any(|e| matches!(&e.event, Event::RmqOk { value } if value.starts_with(&prefix))) {
            c.hit(|| format!("RocketMQ producer {p} got no SEND_OK after the repair"), &[]);
        }
    }
    let consumed_before = before.iter().any(|e| matches!(e.event, Event::RmqRead { .. }));
    let consumed_after = after.iter().any(|e| matches!(e.event, Event::RmqRead { .. }));
    if consumed_before && !consumed_after {
        c.hit(|| "the RocketMQ consumers got nothing after the repair".into(), &[]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, event: Event) -> Entry {
        Entry { at: ms, event }
    }

    fn send(v: &str) -> Event {
        Event::RmqSend { producer: 0, value: v.into() }
    }

    fn ok(v: &str) -> Event {
        Event::RmqOk { value: v.into() }
    }

    fn read(v: &str) -> Event {
        Event::RmqRead { consumer: 0, value: v.into() }
    }

    #[test]
    fn an_acknowledged_value_never_delivered_is_lost_and_an_unsure_one_is_not() {
        let h = vec![
            at(1, send("rmq0:0")),
            at(2, send("rmq0:1")),
            at(3, send("rmq0:2")),
            at(4, ok("rmq0:0")),
            at(5, ok("rmq0:1")),
            at(6, Event::RmqUnsure { value: "rmq0:2".into(), error: "status SEND_FLUSH_SLAVE_TIMEOUT".into() }),
            at(7, read("rmq0:0")),
            at(8, read("rmq0:0")),
        ];
        assert!(!all_delivered(&h));
        let f = check(&h, None);
        assert_eq!((f[0].count, f[1].count), (0, 1), "{f:?}");
        assert_eq!(f[1].values, vec!["rmq0:1".to_string()]);
        // With the committed log: missing there, it was lost.
        let log: HashSet<String> = ["rmq0:0".to_string()].into();
        let f = check(&h, Some(&log));
        assert_eq!((f[0].count, f[1].count), (1, 0), "{f:?}");
        assert_eq!(f[0].values, vec!["rmq0:1".to_string()]);
        let t = totals(&h);
        assert_eq!((t.sent, t.acked, t.unsure, t.delivered, t.redelivered), (3, 2, 1, 1, 1));
        let mut done = h.clone();
        done.push(at(9, read("rmq0:1")));
        assert!(all_delivered(&done));
        assert_eq!(check(&done, None)[1].count, 0);
    }

    #[test]
    fn producers_and_consumers_must_go_on_after_the_repair() {
        let h = vec![at(1, send("rmq0:0")), at(2, ok("rmq0:0")), at(3, read("rmq0:0")), at(4, Event::Healed)];
        assert_eq!(check(&h, None)[2].count, 2);
        let mut ok_after = h.clone();
        ok_after.extend([at(5, send("rmq0:1")), at(6, ok("rmq0:1")), at(7, read("rmq0:1"))]);
        assert_eq!(check(&ok_after, None)[2].count, 0);
    }
}
