//! Data-path requests: Produce, Fetch, ListOffsets, DeleteRecords,
//! InitProducerId.

use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

use super::{INT32, Message, Ty, array, field, message, structure};

/// `ProduceRequest.json`. v12 is v11 (KIP-890); v13 names topics by id.
pub(crate) static PRODUCE: Message = message(
    "ProduceRequest",
    "3-13",
    "9+",
    &[
        field("TransactionalId", "3+", Ty::String).nullable("3+"),
        field("Acks", "0+", Ty::Int16),
        field("TimeoutMs", "0+", Ty::Int32),
        field("TopicData", "0+", array::<TopicProduceData>(&TOPIC_PRODUCE_DATA)),
    ],
);

static TOPIC_PRODUCE_DATA: Ty = structure(
    "TopicProduceData",
    &[
        field("Name", "0-12", Ty::String),
        field("TopicId", "13+", Ty::Uuid),
        field("PartitionData", "0+", array::<PartitionProduceData>(&PARTITION_PRODUCE_DATA)),
    ],
);

static PARTITION_PRODUCE_DATA: Ty = structure(
    "PartitionProduceData",
    &[
        field("Index", "0+", Ty::Int32),
        // Kept as raw bytes: batches are checked by fjord-log, not here.
        field("Records", "0+", Ty::Records).nullable("0+"),
    ],
);

/// `FetchRequest.json`. v18 adds the partitions' `HighWatermark` tag.
pub(crate) static FETCH: Message = message(
    "FetchRequest",
    "4-18",
    "12+",
    &[
        field("ClusterId", "12+", Ty::String).nullable("12+").tagged(0, "12+"),
        field("ReplicaId", "0-14", Ty::Int32),
        field("ReplicaState", "15+", REPLICA_STATE).tagged(1, "15+"),
        field("MaxWaitMs", "0+", Ty::Int32),
        field("MinBytes", "0+", Ty::Int32),
        field("MaxBytes", "3+", Ty::Int32),
        field("IsolationLevel", "4+", Ty::Int8),
        field("SessionId", "7+", Ty::Int32),
        field("SessionEpoch", "7+", Ty::Int32),
        field("Topics", "0+", array::<FetchTopic>(&FETCH_TOPIC)),
        field("ForgottenTopicsData", "7+", array::<ForgottenTopic>(&FORGOTTEN_TOPIC)),
        field("RackId", "11+", Ty::String),
    ],
);

const REPLICA_STATE: Ty =
    structure("ReplicaState", &[field("ReplicaId", "15+", Ty::Int32), field("ReplicaEpoch", "15+", Ty::Int64)]);

static FETCH_TOPIC: Ty = structure(
    "FetchTopic",
    &[
        field("Topic", "0-12", Ty::String),
        field("TopicId", "13+", Ty::Uuid),
        field("Partitions", "0+", array::<FetchPartition>(&FETCH_PARTITION)),
    ],
);

static FETCH_PARTITION: Ty = structure(
    "FetchPartition",
    &[
        field("Partition", "0+", Ty::Int32),
        field("CurrentLeaderEpoch", "9+", Ty::Int32),
        field("FetchOffset", "0+", Ty::Int64),
        field("LastFetchedEpoch", "12+", Ty::Int32),
        field("LogStartOffset", "5+", Ty::Int64),
        field("PartitionMaxBytes", "0+", Ty::Int32),
        field("ReplicaDirectoryId", "17+", Ty::Uuid).tagged(0, "17+"),
        field("HighWatermark", "18+", Ty::Int64).tagged(1, "18+"),
    ],
);

static FORGOTTEN_TOPIC: Ty = structure(
    "ForgottenTopic",
    &[
        field("Topic", "7-12", Ty::String),
        field("TopicId", "13+", Ty::Uuid),
        field("Partitions", "7+", array::<i32>(&INT32)),
    ],
);

/// `ListOffsetsRequest.json` (v0's `MaxNumOffsets` is gone with v0).
pub(crate) static LIST_OFFSETS: Message = message(
    "ListOffsetsRequest",
    "1-10",
    "6+",
    &[
        field("ReplicaId", "0+", Ty::Int32),
        field("IsolationLevel", "2+", Ty::Int8),
        field("Topics", "0+", array::<ListOffsetsTopic>(&LIST_OFFSETS_TOPIC)),
        field("TimeoutMs", "10+", Ty::Int32),
    ],
);

static LIST_OFFSETS_TOPIC: Ty = structure(
    "ListOffsetsTopic",
    &[
        field("Name", "0+", Ty::String),
        field("Partitions", "0+", array::<ListOffsetsPartition>(&LIST_OFFSETS_PARTITION)),
    ],
);

static LIST_OFFSETS_PARTITION: Ty = structure(
    "ListOffsetsPartition",
    &[
        field("PartitionIndex", "0+", Ty::Int32),
        field("CurrentLeaderEpoch", "4+", Ty::Int32),
        field("Timestamp", "0+", Ty::Int64),
    ],
);

/// `DeleteRecordsRequest.json`.
pub(crate) static DELETE_RECORDS: Message = message(
    "DeleteRecordsRequest",
    "0-2",
    "2+",
    &[field("Topics", "0+", array::<DeleteRecordsTopic>(&DELETE_RECORDS_TOPIC)), field("TimeoutMs", "0+", Ty::Int32)],
);

static DELETE_RECORDS_TOPIC: Ty = structure(
    "DeleteRecordsTopic",
    &[
        field("Name", "0+", Ty::String),
        field("Partitions", "0+", array::<DeleteRecordsPartition>(&DELETE_RECORDS_PARTITION)),
    ],
);

static DELETE_RECORDS_PARTITION: Ty =
    structure("DeleteRecordsPartition", &[field("PartitionIndex", "0+", Ty::Int32), field("Offset", "0+", Ty::Int64)]);

/// `InitProducerIdRequest.json` (v6's two-phase-commit fields are not
/// advertised).
pub(crate) static INIT_PRODUCER_ID: Message = message(
    "InitProducerIdRequest",
    "0-5",
    "2+",
    &[
        field("TransactionalId", "0+", Ty::String).nullable("0+"),
        field("TransactionTimeoutMs", "0+", Ty::Int32),
        field("ProducerId", "3+", Ty::Int64),
        field("ProducerEpoch", "3+", Ty::Int16),
    ],
);

/// `OffsetForLeaderEpochRequest.json` (v0-1 removed by KIP-896).
pub(crate) static OFFSET_FOR_LEADER_EPOCH: Message = message(
    "OffsetForLeaderEpochRequest",
    "2-4",
    "4+",
    &[
        field("ReplicaId", "3+", Ty::Int32),
        field("Topics", "0+", array::<OffsetForLeaderTopic>(&OFFSET_FOR_LEADER_TOPIC)),
    ],
);

static OFFSET_FOR_LEADER_TOPIC: Ty = structure(
    "OffsetForLeaderTopic",
    &[
        field("Topic", "0+", Ty::String),
        field("Partitions", "0+", array::<OffsetForLeaderPartition>(&OFFSET_FOR_LEADER_PARTITION)),
    ],
);

static OFFSET_FOR_LEADER_PARTITION: Ty = structure(
    "OffsetForLeaderPartition",
    &[
        field("Partition", "0+", Ty::Int32),
        field("CurrentLeaderEpoch", "2+", Ty::Int32),
        field("LeaderEpoch", "0+", Ty::Int32),
    ],
);
