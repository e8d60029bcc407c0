//! The records committed offsets are stored as: key `(group, topic,
//! partition)`, value `offset, leader epoch, commit time, metadata`; a null
//! value deletes. Versioned, so a later layout can be told apart.

use bytes::{BufMut, Bytes, BytesMut};

const KEY_VERSION: u8 = 1;
const VALUE_VERSION: u8 = 1;

/// A committed offset (serde: how nodes hand offsets to a group's
/// coordinator; the stored form is the binary one below).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommittedOffset {
    /// Next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the record before `offset`, or -1.
    pub leader_epoch: i32,
    /// Client-supplied metadata.
    pub metadata: String,
    /// When it was committed (ms since epoch).
    pub commit_timestamp: i64,
}

/// Key of a committed offset.
pub type OffsetKey = (String, String, u32);

pub(crate) fn encode_key(group: &str, topic: &str, partition: u32) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + 4 + group.len() + topic.len() + 4);
    b.put_u8(KEY_VERSION);
    b.put_u16(group.len() as u16);
    b.put_slice(group.as_bytes());
    b.put_u16(topic.len() as u16);
    b.put_slice(topic.as_bytes());
    b.put_u32(partition);
    b.freeze()
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Some(head)
}

fn take_str(b: &mut &[u8], len_bytes: usize) -> Option<String> {
    let len = take(b, len_bytes)?.iter().fold(0usize, |acc, x| (acc << 8) | *x as usize);
    String::from_utf8(take(b, len)?.to_vec()).ok()
}

pub(crate) fn decode_key(mut b: &[u8]) -> Option<OffsetKey> {
    if take(&mut b, 1)? != [KEY_VERSION] {
        return None;
    }
    let group = take_str(&mut b, 2)?;
    let topic = take_str(&mut b, 2)?;
    let p = take(&mut b, 4)?;
    Some((group, topic, u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
}

pub(crate) fn encode_value(v: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + 8 + 4 + 8 + 4 + v.metadata.len());
    b.put_u8(VALUE_VERSION);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    b.put_i64(v.commit_timestamp);
    b.put_u32(v.metadata.len() as u32);
    b.put_slice(v.metadata.as_bytes());
    b.freeze()
}

pub(crate) fn decode_value(mut b: &[u8]) -> Option<CommittedOffset> {
    if take(&mut b, 1)? != [VALUE_VERSION] {
        return None;
    }
    let i64_at = |s: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        i64::from_be_bytes(a)
    };
    let offset = i64_at(take(&mut b, 8)?);
    let e = take(&mut b, 4)?;
    let leader_epoch = i32::from_be_bytes([e[0], e[1], e[2], e[3]]);
    let commit_timestamp = i64_at(take(&mut b, 8)?);
    let metadata = take_str(&mut b, 4)?;
    Some(CommittedOffset { offset, leader_epoch, metadata, commit_timestamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_round_trips_and_rejects_garbage() {
        let k = ("g".to_string(), "t".to_string(), 4);
        assert_eq!(decode_key(&encode_key("g", "t", 4)), Some(k));
        assert_eq!(decode_key(b"\x01\x00\x09ab"), None);
        assert_eq!(decode_value(&[]), None);
        let v = CommittedOffset { offset: 3, leader_epoch: 2, metadata: "m".into(), commit_timestamp: 7 };
        assert_eq!(decode_value(&encode_value(&v)), Some(v));
    }
}
