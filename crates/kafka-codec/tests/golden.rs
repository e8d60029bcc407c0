//! Golden frames: request frames captured from real clients (librdkafka
//! through confluent-kafka 2.16, kafka-python 3.0, the Java client 4.4.0)
//! with
//! `tests/capture/kafka_proxy.py`, named `<client>_<api>_v<version>.hex`.
//! Each one decodes under the guard as the API and version it was sent as,
//! and encodes back to exactly the bytes the client sent; a few are checked
//! field by field.

mod common;

use bytes::Bytes;
use fjord_kafka_codec::kafka_protocol::messages::{ApiKey, RequestKind};
use fjord_kafka_codec::{CodecError, decode_request};

fn dir() -> String {
    format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR"))
}

/// A golden frame without its size prefix (checked against its length).
fn golden(name: &str) -> Bytes {
    let hex = std::fs::read_to_string(format!("{}/{name}.hex", dir())).expect("golden file");
    let hex = hex.trim();
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
    let (size, frame) = bytes.split_at(4);
    assert_eq!(u32::from_be_bytes(size.try_into().expect("4 bytes")) as usize, frame.len(), "{name}: size prefix");
    Bytes::copy_from_slice(frame)
}

fn api_named(name: &str) -> ApiKey {
    match name {
        "produce" => ApiKey::Produce,
        "fetch" => ApiKey::Fetch,
        "list_offsets" => ApiKey::ListOffsets,
        "metadata" => ApiKey::Metadata,
        "offset_commit" => ApiKey::OffsetCommit,
        "offset_fetch" => ApiKey::OffsetFetch,
        "find_coordinator" => ApiKey::FindCoordinator,
        "join_group" => ApiKey::JoinGroup,
        "heartbeat" => ApiKey::Heartbeat,
        "leave_group" => ApiKey::LeaveGroup,
        "sync_group" => ApiKey::SyncGroup,
        "api_versions" => ApiKey::ApiVersions,
        "create_topics" => ApiKey::CreateTopics,
        "delete_topics" => ApiKey::DeleteTopics,
        "init_producer_id" => ApiKey::InitProducerId,
        "describe_configs" => ApiKey::DescribeConfigs,
        "consumer_group_heartbeat" => ApiKey::ConsumerGroupHeartbeat,
        "describe_groups" => ApiKey::DescribeGroups,
        "consumer_group_describe" => ApiKey::ConsumerGroupDescribe,
        other => panic!("no API named {other}"),
    }
}

#[test]
fn every_captured_frame_decodes_as_sent_and_encodes_back_to_the_same_bytes() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("golden dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().trim_end_matches(".hex").to_string())
        .collect();
    names.sort();
    assert!(names.len() >= 48, "{} golden frames", names.len());
    for name in names {
        // <client>_<api>_v<version>: split at the known client names.
        let rest = ["librdkafka_", "kafka_python_", "java_"]
            .iter()
            .find_map(|c| name.strip_prefix(c))
            .unwrap_or_else(|| panic!("{name}: unknown client"));
        let (api, version) = rest.rsplit_once("_v").expect("version");
        let (api, version) = (api_named(api), version.parse::<i16>().expect("version number"));
        let bytes = golden(&name);
        if name == UNSUPPORTED {
            continue;
        }
        let frame = decode_request(bytes.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((frame.api, frame.header.request_api_version), (api, version), "{name}");
        let again = common::encode(&frame.header, &frame.request, api, version);
        assert_eq!(again, bytes, "{name}: encoding what was decoded gives other bytes");
    }
}

/// The Java client 4.4 opens with ApiVersions v5, newer than any this
/// broker (and `kafka-protocol`) speaks.
const UNSUPPORTED: &str = "java_api_versions_v5";

/// Refused as an unsupported version, with what the gateway needs to answer
/// it in v0 (KIP-511): the Java client then retries with v4.
#[test]
fn a_newer_api_versions_is_refused_with_its_correlation_id() {
    match decode_request(golden(UNSUPPORTED)) {
        Err(CodecError::UnsupportedVersion { api: ApiKey::ApiVersions, version: 5, correlation_id, .. }) => {
            assert_eq!(correlation_id, 0)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_idempotent_librdkafka_produce_carries_one_lz4_batch_with_its_producer_id() {
    let frame = decode_request(golden("librdkafka_produce_v10")).expect("decodes");
    let RequestKind::Produce(p) = frame.request else { panic!("not a produce") };
    assert_eq!((p.acks, p.transactional_id.is_none()), (-1, true));
    let t = &p.topic_data[0];
    assert_eq!(t.name.as_str(), "golden-rd");
    let records = t.partition_data[0].records.as_ref().expect("records");
    // Record batch v2: attributes at 21, producer id at 43, sequence at 53.
    assert_eq!(records[16], 2, "magic");
    let attributes = i16::from_be_bytes([records[21], records[22]]);
    assert_eq!(attributes & 0x7, 3, "lz4");
    let producer_id = i64::from_be_bytes(records[43..51].try_into().expect("8 bytes"));
    assert!(producer_id >= 0, "idempotent: a producer id");
}

#[test]
fn the_new_consumer_protocol_heartbeat_names_its_group_and_subscription() {
    let frame = decode_request(golden("librdkafka_consumer_group_heartbeat_v1")).expect("decodes");
    let RequestKind::ConsumerGroupHeartbeat(h) = frame.request else { panic!("not a heartbeat") };
    assert_eq!(h.group_id.as_str(), "golden-rd-consumer");
    assert_eq!(h.member_epoch, 0, "the first heartbeat joins");
    let topics: Vec<&str> = h.subscribed_topic_names.iter().flatten().map(|t| t.as_str()).collect();
    assert_eq!(topics, ["golden-rd"]);
}

#[test]
fn a_kafka_python_join_names_the_consumer_protocol_and_its_assignors() {
    let frame = decode_request(golden("kafka_python_join_group_v7")).expect("decodes");
    let RequestKind::JoinGroup(j) = frame.request else { panic!("not a join") };
    assert_eq!((j.group_id.as_str(), j.protocol_type.as_str()), ("golden-kp", "consumer"));
    assert!(!j.protocols.is_empty());
    assert!(j.protocols.iter().any(|p| p.name.as_str() == "range"), "{:?}", j.protocols);
}

#[test]
fn a_java_produce_names_its_topic_by_id_and_sends_zstd() {
    let frame = decode_request(golden("java_produce_v13")).expect("decodes");
    let RequestKind::Produce(p) = frame.request else { panic!("not a produce") };
    let t = &p.topic_data[0];
    assert!(t.name.is_empty() && !t.topic_id.is_nil(), "v13 names topics by id only");
    let records = t.partition_data[0].records.as_ref().expect("records");
    let attributes = i16::from_be_bytes([records[21], records[22]]);
    assert_eq!(attributes & 0x7, 4, "zstd");
}
