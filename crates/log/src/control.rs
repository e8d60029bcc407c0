//! Transaction markers: the control batches that end a producer's
//! transaction in a partition (Kafka's `EndTransactionMarker`).
//!
//! A marker batch has the transactional and control attributes set
//! (`0x30`), base sequence −1, the producer's id and epoch, and one record:
//! key `(version: i16 = 0, type: i16)` — 0 abort, 1 commit — and value
//! `(version: i16 = 0, coordinator epoch: i32)`. Control batches of other
//! types (KRaft's, for example) are not markers.

use bytes::{Bytes, BytesMut};

use crate::FormatError;
use crate::batch::{BatchBuilder, BatchHeader, NewRecord, RecordIter, records_slice};

/// How a transaction ended, and which coordinator epoch said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    /// Committed (else aborted).
    pub commit: bool,
    /// The epoch of the coordinator that wrote it: a marker from an older
    /// coordinator than the partition last heard from is fenced.
    pub coordinator_epoch: i32,
}

const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// A marker batch of `producer_id` at `producer_epoch`, stamped `timestamp`.
pub fn marker_batch(producer_id: i64, producer_epoch: i16, marker: TxnMarker, timestamp: i64) -> BytesMut {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(if marker.commit { COMMIT } else { ABORT }).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut b = BatchBuilder::new(timestamp).producer(producer_id, producer_epoch, -1).transactional(true).control();
    b.push(&NewRecord { key: Some(Bytes::from(key)), value: Some(Bytes::from(value)), ..Default::default() });
    b.build()
}

/// The marker a whole batch holds: `None` when it is not a control batch,
/// or a control batch of another kind. Malformed markers are errors.
pub fn read_marker(batch: &[u8]) -> Result<Option<TxnMarker>, FormatError> {
    let h = BatchHeader::parse(batch)?;
    if !h.is_control() {
        return Ok(None);
    }
    let (h, body) = records_slice(batch)?;
    let Some(first) = RecordIter::new(h, &body).next() else {
        return Err(FormatError::InvalidRecord("a control batch with no record"));
    };
    let r = first?;
    let key = r.key.ok_or(FormatError::InvalidRecord("a control record without a key"))?;
    if key.len() < 4 {
        return Err(FormatError::InvalidRecord("a control record key shorter than 4 bytes"));
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        ABORT => false,
        COMMIT => true,
        _ => return Ok(None),
    };
    let value = r.value.ok_or(FormatError::InvalidRecord("a transaction marker without a value"))?;
    if value.len() < 6 {
        return Err(FormatError::InvalidRecord("a transaction marker value shorter than 6 bytes"));
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(Some(TxnMarker { commit, coordinator_epoch }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn markers_round_trip(pid in 0i64..i64::MAX, epoch in 0i16..i16::MAX, commit: bool, coordinator_epoch: i32) {
            let m = TxnMarker { commit, coordinator_epoch };
            let b = marker_batch(pid, epoch, m, 1_700_000_000_000);
            let h = crate::batch::validate(&b).unwrap();
            prop_assert!(h.is_control() && h.is_transactional());
            prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.record_count), (pid, epoch, -1, 1));
            prop_assert_eq!(read_marker(&b).unwrap(), Some(m));
        }
    }

    #[test]
    fn data_batches_and_other_control_records_are_not_markers() {
        let mut b = BatchBuilder::new(0).producer(1, 0, 0).transactional(true);
        b.push(&NewRecord { value: Some(Bytes::from_static(b"v")), ..Default::default() });
        assert_eq!(read_marker(&b.build()).unwrap(), None);
        let mut other = BatchBuilder::new(0).control();
        other.push(&NewRecord { key: Some(Bytes::from_static(&[0, 0, 0, 3])), ..Default::default() });
        assert_eq!(read_marker(&other.build()).unwrap(), None, "type 3 (a KRaft record) is no marker");
        let mut short = BatchBuilder::new(0).control();
        short.push(&NewRecord {
            key: Some(Bytes::from_static(&[0, 0, 0, 1])),
            value: Some(Bytes::from_static(&[0])),
            ..Default::default()
        });
        assert!(read_marker(&short.build()).is_err());
    }
}
