//! Hostile Kafka frames against a real `fjord serve`: each one must cost
//! its sender the connection and nothing else; the process stays up and
//! other clients are served.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use fjord_kafka_codec::kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use fjord_kafka_codec::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

/// Sends `bytes` and expects the broker to close the connection without
/// answering (EOF or reset).
fn expect_closed(addr: &str, bytes: &[u8]) {
    let mut s = connect(addr);
    // The broker may close before reading everything: a write error is fine.
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected the connection to be closed, got {n} bytes: {:?}", &buf[..n]),
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
            "expected close, got {e}"
        ),
    }
}

/// A Metadata v12 request for all topics, answered in full.
fn metadata_roundtrip(addr: &str) -> MetadataResponse {
    let version = 12;
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("hostile-test")))
        .encode(&mut body, ApiKey::Metadata.request_header_version(version))
        .unwrap();
    MetadataRequest::default().with_topics(None).encode(&mut body, version).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    let mut s = connect(addr);
    s.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    let mut buf = bytes::Bytes::from(resp);
    let header = ResponseHeader::decode(&mut buf, ApiKey::Metadata.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 42);
    MetadataResponse::decode(&mut buf, version).unwrap()
}

#[test]
fn hostile_frames_close_their_connection_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    let addr = server.kafka.clone();
    let before = metadata_roundtrip(&addr);
    assert_eq!(before.brokers.len(), 1);

    let hostile = [
        // Metadata v12, topic array length 0x7fffffff as a compact varint.
        "00 00 00 10 00 03 00 0c 00 00 00 01 ff ff 00 80 80 80 80 08",
        // Metadata v0, topic array length 0x7fffffff.
        "00 00 00 0e 00 03 00 00 00 00 00 01 ff ff 7f ff ff ff",
        // Produce v9, topic array length 0x7fffffff as a compact varint.
        "00 00 00 17 00 00 00 09 00 00 00 01 ff ff 00 00 ff ff 00 00 75 30 80 80 80 80 08",
        // A frame shorter than a request header.
        "00 00 00 03 00 03 00",
        // A negative frame size.
        "ff ff ff f0 00 03 00 0c",
        // A frame size above the limit (2 GiB - 1): refused before reading.
        "7f ff ff ff 00 00 00 09",
        // A Metadata request claiming 16 MiB: above the limit for non-Produce APIs.
        "01 00 00 00 00 03 00 0c",
        // Unknown API key 999.
        "00 00 00 0a 03 e7 00 00 00 00 00 01 ff ff",
        // Metadata v99: a version nobody speaks.
        "00 00 00 0a 00 03 00 63 00 00 00 01 ff ff",
    ];
    for frame in hostile {
        expect_closed(&addr, &hex(frame));
        // Every time, another client is still served in full.
        let after = metadata_roundtrip(&addr);
        assert_eq!(after.cluster_id, before.cluster_id, "after {frame}");
    }
    assert_eq!(server.terminate().code(), Some(0), "the broker must shut down cleanly after all that");
}

#[test]
fn api_versions_in_an_unknown_version_gets_the_supported_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    // ApiVersions v99 with correlation id 7: answered in v0 with
    // UNSUPPORTED_VERSION (35) and the list, as KIP-511 asks.
    let mut s = connect(&server.kafka);
    s.write_all(&hex("00 00 00 0a 00 12 00 63 00 00 00 07 ff ff")).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    assert_eq!(&resp[..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(&resp[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    let count = i32::from_be_bytes(resp[6..10].try_into().unwrap());
    assert!(count > 20, "the supported API list comes with the error ({count} entries)");
    server.terminate();
}
