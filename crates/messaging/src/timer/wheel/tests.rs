use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const DAY: i64 = 86_400_000;
const YEAR: i64 = 365 * DAY;

fn advance(w: &mut TimingWheel<u64>, now: i64) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    w.advance(now, &mut out);
    out
}

fn sorted(mut v: Vec<(i64, u64)>) -> Vec<(i64, u64)> {
    v.sort_unstable();
    v
}

/// Runs the wheel as the timer task does: sleep until `next_deadline`, then
/// `advance`. Returns `(time fired, deadline, item)` for every entry and
/// checks that every wake-up is bounded (each one fires an entry or moves one
/// down a level).
fn drive(w: &mut TimingWheel<u64>) -> Vec<(i64, i64, u64)> {
    let bound = (w.len() + 1) * (LEVELS + 2);
    let mut now = w.now_ms;
    let mut fired = Vec::new();
    let mut wakeups = 0;
    while let Some(next) = w.next_deadline() {
        wakeups += 1;
        assert!(wakeups <= bound, "no progress: {wakeups} wake-ups, {w:?}");
        now = now.max(next);
        for (deadline, item) in advance(w, now) {
            assert!(deadline <= now, "{deadline} returned at {now}");
            fired.push((now, deadline, item));
        }
    }
    assert!(w.is_empty());
    fired
}

#[test]
fn past_deadlines_go_to_the_ready_list() {
    let mut w = TimingWheel::new(1_000, 10);
    w.insert(500, 1);
    w.insert(1_000, 2);
    w.insert(i64::MIN, 3);
    w.insert(1_001, 4);
    assert_eq!(w.len(), 4);
    assert_eq!(w.next_deadline(), Some(i64::MIN));
    // Ready entries come first, in insertion order.
    assert_eq!(advance(&mut w, 1_000), vec![(500, 1), (1_000, 2), (i64::MIN, 3)]);
    assert_eq!(w.next_deadline(), Some(1_001));
    // Deadlines between the previous and the current time of the wheel.
    assert_eq!(advance(&mut w, 1_234), vec![(1_001, 4)]);
    w.insert(1_234, 5);
    w.insert(1_230, 6);
    assert_eq!(w.next_deadline(), Some(1_230));
    assert_eq!(advance(&mut w, 1_234), vec![(1_234, 5), (1_230, 6)]);
    assert!(w.is_empty());
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn exactly_on_a_tick_and_one_tick_later() {
    let mut w = TimingWheel::new(0, 10);
    for (deadline, item) in [(10, 1), (20, 2), (11, 3), (19, 4)] {
        w.insert(deadline, item);
    }
    assert_eq!(w.next_deadline(), Some(10));
    assert_eq!(advance(&mut w, 9), vec![]);
    assert_eq!(advance(&mut w, 10), vec![(10, 1)]);
    assert_eq!(advance(&mut w, 10), vec![]);
    assert_eq!(w.next_deadline(), Some(11));
    assert_eq!(advance(&mut w, 11), vec![(11, 3)]);
    assert_eq!(advance(&mut w, 18), vec![]);
    assert_eq!(advance(&mut w, 19), vec![(19, 4)]);
    assert_eq!(w.next_deadline(), Some(20));
    assert_eq!(advance(&mut w, 29), vec![(20, 2)]);
    assert!(w.is_empty());
}

#[test]
fn advancing_backwards_is_a_no_op() {
    let mut w = TimingWheel::new(0, 10);
    w.insert(50, 1);
    assert_eq!(advance(&mut w, 100), vec![(50, 1)]);
    w.insert(150, 2);
    w.insert(40, 3);
    assert_eq!(advance(&mut w, 60), vec![]);
    assert_eq!(w.len(), 2);
    assert_eq!(advance(&mut w, 150), vec![(40, 3), (150, 2)]);
}

#[test]
fn thirty_days_ahead() {
    let start = 1_700_000_000_123;
    let deadline = start + 30 * DAY + 7;
    let mut w = TimingWheel::new(start, 10);
    w.insert(deadline, 1);
    assert!(w.next_deadline().is_some_and(|next| next > start && next <= deadline));
    assert_eq!(advance(&mut w, start + 29 * DAY), vec![]);
    assert_eq!(advance(&mut w, deadline - 1), vec![]);
    assert_eq!(w.next_deadline(), Some(deadline));
    assert_eq!(advance(&mut w, deadline), vec![(deadline, 1)]);

    let mut w = TimingWheel::new(start, 10);
    w.insert(deadline, 1);
    assert_eq!(drive(&mut w), vec![(deadline, deadline, 1)]);
}

#[test]
fn five_years_ahead_and_beyond() {
    let start = 1_700_000_000_000;
    let deadline = start + 5 * YEAR + 3;
    // At 1 ms per tick the wheel spans 2.2 years: overflow.
    let mut w = TimingWheel::new(start, 1);
    w.insert(deadline, 1);
    w.insert(start + 300 * YEAR, 2);
    w.insert(i64::MAX, 3);
    w.insert(start + YEAR, 4);
    assert_eq!(w.overflow.len(), 3);
    assert_eq!(
        drive(&mut w),
        vec![
            (start + YEAR, start + YEAR, 4),
            (deadline, deadline, 1),
            (start + 300 * YEAR, start + 300 * YEAR, 2),
            (i64::MAX, i64::MAX, 3)
        ]
    );
    // At 10 ms per tick (21.8 years) it is on the top level.
    let mut w = TimingWheel::new(start, 10);
    w.insert(deadline, 1);
    assert!(w.overflow.is_empty());
    assert_eq!(advance(&mut w, deadline - 1), vec![]);
    assert_eq!(advance(&mut w, deadline), vec![(deadline, 1)]);
    // The widest span of ticks there is.
    let mut w = TimingWheel::new(i64::MIN, 1);
    w.insert(i64::MAX, 1);
    w.insert(i64::MIN + 1, 2);
    assert_eq!(advance(&mut w, i64::MAX - 1), vec![(i64::MIN + 1, 2)]);
    assert_eq!(advance(&mut w, i64::MAX), vec![(i64::MAX, 1)]);
}

#[test]
fn large_idle_jumps_cost_nothing_per_tick() {
    // 1 ms ticks: a wheel that walked tick by tick would never finish these.
    let mut w = TimingWheel::new(0, 1);
    let deadlines = [3_600_000, 10 * DAY, YEAR, 3 * YEAR, 100 * YEAR, 2_000 * YEAR];
    for (item, &deadline) in deadlines.iter().enumerate() {
        w.insert(deadline, item as u64);
    }
    assert_eq!(advance(&mut w, 30 * DAY), vec![(3_600_000, 0), (10 * DAY, 1)]);
    let mut now = 30 * DAY;
    let mut fired = Vec::new();
    for _ in 0..10_000 {
        now += 30 * DAY;
        fired.extend(advance(&mut w, now));
    }
    assert_eq!(fired, vec![(YEAR, 2), (3 * YEAR, 3), (100 * YEAR, 4)]);
    // One jump over all the rest: returned in ascending order.
    assert_eq!(advance(&mut w, 3_000 * YEAR), vec![(2_000 * YEAR, 5)]);
    assert!(w.is_empty());
}

#[test]
fn many_entries_in_one_slot() {
    let mut w = TimingWheel::new(0, 100);
    for i in 0..10_000u64 {
        w.insert(1_000 + (i % 100) as i64, i);
    }
    assert_eq!(w.len(), 10_000);
    assert_eq!(advance(&mut w, 999).len(), 0);
    let first = advance(&mut w, 1_000);
    assert_eq!(first.len(), 100);
    assert!(first.iter().all(|&(deadline, item)| deadline == 1_000 && item % 100 == 0));
    assert_eq!(w.next_deadline(), Some(1_001));
    let second = advance(&mut w, 1_049);
    assert_eq!(second.len(), 4_900);
    assert!(second.iter().all(|&(deadline, _)| (1_001..=1_049).contains(&deadline)));
    assert_eq!(w.next_deadline(), Some(1_050));
    assert_eq!(advance(&mut w, 1_099).len(), 5_000);
    assert!(w.is_empty());
}

#[test]
fn cascading_between_levels() {
    // Deadlines around every level boundary, from an aligned and from an
    // unaligned current tick, fire exactly at their deadline.
    for (start, tick_ms, skew) in [(0, 1, 0), (-5, 1, 12_345), (7, 10, 999_999), (0, 3, 64 * 64 - 1)] {
        let mut w = TimingWheel::new(start, tick_ms);
        assert_eq!(advance(&mut w, start + skew), vec![]);
        let now = start + skew;
        let mut expected = BTreeSet::new();
        let mut item = 0;
        for level in 0..=LEVELS as u32 {
            let span = 64i64.pow(level) * tick_ms as i64;
            for k in [1, 2, 63] {
                for delta in [-1, 0, 1] {
                    let deadline = now + k * span + delta;
                    w.insert(deadline, item);
                    expected.insert((deadline, deadline, item));
                    item += 1;
                }
            }
        }
        assert_eq!(drive(&mut w).into_iter().collect::<BTreeSet<_>>(), expected);
    }

    // Coarse steps across the same boundaries.
    let mut w = TimingWheel::new(0, 1);
    let mut expected = BTreeSet::new();
    for level in 0..5 {
        for delta in [-1, 0, 1, 100] {
            let deadline = 64i64.pow(level) + delta;
            w.insert(deadline, deadline as u64);
            expected.insert(deadline);
        }
    }
    let (mut now, mut got) = (0, BTreeSet::new());
    while !w.is_empty() {
        let before = now;
        now += 7_777;
        for (deadline, _) in advance(&mut w, now) {
            assert!((deadline > before || deadline == 0) && deadline <= now);
            assert!(got.insert(deadline));
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn emptied_slots_release_their_memory() {
    let mut w = TimingWheel::new(0, 10);
    let fixed = w.heap_bytes();
    for i in 0..100_000 {
        w.insert(55, i); // level 0
        w.insert(5_000, i); // level 1
        w.insert(-1, i); // ready
    }
    assert!(w.heap_bytes() > fixed + 300_000 * 16);
    assert_eq!(advance(&mut w, 10_000).len(), 300_000);
    assert!(w.heap_bytes() <= fixed + SLOTS * KEEP_BYTES, "{} bytes", w.heap_bytes());
}

fn memory_for(span_ms: i64) -> usize {
    const N: u64 = 1_000_000;
    let start = 1_700_000_000_000;
    let mut w = TimingWheel::new(start, 10);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for item in 0..N {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        w.insert(start + 1 + (rng % span_ms as u64) as i64, item);
    }
    let bytes = w.heap_bytes();
    println!(
        "1M entries over {} s: {bytes} heap bytes ({:.1} MB, {:.1} bytes per entry)",
        span_ms / 1000,
        bytes as f64 / 1e6,
        bytes as f64 / N as f64
    );
    let mut out = Vec::with_capacity(N as usize);
    w.advance(start + span_ms, &mut out);
    assert_eq!(out.len() as u64, N);
    assert!(w.is_empty());
    bytes
}

#[test]
fn a_million_entries_stay_small() {
    assert!(memory_for(60_000) < 40_000_000);
    assert!(memory_for(30 * DAY) < 40_000_000);
}

#[derive(Debug, Clone)]
enum Op {
    Insert(i64),
    Advance(i64),
}

fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -2_000i64..2_000,
        3 => -100_000i64..10_000_000,
        2 => -DAY..40 * DAY,
        1 => 0..30 * YEAR,
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(64 * 64), Just(1 << 36)],
    ]
}

fn step() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..50,
        3 => 0i64..5_000,
        2 => 0..3 * DAY,
        1 => 0..10 * YEAR,
        1 => -1_000i64..0,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![3 => offset().prop_map(Op::Insert), 2 => step().prop_map(Op::Advance)]
}

fn tick_ms() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), 1u64..=100, Just(1_000)]
}

proptest! {
    #[test]
    fn matches_a_sorted_model(
        start in -(1i64 << 50)..(1i64 << 50),
        tick_ms in tick_ms(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let mut w = TimingWheel::new(start, tick_ms);
        let mut model = BTreeSet::new();
        let mut now = start;
        for (item, op) in (0u64..).zip(ops) {
            match op {
                Op::Insert(offset) => {
                    let deadline = now.saturating_add(offset);
                    w.insert(deadline, item);
                    model.insert((deadline, item));
                }
                Op::Advance(step) => {
                    let to = now.saturating_add(step);
                    let got = advance(&mut w, to);
                    if to < now {
                        prop_assert!(got.is_empty());
                    } else {
                        now = to;
                        let due: Vec<_> = model.iter().take_while(|&&(deadline, _)| deadline <= now).copied().collect();
                        for entry in &due {
                            model.remove(entry);
                        }
                        // Nothing early, nothing late (not even by a tick), nothing twice.
                        prop_assert_eq!(sorted(got), due);
                    }
                }
            }
            prop_assert_eq!(w.len(), model.len());
            match (w.next_deadline(), model.first()) {
                (None, None) => {}
                (Some(next), Some(&(earliest, _))) => {
                    prop_assert!(next <= earliest);
                    prop_assert!(next > now || earliest <= now);
                }
                (next, earliest) => prop_assert!(false, "next_deadline {:?}, model {:?}", next, earliest),
            }
        }
        let got = advance(&mut w, i64::MAX);
        prop_assert_eq!(sorted(got), model.into_iter().collect::<Vec<_>>());
        prop_assert!(w.is_empty());
        prop_assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn next_deadline_drives_the_wheel_exactly(
        start in -(1i64 << 50)..(1i64 << 50),
        tick_ms in tick_ms(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut w = TimingWheel::new(start, tick_ms);
        let mut inserted = BTreeSet::new();
        let mut now = start;
        for (item, op) in (0u64..).zip(ops) {
            match op {
                Op::Insert(offset) => {
                    let deadline = now.saturating_add(offset);
                    w.insert(deadline, item);
                    inserted.insert((deadline, item));
                }
                Op::Advance(step) => {
                    now = now.max(now.saturating_add(step));
                    for entry in advance(&mut w, now) {
                        prop_assert!(inserted.remove(&entry));
                    }
                }
            }
        }
        let mut fired = BTreeSet::new();
        for (at, deadline, item) in drive(&mut w) {
            // Already due: at once; otherwise exactly at the deadline.
            prop_assert_eq!(at, deadline.max(now));
            prop_assert!(fired.insert((deadline, item)));
        }
        prop_assert_eq!(fired, inserted);
    }
}
