//! The state of one pop queue (a consumer group on one partition): what
//! was acked, what is in flight until when, what FIFO holds back.
//!
//! Offsets below `ack_base` are all acked (that is the group's progress);
//! offsets in `[ack_base, next)` are each either acked (a bit in `acked`),
//! in flight (`inflight`, possibly expired and so visible again) or held
//! back behind an earlier message of their FIFO group (`held`). Offsets at
//! or after `next` were never handed out.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// A message handed out and not yet acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InFlight {
    /// Invisible until then (ms); visible again afterwards.
    pub(crate) visible_at: i64,
    /// Deliveries so far (1 after the first).
    pub(crate) attempt: u32,
    /// Identifies this delivery; a receipt with another one is stale.
    pub(crate) seq: u64,
    /// Hash of its FIFO message group, if it has one and the queue is FIFO.
    pub(crate) group: Option<u64>,
    /// Who took it, for a connection-bound group (AMQP): a server that
    /// takes the queue over hands back only what lost holders held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) holder: Option<Holder>,
    /// The holder's name for the pop that took it (connection-bound
    /// groups): a pop whose answer never reached its consumer is taken
    /// back by that name ([`crate::Messaging::abandon_pop`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pop: Option<u64>,
}

/// The consumer side of a delivery of a connection-bound group: the node
/// its consumer is connected to and that node's messaging session (a
/// restarted node has another one, and its connections are gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub(crate) node: i32,
    pub(crate) session: u64,
}

/// Acked offsets at and above a base, one bit each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AckSet {
    base: u64,
    words: VecDeque<u64>,
}

impl AckSet {
    pub(crate) fn new(base: u64) -> Self {
        AckSet { base: base & !63, words: VecDeque::from([low_bits(base & 63)]) }
    }

    /// Lowest offset not acked.
    pub(crate) fn first_unacked(&self) -> u64 {
        match self.words.iter().position(|w| *w != u64::MAX) {
            Some(i) => self.base + 64 * i as u64 + u64::from(self.words[i].trailing_ones()),
            None => self.base + 64 * self.words.len() as u64,
        }
    }

    pub(crate) fn contains(&self, o: u64) -> bool {
        if o < self.base {
            return true;
        }
        let i = ((o - self.base) / 64) as usize;
        self.words.get(i).is_some_and(|w| w & (1 << ((o - self.base) % 64)) != 0)
    }

    pub(crate) fn insert(&mut self, o: u64) {
        if o < self.base {
            return;
        }
        let i = ((o - self.base) / 64) as usize;
        if self.words.len() <= i {
            self.words.resize(i + 1, 0);
        }
        self.words[i] |= 1 << ((o - self.base) % 64);
        while self.words.len() > 1 && self.words.front() == Some(&u64::MAX) {
            self.words.pop_front();
            self.base += 64;
        }
    }

    /// The acked offsets in `[from, to)` as half-open ranges, the first
    /// `limit` of them.
    pub(crate) fn ranges(&self, from: u64, to: u64, limit: usize) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        // Below the base everything is acked.
        if from < self.base.min(to) {
            out.push((from, self.base.min(to)));
        }
        let mut o = from.max(self.base);
        while o < to {
            let i = ((o - self.base) / 64) as usize;
            let Some(w) = self.words.get(i) else { break };
            let (bit, word_end) = ((o - self.base) % 64, self.base + 64 * (i as u64 + 1));
            if *w >> bit == 0 {
                // Nothing acked in the rest of this word.
                o = word_end;
                continue;
            }
            if w & (1 << bit) != 0 {
                let n = out.len();
                if n > 0 && out[n - 1].1 == o {
                    out[n - 1].1 += 1;
                } else if n >= limit {
                    break;
                } else {
                    out.push((o, o + 1));
                }
            }
            o += 1;
        }
        out.truncate(limit);
        out
    }

    /// Heap words in use (for memory accounting and tests).
    #[cfg(test)]
    pub(crate) fn words(&self) -> usize {
        self.words.len()
    }
}

fn low_bits(n: u64) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// One queue's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueState {
    pub(crate) next: u64,
    pub(crate) acked: AckSet,
    pub(crate) inflight: BTreeMap<u64, InFlight>,
    pub(crate) held: BTreeMap<u64, u64>,
    /// Deliveries an earlier leader made of offsets not delivered here
    /// yet (see `progress`): their next delivery counts on from there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) prior: BTreeMap<u64, u32>,
}

/// Most earlier deliveries a reopened queue remembers.
const MAX_PRIOR: usize = 100_000;

impl QueueState {
    pub(crate) fn new(start: u64) -> Self {
        QueueState {
            next: start,
            acked: AckSet::new(start),
            inflight: BTreeMap::new(),
            held: BTreeMap::new(),
            prior: BTreeMap::new(),
        }
    }

    /// A queue opened at `start` with the offsets of `acked` (ranges
    /// above it, acked on the node that led before) acked already, which
    /// popping skips, and the deliveries that node made of `delivered`
    /// (ranges with their attempt count), which the next delivery counts
    /// on from.
    pub(crate) fn opened(start: u64, acked: &[(u64, u64)], delivered: &[(u64, u64, u32)]) -> Self {
        let mut s = QueueState::new(start);
        for (a, b) in acked {
            for o in (*a).max(start)..*b {
                s.acked.insert(o);
            }
        }
        'runs: for (a, b, n) in delivered {
            for o in (*a).max(start)..*b {
                if s.prior.len() >= MAX_PRIOR {
                    break 'runs;
                }
                s.prior.insert(o, *n);
            }
        }
        s
    }

    /// The attempt number of a first delivery here of `offset`: one more
    /// than an earlier leader made, if it made any.
    pub(crate) fn first_attempt(&mut self, offset: u64) -> u32 {
        self.prior.remove(&offset).map_or(1, |n| n.saturating_add(1))
    }

    /// In-flight deliveries as runs of consecutive offsets with one attempt
    /// count, `(first, end, attempt)`, the first `limit` of them.
    pub(crate) fn delivered_runs(&self, limit: usize) -> Vec<(u64, u64, u32)> {
        let mut out: Vec<(u64, u64, u32)> = Vec::new();
        for (o, f) in &self.inflight {
            let n = out.len();
            if n > 0 && out[n - 1].1 == *o && out[n - 1].2 == f.attempt {
                out[n - 1].1 += 1;
            } else if n >= limit {
                break;
            } else {
                out.push((*o, o + 1, f.attempt));
            }
        }
        out
    }

    /// Acked offsets in `[next, end)`: skipped when popping, so not ready.
    pub(crate) fn acked_ahead(&self, end: u64) -> u64 {
        self.acked.ranges(self.next, end, usize::MAX).iter().map(|(a, b)| b - a).sum()
    }

    /// The group's progress: lowest offset not acked.
    pub(crate) fn ack_base(&self) -> u64 {
        self.acked.first_unacked().min(self.next)
    }

    /// Records an ack; `false` if `seq` does not match the current delivery.
    pub(crate) fn ack(&mut self, offset: u64, seq: u64) -> bool {
        match self.inflight.get(&offset) {
            Some(f) if f.seq == seq => {
                self.inflight.remove(&offset);
                self.acked.insert(offset);
                true
            }
            _ => false,
        }
    }

    /// Marks offsets in `[next, upto)` considered: the listed ones were
    /// delivered or held, everything else in the range is acked (filtered
    /// out).
    pub(crate) fn advance(&mut self, upto: u64) {
        for o in self.next..upto {
            if !self.inflight.contains_key(&o) && !self.held.contains_key(&o) {
                self.acked.insert(o);
            }
        }
        self.next = self.next.max(upto);
        if !self.prior.is_empty() {
            // Passed over (filtered out): never delivered here.
            let (next, held) = (self.next, &self.held);
            self.prior.retain(|o, _| *o >= next || held.contains_key(o));
        }
    }

    /// Whether a FIFO group has an unacked message before `offset`.
    pub(crate) fn group_busy(&self, group: u64, offset: u64) -> bool {
        self.inflight.range(..offset).any(|(_, f)| f.group == Some(group))
            || self.held.range(..offset).any(|(_, g)| *g == group)
    }

    /// Moves the queue to `offset` (a reset): everything before it counts
    /// as acked, nothing is in flight or held.
    /// About how many bytes it takes encoded (to bound a record of
    /// states), as [`super::service::PopEntry::weight`] does for changes.
    pub(crate) fn weight(&self) -> usize {
        128 + 96 * (self.inflight.len() + self.held.len() + self.prior.len()) + 24 * self.acked.words.len()
    }

    pub(crate) fn reset(&mut self, offset: u64) {
        *self = QueueState::new(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ack_set_matches_a_model(start in 0u64..200, acks in proptest::collection::vec(0u64..600, 0..400)) {
            let mut s = AckSet::new(start);
            let mut model: std::collections::BTreeSet<u64> = (0..start).collect();
            for a in acks {
                s.insert(a);
                model.insert(a);
                let first = (0..).find(|o| !model.contains(o)).unwrap_or(0);
                prop_assert_eq!(s.first_unacked(), first);
                for o in 0..650 {
                    prop_assert_eq!(s.contains(o), model.contains(&o), "offset {}", o);
                }
            }
            let (from, to) = (start / 2, 650);
            let want: Vec<u64> = (from..to).filter(|o| model.contains(o)).collect();
            let got: Vec<u64> = s.ranges(from, to, usize::MAX).into_iter().flat_map(|(a, b)| a..b).collect();
            prop_assert_eq!(got, want);
            for limit in [1usize, 3] {
                let some = s.ranges(from, to, limit);
                prop_assert!(some.len() <= limit);
                prop_assert_eq!(&some[..], &s.ranges(from, to, usize::MAX)[..some.len()]);
            }
        }
    }

    #[test]
    fn contiguous_acks_use_constant_memory() {
        let mut s = AckSet::new(0);
        for o in 0..1_000_000 {
            s.insert(o);
        }
        assert_eq!(s.first_unacked(), 1_000_000);
        assert!(s.words() <= 2, "{} words", s.words());
    }

    #[test]
    fn queue_progress_is_the_lowest_unacked_offset() {
        let mut q = QueueState::new(10);
        for (o, seq) in [(10, 1), (11, 2), (12, 3)] {
            q.inflight.insert(o, InFlight { visible_at: 0, attempt: 1, seq, group: None, holder: None, pop: None });
        }
        q.advance(14); // 13 filtered out
        assert_eq!(q.ack_base(), 10);
        assert!(q.ack(11, 2));
        assert!(!q.ack(12, 99), "stale receipt");
        assert_eq!(q.ack_base(), 10);
        assert!(q.ack(10, 1));
        assert_eq!(q.ack_base(), 12);
        assert!(q.ack(12, 3));
        assert_eq!(q.ack_base(), 14);
    }
}
