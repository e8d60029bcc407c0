//! Cluster discovery: Metadata, ApiVersions, DescribeCluster,
//! FindCoordinator, DescribeTopicPartitions.

use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::protocol::StrBytes;

use super::{Message, STRING, Ty, array, field, message, structure};

/// `MetadataRequest.json`. v13 is v12 (a new error code).
pub(crate) static METADATA: Message = message(
    "MetadataRequest",
    "0-13",
    "9+",
    &[
        field("Topics", "0+", array::<MetadataRequestTopic>(&METADATA_REQUEST_TOPIC)).nullable("1+"),
        field("AllowAutoTopicCreation", "4+", Ty::Bool),
        field("IncludeClusterAuthorizedOperations", "8-10", Ty::Bool),
        field("IncludeTopicAuthorizedOperations", "8+", Ty::Bool),
    ],
);

static METADATA_REQUEST_TOPIC: Ty = structure(
    "MetadataRequestTopic",
    &[field("TopicId", "10+", Ty::Uuid), field("Name", "0+", Ty::String).nullable("10+")],
);

/// `ApiVersionsRequest.json`.
pub(crate) static API_VERSIONS: Message = message(
    "ApiVersionsRequest",
    "0-4",
    "3+",
    &[field("ClientSoftwareName", "3+", Ty::String), field("ClientSoftwareVersion", "3+", Ty::String)],
);

/// `DescribeClusterRequest.json`. v2 adds `IncludeFencedBrokers`.
pub(crate) static DESCRIBE_CLUSTER: Message = message(
    "DescribeClusterRequest",
    "0-2",
    "0+",
    &[
        field("IncludeClusterAuthorizedOperations", "0+", Ty::Bool),
        field("EndpointType", "1+", Ty::Int8),
        field("IncludeFencedBrokers", "2+", Ty::Bool),
    ],
);

/// `FindCoordinatorRequest.json`.
pub(crate) static FIND_COORDINATOR: Message = message(
    "FindCoordinatorRequest",
    "0-6",
    "3+",
    &[
        field("Key", "0-3", Ty::String),
        field("KeyType", "1+", Ty::Int8),
        field("CoordinatorKeys", "4+", array::<StrBytes>(&STRING)),
    ],
);

/// `DescribeTopicPartitionsRequest.json` (KIP-966): `Cursor` is a nullable
/// structure (a presence byte before it).
pub(crate) static DESCRIBE_TOPIC_PARTITIONS: Message = message(
    "DescribeTopicPartitionsRequest",
    "0",
    "0+",
    &[
        field("Topics", "0+", array::<TopicRequest>(&DESCRIBE_TOPIC_PARTITIONS_TOPIC)),
        field("ResponsePartitionLimit", "0+", Ty::Int32),
        field(
            "Cursor",
            "0+",
            structure("Cursor", &[field("TopicName", "0+", Ty::String), field("PartitionIndex", "0+", Ty::Int32)]),
        )
        .nullable("0+"),
    ],
);

static DESCRIBE_TOPIC_PARTITIONS_TOPIC: Ty = structure("TopicRequest", &[field("Name", "0+", Ty::String)]);
