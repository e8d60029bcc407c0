//! The public [`ConsumerGroups`] handle: group lookup, locking, lifecycle and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::group::{ConsumerGroup, Ctx};
use super::heartbeat::validate_request;
use super::stored::StoredConsumerGroup;
use super::timer::{TimerKey, TimerKind, Timers};
use super::{
    ConsumerGroupConfig, ConsumerGroupDescription, ConsumerGroupListing, ConsumerHeartbeat, ConsumerHeartbeatResponse,
    TopicMetadataSource,
};
use crate::group::GroupError;
use crate::group::timer::{self, TimerEvent, TimerOwner};

type SharedGroup = Arc<Mutex<ConsumerGroup>>;

/// State shared between the handle and the timer task.
pub(super) struct Inner {
    config: ConsumerGroupConfig,
    source: Arc<dyn TopicMetadataSource>,
    pub(super) timers: Timers,
    /// Lock order: `groups` before any group, any group before `timers`' internal lock.
    groups: RwLock<HashMap<String, SharedGroup>>,
    shut_down: AtomicBool,
    notify: Arc<Notify>,
    /// Groups timeouts changed, for the broker to store.
    pub(crate) changes: crate::group::timer::TimerChanges,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("groups", &self.groups.read().len())
            .field("shut_down", &self.is_shut_down())
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(super) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { config: &self.config, timers: &self.timers, source: self.source.as_ref() }
    }

    fn group(&self, group_id: &str) -> Option<SharedGroup> {
        self.groups.read().get(group_id).cloned()
    }

    fn group_or_create(&self, group_id: &str) -> Result<SharedGroup, GroupError> {
        let mut groups = self.groups.write();
        // Checked under the map lock so no group is created after shutdown drained the map.
        if self.is_shut_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        Ok(groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(ConsumerGroup::new(group_id))))
            .clone())
    }

    /// Drops a group that a failed join created, so errors leave nothing behind.
    fn drop_if_unborn(&self, group_id: &str) {
        let mut groups = self.groups.write();
        let Some(shared) = groups.get(group_id).cloned() else { return };
        let mut group = shared.lock();
        if group.members.is_empty() && group.group_epoch == 0 {
            group.dead = true;
            groups.remove(group_id);
        }
    }
}

impl TimerOwner for Inner {
    type Kind = TimerKind;

    fn timers(&self) -> &Timers {
        &self.timers
    }

    fn is_shut_down(&self) -> bool {
        Inner::is_shut_down(self)
    }

    /// Dispatches a due timeout to its group. Stale keys are ignored by the group handlers.
    fn fire(&self, key: TimerKey, event: TimerEvent<TimerKind>) {
        let Some(group) = self.group(&event.group_id) else { return };
        let mut group = group.lock();
        let ctx = self.ctx();
        match event.kind {
            TimerKind::Session { member_id } => group.on_session_expired(key, &member_id, &ctx),
            TimerKind::Rebalance { member_id, member_epoch } => {
                group.on_rebalance_timeout(key, &member_id, member_epoch, &ctx);
            }
        }
        drop(group);
        self.changes.mark(&event.group_id);
    }
}

/// The KIP-848 consumer-group coordinator. See the [module documentation](super).
///
/// Create it inside a Tokio runtime; it owns one background timer task, stopped by
/// [`ConsumerGroups::shutdown`] or when the coordinator is dropped. Share it behind an `Arc`;
/// every method takes `&self` and none blocks.
#[derive(Debug)]
pub struct ConsumerGroups {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl ConsumerGroups {
    /// Creates a coordinator over `source` and starts its timer task.
    ///
    /// # Panics
    ///
    /// Panics if called outside a Tokio runtime (like [`tokio::spawn`]).
    pub fn new(config: ConsumerGroupConfig, source: Arc<dyn TopicMetadataSource>) -> Self {
        let notify = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            config,
            source,
            timers: Timers::new(Arc::clone(&notify)),
            groups: RwLock::new(HashMap::new()),
            shut_down: AtomicBool::new(false),
            notify: Arc::clone(&notify),
            changes: Default::default(),
        });
        let task = tokio::spawn(timer::run(Arc::downgrade(&inner), notify));
        ConsumerGroups { inner, task }
    }

    /// The configuration this coordinator runs with.
    pub fn config(&self) -> &ConsumerGroupConfig {
        &self.inner.config
    }

    /// Waits until timeouts (an expired session, the end of a join phase)
    /// changed some groups, and names them: their stored form may need
    /// writing, as a request's change is written before its answer.
    pub async fn changed_by_timeouts(&self) -> Vec<String> {
        self.inner.changes.next().await
    }

    /// ConsumerGroupHeartbeat: joins (epoch 0), heartbeats, or leaves (epoch -1 / -2).
    ///
    /// Errors: [`GroupError::InvalidRequest`], [`GroupError::UnsupportedAssignor`],
    /// [`GroupError::InvalidRegularExpression`] for malformed requests;
    /// [`GroupError::GroupIdNotFound`] for a non-joining request to an unknown group;
    /// [`GroupError::UnknownMemberId`], [`GroupError::FencedMemberEpoch`],
    /// [`GroupError::FencedInstanceId`], [`GroupError::UnreleasedInstanceId`],
    /// [`GroupError::GroupMaxSizeReached`] from the group;
    /// [`GroupError::CoordinatorNotAvailable`] after shutdown or if the group was deleted
    /// while the request waited for it (the client retries).
    ///
    /// The gateway answers INCONSISTENT_GROUP_PROTOCOL / GROUP_ID_NOT_FOUND itself when the
    /// group id belongs to a classic group.
    pub fn heartbeat(&self, request: ConsumerHeartbeat) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let inner = &self.inner;
        if inner.is_shut_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        validate_request(&request, &inner.config)?;
        let group_not_found = || GroupError::GroupIdNotFound { group_id: request.group_id.clone() };
        let shared = if request.member_epoch == 0 {
            inner.group_or_create(&request.group_id)?
        } else {
            inner.group(&request.group_id).ok_or_else(group_not_found)?
        };
        let result = {
            let mut group = shared.lock();
            if group.dead {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            group.heartbeat(&request, &inner.ctx())
        };
        if result.is_err() && request.member_epoch == 0 {
            inner.drop_if_unborn(&request.group_id);
        }
        result
    }

    /// ConsumerGroupDescribe: one result per id, in order; unknown ids are
    /// [`GroupError::GroupIdNotFound`].
    pub fn describe(&self, group_ids: &[String]) -> Vec<Result<ConsumerGroupDescription, GroupError>> {
        group_ids
            .iter()
            .map(|group_id| {
                if self.inner.is_shut_down() {
                    return Err(GroupError::CoordinatorNotAvailable);
                }
                let not_found = || GroupError::GroupIdNotFound { group_id: group_id.clone() };
                let shared = self.inner.group(group_id).ok_or_else(not_found)?;
                let group = shared.lock();
                if group.dead {
                    return Err(not_found());
                }
                Ok(group.describe(&self.inner.config))
            })
            .collect()
    }

    /// ListGroups: every consumer group with its state, sorted by group id. Their group type
    /// and protocol type is [`ConsumerGroupListing::GROUP_TYPE`].
    pub fn list(&self) -> Vec<ConsumerGroupListing> {
        let groups: Vec<SharedGroup> = self.inner.groups.read().values().cloned().collect();
        let mut listings: Vec<ConsumerGroupListing> = groups
            .iter()
            .filter_map(|shared| {
                let group = shared.lock();
                (!group.dead).then(|| ConsumerGroupListing { group_id: group.group_id.clone(), state: group.state() })
            })
            .collect();
        listings.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listings
    }

    /// Whether `group_id` is a consumer-protocol group (for the gateway's cross-check with
    /// classic groups).
    pub fn contains(&self, group_id: &str) -> bool {
        self.inner.group(group_id).is_some_and(|group| !group.lock().dead)
    }

    /// DeleteGroups: only groups without members can be deleted
    /// ([`GroupError::NonEmptyGroup`]). The caller deletes the group's committed offsets when
    /// this returns `Ok`.
    pub fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        let mut groups = self.inner.groups.write();
        if self.inner.is_shut_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let not_found = || GroupError::GroupIdNotFound { group_id: group_id.to_owned() };
        let shared = groups.get(group_id).cloned().ok_or_else(not_found)?;
        let mut group = shared.lock();
        if !group.members.is_empty() {
            return Err(GroupError::NonEmptyGroup { group_id: group_id.to_owned() });
        }
        group.abort(&self.inner.timers);
        groups.remove(group_id);
        tracing::info!(group = %group_id, "consumer group deleted");
        Ok(())
    }

    /// The hook for OffsetCommit on a consumer group (Kafka's `validateOffsetCommit`): a
    /// negative epoch (admin client, manual assignment) may commit while the group has no
    /// members; otherwise the member must exist ([`GroupError::UnknownMemberId`]) and carry
    /// its current epoch ([`GroupError::StaleMemberEpoch`]). An unknown group is
    /// [`GroupError::GroupIdNotFound`].
    pub fn validate_commit(&self, group_id: &str, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        self.with_group(group_id, |group| group.validate_commit(member_id, member_epoch))
    }

    /// The hook for OffsetFetch v9+ on a consumer group (Kafka's `validateOffsetFetch`):
    /// requests without a member id and with a negative epoch (admin clients) pass; otherwise
    /// as [`ConsumerGroups::validate_commit`] for a member.
    pub fn validate_fetch(&self, group_id: &str, member_id: Option<&str>, member_epoch: i32) -> Result<(), GroupError> {
        self.with_group(group_id, |group| match member_id {
            None if member_epoch < 0 => Ok(()),
            member_id => group.validate_member_epoch(member_id.unwrap_or_default(), member_epoch),
        })
    }

    fn with_group<T>(
        &self,
        group_id: &str,
        f: impl FnOnce(&ConsumerGroup) -> Result<T, GroupError>,
    ) -> Result<T, GroupError> {
        if self.inner.is_shut_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let not_found = || GroupError::GroupIdNotFound { group_id: group_id.to_owned() };
        let shared = self.inner.group(group_id).ok_or_else(not_found)?;
        let group = shared.lock();
        if group.dead {
            return Err(not_found());
        }
        f(&group)
    }

    /// The stored form of `group_id` (see `stored.rs`), while it exists.
    pub fn stored_form(&self, group_id: &str) -> Option<StoredConsumerGroup> {
        let shared = self.inner.group(group_id)?;
        let group = shared.lock();
        (!group.dead).then(|| group.stored_form())
    }

    /// Takes over groups from their stored form (this node just became
    /// their coordinator); groups it already holds are kept. Returns how
    /// many were restored.
    pub fn restore(&self, stored: Vec<StoredConsumerGroup>) -> usize {
        let inner = &self.inner;
        let mut groups = inner.groups.write();
        if inner.is_shut_down() {
            return 0;
        }
        let mut restored = 0;
        for s in stored {
            if groups.contains_key(s.group_id()) {
                continue;
            }
            let id = s.group_id().to_owned();
            groups.insert(id, Arc::new(Mutex::new(ConsumerGroup::restored(s, &inner.ctx()))));
            restored += 1;
        }
        restored
    }

    /// Forgets the groups `moved` names (see the classic coordinator's
    /// `unload`): their members' next heartbeat finds no group and they
    /// join again. Returns how many were dropped.
    pub fn unload(&self, moved: impl Fn(&str) -> bool) -> usize {
        let inner = &self.inner;
        let groups: Vec<SharedGroup> = inner.groups.write().extract_if(|id, _| moved(id)).map(|(_, g)| g).collect();
        for group in &groups {
            group.lock().abort(&inner.timers);
        }
        groups.len()
    }

    /// Stops the coordinator: all state is dropped, the timer task ends and every later call
    /// fails with [`GroupError::CoordinatorNotAvailable`]. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        let inner = &self.inner;
        let groups: Vec<SharedGroup> = {
            let mut groups = inner.groups.write();
            if inner.shut_down.swap(true, Ordering::AcqRel) {
                return;
            }
            groups.drain().map(|(_, group)| group).collect()
        };
        for group in groups {
            group.lock().abort(&inner.timers);
        }
        inner.timers.clear();
        inner.notify.notify_one();
        self.task.abort();
        tracing::info!("consumer group coordinator shut down");
    }

    /// Runs `f` on a group's state (tests inspect invariants and internals).
    #[cfg(test)]
    pub(super) fn inspect<T>(&self, group_id: &str, f: impl FnOnce(&ConsumerGroup) -> T) -> Option<T> {
        self.inner.group(group_id).map(|group| f(&group.lock()))
    }

    /// Number of scheduled timeouts.
    #[cfg(test)]
    pub(super) fn scheduled_timers(&self) -> usize {
        self.inner.timers.len()
    }

    #[cfg(test)]
    pub(super) fn timer_task_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for ConsumerGroups {
    fn drop(&mut self) {
        self.shutdown();
    }
}
