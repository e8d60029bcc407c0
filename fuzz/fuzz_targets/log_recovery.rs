//! Arbitrary bytes as the only segment file of a log, then `Log::open`,
//! reads of every record, an append and a clean reopen: see
//! `fjord_fuzz::check_recovery` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fjord_fuzz::check_recovery(data));
