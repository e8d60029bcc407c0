use super::*;
use proptest::prelude::*;

fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
}

fn arb_record() -> impl Strategy<Value = NewRecord> {
    (
        proptest::option::of(0i64..1_000_000),
        arb_bytes(),
        arb_bytes(),
        proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..16), arb_bytes()), 0..4),
    )
        .prop_map(|(ts, key, value, headers)| NewRecord {
            timestamp: ts.map(|t| 1_700_000_000_000 + t),
            key,
            value,
            headers: headers.into_iter().map(|(k, v)| Header { key: Bytes::from(k), value: v }).collect(),
        })
}

proptest! {
    #[test]
    fn built_batches_validate_and_decode_to_the_same_records(
        records in proptest::collection::vec(arb_record(), 1..20),
        base in 0u64..(1 << 40),
        epoch in 0i32..1000,
    ) {
        let base_ts = 1_700_000_000_000;
        let mut b = BatchBuilder::new(base_ts);
        for r in &records {
            b.push(r);
        }
        let mut batch = b.build();
        set_base_offset(&mut batch, base);
        set_leader_epoch(&mut batch, epoch);
        let header = validate(&batch).unwrap();
        prop_assert_eq!(header.base_offset, base);
        prop_assert_eq!(header.leader_epoch, epoch);
        prop_assert_eq!(header.record_count as usize, records.len());
        prop_assert_eq!(header.last_offset(), base + records.len() as u64 - 1);
        let (_, decoded) = decode_records(&batch.freeze()).unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(d.offset, base + i as u64);
            prop_assert_eq!(d.timestamp, r.timestamp.unwrap_or(base_ts));
            prop_assert_eq!(&d.key, &r.key);
            prop_assert_eq!(&d.value, &r.value);
            prop_assert_eq!(&d.headers, &r.headers);
        }
        let max_ts = records.iter().map(|r| r.timestamp.unwrap_or(base_ts)).max().unwrap();
        prop_assert_eq!(header.max_timestamp, max_ts.max(base_ts));
    }

    #[test]
    fn any_single_flipped_byte_inside_the_crc_is_detected(
        records in proptest::collection::vec(arb_record(), 1..5),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut b = BatchBuilder::new(0);
        for r in &records {
            b.push(r);
        }
        let mut batch = b.build();
        let i = CRC_START + at.index(batch.len() - CRC_START);
        batch[i] ^= flip;
        prop_assert!(validate(&batch).is_err());
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = validate(&bytes);
        let b = Bytes::from(bytes);
        let _ = decode_records(&b);
        for item in BatchSplitter::new(b) {
            let _ = item;
        }
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_batches(
        records in proptest::collection::vec(arb_record(), 1..5),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut b = BatchBuilder::new(0);
        for r in &records {
            b.push(r);
        }
        let mut batch = b.build();
        for (at, v) in mutations {
            let i = HEADER_LEN + at.index(batch.len() - HEADER_LEN);
            batch[i] = v;
        }
        // Fix the CRC so the record decoder itself is exercised.
        let crc = compute_crc(&batch);
        batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        // What the append-path checker accepts, the decoder must decode.
        let accepted = validate(&batch).is_ok();
        let decoded = decode_records(&batch.freeze());
        if accepted {
            prop_assert!(decoded.is_ok(), "validate accepted a batch decode_records rejects: {:?}", decoded.err());
        }
    }
}

#[test]
fn log_append_time_rewrites_timestamps_and_keeps_crc_valid() {
    let mut b = BatchBuilder::new(10);
    b.push(&NewRecord { value: Some(Bytes::from_static(b"v")), ..Default::default() });
    let mut batch = b.build();
    set_log_append_time(&mut batch, 99);
    let h = validate(&batch).unwrap();
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    let (_, recs) = decode_records(&batch.freeze()).unwrap();
    assert_eq!(recs[0].timestamp, 99);
}

#[test]
fn wrong_magic_and_short_buffers_are_rejected() {
    let mut b = BatchBuilder::new(0);
    b.push(&NewRecord::default());
    let mut batch = b.build();
    assert!(matches!(validate(&batch[..HEADER_LEN - 1]), Err(FormatError::Truncated(_))));
    assert!(matches!(validate(&batch[..batch.len() - 1]), Err(FormatError::BadLength(_))));
    batch[MAGIC_POS] = 1;
    assert_eq!(validate(&batch), Err(FormatError::BadMagic(1)));
}

#[test]
fn hostile_header_count_does_not_allocate() {
    // A record claiming i32::MAX/2 headers must fail before allocating.
    let mut b = BatchBuilder::new(0);
    b.push(&NewRecord::default());
    let batch = b.build();
    let mut body = batch[HEADER_LEN..].to_vec();
    // The last byte is the header count varint (0); replace it with a huge count.
    body.pop();
    let mut huge = Vec::new();
    put_varint(&mut huge, i32::MAX / 2);
    body.extend_from_slice(&huge);
    body[0] = ((body.len() - 1) as u8) << 1; // fix record length (small, one byte)
    let header = BatchHeader::parse(&batch).unwrap();
    let err = RecordIter::new(header, &body).next().unwrap().unwrap_err();
    assert_eq!(err, FormatError::InvalidRecord("header count exceeds record size"));
}

#[test]
fn splitter_stops_at_an_incomplete_tail() {
    let mut all = BytesMut::new();
    for i in 0..3 {
        let mut b = BatchBuilder::new(i);
        b.push(&NewRecord::default());
        all.extend_from_slice(&b.build());
    }
    let full = all.len();
    let cut = all.freeze().slice(..full - 5);
    let got: Vec<_> = BatchSplitter::new(cut).collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn offsets_that_overflow_i64_are_rejected() {
    let mut b = BatchBuilder::new(0);
    b.push(&NewRecord::default());
    b.push(&NewRecord::default());
    let mut batch = b.build();
    set_base_offset(&mut batch, (i64::MAX - 1) as u64);
    assert_eq!(BatchHeader::parse(&batch), Err(FormatError::InvalidRecord("batch offsets overflow i64")));
    set_base_offset(&mut batch, (i64::MAX - 2) as u64);
    assert_eq!(BatchHeader::parse(&batch).unwrap().next_offset(), i64::MAX as u64);
}

#[test]
fn compressed_batches_validate_and_decode_with_every_codec() {
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut b = BatchBuilder::new(1_000).compression(codec);
        for i in 0..200 {
            b.push(&NewRecord {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value {i} ").repeat(20))),
                headers: vec![Header { key: Bytes::from_static(b"h"), value: Some(Bytes::from(format!("{i}"))) }],
                timestamp: Some(1_000 + i),
            });
        }
        let batch = b.try_build().unwrap();
        let h = validate(&batch).unwrap();
        assert_eq!(h.compression().unwrap(), codec);
        assert!(batch.len() < 200 * 140 / 2, "{codec:?} did not compress: {} bytes", batch.len());
        let (_, recs) = decode_records(&batch.freeze()).unwrap();
        assert_eq!(recs.len(), 200, "{codec:?}");
        assert_eq!(recs[7].key.as_deref(), Some(&b"key-7"[..]));
        assert_eq!(recs[7].timestamp, 1_007);
        assert_eq!(recs[199].headers[0].value.as_deref(), Some(&b"199"[..]));
    }
}
