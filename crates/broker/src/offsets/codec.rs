//! The records committed offsets are stored as: key `(group, topic,
//! partition)`, value `offset, leader epoch, commit time, metadata`; a null
//! value deletes. Beside them, a group's state: key `(group)` under its own
//! key version, value a [`GroupRecord`] (its first byte says which kind: a
//! classic group's settled membership in the binary layout below, or a
//! KIP-848 group's state as JSON); a null value deletes it. Versioned, so a later layout can be told apart (and a key
//! version a reader does not know is skipped, not misread).

use bytes::{BufMut, Bytes, BytesMut};

use std::time::Duration;

use crate::group::{GroupRecord, StoredGroup, StoredMember};

const KEY_VERSION: u8 = 1;
const VALUE_VERSION: u8 = 1;
const GROUP_KEY_VERSION: u8 = 2;
const GROUP_VALUE_VERSION: u8 = 1;
const CONSUMER_GROUP_VALUE_VERSION: u8 = 2;

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

/// What a stored record's key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredKey {
    /// A committed offset.
    Offset(OffsetKey),
    /// A group's membership.
    Group(String),
}

pub(crate) fn decode_stored_key(b: &[u8]) -> Option<StoredKey> {
    match *b.first()? {
        KEY_VERSION => decode_key(b).map(StoredKey::Offset),
        GROUP_KEY_VERSION => {
            let mut rest = &b[1..];
            Some(StoredKey::Group(take_str(&mut rest, 2)?))
        }
        _ => None,
    }
}

pub(crate) fn encode_group_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(3 + group.len());
    b.put_u8(GROUP_KEY_VERSION);
    b.put_u16(group.len() as u16);
    b.put_slice(group.as_bytes());
    b.freeze()
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32(v.len() as u32);
    b.put_slice(v);
}

fn put_opt(b: &mut BytesMut, v: Option<&str>) {
    match v {
        Some(v) => {
            b.put_u8(1);
            put_bytes(b, v.as_bytes());
        }
        None => b.put_u8(0),
    }
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    let s = take(b, 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn take_bytes(b: &mut &[u8]) -> Option<Bytes> {
    let len = take_u32(b)? as usize;
    Some(Bytes::copy_from_slice(take(b, len)?))
}

fn take_opt(b: &mut &[u8]) -> Option<Option<String>> {
    match take(b, 1)? {
        [0] => Some(None),
        [1] => take_str(b, 4).map(Some),
        _ => None,
    }
}

pub(crate) fn encode_group_record(record: &GroupRecord) -> Bytes {
    match record {
        GroupRecord::Classic(g) => encode_group_value(g),
        GroupRecord::Consumer(g) => {
            let mut b = BytesMut::new();
            b.put_u8(CONSUMER_GROUP_VALUE_VERSION);
            // Plain data (strings, numbers, maps with string keys): cannot fail.
            b.put_slice(&serde_json::to_vec(g).unwrap_or_default());
            b.freeze()
        }
    }
}

pub(crate) fn decode_group_record(group_id: &str, b: &[u8]) -> Option<GroupRecord> {
    match *b.first()? {
        GROUP_VALUE_VERSION => decode_group_value(group_id, b).map(GroupRecord::Classic),
        CONSUMER_GROUP_VALUE_VERSION => serde_json::from_slice(&b[1..])
            .ok()
            .filter(|g: &crate::group::consumer::StoredConsumerGroup| g.group_id() == group_id)
            .map(GroupRecord::Consumer),
        _ => None,
    }
}

fn encode_group_value(g: &StoredGroup) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(GROUP_VALUE_VERSION);
    b.put_i32(g.generation);
    put_opt(&mut b, g.protocol_type.as_deref());
    put_opt(&mut b, g.protocol_name.as_deref());
    put_opt(&mut b, g.leader_id.as_deref());
    b.put_u32(g.members.len() as u32);
    for m in &g.members {
        put_bytes(&mut b, m.member_id.as_bytes());
        put_opt(&mut b, m.group_instance_id.as_deref());
        put_bytes(&mut b, m.client_id.as_bytes());
        put_bytes(&mut b, m.client_host.as_bytes());
        b.put_u32(m.session_timeout.as_millis().min(u32::MAX as u128) as u32);
        b.put_u32(m.rebalance_timeout.as_millis().min(u32::MAX as u128) as u32);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

fn decode_group_value(group_id: &str, mut b: &[u8]) -> Option<StoredGroup> {
    if take(&mut b, 1)? != [GROUP_VALUE_VERSION] {
        return None;
    }
    let generation = take_u32(&mut b)? as i32;
    let protocol_type = take_opt(&mut b)?;
    let protocol_name = take_opt(&mut b)?;
    let leader_id = take_opt(&mut b)?;
    let count = take_u32(&mut b)? as usize;
    // Each member takes at least 30 bytes: a count beyond what is left is
    // a damaged record, refused before anything is allocated for it.
    if count > b.len() / 30 {
        return None;
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(StoredMember {
            member_id: take_str(&mut b, 4)?,
            group_instance_id: take_opt(&mut b)?,
            client_id: take_str(&mut b, 4)?,
            client_host: take_str(&mut b, 4)?,
            session_timeout: Duration::from_millis(take_u32(&mut b)?.into()),
            rebalance_timeout: Duration::from_millis(take_u32(&mut b)?.into()),
            subscription: take_bytes(&mut b)?,
            assignment: take_bytes(&mut b)?,
        });
    }
    b.is_empty().then(|| StoredGroup {
        group_id: group_id.to_string(),
        generation,
        protocol_type,
        protocol_name,
        leader_id,
        members,
    })
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

    proptest::proptest! {
        /// Whatever a stored record's bytes are, decoding refuses or
        /// returns something, without panicking or allocating for counts
        /// the bytes cannot hold.
        #[test]
        fn stored_records_decode_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode_stored_key(&bytes);
            let _ = decode_value(&bytes);
            let _ = decode_group_record("g", &bytes);
            let mut classic = vec![GROUP_VALUE_VERSION];
            classic.extend_from_slice(&bytes);
            let _ = decode_group_record("g", &classic);
            let mut consumer = vec![CONSUMER_GROUP_VALUE_VERSION];
            consumer.extend_from_slice(&bytes);
            let _ = decode_group_record("g", &consumer);
        }

        /// A classic group's record decodes to what was encoded.
        #[test]
        fn classic_group_records_round_trip(
            generation in proptest::prelude::any::<i32>(),
            names in proptest::collection::vec("[a-z0-9-]{0,12}", 1..6),
            blobs in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..6),
        ) {
            let members = names.iter().zip(blobs.iter().cycle()).map(|(n, b)| StoredMember {
                member_id: n.clone(),
                group_instance_id: (n.len() % 2 == 0).then(|| format!("i-{n}")),
                client_id: format!("c-{n}"),
                client_host: "/10.0.0.1".into(),
                session_timeout: Duration::from_millis(n.len() as u64 * 1000),
                rebalance_timeout: Duration::from_millis(7),
                subscription: Bytes::copy_from_slice(b),
                assignment: Bytes::copy_from_slice(&b[..b.len() / 2]),
            }).collect();
            let g = StoredGroup {
                group_id: "g".into(),
                generation,
                protocol_type: Some("consumer".into()),
                protocol_name: names.first().cloned(),
                leader_id: names.last().cloned(),
                members,
            };
            let record = GroupRecord::Classic(g);
            proptest::prop_assert_eq!(decode_group_record("g", &encode_group_record(&record)), Some(record));
        }
    }

    #[test]
    fn group_records_round_trip_and_refuse_damage() {
        let g = StoredGroup {
            group_id: "g".into(),
            generation: 7,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader_id: Some("m1".into()),
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout: Duration::from_secs(45),
                rebalance_timeout: Duration::from_secs(300),
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let value = encode_group_value(&g);
        assert_eq!(decode_group_value("g", &value), Some(g));
        assert_eq!(decode_stored_key(&encode_group_key("g")), Some(StoredKey::Group("g".into())));
        assert_eq!(decode_stored_key(&encode_key("g", "t", 1)), Some(StoredKey::Offset(("g".into(), "t".into(), 1))));
        assert_eq!(decode_stored_key(&[9, 0]), None);
        // Every truncation, and a member count larger than the record, is refused.
        for cut in 0..value.len() {
            assert_eq!(decode_group_value("g", &value[..cut]), None, "cut at {cut}");
        }
        let mut huge = value.to_vec();
        // version, generation, then the three optional strings.
        let count_at = 1 + 4 + (1 + 4 + 8) + (1 + 4 + 5) + (1 + 4 + 2);
        huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_group_value("g", &huge), None);
    }
}
