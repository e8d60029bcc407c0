//! Arbitrary bytes as the client side of an HTTP/2 connection through the
//! gRPC gateway's `:authority` rewriter (fjord-grpc-authority), which
//! reads them before h2 and before any request is served: split into
//! reads where the first byte says. It must never panic, buffer a frame
//! past its limit, or let rewritten output pile up while nobody takes it.
#![no_main]

use fjord_grpc_authority::{MAX_PENDING, OUTPUT_HIGH, Rewriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut r = Rewriter::new();
    for chunk in rest.chunks(usize::from(split).max(1)) {
        if r.push(chunk).is_err() {
            return;
        }
        loop {
            assert!(r.output().len() <= OUTPUT_HIGH + 2 * MAX_PENDING, "output piles up");
            if r.output().split().is_empty() {
                break;
            }
            if r.resume().is_err() {
                return;
            }
        }
    }
});
