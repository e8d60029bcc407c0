//! One consumer group's state and the bookkeeping that keeps its invariants: membership
//! indexes, partition ownership, subscription metadata, target assignment and timers.
//! The heartbeat flow itself is in `heartbeat.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use regex::Regex;
use tokio::time::Instant;
use uuid::Uuid;

use super::member::{Member, MemberState, Partitions, iter};
use super::reconcile;
use super::target::{self, MemberSpec, TopicInfo};
use super::timer::{TimerKey, TimerKind, Timers};
use super::{
    ConsumerGroupConfig, ConsumerGroupDescription, ConsumerGroupState, ConsumerMemberDescription, NamedTopicPartitions,
    ServerAssignor, TopicMetadataSource, TopicPartitions,
};
use crate::group::GroupError;

/// What group handlers need from the coordinator.
pub(super) struct Ctx<'a> {
    pub(super) config: &'a ConsumerGroupConfig,
    pub(super) timers: &'a Timers,
    pub(super) source: &'a dyn TopicMetadataSource,
}

impl Ctx<'_> {
    /// A duration setting of `group`: its own group config when set (and a
    /// positive number of milliseconds), else the coordinator's.
    fn group_duration(&self, group: &str, name: &str, default: Duration) -> Duration {
        self.source
            .group_setting(group, name)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map_or(default, Duration::from_millis)
    }

    /// How long a member of `group` may stay silent.
    pub(super) fn session_timeout(&self, group: &str) -> Duration {
        self.group_duration(group, super::SESSION_TIMEOUT_CONFIG, self.config.session_timeout)
    }

    /// The interval members of `group` are told to heartbeat at.
    pub(super) fn heartbeat_interval(&self, group: &str) -> Duration {
        self.group_duration(group, super::HEARTBEAT_INTERVAL_CONFIG, self.config.heartbeat_interval)
    }
}

/// Compiles a subscription regex the way Kafka matches it: against the whole topic name.
pub(super) fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// A regex some members subscribe to, with the topics it matched at the last refresh.
#[derive(Debug)]
struct RegexSubscription {
    refs: usize,
    /// `None` only if the pattern stopped compiling, which validation rules out.
    compiled: Option<Regex>,
    matched: BTreeSet<String>,
}

/// A consumer group. See the [module documentation](super) for its invariants.
#[derive(Debug)]
pub(super) struct ConsumerGroup {
    pub(super) group_id: String,
    pub(super) group_epoch: i32,
    /// The epoch of `target`.
    pub(super) assignment_epoch: i32,
    pub(super) members: BTreeMap<String, Member>,
    /// Instance id -> member id of the static member carrying it.
    pub(super) static_members: HashMap<String, String>,
    /// Member id -> target assignment.
    pub(super) target: HashMap<String, Partitions>,
    /// Partition -> the member that has it assigned or pending revocation.
    pub(super) owners: HashMap<(Uuid, i32), String>,
    /// Every subscribed topic that exists, as of the last refresh.
    pub(super) topics: BTreeMap<String, TopicInfo>,
    topic_refs: BTreeMap<String, usize>,
    regexes: BTreeMap<String, RegexSubscription>,
    /// Set when the group is deleted (or the coordinator shut down) while a request holds it.
    pub(super) dead: bool,
}

impl ConsumerGroup {
    pub(super) fn new(group_id: &str) -> Self {
        ConsumerGroup {
            group_id: group_id.to_owned(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            target: HashMap::new(),
            owners: HashMap::new(),
            topics: BTreeMap::new(),
            topic_refs: BTreeMap::new(),
            regexes: BTreeMap::new(),
            dead: false,
        }
    }

    /// Kafka's `ConsumerGroup.maybeUpdateGroupState`.
    pub(super) fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| !m.is_reconciled_to(self.assignment_epoch)) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// The assignor most members prefer (ties: the earlier configured), else the default.
    pub(super) fn preferred_assignor(&self, config: &ConsumerGroupConfig) -> ServerAssignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self.members.values().filter_map(|m| m.server_assignor.as_deref()) {
            *votes.entry(name).or_default() += 1;
        }
        let configured =
            if config.assignors.is_empty() { vec![ServerAssignor::Uniform] } else { config.assignors.clone() };
        let mut best: Option<(usize, ServerAssignor)> = None;
        for assignor in configured {
            let count = votes.get(assignor.name()).copied().unwrap_or(0);
            if count > 0 && best.is_none_or(|(most, _)| count > most) {
                best = Some((count, assignor));
            }
        }
        best.map_or_else(|| config.default_assignor(), |(_, assignor)| assignor)
    }

    /// Inserts or updates a member whose assignment fields are already consistent with the
    /// owner index, keeping the subscription counts and the instance-id index in step.
    pub(super) fn put_member(&mut self, member: Member) {
        if let Some(old) = self.members.get(&member.member_id) {
            let old_names = old.subscribed_topic_names.clone();
            let old_regex = old.subscribed_topic_regex.clone();
            let old_instance = old.instance_id.clone();
            self.unsubscribe(&old_names, old_regex.as_deref());
            if let Some(instance) = old_instance.filter(|i| member.instance_id.as_ref() != Some(i)) {
                self.static_members.remove(&instance);
            }
        }
        self.subscribe(&member.subscribed_topic_names, member.subscribed_topic_regex.as_deref());
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    fn subscribe(&mut self, names: &BTreeSet<String>, regex: Option<&str>) {
        for name in names {
            *self.topic_refs.entry(name.clone()).or_default() += 1;
        }
        if let Some(pattern) = regex {
            self.regexes
                .entry(pattern.to_owned())
                .or_insert_with(|| RegexSubscription {
                    refs: 0,
                    compiled: compile_regex(pattern).ok(),
                    matched: BTreeSet::new(),
                })
                .refs += 1;
        }
    }

    fn unsubscribe(&mut self, names: &BTreeSet<String>, regex: Option<&str>) {
        for name in names {
            if let Some(count) = self.topic_refs.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    self.topic_refs.remove(name);
                }
            }
        }
        if let Some(pattern) = regex
            && let Some(subscription) = self.regexes.get_mut(pattern)
        {
            subscription.refs -= 1;
            if subscription.refs == 0 {
                self.regexes.remove(pattern);
            }
        }
    }

    /// Removes a member for good (leave, session or rebalance timeout): its partitions become
    /// free, its target is dropped and the group epoch is bumped.
    pub(super) fn remove_member(&mut self, member_id: &str, reason: &str, ctx: &Ctx<'_>) {
        let Some(member) = self.detach(member_id, ctx.timers) else { return };
        self.target.remove(member_id);
        self.group_epoch += 1;
        // The subscribed topics may have shrunk; refreshing now keeps the next heartbeat from
        // bumping the epoch a second time for the same change.
        self.refresh_metadata(ctx.source);
        tracing::info!(
            group = %self.group_id,
            member = %member_id,
            instance = ?member.instance_id,
            group_epoch = self.group_epoch,
            "consumer group member removed: {reason}"
        );
    }

    /// Takes a member out of every index and cancels its timers; its target stays.
    fn detach(&mut self, member_id: &str, timers: &Timers) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        for key in [member.session_timer, member.rebalance_timer].into_iter().flatten() {
            timers.cancel(key);
        }
        for partition in member.owned() {
            if self.owners.get(&partition).is_some_and(|owner| owner == member_id) {
                self.owners.remove(&partition);
            }
        }
        if let Some(instance) = &member.instance_id
            && self.static_members.get(instance).is_some_and(|id| id == member_id)
        {
            self.static_members.remove(instance);
        }
        self.unsubscribe(&member.subscribed_topic_names, member.subscribed_topic_regex.as_deref());
        Some(member)
    }

    /// A static member rejoining under `new_id` takes over the departed member `old_id`: its
    /// subscription, assignment and target move to the new id at epoch 0, without a bump.
    pub(super) fn replace_static_member(&mut self, old_id: &str, new_id: &str, timers: &Timers) -> Option<Member> {
        let old = self.detach(old_id, timers)?;
        let target = self.target.remove(old_id);
        let mut member = Member {
            member_id: new_id.to_owned(),
            epoch: 0,
            previous_epoch: 0,
            session_timer: None,
            rebalance_timer: None,
            ..old
        };
        // Not a member any more: a leftover pending revocation would have been released.
        member.pending_revocation.clear();
        if member.state == MemberState::UnrevokedPartitions {
            member.state = MemberState::Stable;
        }
        for partition in iter(&member.assigned) {
            self.owners.insert(partition, new_id.to_owned());
        }
        if let Some(target) = target {
            self.target.insert(new_id.to_owned(), target);
        }
        self.put_member(member.clone());
        tracing::info!(group = %self.group_id, old = %old_id, new = %new_id, "static consumer group member replaced");
        Some(member)
    }

    /// Re-reads the metadata of every subscribed topic (re-resolving regexes) and reports
    /// whether the assignor's input changed.
    pub(super) fn refresh_metadata(&mut self, source: &dyn TopicMetadataSource) -> bool {
        if !self.regexes.is_empty() {
            let names = source.topic_names();
            for subscription in self.regexes.values_mut() {
                subscription.matched = match &subscription.compiled {
                    Some(regex) => names.iter().filter(|name| regex.is_match(name)).cloned().collect(),
                    None => BTreeSet::new(),
                };
            }
        }
        let wanted: BTreeSet<&String> =
            self.topic_refs.keys().chain(self.regexes.values().flat_map(|r| r.matched.iter())).collect();
        let topics: BTreeMap<String, TopicInfo> = wanted
            .into_iter()
            .filter_map(|name| source.topic(name).map(|(id, partitions)| (name.clone(), TopicInfo { id, partitions })))
            .collect();
        let changed = topics != self.topics;
        self.topics = topics;
        changed
    }

    /// The existing topics a member is subscribed to, by name or through its regex.
    fn subscribed_topics<'a>(&'a self, member: &'a Member) -> BTreeSet<&'a str> {
        let by_regex = member
            .subscribed_topic_regex
            .as_ref()
            .and_then(|pattern| self.regexes.get(pattern))
            .into_iter()
            .flat_map(|r| r.matched.iter());
        member
            .subscribed_topic_names
            .iter()
            .chain(by_regex)
            .filter(|name| self.topics.contains_key(*name))
            .map(String::as_str)
            .collect()
    }

    /// Recomputes every member's target assignment for the current group epoch.
    pub(super) fn compute_target(&mut self, config: &ConsumerGroupConfig) {
        let assignor = self.preferred_assignor(config);
        let specs: Vec<MemberSpec<'_>> = self
            .members
            .values()
            .map(|m| MemberSpec {
                member_id: &m.member_id,
                instance_id: m.instance_id.as_deref(),
                topics: self.subscribed_topics(m),
            })
            .collect();
        let target = target::compute(assignor, &specs, &self.topics, &self.target);
        self.target = target;
        self.assignment_epoch = self.group_epoch;
        tracing::debug!(
            group = %self.group_id,
            epoch = self.assignment_epoch,
            assignor = %assignor,
            "computed a new target assignment"
        );
    }

    /// Moves one member a step towards its target, keeping the owner index and the member's
    /// rebalance timeout in step. Returns whether anything changed.
    pub(super) fn reconcile(&mut self, member_id: &str, owned: Option<&[TopicPartitions]>, ctx: &Ctx<'_>) -> bool {
        let Some(member) = self.members.get(member_id) else { return false };
        let empty = Partitions::new();
        let target = self.target.get(member_id).unwrap_or(&empty);
        let owners = &self.owners;
        let owned_by_other =
            |topic: Uuid, partition: i32| owners.get(&(topic, partition)).is_some_and(|o| o != member_id);
        let Some(step) = reconcile::step(member, self.assignment_epoch, target, owned, owned_by_other) else {
            return false;
        };
        let before: BTreeSet<(Uuid, i32)> = member.owned().collect();
        let after: BTreeSet<(Uuid, i32)> = iter(&step.assigned).chain(iter(&step.pending_revocation)).collect();
        for partition in before.difference(&after) {
            self.owners.remove(partition);
        }
        for partition in after.difference(&before) {
            self.owners.insert(*partition, member_id.to_owned());
        }
        let group_id = self.group_id.clone();
        let Some(member) = self.members.get_mut(member_id) else { return false };
        member.previous_epoch = member.epoch;
        member.epoch = step.epoch;
        member.state = step.state;
        member.assigned = step.assigned;
        member.pending_revocation = step.pending_revocation;
        if let Some(key) = member.rebalance_timer.take() {
            ctx.timers.cancel(key);
        }
        if member.state == MemberState::UnrevokedPartitions {
            let kind = TimerKind::Rebalance { member_id: member_id.to_owned(), member_epoch: member.epoch };
            member.rebalance_timer =
                Some(ctx.timers.schedule(Instant::now() + member.rebalance_timeout, &group_id, kind));
        }
        true
    }

    /// Restarts a member's session timeout.
    pub(super) fn schedule_session(&mut self, member_id: &str, ctx: &Ctx<'_>) {
        let group_id = &self.group_id;
        let Some(member) = self.members.get_mut(member_id) else { return };
        if let Some(key) = member.session_timer.take() {
            ctx.timers.cancel(key);
        }
        let kind = TimerKind::Session { member_id: member_id.to_owned() };
        member.session_timer =
            Some(ctx.timers.schedule(Instant::now() + ctx.session_timeout(group_id), group_id, kind));
    }

    pub(super) fn on_session_expired(&mut self, key: TimerKey, member_id: &str, ctx: &Ctx<'_>) {
        if self.members.get(member_id).is_some_and(|m| m.session_timer == Some(key)) {
            if let Some(member) = self.members.get_mut(member_id) {
                member.session_timer = None;
            }
            self.remove_member(member_id, "session timeout expired", ctx);
        }
    }

    pub(super) fn on_rebalance_timeout(&mut self, key: TimerKey, member_id: &str, epoch: i32, ctx: &Ctx<'_>) {
        let Some(member) = self.members.get_mut(member_id) else { return };
        if member.rebalance_timer != Some(key) {
            return;
        }
        member.rebalance_timer = None;
        if member.epoch == epoch {
            self.remove_member(member_id, "partitions not revoked within the rebalance timeout", ctx);
        }
    }

    /// Cancels every timer and marks the group dead (deletion, shutdown).
    pub(super) fn abort(&mut self, timers: &Timers) {
        for member in self.members.values_mut() {
            for key in [member.session_timer.take(), member.rebalance_timer.take()].into_iter().flatten() {
                timers.cancel(key);
            }
        }
        self.dead = true;
    }

    /// OffsetCommit validation (Kafka's `ConsumerGroup.validateOffsetCommit`).
    pub(super) fn validate_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        self.validate_member_epoch(member_id, member_epoch)
    }

    pub(super) fn validate_member_epoch(&self, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        let member = self.members.get(member_id).ok_or_else(|| GroupError::unknown_member(member_id))?;
        if member.epoch != member_epoch {
            return Err(GroupError::StaleMemberEpoch {
                member_id: member_id.to_owned(),
                received: member_epoch,
                current: member.epoch,
            });
        }
        Ok(())
    }

    pub(super) fn describe(&self, config: &ConsumerGroupConfig) -> ConsumerGroupDescription {
        let names: HashMap<Uuid, &str> = self.topics.iter().map(|(name, info)| (info.id, name.as_str())).collect();
        let named = |partitions: &Partitions| -> Vec<NamedTopicPartitions> {
            partitions
                .iter()
                .map(|(topic, set)| NamedTopicPartitions {
                    topic_id: *topic,
                    topic_name: names.get(topic).map(|n| (*n).to_owned()).unwrap_or_default(),
                    partitions: set.iter().copied().collect(),
                })
                .collect()
        };
        let empty = Partitions::new();
        ConsumerGroupDescription {
            group_id: self.group_id.clone(),
            state: self.state(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: self.preferred_assignor(config).name().to_owned(),
            members: self
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                    assignment: named(&m.assigned),
                    target_assignment: named(self.target.get(&m.member_id).unwrap_or(&empty)),
                })
                .collect(),
        }
    }

    /// Checks every invariant of the module documentation; tests call it after each step.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let mut owners: HashMap<(Uuid, i32), String> = HashMap::new();
        for (id, member) in &self.members {
            if id != &member.member_id {
                return Err(format!("member {id} is stored under another id"));
            }
            for partition in member.owned() {
                if let Some(other) = owners.insert(partition, id.clone()) {
                    return Err(format!("partition {partition:?} owned by both {other} and {id}"));
                }
            }
            if !member.pending_revocation.is_empty() && member.state != MemberState::UnrevokedPartitions {
                return Err(format!("member {id} has pending revocations in state {:?}", member.state));
            }
            if member.epoch > self.assignment_epoch {
                return Err(format!("member {id} epoch {} is ahead of the assignment", member.epoch));
            }
            if member.session_timer.is_none() {
                return Err(format!("member {id} has no session timeout"));
            }
            if let Some(instance) = &member.instance_id
                && self.static_members.get(instance) != Some(id)
            {
                return Err(format!("instance {instance} of {id} is not indexed"));
            }
        }
        if owners != self.owners {
            return Err(format!("owner index {:?} differs from the members' {:?}", self.owners, owners));
        }
        if self.static_members.len() != self.members.values().filter(|m| m.instance_id.is_some()).count() {
            return Err("stale instance ids in the index".to_owned());
        }
        if self.assignment_epoch > self.group_epoch {
            return Err("assignment epoch ahead of the group epoch".to_owned());
        }
        let mut refs: BTreeMap<String, usize> = BTreeMap::new();
        for member in self.members.values() {
            for name in &member.subscribed_topic_names {
                *refs.entry(name.clone()).or_default() += 1;
            }
        }
        if refs != self.topic_refs {
            return Err("topic reference counts are off".to_owned());
        }
        Ok(())
    }
}
