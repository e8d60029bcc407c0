//! Golden bytes (the format is frozen: peers of different versions meet in
//! rolling upgrades), round trips and hostile input.

use bytes::{Bytes, BytesMut};
use fjord_cluster_codec::*;
use proptest::prelude::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn golden_hello_request() {
    let hello = Hello { version: Hello::VERSION, cluster_id: "fjord".into(), node_id: 3 };
    let f = Frame::request(Kind::Hello, 7, hello.encode().unwrap());
    let mut out = BytesMut::new();
    encode(&f, &mut out).unwrap();
    // len=7+16 | kind=1 | flags=0 | corr=7 | version=1 | node=3 | 5 "fjord"
    assert_eq!(hex(&out), "00000017000100000000070001000000000000000305666a6f7264");
    let back = decode(&mut out, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(Hello::decode(back.body.clone()).unwrap(), hello);
    assert!(out.is_empty());
}

#[test]
fn golden_heartbeat_error_response() {
    let req = Frame::request(Kind::Heartbeat, 1, Heartbeat { node_id: 2, incarnation: 9, applied: None }.encode());
    let mut out = BytesMut::new();
    encode(&req.error("not the leader"), &mut out).unwrap();
    assert_eq!(hex(&out[..11]), "00000015000603".to_string() + "00000001");
    let back = decode(&mut out, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert!(back.is_response());
    assert_eq!(back.error_message().as_deref(), Some("not the leader"));
}

#[test]
fn golden_service_call() {
    let call = ServiceCall { service: "m.s".into(), payload: Bytes::from_static(b"{}") };
    let f = Frame::request(Kind::Service, 5, call.encode().unwrap());
    let mut out = BytesMut::new();
    encode(&f, &mut out).unwrap();
    // len=7+6 | kind=8 | flags=0 | corr=5 | 3 "m.s" | "{}"
    assert_eq!(hex(&out), "0000000d00080000000005036d2e737b7d");
    let back = decode(&mut out, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(ServiceCall::decode(back.body).unwrap(), call);
    assert!(ServiceCall::decode(Bytes::from_static(&[0])).is_err(), "empty name");
    assert!(ServiceCall::decode(Bytes::from_static(&[4, b'a'])).is_err(), "short name");
    assert!(ServiceCall::decode(Bytes::from_static(&[1, 0xff])).is_err(), "not UTF-8");
    assert!(ServiceCall { service: "x".repeat(256), payload: Bytes::new() }.encode().is_err());
}

#[test]
fn golden_replica_fetch() {
    let fetch = ReplicaFetch {
        max_wait_ms: 500,
        max_bytes: 1 << 20,
        partitions: vec![FetchPartition {
            topic: "t".into(),
            partition: 2,
            leader_epoch: 3,
            fetch_offset: 10,
            last_fetched_epoch: 1,
            durable_offset: 8,
        }],
    };
    let f = Frame::request(Kind::ReplicaFetch, 1, fetch.encode().unwrap());
    let mut out = BytesMut::new();
    encode(&f, &mut out).unwrap();
    // len | kind=9 | flags=0 | corr=1 | wait=500 | bytes=1 MiB | count=1 |
    // 1 "t" | partition=2 | epoch=3 | offset=10 | last epoch=1 | durable=8
    assert_eq!(
        hex(&out),
        "00000032000900000000010000\
         01f400100000000000010001740000000200000003\
         000000000000000a000000010000000000000008"
    );
    let back = decode(&mut out, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(ReplicaFetch::decode(back.body).unwrap(), fetch);
}

#[test]
fn golden_replica_fetch_response() {
    let resp = ReplicaFetchResponse {
        partitions: vec![
            FetchedPartition {
                topic: "t".into(),
                partition: 0,
                status: FetchStatus::Ok,
                leader_epoch: 3,
                high_watermark: 5,
                log_start: 0,
                diverging: None,
                records: Bytes::from_static(b"ab"),
            },
            FetchedPartition {
                topic: "t".into(),
                partition: 1,
                status: FetchStatus::Diverging,
                leader_epoch: 3,
                high_watermark: 4,
                log_start: 0,
                diverging: Some((2, 7)),
                records: Bytes::new(),
            },
        ],
    };
    let body = resp.encode().unwrap();
    assert_eq!(
        hex(&body[..48]),
        "00000002000174000000000000000003000000000000000500000000000000\
         00ffffffff000000000000000000000002"
    );
    assert_eq!(&body[48..50], b"ab");
    assert_eq!(&body[57..58], &[6], "status diverging");
    assert_eq!(ReplicaFetchResponse::decode(body).unwrap(), resp);
}

#[test]
fn replica_fetch_counts_are_checked_before_allocating() {
    // A count of 2^32-1 partitions in a 16-byte body.
    let body = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    assert!(ReplicaFetch::decode(body).is_err());
    let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    assert!(ReplicaFetchResponse::decode(body).is_err());
    // Records longer than the body.
    let mut b = BytesMut::new();
    b.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't']);
    b.extend_from_slice(&[0; 4 + 1 + 4 + 8 + 8]);
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[0, 0, 0, 9, 1]);
    assert!(ReplicaFetchResponse::decode(b.freeze()).is_err());
}

fn fetch_partition() -> impl Strategy<Value = FetchPartition> {
    ("[a-z_.-]{1,20}", any::<u32>(), any::<i32>(), any::<u64>(), any::<i32>(), any::<u64>()).prop_map(
        |(topic, partition, leader_epoch, fetch_offset, last_fetched_epoch, durable_offset)| FetchPartition {
            topic,
            partition,
            leader_epoch,
            fetch_offset,
            last_fetched_epoch,
            durable_offset,
        },
    )
}

fn fetched_partition() -> impl Strategy<Value = FetchedPartition> {
    (
        "[a-z_.-]{1,20}",
        any::<u32>(),
        any::<u8>(),
        any::<i32>(),
        (any::<u64>(), any::<u64>()),
        proptest::option::of((0i32..i32::MAX, any::<u64>())),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(topic, partition, status, leader_epoch, (high_watermark, log_start), diverging, records)| {
            FetchedPartition {
                topic,
                partition,
                status: match status % 8 {
                    0 => FetchStatus::Ok,
                    1 => FetchStatus::NotLeader,
                    2 => FetchStatus::FencedLeaderEpoch,
                    3 => FetchStatus::UnknownLeaderEpoch,
                    4 => FetchStatus::UnknownPartition,
                    5 => FetchStatus::OffsetOutOfRange,
                    6 => FetchStatus::Diverging,
                    _ => FetchStatus::Unknown(status.max(7)),
                },
                leader_epoch,
                high_watermark,
                log_start,
                diverging,
                records: records.into(),
            }
        })
}

proptest! {
    #[test]
    fn replica_fetches_round_trip(
        max_wait_ms in any::<u32>(), max_bytes in any::<u32>(),
        partitions in proptest::collection::vec(fetch_partition(), 0..5),
        answers in proptest::collection::vec(fetched_partition(), 0..5),
    ) {
        let f = ReplicaFetch { max_wait_ms, max_bytes, partitions };
        prop_assert_eq!(ReplicaFetch::decode(f.encode().unwrap()).unwrap(), f);
        let r = ReplicaFetchResponse { partitions: answers };
        prop_assert_eq!(ReplicaFetchResponse::decode(r.encode().unwrap()).unwrap(), r);
    }
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let f = Frame::request(Kind::RaftAppend, 42, Bytes::from_static(b"{\"entries\":[]}"));
    let mut whole = BytesMut::new();
    encode(&f, &mut whole).unwrap();
    let mut buf = BytesMut::new();
    for (i, b) in whole.iter().enumerate() {
        assert_eq!(decode(&mut buf, DEFAULT_MAX_FRAME).unwrap(), None, "complete after {i} bytes?");
        buf.extend_from_slice(&[*b]);
    }
    assert_eq!(decode(&mut buf, DEFAULT_MAX_FRAME).unwrap(), Some(f));
}

#[test]
fn hostile_prefixes_are_refused_before_allocating() {
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0, 1][..]);
    assert_eq!(decode(&mut buf, 1 << 20), Err(CodecError::TooLarge { len: u32::MAX, max: 1 << 20 }));
    assert!(buf.capacity() < 1024, "nothing reserved for a refused frame");
    let mut short = BytesMut::from(&[0, 0, 0, 3, 0, 1, 0][..]);
    assert_eq!(decode(&mut short, 1 << 20), Err(CodecError::TooShort(3)));
    let mut flags = BytesMut::from(&[0, 0, 0, 7, 0, 1, 0x80, 0, 0, 0, 1][..]);
    assert_eq!(decode(&mut flags, 1 << 20), Err(CodecError::BadFlags(0x80)));
    // An error flag without the response flag is meaningless.
    let mut err_req = BytesMut::from(&[0, 0, 0, 7, 0, 1, 0x02, 0, 0, 0, 1][..]);
    assert_eq!(decode(&mut err_req, 1 << 20), Err(CodecError::BadFlags(2)));
}

#[test]
fn unknown_kinds_decode_so_they_can_be_answered() {
    let mut buf = BytesMut::from(&[0, 0, 0, 7, 0x12, 0x34, 0, 0, 0, 0, 9][..]);
    let f = decode(&mut buf, 1 << 20).unwrap().unwrap();
    assert_eq!(f.kind, Kind::Unknown(0x1234));
    let mut out = BytesMut::new();
    encode(&f.error("unsupported"), &mut out).unwrap();
    assert_eq!(&out[4..6], &[0x12, 0x34]);
}

#[test]
fn bodies_reject_short_and_trailing_bytes() {
    let hb = Heartbeat { node_id: 1, incarnation: 2, applied: None }.encode();
    assert!(Heartbeat::decode(hb.slice(..15)).is_err());
    let mut long = BytesMut::from(&hb[..]);
    long.extend_from_slice(&[0]);
    assert!(Heartbeat::decode(long.freeze()).is_err());
    // With the applied index (24 bytes), and an earlier version's 16.
    let with = Heartbeat { node_id: 1, incarnation: 2, applied: Some(77) };
    assert_eq!(with.encode().len(), 24);
    assert_eq!(Heartbeat::decode(with.encode()).unwrap(), with);
    assert_eq!(Heartbeat::decode(hb).unwrap().applied, None);
    let mut longer = BytesMut::from(&with.encode()[..]);
    longer.extend_from_slice(&[0]);
    assert!(Heartbeat::decode(longer.freeze()).is_err());
    assert!(Hello::decode(Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, b'a'])).is_err());
    assert!(Hello { version: 1, cluster_id: "x".repeat(256), node_id: 1 }.encode().is_err());
    let ack = HeartbeatAck { lease_ms: 3000, metadata_index: 17 };
    assert_eq!(HeartbeatAck::decode(ack.encode()).unwrap(), ack);
}

fn kind() -> impl Strategy<Value = Kind> {
    any::<u16>().prop_map(Kind::from_code)
}

proptest! {
    #[test]
    fn frames_round_trip_in_a_stream(frames in proptest::collection::vec(
        (kind(), prop_oneof![Just(0u8), Just(FLAG_RESPONSE), Just(FLAG_RESPONSE | FLAG_ERROR)], any::<u32>(),
         proptest::collection::vec(any::<u8>(), 0..300)),
        1..8)) {
        let frames: Vec<Frame> = frames.into_iter()
            .map(|(kind, flags, correlation, body)| Frame { kind, flags, correlation, body: body.into() })
            .collect();
        let mut buf = BytesMut::new();
        for f in &frames {
            encode(f, &mut buf).unwrap();
        }
        for f in &frames {
            let got = decode(&mut buf, DEFAULT_MAX_FRAME).unwrap();
            prop_assert_eq!(got.as_ref(), Some(f));
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn kind_codes_round_trip(c in any::<u16>()) {
        prop_assert_eq!(Kind::from_code(c).code(), c);
    }

    #[test]
    fn hello_round_trips(version in any::<u16>(), node_id in any::<u64>(), cluster_id in "\\PC{0,40}") {
        let h = Hello { version, cluster_id, node_id };
        if let Ok(b) = h.encode() {
            prop_assert_eq!(Hello::decode(b).unwrap(), h);
        }
    }

    #[test]
    fn service_calls_round_trip(service in "[a-z.]{1,40}", payload in proptest::collection::vec(any::<u8>(), 0..100)) {
        let c = ServiceCall { service, payload: payload.into() };
        prop_assert_eq!(ServiceCall::decode(c.encode().unwrap()).unwrap(), c);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(f)) = decode(&mut buf, 4096) {
            let _ = Hello::decode(f.body.clone());
            let _ = Heartbeat::decode(f.body.clone());
            let _ = ReplicaFetch::decode(f.body.clone());
            let _ = ReplicaFetchResponse::decode(f.body.clone());
            let _ = HeartbeatAck::decode(f.body.clone());
            let _ = ServiceCall::decode(f.body);
        }
    }
}
