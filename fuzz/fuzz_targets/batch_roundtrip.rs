//! Structured records → `BatchBuilder` → `validate` + `decode_records` must
//! give back exactly what was put in.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use fjord_log::batch::{self, BatchBuilder, BatchSplitter, Compression, Header, NewRecord, TimestampType};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct InHeader {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

#[derive(Debug, Arbitrary)]
struct InRecord {
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<InHeader>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    base_timestamp: i64,
    producer: Option<(i64, i16, i32)>,
    transactional: bool,
    /// Rewritten after building; both live outside the CRC.
    base_offset: u32,
    leader_epoch: i32,
    records: Vec<InRecord>,
}

fuzz_target!(|input: Input| {
    let records: Vec<NewRecord> = input
        .records
        .iter()
        .map(|r| NewRecord {
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|h| Header { key: Bytes::from(h.key.clone()), value: h.value.clone().map(Bytes::from) })
                .collect(),
        })
        .collect();

    let mut builder = BatchBuilder::new(input.base_timestamp).transactional(input.transactional);
    if let Some((id, epoch, seq)) = input.producer {
        builder = builder.producer(id, epoch, seq);
    }
    for r in &records {
        builder.push(r);
    }
    assert_eq!(builder.len() as usize, records.len());
    let expected_size = builder.size();
    let mut built = builder.build();
    assert_eq!(built.len(), expected_size, "size() disagrees with build()");

    let n = records.len() as u64;
    let h = batch::validate(&built).unwrap_or_else(|e| panic!("built batch does not validate: {e}"));
    assert_eq!(h.base_offset, 0);
    assert_eq!(h.record_count as u64, n);
    assert_eq!(u64::from(h.last_offset_delta), n.saturating_sub(1));
    assert_eq!(h.base_timestamp, input.base_timestamp);
    let ts_of = |r: &NewRecord| r.timestamp.unwrap_or(input.base_timestamp);
    let max_ts = records.iter().map(ts_of).fold(input.base_timestamp, i64::max);
    assert_eq!(h.max_timestamp, max_ts);
    assert_eq!(h.compression(), Ok(Compression::None));
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(h.is_transactional(), input.transactional);
    assert!(!h.is_control());
    let (pid, pepoch, pseq) = input.producer.unwrap_or((batch::NO_PRODUCER_ID, -1, -1));
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (pid, pepoch, pseq));

    // What the log does on a leader append: rewrite offset and epoch in place.
    let base = u64::from(input.base_offset);
    batch::set_base_offset(&mut built, base);
    batch::set_leader_epoch(&mut built, input.leader_epoch);
    let h2 = batch::validate(&built).unwrap_or_else(|e| panic!("rewritten batch does not validate: {e}"));
    assert_eq!((h2.base_offset, h2.leader_epoch), (base, input.leader_epoch));

    let bytes = built.freeze();
    let (dh, decoded) = batch::decode_records(&bytes).unwrap_or_else(|e| panic!("built batch does not decode: {e}"));
    assert_eq!(dh, h2);
    assert_eq!(decoded.len(), records.len());
    for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
        assert_eq!(d.offset, base + i as u64, "offset of record {i}");
        assert_eq!(d.timestamp, ts_of(r), "timestamp of record {i}");
        assert_eq!(d.key, r.key, "key of record {i}");
        assert_eq!(d.value, r.value, "value of record {i}");
        assert_eq!(d.headers, r.headers, "headers of record {i}");
    }

    // The splitter sees exactly one batch: this one.
    let split: Vec<_> = BatchSplitter::new(bytes.clone()).collect();
    assert_eq!(split, vec![Ok(bytes)]);
});
