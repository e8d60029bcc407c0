//! Writes small seed inputs for the fuzz targets:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus -- fuzz/seeds
//!
//! creates OUT/batch_validate, OUT/batch_decode and OUT/log_recovery (the
//! structured batch_roundtrip target needs no seeds). The committed
//! fuzz/seeds/ were made this way; scripts/fuzz regenerates them when absent.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use fjord_log::batch::{self, BatchBuilder, Header, NewRecord};

const TS: i64 = 1_700_000_000_000;

fn rec(ts: Option<i64>, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&[u8], Option<&[u8]>)]) -> NewRecord {
    NewRecord {
        timestamp: ts,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: headers
            .iter()
            .map(|(k, v)| Header { key: Bytes::copy_from_slice(k), value: v.map(Bytes::copy_from_slice) })
            .collect(),
    }
}

fn build(records: &[NewRecord]) -> BytesMut {
    let mut b = BatchBuilder::new(TS);
    for r in records {
        b.push(r);
    }
    b.build()
}

/// Sets attribute bits (compression, control, ...) and fixes the CRC.
fn with_attributes(mut b: BytesMut, attrs: i16) -> BytesMut {
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn at(mut b: BytesMut, base: u64, epoch: i32) -> Vec<u8> {
    batch::set_base_offset(&mut b, base);
    batch::set_leader_epoch(&mut b, epoch);
    b.to_vec()
}

fn single_batches() -> Vec<(&'static str, Vec<u8>)> {
    let one = build(&[rec(None, Some(b"key"), Some(b"value"), &[])]);
    let mixed = build(&[
        rec(None, Some(b"k1"), Some(b"v1"), &[(b"content-type", Some(b"text/plain"))]),
        rec(Some(TS + 5), None, Some(b"no key"), &[(b"h", None), (b"h", Some(b"again"))]),
        rec(Some(TS - 3), Some(b"tombstone"), None, &[]),
    ]);
    let mut txn = BatchBuilder::new(TS).producer(42, 3, 7).transactional(true);
    txn.push(&rec(None, Some(b"t"), Some(b"x"), &[]));
    txn.push(&rec(None, Some(b"t"), Some(b"y"), &[]));
    let txn = txn.build();
    let empty = BatchBuilder::new(TS).build();
    let mut log_append = build(&[rec(None, Some(b"a"), Some(b"b"), &[])]);
    batch::set_log_append_time(&mut log_append, TS + 1000);
    let gzip = with_attributes(build(&[rec(None, Some(b"z"), Some(b"compressed?"), &[])]), 1);
    let control = with_attributes(build(&[rec(None, Some(&[0, 0, 0, 0]), Some(&[0, 0, 0, 0, 0, 0]), &[])]), 0x30);
    vec![
        ("one_record", at(one, 0, 0)),
        ("mixed_headers", at(mixed, 17, 2)),
        ("transactional", at(txn, 100, 5)),
        ("empty", at(empty, 0, 0)),
        ("log_append_time", at(log_append, 3, 1)),
        ("gzip_flag", at(gzip, 9, 0)),
        ("control", at(control, 11, 0)),
    ]
}

/// A well-formed segment: batches at increasing offsets from 0.
fn segment(batches: &[BytesMut], gaps: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = 0u64;
    for (i, b) in batches.iter().enumerate() {
        next += gaps.get(i).copied().unwrap_or(0);
        let bytes = at(b.clone(), next, i as i32 / 2);
        next = batch::BatchHeader::parse(&bytes).expect("built").next_offset();
        out.extend_from_slice(&bytes);
    }
    out
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed dir");
    std::fs::write(dir.join(name), data).expect("write seed");
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into());
    let out = Path::new(&out);

    let singles = single_batches();
    for (name, b) in &singles {
        write(&out.join("batch_validate"), name, b);
    }
    let concat: Vec<u8> = singles.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    write(&out.join("batch_decode"), "mixed_headers", &singles[1].1);
    write(&out.join("batch_decode"), "transactional", &singles[2].1);
    write(&out.join("batch_decode"), "log_append_time", &singles[4].1);
    write(&out.join("batch_decode"), "concatenated", &concat);
    write(&out.join("batch_decode"), "torn_tail", &concat[..concat.len() - 9]);

    let small = |k: &[u8], v: &[u8]| build(&[rec(None, Some(k), Some(v), &[]), rec(Some(TS + 1), None, Some(v), &[])]);
    let big = |fill: u8| build(&[rec(None, Some(b"big"), Some(&vec![fill; 4200]), &[(b"h", Some(b"1"))])]);
    let three = segment(&[small(b"a", b"1"), small(b"b", b"2"), small(b"c", b"3")], &[]);
    write(&out.join("log_recovery"), "three_batches", &three);
    let mut torn = three.clone();
    torn.truncate(three.len() - 20);
    write(&out.join("log_recovery"), "torn_tail", &torn);
    let mut corrupt = three.clone();
    let mid = three.len() / 2;
    corrupt[mid] ^= 0x55;
    write(&out.join("log_recovery"), "corrupt_middle", &corrupt);
    let indexed = segment(&[big(b'x'), small(b"d", b"4"), big(b'y'), small(b"e", b"5")], &[]);
    write(&out.join("log_recovery"), "indexed", &indexed);
    let gzip = with_attributes(small(b"g", b"z"), 1);
    let control = with_attributes(build(&[rec(None, Some(&[0, 0, 0, 0]), Some(&[0, 0, 0, 0, 0, 0]), &[])]), 0x30);
    let gappy = segment(&[small(b"f", b"6"), control, gzip, small(b"h", b"7")], &[0, 10, 1000, 3]);
    write(&out.join("log_recovery"), "gaps_control_gzip", &gappy);
}
