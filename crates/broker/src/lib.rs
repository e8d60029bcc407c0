//! # fjord-broker: the protocol-agnostic broker core
//!
//! Gateways (Kafka, RocketMQ, AMQP, HTTP) translate their wire requests into
//! calls on one [`Broker`]; storage and groups never learn which protocol a
//! message came from.
//!
//! ## Layout
//! - [`broker`]: opening and recovering the data directory, topic
//!   administration, shutdown.
//! - [`topic`] and [`partition`]: names, per-topic configuration (Kafka
//!   config names), partitions and their logs.
//! - [`produce`] and [`fetch`]: appends, long-polling reads, offset lookups.
//! - [`offsets`] and [`group_offsets`]: committed offsets, stored on the
//!   internal topic `__fjord_offsets`.
//! - [`group`]: consumer group membership and assignment.
//! - [`metadata`]: what clients use to find partition leaders.
//! - [`placement`]: in a cluster, which node leads what, and who decides
//!   topic changes.
//! - [`traffic`]: records and bytes in and out, per partition and in total.
//!
//! ## Data directory
//! ```text
//! <data>/cluster.json                       cluster id
//!        topics/<topic>/topic.json          id, partition count, config overrides
//!        topics/<topic>/<partition>/        one fjord-log Log per partition
//!        topics/__fjord_offsets/            committed offsets (internal topic)
//!        trash/                             deleted topics, emptied on start
//! ```
//!
//! ## Invariants worth naming
//! - An append is *written* (offsets assigned) before it is *committed*
//!   (the high watermark covers it); a produce returns only once it is
//!   committed, and readers stop at the high watermark, so a consumer never
//!   sees a record that a crash could take back. What moves the high
//!   watermark is the partition's commit point (`commit.rs`): with one
//!   replica, the durability policy; a cut of the log fails every write
//!   waiting past it, even if later writes reuse its offsets.
//! - Appends to one partition are serialised by its log; their order is the
//!   order of the acknowledgements' offsets.
//! - Long-polling fetches subscribe to high-watermark changes before they
//!   read, so no wake-up is lost between reading and waiting.
//! - One topic that cannot be loaded never stops the broker: it is kept
//!   offline with its data ([`Broker::offline_topics`]); a failed creation
//!   leaves nothing behind.
//! - Logs poisoned by a failed write or fsync are cut back to their durable
//!   point and reopened in the background ([`Broker::poisoned_logs`]).
//! - Blocking file I/O runs on tokio's blocking pool, never on a runtime
//!   worker.

mod append_queue;
pub mod broker;
mod commit;
#[cfg(test)]
mod creation_tests;
pub mod documents;
mod error;
pub mod fetch;
mod follower_reads;
pub mod group;
pub mod group_config;
pub mod group_offsets;
mod group_store;
#[cfg(test)]
mod group_store_tests;
mod load;
mod maintenance;
pub mod metadata;
pub mod offsets;
pub mod partition;
mod partition_state;
pub mod placement;
pub mod produce;
#[cfg(test)]
mod produce_tests;
pub mod producers;
pub mod replica_partition;
mod replicas;
mod resign;
pub mod services;
pub mod topic;
pub mod topic_keys;
pub mod traffic;
mod txn_markers;

pub use broker::{Broker, BrokerConfig, StoredTopic, TopicDeletedHook, stored_topics};
pub use documents::{DocumentChange, DocumentScope, DocumentTable, DocumentUpdate};
pub use error::{BrokerError, Result};
pub use fetch::{FetchPartition, FetchRequest, FetchedPartition, PartitionData};
pub use group_config::{GroupConfig, GroupConfigTable};
pub use group_offsets::CommitIdentity;
pub use maintenance::PoisonedLog;
pub use metadata::{ClusterMetadata, NodeInfo, PartitionMetadata, TopicMetadata};
pub use offsets::CommittedOffset;
pub use partition::{Partition, Topic, TopicPartition};
pub use partition_state::PartitionState;
pub use placement::{Leadership, MetadataAuthority, PartitionPlacement, Placement};
pub use produce::{Acks, ListedOffset, OffsetSpec, ProduceResult, WrittenProduce};
pub use replica_partition::{FollowerProgress, ReplicaRead, ReplicationStatus};
pub use services::{ServiceFuture, ServiceHandler};
pub use topic::{CleanupPolicy, TopicConfig, TopicRecord, validate_topic_name};
pub use traffic::{Traffic, TrafficSnapshot};
