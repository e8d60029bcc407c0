//! Fetch responses whose record data is not in memory.
//!
//! Fetched batches are file ranges of the log. Encoding them with
//! `kafka-protocol` would first copy every range into memory; instead,
//! [`encode_fetch_response`] encodes everything around the record data and
//! leaves a [`Piece::Records`] placeholder where each partition's records
//! go, so the gateway can send those ranges straight from the page cache to
//! the socket (`sendfile`).
//!
//! Partitions, topics and the response itself are still encoded by
//! `kafka-protocol`, one partition at a time: a partition encoded with
//! empty records ends with the records length (`i32` 0 before v12, the
//! compact length 1 and an empty tag section from v12), which is replaced
//! by the real length. A test checks the result byte for byte against
//! `kafka-protocol`'s own encoding of the same response for every version.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::error::CodecError;

/// Part of an encoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Encoded bytes.
    Bytes(Bytes),
    /// The record data of the partition with this index (in response
    /// order, counting across topics), supplied by the caller.
    Records(usize),
}

fn fail(version: i16, reason: impl Into<String>) -> CodecError {
    CodecError::Encode { api: ApiKey::Fetch, version, reason: reason.into() }
}

fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn put_string(b: &mut BytesMut, s: &StrBytes, flexible: bool) -> Result<(), CodecError> {
    let len = s.len();
    if flexible {
        put_uvarint(b, u32::try_from(len + 1).map_err(|_| fail(12, "topic name too long"))?);
    } else {
        b.put_i16(i16::try_from(len).map_err(|_| fail(0, "topic name too long"))?);
    }
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_count(b: &mut BytesMut, n: usize, flexible: bool, version: i16) -> Result<(), CodecError> {
    if flexible {
        put_uvarint(b, u32::try_from(n + 1).map_err(|_| fail(version, "too many entries"))?);
    } else {
        b.put_i32(i32::try_from(n).map_err(|_| fail(version, "too many entries"))?);
    }
    Ok(())
}

/// Encodes a Fetch response of `version` with its size prefix and header.
/// `external[i]` is `Some(len)` when partition `i` (in response order) has
/// `len` bytes of records supplied separately; such partitions must carry
/// `Some(empty)` records in `response`. Returns the pieces and the total
/// length including the size prefix.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
    external: &[Option<usize>],
) -> Result<(Vec<Piece>, usize), CodecError> {
    if !(4..=18).contains(&version) {
        return Err(fail(version, "unsupported version"));
    }
    let flexible = version >= 12;
    let mut pieces: Vec<Piece> = Vec::new();
    let mut external_len = 0usize;
    let mut b = BytesMut::with_capacity(1024);
    b.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut b, ApiKey::Fetch.response_header_version(version))
        .map_err(|e| fail(version, e.to_string()))?;
    b.put_i32(response.throttle_time_ms);
    if version >= 7 {
        b.put_i16(response.error_code);
        b.put_i32(response.session_id);
    }
    put_count(&mut b, response.responses.len(), flexible, version)?;
    let mut index = 0usize;
    for topic in &response.responses {
        if version <= 12 {
            put_string(&mut b, &topic.topic, flexible)?;
        }
        if version >= 13 {
            b.put_slice(topic.topic_id.as_bytes());
        }
        put_count(&mut b, topic.partitions.len(), flexible, version)?;
        for p in &topic.partitions {
            let start = b.len();
            p.encode(&mut b, version).map_err(|e| fail(version, e.to_string()))?;
            if let Some(len) = external.get(index).copied().flatten() {
                // The partition ends with empty records (and, from v12, an
                // empty tag section): cut them off and write the real length.
                let tail: &[u8] = if flexible { &[0x01, 0x00] } else { &[0, 0, 0, 0] };
                if !b[start..].ends_with(tail) || p.records.as_ref().is_none_or(|r| !r.is_empty()) {
                    return Err(fail(
                        version,
                        format!("partition {index} must carry empty records and no tagged fields"),
                    ));
                }
                b.truncate(b.len() - tail.len());
                if flexible {
                    put_uvarint(&mut b, u32::try_from(len + 1).map_err(|_| fail(version, "records too large"))?);
                } else {
                    b.put_i32(i32::try_from(len).map_err(|_| fail(version, "records too large"))?);
                }
                pieces.push(Piece::Bytes(b.split().freeze()));
                pieces.push(Piece::Records(index));
                external_len += len;
                if flexible {
                    b.put_u8(0);
                }
            }
            index += 1;
        }
        if flexible {
            if !topic.unknown_tagged_fields.is_empty() {
                return Err(fail(version, "unknown tagged fields on a topic are not supported"));
            }
            b.put_u8(0);
        }
    }
    if flexible {
        if !response.node_endpoints.is_empty() || !response.unknown_tagged_fields.is_empty() {
            return Err(fail(version, "tagged fields on the response are not supported"));
        }
        b.put_u8(0);
    }
    pieces.push(Piece::Bytes(b.freeze()));
    let total: usize =
        pieces.iter().map(|p| if let Piece::Bytes(x) = p { x.len() } else { 0 }).sum::<usize>() + external_len;
    let size = i32::try_from(total - 4).map_err(|_| fail(version, "response larger than 2 GiB"))?;
    // The size prefix is at the start of the first piece.
    if let Some(Piece::Bytes(first)) = pieces.first_mut() {
        let mut patched = BytesMut::from(first.as_ref());
        patched[..4].copy_from_slice(&size.to_be_bytes());
        *first = patched.freeze();
    }
    Ok((pieces, total))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ResponseKind, TopicName};

    use super::*;
    use crate::frame::encode_response;

    fn response(records: &[Option<Bytes>], version: i16) -> FetchResponse {
        let mut r = records.iter().enumerate();
        let topics = ["alpha", "b"]
            .iter()
            .map(|name| {
                let parts = (0..2)
                    .filter_map(|_| r.next())
                    .map(|(i, rec)| {
                        PartitionData::default()
                            .with_partition_index(i as i32)
                            .with_high_watermark(100 + i as i64)
                            .with_last_stable_offset(100)
                            .with_log_start_offset(if version >= 5 { 3 } else { -1 })
                            .with_records(rec.clone())
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(if version <= 12 {
                        TopicName(StrBytes::from_static_str(name))
                    } else {
                        TopicName::default()
                    })
                    .with_topic_id(if version >= 13 { uuid::Uuid::from_u128(7) } else { uuid::Uuid::nil() })
                    .with_partitions(parts)
            })
            .collect();
        FetchResponse::default().with_session_id(if version >= 7 { 9 } else { 0 }).with_responses(topics)
    }

    #[test]
    fn matches_kafka_protocol_byte_for_byte_in_every_version() {
        let data: Vec<Option<Bytes>> = vec![
            Some(Bytes::from(vec![1u8; 300])),
            Some(Bytes::new()),
            Some(Bytes::from(vec![2u8; 70_000])),
            Some(Bytes::from_static(b"x")),
        ];
        for v in 4..=18 {
            let expected = encode_response(ApiKey::Fetch, v, 42, &ResponseKind::Fetch(response(&data, v))).unwrap();
            // Partitions 0, 2 and 3 supplied externally; 1 inline (empty).
            let external: Vec<Option<usize>> =
                data.iter().enumerate().map(|(i, d)| (i != 1).then(|| d.as_ref().map_or(0, Bytes::len))).collect();
            let holes: Vec<Option<Bytes>> =
                data.iter().enumerate().map(|(i, d)| if i != 1 { Some(Bytes::new()) } else { d.clone() }).collect();
            let (pieces, total) = encode_fetch_response(v, 42, &response(&holes, v), &external).unwrap();
            let mut got = BytesMut::new();
            for p in pieces {
                match p {
                    Piece::Bytes(b) => got.extend_from_slice(&b),
                    Piece::Records(i) => got.extend_from_slice(data[i].as_ref().unwrap()),
                }
            }
            assert_eq!(got.len(), total, "v{v}");
            assert_eq!(got.as_ref(), expected.as_ref(), "v{v}");
        }
    }

    #[test]
    fn refuses_a_partition_that_still_carries_records() {
        let data = vec![Some(Bytes::from_static(b"abc")), None, None, None];
        assert!(encode_fetch_response(12, 1, &response(&data, 12), &[Some(3)]).is_err());
    }
}
