//! Repairs the HTTP/2 `:authority` of gRPC clients that send one h2 does
//! not accept, between the socket and h2 (pure: bytes in, bytes out).
//!
//! A RocketMQ 5.x client given several endpoints (`"a:8081;b:8081"`, the
//! way a cluster is configured) dials the gRPC target `ipv4:a:8081,b:8081`,
//! and gRPC C-core (the Python client) and grpc-go send that target's path
//! as every request's `:authority`: `a:8081,b:8081`, not an authority.
//! RocketMQ's proxy (grpc-java on Netty) takes it; h2, under tonic, resets
//! each such stream with PROTOCOL_ERROR, so these clients could not even
//! query a route.
//!
//! The rewriter reads the client's side of the connection frame by frame.
//! It decodes the first request's header block (HPACK, `loona-hpack`); if
//! its `:authority` is valid or absent, it steps aside for the rest of the
//! connection — the bytes pass untouched, and a client sends one authority
//! per connection. If not, every header block of the connection is decoded
//! and re-encoded without that header, as literals that never enter h2's
//! dynamic table (so h2's HPACK state cannot drift from what it is sent),
//! in frames of at most 16 KiB (h2's SETTINGS_MAX_FRAME_SIZE); the
//! request's priority, deprecated by RFC 9113, is dropped with it.
//!
//! Invariants: nothing is emitted for a frame before the whole frame (a
//! header block: the whole block) has arrived; nothing is allocated for a
//! frame or block beyond [`MAX_PENDING`] — a bigger one is refused while
//! rewriting, and handed to h2 untouched (to refuse) before.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::uri::Authority;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size h2 accepts unless it says otherwise.
const MAX_FRAME: usize = 16_384;
/// The most a frame or a header block may hold here.
pub const MAX_PENDING: usize = 1 << 20;
/// Output waiting for h2 beyond which no more input is rewritten.
pub const OUTPUT_HIGH: usize = 1 << 20;
/// The largest HPACK dynamic table a client may ask for while rewriting.
const MAX_TABLE: usize = 64 << 10;

/// Why the client's side of a connection cannot be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// A frame or block beyond [`MAX_PENDING`].
    #[error("an HTTP/2 frame or header block of {0} bytes (at most {MAX_PENDING} here)")]
    TooLarge(usize),
    /// A header block HPACK cannot decode.
    #[error("a header block that does not decode: {0}")]
    Hpack(loona_hpack::decoder::DecoderError),
    /// Another frame inside a header block.
    #[error("a frame of type {0:#x} inside a header block")]
    Interleaved(u8),
}

enum Mode {
    /// Waiting for the connection preface.
    Preface,
    /// Frames, until the first header block decides.
    Undecided,
    /// Every header block re-encoded.
    Rewriting,
    /// Everything passes untouched.
    Passing,
}

/// A header block being collected: its first frame's flags and stream,
/// the block, and the frames as they came (emitted as they are when the
/// block turns out fine).
struct Block {
    flags: u8,
    stream: u32,
    fragments: BytesMut,
    raw: BytesMut,
}

/// The client-to-server half of one connection: [`Rewriter::push`] what
/// is read from the socket, hand [`Rewriter::output`] to h2; once
/// [`Rewriter::finished`], read the socket directly.
pub struct Rewriter {
    mode: Mode,
    input: BytesMut,
    output: BytesMut,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
}

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Preface => "preface",
            Mode::Undecided => "undecided",
            Mode::Rewriting => "rewriting",
            Mode::Passing => "passing",
        };
        f.debug_struct("Rewriter").field("mode", &mode).field("pending", &self.input.len()).finish()
    }
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter::new()
    }
}

impl Rewriter {
    /// For a new connection: the client's preface comes first.
    pub fn new() -> Rewriter {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE);
        Rewriter { mode: Mode::Preface, input: BytesMut::new(), output: BytesMut::new(), block: None, decoder }
    }

    /// Whether it has stepped aside and holds nothing: the rest of the
    /// connection can be read directly.
    pub fn finished(&self) -> bool {
        matches!(self.mode, Mode::Passing) && self.output.is_empty()
    }

    /// What is ready for h2.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.output
    }

    /// Takes bytes read from the client, and rewrites what it can of them
    /// until [`OUTPUT_HIGH`] bytes wait for h2: once h2 took them,
    /// [`Rewriter::resume`] before reading more from the socket.
    pub fn push(&mut self, data: &[u8]) -> Result<(), AuthorityError> {
        if matches!(self.mode, Mode::Passing) {
            self.output.extend_from_slice(data);
            return Ok(());
        }
        self.input.extend_from_slice(data);
        self.resume()
    }

    /// Goes on with what was pushed and not rewritten yet (a few bytes of
    /// a block can decode to a megabyte: output is made as h2 takes it).
    pub fn resume(&mut self) -> Result<(), AuthorityError> {
        loop {
            if self.output.len() >= OUTPUT_HIGH {
                return Ok(());
            }
            match self.mode {
                Mode::Passing => {
                    let rest = self.input.split();
                    self.output.unsplit(rest);
                    return Ok(());
                }
                Mode::Preface => {
                    if self.input.len() < PREFACE.len() {
                        if !PREFACE.starts_with(&self.input) {
                            self.mode = Mode::Passing;
                            continue;
                        }
                        return Ok(());
                    }
                    if &self.input[..PREFACE.len()] != PREFACE {
                        // Not HTTP/2 with prior knowledge: h2 says so.
                        self.mode = Mode::Passing;
                        continue;
                    }
                    let preface = self.input.split_to(PREFACE.len());
                    self.output.unsplit(preface);
                    self.mode = Mode::Undecided;
                }
                Mode::Undecided | Mode::Rewriting => {
                    if !self.next_frame()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles the next whole frame of the input; `false` when it has not
    /// all arrived.
    fn next_frame(&mut self) -> Result<bool, AuthorityError> {
        if self.input.len() < 9 {
            return Ok(false);
        }
        let len = (usize::from(self.input[0]) << 16) | (usize::from(self.input[1]) << 8) | usize::from(self.input[2]);
        let (kind, flags) = (self.input[3], self.input[4]);
        let stream = u32::from_be_bytes([self.input[5], self.input[6], self.input[7], self.input[8]]) & 0x7fff_ffff;
        if len > MAX_PENDING {
            return self.refuse(AuthorityError::TooLarge(len)).map(|()| true);
        }
        if self.input.len() < 9 + len {
            self.input.reserve(9 + len - self.input.len());
            return Ok(false);
        }
        let raw = self.input.split_to(9 + len);
        match (kind, self.block.as_mut()) {
            (CONTINUATION, Some(block)) => {
                let size = block.fragments.len() + len;
                if size > MAX_PENDING {
                    return self.refuse(AuthorityError::TooLarge(size)).map(|()| true);
                }
                block.fragments.extend_from_slice(&raw[9..]);
                block.raw.unsplit(raw);
                if flags & END_HEADERS != 0 {
                    self.end_block()?;
                }
            }
            (_, Some(_)) => return self.refuse(AuthorityError::Interleaved(kind)).map(|()| true),
            (HEADERS, None) => {
                let Some(fragment) = header_fragment(flags, Bytes::copy_from_slice(&raw[9..])) else {
                    // Malformed padding: h2 refuses it.
                    return self.refuse_quietly(raw).map(|()| true);
                };
                self.block = Some(Block { flags, stream, fragments: BytesMut::from(&fragment[..]), raw });
                if flags & END_HEADERS != 0 {
                    self.end_block()?;
                }
            }
            _ => self.output.unsplit(raw),
        }
        Ok(true)
    }

    /// A whole header block arrived.
    fn end_block(&mut self) -> Result<(), AuthorityError> {
        let Some(block) = self.block.take() else { return Ok(()) };
        // Decoded, a block may be far larger than sent (each byte of it
        // can name a whole entry of the dynamic table): collected only up
        // to a header list of MAX_PENDING (counted as RFC 9113 §6.5.2 does).
        let (mut headers, mut size) = (Vec::new(), 0usize);
        let decoded = self.decoder.decode_with_cb(&block.fragments, |n, v| {
            size = size.saturating_add(n.len() + v.len() + 32);
            if size <= MAX_PENDING {
                headers.push((n.into_owned(), v.into_owned()));
            }
        });
        let refused = match decoded {
            Err(e) => Some(AuthorityError::Hpack(e)),
            Ok(()) if size > MAX_PENDING => Some(AuthorityError::TooLarge(size)),
            Ok(()) => None,
        };
        if let Some(e) = refused {
            if matches!(self.mode, Mode::Undecided) {
                // h2 decides, with the protocol's error or its own limit.
                self.mode = Mode::Passing;
                self.output.unsplit(block.raw);
                return Ok(());
            }
            return Err(e);
        }
        let fine = |(n, v): &(Vec<u8>, Vec<u8>)| n != b":authority" || Authority::try_from(&v[..]).is_ok();
        if matches!(self.mode, Mode::Undecided) {
            if headers.iter().all(fine) {
                self.mode = Mode::Passing;
                self.output.unsplit(block.raw);
                return Ok(());
            }
            tracing::debug!("grpc: a client sends an invalid :authority; its header blocks are rewritten without it");
            self.mode = Mode::Rewriting;
        }
        let mut encoded = BytesMut::new();
        for h in headers.iter().filter(|h| fine(h)) {
            literal(&mut encoded, &h.0, &h.1);
        }
        self.emit_block(block.stream, block.flags & END_STREAM, encoded.freeze());
        Ok(())
    }

    /// Writes `block` as a HEADERS frame and as many CONTINUATION frames
    /// as it needs.
    fn emit_block(&mut self, stream: u32, end_stream: u8, mut block: Bytes) {
        let mut kind = HEADERS;
        let mut flags = end_stream;
        loop {
            let part = block.split_to(block.len().min(MAX_FRAME));
            let last = block.is_empty();
            if last {
                flags |= END_HEADERS;
            }
            let len = part.len() as u32;
            self.output.put_slice(&len.to_be_bytes()[1..]);
            self.output.put_u8(kind);
            self.output.put_u8(flags);
            self.output.put_u32(stream);
            self.output.put_slice(&part);
            if last {
                return;
            }
            kind = CONTINUATION;
            flags = 0;
        }
    }

    /// Before the first header block decided: hand everything to h2 as it
    /// is, which refuses what it must; while rewriting: `e`.
    fn refuse(&mut self, e: AuthorityError) -> Result<(), AuthorityError> {
        if !matches!(self.mode, Mode::Undecided) {
            return Err(e);
        }
        if let Some(block) = self.block.take() {
            self.output.unsplit(block.raw);
        }
        self.mode = Mode::Passing;
        Ok(())
    }

    /// [`Rewriter::refuse`] of a frame h2 refuses with the protocol's own
    /// error.
    fn refuse_quietly(&mut self, raw: BytesMut) -> Result<(), AuthorityError> {
        if !matches!(self.mode, Mode::Undecided) {
            return Err(AuthorityError::Interleaved(HEADERS));
        }
        self.output.unsplit(raw);
        self.mode = Mode::Passing;
        Ok(())
    }
}

/// A HEADERS frame's header block fragment: without its padding and
/// priority; `None` when they do not fit.
fn header_fragment(flags: u8, mut payload: Bytes) -> Option<Bytes> {
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        if payload.is_empty() {
            return None;
        }
        pad = usize::from(payload.get_u8());
    }
    if flags & PRIORITY != 0 {
        if payload.len() < 5 {
            return None;
        }
        payload.advance(5);
    }
    if pad > payload.len() {
        return None;
    }
    payload.truncate(payload.len() - pad);
    Some(payload)
}

/// A literal header field without indexing, with a literal name (RFC 7541
/// §6.2.2), strings not Huffman-coded.
fn literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_u8(0);
    string(out, name);
    string(out, value);
}

fn string(out: &mut BytesMut, s: &[u8]) {
    integer(out, 0, 7, s.len());
    out.put_slice(s);
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1) after `high`.
fn integer(out: &mut BytesMut, high: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.put_u8(high | v as u8);
        return;
    }
    out.put_u8(high | max as u8);
    v -= max;
    while v >= 128 {
        out.put_u8((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests;
