//! Arbitrary bytes as an AMQP 0-9-1 stream after the protocol header: frame
//! headers are checked against frame_max, then every frame is decoded
//! (nesting guard, then amq-protocol's parser) — what a client can send
//! before it has authenticated. Nothing may panic, overflow the stack or
//! allocate beyond the input; a decoded frame re-encodes to bytes that
//! decode and re-encode to themselves. The bytes are also tried as a bare field
//! table (AMQPLAIN responses and stored headers are decoded that way).
#![no_main]

use fjord_amqp_codec::{FRAME_HEADER_LEN, FrameHeader, decode, decode_table, encode};
use libfuzzer_sys::fuzz_target;

const FRAME_MAX: u32 = 131_072;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some(h) = rest.first_chunk::<FRAME_HEADER_LEN>() {
        let header = FrameHeader::parse(h);
        if header.check(FRAME_MAX).is_err() {
            break;
        }
        let len = header.frame_len() as usize;
        let Some(frame) = rest.get(..len) else { break };
        rest = &rest[len..];
        let Ok(f) = decode(frame) else { continue };
        let mut out = Vec::new();
        if encode(&f, &mut out).is_ok() {
            // Compared as bytes: a float header may be NaN (never equal to
            // itself), and tables come back sorted, so the first
            // re-encoding is the fixed point.
            let again = decode(&out).expect("a re-encoded frame decodes");
            let mut out2 = Vec::new();
            encode(&again, &mut out2).expect("encodes again");
            assert_eq!(out2, out);
        }
    }
    let _ = decode_table(data);
});
