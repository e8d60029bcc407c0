//! The frame: header, kind, flags, body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::CodecError;

/// Bytes of the header after the length prefix: kind, flags, correlation.
pub const HEADER_LEN: usize = 2 + 1 + 4;

/// Set on responses.
pub const FLAG_RESPONSE: u8 = 0b01;
/// Set on error responses; the body is a UTF-8 message.
pub const FLAG_ERROR: u8 = 0b10;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Handshake, first on every connection (body: [`crate::Hello`]).
    Hello,
    /// Raft RequestVote (opaque body, owned by the controller).
    RaftVote,
    /// Raft AppendEntries (opaque).
    RaftAppend,
    /// Raft InstallSnapshot chunk (opaque).
    RaftSnapshot,
    /// A metadata write for the controller leader (opaque command).
    ControllerWrite,
    /// A node's liveness heartbeat to the controller leader (body:
    /// [`crate::Heartbeat`]; response [`crate::HeartbeatAck`]).
    Heartbeat,
    /// A request forwarded to the node that can serve it (opaque).
    Forward,
    /// A call of a service a layer above the broker registered (body:
    /// [`crate::ServiceCall`]; response: the service's opaque reply).
    Service,
    /// A follower node's fetch from a leader node (body:
    /// [`crate::ReplicaFetch`]; response [`crate::ReplicaFetchResponse`]).
    ReplicaFetch,
    /// A kind this version does not know: answered with an error frame.
    Unknown(u16),
}

impl Kind {
    /// The wire number.
    pub fn code(self) -> u16 {
        match self {
            Kind::Hello => 1,
            Kind::RaftVote => 2,
            Kind::RaftAppend => 3,
            Kind::RaftSnapshot => 4,
            Kind::ControllerWrite => 5,
            Kind::Heartbeat => 6,
            Kind::Forward => 7,
            Kind::Service => 8,
            Kind::ReplicaFetch => 9,
            Kind::Unknown(c) => c,
        }
    }

    /// The kind for a wire number.
    pub fn from_code(c: u16) -> Kind {
        match c {
            1 => Kind::Hello,
            2 => Kind::RaftVote,
            3 => Kind::RaftAppend,
            4 => Kind::RaftSnapshot,
            5 => Kind::ControllerWrite,
            6 => Kind::Heartbeat,
            7 => Kind::Forward,
            8 => Kind::Service,
            9 => Kind::ReplicaFetch,
            c => Kind::Unknown(c),
        }
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: Kind,
    /// [`FLAG_RESPONSE`], [`FLAG_ERROR`].
    pub flags: u8,
    /// Chosen by the requester, repeated by the response.
    pub correlation: u32,
    /// The body.
    pub body: Bytes,
}

impl Frame {
    /// A request.
    pub fn request(kind: Kind, correlation: u32, body: impl Into<Bytes>) -> Frame {
        Frame { kind, flags: 0, correlation, body: body.into() }
    }

    /// The successful response to `self`.
    pub fn response(&self, body: impl Into<Bytes>) -> Frame {
        Frame { kind: self.kind, flags: FLAG_RESPONSE, correlation: self.correlation, body: body.into() }
    }

    /// The error response to `self`.
    pub fn error(&self, message: &str) -> Frame {
        Frame {
            kind: self.kind,
            flags: FLAG_RESPONSE | FLAG_ERROR,
            correlation: self.correlation,
            body: Bytes::copy_from_slice(message.as_bytes()),
        }
    }

    /// Is this a response?
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// The error message of an error response.
    pub fn error_message(&self) -> Option<String> {
        (self.flags & FLAG_ERROR != 0).then(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// Takes one frame off the front of `buf` when it is complete: `Ok(None)`
/// means more bytes are needed. The length is checked against `max` first,
/// so a hostile prefix allocates nothing.
pub fn decode(buf: &mut BytesMut, max: u32) -> Result<Option<Frame>, CodecError> {
    let Some(prefix) = buf.first_chunk::<4>() else { return Ok(None) };
    let len = u32::from_be_bytes(*prefix);
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    if (len as usize) < HEADER_LEN {
        return Err(CodecError::TooShort(len));
    }
    if buf.len() < 4 + len as usize {
        // Room for the rest, bounded by the cap just checked.
        buf.reserve(4 + len as usize - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(4 + len as usize).freeze();
    frame.advance(4);
    let kind = Kind::from_code(frame.get_u16());
    let flags = frame.get_u8();
    if flags & !(FLAG_RESPONSE | FLAG_ERROR) != 0 || flags == FLAG_ERROR {
        return Err(CodecError::BadFlags(flags));
    }
    let correlation = frame.get_u32();
    Ok(Some(Frame { kind, flags, correlation, body: frame }))
}

/// Appends `frame` to `out`. Fails only when the body would not fit the
/// length prefix (a caller bug; peers cap frames far below that).
pub fn encode(frame: &Frame, out: &mut BytesMut) -> Result<(), CodecError> {
    let len = u32::try_from(HEADER_LEN + frame.body.len())
        .map_err(|_| CodecError::TooLarge { len: u32::MAX, max: u32::MAX })?;
    out.reserve(4 + len as usize);
    out.put_u32(len);
    out.put_u16(frame.kind.code());
    out.put_u8(frame.flags);
    out.put_u32(frame.correlation);
    out.put_slice(&frame.body);
    Ok(())
}
