//! Hierarchical timing wheel holding the pending entries of delayed messages.
//!
//! The broker's timer task keeps one [`TimingWheel`] of `(deadline, payload)`
//! pairs (the payload is an offset into the durable timer log), calls
//! [`TimingWheel::advance`] every few tens of milliseconds, and appends what
//! comes out to the target topics. Millions of entries may be pending, some
//! of them years ahead.
//!
//! # Design
//!
//! Time is counted in *ticks* of `tick_ms` milliseconds since `start_ms`; a
//! deadline `d` belongs to tick `floor((d - start_ms) / tick_ms)`. The wheel
//! has `LEVELS` (6) levels of 64 slots; a slot of level `l` spans `64^l` ticks,
//! so level `l` spans `64^(l+1)` ticks and the whole wheel `2^36` ticks
//! (about 2.2 years at 1 ms per tick, 21.8 years at 10 ms). As in tokio's
//! timer wheel, an entry with tick `t` is filed, relative to the current tick
//! `elapsed`, at the level of the highest 6-bit group in which `t` and
//! `elapsed` differ, in the slot given by `t`'s bits of that group. Each slot
//! is a `Vec<(deadline, item)>` (16 bytes per entry for a `u64` payload, plus
//! the usual `Vec` growth slack), and each level has a `u64` bitmap of its
//! non-empty slots.
//!
//! `advance(now)` repeatedly takes the earliest non-empty slot (found from
//! the bitmaps, lowest level first, in `O(LEVELS)`, however many empty ticks
//! lie in between), moves the current tick to the slot's start, and either
//! hands out each entry (deadline `<= now`) or files it again, which always
//! lands it on a lower level. An idle gap therefore costs nothing per elapsed
//! tick, and each entry is touched at most once per level on its way down.
//! The slot of the current tick may hold entries that are not yet due (it is
//! the only slot a tick does not settle); `advance` scans it only when the
//! minimum deadline kept for every level-0 slot says something in it is due.
//!
//! Deadlines at or before the last `now` go to a `ready` list that the next
//! `advance` returns first. Deadlines outside the wheel's current aligned
//! `2^36`-tick window go to an overflow min-heap (the only `O(log n)` insert);
//! when the wheel is otherwise empty up to the window of the earliest of them,
//! the wheel jumps to that window's start and files every overflow entry that
//! falls in it.
//!
//! # Invariants
//!
//! - Every filed entry has a tick `>= elapsed` and a deadline `> now_ms`;
//!   `elapsed == tick(now_ms)` after every `advance`.
//! - On every level but 0, each occupied slot starts strictly after
//!   `elapsed` (its index is above `elapsed`'s index at that level); on level
//!   0 the slot of `elapsed` itself may be occupied.
//! - All entries of a lower level are due before any entry of a higher level,
//!   and all filed entries before any overflow entry; so the first occupied
//!   slot found from level 0 upwards is the earliest.
//! - `level0_min[s]` is the minimum deadline in level-0 slot `s` (`i64::MAX`
//!   when empty).
//!
//! Consequently `advance(now)` returns exactly the entries with deadline
//! `<= now`, each once: never early and, within a tick, not even late.
//!
//! Emptied slots give their memory back (level-0 slots, reused every 64
//! ticks, keep up to `KEEP_BYTES` (4 KiB) each), so a burst does not pin capacity.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::mem;

/// Bits of a tick that index one level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Levels of the wheel; together they span `2^(6 * LEVELS)` ticks.
const LEVELS: usize = 6;
/// `log2` of the ticks spanned by the whole wheel.
const WHEEL_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// Capacity (in bytes) an emptied level-0 slot or the ready list may keep.
const KEEP_BYTES: usize = 4096;

/// One level: 64 slots and the bitmap of the non-empty ones.
struct Level<T> {
    occupied: u64,
    slots: [Vec<(i64, T)>; SLOTS],
}

/// An entry beyond the wheel's window, ordered for a min-heap on deadline.
struct Far<T> {
    deadline: i64,
    item: T,
}

impl<T> PartialEq for Far<T> {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}

impl<T> Eq for Far<T> {}

impl<T> PartialOrd for Far<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Far<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap, we want the earliest on top.
        other.deadline.cmp(&self.deadline)
    }
}

/// The next slot to process: `level == LEVELS` means the overflow heap.
#[derive(Debug, Clone, Copy)]
struct Expiration {
    level: usize,
    slot: usize,
    /// The tick at which the slot (or the overflow window) starts.
    tick: u64,
}

/// A hierarchical timing wheel of `(deadline_ms, item)` entries; see the
/// module documentation.
pub struct TimingWheel<T> {
    start_ms: i64,
    tick_ms: u64,
    /// The latest `now_ms` given to `advance` (initially `start_ms`).
    now_ms: i64,
    /// `tick(now_ms)`, except transiently inside `advance`.
    elapsed: u64,
    /// Entries pending anywhere: ready list, levels and overflow.
    len: usize,
    levels: Box<[Level<T>; LEVELS]>,
    level0_min: [i64; SLOTS],
    ready: Vec<(i64, T)>,
    ready_min: i64,
    overflow: BinaryHeap<Far<T>>,
}

impl<T> TimingWheel<T> {
    /// A wheel whose current time is `start_ms` and whose resolution is
    /// `tick_ms` milliseconds (0 is taken as 1).
    pub fn new(start_ms: i64, tick_ms: u64) -> Self {
        Self {
            start_ms,
            tick_ms: tick_ms.max(1),
            now_ms: start_ms,
            elapsed: 0,
            len: 0,
            levels: Box::new(std::array::from_fn(|_| Level {
                occupied: 0,
                slots: std::array::from_fn(|_| Vec::new()),
            })),
            level0_min: [i64::MAX; SLOTS],
            ready: Vec::new(),
            ready_min: i64::MAX,
            overflow: BinaryHeap::new(),
        }
    }

    /// Adds an entry due at `deadline_ms`. A deadline at or before the current
    /// time is returned by the next `advance`. `O(1)`, except `O(log n)` for
    /// deadlines beyond the wheel's window (years ahead).
    pub fn insert(&mut self, deadline_ms: i64, item: T) {
        self.len += 1;
        if deadline_ms <= self.now_ms {
            self.ready_min = self.ready_min.min(deadline_ms);
            self.ready.push((deadline_ms, item));
        } else {
            self.file(deadline_ms, item);
        }
    }

    /// Moves the wheel to `now_ms` and appends to `out` every entry with
    /// deadline `<= now_ms`, removing them: first those inserted already due,
    /// then grouped by ascending slot (unordered within a slot). A `now_ms`
    /// earlier than the wheel's current time is a no-op.
    pub fn advance(&mut self, now_ms: i64, out: &mut Vec<(i64, T)>) {
        if now_ms < self.now_ms {
            return;
        }
        self.now_ms = now_ms;
        if !self.ready.is_empty() {
            self.len -= self.ready.len();
            out.append(&mut self.ready);
            self.ready_min = i64::MAX;
            if self.ready.capacity() * mem::size_of::<(i64, T)>() > KEEP_BYTES {
                self.ready = Vec::new();
            }
        }
        let target = self.tick_of(now_ms);
        // Settle every slot that starts before the current tick, and any
        // slot above level 0 that starts at it (its entries move down).
        while let Some(exp) = self.next_expiration() {
            if exp.tick < target || (exp.tick == target && exp.level > 0) {
                self.process(exp, now_ms, out);
            } else {
                break;
            }
        }
        debug_assert!(target >= self.elapsed);
        self.elapsed = target;
        self.fire_current(now_ms, out);
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A lower bound on the earliest pending deadline, `None` when empty. It
    /// is exact when that entry was inserted already due, is in the current
    /// 64-tick block or is beyond the wheel's window; otherwise it is the
    /// start of the slot holding it (never earlier than the current time
    /// plus 1 ms). Calling `advance` at (or after) the returned time always
    /// makes progress: it returns the entry or moves it to a finer slot.
    pub fn next_deadline(&self) -> Option<i64> {
        if !self.ready.is_empty() {
            return Some(self.ready_min);
        }
        let exp = self.next_expiration()?;
        if exp.level == 0 {
            Some(self.level0_min[exp.slot])
        } else if exp.level < LEVELS {
            Some(self.tick_start_ms(exp.tick).max(self.now_ms.saturating_add(1)))
        } else {
            self.overflow.peek().map(|far| far.deadline)
        }
    }

    /// Approximate heap bytes used: the capacity of every slot, the ready list
    /// and the overflow heap, times the entry size, plus the fixed levels.
    pub fn heap_bytes(&self) -> usize {
        let slot_capacity: usize = self.levels.iter().flat_map(|level| level.slots.iter()).map(Vec::capacity).sum();
        mem::size_of::<[Level<T>; LEVELS]>()
            + (slot_capacity + self.ready.capacity()) * mem::size_of::<(i64, T)>()
            + self.overflow.capacity() * mem::size_of::<Far<T>>()
    }

    /// The tick of `ms`, which must be `>= start_ms`.
    fn tick_of(&self, ms: i64) -> u64 {
        debug_assert!(ms >= self.start_ms);
        ms.abs_diff(self.start_ms) / self.tick_ms
    }

    /// The first millisecond of `tick`, saturated at `i64::MAX`.
    fn tick_start_ms(&self, tick: u64) -> i64 {
        let ms = i128::from(self.start_ms) + i128::from(tick) * i128::from(self.tick_ms);
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    /// Files an entry with deadline `> now_ms` relative to `elapsed`.
    fn file(&mut self, deadline_ms: i64, item: T) {
        debug_assert!(deadline_ms > self.now_ms);
        let tick = self.tick_of(deadline_ms);
        let level = level_for(self.elapsed, tick);
        if level >= LEVELS {
            self.overflow.push(Far { deadline: deadline_ms, item });
            return;
        }
        let slot = slot_for(tick, level);
        let lv = &mut self.levels[level];
        lv.slots[slot].push((deadline_ms, item));
        lv.occupied |= 1 << slot;
        if level == 0 {
            let min = &mut self.level0_min[slot];
            *min = (*min).min(deadline_ms);
        }
    }

    /// The earliest non-empty slot, or the overflow window to open next.
    fn next_expiration(&self) -> Option<Expiration> {
        for (level, lv) in self.levels.iter().enumerate() {
            if lv.occupied == 0 {
                continue;
            }
            let now_slot = slot_for(self.elapsed, level) as u32;
            // Invariant: no occupied slot lies before `now_slot`, so the
            // rotation never wraps; it only keeps the index in range.
            let slot = ((lv.occupied.rotate_right(now_slot).trailing_zeros() + now_slot) as usize) % SLOTS;
            let tick = slot_start(self.elapsed, level, slot);
            debug_assert!(tick > self.elapsed || (tick == self.elapsed && level == 0), "slot behind the wheel");
            return Some(Expiration { level, slot, tick });
        }
        let far = self.overflow.peek()?;
        let window_mask = (1u64 << WHEEL_BITS) - 1;
        Some(Expiration { level: LEVELS, slot: 0, tick: self.tick_of(far.deadline) & !window_mask })
    }

    /// Empties the slot of `exp` (whose start is `<= tick(now_ms)`) after
    /// moving the current tick to its start: due entries go to `out`, the
    /// others are filed again, on a lower level.
    fn process(&mut self, exp: Expiration, now_ms: i64, out: &mut Vec<(i64, T)>) {
        debug_assert!(exp.tick >= self.elapsed);
        self.elapsed = exp.tick;
        if exp.level == LEVELS {
            let window = exp.tick >> WHEEL_BITS;
            while self.overflow.peek().is_some_and(|far| self.tick_of(far.deadline) >> WHEEL_BITS == window) {
                if let Some(Far { deadline, item }) = self.overflow.pop() {
                    self.dispatch(deadline, item, now_ms, out);
                }
            }
            if self.overflow.is_empty() && self.overflow.capacity() > 0 {
                self.overflow = BinaryHeap::new();
            }
            return;
        }
        let lv = &mut self.levels[exp.level];
        let mut entries = mem::take(&mut lv.slots[exp.slot]);
        lv.occupied &= !(1 << exp.slot);
        if exp.level == 0 {
            self.level0_min[exp.slot] = i64::MAX;
        }
        for (deadline, item) in entries.drain(..) {
            self.dispatch(deadline, item, now_ms, out);
        }
        // Entries never come back to the slot they left, so it is still empty.
        let slot = &mut self.levels[exp.level].slots[exp.slot];
        if exp.level == 0 && slot.capacity() == 0 && entries.capacity() * mem::size_of::<(i64, T)>() <= KEEP_BYTES {
            *slot = entries;
        }
    }

    fn dispatch(&mut self, deadline_ms: i64, item: T, now_ms: i64, out: &mut Vec<(i64, T)>) {
        if deadline_ms <= now_ms {
            self.len -= 1;
            out.push((deadline_ms, item));
        } else {
            self.file(deadline_ms, item);
        }
    }

    /// Hands out the due entries of the current tick's level-0 slot.
    fn fire_current(&mut self, now_ms: i64, out: &mut Vec<(i64, T)>) {
        let slot = slot_for(self.elapsed, 0);
        if self.level0_min[slot] > now_ms {
            return;
        }
        let lv = &mut self.levels[0];
        let entries = &mut lv.slots[slot];
        let before = entries.len();
        let mut min = i64::MAX;
        let mut i = 0;
        while i < entries.len() {
            if entries[i].0 <= now_ms {
                out.push(entries.swap_remove(i));
            } else {
                min = min.min(entries[i].0);
                i += 1;
            }
        }
        self.len -= before - entries.len();
        self.level0_min[slot] = min;
        let entry_bytes = mem::size_of::<(i64, T)>();
        if entries.is_empty() {
            lv.occupied &= !(1 << slot);
            if entries.capacity() * entry_bytes > KEEP_BYTES {
                *entries = Vec::new();
            }
        } else if entries.capacity() * entry_bytes > KEEP_BYTES && entries.len() * 4 < entries.capacity() {
            entries.shrink_to(entries.len() * 2);
        }
    }
}

impl<T> fmt::Debug for TimingWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimingWheel")
            .field("start_ms", &self.start_ms)
            .field("tick_ms", &self.tick_ms)
            .field("now_ms", &self.now_ms)
            .field("len", &self.len)
            .field("ready", &self.ready.len())
            .field("overflow", &self.overflow.len())
            .finish_non_exhaustive()
    }
}

/// The level at which an entry of `tick` is filed when the wheel is at
/// `elapsed` (`>= LEVELS`: beyond the wheel's window).
fn level_for(elapsed: u64, tick: u64) -> usize {
    let masked = (elapsed ^ tick) | SLOT_MASK;
    let significant = u64::BITS - 1 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

/// The slot of `tick` at `level`.
fn slot_for(tick: u64, level: usize) -> usize {
    ((tick >> (SLOT_BITS * level as u32)) & SLOT_MASK) as usize
}

/// The first tick of `slot` at `level`, in the level's window containing
/// `elapsed`.
fn slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
    let shift = SLOT_BITS * level as u32;
    let level_mask = (1u64 << (shift + SLOT_BITS)) - 1;
    (elapsed & !level_mask) + ((slot as u64) << shift)
}

impl<T> TimingWheel<T> {
    /// Every pending entry, in no particular order (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (i64, &T)> + '_ {
        let slots = self.levels.iter().flat_map(|l| l.slots.iter()).flat_map(|s| s.iter());
        slots.chain(self.ready.iter()).map(|(d, t)| (*d, t)).chain(self.overflow.iter().map(|f| (f.deadline, &f.item)))
    }
}

#[cfg(test)]
mod tests;
