//! Seeded fault schedules.
//!
//! A schedule is a pure function of the seed, the node count and the
//! enabled fault kinds: the same seed gives the same faults, in the same
//! order, with the same durations and the same abstract targets ("the
//! leader of partition 2", "a random node" by index). Targets that depend on
//! the cluster's state (who leads, who is the controller) are resolved when
//! the fault starts, and the resolved node is written to the history.

use std::fmt;
use std::time::Duration;

/// splitmix64: small, fast and good enough to pick faults; no dependency,
/// and its sequence for a seed never changes under us.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_F10D_C4A0_5EED)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }
}

/// Which node a fault hits, resolved when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Node with this index (0-based) in the cluster.
    Node(usize),
    /// The leader of this partition of the workload topic.
    LeaderOf(i32),
    /// The controller quorum's leader.
    Controller,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(i) => write!(f, "node #{}", i + 1),
            Target::LeaderOf(p) => write!(f, "leader of partition {p}"),
            Target::Controller => write!(f, "controller leader"),
        }
    }
}

/// One fault; each is undone (healed, resumed, restarted) when its time is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// SIGKILL, restarted afterwards.
    Kill(Target),
    /// SIGKILL, then what the kernel had not yet written out of the node's
    /// logs is lost (a power cut), restarted afterwards.
    PowerLoss(Target),
    /// The node's file system is full (every write fails with ENOSPC)
    /// until the repair frees the space.
    DiskFull(Target),
    /// SIGSTOP for longer than the lease, then SIGCONT.
    Pause(Target),
    /// The node can reach no other node and none can reach it (clients
    /// still reach it: the isolated-leader case).
    Isolate(Target),
    /// The nodes split into two sides that cannot reach each other; the
    /// first side (the minority) holds these node indexes.
    Split(Vec<usize>),
    /// Two halves that only the bridge node (the value) connects.
    Bridge(usize),
    /// Packets from the first node to the second are dropped; the other
    /// direction still flows.
    OneWay(usize, usize),
    /// Every node in turn: SIGTERM, start again, wait until it serves.
    RollingRestart,
    /// The node's wall clock steps this many seconds (forward or back),
    /// and back to true time at the repair.
    ClockJump(Target, i64),
    /// A membership change under load: the partition is reassigned to
    /// these node indexes (preferred leader first) through the admin API,
    /// and the move runs (new replicas copy, the old ones go, the leader
    /// hands over) while the workload goes on; nothing to repair.
    Move(i32, Vec<usize>),
}

impl Fault {
    /// The kind's name, as `--faults` takes it.
    #[cfg(test)]
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Fault::Kill(_) => Kind::Kill,
            Fault::PowerLoss(_) => Kind::PowerLoss,
            Fault::DiskFull(_) => Kind::DiskFull,
            Fault::Pause(_) => Kind::Pause,
            Fault::Isolate(_) => Kind::Isolate,
            Fault::Split(_) => Kind::Split,
            Fault::Bridge(_) => Kind::Bridge,
            Fault::OneWay(..) => Kind::OneWay,
            Fault::RollingRestart => Kind::Restart,
            Fault::ClockJump(..) => Kind::Clock,
            Fault::Move(..) => Kind::Move,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(t) => write!(f, "kill -9 {t}"),
            Fault::PowerLoss(t) => write!(f, "power loss on {t}"),
            Fault::DiskFull(t) => write!(f, "disk full on {t}"),
            Fault::Pause(t) => write!(f, "pause {t}"),
            Fault::Isolate(t) => write!(f, "isolate {t}"),
            Fault::Split(minority) => {
                let ids: Vec<String> = minority.iter().map(|i| format!("#{}", i + 1)).collect();
                write!(f, "split off {}", ids.join(","))
            }
            Fault::Bridge(b) => write!(f, "bridge through node #{}", b + 1),
            Fault::OneWay(a, b) => write!(f, "drop #{} -> #{}", a + 1, b + 1),
            Fault::RollingRestart => write!(f, "rolling restart"),
            Fault::ClockJump(t, s) => write!(f, "clock of {t} jumps {s:+} s"),
            Fault::Move(p, to) => {
                let ids: Vec<String> = to.iter().map(|i| format!("#{}", i + 1)).collect();
                write!(f, "move partition {p} to {}", ids.join(","))
            }
        }
    }
}

/// Fault kinds, for `--faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// kill -9 of a node, a leader or the controller leader.
    Kill,
    /// kill -9 and the loss of what was not yet written out of its logs.
    PowerLoss,
    /// A node's file system full for a while.
    DiskFull,
    /// SIGSTOP/SIGCONT longer than the lease.
    Pause,
    /// One node (often a leader) cut off from the others.
    Isolate,
    /// Majority/minority partition.
    Split,
    /// Two halves joined by one node.
    Bridge,
    /// One-way packet loss between two nodes.
    OneWay,
    /// Rolling restart of every node.
    Restart,
    /// A node's wall clock jumps forward or back (libfaketime).
    Clock,
    /// A partition reassigned to other nodes (or another preferred leader).
    Move,
}

impl Kind {
    /// Every kind.
    pub(crate) const ALL: [Kind; 11] = [
        Kind::Kill,
        Kind::PowerLoss,
        Kind::DiskFull,
        Kind::Pause,
        Kind::Isolate,
        Kind::Split,
        Kind::Bridge,
        Kind::OneWay,
        Kind::Restart,
        Kind::Clock,
        Kind::Move,
    ];
}

/// A fault and when: `quiet` of normal running first, then the fault for
/// `hold`, then its repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// Normal running before the fault starts.
    pub(crate) quiet: Duration,
    /// The fault.
    pub(crate) fault: Fault,
    /// How long the fault lasts before it is repaired.
    pub(crate) hold: Duration,
}

/// The steps for one seed, enough to fill `total` (the runner stops at
/// the end of its duration whatever is left).
pub(crate) fn plan(seed: u64, nodes: usize, partitions: i32, kinds: &[Kind], total: Duration) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut steps = Vec::new();
    let mut at = Duration::ZERO;
    if kinds.is_empty() || nodes == 0 {
        return steps;
    }
    while at < total {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let fault = fault_of(kind, &mut rng, nodes, partitions);
        // Faults that must outlast the lease to matter hold longer.
        let hold = match fault {
            Fault::Pause(_) | Fault::Isolate(_) | Fault::Split(_) | Fault::DiskFull(_) => rng.millis(3_000, 8_000),
            Fault::RollingRestart => Duration::ZERO,
            _ => rng.millis(2_000, 6_000),
        };
        let quiet = rng.millis(2_000, 5_000);
        at += quiet + hold;
        steps.push(Step { quiet, fault, hold });
    }
    steps
}

fn target(rng: &mut Rng, nodes: usize, partitions: i32) -> Target {
    match rng.below(3) {
        0 => Target::Node(rng.below(nodes as u64) as usize),
        1 => Target::LeaderOf(rng.below(partitions.max(1) as u64) as i32),
        _ => Target::Controller,
    }
}

fn fault_of(kind: Kind, rng: &mut Rng, nodes: usize, partitions: i32) -> Fault {
    match kind {
        Kind::Kill => Fault::Kill(target(rng, nodes, partitions)),
        Kind::PowerLoss => Fault::PowerLoss(target(rng, nodes, partitions)),
        Kind::DiskFull => Fault::DiskFull(target(rng, nodes, partitions)),
        Kind::Pause => Fault::Pause(target(rng, nodes, partitions)),
        Kind::Isolate => Fault::Isolate(target(rng, nodes, partitions)),
        Kind::Split => {
            // A minority: at most (n-1)/2 nodes, at least one.
            let size = 1 + rng.below(((nodes.saturating_sub(1)) / 2).max(1) as u64) as usize;
            let mut all: Vec<usize> = (0..nodes).collect();
            shuffle(rng, &mut all);
            let mut minority: Vec<usize> = all.into_iter().take(size).collect();
            minority.sort_unstable();
            Fault::Split(minority)
        }
        Kind::Bridge => Fault::Bridge(rng.below(nodes as u64) as usize),
        Kind::OneWay => {
            let a = rng.below(nodes as u64) as usize;
            let b = (a + 1 + rng.below(nodes.saturating_sub(1).max(1) as u64) as usize) % nodes;
            Fault::OneWay(a, b)
        }
        Kind::Restart => Fault::RollingRestart,
        Kind::Clock => {
            // Forward by up to two hours or back by up to ten minutes,
            // at least a lease's worth either way.
            let seconds = if rng.below(2) == 0 { 5 + rng.below(7_200) as i64 } else { -(5 + rng.below(600) as i64) };
            Fault::ClockJump(target(rng, nodes, partitions), seconds)
        }
        Kind::Move => {
            // As many replicas as the workload's topic has (min(3, nodes)),
            // on a random choice of nodes in a random order: with three
            // nodes a new preferred leader, with more a real move.
            let mut all: Vec<usize> = (0..nodes).collect();
            shuffle(rng, &mut all);
            all.truncate(nodes.min(3));
            Fault::Move(rng.below(partitions.max(1) as u64) as i32, all)
        }
    }
}

fn shuffle(rng: &mut Rng, v: &mut [usize]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// The pairs of node indexes that cannot reach each other (both
/// directions unless the fault is one-way), for the network faults.
pub(crate) fn cut_pairs(fault: &Fault, nodes: usize, isolated: Option<usize>) -> Vec<(usize, usize)> {
    let mut cuts = Vec::new();
    let both = |cuts: &mut Vec<(usize, usize)>, a: usize, b: usize| {
        cuts.push((a, b));
        cuts.push((b, a));
    };
    match fault {
        Fault::Isolate(_) => {
            if let Some(x) = isolated {
                for o in (0..nodes).filter(|&o| o != x) {
                    both(&mut cuts, x, o);
                }
            }
        }
        Fault::Split(minority) => {
            for &a in minority {
                for b in (0..nodes).filter(|b| !minority.contains(b)) {
                    both(&mut cuts, a, b);
                }
            }
        }
        Fault::Bridge(bridge) => {
            // The others split into two halves around the bridge node,
            // which still reaches everyone.
            let others: Vec<usize> = (0..nodes).filter(|o| o != bridge).collect();
            let (left, right) = others.split_at(others.len() / 2);
            for &a in left {
                for &b in right {
                    both(&mut cuts, a, b);
                }
            }
        }
        Fault::OneWay(a, b) => cuts.push((*a, *b)),
        Fault::Kill(_)
        | Fault::PowerLoss(_)
        | Fault::DiskFull(_)
        | Fault::Pause(_)
        | Fault::RollingRestart
        | Fault::ClockJump(..)
        | Fault::Move(..) => {}
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule() {
        let a = plan(7, 3, 6, &Kind::ALL, Duration::from_secs(120));
        let b = plan(7, 3, 6, &Kind::ALL, Duration::from_secs(120));
        assert_eq!(a, b);
        assert_ne!(a, plan(8, 3, 6, &Kind::ALL, Duration::from_secs(120)));
        let total: Duration = a.iter().map(|s| s.quiet + s.hold).sum();
        assert!(total >= Duration::from_secs(120));
    }

    #[test]
    fn only_enabled_kinds_are_planned() {
        let steps = plan(3, 5, 4, &[Kind::Pause, Kind::OneWay], Duration::from_secs(300));
        assert!(steps.iter().all(|s| matches!(s.fault.kind(), Kind::Pause | Kind::OneWay)));
        assert!(steps.iter().any(|s| s.fault.kind() == Kind::Pause));
    }

    #[test]
    fn a_split_cuts_off_a_minority_only() {
        for seed in 0..50 {
            for s in plan(seed, 5, 3, &[Kind::Split], Duration::from_secs(60)) {
                let Fault::Split(minority) = &s.fault else { unreachable!() };
                assert!(!minority.is_empty() && minority.len() <= 2, "{minority:?}");
                let cuts = cut_pairs(&s.fault, 5, None);
                assert_eq!(cuts.len(), 2 * minority.len() * (5 - minority.len()));
            }
        }
    }

    #[test]
    fn a_bridge_node_reaches_everyone_and_the_halves_do_not_meet() {
        let cuts = cut_pairs(&Fault::Bridge(1), 3, None);
        assert_eq!(cuts, vec![(0, 2), (2, 0)]);
        let cuts = cut_pairs(&Fault::Bridge(0), 5, None);
        assert!(cuts.iter().all(|&(a, b)| a != 0 && b != 0));
        assert_eq!(cuts.len(), 8);
    }

    #[test]
    fn clock_jumps_go_both_ways_by_more_than_a_lease() {
        let jumps: Vec<i64> = (0..40)
            .flat_map(|seed| plan(seed, 3, 3, &[Kind::Clock], Duration::from_secs(30)))
            .map(|s| match s.fault {
                Fault::ClockJump(_, j) => j,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(jumps.iter().all(|j| j.abs() >= 5 && (-605..=7_205).contains(j)), "{jumps:?}");
        assert!(jumps.iter().any(|j| *j > 0) && jumps.iter().any(|j| *j < 0));
    }

    #[test]
    fn one_way_drops_never_pick_the_same_node_twice() {
        for seed in 0..100 {
            for s in plan(seed, 3, 3, &[Kind::OneWay], Duration::from_secs(30)) {
                let Fault::OneWay(a, b) = s.fault else { unreachable!() };
                assert_ne!(a, b);
                assert!(a < 3 && b < 3);
            }
        }
    }

    #[test]
    fn moves_name_as_many_distinct_nodes_as_the_topic_has_replicas() {
        for (nodes, seed) in [3usize, 5].into_iter().flat_map(|n| (0..40).map(move |s| (n, s))) {
            for s in plan(seed, nodes, 4, &[Kind::Move], Duration::from_secs(30)) {
                let Fault::Move(p, to) = &s.fault else { unreachable!() };
                assert!((0..4).contains(p));
                let mut sorted = to.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!((to.len(), sorted.len()), (3, 3), "{to:?}");
                assert!(to.iter().all(|i| *i < nodes));
            }
        }
    }
}
