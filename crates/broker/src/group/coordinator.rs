//! The public [`GroupCoordinator`] handle: group lookup, locking, lifecycle and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::state::{Ctx, Group};
use super::stored::StoredGroup;
use super::timer::{self, TimerEvent, TimerKey, TimerKind, TimerOwner, Timers};
use super::{
    GroupConfig, GroupDescription, GroupError, GroupListing, GroupState, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupMemberResult, LeaveGroupRequest, PendingResponse, SyncGroupRequest, SyncGroupResponse,
};

type SharedGroup = Arc<Mutex<Group>>;

/// State shared between the handle and the timer task.
#[derive(Debug)]
pub(crate) struct Inner {
    config: GroupConfig,
    pub(crate) timers: Timers<TimerKind>,
    /// Lock order: `groups` before any group, any group before `timers`' internal lock.
    groups: RwLock<HashMap<String, SharedGroup>>,
    shut_down: AtomicBool,
    notify: Arc<Notify>,
    /// Groups timeouts changed, for the broker to store.
    pub(crate) changes: super::timer::TimerChanges,
}

impl Inner {
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { config: &self.config, timers: &self.timers }
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
        Ok(groups.entry(group_id.to_owned()).or_insert_with(|| Arc::new(Mutex::new(Group::new(group_id)))).clone())
    }
}

impl TimerOwner for Inner {
    type Kind = TimerKind;

    fn timers(&self) -> &Timers<TimerKind> {
        &self.timers
    }

    fn is_shut_down(&self) -> bool {
        Inner::is_shut_down(self)
    }

    /// Dispatches a due timeout to its group. Stale keys are ignored by the handlers.
    fn fire(&self, key: TimerKey, event: TimerEvent<TimerKind>) {
        let Some(group) = self.group(&event.group_id) else {
            return;
        };
        let mut group = group.lock();
        let ctx = self.ctx();
        match event.kind {
            TimerKind::Session { member_id } => group.on_session_expired(key, &member_id, &ctx),
            TimerKind::Join => {
                if group.join_timer.map(|(current, _)| current) == Some(key) {
                    group.on_join_timer(&ctx);
                }
            }
            TimerKind::PendingSync => group.on_pending_sync_expired(key, &ctx),
        }
        drop(group);
        self.changes.mark(&event.group_id);
    }
}

/// The consumer-group coordinator: membership, rebalances and assignment distribution for
/// every group of this broker. See the [module documentation](super) for the design.
///
/// Create it inside a Tokio runtime; it owns one background timer task, stopped by
/// [`GroupCoordinator::shutdown`] or when the coordinator is dropped. Share it behind an
/// `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct GroupCoordinator {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl GroupCoordinator {
    /// Creates a coordinator and starts its timer task.
    ///
    /// # Panics
    ///
    /// Panics if called outside a Tokio runtime (like [`tokio::spawn`]).
    pub fn new(config: GroupConfig) -> Self {
        let notify = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            config,
            timers: Timers::new(Arc::clone(&notify)),
            groups: RwLock::new(HashMap::new()),
            shut_down: AtomicBool::new(false),
            notify: Arc::clone(&notify),
            changes: Default::default(),
        });
        let task = tokio::spawn(timer::run(Arc::downgrade(&inner), notify));
        GroupCoordinator { inner, task }
    }

    /// The configuration this coordinator runs with.
    pub fn config(&self) -> &GroupConfig {
        &self.inner.config
    }

    /// Waits until timeouts (an expired session, the end of a join phase)
    /// changed some groups, and names them: their stored form may need
    /// writing, as a request's change is written before its answer.
    pub async fn changed_by_timeouts(&self) -> Vec<String> {
        self.inner.changes.next().await
    }

    /// JoinGroup. The returned future resolves when the join phase completes (or at once for
    /// errors, MEMBER_ID_REQUIRED, and rejoins that need no rebalance).
    pub fn join_group(&self, request: JoinGroupRequest) -> PendingResponse<JoinGroupResponse> {
        let inner = &self.inner;
        if inner.is_shut_down() {
            return PendingResponse::ready(Err(GroupError::CoordinatorNotAvailable));
        }
        if request.group_id.is_empty() {
            return PendingResponse::ready(Err(GroupError::InvalidGroupId));
        }
        let (min, max) = (inner.config.min_session_timeout, inner.config.max_session_timeout);
        if request.session_timeout < min || request.session_timeout > max {
            return PendingResponse::ready(Err(GroupError::InvalidSessionTimeout {
                requested: request.session_timeout,
                min,
                max,
            }));
        }
        // Only a member without an id may create a group; a known id for an unknown group
        // means the group is gone (e.g. deleted), so the member must start over.
        let group = if request.member_id.is_empty() {
            match inner.group_or_create(&request.group_id) {
                Ok(group) => group,
                Err(error) => return PendingResponse::ready(Err(error)),
            }
        } else {
            match inner.group(&request.group_id) {
                Some(group) => group,
                None => return PendingResponse::ready(Err(GroupError::unknown_member(&request.member_id))),
            }
        };
        let mut group = group.lock();
        group.join(request, &inner.ctx())
    }

    /// SyncGroup. The leader's call stores the assignment and answers every member; a
    /// follower's future resolves once the leader has synced.
    pub fn sync_group(&self, request: SyncGroupRequest) -> PendingResponse<SyncGroupResponse> {
        let inner = &self.inner;
        if inner.is_shut_down() {
            return PendingResponse::ready(Err(GroupError::CoordinatorNotAvailable));
        }
        if request.group_id.is_empty() {
            return PendingResponse::ready(Err(GroupError::InvalidGroupId));
        }
        match inner.group(&request.group_id) {
            Some(group) => group.lock().sync(request, &inner.ctx()),
            None => PendingResponse::ready(Err(GroupError::unknown_member(&request.member_id))),
        }
    }

    /// Heartbeat: restarts the member's session; tells it to rejoin while a rebalance runs.
    pub fn heartbeat(&self, request: &HeartbeatRequest) -> Result<(), GroupError> {
        self.check_available(&request.group_id)?;
        let group =
            self.inner.group(&request.group_id).ok_or_else(|| GroupError::unknown_member(&request.member_id))?;
        let mut group = group.lock();
        group.heartbeat(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
            &self.inner.ctx(),
        )
    }

    /// LeaveGroup for a batch of members; per-member results come back in request order.
    /// The outer error is for the whole request (coordinator unavailable, invalid group id).
    pub fn leave_group(&self, request: LeaveGroupRequest) -> Result<Vec<LeaveGroupMemberResult>, GroupError> {
        self.check_available(&request.group_id)?;
        let Some(group) = self.inner.group(&request.group_id) else {
            return Ok(request
                .members
                .into_iter()
                .map(|identity| LeaveGroupMemberResult {
                    result: Err(GroupError::unknown_member(&identity.member_id)),
                    member_id: identity.member_id,
                    group_instance_id: identity.group_instance_id,
                })
                .collect());
        };
        let mut group = group.lock();
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        Ok(group.leave(request.members, &self.inner.ctx()))
    }

    /// DescribeGroups for one group. An unknown group is [`GroupError::GroupIdNotFound`]
    /// (DescribeGroups v6+); older protocol versions report it as a `Dead` group instead.
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        if self.inner.is_shut_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let group =
            self.inner.group(group_id).ok_or_else(|| GroupError::GroupIdNotFound { group_id: group_id.to_owned() })?;
        let group = group.lock();
        if group.state == GroupState::Dead {
            return Err(GroupError::GroupIdNotFound { group_id: group_id.to_owned() });
        }
        Ok(group.describe())
    }

    /// ListGroups, sorted by group id. An empty `states` filter lists every group.
    pub fn list_groups(&self, states: &[GroupState]) -> Vec<GroupListing> {
        let groups: Vec<SharedGroup> = self.inner.groups.read().values().cloned().collect();
        let mut listings: Vec<GroupListing> = groups
            .iter()
            .filter_map(|group| {
                let group = group.lock();
                let wanted = states.is_empty() || states.contains(&group.state);
                (wanted && group.state != GroupState::Dead).then(|| GroupListing {
                    group_id: group.group_id.clone(),
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    state: group.state,
                })
            })
            .collect();
        listings.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listings
    }

    /// DeleteGroups: only Empty groups can be deleted. The caller (the offsets layer) is
    /// responsible for deleting the group's committed offsets when this returns `Ok`.
    pub fn delete_groups(&self, group_ids: &[String]) -> Vec<(String, Result<(), GroupError>)> {
        group_ids.iter().map(|group_id| (group_id.clone(), self.delete_group(group_id))).collect()
    }

    fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        let mut groups = self.inner.groups.write();
        if self.inner.is_shut_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let not_found = || GroupError::GroupIdNotFound { group_id: group_id.to_owned() };
        let shared = groups.get(group_id).cloned().ok_or_else(not_found)?;
        let mut group = shared.lock();
        match group.state {
            GroupState::Dead => Err(not_found()),
            GroupState::Empty => {
                // Dead tells requests that already hold the group to retry from scratch.
                group.abort(&GroupError::CoordinatorNotAvailable, &self.inner.ctx());
                groups.remove(group_id);
                tracing::info!(group = %group_id, "group deleted");
                Ok(())
            }
            _ => Err(GroupError::NonEmptyGroup { group_id: group_id.to_owned() }),
        }
    }

    /// The hook for OffsetCommit: validates `member_id` / `generation_id` exactly as Kafka's
    /// coordinator does before storing offsets.
    ///
    /// * Generation `-1` ("simple" commit by an admin client or a consumer that assigns
    ///   partitions itself) is accepted while the group is Empty. For an unknown group it
    ///   creates the group in the Empty state, as Kafka does, so it shows up in
    ///   ListGroups and can be deleted.
    /// * Otherwise the member must belong to the current generation
    ///   ([`GroupError::UnknownMemberId`], [`GroupError::FencedInstanceId`],
    ///   [`GroupError::IllegalGeneration`]); an unknown group is
    ///   [`GroupError::GroupIdNotFound`] (OffsetCommit v9+; older versions answer
    ///   ILLEGAL_GENERATION).
    /// * During CompletingRebalance the commit is refused with
    ///   [`GroupError::RebalanceInProgress`]; during PreparingRebalance it is allowed.
    ///
    /// A successful commit by a member restarts its session, as a heartbeat would.
    /// Transactional offset commits are not covered.
    pub fn validate_member(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if self.inner.is_shut_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let group = match self.inner.group(group_id) {
            Some(group) => group,
            None if generation_id < 0 => self.inner.group_or_create(group_id)?,
            None => {
                return Err(GroupError::GroupIdNotFound { group_id: group_id.to_owned() });
            }
        };
        let mut group = group.lock();
        group.validate_offset_commit(member_id, generation_id, group_instance_id, &self.inner.ctx())
    }

    /// The stored form of `group_id` while it is settled (Stable or Empty;
    /// see [`super::stored`]), for its coordinator to write beside the
    /// group's offsets.
    pub fn stored_form(&self, group_id: &str) -> Option<StoredGroup> {
        self.inner.group(group_id)?.lock().stored_form()
    }

    /// Takes over groups from their stored form (this node just became
    /// their coordinator and replayed their offsets partition); groups it
    /// already holds are kept as they are. Returns how many were restored.
    pub fn restore(&self, stored: Vec<StoredGroup>) -> usize {
        let inner = &self.inner;
        let mut groups = inner.groups.write();
        if inner.is_shut_down() {
            return 0;
        }
        let mut restored = 0;
        for s in stored {
            if groups.contains_key(&s.group_id) {
                continue;
            }
            let id = s.group_id.clone();
            groups.insert(id, Arc::new(Mutex::new(Group::restored(s, &inner.ctx()))));
            restored += 1;
        }
        restored
    }

    /// Forgets the groups `moved` names (this node no longer coordinates
    /// them: their offsets partition is led elsewhere now). Parked
    /// JoinGroup / SyncGroup calls resolve to COORDINATOR_NOT_AVAILABLE
    /// (the client finds the coordinator again), and should the node
    /// coordinate them again later, their members rejoin a fresh group
    /// instead of committing against a generation another coordinator has
    /// moved on from. Returns how many were dropped.
    pub fn unload(&self, moved: impl Fn(&str) -> bool) -> usize {
        let inner = &self.inner;
        let groups: Vec<SharedGroup> = inner.groups.write().extract_if(|id, _| moved(id)).map(|(_, g)| g).collect();
        for group in &groups {
            group.lock().abort(&GroupError::CoordinatorNotAvailable, &inner.ctx());
        }
        groups.len()
    }

    /// Stops the coordinator: every parked JoinGroup / SyncGroup resolves to
    /// [`GroupError::CoordinatorNotAvailable`], all state is dropped, the timer task ends,
    /// and every later call fails with that error. Idempotent; also run on drop.
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
            group.lock().abort(&GroupError::CoordinatorNotAvailable, &inner.ctx());
        }
        inner.timers.clear();
        inner.notify.notify_one();
        // The task would also end by itself (shutdown flag, then the `Weak` it holds), but
        // aborting makes the stop immediate even if it is parked on a far deadline.
        self.task.abort();
        tracing::info!("group coordinator shut down");
    }

    fn check_available(&self, group_id: &str) -> Result<(), GroupError> {
        if self.inner.is_shut_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn scheduled_timers(&self) -> usize {
        self.inner.timers.len()
    }

    #[cfg(test)]
    pub(crate) fn timer_task_finished(&self) -> bool {
        self.task.is_finished()
    }

    #[cfg(test)]
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }
}

impl Drop for GroupCoordinator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
