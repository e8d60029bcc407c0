//! Groups' state, stored beside their committed offsets (a classic group's
//! settled membership, [`crate::group::StoredGroup`]; a KIP-848 group's
//! epochs, members and assignments,
//! [`crate::group::consumer::StoredConsumerGroup`]): the broker-level
//! JoinGroup, SyncGroup, LeaveGroup and ConsumerGroupHeartbeat that
//! gateways call write it before they answer, as Kafka's coordinator writes
//! a group's records before it hands out assignments. A coordinator that takes the group over (failover,
//! leader move, restart) restores it, so the members' commits and
//! heartbeats carry on against the same generation.

use crate::broker::Broker;
use crate::group::GroupCoordinator;
use crate::group::consumer::ConsumerGroups;
use crate::group::consumer::{ConsumerHeartbeat, ConsumerHeartbeatResponse};
use crate::group::{
    GroupError, GroupRecord, JoinGroupRequest, JoinGroupResponse, LeaveGroupMemberResult, LeaveGroupRequest,
    SyncGroupRequest, SyncGroupResponse,
};

impl Broker {
    /// JoinGroup. A join that settles the group without a rebalance (a
    /// static member replacing its old id) is stored before it is
    /// answered; one that starts a rebalance stores nothing yet.
    pub async fn join_group(&self, request: JoinGroupRequest) -> Result<JoinGroupResponse, GroupError> {
        let group = request.group_id.clone();
        let response = self.groups.join_group(request).await?;
        self.store_group(&group).await?;
        Ok(response)
    }

    /// SyncGroup: a member gets its assignment once the group's settled
    /// membership is stored (each member's call finds it stored by the
    /// first, and writes nothing).
    pub async fn sync_group(&self, request: SyncGroupRequest) -> Result<SyncGroupResponse, GroupError> {
        let group = request.group_id.clone();
        let response = self.groups.sync_group(request).await?;
        self.store_group(&group).await?;
        Ok(response)
    }

    /// LeaveGroup. A group the last member left is stored Empty at its new
    /// generation; failing that is logged, not reported: the members did
    /// leave, and a coordinator restoring the older record expires them.
    pub async fn leave_group(&self, request: LeaveGroupRequest) -> Result<Vec<LeaveGroupMemberResult>, GroupError> {
        let group = request.group_id.clone();
        let results = self.groups.leave_group(request)?;
        if let Err(e) = self.store_group(&group).await {
            tracing::warn!(group, error = %e, "could not store an emptied group");
        }
        Ok(results)
    }

    /// Writes `group`'s stored form if it is settled and differs from the
    /// stored one. A failed write is COORDINATOR_NOT_AVAILABLE to the
    /// client (it finds the coordinator again and rejoins), never its bad
    /// request.
    async fn store_group(&self, group: &str) -> Result<(), GroupError> {
        let Some(stored) = self.groups.stored_form(group) else { return Ok(()) };
        self.put_group_record(group, GroupRecord::Classic(stored)).await
    }

    async fn put_group_record(&self, group: &str, record: GroupRecord) -> Result<(), GroupError> {
        self.offsets.put_group(group, Some(record), self.clock.now_ms()).await.map_err(|e| {
            tracing::warn!(group, error = %e, "could not store the group's membership");
            GroupError::CoordinatorNotAvailable
        })
    }

    /// ConsumerGroupHeartbeat (KIP-848). A heartbeat that joined or left
    /// a member, or moved the sender's epoch or assignment, stores the
    /// group (see `group/consumer/stored.rs`) before it is answered, so no
    /// member acts on an epoch a new coordinator would not know.
    pub async fn consumer_heartbeat(
        &self,
        request: ConsumerHeartbeat,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let (group, epoch) = (request.group_id.clone(), request.member_epoch);
        let response = self.consumer_groups().heartbeat(request)?;
        if epoch <= 0 || response.member_epoch != epoch || response.assignment.is_some() {
            match self.consumer_groups().stored_form(&group) {
                Some(stored) => self.put_group_record(&group, GroupRecord::Consumer(stored)).await?,
                None => {
                    if let Err(e) = self.forget_stored_group(&group).await {
                        tracing::warn!(group, error = %e, "could not forget a consumer group's stored state");
                    }
                }
            }
        }
        Ok(response)
    }

    /// Stores the groups timeouts changed (`consumer`: KIP-848 groups), as
    /// requests' changes are: a group whose members' sessions all expired
    /// is stored Empty, so a coordinator taking it over does not restore
    /// members that are gone. Failures are logged: the older record only
    /// costs a coordinator taking the group over the wait for those
    /// members' sessions to expire again.
    pub(crate) async fn store_changed_by_timeouts(&self, consumer: bool, groups: Vec<String>) {
        for group in groups {
            let stored = if consumer {
                match self.consumer_groups().stored_form(&group) {
                    Some(stored) => self.put_group_record(&group, GroupRecord::Consumer(stored)).await,
                    None => Ok(()),
                }
            } else {
                self.store_group(&group).await
            };
            if let Err(e) = stored {
                tracing::warn!(group, error = %e, "could not store a group changed by a timeout");
            }
        }
    }

    /// Restores every stored group (a single node at start coordinates
    /// them all). Returns how many were restored.
    pub(crate) fn restore_stored_groups(&self) -> usize {
        restore(&self.groups, &self.consumer_groups, self.offsets.stored_groups())
    }

    /// Deletes `group`'s stored membership (the group was deleted or its
    /// last offsets expired).
    pub(crate) async fn forget_stored_group(&self, group: &str) -> crate::error::Result<()> {
        self.offsets.put_group(group, None, self.clock.now_ms()).await
    }
}

/// Hands stored groups to their coordinators (classic or KIP-848); groups a
/// coordinator already holds are kept. Returns how many were restored.
pub(crate) fn restore(classic: &GroupCoordinator, consumer: &ConsumerGroups, records: Vec<GroupRecord>) -> usize {
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for r in records {
        match r {
            GroupRecord::Classic(g) => old.push(g),
            GroupRecord::Consumer(g) => new.push(g),
        }
    }
    classic.restore(old) + consumer.restore(new)
}
