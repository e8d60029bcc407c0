//! Administration: topics, partitions and configs.

use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{INT32, Message, STRING, Ty, array, field, message, structure};

/// `CreateTopicsRequest.json`.
pub(crate) static CREATE_TOPICS: Message = message(
    "CreateTopicsRequest",
    "2-7",
    "5+",
    &[
        field("Topics", "0+", array::<CreatableTopic>(&CREATABLE_TOPIC)),
        field("timeoutMs", "0+", Ty::Int32),
        field("validateOnly", "1+", Ty::Bool),
    ],
);

static CREATABLE_TOPIC: Ty = structure(
    "CreatableTopic",
    &[
        field("Name", "0+", Ty::String),
        field("NumPartitions", "0+", Ty::Int32),
        field("ReplicationFactor", "0+", Ty::Int16),
        field("Assignments", "0+", array::<CreatableReplicaAssignment>(&CREATABLE_REPLICA_ASSIGNMENT)),
        field("Configs", "0+", array::<CreatableTopicConfig>(&CREATABLE_TOPIC_CONFIG)),
    ],
);

static CREATABLE_REPLICA_ASSIGNMENT: Ty = structure(
    "CreatableReplicaAssignment",
    &[field("PartitionIndex", "0+", Ty::Int32), field("BrokerIds", "0+", array::<BrokerId>(&INT32))],
);

static CREATABLE_TOPIC_CONFIG: Ty = structure(
    "CreatableTopicConfig",
    &[field("Name", "0+", Ty::String), field("Value", "0+", Ty::String).nullable("0+")],
);

/// `DeleteTopicsRequest.json`: names up to v5, names or ids from v6.
pub(crate) static DELETE_TOPICS: Message = message(
    "DeleteTopicsRequest",
    "1-6",
    "4+",
    &[
        field("Topics", "6+", array::<DeleteTopicState>(&DELETE_TOPIC_STATE)),
        field("TopicNames", "0-5", array::<TopicName>(&STRING)),
        field("TimeoutMs", "0+", Ty::Int32),
    ],
);

static DELETE_TOPIC_STATE: Ty =
    structure("DeleteTopicState", &[field("Name", "6+", Ty::String).nullable("6+"), field("TopicId", "6+", Ty::Uuid)]);

/// `DescribeConfigsRequest.json`.
pub(crate) static DESCRIBE_CONFIGS: Message = message(
    "DescribeConfigsRequest",
    "1-4",
    "4+",
    &[
        field("Resources", "0+", array::<DescribeConfigsResource>(&DESCRIBE_CONFIGS_RESOURCE)),
        field("IncludeSynonyms", "1+", Ty::Bool),
        field("IncludeDocumentation", "3+", Ty::Bool),
    ],
);

static DESCRIBE_CONFIGS_RESOURCE: Ty = structure(
    "DescribeConfigsResource",
    &[
        field("ResourceType", "0+", Ty::Int8),
        field("ResourceName", "0+", Ty::String),
        field("ConfigurationKeys", "0+", array::<StrBytes>(&STRING)).nullable("0+"),
    ],
);

/// `CreatePartitionsRequest.json`.
pub(crate) static CREATE_PARTITIONS: Message = message(
    "CreatePartitionsRequest",
    "0-3",
    "2+",
    &[
        field("Topics", "0+", array::<CreatePartitionsTopic>(&CREATE_PARTITIONS_TOPIC)),
        field("TimeoutMs", "0+", Ty::Int32),
        field("ValidateOnly", "0+", Ty::Bool),
    ],
);

static CREATE_PARTITIONS_TOPIC: Ty = structure(
    "CreatePartitionsTopic",
    &[
        field("Name", "0+", Ty::String),
        field("Count", "0+", Ty::Int32),
        field("Assignments", "0+", array::<CreatePartitionsAssignment>(&CREATE_PARTITIONS_ASSIGNMENT)).nullable("0+"),
    ],
);

static CREATE_PARTITIONS_ASSIGNMENT: Ty =
    structure("CreatePartitionsAssignment", &[field("BrokerIds", "0+", array::<BrokerId>(&INT32))]);

/// `IncrementalAlterConfigsRequest.json`.
pub(crate) static INCREMENTAL_ALTER_CONFIGS: Message = message(
    "IncrementalAlterConfigsRequest",
    "0-1",
    "1+",
    &[
        field("Resources", "0+", array::<AlterConfigsResource>(&ALTER_CONFIGS_RESOURCE)),
        field("ValidateOnly", "0+", Ty::Bool),
    ],
);

static ALTER_CONFIGS_RESOURCE: Ty = structure(
    "AlterConfigsResource",
    &[
        field("ResourceType", "0+", Ty::Int8),
        field("ResourceName", "0+", Ty::String),
        field("Configs", "0+", array::<AlterableConfig>(&ALTERABLE_CONFIG)),
    ],
);

static ALTERABLE_CONFIG: Ty = structure(
    "AlterableConfig",
    &[
        field("Name", "0+", Ty::String),
        field("ConfigOperation", "0+", Ty::Int8),
        field("Value", "0+", Ty::String).nullable("0+"),
    ],
);

/// `AlterConfigsRequest.json` (the older, full-replace API).
pub(crate) static ALTER_CONFIGS: Message = message(
    "AlterConfigsRequest",
    "0-2",
    "2+",
    &[
        field("Resources", "0+", array::<LegacyResource>(&LEGACY_ALTER_CONFIGS_RESOURCE)),
        field("ValidateOnly", "0+", Ty::Bool),
    ],
);

static LEGACY_ALTER_CONFIGS_RESOURCE: Ty = structure(
    "AlterConfigsResource",
    &[
        field("ResourceType", "0+", Ty::Int8),
        field("ResourceName", "0+", Ty::String),
        field("Configs", "0+", array::<LegacyConfig>(&LEGACY_ALTERABLE_CONFIG)),
    ],
);

static LEGACY_ALTERABLE_CONFIG: Ty =
    structure("AlterableConfig", &[field("Name", "0+", Ty::String), field("Value", "0+", Ty::String).nullable("0+")]);

/// `AlterPartitionReassignmentsRequest.json`. v1 adds
/// `AllowReplicationFactorChange` (KIP-860).
pub(crate) static ALTER_PARTITION_REASSIGNMENTS: Message = message(
    "AlterPartitionReassignmentsRequest",
    "0-1",
    "0+",
    &[
        field("TimeoutMs", "0+", Ty::Int32),
        field("AllowReplicationFactorChange", "1+", Ty::Bool),
        field("Topics", "0+", array::<ReassignableTopic>(&REASSIGNABLE_TOPIC)),
    ],
);

static REASSIGNABLE_TOPIC: Ty = structure(
    "ReassignableTopic",
    &[
        field("Name", "0+", Ty::String),
        field("Partitions", "0+", array::<ReassignablePartition>(&REASSIGNABLE_PARTITION)),
    ],
);

static REASSIGNABLE_PARTITION: Ty = structure(
    "ReassignablePartition",
    &[field("PartitionIndex", "0+", Ty::Int32), field("Replicas", "0+", array::<BrokerId>(&INT32)).nullable("0+")],
);

/// `ListPartitionReassignmentsRequest.json`.
pub(crate) static LIST_PARTITION_REASSIGNMENTS: Message = message(
    "ListPartitionReassignmentsRequest",
    "0",
    "0+",
    &[
        field("TimeoutMs", "0+", Ty::Int32),
        field("Topics", "0+", array::<ListPartitionReassignmentsTopics>(&LIST_REASSIGNMENTS_TOPIC)).nullable("0+"),
    ],
);

static LIST_REASSIGNMENTS_TOPIC: Ty = structure(
    "ListPartitionReassignmentsTopics",
    &[field("Name", "0+", Ty::String), field("PartitionIndexes", "0+", array::<i32>(&INT32))],
);

/// `ElectLeadersRequest.json`. v1 adds `ElectionType`.
pub(crate) static ELECT_LEADERS: Message = message(
    "ElectLeadersRequest",
    "0-2",
    "2+",
    &[
        field("ElectionType", "1+", Ty::Int8),
        field("TopicPartitions", "0+", array::<TopicPartitions>(&ELECT_TOPIC_PARTITIONS)).nullable("0+"),
        field("TimeoutMs", "0+", Ty::Int32),
    ],
);

static ELECT_TOPIC_PARTITIONS: Ty =
    structure("TopicPartitions", &[field("Topic", "0+", Ty::String), field("Partitions", "0+", array::<i32>(&INT32))]);
