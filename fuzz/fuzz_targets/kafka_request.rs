//! Arbitrary bytes as one Kafka request frame (without its size prefix)
//! through `fjord_kafka_codec::decode_request`, the path every client byte
//! takes. It must never panic, never abort, and never make a single
//! allocation larger than `decode_budget(len)` plus a little slack: the
//! global allocator below panics on one (libfuzzer-sys's panic hook then
//! aborts, so the huge allocation is reported as a crash with its size
//! instead of killing the process through `handle_alloc_error`).
//!
//! A frame that decodes must be a real request: re-encoded by
//! `kafka-protocol` and decoded again, it is equal. A frame that does not
//! decode must have been refused by the guard (its reasons say `at byte N`),
//! not by `kafka-protocol` after the guard let it through: the guard is meant
//! to be at least as strict as the decoder it protects.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use fjord_kafka_codec::frame::decode_budget;
use fjord_kafka_codec::kafka_protocol::protocol::Encodable;
use fjord_kafka_codec::{CodecError, RequestFrame, decode_request};
use libfuzzer_sys::fuzz_target;

/// Room for what decoding allocates besides collections: error messages,
/// the shared header of a `Bytes` buffer, B-tree nodes.
const SLACK: usize = 4096;

/// Largest single allocation allowed right now; `usize::MAX` outside
/// `decode_request`.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

struct CappedAllocator;

fn check(size: usize) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if size > limit {
        // Formatting the panic message allocates: lift the cap first.
        LIMIT.store(usize::MAX, Ordering::Relaxed);
        panic!("single allocation of {size} bytes while decoding, more than decode_budget + {SLACK} = {limit}");
    }
}

// SAFETY: forwards every call to the system allocator unchanged; `check`
// only reads an atomic (and panics, which the fuzzer's hook turns into an
// abort before any unwinding).
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

/// `decode_request` with single allocations capped at the frame's budget.
fn decode_capped(frame: Bytes) -> Result<RequestFrame, CodecError> {
    LIMIT.store((decode_budget(frame.len()) as usize).saturating_add(SLACK), Ordering::Relaxed);
    let r = decode_request(frame);
    LIMIT.store(usize::MAX, Ordering::Relaxed);
    r
}

fuzz_target!(|data: &[u8]| {
    match decode_capped(Bytes::copy_from_slice(data)) {
        Ok(f) => {
            let version = f.header.request_api_version;
            let mut buf = BytesMut::new();
            f.header.encode(&mut buf, f.api.request_header_version(version)).expect("a decoded header encodes");
            f.request.encode(&mut buf, version).expect("a decoded request encodes");
            let again = decode_capped(buf.freeze())
                .unwrap_or_else(|e| panic!("{:?} v{version} re-encoded does not decode: {e}", f.api));
            assert_eq!(again.api, f.api);
            assert_eq!(again.header, f.header, "header changed in a round trip");
            assert_eq!(again.request, f.request, "request changed in a round trip");
        }
        Err(CodecError::Malformed { api, version, reason }) => {
            assert!(
                reason.contains(" at byte "),
                "{api:?} v{version}: the guard let through a frame kafka-protocol refuses: {reason}"
            );
        }
        Err(_) => {}
    }
});
