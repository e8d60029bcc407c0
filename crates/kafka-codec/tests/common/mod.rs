//! Request builders shared by the integration tests (and, through
//! `#[path]`, the guard's unit tests): every supported request, at every
//! supported version, filled from a seeded generator with values for exactly
//! the fields that version carries, so that encoding and decoding it again
//! must give back the same value.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, BrokerId, GroupId, RequestHeader, RequestKind, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use uuid::Uuid;

mod admin;
mod data;
mod groups;

/// A small seeded generator (SplitMix64) of field values.
#[derive(Debug, Clone)]
pub(crate) struct Gen {
    state: u64,
    /// Every array non-empty, nothing null, tags on every structure.
    full: bool,
    /// Unknown tagged fields in flexible versions.
    tags: bool,
}

const CHARS: &[&str] = &["a", "Z", "0", "-", "_", ".", "é", "ß", "日", "🦀"];
/// Tag numbers for unknown tagged fields: none is known in any request Fjord
/// serves (Fetch uses 0 and 1), some take several varint bytes.
const TAGS: &[i32] = &[2, 3, 7, 31, 127, 128, 1000, 70_000, i32::MAX];

impl Gen {
    /// Random contents: 0 to 3 elements per array, nulls a quarter of the
    /// time where allowed, 0 to 2 unknown tags per structure.
    pub(crate) fn new(seed: u64) -> Gen {
        Gen { state: seed, full: false, tags: true }
    }

    /// Every field populated: 1 to 3 elements per array, no nulls, 1 or 2
    /// unknown tags per structure in flexible versions.
    pub(crate) fn full(seed: u64) -> Gen {
        Gen { state: seed, full: true, tags: true }
    }

    /// The same, without unknown tagged fields.
    pub(crate) fn without_tags(self) -> Gen {
        Gen { tags: false, ..self }
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn i8(&mut self) -> i8 {
        self.next() as i8
    }
    pub(crate) fn i16(&mut self) -> i16 {
        self.next() as i16
    }
    pub(crate) fn i32(&mut self) -> i32 {
        self.next() as i32
    }
    pub(crate) fn i64(&mut self) -> i64 {
        self.next() as i64
    }
    pub(crate) fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    pub(crate) fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
    pub(crate) fn str(&mut self) -> StrBytes {
        let len = self.below(9) as usize + usize::from(self.full);
        let s: String = (0..len).map(|_| CHARS[self.below(CHARS.len() as u64) as usize]).collect();
        StrBytes::from_string(s)
    }
    pub(crate) fn topic(&mut self) -> TopicName {
        TopicName(self.str())
    }
    pub(crate) fn group(&mut self) -> GroupId {
        GroupId(self.str())
    }
    pub(crate) fn broker(&mut self) -> BrokerId {
        BrokerId(self.i32())
    }
    pub(crate) fn bytes(&mut self) -> Bytes {
        let len = self.below(17) as usize;
        (0..len).map(|_| self.next() as u8).collect::<Vec<u8>>().into()
    }
    /// `Some(f())`, or `None` a quarter of the time (never when `full`).
    pub(crate) fn opt<T>(&mut self, f: impl FnOnce(&mut Gen) -> T) -> Option<T> {
        if !self.full && self.below(4) == 0 { None } else { Some(f(self)) }
    }
    /// `opt` where null is allowed, `Some` elsewhere.
    pub(crate) fn opt_if<T>(&mut self, nullable: bool, f: impl FnOnce(&mut Gen) -> T) -> Option<T> {
        if nullable { self.opt(f) } else { Some(f(self)) }
    }
    pub(crate) fn vec<T>(&mut self, mut f: impl FnMut(&mut Gen) -> T) -> Vec<T> {
        let n = if self.full { 1 + self.below(3) } else { self.below(4) };
        (0..n).map(|_| f(self)).collect()
    }
    /// Unknown tagged fields, only in flexible versions (elsewhere
    /// `kafka-protocol` drops them when encoding).
    pub(crate) fn tags(&mut self, flexible: bool) -> BTreeMap<i32, Bytes> {
        if !flexible || !self.tags {
            return BTreeMap::new();
        }
        let n = if self.full { 1 + self.below(2) } else { self.below(3) };
        (0..n).map(|_| (TAGS[self.below(TAGS.len() as u64) as usize], self.bytes())).collect()
    }
}

/// A header for `api` at `version`.
pub(crate) fn header(api: ApiKey, version: i16, g: &mut Gen) -> RequestHeader {
    let mut h = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(g.i32())
        .with_client_id(g.opt(Gen::str));
    h.unknown_tagged_fields = g.tags(api.request_header_version(version) >= 2);
    h
}

/// Header and body as they go on the wire, without the size prefix.
pub(crate) fn encode(header: &RequestHeader, request: &RequestKind, api: ApiKey, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    header.encode(&mut buf, api.request_header_version(version)).expect("encode header");
    request.encode(&mut buf, version).expect("encode request");
    buf.freeze()
}

/// A random frame of `api` at `version`: header, body and their encoding.
pub(crate) fn frame(api: ApiKey, version: i16, g: &mut Gen) -> (RequestHeader, RequestKind, Bytes) {
    let h = header(api, version, g);
    let r = request(api, version, g);
    let bytes = encode(&h, &r, api, version);
    (h, r, bytes)
}

/// `kafka-protocol`'s default request for `api`.
pub(crate) fn default_request(api: ApiKey) -> RequestKind {
    request_with(api, 0, None)
}

/// A request of `api` at `version`, filled by `g`.
pub(crate) fn request(api: ApiKey, version: i16, g: &mut Gen) -> RequestKind {
    request_with(api, version, Some(g))
}

fn request_with(api: ApiKey, v: i16, g: Option<&mut Gen>) -> RequestKind {
    use RequestKind as K;
    let Some(g) = g else {
        return match api {
            ApiKey::Produce => K::Produce(Default::default()),
            ApiKey::Fetch => K::Fetch(Default::default()),
            ApiKey::ListOffsets => K::ListOffsets(Default::default()),
            ApiKey::Metadata => K::Metadata(Default::default()),
            ApiKey::OffsetCommit => K::OffsetCommit(Default::default()),
            ApiKey::OffsetFetch => K::OffsetFetch(Default::default()),
            ApiKey::FindCoordinator => K::FindCoordinator(Default::default()),
            ApiKey::JoinGroup => K::JoinGroup(Default::default()),
            ApiKey::Heartbeat => K::Heartbeat(Default::default()),
            ApiKey::LeaveGroup => K::LeaveGroup(Default::default()),
            ApiKey::SyncGroup => K::SyncGroup(Default::default()),
            ApiKey::DescribeGroups => K::DescribeGroups(Default::default()),
            ApiKey::ListGroups => K::ListGroups(Default::default()),
            ApiKey::ApiVersions => K::ApiVersions(Default::default()),
            ApiKey::CreateTopics => K::CreateTopics(Default::default()),
            ApiKey::DeleteTopics => K::DeleteTopics(Default::default()),
            ApiKey::DeleteRecords => K::DeleteRecords(Default::default()),
            ApiKey::InitProducerId => K::InitProducerId(Default::default()),
            ApiKey::DescribeConfigs => K::DescribeConfigs(Default::default()),
            ApiKey::CreatePartitions => K::CreatePartitions(Default::default()),
            ApiKey::DeleteGroups => K::DeleteGroups(Default::default()),
            ApiKey::IncrementalAlterConfigs => K::IncrementalAlterConfigs(Default::default()),
            ApiKey::AlterConfigs => K::AlterConfigs(Default::default()),
            ApiKey::OffsetDelete => K::OffsetDelete(Default::default()),
            ApiKey::DescribeCluster => K::DescribeCluster(Default::default()),
            ApiKey::ConsumerGroupHeartbeat => K::ConsumerGroupHeartbeat(Default::default()),
            ApiKey::ConsumerGroupDescribe => K::ConsumerGroupDescribe(Default::default()),
            ApiKey::AlterPartitionReassignments => K::AlterPartitionReassignments(Default::default()),
            ApiKey::OffsetForLeaderEpoch => K::OffsetForLeaderEpoch(Default::default()),
            ApiKey::ElectLeaders => K::ElectLeaders(Default::default()),
            ApiKey::ListPartitionReassignments => K::ListPartitionReassignments(Default::default()),
            ApiKey::DescribeTopicPartitions => K::DescribeTopicPartitions(Default::default()),
            other => panic!("no builder for {other:?}"),
        };
    };
    match api {
        ApiKey::Produce => K::Produce(data::produce(v, g)),
        ApiKey::Fetch => K::Fetch(data::fetch(v, g)),
        ApiKey::ListOffsets => K::ListOffsets(data::list_offsets(v, g)),
        ApiKey::Metadata => K::Metadata(data::metadata(v, g)),
        ApiKey::OffsetCommit => K::OffsetCommit(groups::offset_commit(v, g)),
        ApiKey::OffsetFetch => K::OffsetFetch(groups::offset_fetch(v, g)),
        ApiKey::FindCoordinator => K::FindCoordinator(data::find_coordinator(v, g)),
        ApiKey::JoinGroup => K::JoinGroup(groups::join_group(v, g)),
        ApiKey::Heartbeat => K::Heartbeat(groups::heartbeat(v, g)),
        ApiKey::LeaveGroup => K::LeaveGroup(groups::leave_group(v, g)),
        ApiKey::SyncGroup => K::SyncGroup(groups::sync_group(v, g)),
        ApiKey::DescribeGroups => K::DescribeGroups(groups::describe_groups(v, g)),
        ApiKey::ListGroups => K::ListGroups(groups::list_groups(v, g)),
        ApiKey::ApiVersions => K::ApiVersions(data::api_versions(v, g)),
        ApiKey::CreateTopics => K::CreateTopics(admin::create_topics(v, g)),
        ApiKey::DeleteTopics => K::DeleteTopics(admin::delete_topics(v, g)),
        ApiKey::DeleteRecords => K::DeleteRecords(data::delete_records(v, g)),
        ApiKey::InitProducerId => K::InitProducerId(data::init_producer_id(v, g)),
        ApiKey::DescribeConfigs => K::DescribeConfigs(admin::describe_configs(v, g)),
        ApiKey::CreatePartitions => K::CreatePartitions(admin::create_partitions(v, g)),
        ApiKey::DeleteGroups => K::DeleteGroups(groups::delete_groups(v, g)),
        ApiKey::IncrementalAlterConfigs => K::IncrementalAlterConfigs(admin::incremental_alter_configs(v, g)),
        ApiKey::AlterConfigs => K::AlterConfigs(admin::alter_configs(v, g)),
        ApiKey::OffsetDelete => K::OffsetDelete(groups::offset_delete(g)),
        ApiKey::DescribeCluster => K::DescribeCluster(data::describe_cluster(v, g)),
        ApiKey::ConsumerGroupHeartbeat => K::ConsumerGroupHeartbeat(groups::consumer_group_heartbeat(v, g)),
        ApiKey::ConsumerGroupDescribe => K::ConsumerGroupDescribe(groups::consumer_group_describe(g)),
        ApiKey::AlterPartitionReassignments => {
            K::AlterPartitionReassignments(admin::alter_partition_reassignments(v, g))
        }
        ApiKey::ListPartitionReassignments => K::ListPartitionReassignments(admin::list_partition_reassignments(g)),
        ApiKey::OffsetForLeaderEpoch => K::OffsetForLeaderEpoch(data::offset_for_leader_epoch(v, g)),
        ApiKey::ElectLeaders => K::ElectLeaders(admin::elect_leaders(v, g)),
        ApiKey::DescribeTopicPartitions => K::DescribeTopicPartitions(admin::describe_topic_partitions(g)),
        other => panic!("no builder for {other:?}"),
    }
}
