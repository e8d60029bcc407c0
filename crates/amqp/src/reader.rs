//! Reading a connection's frames. Bytes go into one buffer and each
//! complete frame in it is decoded in place, so a read that brought in
//! many small frames (a publish is three) costs one syscall and no copy
//! per frame. A frame's header is checked (`frame_max`, type) as soon as
//! its 7 bytes are in; a frame announced larger than what is buffered
//! reserves its size in the broker's request budget before the buffer
//! grows for it, and holds the reservation until it is decoded.
//!
//! Idleness is measured from the last byte read ([`FrameReader::last_read`]),
//! so the caller's heartbeat check is one timer per connection, not one
//! per frame.

use bytes::BytesMut;
use fjord_amqp_codec::{AMQPFrame, CodecError, FRAME_HEADER_LEN, FrameHeader};
use fjord_net::RequestBudget;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;

/// Free buffer space asked for before each read. Small enough that an idle
/// connection holds little; a larger frame grows the buffer (budgeted).
const READ_CHUNK: usize = 16 * 1024;

/// Why no frame came.
pub(crate) enum ReadError {
    /// Bad bytes: the connection closes with the error's reply code.
    Codec(CodecError),
    /// The socket failed or ended inside a frame.
    Io(std::io::Error),
}

/// The read side of a connection.
pub(crate) struct FrameReader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    /// Largest frame accepted (0 = no limit); negotiated by tune-ok.
    pub(crate) frame_max: u32,
    last_read: Instant,
}

impl FrameReader {
    pub(crate) fn new(rd: OwnedReadHalf, frame_max: u32) -> FrameReader {
        FrameReader { rd, buf: BytesMut::with_capacity(READ_CHUNK), frame_max, last_read: Instant::now() }
    }

    /// When the last byte arrived.
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// Reads more bytes; `Ok(false)` at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let n = self.rd.read_buf(&mut self.buf).await?;
        if n > 0 {
            self.last_read = Instant::now();
        }
        Ok(n > 0)
    }

    /// The 8-byte protocol header a connection starts with; `None` when the
    /// client went away before sending it.
    pub(crate) async fn protocol_header(&mut self) -> Option<[u8; 8]> {
        while self.buf.len() < 8 {
            if !self.fill().await.ok()? {
                return None;
            }
        }
        let head = self.buf.split_to(8);
        head[..].try_into().ok()
    }

    /// The next frame: `None` at a clean end of stream (between frames).
    /// Cancel-safe: bytes already read stay buffered for the next call.
    pub(crate) async fn next(&mut self, budget: &RequestBudget) -> Result<Option<AMQPFrame>, ReadError> {
        let mut reserved = None;
        loop {
            if let Some(head) = self.buf.first_chunk::<FRAME_HEADER_LEN>() {
                let header = FrameHeader::parse(head);
                header.check(self.frame_max).map_err(ReadError::Codec)?;
                let len = header.frame_len() as usize;
                if self.buf.len() >= len {
                    let frame = self.buf.split_to(len);
                    return fjord_amqp_codec::decode(&frame).map(Some).map_err(ReadError::Codec);
                }
                if reserved.is_none() {
                    // Checked against frame_max above, so bounded.
                    reserved = Some(budget.reserve(len).await);
                    self.buf.reserve(len - self.buf.len());
                }
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return Ok(None),
                Ok(false) => {
                    let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection ended inside a frame");
                    return Err(ReadError::Io(e));
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}
