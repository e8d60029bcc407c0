//! Plain request / response types of the group coordinator API.
//!
//! Nothing here knows a wire format: gateways decode their protocol into these structs and
//! encode the answers back. Member metadata and assignments stay opaque [`Bytes`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::GroupError;

/// The state of a consumer group (Kafka's classic group state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still have committed offsets elsewhere.
    Empty,
    /// A rebalance started; the coordinator waits for members to (re)join.
    PreparingRebalance,
    /// The join phase completed; the coordinator waits for the leader's assignment.
    CompletingRebalance,
    /// Every member has a generation and the leader's assignment is stored.
    Stable,
    /// The group was deleted (or the coordinator shut down) while a request held it.
    Dead,
}

impl GroupState {
    /// The state name as Kafka spells it in DescribeGroups / ListGroups.
    pub fn as_kafka_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a Kafka state name case-insensitively (ListGroups v4 `states_filter`).
    pub fn from_kafka_str(name: &str) -> Option<Self> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|state| state.as_kafka_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_kafka_str())
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinGroupRequest {
    /// The group to join.
    pub group_id: String,
    /// The member id the coordinator gave this member earlier, or empty for a new member.
    pub member_id: String,
    /// The static member id (KIP-345), if the client configured `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The client id from the request header; prefixes generated member ids.
    pub client_id: String,
    /// The client's address, reported by DescribeGroups.
    pub client_host: String,
    /// How long the member may stay silent before it is removed.
    pub session_timeout: Duration,
    /// How long the coordinator waits for the member to rejoin during a rebalance
    /// (JoinGroup v0 has none: pass the session timeout, as Kafka does).
    pub rebalance_timeout: Duration,
    /// The protocol type, e.g. `consumer`; must match the group's.
    pub protocol_type: String,
    /// Supported protocols by preference, each with the member's opaque metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets [`GroupError::MemberIdRequired`].
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): a rejoining static leader may be told to skip the assignment.
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupMember {
    /// The member id.
    pub member_id: String,
    /// The member's static instance id, if any.
    pub group_instance_id: Option<String>,
    /// The member's metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A successful JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse {
    /// The generation the member now belongs to.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The protocol selected for this generation.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader_id: String,
    /// The member id of the receiver (new members learn theirs here).
    pub member_id: String,
    /// KIP-814: the receiver is the leader but must not compute a new assignment.
    pub skip_assignment: bool,
    /// All members with their metadata for the leader; empty for followers.
    pub members: Vec<JoinGroupMember>,
}

/// A SyncGroup request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncGroupRequest {
    /// The group.
    pub group_id: String,
    /// The generation from the JoinGroup response.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+: must equal the group's protocol type when present.
    pub protocol_type: Option<String>,
    /// SyncGroup v5+: must equal the selected protocol when present.
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id; followers send none.
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResponse {
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The protocol selected for this generation.
    pub protocol_name: Option<String>,
    /// The receiver's assignment (empty if the leader assigned it nothing).
    pub assignment: Bytes,
}

/// A Heartbeat request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The group.
    pub group_id: String,
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
    /// The member's generation.
    pub generation_id: i32,
}

/// One member named by a LeaveGroup request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaveGroupMember {
    /// The member id; empty to remove a static member by instance id alone (admin removal).
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
}

/// A LeaveGroup request (v3+ batches members; older versions send one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    /// The group.
    pub group_id: String,
    /// The members leaving.
    pub members: Vec<LeaveGroupMember>,
}

/// The per-member outcome of a LeaveGroup request, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupMemberResult {
    /// The member id as named in the request.
    pub member_id: String,
    /// The instance id as named in the request.
    pub group_instance_id: Option<String>,
    /// `Ok` if the member left.
    pub result: Result<(), GroupError>,
}

/// One member in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
    /// The client id the member joined with.
    pub client_id: String,
    /// The client host the member joined from.
    pub client_host: String,
    /// Metadata for the selected protocol; empty unless the group is Stable (as in Kafka).
    pub metadata: Bytes,
    /// The member's assignment; empty unless the group is Stable (as in Kafka).
    pub assignment: Bytes,
}

/// DescribeGroups output for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The current state.
    pub state: GroupState,
    /// The protocol type, or empty if none was ever set.
    pub protocol_type: String,
    /// The selected protocol; empty unless the group is Stable (as in Kafka).
    pub protocol: String,
    /// The members in join order.
    pub members: Vec<MemberDescription>,
}

/// ListGroups output for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// The protocol type, or empty.
    pub protocol_type: String,
    /// The current state.
    pub state: GroupState,
}

type Reply<T> = Result<T, GroupError>;

/// A response that may only be available later (JoinGroup waits for the rebalance, a
/// follower's SyncGroup waits for the leader).
///
/// The request is registered with the coordinator when the method returning this value is
/// called, not when it is first polled, so requests take effect in call order. Dropping it
/// abandons the response but not the request (as when a Kafka client disconnects mid-join).
/// If the coordinator shuts down first, it resolves to [`GroupError::CoordinatorNotAvailable`].
#[derive(Debug)]
#[must_use = "the response arrives through this future"]
pub struct PendingResponse<T> {
    state: PendingState<T>,
}

#[derive(Debug)]
enum PendingState<T> {
    Ready(Reply<T>),
    Waiting(oneshot::Receiver<Reply<T>>),
    Taken,
}

// No field is ever pin-projected: the receiver is `Unpin` and the ready value is moved out.
impl<T> Unpin for PendingResponse<T> {}

impl<T> PendingResponse<T> {
    pub(crate) fn ready(reply: Reply<T>) -> Self {
        PendingResponse { state: PendingState::Ready(reply) }
    }

    pub(crate) fn waiting(receiver: oneshot::Receiver<Reply<T>>) -> Self {
        PendingResponse { state: PendingState::Waiting(receiver) }
    }

    /// Takes the response if it is already available, without waiting.
    ///
    /// Returns `None` while the coordinator has not answered yet (and after the response has
    /// been taken once).
    pub fn try_response(&mut self) -> Option<Result<T, GroupError>> {
        match std::mem::replace(&mut self.state, PendingState::Taken) {
            PendingState::Ready(reply) => Some(reply),
            PendingState::Waiting(mut receiver) => match receiver.try_recv() {
                Ok(reply) => Some(reply),
                Err(oneshot::error::TryRecvError::Closed) => Some(Err(GroupError::CoordinatorNotAvailable)),
                Err(oneshot::error::TryRecvError::Empty) => {
                    self.state = PendingState::Waiting(receiver);
                    None
                }
            },
            PendingState::Taken => None,
        }
    }
}

impl<T> Future for PendingResponse<T> {
    type Output = Result<T, GroupError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            PendingState::Waiting(receiver) => match Pin::new(receiver).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(outcome) => {
                    this.state = PendingState::Taken;
                    // A dropped sender means the coordinator went away without answering.
                    Poll::Ready(outcome.unwrap_or(Err(GroupError::CoordinatorNotAvailable)))
                }
            },
            PendingState::Ready(_) => match std::mem::replace(&mut this.state, PendingState::Taken) {
                PendingState::Ready(reply) => Poll::Ready(reply),
                _ => Poll::Ready(Err(taken_twice())),
            },
            PendingState::Taken => Poll::Ready(Err(taken_twice())),
        }
    }
}

fn taken_twice() -> GroupError {
    GroupError::UnknownServerError("response polled after it was already taken".to_owned())
}
