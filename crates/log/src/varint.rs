//! Zig-zag variable-length integers as used inside Kafka v2 records.
//!
//! Decoders never trust the wire: they stop after the maximum encoded
//! length of the type and report truncation instead of reading past the end.

use crate::error::FormatError;

/// Appends `v` zig-zag encoded as a varint (at most 5 bytes).
pub fn put_varint(buf: &mut Vec<u8>, v: i32) {
    put_uvarint(buf, ((v << 1) ^ (v >> 31)) as u32 as u64);
}

/// Appends `v` zig-zag encoded as a varlong (at most 10 bytes).
pub fn put_varlong(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Number of bytes `put_varint(v)` writes.
pub fn varint_len(v: i32) -> usize {
    uvarint_len(((v << 1) ^ (v >> 31)) as u32 as u64)
}

/// Number of bytes `put_varlong(v)` writes.
pub fn varlong_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn get_uvarint(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, FormatError> {
    let mut result: u64 = 0;
    for i in 0..max_bytes {
        let b = *buf.get(*pos).ok_or(FormatError::Truncated("varint"))?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(result);
        }
    }
    Err(FormatError::BadVarint)
}

/// Reads a zig-zag varint at `*pos`, advancing it.
#[inline]
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i32, FormatError> {
    // Most lengths and deltas fit in one byte.
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(((b >> 1) as i32) ^ -((b & 1) as i32));
    }
    let raw = get_uvarint(buf, pos, 5)?;
    let raw = u32::try_from(raw).map_err(|_| FormatError::BadVarint)?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zig-zag varlong at `*pos`, advancing it.
#[inline]
pub fn get_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, FormatError> {
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(((b >> 1) as i64) ^ -((b & 1) as i64));
    }
    let raw = get_uvarint(buf, pos, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<i32>()) {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            prop_assert_eq!(b.len(), varint_len(v));
            let mut pos = 0;
            prop_assert_eq!(get_varint(&b, &mut pos).unwrap(), v);
            prop_assert_eq!(pos, b.len());
        }

        #[test]
        fn varlong_round_trips(v in any::<i64>()) {
            let mut b = Vec::new();
            put_varlong(&mut b, v);
            prop_assert_eq!(b.len(), varlong_len(v));
            let mut pos = 0;
            prop_assert_eq!(get_varlong(&b, &mut pos).unwrap(), v);
        }

        #[test]
        fn varint_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut pos = 0;
            let _ = get_varint(&bytes, &mut pos);
            prop_assert!(pos <= bytes.len());
        }
    }

    #[test]
    fn known_encodings() {
        let mut b = Vec::new();
        put_varint(&mut b, -1);
        put_varint(&mut b, 1);
        put_varint(&mut b, 300);
        assert_eq!(b, vec![0x01, 0x02, 0xd8, 0x04]);
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let mut pos = 0;
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut pos), Err(FormatError::BadVarint));
    }
}
