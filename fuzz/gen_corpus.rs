//! Writes small seed inputs for the fuzz targets:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus -- fuzz/seeds
//!
//! creates OUT/batch_validate, OUT/batch_decode, OUT/log_recovery,
//! OUT/kafka_request and OUT/filter_parse (the structured batch_roundtrip target needs no seeds). The committed
//! fuzz/seeds/ were made this way; scripts/fuzz regenerates them when absent.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use fjord_kafka_codec::kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use fjord_kafka_codec::kafka_protocol::messages::consumer_group_heartbeat_request::{
    ConsumerGroupHeartbeatRequest, TopicPartitions,
};
use fjord_kafka_codec::kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use fjord_kafka_codec::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ForgottenTopic, ReplicaState,
};
use fjord_kafka_codec::kafka_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use fjord_kafka_codec::kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use fjord_kafka_codec::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_kafka_codec::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use fjord_kafka_codec::kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use fjord_kafka_codec::kafka_protocol::messages::{
    ApiKey, BrokerId, GroupId, RequestHeader, RequestKind, TopicName, TransactionalId,
};
use fjord_kafka_codec::kafka_protocol::protocol::{Encodable, StrBytes};
use fjord_log::batch::{self, BatchBuilder, Header, NewRecord};

const TS: i64 = 1_700_000_000_000;

fn rec(ts: Option<i64>, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&[u8], Option<&[u8]>)]) -> NewRecord {
    NewRecord {
        timestamp: ts,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: headers
            .iter()
            .map(|(k, v)| Header { key: Bytes::copy_from_slice(k), value: v.map(Bytes::copy_from_slice) })
            .collect(),
    }
}

fn build(records: &[NewRecord]) -> BytesMut {
    let mut b = BatchBuilder::new(TS);
    for r in records {
        b.push(r);
    }
    b.build()
}

/// Sets attribute bits (compression, control, ...) and fixes the CRC.
fn with_attributes(mut b: BytesMut, attrs: i16) -> BytesMut {
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn at(mut b: BytesMut, base: u64, epoch: i32) -> Vec<u8> {
    batch::set_base_offset(&mut b, base);
    batch::set_leader_epoch(&mut b, epoch);
    b.to_vec()
}

fn single_batches() -> Vec<(&'static str, Vec<u8>)> {
    let one = build(&[rec(None, Some(b"key"), Some(b"value"), &[])]);
    let mixed = build(&[
        rec(None, Some(b"k1"), Some(b"v1"), &[(b"content-type", Some(b"text/plain"))]),
        rec(Some(TS + 5), None, Some(b"no key"), &[(b"h", None), (b"h", Some(b"again"))]),
        rec(Some(TS - 3), Some(b"tombstone"), None, &[]),
    ]);
    let mut txn = BatchBuilder::new(TS).producer(42, 3, 7).transactional(true);
    txn.push(&rec(None, Some(b"t"), Some(b"x"), &[]));
    txn.push(&rec(None, Some(b"t"), Some(b"y"), &[]));
    let txn = txn.build();
    let empty = BatchBuilder::new(TS).build();
    let mut log_append = build(&[rec(None, Some(b"a"), Some(b"b"), &[])]);
    batch::set_log_append_time(&mut log_append, TS + 1000);
    let gzip = with_attributes(build(&[rec(None, Some(b"z"), Some(b"compressed?"), &[])]), 1);
    let control = with_attributes(build(&[rec(None, Some(&[0, 0, 0, 0]), Some(&[0, 0, 0, 0, 0, 0]), &[])]), 0x30);
    vec![
        ("one_record", at(one, 0, 0)),
        ("mixed_headers", at(mixed, 17, 2)),
        ("transactional", at(txn, 100, 5)),
        ("empty", at(empty, 0, 0)),
        ("log_append_time", at(log_append, 3, 1)),
        ("gzip_flag", at(gzip, 9, 0)),
        ("control", at(control, 11, 0)),
    ]
}

/// A well-formed segment: batches at increasing offsets from 0.
fn segment(batches: &[BytesMut], gaps: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = 0u64;
    for (i, b) in batches.iter().enumerate() {
        next += gaps.get(i).copied().unwrap_or(0);
        let bytes = at(b.clone(), next, i as i32 / 2);
        next = batch::BatchHeader::parse(&bytes).expect("built").next_offset();
        out.extend_from_slice(&bytes);
    }
    out
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed dir");
    std::fs::write(dir.join(name), data).expect("write seed");
}

/// Header and body of one request frame, as `decode_request` takes it.
fn request_frame(api: ApiKey, version: i16, client_id: Option<&'static str>, body: RequestKind) -> Vec<u8> {
    let mut header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(client_id.map(StrBytes::from_static_str));
    if api.request_header_version(version) >= 2 {
        header = header.with_unknown_tagged_field(9, Bytes::from_static(b"hdr"));
    }
    let mut buf = BytesMut::new();
    header.encode(&mut buf, api.request_header_version(version)).expect("encode header");
    body.encode(&mut buf, version).expect("encode request");
    buf.to_vec()
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

/// Valid requests of several APIs and versions, flexible and not, with
/// nested arrays, nulls, known and unknown tagged fields.
fn kafka_requests() -> Vec<(&'static str, Vec<u8>)> {
    let batch = build(&[rec(None, Some(b"k"), Some(b"v"), &[])]).freeze();
    let produce = |v: i16| {
        let partitions = vec![
            PartitionProduceData::default().with_index(0).with_records(Some(batch.clone())),
            PartitionProduceData::default().with_index(1).with_records(None),
        ];
        let t = TopicProduceData::default().with_partition_data(partitions);
        let t = if v <= 12 { t.with_name(topic("orders")) } else { t };
        RequestKind::Produce(
            ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn"))))
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![t]),
        )
    };
    let fetch = |v: i16| {
        let p = FetchPartition::default().with_partition(3).with_fetch_offset(100).with_partition_max_bytes(1 << 20);
        let p = if v >= 18 { p.with_high_watermark(500) } else { p };
        let t = FetchTopic::default().with_partitions(vec![p]);
        let t = if v <= 12 { t.with_topic(topic("orders")) } else { t };
        let forgotten = ForgottenTopic::default().with_partitions(vec![7, 8]);
        let forgotten = if v <= 12 { forgotten.with_topic(topic("old")) } else { forgotten };
        let mut r = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![t]);
        if v >= 7 {
            r = r.with_session_id(11).with_session_epoch(2).with_forgotten_topics_data(vec![forgotten]);
        }
        if v >= 11 {
            r = r.with_rack_id(StrBytes::from_static_str("rack-a"));
        }
        if v >= 12 {
            r = r
                .with_cluster_id(Some(StrBytes::from_static_str("cluster")))
                .with_unknown_tagged_field(5, Bytes::new());
        }
        if v >= 15 {
            r = r.with_replica_state(ReplicaState::default().with_replica_id(BrokerId(2)).with_replica_epoch(7));
        }
        RequestKind::Fetch(r)
    };
    let metadata = |v: i16, names: &[&'static str]| {
        let topics = names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(topic(n)))).collect();
        let r = MetadataRequest::default().with_topics(Some(topics));
        RequestKind::Metadata(if v >= 4 { r.with_allow_auto_topic_creation(false) } else { r })
    };
    let join = RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("group")))
            .with_session_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff])),
            ]),
    );
    let commit = RequestKind::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("group")))
            .with_generation_id_or_member_epoch(3)
            .with_member_id(StrBytes::from_static_str("member-1"))
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic("orders")).with_partitions(vec![
                OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(42),
                OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(7)
                    .with_committed_metadata(Some(StrBytes::from_static_str("meta"))),
            ])]),
    );
    let offset_fetch = RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(StrBytes::from_static_str("group"))).with_topics(
            Some(vec![
                OffsetFetchRequestTopics::default().with_name(topic("orders")).with_partition_indexes(vec![0, 1, 2]),
            ]),
        ),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(StrBytes::from_static_str("all"))).with_topics(None),
    ]));
    let create_topics =
        RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
            CreatableTopic::default()
                .with_name(topic("new"))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![
                    CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(1)]),
                ])
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("cleanup.policy"))
                        .with_value(Some(StrBytes::from_static_str("compact"))),
                ]),
        ]));
    let heartbeat = RequestKind::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("group")))
            .with_member_id(StrBytes::from_static_str("m"))
            .with_subscribed_topic_names(Some(vec![topic("orders")]))
            .with_topic_partitions(Some(vec![TopicPartitions::default().with_partitions(vec![0, 1])])),
    );
    let api_versions = RequestKind::ApiVersions(
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("librdkafka"))
            .with_client_software_version(StrBytes::from_static_str("2.6.0")),
    );
    vec![
        ("produce_v3", request_frame(ApiKey::Produce, 3, Some("producer"), produce(3))),
        ("produce_v9", request_frame(ApiKey::Produce, 9, None, produce(9))),
        ("produce_v13", request_frame(ApiKey::Produce, 13, Some("p"), produce(13))),
        ("fetch_v4", request_frame(ApiKey::Fetch, 4, Some("consumer"), fetch(4))),
        ("fetch_v12", request_frame(ApiKey::Fetch, 12, Some("consumer"), fetch(12))),
        ("fetch_v18", request_frame(ApiKey::Fetch, 18, Some("consumer"), fetch(18))),
        ("metadata_v0", request_frame(ApiKey::Metadata, 0, Some("kafka-python"), metadata(0, &["a", "b"]))),
        ("metadata_v12", request_frame(ApiKey::Metadata, 12, Some("rdkafka"), metadata(12, &["orders"]))),
        (
            "metadata_v12_all",
            request_frame(
                ApiKey::Metadata,
                12,
                None,
                RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
            ),
        ),
        ("join_group_v9", request_frame(ApiKey::JoinGroup, 9, Some("c"), join)),
        ("offset_commit_v8", request_frame(ApiKey::OffsetCommit, 8, Some("c"), commit)),
        ("offset_fetch_v9", request_frame(ApiKey::OffsetFetch, 9, Some("c"), offset_fetch)),
        ("create_topics_v7", request_frame(ApiKey::CreateTopics, 7, Some("admin"), create_topics)),
        ("consumer_group_heartbeat_v1", request_frame(ApiKey::ConsumerGroupHeartbeat, 1, Some("c"), heartbeat)),
        ("api_versions_v3", request_frame(ApiKey::ApiVersions, 3, Some("c"), api_versions)),
    ]
}

/// RocketMQ subscription expressions, SQL92 and tag lists, covering every
/// operator, comments, quoting, numbers at their limits and nesting.
fn filter_expressions() -> Vec<(&'static str, &'static str)> {
    vec![
        ("tags", "TagA || TagB ||TagC"),
        ("tags_all", "*"),
        ("logic", "a = 3 and b <> 4 And c > 5 AND d <= 4 OR NOT (e >= 1.5 OR f < -2)"),
        ("between_in", "(a between 2 and 10) AND (b not between 6 and 9) AND c IN ('x', 'it''s') AND d NOT IN ('y')"),
        ("null_tests", "a IS NULL OR a = 'hello' OR (b IS NOT NULL AND NOT c)"),
        ("contains", "TAGS is not null and TAGS CONTAINS 'A' AND b NOT STARTSWITH 'x' AND c ENDSWITH 'z'"),
        ("numbers", "a > 9223372036854775807 OR b < 2147483648L OR c = .5 OR d >= 1.5E-3 OR e = - -1"),
        ("booleans", "a = TRUE OR b <> FALSE OR (c = 1) = TRUE OR NULL"),
        ("comments", "a = 1 /* block */ AND -- line\n b = 'x'"),
        ("nested", "((((a = 1) OR (b = 2)) AND NOT NOT (c > 3)) OR d BETWEEN -1 AND 1)"),
        ("precedence", "NOT a = 1 AND a IS NULL IS NULL OR 'x' CONTAINS 'x' CONTAINS 'y'"),
    ]
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into());
    let out = Path::new(&out);

    let singles = single_batches();
    for (name, b) in &singles {
        write(&out.join("batch_validate"), name, b);
    }
    let concat: Vec<u8> = singles.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    write(&out.join("batch_decode"), "mixed_headers", &singles[1].1);
    write(&out.join("batch_decode"), "transactional", &singles[2].1);
    write(&out.join("batch_decode"), "log_append_time", &singles[4].1);
    write(&out.join("batch_decode"), "concatenated", &concat);
    write(&out.join("batch_decode"), "torn_tail", &concat[..concat.len() - 9]);

    let small = |k: &[u8], v: &[u8]| build(&[rec(None, Some(k), Some(v), &[]), rec(Some(TS + 1), None, Some(v), &[])]);
    let big = |fill: u8| build(&[rec(None, Some(b"big"), Some(&vec![fill; 4200]), &[(b"h", Some(b"1"))])]);
    let three = segment(&[small(b"a", b"1"), small(b"b", b"2"), small(b"c", b"3")], &[]);
    write(&out.join("log_recovery"), "three_batches", &three);
    let mut torn = three.clone();
    torn.truncate(three.len() - 20);
    write(&out.join("log_recovery"), "torn_tail", &torn);
    let mut corrupt = three.clone();
    let mid = three.len() / 2;
    corrupt[mid] ^= 0x55;
    write(&out.join("log_recovery"), "corrupt_middle", &corrupt);
    let indexed = segment(&[big(b'x'), small(b"d", b"4"), big(b'y'), small(b"e", b"5")], &[]);
    write(&out.join("log_recovery"), "indexed", &indexed);
    let gzip = with_attributes(small(b"g", b"z"), 1);
    let control = with_attributes(build(&[rec(None, Some(&[0, 0, 0, 0]), Some(&[0, 0, 0, 0, 0, 0]), &[])]), 0x30);
    let gappy = segment(&[small(b"f", b"6"), control, gzip, small(b"h", b"7")], &[0, 10, 1000, 3]);
    write(&out.join("log_recovery"), "gaps_control_gzip", &gappy);

    for (name, frame) in kafka_requests() {
        write(&out.join("kafka_request"), name, &frame);
    }
    // Frames that made kafka-protocol abort on a 2^31-element allocation
    // before the guard existed.
    let killers: [(&str, &[u8]); 3] = [
        ("killer_metadata_v12", &[0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0x80, 0x80, 0x80, 0x80, 0x08]),
        ("killer_metadata_v0", &[0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]),
        (
            "killer_produce_v9",
            &[0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0x75, 0x30, 0x80, 0x80, 0x80, 0x80, 0x08],
        ),
    ];
    for (name, frame) in killers {
        write(&out.join("kafka_request"), name, frame);
    }

    for (name, expression) in filter_expressions() {
        write(&out.join("filter_parse"), name, expression.as_bytes());
    }
}
