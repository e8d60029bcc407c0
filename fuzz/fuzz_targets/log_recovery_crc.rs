//! Like `log_recovery`, but the CRC of every complete batch frame is fixed up
//! before the segment is written. Raw mutations almost never keep a CRC-32C
//! valid, so without this the fuzzer cannot reach what recovery, reads and
//! appends do with the CRC-covered fields (attributes, timestamps, records).
//! `log_recovery` keeps covering torn and corrupt batches.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut segment = data.to_vec();
    fjord_fuzz::repair_crcs(&mut segment);
    fjord_fuzz::check_recovery(&segment);
});
