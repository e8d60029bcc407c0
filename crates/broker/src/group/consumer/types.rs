//! Plain request / response types of the consumer-protocol coordinator.
//!
//! Nothing here knows a wire format: the Kafka gateway decodes ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe into these structs and encodes the answers back.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

/// `member_epoch` of a heartbeat that leaves the group for good.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;

/// `member_epoch` of a heartbeat by which a static member leaves temporarily, keeping its
/// assignment for a restart within the session timeout.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Partitions of one topic, named by topic id (ConsumerGroupHeartbeat `TopicPartitions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TopicPartitions {
    /// The topic id.
    pub topic_id: Uuid,
    /// The partition indexes.
    pub partitions: Vec<i32>,
}

/// A ConsumerGroupHeartbeat request. `None` fields mean "unchanged since the last heartbeat"
/// (Kafka's null / -1 sentinels).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerHeartbeat {
    /// The group id.
    pub group_id: String,
    /// The member id. Clients of ConsumerGroupHeartbeat v1+ generate it (a UUID); a v0 client
    /// joins with an empty id and gets one generated here.
    pub member_id: String,
    /// The member's current epoch; 0 to join, -1 to leave, -2 for a static member's temporary
    /// leave.
    pub member_epoch: i32,
    /// The static instance id (`group.instance.id`), if any.
    pub instance_id: Option<String>,
    /// The rack id, if any.
    pub rack_id: Option<String>,
    /// The rebalance timeout (`max.poll.interval.ms`); required when joining.
    pub rebalance_timeout: Option<Duration>,
    /// The subscribed topic names.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// The subscribed topic regex (RE2/J syntax, matched against whole topic names); an empty
    /// string removes the regex subscription.
    pub subscribed_topic_regex: Option<String>,
    /// The server assignor the member prefers.
    pub server_assignor: Option<String>,
    /// The partitions the member owns right now; `Some(vec![])` when joining.
    pub owned_partitions: Option<Vec<TopicPartitions>>,
    /// The client id from the request header (reported by describe).
    pub client_id: String,
    /// The client's address (reported by describe).
    pub client_host: String,
    /// ConsumerGroupHeartbeat v1+: the member id must be set by the client, even when joining.
    pub member_id_required: bool,
}

/// A successful ConsumerGroupHeartbeat response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    /// The member id (generated for a v0 member that joined without one).
    pub member_id: String,
    /// The member's epoch after this heartbeat (-1 / -2 after a leave).
    pub member_epoch: i32,
    /// How often the member should heartbeat.
    pub heartbeat_interval: Duration,
    /// The member's full current assignment, when it changed or the request was a full one;
    /// `None` means "unchanged".
    pub assignment: Option<Vec<TopicPartitions>>,
}

/// The server-side assignors of the consumer protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerAssignor {
    /// `uniform`: balanced and sticky (members keep what they had where possible).
    Uniform,
    /// `range`: per topic, contiguous partition ranges over the subscribed members, so that
    /// members with identical subscriptions get the same partition numbers of every topic.
    Range,
}

impl ServerAssignor {
    /// The assignor name as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            ServerAssignor::Uniform => "uniform",
            ServerAssignor::Range => "range",
        }
    }

    /// The assignor called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [ServerAssignor::Uniform, ServerAssignor::Range].into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for ServerAssignor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of a consumer group (Kafka's `ConsumerGroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The group epoch is ahead of the target assignment epoch: the next heartbeat computes a
    /// new target assignment.
    Assigning,
    /// Some member has not reached the target assignment yet.
    Reconciling,
    /// Every member owns exactly its target assignment at the target epoch.
    Stable,
}

impl ConsumerGroupState {
    /// The state name as Kafka reports it in ConsumerGroupDescribe / ListGroups.
    pub fn as_kafka_str(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }

    /// Parses a state name case-insensitively (ListGroups `states_filter`).
    pub fn from_kafka_str(name: &str) -> Option<Self> {
        [
            ConsumerGroupState::Empty,
            ConsumerGroupState::Assigning,
            ConsumerGroupState::Reconciling,
            ConsumerGroupState::Stable,
        ]
        .into_iter()
        .find(|state| state.as_kafka_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ConsumerGroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_kafka_str())
    }
}

/// One consumer group in a ListGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupListing {
    /// The group id.
    pub group_id: String,
    /// The group's state.
    pub state: ConsumerGroupState,
}

impl ConsumerGroupListing {
    /// The group type (ListGroups v5 `group_type`) and protocol type of every group here.
    pub const GROUP_TYPE: &'static str = "consumer";
}

/// Partitions of one topic with the topic's name, as ConsumerGroupDescribe reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedTopicPartitions {
    /// The topic id.
    pub topic_id: Uuid,
    /// The topic name; empty if the topic no longer exists.
    pub topic_name: String,
    /// The partition indexes, ascending.
    pub partitions: Vec<i32>,
}

/// One member in a ConsumerGroupDescribe answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub instance_id: Option<String>,
    /// The rack id, if any.
    pub rack_id: Option<String>,
    /// The member's epoch.
    pub member_epoch: i32,
    /// The client id of the member's last heartbeat.
    pub client_id: String,
    /// The client host of the member's last heartbeat.
    pub client_host: String,
    /// The subscribed topic names, sorted.
    pub subscribed_topic_names: Vec<String>,
    /// The subscribed topic regex, if any.
    pub subscribed_topic_regex: Option<String>,
    /// The partitions currently assigned to the member.
    pub assignment: Vec<NamedTopicPartitions>,
    /// The member's target assignment.
    pub target_assignment: Vec<NamedTopicPartitions>,
}

/// A ConsumerGroupDescribe answer for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    /// The group id.
    pub group_id: String,
    /// The group state.
    pub state: ConsumerGroupState,
    /// The group epoch.
    pub group_epoch: i32,
    /// The target assignment epoch.
    pub assignment_epoch: i32,
    /// The server assignor the group uses.
    pub assignor_name: String,
    /// The members, by member id.
    pub members: Vec<ConsumerMemberDescription>,
}
