//! Request frames in, response frames out.
//!
//! A Kafka frame is a big-endian `i32` size followed by that many bytes:
//! a request header (api key, api version, correlation id, client id and,
//! for flexible versions, tagged fields) and the request body. The gateway
//! reads the size and the body; everything after that happens here.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::CodecError;
use crate::guard;
use crate::versions::supported_range;

/// Fixed part of every request header: api key, api version, correlation id.
pub const MIN_FRAME: usize = 8;

/// Bytes of collections a frame of `frame_len` bytes may decode into: 64
/// times its size plus 64 KiB. Every legitimate request stays far below;
/// the guard rejects requests that would exceed it.
pub fn decode_budget(frame_len: usize) -> u64 {
    (frame_len as u64).saturating_mul(64).saturating_add(64 * 1024)
}

/// A decoded request.
#[derive(Debug)]
pub struct RequestFrame {
    /// Which API.
    pub api: ApiKey,
    /// Header (version, correlation id, client id).
    pub header: RequestHeader,
    /// The request body.
    pub request: RequestKind,
}

/// Reads `(api_key, api_version)` from the start of a frame body, so a
/// gateway can apply per-API size limits before reading the rest.
pub fn peek_api(prefix: &[u8]) -> Option<(i16, i16)> {
    match prefix {
        [a0, a1, v0, v1, ..] => Some((i16::from_be_bytes([*a0, *a1]), i16::from_be_bytes([*v0, *v1]))),
        _ => None,
    }
}

/// Decodes one request frame (without its 4-byte size prefix).
///
/// Unknown API keys, unsupported versions and malformed or over-budget
/// bodies are errors; nothing is handed to `kafka-protocol` before the
/// guard accepted the whole frame.
pub fn decode_request(frame: Bytes) -> Result<RequestFrame, CodecError> {
    if frame.len() < MIN_FRAME {
        return Err(CodecError::FrameTooShort(frame.len()));
    }
    let (key, version) = peek_api(&frame).ok_or(CodecError::FrameTooShort(frame.len()))?;
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|()| CodecError::UnknownApiKey(key))?;
    let (min, max) = supported_range(api).ok_or(CodecError::UnknownApiKey(key))?;
    if version < min || version > max {
        return Err(CodecError::UnsupportedVersion { api, version, min, max, correlation_id });
    }
    let header_version = api.request_header_version(version);
    guard::check_request(api, version, header_version, &frame, decode_budget(frame.len()))?;

    let malformed = |reason: String| CodecError::Malformed { api, version, reason };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, header_version).map_err(|e| malformed(e.to_string()))?;
    let request = RequestKind::decode(api, &mut buf, version).map_err(|e| malformed(e.to_string()))?;
    Ok(RequestFrame { api, header, request })
}

/// Encodes a response frame, including its 4-byte size prefix.
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, CodecError> {
    let fail = |reason: String| CodecError::Encode { api, version, reason };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut out, api.response_header_version(version)).map_err(|e| fail(e.to_string()))?;
    response.encode(&mut out, version).map_err(|e| fail(e.to_string()))?;
    let size = i32::try_from(out.len() - 4).map_err(|_| CodecError::Encode {
        api,
        version,
        reason: "response larger than 2 GiB".into(),
    })?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}
