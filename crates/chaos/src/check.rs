//! The checks: pure functions from a history, the final committed log as a
//! fresh client reads it, and every replica's log as its files hold it, to
//! counts of violations (each must be 0) with an example of each.
//!
//! Values are `"<producer>:<seq>"`, unique per run; a producer writes its
//! sequence numbers in increasing order, so within a partition they must
//! appear in increasing order too (idempotent producers keep order across
//! retries).
//!
//! A value written twice is the broker's fault unless librdkafka re-sent it
//! under a new producer epoch after an attempt of the earlier copy ended
//! "possibly persisted" (librdkafka #4953: its epoch bump re-sends what it
//! has not seen acknowledged; no broker can recognise that). Those are
//! counted apart ([`Totals::client_resent`]) and not failed; the later copy
//! is then also left out of the order check. Everything else written twice
//! fails: under one epoch (the broker's deduplication), or under two when
//! the broker answered every attempt of the earlier copy "not written".

use std::collections::{BTreeMap, HashMap};

use crate::history::{Entry, Event};

/// A partition's records: (offset, value) in log order.
pub(crate) type Log = Vec<(i64, String)>;

/// Everything the checks look at.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// The history of the run.
    pub(crate) history: Vec<Entry>,
    /// Per partition, the committed log as a fresh consumer read it after
    /// the faults were repaired (up to the high watermark).
    pub(crate) committed: BTreeMap<i32, Log>,
    /// Partitions the final read could not read to their high watermark
    /// (reported as errors): what is missing there is not counted as lost.
    pub(crate) incomplete: std::collections::BTreeSet<i32>,
    /// Per partition, per node id, the records in that replica's files
    /// after a clean stop.
    pub(crate) replicas: BTreeMap<i32, BTreeMap<i32, Log>>,
    /// Who wrote each record of an idempotent producer, by (partition,
    /// offset), from the replicas' files.
    pub(crate) writers: HashMap<(i32, i64), Written>,
    /// The values in the RocketMQ topic's committed log, read after the
    /// faults were repaired (`None`: no RocketMQ workload, or the read
    /// failed).
    pub(crate) rocketmq_log: Option<std::collections::HashSet<String>>,
    /// The values in the pop workload's topic's committed log (`None`: no
    /// pop workload, or the read failed).
    pub(crate) pop_log: Option<std::collections::HashSet<String>>,
}

/// The idempotent producer, epoch and sequence a record was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) sequence: i32,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// What is counted.
    pub(crate) check: &'static str,
    /// How many violations (0 passes).
    pub(crate) count: u64,
    /// The first violation, described.
    pub(crate) example: Option<String>,
    /// Values involved in the example (for the minimal history).
    pub(crate) values: Vec<String>,
}

/// Counts of what happened, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Values handed to producers.
    pub(crate) sent: u64,
    /// Values acknowledged.
    pub(crate) acked: u64,
    /// Values the clients gave up on.
    pub(crate) failed: u64,
    /// Records read by the group consumers (re-reads included).
    pub(crate) read: u64,
    /// Records in the final committed logs.
    pub(crate) committed: u64,
    /// Faults injected.
    pub(crate) faults: u64,
    /// The longest time (ms) between two acknowledgements while the
    /// workload ran: how long the faults stopped the producers.
    pub(crate) longest_ack_gap_ms: u64,
    /// Values written twice because librdkafka re-sent them under a new
    /// producer epoch after a "possibly persisted" attempt (not failed).
    pub(crate) client_resent: u64,
    /// The AMQP workload's.
    pub(crate) amqp: crate::amqp::check::AmqpTotals,
    /// The RocketMQ workload's.
    pub(crate) rocketmq: crate::rocketmq::check::RmqTotals,
    /// The pop workload's.
    pub(crate) pop: crate::rocketmq::pop_check::PopTotals,
}

impl Finding {
    /// No violation yet.
    pub(crate) fn new(check: &'static str) -> Self {
        Finding { check, count: 0, example: None, values: Vec::new() }
    }

    /// Counts a violation; the first one is the example.
    pub(crate) fn hit(&mut self, example: impl FnOnce() -> String, values: &[&str]) {
        self.count += 1;
        if self.example.is_none() {
            self.example = Some(example());
            self.values = values.iter().map(|v| v.to_string()).collect();
        }
    }
}

fn split_value(v: &str) -> Option<(&str, u64)> {
    let (producer, seq) = v.rsplit_once(':')?;
    Some((producer, seq.parse().ok()?))
}

/// What happened, counted.
pub(crate) fn totals(o: &Observed) -> Totals {
    let mut t = Totals::default();
    let mut last_ack = None;
    for e in &o.history {
        match e.event {
            Event::Send { .. } => t.sent += 1,
            Event::Ack { .. } => {
                t.acked += 1;
                if let Some(prev) = last_ack {
                    t.longest_ack_gap_ms = t.longest_ack_gap_ms.max(e.at.saturating_sub(prev));
                }
                last_ack = Some(e.at);
            }
            Event::Fail { .. } => t.failed += 1,
            Event::Read { .. } => t.read += 1,
            Event::Fault { .. } => t.faults += 1,
            _ => {}
        }
    }
    t.committed = o.committed.values().map(|l| l.len() as u64).sum();
    t.client_resent = written_twice(o).values().filter(|d| d.by_client).count() as u64;
    t.amqp = crate::amqp::check::totals(&o.history);
    t.rocketmq = crate::rocketmq::check::totals(&o.history);
    t.pop = crate::rocketmq::pop_check::totals(&o.history);
    t
}

/// A value found at more than one place in the committed logs.
#[derive(Debug)]
struct Twice {
    places: Vec<(i32, i64)>,
    /// librdkafka re-sent it under a later epoch after a "possibly
    /// persisted" attempt of every earlier copy.
    by_client: bool,
}

/// The values written more than once, each judged.
fn written_twice(o: &Observed) -> BTreeMap<&str, Twice> {
    let mut at: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (&p, log) in &o.committed {
        for (off, v) in log {
            at.entry(v.as_str()).or_default().push((p, *off));
        }
    }
    // The attempts that ended "possibly persisted".
    let mut unsure: HashMap<(i32, i64, i16), Vec<(i32, i32)>> = HashMap::new();
    for e in &o.history {
        if let Event::Unsure { partition, producer_id, epoch, first_seq, last_seq, .. } = &e.event {
            unsure.entry((*partition, *producer_id, *epoch)).or_default().push((*first_seq, *last_seq));
        }
    }
    let mut out = BTreeMap::new();
    for (v, places) in at {
        if places.len() < 2 {
            continue;
        }
        let by: Option<Vec<Written>> = places.iter().map(|pl| o.writers.get(pl).copied()).collect();
        let by_client = by.is_some_and(|mut by| {
            by.sort_by_key(|w| w.epoch);
            let one_producer = by.iter().all(|w| w.producer_id == by[0].producer_id);
            let epochs_differ = by.windows(2).all(|w| w[0].epoch < w[1].epoch);
            let partition = places[0].0;
            let earlier_unsure = by[..by.len() - 1].iter().all(|w| {
                unsure
                    .get(&(partition, w.producer_id, w.epoch))
                    .is_some_and(|attempts| attempts.iter().any(|(first, last)| (*first..=*last).contains(&w.sequence)))
            });
            one_producer && epochs_differ && earlier_unsure && places.iter().all(|(p, _)| *p == partition)
        });
        out.insert(v, Twice { places, by_client });
    }
    out
}

/// Runs every check.
pub(crate) fn check(o: &Observed) -> Vec<Finding> {
    // Where each value ended up in the committed logs.
    let mut at: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    let mut by_offset: HashMap<(i32, i64), &str> = HashMap::new();
    for (&p, log) in &o.committed {
        for (off, v) in log {
            at.entry(v.as_str()).or_default().push((p, *off));
            by_offset.insert((p, *off), v.as_str());
        }
    }

    let mut lost = Finding::new("acknowledged writes lost");
    let mut moved = Finding::new("acknowledged offset holds another record");
    for e in &o.history {
        let Event::Ack { value, partition, offset } = &e.event else { continue };
        if o.incomplete.contains(partition) {
            continue;
        }
        // librdkafka acknowledges some records without an offset
        // (-1001): those a later batch's success proved written after their
        // own response was lost. They must be in their partition, anywhere.
        if *offset < 0 {
            if !at.get(value.as_str()).is_some_and(|places| places.iter().any(|(p, _)| p == partition)) {
                lost.hit(|| format!("{value} acked on partition {partition} (offset unknown), not there"), &[value]);
            }
            continue;
        }
        match at.get(value.as_str()) {
            None => lost.hit(|| format!("{value} acked at {partition}@{offset}, not in the committed log"), &[value]),
            Some(places) if !places.contains(&(*partition, *offset)) => moved.hit(
                || format!("{value} acked at {partition}@{offset}, found at {places:?}"),
                &[value, by_offset.get(&(*partition, *offset)).copied().unwrap_or("")],
            ),
            Some(_) => {}
        }
    }

    let mut dups = Finding::new("duplicates (idempotent producers)");
    let twice = written_twice(o);
    // The later copies of what the client re-sent: out of the order check.
    let mut resent: std::collections::HashSet<(i32, i64)> = std::collections::HashSet::new();
    for (v, d) in &twice {
        if d.by_client {
            let first = d.places.iter().min_by_key(|(_, off)| *off).copied();
            resent.extend(d.places.iter().filter(|pl| Some(**pl) != first));
        } else {
            let places = &d.places;
            dups.hit(|| format!("{v} written {} times: {places:?}", places.len()), &[v]);
        }
    }

    let mut reordered = Finding::new("reordered within a partition");
    let mut monotonic = Finding::new("non-monotonic offsets");
    for (&p, log) in &o.committed {
        let mut last_seq: HashMap<&str, (u64, &str)> = HashMap::new();
        let mut last_off: Option<i64> = None;
        for (off, v) in log {
            if let Some(prev) = last_off
                && *off <= prev
            {
                monotonic.hit(|| format!("partition {p}: offset {off} after {prev}"), &[v]);
            }
            last_off = Some(*off);
            if resent.contains(&(p, *off)) {
                continue;
            }
            let Some((producer, seq)) = split_value(v) else { continue };
            if let Some(&(prev, prev_v)) = last_seq.get(producer)
                && seq <= prev
            {
                reordered.hit(|| format!("partition {p}: {v} at {off} after {prev_v}"), &[v, prev_v]);
            }
            last_seq.insert(producer, (seq, v));
        }
    }

    let mut uncommitted = Finding::new("reads of records not in the committed log");
    for e in &o.history {
        let Event::Read { consumer, partition, offset, value } = &e.event else { continue };
        if o.incomplete.contains(partition) && !by_offset.contains_key(&(*partition, *offset)) {
            continue;
        }
        match by_offset.get(&(*partition, *offset)) {
            Some(v) if *v == value => {}
            found => uncommitted.hit(
                || format!("consumer {consumer} read {value} at {partition}@{offset}; committed log has {found:?}"),
                &[value],
            ),
        }
    }

    let divergent = check_replicas(o);
    let back = check_commits(&o.history);
    let stalled = check_progress(&o.history);
    let mut all = vec![lost, moved, dups, reordered, monotonic, uncommitted, divergent, back, stalled];
    all.extend(crate::amqp::check::check(&o.history));
    all.extend(crate::rocketmq::check::check(&o.history, o.rocketmq_log.as_ref()));
    all.extend(crate::rocketmq::pop_check::check(&o.history, o.pop_log.as_ref()));
    all
}

/// Once every fault is repaired, every producer gets a write acknowledged
/// and the group commits again (liveness: nobody stays stopped).
fn check_progress(history: &[Entry]) -> Finding {
    let mut c = Finding::new("stalled after the faults were repaired");
    let Some(healed) = history.iter().position(|e| e.event == Event::Healed) else { return c };
    let after = &history[healed..];
    let producers: std::collections::BTreeSet<&str> = history[..healed]
        .iter()
        .filter_map(|e| match &e.event {
            Event::Send { producer, .. } => Some(producer.as_str()),
            _ => None,
        })
        .collect();
    // Only a producer's last incarnation is expected to go on.
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for p in producers {
        let family = p.split_once('.').map_or(p, |(f, _)| f);
        last.insert(family, p);
    }
    for p in last.values() {
        let acked = after
            .iter()
            .any(|e| matches!(&e.event, Event::Ack { value, .. } if split_value(value).is_some_and(|(q, _)| q == *p)));
        if !acked {
            c.hit(|| format!("producer {p} got no write acknowledged after the repair"), &[]);
        }
    }
    // The group: its consumers read again, and its committed offsets (as
    // OffsetFetch shows them) move past where they stood at the repair.
    if !after.iter().any(|e| matches!(e.event, Event::Read { .. })) {
        c.hit(|| "the consumer group read nothing after the repair".into(), &[]);
    }
    let mut before: HashMap<i32, i64> = HashMap::new();
    for e in &history[..healed] {
        if let Event::Committed { partition, offset, .. } = e.event {
            let b = before.entry(partition).or_insert(offset);
            *b = (*b).max(offset);
        }
    }
    let advanced = after.iter().any(|e| match e.event {
        Event::Committed { partition, offset, .. } => before.get(&partition).is_none_or(|b| offset > *b),
        Event::Commit { .. } => true,
        _ => false,
    });
    if !advanced {
        c.hit(|| "the consumer group committed nothing after the repair".into(), &[]);
    }
    c
}

/// Every replica holds every committed record, and replicas agree on every
/// offset they both hold (beyond the high watermark too: a diverged tail
/// left behind after the faults were repaired is a divergence).
fn check_replicas(o: &Observed) -> Finding {
    let mut c = Finding::new("divergent replicas");
    for (&p, replicas) in &o.replicas {
        let committed = o.committed.get(&p).map(Vec::as_slice).unwrap_or_default();
        let mut union: BTreeMap<i64, (&str, i32)> = BTreeMap::new();
        for (&node, log) in replicas {
            let held: HashMap<i64, &str> = log.iter().map(|(o, v)| (*o, v.as_str())).collect();
            for (off, v) in committed {
                match held.get(off) {
                    Some(h) if *h == v => {}
                    h => c.hit(
                        || format!("partition {p} node {node}: committed {v} at {off}, replica holds {h:?}"),
                        &[v],
                    ),
                }
            }
            for (off, v) in log {
                match union.get(off) {
                    Some((other, other_node)) if other != v => c.hit(
                        || {
                            format!(
                                "partition {p} offset {off}: node {other_node} holds {other}, node {node} holds {v}"
                            )
                        },
                        &[v, other],
                    ),
                    Some(_) => {}
                    None => {
                        union.insert(*off, (v, node));
                    }
                }
            }
        }
    }
    c
}

/// A group's committed offset never moves back: each OffsetFetch returns
/// at least what any earlier one returned, and at least every commit
/// acknowledged before it was asked.
fn check_commits(history: &[Entry]) -> Finding {
    let mut c = Finding::new("committed offsets moved back");
    let mut acked: HashMap<i32, (i64, u64)> = HashMap::new();
    let mut seen: HashMap<i32, (i64, u64)> = HashMap::new();
    for e in history {
        match e.event {
            Event::Commit { partition, offset, .. } => {
                let best = acked.entry(partition).or_insert((offset, e.at));
                if offset > best.0 {
                    *best = (offset, e.at);
                }
            }
            Event::Committed { asked, partition, offset } => {
                if let Some(&(prev, when)) = seen.get(&partition)
                    && offset < prev
                {
                    c.hit(
                        || format!("partition {partition}: committed {offset} at {}ms after {prev} at {when}ms", e.at),
                        &[],
                    );
                }
                // Strictly before: within one millisecond the history
                // cannot tell whether the fetch left before the commit's
                // answer came (seed 18: a commit acknowledged and a fetch
                // asked both at 7321 ms; the fetch saw the earlier offset,
                // the next one the new).
                if let Some(&(best, when)) = acked.get(&partition)
                    && when < asked
                    && offset < best
                {
                    c.hit(|| format!("partition {partition}: committed {offset} asked at {asked}ms, but {best} was acknowledged at {when}ms"), &[]);
                }
                let s = seen.entry(partition).or_insert((offset, e.at));
                if offset >= s.0 {
                    *s = (offset, e.at);
                }
            }
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at: u64, event: Event) -> Entry {
        Entry { at, event }
    }

    fn ack(v: &str, p: i32, o: i64) -> Entry {
        at(1, Event::Ack { value: v.into(), partition: p, offset: o })
    }

    fn log(items: &[(i64, &str)]) -> Log {
        items.iter().map(|(o, v)| (*o, v.to_string())).collect()
    }

    fn count(findings: &[Finding], check: &str) -> u64 {
        findings.iter().find(|f| f.check == check).map(|f| f.count).unwrap_or(u64::MAX)
    }

    fn healthy() -> Observed {
        let l = log(&[(0, "a:0"), (1, "a:1"), (2, "b:0")]);
        Observed {
            history: vec![ack("a:0", 0, 0), ack("a:1", 0, 1), ack("b:0", 0, 2)],
            committed: BTreeMap::from([(0, l.clone())]),
            incomplete: Default::default(),
            replicas: BTreeMap::from([(0, BTreeMap::from([(1, l.clone()), (2, l)]))]),
            writers: HashMap::new(),
            rocketmq_log: None,
            pop_log: None,
        }
    }

    /// `a:1` at offsets 1 and 3: first under epoch 0 (sequence 1), then
    /// re-sent under epoch 1 (sequence 0), after `b:0`.
    fn resent(unsure: Option<(i16, i32, i32)>) -> Observed {
        let mut o = healthy();
        let l = log(&[(0, "a:0"), (1, "a:1"), (2, "b:0"), (3, "a:1")]);
        o.committed.insert(0, l.clone());
        o.replicas = BTreeMap::from([(0, BTreeMap::from([(1, l)]))]);
        let w = |epoch, sequence| Written { producer_id: 7, epoch, sequence };
        o.writers = HashMap::from([((0, 0), w(0, 0)), ((0, 1), w(0, 1)), ((0, 3), w(1, 0))]);
        if let Some((epoch, first_seq, last_seq)) = unsure {
            let error = "Local: Timed out".to_string();
            let event = Event::Unsure { partition: 0, producer_id: 7, epoch, first_seq, last_seq, error };
            o.history.push(at(5, event));
        }
        o
    }

    #[test]
    fn a_value_the_client_re_sent_after_a_possibly_persisted_attempt_is_counted_not_failed() {
        let o = resent(Some((0, 1, 1)));
        let f = check(&o);
        assert_eq!(count(&f, "duplicates (idempotent producers)"), 0);
        assert_eq!(count(&f, "reordered within a partition"), 0, "the re-sent copy is out of the order check");
        assert_eq!(totals(&o).client_resent, 1);
    }

    #[test]
    fn a_value_written_twice_without_a_possibly_persisted_attempt_fails() {
        // The broker answered every attempt of the first copy "not
        // written" (no possibly-persisted outcome), or the unsure attempt
        // was another sequence or epoch: the broker's.
        for unsure in [None, Some((0, 2, 3)), Some((1, 0, 0))] {
            let o = resent(unsure);
            assert_eq!(count(&check(&o), "duplicates (idempotent producers)"), 1, "{unsure:?}");
            assert_eq!(totals(&o).client_resent, 0);
        }
        // Twice under one epoch: the broker's deduplication failed.
        let mut o = resent(Some((0, 1, 1)));
        o.writers.insert((0, 3), Written { producer_id: 7, epoch: 0, sequence: 1 });
        assert_eq!(count(&check(&o), "duplicates (idempotent producers)"), 1);
    }

    #[test]
    fn a_clean_run_passes_every_check() {
        let f = check(&healthy());
        assert!(f.iter().all(|f| f.count == 0), "{f:?}");
        assert_eq!(
            f.len(),
            18,
            "nine checks of the Kafka workload, two of the AMQP one, three of the RocketMQ one, four of the pop one"
        );
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        let mut o = healthy();
        o.history.push(ack("a:2", 0, 3));
        let f = check(&o);
        assert_eq!(count(&f, "acknowledged writes lost"), 1);
        assert_eq!(f[0].values, vec!["a:2".to_string()]);
    }

    #[test]
    fn an_acknowledged_offset_holding_another_record_is_found() {
        let mut o = healthy();
        o.history.push(ack("b:0", 0, 1));
        assert_eq!(count(&check(&o), "acknowledged offset holds another record"), 1);
    }

    #[test]
    fn an_ack_without_an_offset_needs_its_record_in_its_partition() {
        let mut o = healthy();
        o.history.push(ack("a:1", 0, -1001));
        assert!(check(&o).iter().all(|f| f.count == 0));
        o.history.push(ack("c:0", 0, -1001));
        o.committed.insert(1, log(&[(0, "c:0")]));
        assert_eq!(count(&check(&o), "acknowledged writes lost"), 1);
    }

    #[test]
    fn duplicates_and_reordering_are_found() {
        let mut o = healthy();
        o.committed.insert(1, log(&[(0, "c:1"), (1, "c:0"), (2, "a:0")]));
        let f = check(&o);
        assert_eq!(count(&f, "duplicates (idempotent producers)"), 1);
        assert_eq!(count(&f, "reordered within a partition"), 1);
    }

    #[test]
    fn offsets_going_back_are_found() {
        let mut o = healthy();
        o.committed.insert(1, log(&[(5, "c:0"), (4, "c:1")]));
        assert_eq!(count(&check(&o), "non-monotonic offsets"), 1);
    }

    #[test]
    fn reading_a_record_that_was_later_truncated_is_found() {
        let mut o = healthy();
        o.history.push(at(2, Event::Read { consumer: 1, partition: 0, offset: 2, value: "z:9".into() }));
        o.history.push(at(2, Event::Read { consumer: 1, partition: 0, offset: 1, value: "a:1".into() }));
        assert_eq!(count(&check(&o), "reads of records not in the committed log"), 1);
    }

    #[test]
    fn a_replica_missing_a_record_or_disagreeing_is_found() {
        let mut o = healthy();
        let replicas = o.replicas.get_mut(&0).unwrap();
        replicas.insert(3, log(&[(0, "a:0"), (1, "a:1")]));
        assert_eq!(count(&check(&o), "divergent replicas"), 1);
        let mut o = healthy();
        // Beyond the committed log, two replicas disagree on offset 3.
        let replicas = o.replicas.get_mut(&0).unwrap();
        replicas.get_mut(&1).unwrap().push((3, "x:0".into()));
        replicas.get_mut(&2).unwrap().push((3, "y:0".into()));
        assert_eq!(count(&check(&o), "divergent replicas"), 1);
        // A tail one replica has and the other does not yet is no divergence.
        let mut o = healthy();
        o.replicas.get_mut(&0).unwrap().get_mut(&1).unwrap().push((3, "x:0".into()));
        assert_eq!(count(&check(&o), "divergent replicas"), 0);
    }

    #[test]
    fn clients_stalled_after_the_repair_are_found() {
        let send = |p: &str| at(1, Event::Send { producer: p.into(), value: format!("{p}:0"), partition: 0 });
        let mut o = healthy();
        o.history.extend([
            send("p0.1"),
            send("p1.1"),
            send("p1.2"),
            at(4, Event::Committed { asked: 4, partition: 0, offset: 2 }),
            at(5, Event::Healed),
        ]);
        o.history.push(at(6, Event::Ack { value: "p0.1:9".into(), partition: 0, offset: 9 }));
        o.history.push(at(6, Event::Committed { asked: 6, partition: 0, offset: 2 }));
        let f = check(&o);
        // p1.2 (p1.1's successor) acknowledged nothing; the group read and
        // committed nothing.
        assert_eq!(count(&f, "stalled after the faults were repaired"), 3);
        o.history.push(at(7, Event::Ack { value: "p1.2:3".into(), partition: 0, offset: 10 }));
        o.history.push(at(8, Event::Read { consumer: 0, partition: 0, offset: 2, value: "b:0".into() }));
        o.history.push(at(9, Event::Committed { asked: 9, partition: 0, offset: 3 }));
        assert_eq!(count(&check(&o), "stalled after the faults were repaired"), 0);
    }

    #[test]
    fn committed_offsets_moving_back_are_found() {
        let mut o = healthy();
        o.history.extend([
            at(10, Event::Commit { consumer: 1, partition: 0, offset: 50 }),
            at(20, Event::Committed { asked: 15, partition: 0, offset: 50 }),
            at(30, Event::Committed { asked: 25, partition: 0, offset: 60 }),
        ]);
        assert_eq!(count(&check(&o), "committed offsets moved back"), 0);
        o.history.push(at(40, Event::Committed { asked: 35, partition: 0, offset: 55 }));
        assert_eq!(count(&check(&o), "committed offsets moved back"), 1);
        // An acknowledged commit, then an OffsetFetch asked afterwards
        // that does not see it.
        let mut o = healthy();
        o.history.extend([
            at(10, Event::Commit { consumer: 1, partition: 0, offset: 50 }),
            at(12, Event::Committed { asked: 11, partition: 0, offset: 40 }),
        ]);
        assert_eq!(count(&check(&o), "committed offsets moved back"), 1);
        // Asked before the commit was acknowledged (or in the same
        // millisecond, when the order is unknown): either answer is fine.
        for asked in [9, 10] {
            let mut o = healthy();
            o.history.extend([
                at(10, Event::Commit { consumer: 1, partition: 0, offset: 50 }),
                at(12, Event::Committed { asked, partition: 0, offset: 40 }),
            ]);
            assert_eq!(count(&check(&o), "committed offsets moved back"), 0);
        }
    }
}
