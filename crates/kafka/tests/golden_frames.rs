//! The request frames captured from real clients (`fjord-kafka-codec`'s
//! `tests/golden`: librdkafka, kafka-python, the Java client), replayed through the
//! gateway in the order each client sent them: every one is answered (a
//! Produce with acks=0 excepted) with a response of its API and version
//! that decodes completely and carries its correlation id.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use bytes::{Buf, Bytes};
use fjord_broker::{Broker, BrokerConfig, TopicConfig};
use fjord_kafka::{KafkaConfig, KafkaGateway};
use fjord_kafka_codec::kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use fjord_kafka_codec::kafka_protocol::protocol::Decodable;
use fjord_kafka_codec::{CodecError, decode_request};
use fjord_log::SystemClock;

fn golden_frames(client: &str) -> Vec<(String, Bytes)> {
    let dir = format!("{}/../kafka-codec/tests/golden", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Bytes)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(client))
        .map(|n| {
            let hex = std::fs::read_to_string(format!("{dir}/{n}")).unwrap();
            let hex = hex.trim();
            let bytes: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            (n, Bytes::copy_from_slice(&bytes[4..]))
        })
        .collect();
    // In the order the client sent them: by correlation id.
    out.sort_by_key(|(_, f)| i32::from_be_bytes([f[4], f[5], f[6], f[7]]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_captured_request_gets_a_complete_response_of_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path()), Arc::new(SystemClock)).await.unwrap();
    let gw = KafkaGateway::new(broker.clone(), KafkaConfig::default());
    for client in ["librdkafka_", "kafka_python_", "java_"] {
        // The topics the clients created are gone: each client's frames
        // start from a broker that has them (CreateTopics then answers
        // TOPIC_ALREADY_EXISTS, which must decode as well).
        for t in ["golden-rd", "golden-kp", "golden-java"] {
            if broker.topic(t).is_none() {
                broker.create_topic(t, 2, TopicConfig::default()).await.unwrap();
            }
        }
        let frames = golden_frames(client);
        assert!(frames.len() >= 13, "{client}: {} frames", frames.len());
        for (name, frame) in frames {
            let (api, version, correlation_id) = match decode_request(frame.clone()) {
                Ok(r) => (r.api, r.header.request_api_version, r.header.correlation_id),
                // A newer ApiVersions (the Java client's v5) is answered in
                // v0 with UNSUPPORTED_VERSION and the versions spoken here
                // (KIP-511), so the client retries with one of them.
                Err(CodecError::UnsupportedVersion { api: ApiKey::ApiVersions, correlation_id, .. }) => {
                    (ApiKey::ApiVersions, 0, correlation_id)
                }
                Err(e) => panic!("{name}: {e}"),
            };
            let Some(out) = gw.handle_frame(frame, "127.0.0.1").await.unwrap() else {
                panic!("{name}: no response");
            };
            let mut body = out.slice(4..);
            assert_eq!(u32::from_be_bytes(out[..4].try_into().unwrap()) as usize, body.len(), "{name}: size");
            let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
            assert_eq!(header.correlation_id, correlation_id, "{name}");
            let response = ResponseKind::decode(api, &mut body, version).unwrap_or_else(|e| panic!("{name}: {e}"));
            if let ResponseKind::ApiVersions(r) = &response
                && version == 0
            {
                assert_eq!(r.error_code, 35, "{name}: UNSUPPORTED_VERSION");
                let own = r.api_keys.iter().find(|k| k.api_key == ApiKey::ApiVersions as i16).unwrap();
                assert_eq!(own.max_version, 4, "{name}");
            }
            assert!(!body.has_remaining(), "{name}: {} bytes after the response", body.remaining());
        }
    }
    broker.shutdown().await.unwrap();
}
