//! Randomized scenarios: joins, leaves, static leaves and returns, heartbeats that do or do
//! not acknowledge revocations, clock jumps (session and rebalance expiries) and partition
//! additions. After every step: the group invariants hold, no partition is consumed by two
//! live clients, and every client consumes only what the coordinator counts as its own. At
//! the end the group converges to a complete (and, where it can be, balanced) assignment.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const SLOTS: usize = 5;
const TOPICS: [&str; 2] = ["a", "b"];

#[derive(Debug, Clone)]
enum Action {
    Join(usize),
    /// Heartbeat; `true` if the client first finishes revoking what it was asked to.
    Heartbeat(usize, bool),
    Leave(usize),
    Advance(u64),
    AddPartition(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (0..SLOTS).prop_map(Action::Join),
        8 => (0..SLOTS, any::<bool>()).prop_map(|(slot, ack)| Action::Heartbeat(slot, ack)),
        1 => (0..SLOTS).prop_map(Action::Leave),
        2 => (1..25u64).prop_map(Action::Advance),
        1 => (0..TOPICS.len()).prop_map(Action::AddPartition),
    ]
}

/// One simulated consumer process in a slot. Even slots are static members.
#[derive(Debug, Default)]
struct Sim {
    member_id: String,
    epoch: i32,
    active: bool,
    generation: u32,
    /// Partitions it is consuming, including those it was asked to revoke but has not yet.
    consuming: BTreeSet<Tp>,
    to_revoke: BTreeSet<Tp>,
}

struct Scenario {
    c: ConsumerGroups,
    topics: Arc<Topics>,
    sims: Vec<Sim>,
    heterogeneous: bool,
    assignor: &'static str,
}

impl Scenario {
    fn instance(slot: usize) -> Option<String> {
        slot.is_multiple_of(2).then(|| format!("instance-{slot}"))
    }

    fn subscription(&self, slot: usize) -> Vec<&'static str> {
        if self.heterogeneous && slot % 3 == 1 { vec!["a"] } else { TOPICS.to_vec() }
    }

    fn apply(sim: &mut Sim, response: &ConsumerHeartbeatResponse) {
        sim.epoch = response.member_epoch;
        if let Some(assignment) = &response.assignment {
            let assigned = flatten(assignment);
            sim.to_revoke = sim.consuming.difference(&assigned).copied().collect();
            sim.consuming = assigned.union(&sim.to_revoke).copied().collect();
        }
    }

    fn join(&mut self, slot: usize) {
        if self.sims[slot].active {
            return;
        }
        let sim = &mut self.sims[slot];
        sim.generation += 1;
        let member_id = format!("m{slot}-{}", sim.generation);
        let request = ConsumerHeartbeat {
            instance_id: Scenario::instance(slot),
            server_assignor: Some(self.assignor.to_owned()),
            ..join_req(&member_id, &self.subscription(slot))
        };
        match self.c.heartbeat(request) {
            Ok(response) => {
                let sim = &mut self.sims[slot];
                *sim = Sim { member_id, active: true, generation: sim.generation, ..Sim::default() };
                Scenario::apply(sim, &response);
            }
            Err(error) => panic!("join of slot {slot} failed: {error}"),
        }
    }

    fn heartbeat(&mut self, slot: usize, ack: bool) {
        let sim = &mut self.sims[slot];
        if !sim.active {
            return;
        }
        if ack {
            sim.consuming = sim.consuming.difference(&sim.to_revoke).copied().collect();
            sim.to_revoke.clear();
        }
        let request = ConsumerHeartbeat {
            instance_id: Scenario::instance(slot),
            ..hb_req(&sim.member_id, sim.epoch, Some(unflatten(&sim.consuming)))
        };
        match self.c.heartbeat(request) {
            Ok(response) => Scenario::apply(sim, &response),
            Err(GroupError::UnknownMemberId { .. }) => Scenario::drop_out(sim),
            Err(error) => panic!("heartbeat of slot {slot} failed: {error}"),
        }
    }

    fn leave(&mut self, slot: usize) {
        let sim = &mut self.sims[slot];
        if !sim.active {
            return;
        }
        let epoch = if slot.is_multiple_of(2) { -2 } else { -1 };
        let request =
            ConsumerHeartbeat { instance_id: Scenario::instance(slot), ..hb_req(&sim.member_id, epoch, None) };
        let response = self.c.heartbeat(request).expect("leave");
        assert_eq!(response.member_epoch, epoch);
        Scenario::drop_out(sim);
    }

    fn drop_out(sim: &mut Sim) {
        sim.active = false;
        sim.consuming.clear();
        sim.to_revoke.clear();
    }

    /// Members the coordinator removed (session / rebalance timeout) stop consuming: they are
    /// zombies from then on, which the protocol deliberately tolerates.
    fn reap(&mut self) {
        for sim in self.sims.iter_mut().filter(|s| s.active) {
            let known = self.c.inspect(GROUP, |g| g.members.contains_key(&sim.member_id)).unwrap_or(false);
            if !known {
                Scenario::drop_out(sim);
            }
        }
    }

    fn check(&self) {
        check(&self.c);
        let mut seen: BTreeMap<Tp, &str> = BTreeMap::new();
        for sim in self.sims.iter().filter(|s| s.active) {
            for tp in &sim.consuming {
                if let Some(other) = seen.insert(*tp, &sim.member_id) {
                    panic!("{tp:?} consumed by {other} and {}", sim.member_id);
                }
            }
            let server: BTreeSet<Tp> = self
                .c
                .inspect(GROUP, |g| g.members.get(&sim.member_id).map(|m| m.owned().collect()))
                .flatten()
                .unwrap_or_default();
            assert!(
                sim.consuming.is_subset(&server),
                "{} consumes {:?} beyond {server:?}",
                sim.member_id,
                sim.consuming
            );
        }
    }

    async fn run(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Join(slot) => self.join(slot),
                Action::Heartbeat(slot, ack) => self.heartbeat(slot, ack),
                Action::Leave(slot) => self.leave(slot),
                Action::Advance(seconds) => advance(Duration::from_secs(seconds)).await,
                Action::AddPartition(topic) => {
                    let name = TOPICS[topic];
                    let count = self.topics.topic(name).map_or(0, |(_, n)| n);
                    self.topics.set_partitions(name, (count + 1).min(9));
                }
            }
            self.reap();
            self.check();
        }
        self.finish();
    }

    /// Returns departed static members, then lets everyone heartbeat (acknowledging) until
    /// the group is Stable, and checks the final assignment.
    fn finish(&mut self) {
        for slot in (0..SLOTS).step_by(2) {
            let parked = self.c.inspect(GROUP, |g| g.static_members.contains_key(&format!("instance-{slot}")));
            if parked == Some(true) && !self.sims[slot].active {
                self.join(slot);
            }
        }
        for _ in 0..10 {
            for slot in 0..SLOTS {
                self.heartbeat(slot, true);
            }
            self.check();
        }
        let active: Vec<usize> = (0..SLOTS).filter(|s| self.sims[*s].active).collect();
        if active.is_empty() {
            return;
        }
        assert_eq!(state(&self.c), ConsumerGroupState::Stable);
        let subscribed: BTreeSet<&str> = active.iter().flat_map(|s| self.subscription(*s)).collect();
        let mut expected = BTreeSet::new();
        for name in &subscribed {
            let (id, count) = self.topics.topic(name).expect("topic");
            expected.extend((0..i32::try_from(count).unwrap()).map(|p| (id, p)));
        }
        let consumed: BTreeSet<Tp> = active.iter().flat_map(|s| self.sims[*s].consuming.iter().copied()).collect();
        assert_eq!(consumed, expected, "every subscribed partition is consumed once the group is stable");
        let all_same = active.iter().all(|s| self.subscription(*s) == TOPICS);
        if all_same {
            // Uniform balances the total, range every topic.
            let per_member = |topic: Option<Uuid>| -> Vec<usize> {
                active
                    .iter()
                    .map(|s| self.sims[*s].consuming.iter().filter(|(t, _)| topic.is_none_or(|x| x == *t)).count())
                    .collect()
            };
            let slices: Vec<Vec<usize>> = if self.assignor == "uniform" {
                vec![per_member(None)]
            } else {
                TOPICS.iter().map(|name| per_member(Some(self.topics.id(name)))).collect()
            };
            for counts in slices {
                let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                assert!(max - min <= 1, "unbalanced: {counts:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_partition_is_ever_owned_twice(
        actions in proptest::collection::vec(action(), 1..70),
        heterogeneous in any::<bool>(),
        range in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let topics = Topics::with(&[("a", 3), ("b", 4)]);
            let c = coordinator(&topics);
            let sims = (0..SLOTS).map(|_| Sim::default()).collect();
            let assignor = if range { "range" } else { "uniform" };
            let mut scenario = Scenario { c, topics, sims, heterogeneous, assignor };
            scenario.run(actions).await;
        });
    }
}
