//! The on-disk and on-wire record batch: Kafka's RecordBatch v2.
//!
//! Fjord stores exactly the bytes a Kafka producer sends, so the Kafka gateway
//! serves fetches straight from segment files without re-encoding. Other
//! protocols build the same batches with [`BatchBuilder`] and carry their
//! message properties as record headers.
//!
//! Layout (big-endian, offsets in bytes):
//!
//! ```text
//!  0 base_offset i64        | rewritten by the log on append (not in the CRC)
//!  8 batch_length i32       | bytes after this field
//! 12 leader_epoch i32       | rewritten by the log on append (not in the CRC)
//! 16 magic i8 = 2
//! 17 crc u32                | CRC-32C of bytes 21..end
//! 21 attributes i16         | compression, timestamp type, transactional, control
//! 23 last_offset_delta i32
//! 27 base_timestamp i64
//! 35 max_timestamp i64
//! 43 producer_id i64
//! 51 producer_epoch i16
//! 53 base_sequence i32
//! 57 record_count i32
//! 61 records...
//! ```
//!
//! Because the base offset and leader epoch sit outside the CRC, assigning
//! offsets never recomputes a checksum; only switching a batch to
//! log-append time does.

use bytes::{Bytes, BytesMut};

use crate::error::FormatError;
use crate::varint::{get_varint, get_varlong, put_varint, put_varlong, varint_len, varlong_len};

/// Size of the fixed batch header, up to and including `record_count`.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batch_length`'s payload: base offset + the length field.
pub const LOG_OVERHEAD: usize = 12;
/// Record batch format version stored by Fjord.
pub const MAGIC_V2: i8 = 2;

const LEADER_EPOCH_POS: usize = 12;
const MAGIC_POS: usize = 16;
const CRC_POS: usize = 17;
const ATTRIBUTES_POS: usize = 21;
const CRC_START: usize = ATTRIBUTES_POS;
const LAST_OFFSET_DELTA_POS: usize = 23;
const BASE_TIMESTAMP_POS: usize = 27;
const MAX_TIMESTAMP_POS: usize = 35;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// No producer id (non-idempotent producer).
pub const NO_PRODUCER_ID: i64 = -1;

/// Compression codec of a batch's records (attribute bits 0..2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub enum Compression {
    /// Uncompressed.
    None = 0,
    /// gzip.
    Gzip = 1,
    /// Snappy.
    Snappy = 2,
    /// LZ4 frame.
    Lz4 = 3,
    /// Zstandard.
    Zstd = 4,
}

impl Compression {
    fn from_bits(bits: u8) -> Result<Self, FormatError> {
        Ok(match bits {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(FormatError::UnknownCompression(other)),
        })
    }
}

/// Which clock a batch's timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker when the batch was appended.
    LogAppendTime,
}

/// The decoded fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Bytes following the length field.
    pub batch_length: u32,
    /// Leader epoch of the leader that appended the batch.
    pub leader_epoch: i32,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Raw attribute bits.
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: u32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id or -1.
    pub producer_id: i64,
    /// Producer epoch or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: u32,
}

fn be_i16(b: &[u8], pos: usize) -> i16 {
    i16::from_be_bytes([b[pos], b[pos + 1]])
}
fn be_i32(b: &[u8], pos: usize) -> i32 {
    i32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]])
}
fn be_i64(b: &[u8], pos: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[pos..pos + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Total size of the batch on disk including the offset and length fields.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// Offset following this batch.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Compression codec of the records.
    pub fn compression(&self) -> Result<Compression, FormatError> {
        Compression::from_bits((self.attributes & COMPRESSION_MASK) as u8)
    }

    /// Which clock the timestamps come from.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 { TimestampType::LogAppendTime } else { TimestampType::CreateTime }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds transaction markers rather than data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Parses the fixed header without checking the CRC.
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < HEADER_LEN {
            return Err(FormatError::Truncated("batch header"));
        }
        let magic = b[MAGIC_POS] as i8;
        if magic != MAGIC_V2 {
            return Err(FormatError::BadMagic(magic));
        }
        let batch_length = be_i32(b, 8);
        if (batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(FormatError::BadLength(batch_length.into()));
        }
        let base_offset = be_i64(b, 0);
        if base_offset < 0 {
            return Err(FormatError::InvalidRecord("negative base offset"));
        }
        let last_offset_delta = be_i32(b, LAST_OFFSET_DELTA_POS);
        let record_count = be_i32(b, 57);
        if last_offset_delta < 0 || record_count < 0 {
            return Err(FormatError::InvalidRecord("negative record count or offset delta"));
        }
        // Offsets are signed 64-bit on the wire: the offset after the batch
        // must still be representable.
        if base_offset.checked_add(i64::from(last_offset_delta) + 1).is_none() {
            return Err(FormatError::InvalidRecord("batch offsets overflow i64"));
        }
        Ok(BatchHeader {
            base_offset: base_offset as u64,
            batch_length: batch_length as u32,
            leader_epoch: be_i32(b, LEADER_EPOCH_POS),
            crc: be_i32(b, CRC_POS) as u32,
            attributes: be_i16(b, ATTRIBUTES_POS),
            last_offset_delta: last_offset_delta as u32,
            base_timestamp: be_i64(b, BASE_TIMESTAMP_POS),
            max_timestamp: be_i64(b, MAX_TIMESTAMP_POS),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: record_count as u32,
        })
    }
}

/// Reads the total length of the batch starting at `b` from its first 12
/// bytes, or `None` if fewer are available.
pub fn peek_total_len(b: &[u8]) -> Option<Result<usize, FormatError>> {
    if b.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(b, 8);
    if (len as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
        return Some(Err(FormatError::BadLength(len.into())));
    }
    Some(Ok(LOG_OVERHEAD + len as usize))
}

/// Computes the CRC-32C a batch should carry.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Parses and fully validates one complete batch (`batch` must be exactly the
/// batch): magic, length, CRC, and for uncompressed batches the framing of
/// every record.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, FormatError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(FormatError::BadLength(header.batch_length.into()));
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(FormatError::CrcMismatch { stored: header.crc, computed });
    }
    if header.compression()? == Compression::None {
        check_records(&header, &batch[HEADER_LEN..])?;
    }
    Ok(header)
}

/// Skips a length-prefixed byte field (length -1 is null).
#[inline]
fn skip_bytes(rec: &[u8], pos: &mut usize) -> Result<(), FormatError> {
    let len = get_varint(rec, pos)?;
    if len >= 0 {
        *pos =
            pos.checked_add(len as usize).filter(|e| *e <= rec.len()).ok_or(FormatError::Truncated("record field"))?;
    }
    Ok(())
}

/// Checks the framing of every record of an uncompressed batch body without
/// decoding into values or allocating: record lengths match their fields,
/// offset deltas strictly increase and stay within the batch, the record
/// count is right, and no bytes trail the last record. This runs on every
/// append, so it only walks.
fn check_records(header: &BatchHeader, body: &[u8]) -> Result<(), FormatError> {
    let mut pos = 0usize;
    let mut last_delta: i64 = -1;
    for _ in 0..header.record_count {
        let len = get_varint(body, &mut pos)?;
        if len < 0 {
            return Err(FormatError::InvalidRecord("negative record length"));
        }
        let end = pos.checked_add(len as usize).filter(|e| *e <= body.len()).ok_or(FormatError::Truncated("record"))?;
        let rec = &body[..end];
        let mut p = pos + 1; // record attributes (unused)
        get_varlong(rec, &mut p)?; // timestamp delta
        let delta = i64::from(get_varint(rec, &mut p)?);
        if delta <= last_delta {
            return Err(FormatError::InvalidRecord("offset deltas not increasing"));
        }
        last_delta = delta;
        skip_bytes(rec, &mut p)?; // key
        skip_bytes(rec, &mut p)?; // value
        let headers = get_varint(rec, &mut p)?;
        if headers < 0 {
            return Err(FormatError::InvalidRecord("negative header count"));
        }
        for _ in 0..headers {
            // Every header consumes at least two bytes or fails, so this loop
            // is bounded by the record's size.
            let key_len = get_varint(rec, &mut p)?;
            if key_len < 0 {
                return Err(FormatError::InvalidRecord("null header key"));
            }
            p = p
                .checked_add(key_len as usize)
                .filter(|e| *e <= rec.len())
                .ok_or(FormatError::Truncated("header key"))?;
            skip_bytes(rec, &mut p)?; // header value
        }
        if p != end {
            return Err(FormatError::InvalidRecord("record length does not match its fields"));
        }
        pos = end;
    }
    if pos != body.len() {
        return Err(FormatError::InvalidRecord("record count does not match the records"));
    }
    if last_delta > i64::from(header.last_offset_delta) {
        return Err(FormatError::InvalidRecord("record offset beyond last offset delta"));
    }
    Ok(())
}

/// Rewrites the base offset of a batch in place (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], offset: u64) {
    batch[0..8].copy_from_slice(&(offset as i64).to_be_bytes());
}

/// Rewrites the leader epoch of a batch in place (outside the CRC).
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_POS..LEADER_EPOCH_POS + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks a batch as log-append-time with timestamp `ts` and recomputes its CRC.
pub fn set_log_append_time(batch: &mut [u8], ts: i64) {
    let attrs = be_i16(batch, ATTRIBUTES_POS) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&ts.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// One header of a record: a key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key (UTF-8 for Kafka clients, but stored as bytes).
    pub key: Bytes,
    /// Header value, `None` for a null value.
    pub value: Option<Bytes>,
}

/// A record as seen by the broker core: offsets and timestamps are absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset.
    pub offset: u64,
    /// Absolute timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Optional key.
    pub key: Option<Bytes>,
    /// Optional value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Ordered headers; keys may repeat.
    pub headers: Vec<Header>,
}

/// A record decoded relative to its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Key bytes.
    pub key: Option<&'a [u8]>,
    /// Value bytes.
    pub value: Option<&'a [u8]>,
    /// Headers as (key, value) slices.
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Iterates the records of an uncompressed batch body (bytes after the header).
#[derive(Debug)]
pub struct RecordIter<'a> {
    buf: &'a [u8],
    pos: usize,
    remaining: u32,
}

impl<'a> RecordIter<'a> {
    /// Iterates `header.record_count` records in `body`.
    pub fn new(header: BatchHeader, body: &'a [u8]) -> Self {
        RecordIter { buf: body, pos: 0, remaining: header.record_count }
    }

    fn bytes_field(&mut self, rec_end: usize) -> Result<Option<&'a [u8]>, FormatError> {
        let len = get_varint(self.buf, &mut self.pos)?;
        if len < 0 {
            return Ok(None);
        }
        let end = self.pos.checked_add(len as usize).ok_or(FormatError::InvalidRecord("length"))?;
        if end > rec_end {
            return Err(FormatError::Truncated("record field"));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(Some(s))
    }

    fn next_record(&mut self) -> Result<RawRecord<'a>, FormatError> {
        let len = get_varint(self.buf, &mut self.pos)?;
        if len < 0 {
            return Err(FormatError::InvalidRecord("negative record length"));
        }
        let rec_end = self.pos.checked_add(len as usize).ok_or(FormatError::InvalidRecord("length"))?;
        if rec_end > self.buf.len() {
            return Err(FormatError::Truncated("record"));
        }
        self.pos += 1; // record attributes, unused
        let timestamp_delta = get_varlong(self.buf, &mut self.pos)?;
        let offset_delta = get_varint(self.buf, &mut self.pos)?;
        if offset_delta < 0 {
            return Err(FormatError::InvalidRecord("negative offset delta"));
        }
        let key = self.bytes_field(rec_end)?;
        let value = self.bytes_field(rec_end)?;
        let count = get_varint(self.buf, &mut self.pos)?;
        if count < 0 {
            return Err(FormatError::InvalidRecord("negative header count"));
        }
        // Each header needs at least two bytes, so the count is bounded by the
        // record's size before anything is allocated.
        if count as usize > (rec_end.saturating_sub(self.pos)) / 2 {
            return Err(FormatError::InvalidRecord("header count exceeds record size"));
        }
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let k = self.bytes_field(rec_end)?.ok_or(FormatError::InvalidRecord("null header key"))?;
            let v = self.bytes_field(rec_end)?;
            headers.push((k, v));
        }
        if self.pos != rec_end {
            return Err(FormatError::InvalidRecord("record length does not match its fields"));
        }
        Ok(RawRecord { offset_delta, timestamp_delta, key, value, headers })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RawRecord<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let r = self.next_record();
        if r.is_err() {
            self.remaining = 0;
        }
        Some(r)
    }
}

/// The records section of one complete batch, decompressed if needed
/// (bounded by [`crate::compression::MAX_DECOMPRESSED_BYTES`]).
pub fn records_body(batch: &Bytes) -> Result<(BatchHeader, Bytes), FormatError> {
    let (header, body) = records_slice(batch)?;
    let body = match body {
        std::borrow::Cow::Borrowed(b) => batch.slice_ref(b),
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    };
    Ok((header, body))
}

/// Like [`records_body`] for a plain slice: the records section borrowed
/// when uncompressed, decompressed (bounded) otherwise.
pub fn records_slice(batch: &[u8]) -> Result<(BatchHeader, std::borrow::Cow<'_, [u8]>), FormatError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() > batch.len() {
        return Err(FormatError::Truncated("batch"));
    }
    let raw = &batch[HEADER_LEN..header.total_len()];
    let body = match header.compression()? {
        Compression::None => std::borrow::Cow::Borrowed(raw),
        codec => std::borrow::Cow::Owned(crate::compression::decompress(
            codec,
            raw,
            crate::compression::MAX_DECOMPRESSED_BYTES,
        )?),
    };
    Ok((header, body))
}

/// One complete batch with its records compressed with `codec` (at
/// `level`) instead: every header field kept, the length and CRC
/// recomputed. A broker with a topic `compression.type` stores client
/// batches this way (Kafka recompresses the same way).
pub fn recompress(batch: &[u8], codec: Compression, level: Option<i32>) -> Result<BytesMut, FormatError> {
    let (header, body) = records_slice(batch)?;
    let records = match codec {
        Compression::None => body.into_owned(),
        c => crate::compression::compress_level(c, &body, level)?,
    };
    let total = HEADER_LEN + records.len();
    let length =
        i32::try_from(total - LOG_OVERHEAD).map_err(|_| FormatError::InvalidRecord("recompressed batch too large"))?;
    let mut b = BytesMut::with_capacity(total);
    b.extend_from_slice(&batch[..HEADER_LEN]);
    b[8..12].copy_from_slice(&length.to_be_bytes());
    let attrs = (header.attributes & !COMPRESSION_MASK) | codec as i16;
    b[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attrs.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = compute_crc(&b);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// Decodes all records of one complete batch (decompressing it if needed)
/// into owned records. Keys and values are zero-copy slices of `batch`, or
/// of the decompressed buffer.
pub fn decode_records(batch: &Bytes) -> Result<(BatchHeader, Vec<Record>), crate::LogError> {
    let (header, body) = records_body(batch)?;
    let slice = |s: &[u8]| body.slice_ref(s);
    let mut out = Vec::with_capacity((header.record_count as usize).min(body.len() / 7 + 1));
    for rec in RecordIter::new(header, &body) {
        let rec = rec?;
        let timestamp = match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp.wrapping_add(rec.timestamp_delta),
        };
        out.push(Record {
            offset: header.base_offset + rec.offset_delta as u64,
            timestamp,
            key: rec.key.map(slice),
            value: rec.value.map(slice),
            headers: rec.headers.iter().map(|(k, v)| Header { key: slice(k), value: v.map(slice) }).collect(),
        });
    }
    Ok((header, out))
}

/// Splits a buffer of concatenated batches into complete batches, stopping
/// silently at an incomplete trailing batch (fetch responses may end in one).
#[derive(Debug)]
pub struct BatchSplitter {
    buf: Bytes,
}

impl BatchSplitter {
    /// Splits `buf`.
    pub fn new(buf: Bytes) -> Self {
        BatchSplitter { buf }
    }
}

impl Iterator for BatchSplitter {
    type Item = Result<Bytes, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        match peek_total_len(&self.buf)? {
            Err(e) => {
                self.buf.clear();
                Some(Err(e))
            }
            Ok(n) if n > self.buf.len() => None,
            Ok(n) => Some(Ok(self.buf.split_to(n))),
        }
    }
}

/// A record to be written by [`BatchBuilder`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Timestamp in ms; `None` uses the builder's base timestamp.
    pub timestamp: Option<i64>,
    /// Optional key.
    pub key: Option<Bytes>,
    /// Optional value.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<Header>,
}

/// Builds an uncompressed v2 batch. Offsets start at 0; the log assigns the
/// real base offset on append.
#[derive(Debug)]
pub struct BatchBuilder {
    base_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    compression: Compression,
    records: Vec<u8>,
    count: u32,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// A builder whose records default to `base_timestamp`.
    pub fn new(base_timestamp: i64) -> Self {
        BatchBuilder {
            base_timestamp,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            compression: Compression::None,
            records: Vec::new(),
            count: 0,
            max_timestamp: base_timestamp,
        }
    }

    /// Sets the idempotent producer identity of the batch.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch transactional.
    pub fn transactional(mut self, yes: bool) -> Self {
        self.transactional = yes;
        self
    }

    /// Marks the batch a control batch (transaction markers: see
    /// [`crate::control`]).
    pub(crate) fn control(mut self) -> Self {
        self.control = true;
        self
    }

    /// Compresses the records with `codec` when built.
    pub fn compression(mut self, codec: Compression) -> Self {
        self.compression = codec;
        self
    }

    /// Number of records added so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size of the batch built so far.
    pub fn size(&self) -> usize {
        HEADER_LEN + self.records.len()
    }

    /// Appends a record.
    pub fn push(&mut self, rec: &NewRecord) {
        let ts = rec.timestamp.unwrap_or(self.base_timestamp);
        self.max_timestamp = self.max_timestamp.max(ts);
        let ts_delta = ts.wrapping_sub(self.base_timestamp);
        let offset_delta = self.count as i32;
        let field_len = |f: &Option<Bytes>| match f {
            Some(b) => varint_len(b.len() as i32) + b.len(),
            None => varint_len(-1),
        };
        let mut body_len = 1
            + varlong_len(ts_delta)
            + varint_len(offset_delta)
            + field_len(&rec.key)
            + field_len(&rec.value)
            + varint_len(rec.headers.len() as i32);
        for h in &rec.headers {
            body_len += varint_len(h.key.len() as i32) + h.key.len() + field_len(&h.value);
        }
        let put_field = |buf: &mut Vec<u8>, f: &Option<Bytes>| match f {
            Some(b) => {
                put_varint(buf, b.len() as i32);
                buf.extend_from_slice(b);
            }
            None => put_varint(buf, -1),
        };
        let buf = &mut self.records;
        buf.reserve(body_len + 5);
        put_varint(buf, body_len as i32);
        buf.push(0);
        put_varlong(buf, ts_delta);
        put_varint(buf, offset_delta);
        put_field(buf, &rec.key);
        put_field(buf, &rec.value);
        put_varint(buf, rec.headers.len() as i32);
        for h in &rec.headers {
            put_varint(buf, h.key.len() as i32);
            buf.extend_from_slice(&h.key);
            put_field(buf, &h.value);
        }
        self.count += 1;
    }

    /// Finishes the batch. Fails only if compression fails.
    pub fn try_build(self) -> Result<BytesMut, FormatError> {
        let records = match self.compression {
            Compression::None => self.records,
            codec => crate::compression::compress(codec, &self.records)?,
        };
        let mut b = BytesMut::with_capacity(HEADER_LEN + records.len());
        let total = HEADER_LEN + records.len();
        let mut attrs: i16 = self.compression as i16;
        if self.transactional {
            attrs |= TRANSACTIONAL_BIT;
        }
        if self.control {
            attrs |= CONTROL_BIT;
        }
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((total - LOG_OVERHEAD) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&[MAGIC_V2 as u8]);
        b.extend_from_slice(&[0u8; 4]);
        b.extend_from_slice(&attrs.to_be_bytes());
        b.extend_from_slice(&(self.count.saturating_sub(1) as i32).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&self.max_timestamp.to_be_bytes());
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&(self.count as i32).to_be_bytes());
        b.extend_from_slice(&records);
        let crc = compute_crc(&b);
        b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(b)
    }

    /// Finishes an uncompressed batch (building one cannot fail).
    ///
    /// # Panics
    /// If a compression codec was set; use [`BatchBuilder::try_build`] then.
    pub fn build(self) -> BytesMut {
        assert_eq!(self.compression, Compression::None, "use try_build with compression");
        self.try_build().expect("building an uncompressed batch cannot fail")
    }
}

#[cfg(test)]
mod tests;
