//! Splitting a byte stream into frames, with the size checked before any
//! body byte is buffered.

use bytes::{Buf, BytesMut};

use crate::command::RemotingCommand;
use crate::error::{CodecError, Result};

/// RocketMQ's default maximum frame (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The length of the frame whose 4-byte prefix is `prefix`, refused when
/// over `max` or too small to hold a header length.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(CodecError::FrameTooLarge { size: len as u64, max });
    }
    if len < 4 {
        return Err(CodecError::Truncated { what: "frame", len: 4, available: len });
    }
    Ok(len)
}

/// Takes one whole command off the front of `buf`, `None` when more bytes
/// are needed. A frame over `max` is an error as soon as its prefix is
/// seen.
pub fn decode_stream(buf: &mut BytesMut, max: usize) -> Result<Option<RemotingCommand>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = frame_len([buf[0], buf[1], buf[2], buf[3]], max)?;
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    RemotingCommand::decode(buf.split_to(len).freeze()).map(Some)
}
