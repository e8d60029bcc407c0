//! Consumer groups: offsets, the classic group protocol (Join, Heartbeat,
//! Leave, Sync), group administration and the KIP-848 consumer protocol.

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{INT32, Message, STRING, Ty, array, field, message, structure};

/// `OffsetCommitRequest.json` (v1's `CommitTimestamp` is gone with v1).
pub(crate) static OFFSET_COMMIT: Message = message(
    "OffsetCommitRequest",
    "2-9",
    "8+",
    &[
        field("GroupId", "0+", Ty::String),
        field("GenerationIdOrMemberEpoch", "1+", Ty::Int32),
        field("MemberId", "1+", Ty::String),
        field("GroupInstanceId", "7+", Ty::String).nullable("7+"),
        field("RetentionTimeMs", "2-4", Ty::Int64),
        field("Topics", "0+", array::<OffsetCommitRequestTopic>(&OFFSET_COMMIT_TOPIC)),
    ],
);

static OFFSET_COMMIT_TOPIC: Ty = structure(
    "OffsetCommitRequestTopic",
    &[
        field("Name", "0+", Ty::String),
        field("Partitions", "0+", array::<OffsetCommitRequestPartition>(&OFFSET_COMMIT_PARTITION)),
    ],
);

static OFFSET_COMMIT_PARTITION: Ty = structure(
    "OffsetCommitRequestPartition",
    &[
        field("PartitionIndex", "0+", Ty::Int32),
        field("CommittedOffset", "0+", Ty::Int64),
        field("CommittedLeaderEpoch", "6+", Ty::Int32),
        field("CommittedMetadata", "0+", Ty::String).nullable("0+"),
    ],
);

/// `OffsetFetchRequest.json`: one group up to v7, a list of groups from v8.
pub(crate) static OFFSET_FETCH: Message = message(
    "OffsetFetchRequest",
    "1-9",
    "6+",
    &[
        field("GroupId", "0-7", Ty::String),
        field("Topics", "0-7", array::<OffsetFetchRequestTopic>(&OFFSET_FETCH_TOPIC)).nullable("2-7"),
        field("Groups", "8+", array::<OffsetFetchRequestGroup>(&OFFSET_FETCH_GROUP)),
        field("RequireStable", "7+", Ty::Bool),
    ],
);

static OFFSET_FETCH_TOPIC: Ty = structure(
    "OffsetFetchRequestTopic",
    &[field("Name", "0-7", Ty::String), field("PartitionIndexes", "0-7", array::<i32>(&INT32))],
);

static OFFSET_FETCH_GROUP: Ty = structure(
    "OffsetFetchRequestGroup",
    &[
        field("GroupId", "8+", Ty::String),
        field("MemberId", "9+", Ty::String).nullable("9+"),
        field("MemberEpoch", "9+", Ty::Int32),
        field("Topics", "8+", array::<OffsetFetchRequestTopics>(&OFFSET_FETCH_TOPICS)).nullable("8+"),
    ],
);

static OFFSET_FETCH_TOPICS: Ty = structure(
    "OffsetFetchRequestTopics",
    &[field("Name", "8+", Ty::String), field("PartitionIndexes", "8+", array::<i32>(&INT32))],
);

/// `OffsetDeleteRequest.json` (never flexible).
pub(crate) static OFFSET_DELETE: Message = message(
    "OffsetDeleteRequest",
    "0",
    "none",
    &[
        field("GroupId", "0+", Ty::String),
        field("Topics", "0+", array::<OffsetDeleteRequestTopic>(&OFFSET_DELETE_TOPIC)),
    ],
);

static OFFSET_DELETE_TOPIC: Ty = structure(
    "OffsetDeleteRequestTopic",
    &[
        field("Name", "0+", Ty::String),
        field("Partitions", "0+", array::<OffsetDeleteRequestPartition>(&OFFSET_DELETE_PARTITION)),
    ],
);

static OFFSET_DELETE_PARTITION: Ty =
    structure("OffsetDeleteRequestPartition", &[field("PartitionIndex", "0+", Ty::Int32)]);

/// `JoinGroupRequest.json`.
pub(crate) static JOIN_GROUP: Message = message(
    "JoinGroupRequest",
    "0-9",
    "6+",
    &[
        field("GroupId", "0+", Ty::String),
        field("SessionTimeoutMs", "0+", Ty::Int32),
        field("RebalanceTimeoutMs", "1+", Ty::Int32),
        field("MemberId", "0+", Ty::String),
        field("GroupInstanceId", "5+", Ty::String).nullable("5+"),
        field("ProtocolType", "0+", Ty::String),
        field("Protocols", "0+", array::<JoinGroupRequestProtocol>(&JOIN_GROUP_PROTOCOL)),
        field("Reason", "8+", Ty::String).nullable("8+"),
    ],
);

static JOIN_GROUP_PROTOCOL: Ty =
    structure("JoinGroupRequestProtocol", &[field("Name", "0+", Ty::String), field("Metadata", "0+", Ty::Bytes)]);

/// `HeartbeatRequest.json`.
pub(crate) static HEARTBEAT: Message = message(
    "HeartbeatRequest",
    "0-4",
    "4+",
    &[
        field("GroupId", "0+", Ty::String),
        field("GenerationId", "0+", Ty::Int32),
        field("MemberId", "0+", Ty::String),
        field("GroupInstanceId", "3+", Ty::String).nullable("3+"),
    ],
);

/// `LeaveGroupRequest.json`: one member up to v2, a batch from v3.
pub(crate) static LEAVE_GROUP: Message = message(
    "LeaveGroupRequest",
    "0-5",
    "4+",
    &[
        field("GroupId", "0+", Ty::String),
        field("MemberId", "0-2", Ty::String),
        field("Members", "3+", array::<MemberIdentity>(&MEMBER_IDENTITY)),
    ],
);

static MEMBER_IDENTITY: Ty = structure(
    "MemberIdentity",
    &[
        field("MemberId", "3+", Ty::String),
        field("GroupInstanceId", "3+", Ty::String).nullable("3+"),
        field("Reason", "5+", Ty::String).nullable("5+"),
    ],
);

/// `SyncGroupRequest.json`.
pub(crate) static SYNC_GROUP: Message = message(
    "SyncGroupRequest",
    "0-5",
    "4+",
    &[
        field("GroupId", "0+", Ty::String),
        field("GenerationId", "0+", Ty::Int32),
        field("MemberId", "0+", Ty::String),
        field("GroupInstanceId", "3+", Ty::String).nullable("3+"),
        field("ProtocolType", "5+", Ty::String).nullable("5+"),
        field("ProtocolName", "5+", Ty::String).nullable("5+"),
        field("Assignments", "0+", array::<SyncGroupRequestAssignment>(&SYNC_GROUP_ASSIGNMENT)),
    ],
);

static SYNC_GROUP_ASSIGNMENT: Ty = structure(
    "SyncGroupRequestAssignment",
    &[field("MemberId", "0+", Ty::String), field("Assignment", "0+", Ty::Bytes)],
);

/// `DescribeGroupsRequest.json`. v6 is v5 (new error codes).
pub(crate) static DESCRIBE_GROUPS: Message = message(
    "DescribeGroupsRequest",
    "0-6",
    "5+",
    &[field("Groups", "0+", array::<GroupId>(&STRING)), field("IncludeAuthorizedOperations", "3+", Ty::Bool)],
);

/// `ListGroupsRequest.json`.
pub(crate) static LIST_GROUPS: Message = message(
    "ListGroupsRequest",
    "0-5",
    "3+",
    &[field("StatesFilter", "4+", array::<StrBytes>(&STRING)), field("TypesFilter", "5+", array::<StrBytes>(&STRING))],
);

/// `DeleteGroupsRequest.json`.
pub(crate) static DELETE_GROUPS: Message =
    message("DeleteGroupsRequest", "0-2", "2+", &[field("GroupsNames", "0+", array::<GroupId>(&STRING))]);

/// `ConsumerGroupHeartbeatRequest.json` (KIP-848). v1 adds the regex.
pub(crate) static CONSUMER_GROUP_HEARTBEAT: Message = message(
    "ConsumerGroupHeartbeatRequest",
    "0-1",
    "0+",
    &[
        field("GroupId", "0+", Ty::String),
        field("MemberId", "0+", Ty::String),
        field("MemberEpoch", "0+", Ty::Int32),
        field("InstanceId", "0+", Ty::String).nullable("0+"),
        field("RackId", "0+", Ty::String).nullable("0+"),
        field("RebalanceTimeoutMs", "0+", Ty::Int32),
        field("SubscribedTopicNames", "0+", array::<TopicName>(&STRING)).nullable("0+"),
        field("SubscribedTopicRegex", "1+", Ty::String).nullable("1+"),
        field("ServerAssignor", "0+", Ty::String).nullable("0+"),
        field("TopicPartitions", "0+", array::<TopicPartitions>(&TOPIC_PARTITIONS)).nullable("0+"),
    ],
);

static TOPIC_PARTITIONS: Ty =
    structure("TopicPartitions", &[field("TopicId", "0+", Ty::Uuid), field("Partitions", "0+", array::<i32>(&INT32))]);

/// `ConsumerGroupDescribeRequest.json`. v1 is v0 (a new error code).
pub(crate) static CONSUMER_GROUP_DESCRIBE: Message = message(
    "ConsumerGroupDescribeRequest",
    "0-1",
    "0+",
    &[field("GroupIds", "0+", array::<GroupId>(&STRING)), field("IncludeAuthorizedOperations", "0+", Ty::Bool)],
);
