//! The pop workload's checks (each must count 0) and totals.
//!
//! - Every value whose send was answered OK is in the topic's committed
//!   log (read with a Kafka client once everything is repaired): else the
//!   brokers lost an acknowledged write.
//! - Every such value is delivered to a consumer (at least once); the
//!   final drain waits until each was acked, or its last ack failed (an
//!   ack of unknown outcome: applied, it is not delivered again).
//! - A message whose ack was answered OK is never delivered again by a
//!   receive that started after that answer: an ack answered is committed
//!   on the queue's replicated state, and a failover or restart keeps it.
//!   Messages are told apart by where they are stored (partition and
//!   offset, named by the receipt): a send the client retried after a lost
//!   answer is stored twice, each copy delivered and acked on its own.
//! - Once every fault is repaired, each producer gets a send answered and
//!   the consumers get deliveries again.
//!
//! Messages delivered again before any ack (their invisibility ran out, an
//! ack's outcome was unknown) are counted, not failed: at least once.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::check::Finding;
use crate::history::{Entry, Event};

/// What the gRPC clients did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PopTotals {
    /// Values sent.
    pub(crate) sent: u64,
    /// Sends answered OK.
    pub(crate) acked: u64,
    /// Sends that failed.
    pub(crate) unsure: u64,
    /// Distinct values delivered.
    pub(crate) delivered: u64,
    /// Deliveries of a value after its first.
    pub(crate) redelivered: u64,
    /// Consumer acks answered OK.
    pub(crate) consumer_acks: u64,
    /// Consumer acks that failed (outcome unknown).
    pub(crate) ack_failures: u64,
}

/// Counts what happened.
pub(crate) fn totals(history: &[Entry]) -> PopTotals {
    let mut t = PopTotals::default();
    let mut reads: HashMap<&str, u64> = HashMap::new();
    for e in history {
        match &e.event {
            Event::PopSend { .. } => t.sent += 1,
            Event::PopOk { .. } => t.acked += 1,
            Event::PopUnsure { .. } => t.unsure += 1,
            Event::PopRead { value, .. } => *reads.entry(value).or_default() += 1,
            Event::PopAcked { .. } => t.consumer_acks += 1,
            Event::PopAckFailed { .. } => t.ack_failures += 1,
            _ => {}
        }
    }
    t.delivered = reads.len() as u64;
    t.redelivered = reads.values().map(|n| n - 1).sum();
    t
}

/// Whether every value answered OK has been acked by a consumer, or its
/// last ack failed with an unknown outcome (the final drain waits for it).
/// Deliveries so far (the drain's measure of progress).
pub(crate) fn reads(history: &[Entry]) -> usize {
    history.iter().filter(|e| matches!(e.event, Event::PopRead { .. })).count()
}

pub(crate) fn all_acked(history: &[Entry]) -> bool {
    let settled = settled(history);
    history.iter().all(|e| !matches!(&e.event, Event::PopOk { value } if !settled.contains(value.as_str())))
}

/// The values acked, or whose last ack failed after their last delivery.
fn settled(history: &[Entry]) -> HashSet<&str> {
    let mut acked = HashSet::new();
    let mut last_failed: HashMap<&str, bool> = HashMap::new();
    for e in history {
        match &e.event {
            Event::PopRead { value, .. } => {
                last_failed.insert(value, false);
            }
            Event::PopAcked { value, .. } => {
                acked.insert(value.as_str());
            }
            Event::PopAckFailed { value, .. } => {
                last_failed.insert(value, true);
            }
            _ => {}
        }
    }
    acked.extend(last_failed.into_iter().filter(|(_, failed)| *failed).map(|(v, _)| v));
    acked
}

/// Runs the checks (all 0 when the workload did not run); `log`: the
/// values of the topic's committed log, when it could be read.
pub(crate) fn check(history: &[Entry], log: Option<&HashSet<String>>) -> Vec<Finding> {
    let read = delivered(history);
    let mut lost = Finding::new("pop: acknowledged sends lost");
    let mut undelivered = Finding::new("pop: acknowledged sends never delivered");
    for e in history {
        let Event::PopOk { value } = &e.event else { continue };
        if log.is_some_and(|l| !l.contains(value)) {
            lost.hit(|| format!("{value} sent OK at {}ms, not in the committed log", e.at), &[value]);
        } else if !read.contains(value.as_str()) {
            undelivered.hit(|| format!("{value} sent OK at {}ms, never delivered", e.at), &[value]);
        }
    }
    vec![lost, undelivered, delivered_after_ack(history), progress(history)]
}

/// Where a receipt says its message is stored: (partition, offset).
fn stored_at(receipt: &str) -> Option<(u32, u64)> {
    let mut parts = receipt.split(' ');
    let partition = u32::from_str_radix(parts.next()?, 16).ok()?;
    let offset = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((partition, offset))
}

/// Deliveries by receives that started after an ack of the same message
/// was answered OK.
fn delivered_after_ack(history: &[Entry]) -> Finding {
    let mut f = Finding::new("pop: acked messages delivered again");
    // Where each receive call started, and each message's first answered ack.
    let mut polls: HashMap<(u32, u64), usize> = HashMap::new();
    let mut acks: HashMap<(u32, u64), (usize, u64)> = HashMap::new();
    for (i, e) in history.iter().enumerate() {
        match &e.event {
            Event::PopPoll { consumer, poll } => {
                polls.insert((*consumer, *poll), i);
            }
            Event::PopAcked { receipt, .. } => {
                if let Some(at) = stored_at(receipt) {
                    acks.entry(at).or_insert((i, e.at));
                }
            }
            Event::PopRead { consumer, poll, value, receipt } => {
                let (Some(at), Some(started)) = (stored_at(receipt), polls.get(&(*consumer, *poll))) else {
                    continue;
                };
                if let Some((acked, acked_ms)) = acks.get(&at)
                    && started > acked
                {
                    f.hit(
                        || {
                            format!(
                                "{value} (partition {} offset {}) acked at {acked_ms}ms, delivered again to consumer {consumer} at {}ms",
                                at.0, at.1, e.at
                            )
                        },
                        &[value],
                    );
                }
            }
            _ => {}
        }
    }
    f
}

/// The values delivered to a consumer.
fn delivered(history: &[Entry]) -> HashSet<&str> {
    history
        .iter()
        .filter_map(|e| match &e.event {
            Event::PopRead { value, .. } => Some(value.as_str()),
            _ => None,
        })
        .collect()
}

/// Once every fault is repaired, each producer gets a send answered and
/// the consumers a delivery.
fn progress(history: &[Entry]) -> Finding {
    let mut c = Finding::new("pop clients stalled after the repair");
    let Some(healed) = history.iter().position(|e| e.event == Event::Healed) else { return c };
    let (before, after) = history.split_at(healed);
    let producers: BTreeSet<u32> = before
        .iter()
        .filter_map(|e| match e.event {
            Event::PopSend { producer, .. } => Some(producer),
            _ => None,
        })
        .collect();
    for p in producers {
        let prefix = format!("pop{p}:");
        if !after.iter().any(|e| matches!(&e.event, Event::PopOk { value } if value.starts_with(&prefix))) {
            c.hit(|| format!("pop producer {p} got no send answered after the repair"), &[]);
        }
    }
    let consumed_before = before.iter().any(|e| matches!(e.event, Event::PopRead { .. }));
    let consumed_after = after.iter().any(|e| matches!(e.event, Event::PopRead { .. }));
    if consumed_before && !consumed_after {
        c.hit(|| "the pop consumers got nothing after the repair".into(), &[]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, event: Event) -> Entry {
        Entry { at: ms, event }
    }

    fn poll(c: u32, n: u64) -> Event {
        Event::PopPoll { consumer: c, poll: n }
    }

    fn read(c: u32, n: u64, v: &str, r: &str) -> Event {
        Event::PopRead { consumer: c, poll: n, value: v.into(), receipt: r.into() }
    }

    fn acked(c: u32, v: &str, r: &str) -> Event {
        Event::PopAcked { consumer: c, value: v.into(), receipt: r.into() }
    }

    #[test]
    fn a_message_delivered_by_a_receive_started_after_its_ack_is_found() {
        let h = vec![
            at(1, Event::PopSend { producer: 0, value: "pop0:0".into() }),
            at(2, Event::PopOk { value: "pop0:0".into() }),
            at(3, poll(0, 1)),
            at(4, poll(1, 1)),
            at(5, read(0, 1, "pop0:0", "1 a 3 chaos-pop")),
            at(6, acked(0, "pop0:0", "1 a 3 chaos-pop")),
            // Started before the ack was answered: not a violation.
            at(7, read(1, 1, "pop0:0", "1 a 4 chaos-pop")),
            // Another copy (a retried send) at another offset: its own.
            at(8, poll(1, 2)),
            at(9, read(1, 2, "pop0:0", "1 b 5 chaos-pop")),
        ];
        assert!(all_acked(&h));
        let f = check(&h, None);
        assert!(f.iter().all(|f| f.count == 0), "{f:?}");
        let mut again = h.clone();
        again.extend([at(10, poll(0, 2)), at(11, read(0, 2, "pop0:0", "1 a 6 chaos-pop"))]);
        let f = check(&again, None);
        assert_eq!(f[2].count, 1, "{f:?}");
        assert_eq!(f[2].values, vec!["pop0:0".to_string()]);
        let t = totals(&again);
        assert_eq!((t.sent, t.acked, t.delivered, t.redelivered, t.consumer_acks), (1, 1, 1, 3, 1));
    }

    #[test]
    fn an_acknowledged_send_must_be_in_the_log_and_delivered() {
        let h = vec![
            at(1, Event::PopOk { value: "pop0:0".into() }),
            at(2, Event::PopOk { value: "pop0:1".into() }),
            at(3, poll(0, 1)),
            at(4, read(0, 1, "pop0:0", "0 0 1 chaos-pop")),
        ];
        let f = check(&h, None);
        assert_eq!((f[0].count, f[1].count), (0, 1), "{f:?}");
        assert_eq!(f[1].values, vec!["pop0:1".to_string()]);
        let log: HashSet<String> = ["pop0:0".to_string()].into();
        let f = check(&h, Some(&log));
        assert_eq!((f[0].count, f[1].count), (1, 0), "{f:?}");
        assert_eq!(f[0].values, vec!["pop0:1".to_string()]);
    }

    /// The drain waits for every value to be acked, or its last delivery's
    /// ack to have failed (applied or not: nobody can tell).
    #[test]
    fn the_drain_waits_for_acks_or_failed_ones() {
        let failed = |v: &str| Event::PopAckFailed { consumer: 0, value: v.into(), error: "timeout".into() };
        let mut h = vec![at(1, Event::PopOk { value: "pop0:0".into() }), at(2, poll(0, 1))];
        assert!(!all_acked(&h));
        h.push(at(3, read(0, 1, "pop0:0", "0 0 1 chaos-pop")));
        assert!(!all_acked(&h), "delivered, not acked yet");
        h.push(at(4, failed("pop0:0")));
        assert!(all_acked(&h));
        h.extend([at(5, poll(0, 2)), at(6, read(0, 2, "pop0:0", "0 0 2 chaos-pop"))]);
        assert!(!all_acked(&h), "delivered again: its ack was not applied");
        h.push(at(7, acked(0, "pop0:0", "0 0 2 chaos-pop")));
        assert!(all_acked(&h));
        assert_eq!(totals(&h).ack_failures, 1);
    }

    #[test]
    fn producers_and_consumers_must_go_on_after_the_repair() {
        let h = vec![
            at(1, Event::PopSend { producer: 0, value: "pop0:0".into() }),
            at(2, poll(0, 1)),
            at(3, read(0, 1, "pop0:0", "0 0 1 chaos-pop")),
            at(4, Event::Healed),
        ];
        assert_eq!(check(&h, None)[3].count, 2);
        let mut ok_after = h.clone();
        ok_after.extend([
            at(5, Event::PopOk { value: "pop0:1".into() }),
            at(6, poll(0, 2)),
            at(7, read(0, 2, "pop0:1", "0 1 2 chaos-pop")),
        ]);
        assert_eq!(check(&ok_after, None)[3].count, 0);
    }
}
