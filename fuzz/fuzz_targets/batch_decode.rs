//! Arbitrary bytes through the decoders that read untrusted fetch/produce
//! data: `decode_records`, `BatchSplitter` and the transaction-marker
//! reader `control::read_marker`. Must never panic nor allocate
//! out of proportion to the input (scripts/fuzz runs this with
//! `-rss_limit_mb=512 -malloc_limit_mb=256`).
#![no_main]

use bytes::Bytes;
use fjord_log::batch::{self, BatchSplitter};
use libfuzzer_sys::fuzz_target;

fn check_decode(b: &Bytes) {
    if let Ok((h, recs)) = batch::decode_records(b) {
        assert!(h.total_len() <= b.len());
        assert_eq!(recs.len(), h.record_count as usize, "decode returned a different number of records");
        for r in &recs {
            assert!(r.offset >= h.base_offset);
            // Zero-copy: every key/value/header lies inside the batch.
            for s in r.key.iter().chain(r.value.iter()) {
                assert!(s.len() <= b.len());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    check_decode(&bytes);
    // A marker is read from a control batch's first record, whatever else
    // the bytes hold.
    let _ = fjord_log::control::read_marker(data);

    let mut consumed = 0usize;
    let mut batches = 0usize;
    for item in BatchSplitter::new(bytes.clone()) {
        match item {
            Ok(b) => {
                // Every split-off batch is one complete frame of the input, in order.
                assert_eq!(batch::peek_total_len(&b), Some(Ok(b.len())));
                assert_eq!(&b[..], &data[consumed..consumed + b.len()]);
                consumed += b.len();
                batches += 1;
                assert!(batches <= data.len() / batch::HEADER_LEN, "splitter yields more batches than fit");
                let _ = batch::validate(&b);
                check_decode(&b);
            }
            Err(_) => break,
        }
    }
    assert!(consumed <= data.len());
});
