//! `decode_request` never allocates beyond `decode_budget(frame.len())`,
//! measured with a counting global allocator (installed in this test binary
//! only): no single allocation, and not all of them added up either, on the
//! killer frames, huge counts at every offset of real requests,
//! truncations, random corruption, and valid requests.

mod common;
#[path = "common/alloc.rs"]
mod counting;

use bytes::Bytes;
use common::Gen;
use counting::{Usage, measure};
use fjord_kafka_codec::frame::decode_budget;
use fjord_kafka_codec::{SUPPORTED_APIS, decode_request};

#[global_allocator]
static ALLOC: tracking_allocator::Allocator<std::alloc::System> = tracking_allocator::Allocator::system();

/// Decodes `frame`, asserting the allocation bound; returns whether it
/// decoded and what it allocated.
fn bounded(frame: Bytes, what: &str) -> (bool, Usage) {
    let budget = decode_budget(frame.len()) as usize;
    // Keep a handle, so the decoder's zero-copy slicing does not count the
    // one-time promotion of a `Vec`-backed buffer.
    let keep = frame.clone();
    let (ok, usage) = measure(|| decode_request(frame).is_ok());
    drop(keep);
    assert!(usage.largest <= budget, "{what}: one allocation of {} bytes, budget {budget}", usage.largest);
    assert!(usage.total <= budget, "{what}: {} bytes allocated in all, budget {budget}", usage.total);
    (ok, usage)
}

fn hex(s: &str) -> Bytes {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("hex"), 16).expect("hex"))
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn decode_request_stays_within_the_budget() {
    // The counter works.
    let (v, usage) = measure(|| vec![0u8; 12_345]);
    assert_eq!(usage.largest, 12_345);
    drop(v);

    // The killer frames.
    for killer in [
        "00 03 00 0c 00 00 00 01 ff ff 00 80 80 80 80 08",
        "00 03 00 00 00 00 00 01 ff ff 7f ff ff ff",
        "00 00 00 09 00 00 00 01 ff ff 00 00 ff ff 00 00 75 30 80 80 80 80 08",
    ] {
        let (ok, _) = bounded(hex(killer), killer);
        assert!(!ok, "{killer}");
    }

    // Counts that fit the frame but not the budget (OffsetFetch v8 groups).
    let mut frame = vec![0x00, 0x09, 0x00, 0x08, 0, 0, 0, 1, 0xff, 0xff, 0x00, 0xa1, 0x8d, 0x06];
    frame.resize(frame.len() + 100_000, 0);
    assert!(!bounded(frame.into(), "over budget").0);

    // An unknown tag on every one of many Metadata v9 topics: 4 bytes on
    // the wire for a topic and a B-tree leaf.
    for n in [50u32, 5000] {
        let mut frame = vec![0x00, 0x03, 0x00, 0x09, 0, 0, 0, 1, 0xff, 0xff, 0x00];
        let mut c = n + 1;
        while c >= 0x80 {
            frame.push((c as u8) | 0x80);
            c >>= 7;
        }
        frame.push(c as u8);
        for _ in 0..n {
            frame.extend_from_slice(&[0x01, 0x01, 0x05, 0x00]);
        }
        // AllowAutoTopicCreation, IncludeCluster-, IncludeTopicAuthorizedOperations, no tags.
        frame.extend_from_slice(&[0x01, 0x00, 0x00, 0x00]);
        let (ok, _) = bounded(frame.into(), &format!("{n} tagged topics"));
        assert_eq!(ok, n == 50, "{n} tagged topics");
    }

    let mut largest_ratio = 0f64;
    for &(api, min, max) in SUPPORTED_APIS {
        for v in min..=max {
            let (_, _, frame) = common::frame(api, v, &mut Gen::full(u64::from(v as u16)));
            let what = format!("{api:?} v{v}");

            // The valid request itself.
            let (ok, usage) = bounded(frame.clone(), &what);
            assert!(ok, "{what}");
            largest_ratio = largest_ratio.max(usage.total as f64 / frame.len() as f64);

            // Truncations.
            for len in 0..frame.len() {
                assert!(!bounded(frame.slice(..len), &what).0, "{what} truncated to {len}");
            }

            // Huge counts at every offset: int32 overwrites, varint splices.
            for at in 8..frame.len() {
                let mut b = frame.to_vec();
                let end = (at + 4).min(b.len());
                b[at..end].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff][..end - at]);
                bounded(b.into(), &what);
                let mut b = frame[..at].to_vec();
                b.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]);
                b.extend_from_slice(&frame[at + 1..]);
                bounded(b.into(), &what);
                // A count that still fits the bytes after it.
                let mut b = frame[..at].to_vec();
                b.push((frame.len() - at).min(0x7f) as u8);
                b.extend_from_slice(&frame[at + 1..]);
                bounded(b.into(), &what);
            }

            // Random corruption.
            let mut g = Gen::new(u64::from(v as u16) << 16 | api as u64);
            for _ in 0..64 {
                let mut b = frame.to_vec();
                for _ in 0..1 + g.below(4) {
                    let at = 4 + g.below(b.len() as u64 - 4) as usize;
                    b[at] = g.next() as u8;
                }
                bounded(b.into(), &what);
            }
        }
    }
    println!("largest allocated/frame-length ratio of a valid request: {largest_ratio:.1}");
}
