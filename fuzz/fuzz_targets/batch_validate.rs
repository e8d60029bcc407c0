//! Arbitrary bytes as one record batch: `BatchHeader::parse` and
//! `batch::validate` must never panic, and must agree with each other.
//! Each input is checked twice: as given, and with its CRC fixed up, so the
//! record checks behind the CRC are fuzzed too.
#![no_main]

use bytes::Bytes;
use fjord_log::batch::{self, BatchHeader, Compression};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= batch::HEADER_LEN {
        let mut fixed = data.to_vec();
        fjord_fuzz::repair_crcs(&mut fixed);
        check(&fixed);
    }
});

fn check(data: &[u8]) {
    let parsed = BatchHeader::parse(data);
    let validated = batch::validate(data);

    if let Ok(h) = &parsed {
        // Derived values of any parsed header are computable without overflow.
        let _ = (h.total_len(), h.last_offset(), h.next_offset(), h.compression());
        let _ = (h.timestamp_type(), h.is_transactional(), h.is_control());
        assert_eq!(batch::peek_total_len(data), Some(Ok(h.total_len())), "peek_total_len disagrees with parse");
    }

    let Ok(h) = validated else { return };
    // A valid batch parses to the same header, is exactly `data`, and carries its CRC.
    assert_eq!(parsed.as_ref().ok(), Some(&h), "validate accepted what parse rejected");
    assert_eq!(h.total_len(), data.len());
    assert_eq!(batch::compute_crc(data), h.crc);
    // validate's record checks are stricter than decode_records': whatever
    // validates (uncompressed) must decode, to exactly record_count records
    // with strictly increasing offsets inside [base_offset, last_offset].
    if h.compression() == Ok(Compression::None) {
        let (dh, recs) = batch::decode_records(&Bytes::copy_from_slice(data))
            .unwrap_or_else(|e| panic!("validated batch does not decode: {e}"));
        assert_eq!(dh, h);
        assert_eq!(recs.len(), h.record_count as usize);
        let mut prev = None;
        for r in &recs {
            assert!(r.offset >= h.base_offset && r.offset <= h.last_offset(), "record offset outside the batch");
            assert!(prev.is_none_or(|p| r.offset > p), "record offsets not increasing");
            prev = Some(r.offset);
        }
    }
}
