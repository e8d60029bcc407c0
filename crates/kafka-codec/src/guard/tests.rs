//! Unit tests of the guard: the schema notation, varints, schema coverage,
//! the static bound on the budget an honest frame needs, and the exactness
//! of that budget against what `kafka-protocol` really allocates (measured
//! with a counting allocator in this test binary).

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;

use super::schema::{self, Field, Message, Struct, Ty, Versions};
use super::walk::{FIRST_UNKNOWN_TAG_COST, Fault, UNKNOWN_TAG_COST, Walker};
use super::walk_request;
use crate::error::CodecError;
use crate::frame::decode_budget;
use crate::versions::SUPPORTED_APIS;

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/alloc.rs"]
mod counting;

use common::Gen;

#[global_allocator]
static ALLOC: tracking_allocator::Allocator<std::alloc::System> = tracking_allocator::Allocator::system();

fn versions() -> impl Iterator<Item = (ApiKey, i16)> {
    SUPPORTED_APIS.iter().flat_map(|&(api, min, max)| (min..=max).map(move |v| (api, v)))
}

fn walk(api: ApiKey, version: i16, frame: &[u8]) -> Result<u64, CodecError> {
    walk_request(api, version, api.request_header_version(version), frame, decode_budget(frame.len()))
}

#[test]
fn version_notation() {
    assert_eq!(Versions::parse("0+"), Versions { min: 0, max: i16::MAX });
    assert_eq!(Versions::parse("12+"), Versions { min: 12, max: i16::MAX });
    assert_eq!(Versions::parse("3-12"), Versions { min: 3, max: 12 });
    assert_eq!(Versions::parse("7"), Versions { min: 7, max: 7 });
    assert_eq!(Versions::parse("none"), Versions::NONE);
    assert!(!Versions::NONE.contains(0) && !Versions::NONE.contains(-1));
    assert!(Versions::parse("8-10").contains(10) && !Versions::parse("8-10").contains(11));
}

fn varint(bytes: &[u8]) -> Result<(u32, usize), String> {
    let mut w = Walker::new(bytes, 0);
    match w.uvarint() {
        Ok(v) => Ok((v, bytes.len() - w_remaining(&w, bytes))),
        Err(Fault::Malformed { problem, .. }) => Err(problem),
        Err(Fault::OverBudget { .. }) => unreachable!(),
    }
}

// The walker's position, from how much of a trailing check it reports.
fn w_remaining(w: &Walker<'_>, bytes: &[u8]) -> usize {
    match w.finish() {
        Ok(()) => 0,
        Err(Fault::Malformed { at, .. }) => bytes.len() - at,
        Err(Fault::OverBudget { .. }) => unreachable!(),
    }
}

#[test]
fn unsigned_varints_are_at_most_32_bits_in_5_bytes() {
    assert_eq!(varint(&[0x00]), Ok((0, 1)));
    assert_eq!(varint(&[0x7f, 0xaa]), Ok((127, 1)));
    assert_eq!(varint(&[0x80, 0x01]), Ok((128, 2)));
    // Non-minimal encodings are accepted, as by kafka-protocol and Kafka.
    assert_eq!(varint(&[0x80, 0x00]), Ok((0, 2)));
    assert_eq!(varint(&[0xff, 0xff, 0xff, 0xff, 0x07]), Ok((i32::MAX as u32, 5)));
    assert_eq!(varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Ok((u32::MAX, 5)));
    // A fifth byte with bits past the 32nd, or a continuation bit.
    assert!(varint(&[0xff, 0xff, 0xff, 0xff, 0x10]).is_err_and(|e| e.contains("longer than 32 bits")));
    assert!(varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]).is_err_and(|e| e.contains("longer than 32 bits")));
    for cut in [&[][..], &[0x80], &[0xff, 0xff, 0xff, 0xff]] {
        assert!(varint(cut).is_err_and(|e| e.contains("truncated")), "{cut:?}");
    }
}

#[test]
fn every_supported_api_has_a_schema_for_exactly_its_versions() {
    for &(api, min, max) in SUPPORTED_APIS {
        let msg = schema::request(api).unwrap_or_else(|| panic!("{api:?} has no schema"));
        assert_eq!(msg.valid, Versions { min, max }, "{api:?}");
        for v in min..=max {
            assert!(schema::REQUEST_HEADER.valid.contains(api.request_header_version(v)), "{api:?} v{v}");
            // The header is flexible exactly when the body is.
            assert_eq!(api.request_header_version(v) >= 2, msg.flexible.contains(v), "{api:?} v{v}");
        }
    }
    assert!(schema::request(ApiKey::SaslHandshake).is_none());
}

/// The fewest bytes a value of `ty` takes on the wire: empty strings and
/// arrays, no tagged fields.
fn min_wire(ty: &Ty, compact: bool, v: i16, flexible: bool) -> usize {
    match ty {
        Ty::Int8 | Ty::Bool => 1,
        Ty::Int16 => 2,
        Ty::Int32 => 4,
        Ty::Int64 | Ty::Float64 => 8,
        Ty::Uuid => 16,
        Ty::String if compact => 1,
        Ty::String => 2,
        Ty::Bytes | Ty::Records | Ty::Array { .. } if compact => 1,
        Ty::Bytes | Ty::Records | Ty::Array { .. } => 4,
        Ty::Struct(s) => {
            inline_fields(s, v).map(|f| min_wire(&f.ty, compact_in(f, v, flexible), v, flexible)).sum::<usize>()
                + usize::from(flexible)
        }
    }
}

fn inline_fields(s: &Struct, v: i16) -> impl Iterator<Item = &Field> {
    s.fields.iter().filter(move |f| f.versions.contains(v) && f.tag_in(v).is_none())
}

fn compact_in(f: &Field, v: i16, flexible: bool) -> bool {
    flexible && f.flexible.contains(v)
}

/// `(path, size_of element, min wire bytes of an element)` of every array
/// under `s` at `v`, tagged fields included.
fn arrays(s: &Struct, path: &str, v: i16, flexible: bool, out: &mut Vec<(String, usize, usize)>) {
    for f in s.fields.iter().filter(|f| f.versions.contains(v)) {
        let path = format!("{path}.{}", f.name);
        let compact = compact_in(f, v, flexible);
        match &f.ty {
            Ty::Array { elem, elem_size } => {
                out.push((path.clone(), *elem_size, min_wire(elem, compact, v, flexible)));
                if let Ty::Struct(e) = elem {
                    arrays(e, &path, v, flexible, out);
                }
            }
            Ty::Struct(inner) => arrays(inner, &path, v, flexible, out),
            _ => {}
        }
    }
}

/// An honest frame needs at most `max ratio * len` bytes of collections:
/// every element owns at least its minimal wire size in bytes that no other
/// element owns (children's bytes are beyond the parent's minimum), and
/// costs `size_of` its type. With every ratio under 64, honest frames never
/// hit the budget (64 bytes per frame byte, plus 64 KiB); only counts that
/// promise more elements than the bytes that follow can hold do.
///
/// Unknown tagged fields are the exception: the first one of a structure
/// costs a whole B-tree leaf for 2 bytes on the wire, so a frame carrying
/// one on each of thousands of structures is refused. No client sends them:
/// every tag Kafka defines for the advertised versions is known to
/// `kafka-protocol`.
#[test]
fn honest_frames_need_less_than_64_bytes_per_byte() {
    let mut worst = (String::new(), 0f64);
    let mut check = |msg: &Message, v: i16, api: &str| {
        let flexible = msg.flexible.contains(v);
        let mut found = Vec::new();
        arrays(&msg.body, msg.body.name, v, flexible, &mut found);
        for (path, size, wire) in found {
            assert!(wire >= 1, "{api} v{v} {path}: elements of 0 bytes");
            let ratio = size as f64 / wire as f64;
            assert!(ratio < 64.0, "{api} v{v} {path}: {size} bytes per {wire} on the wire");
            if ratio > worst.1 {
                worst = (format!("{api} v{v} {path} ({size} bytes per {wire})"), ratio);
            }
        }
    };
    for (api, v) in versions() {
        check(schema::request(api).expect("schema"), v, &format!("{api:?}"));
    }
    // Further unknown tagged fields: a tag and a size byte at least.
    assert!((UNKNOWN_TAG_COST as f64 / 2.0) < 64.0);
    println!("largest decoded/wire ratio of an array element: {:.1}, {}", worst.1, worst.0);
    println!(
        "unknown tagged fields: {FIRST_UNKNOWN_TAG_COST} bytes for a structure's first, \
         {UNKNOWN_TAG_COST} for each further, per 2 bytes on the wire"
    );
}

/// The walk's sum is exactly what `kafka-protocol` allocates: each array of
/// the schema names the right element type. Measured on fully populated
/// requests without unknown tags (their B-tree nodes are estimated, not
/// exact), where every allocation is a `Vec::with_capacity`.
#[test]
fn needed_is_exactly_what_kafka_protocol_allocates() {
    let mut max_ratio = 0f64;
    for (api, v) in versions() {
        for seed in 0..4 {
            let (_, _, frame) = common::frame(api, v, &mut Gen::full(seed).without_tags());
            let needed = walk(api, v, &frame).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
            let usage = measure_decode(api, v, &frame);
            assert_eq!(usage.total as u64, needed, "{api:?} v{v} seed {seed}: allocated {usage:?}, walk says {needed}");
            max_ratio = max_ratio.max(needed as f64 / frame.len() as f64);
        }
    }
    println!("largest needed/len of the populated requests: {max_ratio:.1}");
}

fn measure_decode(api: ApiKey, v: i16, frame: &Bytes) -> counting::Usage {
    let mut buf = frame.clone();
    let (decoded, usage) = counting::measure(|| {
        let h = RequestHeader::decode(&mut buf, api.request_header_version(v));
        let r = RequestKind::decode(api, &mut buf, v);
        h.is_ok() && r.is_ok()
    });
    assert!(decoded, "{api:?} v{v}");
    usage
}

/// With unknown tagged fields, the walk's sum is an upper bound of what
/// `kafka-protocol` allocates (B-tree nodes are charged by estimate).
#[test]
fn needed_bounds_what_kafka_protocol_allocates_with_unknown_tags() {
    for (api, v) in versions() {
        for seed in 0..8 {
            for mut g in [Gen::new(seed), Gen::full(seed)] {
                let (_, _, frame) = common::frame(api, v, &mut g);
                let needed = walk(api, v, &frame).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
                let usage = measure_decode(api, v, &frame);
                assert!(usage.total as u64 <= needed, "{api:?} v{v} seed {seed}: {usage:?} > {needed}");
            }
        }
    }
}

/// Many unknown tags in one structure, in ascending, descending and
/// shuffled order (kafka-protocol inserts them into its map in wire order).
#[test]
fn many_unknown_tags_stay_within_their_charge() {
    let mut g = Gen::new(5);
    for n in [1u32, 2, 5, 11, 12, 13, 50, 200, 1000, 5000] {
        let ascending: Vec<u32> = (0..n).map(|i| 10 + 3 * i).collect();
        let descending: Vec<u32> = ascending.iter().rev().copied().collect();
        let mut shuffled = ascending.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, g.below(i as u64 + 1) as usize);
        }
        for tags in [ascending, descending, shuffled] {
            // Metadata v12: null topics, two booleans, then the tags.
            let mut frame = vec![0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 1, 0];
            push_varint(&mut frame, n);
            for t in tags {
                push_varint(&mut frame, t);
                frame.push(0);
            }
            let frame = Bytes::from(frame);
            let needed = walk(ApiKey::Metadata, 12, &frame).expect("valid");
            let usage = measure_decode(ApiKey::Metadata, 12, &frame);
            assert!(usage.total as u64 <= needed, "{n} tags: {usage:?} > {needed}");
        }
    }
}

fn push_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The budget ratio over random requests, unknown tags included (tiny
/// frames with a B-tree leaf or two have the highest).
#[test]
fn observed_ratio_of_random_requests() {
    let mut worst = (0f64, String::new());
    for (api, v) in versions() {
        for seed in 0..32 {
            for mut g in [Gen::new(seed), Gen::full(seed)] {
                let (_, _, frame) = common::frame(api, v, &mut g);
                let needed = walk(api, v, &frame).unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
                let ratio = needed as f64 / frame.len() as f64;
                assert!(needed <= decode_budget(frame.len()), "{api:?} v{v}: {needed} for {} bytes", frame.len());
                if ratio > worst.0 {
                    worst = (ratio, format!("{api:?} v{v}, {needed} bytes for a frame of {}", frame.len()));
                }
            }
        }
    }
    println!("largest needed/len of random requests: {:.1} ({})", worst.0, worst.1);
}

#[test]
fn over_budget_reports_what_the_counts_would_need() {
    let mut g = Gen::full(1).without_tags();
    let (_, _, frame) = common::frame(ApiKey::Metadata, 12, &mut g);
    let needed = walk(ApiKey::Metadata, 12, &frame).expect("valid");
    assert!(needed > 0);
    let header_version = ApiKey::Metadata.request_header_version(12);
    match walk_request(ApiKey::Metadata, 12, header_version, &frame, needed - 1) {
        Err(CodecError::OverBudget { needed: n, budget, .. }) => assert_eq!((n, budget), (needed, needed - 1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(walk_request(ApiKey::Metadata, 12, header_version, &frame, needed).ok(), Some(needed));
}

#[test]
fn malformed_reasons_name_the_field() {
    // Produce v8 (classic encodings): one topic "t", one partition whose
    // records claim 100 bytes that are not there.
    let mut frame = vec![0, 0, 0, 8, 0, 0, 0, 7, 0xff, 0xff];
    frame.extend_from_slice(&[0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30]); // null txn id, acks, timeout
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't']); // 1 topic "t"
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 100]); // 1 partition, records of 100
    let e = walk(ApiKey::Produce, 8, &frame).expect_err("truncated records");
    assert_eq!(
        e.to_string(),
        "malformed Produce v8 request: ProduceRequest.TopicData[0].PartitionData[0].Records at byte 33: \
         length 100, but only 0 bytes remain"
    );
}

/// Whatever the guard accepts, `kafka-protocol` decodes without error: the
/// guard reads the same fields in the same way (or is stricter).
fn accepted_frames_decode(api: ApiKey, v: i16, frame: &[u8]) {
    if walk(api, v, frame).is_ok() {
        let mut buf = Bytes::copy_from_slice(frame);
        RequestHeader::decode(&mut buf, api.request_header_version(v))
            .unwrap_or_else(|e| panic!("{api:?} v{v}: guard accepted a header kafka-protocol refuses: {e}"));
        RequestKind::decode(api, &mut buf, v)
            .unwrap_or_else(|e| panic!("{api:?} v{v}: guard accepted a body kafka-protocol refuses: {e}"));
        // Bytes after the body may remain: both the guard and Kafka ignore them.
    }
}

#[test]
fn single_byte_changes_accepted_by_the_guard_decode() {
    for (api, v) in versions() {
        let (_, _, frame) = common::frame(api, v, &mut Gen::full(u64::from(v as u16)));
        for at in 4..frame.len() {
            for x in [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff] {
                let mut b = frame.to_vec();
                b[at] = x;
                accepted_frames_decode(api, v, &b);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn mutations_accepted_by_the_guard_decode(
        api_idx in 0..SUPPORTED_APIS.len(),
        seed in any::<u64>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..5),
    ) {
        let (api, min, max) = SUPPORTED_APIS[api_idx];
        let mut g = Gen::new(seed);
        let v = min + g.below((max - min + 1) as u64) as i16;
        let (_, _, frame) = common::frame(api, v, &mut g);
        let mut b = frame.to_vec();
        for (i, x, kind) in edits {
            let at = 4 + i.index(b.len() - 4);
            match kind {
                0 => b[at] = x,
                1 => b.insert(at, x),
                _ => { b.remove(at); }
            }
            if b.len() <= 4 {
                break;
            }
        }
        accepted_frames_decode(api, v, &b);
    }
}
