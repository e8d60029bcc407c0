//! Hostile frames are errors, never aborts: the known killer frames, huge
//! counts patched into real requests, truncations at every byte, and random
//! corruption.

mod common;

use bytes::Bytes;
use common::Gen;
use fjord_kafka_codec::frame::decode_budget;
use fjord_kafka_codec::kafka_protocol::messages::ApiKey;
use fjord_kafka_codec::{CodecError, SUPPORTED_APIS, decode_request};
use proptest::prelude::*;

fn hex(s: &str) -> Bytes {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("hex"), 16).expect("hex"))
        .collect::<Vec<u8>>()
        .into()
}

fn reason(r: Result<fjord_kafka_codec::RequestFrame, CodecError>) -> String {
    match r {
        Ok(f) => panic!("hostile frame decoded: {f:?}"),
        Err(CodecError::Malformed { reason, .. }) => reason,
        Err(e) => panic!("expected Malformed, got {e}"),
    }
}

/// If a mutated frame decodes, it must be a real request: encoding it again
/// and decoding that gives the same request.
fn check_consistent(frame: Bytes) {
    let len = frame.len();
    if let Ok(f) = decode_request(frame) {
        let bytes = common::encode(&f.header, &f.request, f.api, f.header.request_api_version);
        let again = decode_request(bytes).unwrap_or_else(|e| panic!("re-encoded request ({len} bytes) fails: {e}"));
        assert_eq!(again.header, f.header);
        assert_eq!(again.request, f.request);
    }
}

#[test]
fn metadata_v12_with_a_2_pow_31_compact_count_is_malformed() {
    let r = reason(decode_request(hex("00 03 00 0c 00 00 00 01 ff ff 00 80 80 80 80 08")));
    assert!(r.contains("MetadataRequest.Topics at byte 11"), "{r}");
    assert!(r.contains("2147483647 elements"), "{r}");
}

#[test]
fn metadata_v0_with_a_2_pow_31_count_is_malformed() {
    let r = reason(decode_request(hex("00 03 00 00 00 00 00 01 ff ff 7f ff ff ff")));
    assert!(r.contains("MetadataRequest.Topics at byte 10"), "{r}");
}

#[test]
fn produce_v9_with_a_2_pow_31_topic_count_is_malformed() {
    let r = reason(decode_request(hex("00 00 00 09 00 00 00 01 ff ff 00 00 ff ff 00 00 75 30 80 80 80 80 08")));
    assert!(r.contains("ProduceRequest.TopicData at byte 18"), "{r}");
}

#[test]
fn other_hostile_shapes_are_malformed() {
    let cases = [
        // Header: a huge unknown-tag count, and a tag claiming 2^31 bytes.
        ("00 03 00 0c 00 00 00 01 ff ff 80 80 80 80 08", "RequestHeader.<tagged fields>"),
        ("00 03 00 0c 00 00 00 01 ff ff 01 05 80 80 80 80 08", "tag 5 declares"),
        // A six-byte varint, and a fifth byte with bits past the 32nd.
        ("00 03 00 0c 00 00 00 01 ff ff 00 80 80 80 80 80 01", "longer than 32 bits"),
        ("00 03 00 0c 00 00 00 01 ff ff 00 80 80 80 80 10", "longer than 32 bits"),
        // Tag beyond i32::MAX.
        ("00 03 00 0c 00 00 00 01 ff ff 01 80 80 80 80 08 00", "larger than i32::MAX"),
        // Client id claiming 32767 bytes; a negative length.
        ("00 03 00 0c 00 00 00 01 7f ff", "RequestHeader.ClientId"),
        ("00 03 00 0c 00 00 00 01 ff fe 00", "negative length -2"),
        // Null topic list in Metadata v0 (nullable from v1 only).
        ("00 03 00 00 00 00 00 01 ff ff ff ff ff ff", "does not allow"),
        // A string that is not UTF-8 (Metadata v1 topic name).
        ("00 03 00 01 00 00 00 01 ff ff 00 00 00 01 00 01 ff", "not UTF-8"),
        // Fetch v15: fixed fields (21 bytes), no topics, no forgotten topics,
        // rack "", then the ReplicaState tag declaring 14 bytes for a value
        // of 13.
        (
            "00 01 00 0f 00 00 00 01 ff ff 00  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
             01 01 01  01 01 0e 00 00 00 01 00 00 00 00 00 00 00 02 00 00",
            "FetchRequest.<tagged fields>.ReplicaState at byte 51: 1 bytes left over in a tag of 14 bytes",
        ),
        // Fetch v17: one topic (by id) with one partition carrying tag 1
        // (HighWatermark), which only exists from v18.
        (
            "00 01 00 11 00 00 00 01 ff ff 00  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
             02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 \
             00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
             01 01 08 00 00 00 00 00 00 00 00 00 01 01 00",
            "not valid in version 17",
        ),
    ];
    for (frame, want) in cases {
        let r = reason(decode_request(hex(frame)));
        assert!(r.contains(want), "{frame}: {r}");
    }
}

fn compact_count(out: &mut Vec<u8>, n: u32) {
    let mut c = n + 1;
    while c >= 0x80 {
        out.push((c as u8) | 0x80);
        c >>= 7;
    }
    out.push(c as u8);
}

/// A count that fits the bytes that remain (one per element) but not the
/// budget: OffsetFetch v8 groups decode into 100+ bytes each.
#[test]
fn counts_that_fit_the_frame_but_not_the_budget_are_over_budget() {
    let n = 100_000;
    let mut frame = vec![0x00, 0x09, 0x00, 0x08, 0, 0, 0, 1, 0xff, 0xff, 0x00];
    compact_count(&mut frame, n);
    frame.resize(frame.len() + n as usize, 0);
    let len = frame.len();
    match decode_request(frame.into()) {
        Err(CodecError::OverBudget { api: ApiKey::OffsetFetch, version: 8, needed, budget }) => {
            assert_eq!(budget, decode_budget(len));
            assert!(needed > budget && needed >= u64::from(n) * 100, "{needed}");
        }
        other => panic!("expected OverBudget, got {other:?}"),
    }
}

/// A large honest request: 20,000 topics of 10 bytes in CreateTopics v5.
#[test]
fn large_honest_requests_fit_the_budget() {
    let n = 20_000;
    let mut frame = vec![0x00, 0x13, 0x00, 0x05, 0, 0, 0, 1, 0xff, 0xff, 0x00];
    compact_count(&mut frame, n);
    for _ in 0..n {
        // Name "", NumPartitions, ReplicationFactor, Assignments [], Configs [], no tags.
        frame.extend_from_slice(&[0x01, 0, 0, 0, 1, 0, 1, 0x01, 0x01, 0x00]);
    }
    // TimeoutMs, ValidateOnly, no tags.
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0x00]);
    let f = decode_request(frame.into()).expect("20000 empty topics are a valid request");
    match f.request {
        fjord_kafka_codec::kafka_protocol::messages::RequestKind::CreateTopics(r) => assert_eq!(r.topics.len(), 20_000),
        other => panic!("{other:?}"),
    }
}

/// Every array count of a few real requests (found by parsing them by
/// hand here, independently of the guard), patched to 2^31 - 1.
#[test]
fn every_array_count_of_real_requests_patched_huge_is_malformed() {
    let mut cases = 0;
    for (api, v) in [(ApiKey::Metadata, 3), (ApiKey::Metadata, 9), (ApiKey::Produce, 8), (ApiKey::Produce, 9)] {
        for seed in 0..4 {
            let (_, _, frame) = common::frame(api, v, &mut Gen::full(seed));
            let flexible = api.request_header_version(v) >= 2;
            let mut c = Cursor { b: &frame, at: 8, compact: false };
            c.string(); // client id: never compact
            c.compact = flexible;
            c.tags();
            let mut counts = Vec::new();
            if api == ApiKey::Produce {
                c.string(); // transactional id
                c.at += 2 + 4; // acks, timeout
                for _ in 0..c.count(&mut counts) {
                    c.string(); // name
                    for _ in 0..c.count(&mut counts) {
                        c.at += 4; // index
                        c.bytes(); // records
                        c.tags();
                    }
                    c.tags();
                }
                c.tags();
            } else {
                for _ in 0..c.count(&mut counts) {
                    c.string(); // name
                    c.tags();
                }
                c.at += match v {
                    0..=3 => 0,
                    4..=7 => 1,
                    8..=10 => 3,
                    _ => 2,
                }; // booleans
                c.tags();
            }
            assert_eq!(c.at, frame.len(), "{api:?} v{v}: the hand parser is off");
            assert!(!counts.is_empty(), "{api:?} v{v}");
            for at in counts {
                let r = reason(decode_request(patch_count(&frame, at, flexible)));
                assert!(r.contains("elements, but only"), "{api:?} v{v} count at {at}: {r}");
                cases += 1;
            }
        }
    }
    assert!(cases > 20, "{cases}");
}

/// Just enough of a Kafka parser to find array counts.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    compact: bool,
}

impl Cursor<'_> {
    fn varint(&mut self) -> u32 {
        let (v, l) = varint(&self.b[self.at..]);
        self.at += l;
        v
    }
    fn int(&mut self, n: usize) -> i64 {
        let v = self.b[self.at..self.at + n].iter().fold(0i64, |a, &x| a << 8 | i64::from(x));
        self.at += n;
        if n == 2 { i64::from(v as u16 as i16) } else { i64::from(v as u32 as i32) }
    }
    fn string(&mut self) {
        let len = if self.compact { i64::from(self.varint()) - 1 } else { self.int(2) };
        self.at += len.max(0) as usize;
    }
    fn bytes(&mut self) {
        let len = if self.compact { i64::from(self.varint()) - 1 } else { self.int(4) };
        self.at += len.max(0) as usize;
    }
    fn count(&mut self, offsets: &mut Vec<usize>) -> i64 {
        offsets.push(self.at);
        if self.compact { i64::from(self.varint()) - 1 } else { self.int(4) }
    }
    fn tags(&mut self) {
        if self.compact {
            for _ in 0..self.varint() {
                self.varint();
                let size = self.varint();
                self.at += size as usize;
            }
        }
    }
}

fn varint(b: &[u8]) -> (u32, usize) {
    let mut v = 0u32;
    for (i, &x) in b.iter().enumerate().take(5) {
        v |= u32::from(x & 0x7f) << (7 * i);
        if x < 0x80 {
            return (v, i + 1);
        }
    }
    panic!("bad varint")
}

/// Replaces the count at `at` by 2^31 - 1 (int32, or a 5-byte varint).
fn patch_count(frame: &[u8], at: usize, compact: bool) -> Bytes {
    let mut out = frame[..at].to_vec();
    if compact {
        let (_, l) = varint(&frame[at..]);
        out.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]);
        out.extend_from_slice(&frame[at + l..]);
    } else {
        out.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        out.extend_from_slice(&frame[at + 4..]);
    }
    out.into()
}

/// Every position of a few real requests of every API, overwritten with
/// huge int32 counts and spliced with huge varints: never an abort, and
/// whatever still decodes is a real request.
#[test]
fn huge_values_at_every_offset_never_abort() {
    for &(api, min, max) in SUPPORTED_APIS {
        for v in [min, max] {
            let (_, _, frame) = common::frame(api, v, &mut Gen::full(v as u64));
            for at in 8..frame.len() {
                for word in [[0x7f, 0xff, 0xff, 0xff], [0xff, 0xff, 0xff, 0xfe], [0x00, 0xff, 0xff, 0xff]] {
                    let mut b = frame.to_vec();
                    let end = (at + 4).min(b.len());
                    b[at..end].copy_from_slice(&word[..end - at]);
                    check_consistent(b.into());
                }
                for splice in
                    [&[0x80, 0x80, 0x80, 0x80, 0x08][..], &[0xff, 0xff, 0xff, 0xff, 0x0f], &[0x80, 0x80, 0x04]]
                {
                    let mut b = frame[..at].to_vec();
                    b.extend_from_slice(splice);
                    b.extend_from_slice(&frame[at + 1..]);
                    check_consistent(b.into());
                }
            }
        }
    }
}

/// A prefix of a valid request is never a valid request.
#[test]
fn truncations_at_every_offset_are_errors() {
    for &(api, min, max) in SUPPORTED_APIS {
        for v in min..=max {
            for mut g in [Gen::full(u64::from(v as u16)), Gen::new(99)] {
                let (_, _, frame) = common::frame(api, v, &mut g);
                decode_request(frame.clone()).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
                for len in 0..frame.len() {
                    let r = decode_request(frame.slice(..len));
                    assert!(r.is_err(), "{api:?} v{v}: prefix of {len}/{} bytes decoded", frame.len());
                }
            }
        }
    }
}

/// The budget scales with the frame: a legitimately large request fits.
#[test]
fn budget_is_64_bytes_per_frame_byte_plus_64_kib() {
    assert_eq!(decode_budget(0), 64 * 1024);
    assert_eq!(decode_budget(1000), 64 * 1000 + 64 * 1024);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Random byte flips in valid requests.
    #[test]
    fn corrupted_requests_never_abort(
        api_idx in 0..SUPPORTED_APIS.len(),
        seed in any::<u64>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let (api, min, max) = SUPPORTED_APIS[api_idx];
        let mut g = Gen::new(seed);
        let v = min + (g.below((max - min + 1) as u64) as i16);
        let (_, _, frame) = common::frame(api, v, &mut g);
        let mut b = frame.to_vec();
        for (i, x) in flips {
            // Keep api key and version so the body is walked.
            let at = 4 + i.index(b.len() - 4);
            b[at] = x;
        }
        check_consistent(b.into());
    }

    /// Arbitrary bodies behind a valid header.
    #[test]
    fn arbitrary_bodies_never_abort(
        api_idx in 0..SUPPORTED_APIS.len(),
        v_pick in any::<u16>(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (api, min, max) = SUPPORTED_APIS[api_idx];
        let v = min + (v_pick % (max - min + 1) as u16) as i16;
        let mut b = Vec::new();
        b.extend_from_slice(&(api as i16).to_be_bytes());
        b.extend_from_slice(&v.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 1, 0xff, 0xff]);
        if api.request_header_version(v) >= 2 {
            b.push(0);
        }
        b.extend_from_slice(&body);
        check_consistent(b.into());
    }
}

#[test]
fn bytes_after_the_body_are_ignored_as_kafka_does() {
    // librdkafka 2.16's all-topics Metadata v13: null topics, two false
    // flags, no tags, then three stray bytes. Kafka answers it; so must we.
    let mut frame = vec![0x00, 0x03, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x03, 0x00, 0x07];
    frame.extend_from_slice(b"rdkafka");
    frame.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);
    let decoded = fjord_kafka_codec::decode_request(bytes::Bytes::from(frame)).unwrap();
    match decoded.request {
        fjord_kafka_codec::kafka_protocol::messages::RequestKind::Metadata(m) => assert!(m.topics.is_none()),
        other => panic!("decoded as {other:?}"),
    }
}
