//! The request schemas the guard walks, transcribed from Apache Kafka's
//! message definitions (`clients/src/main/resources/common/message/
//! *Request.json`, Kafka 4.1) and checked against `kafka-protocol`'s
//! generated decoders, which are what actually read the bytes.
//!
//! The notation follows the JSON on purpose, so that a schema can be compared
//! with its definition line by line:
//!
//! ```text
//! { "name": "Topics", "type": "[]MetadataRequestTopic", "versions": "0+", "nullableVersions": "1+", ...
//! field("Topics", "0+", array::<MetadataRequestTopic>(&METADATA_TOPIC)).nullable("1+"),
//! ```
//!
//! - Version strings (`"0+"`, `"3-12"`, `"none"`) are parsed at compile time.
//! - `string`, `bytes`, arrays and tagged-field sections are compact in the
//!   message's flexible versions, as in Kafka.
//! - Every array names the Rust type `kafka-protocol` decodes its elements
//!   into (`array::<T>`): `size_of::<T>()` is what one element costs when
//!   `kafka-protocol` calls `Vec::with_capacity(count)`, so the guard's
//!   budget is the exact size of those allocations.
//! - Only what the supported versions ([`crate::versions::SUPPORTED_APIS`])
//!   need is written down: fields that exist only in versions Fjord refuses
//!   (say `ListOffsets` v0's `MaxNumOffsets`) are left out.

use std::mem::size_of;

use kafka_protocol::messages::ApiKey;

mod admin;
mod groups;
mod metadata;
mod produce_fetch;

/// An inclusive range of versions; empty when `min > max` (`"none"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) min: i16,
    pub(crate) max: i16,
}

impl Versions {
    /// No version at all.
    pub(crate) const NONE: Versions = Versions { min: 0, max: -1 };

    /// Parses Kafka's notation: `"none"`, `"N"`, `"N+"` or `"N-M"`. A typo
    /// is a compile error, as every schema is a `static`.
    pub(crate) const fn parse(s: &str) -> Versions {
        let b = s.as_bytes();
        if b.len() == 4 && b[0] == b'n' && b[1] == b'o' && b[2] == b'n' && b[3] == b'e' {
            return Versions::NONE;
        }
        let (min, mut i) = parse_num(b, 0);
        if i == b.len() {
            return Versions { min, max: min };
        }
        if b[i] == b'+' && i + 1 == b.len() {
            return Versions { min, max: i16::MAX };
        }
        assert!(b[i] == b'-', "version range must look like N, N+, N-M or none");
        i += 1;
        let (max, end) = parse_num(b, i);
        assert!(end == b.len() && min <= max, "version range must look like N, N+, N-M or none");
        Versions { min, max }
    }

    /// Whether `v` is in the range.
    pub(crate) const fn contains(self, v: i16) -> bool {
        self.min <= v && v <= self.max
    }
}

const fn parse_num(b: &[u8], mut i: usize) -> (i16, usize) {
    let start = i;
    let mut n: i16 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        n = n * 10 + (b[i] - b'0') as i16;
        i += 1;
    }
    assert!(i > start, "version range must start with a number");
    (n, i)
}

/// The wire types of Kafka's message definitions.
#[derive(Debug)]
pub(crate) enum Ty {
    /// `int8`.
    Int8,
    /// `int16`.
    Int16,
    /// `int32`.
    Int32,
    /// `int64`.
    Int64,
    /// `float64`.
    #[allow(dead_code, reason = "no advertised request has a float64 field; here for the next schema that does")]
    Float64,
    /// `uuid`: 16 bytes.
    Uuid,
    /// `bool`: one byte.
    Bool,
    /// `string`: `int16` length, or unsigned varint length + 1 when compact;
    /// UTF-8.
    String,
    /// `bytes`: `int32` length, or unsigned varint length + 1 when compact.
    Bytes,
    /// `records`: encoded like `bytes`, kept raw by `kafka-protocol`.
    Records,
    /// `[]T`: `int32` count, or unsigned varint count + 1 when compact.
    Array {
        /// Element type.
        elem: &'static Ty,
        /// `size_of` the Rust type `kafka-protocol` decodes an element into.
        elem_size: usize,
    },
    /// A structure, inline (an array element, or a tagged field).
    Struct(Struct),
}

/// A structure: its fields in wire order. Tagged fields are listed where the
/// JSON lists them; they are read from the tagged-field section that ends the
/// structure in flexible versions.
#[derive(Debug)]
pub(crate) struct Struct {
    /// Name, for error messages.
    pub(crate) name: &'static str,
    /// Fields in wire order.
    pub(crate) fields: &'static [Field],
}

/// One field of a structure.
#[derive(Debug)]
pub(crate) struct Field {
    /// Name, for error messages.
    pub(crate) name: &'static str,
    /// Versions in which the field exists.
    pub(crate) versions: Versions,
    /// Versions in which it may be null (strings, bytes, records, arrays,
    /// structures: a presence byte, -1 for null, 1 before the structure).
    pub(crate) nullable: Versions,
    /// Versions in which it uses the compact encoding, intersected with the
    /// message's flexible versions (only the header's `ClientId` narrows it).
    pub(crate) flexible: Versions,
    /// `(tag, taggedVersions)` for a tagged field.
    pub(crate) tag: Option<(u32, Versions)>,
    /// Wire type.
    pub(crate) ty: Ty,
}

/// A request (or the request header): versions, flexible versions, body.
#[derive(Debug)]
pub(crate) struct Message {
    /// The versions the schema describes (Kafka's `validVersions`, limited to
    /// what Fjord advertises).
    pub(crate) valid: Versions,
    /// Versions that use compact encodings and tagged fields.
    pub(crate) flexible: Versions,
    /// The top-level structure.
    pub(crate) body: Struct,
}

impl Field {
    /// Null is allowed in `versions` (Kafka's `nullableVersions`).
    pub(crate) const fn nullable(mut self, versions: &str) -> Field {
        self.nullable = Versions::parse(versions);
        self
    }

    /// The field is a tagged field with `tag` in `versions` (Kafka's `tag`
    /// and `taggedVersions`).
    pub(crate) const fn tagged(mut self, tag: u32, versions: &str) -> Field {
        self.tag = Some((tag, Versions::parse(versions)));
        self
    }

    /// Kafka's field-level `flexibleVersions`.
    pub(crate) const fn flexible(mut self, versions: &str) -> Field {
        self.flexible = Versions::parse(versions);
        self
    }

    /// The tag of this field if it is a tagged field in `version`.
    pub(crate) const fn tag_in(&self, version: i16) -> Option<u32> {
        match self.tag {
            Some((tag, versions)) if versions.contains(version) => Some(tag),
            _ => None,
        }
    }
}

/// A field present in `versions`, never null (until `.nullable(..)`).
pub(crate) const fn field(name: &'static str, versions: &str, ty: Ty) -> Field {
    Field {
        name,
        versions: Versions::parse(versions),
        nullable: Versions::NONE,
        flexible: Versions { min: 0, max: i16::MAX },
        tag: None,
        ty,
    }
}

/// `[]elem`, decoded by `kafka-protocol` into a `Vec<T>`.
pub(crate) const fn array<T>(elem: &'static Ty) -> Ty {
    Ty::Array { elem, elem_size: size_of::<T>() }
}

/// A structure type.
pub(crate) const fn structure(name: &'static str, fields: &'static [Field]) -> Ty {
    Ty::Struct(Struct { name, fields })
}

/// A request message.
pub(crate) const fn message(name: &'static str, valid: &str, flexible: &str, fields: &'static [Field]) -> Message {
    Message { valid: Versions::parse(valid), flexible: Versions::parse(flexible), body: Struct { name, fields } }
}

// Element types of arrays of primitives.
pub(crate) const INT32: Ty = Ty::Int32;
pub(crate) const STRING: Ty = Ty::String;

/// `RequestHeader.json`: the header of every request. Version 0 (no client
/// id) is only used by `ControlledShutdown` v0, which Fjord does not serve.
pub(crate) static REQUEST_HEADER: Message = message(
    "RequestHeader",
    "1-2",
    "2+",
    &[
        field("RequestApiKey", "0+", Ty::Int16),
        field("RequestApiVersion", "0+", Ty::Int16),
        field("CorrelationId", "0+", Ty::Int32),
        // Not compact even in v2, so that every header version can be parsed
        // up to the client id.
        field("ClientId", "1+", Ty::String).nullable("1+").flexible("none"),
    ],
);

/// The schema of every request Fjord serves.
pub(crate) fn request(api: ApiKey) -> Option<&'static Message> {
    Some(match api {
        ApiKey::Produce => &produce_fetch::PRODUCE,
        ApiKey::Fetch => &produce_fetch::FETCH,
        ApiKey::ListOffsets => &produce_fetch::LIST_OFFSETS,
        ApiKey::DeleteRecords => &produce_fetch::DELETE_RECORDS,
        ApiKey::InitProducerId => &produce_fetch::INIT_PRODUCER_ID,
        ApiKey::OffsetForLeaderEpoch => &produce_fetch::OFFSET_FOR_LEADER_EPOCH,
        ApiKey::Metadata => &metadata::METADATA,
        ApiKey::ApiVersions => &metadata::API_VERSIONS,
        ApiKey::DescribeCluster => &metadata::DESCRIBE_CLUSTER,
        ApiKey::FindCoordinator => &metadata::FIND_COORDINATOR,
        ApiKey::DescribeTopicPartitions => &metadata::DESCRIBE_TOPIC_PARTITIONS,
        ApiKey::OffsetCommit => &groups::OFFSET_COMMIT,
        ApiKey::OffsetFetch => &groups::OFFSET_FETCH,
        ApiKey::OffsetDelete => &groups::OFFSET_DELETE,
        ApiKey::JoinGroup => &groups::JOIN_GROUP,
        ApiKey::Heartbeat => &groups::HEARTBEAT,
        ApiKey::LeaveGroup => &groups::LEAVE_GROUP,
        ApiKey::SyncGroup => &groups::SYNC_GROUP,
        ApiKey::DescribeGroups => &groups::DESCRIBE_GROUPS,
        ApiKey::ListGroups => &groups::LIST_GROUPS,
        ApiKey::DeleteGroups => &groups::DELETE_GROUPS,
        ApiKey::ConsumerGroupHeartbeat => &groups::CONSUMER_GROUP_HEARTBEAT,
        ApiKey::ConsumerGroupDescribe => &groups::CONSUMER_GROUP_DESCRIBE,
        ApiKey::CreateTopics => &admin::CREATE_TOPICS,
        ApiKey::AlterPartitionReassignments => &admin::ALTER_PARTITION_REASSIGNMENTS,
        ApiKey::ElectLeaders => &admin::ELECT_LEADERS,
        ApiKey::ListPartitionReassignments => &admin::LIST_PARTITION_REASSIGNMENTS,
        ApiKey::DeleteTopics => &admin::DELETE_TOPICS,
        ApiKey::DescribeConfigs => &admin::DESCRIBE_CONFIGS,
        ApiKey::CreatePartitions => &admin::CREATE_PARTITIONS,
        ApiKey::IncrementalAlterConfigs => &admin::INCREMENTAL_ALTER_CONFIGS,
        ApiKey::AlterConfigs => &admin::ALTER_CONFIGS,
        _ => return None,
    })
}
