//! One client connection: frames in, responses out, strictly in order.
//!
//! Requests are handled one after the other, as Kafka does, except that a
//! Produce is handled in two steps: its batches are written before the
//! next request is read (so a producer's batches keep their order), and
//! its wait for the acknowledgements (with `acks=all`, a replication round
//! that includes the followers' fsync) runs beside the following requests.
//! Up to [`MAX_IN_FLIGHT`] answers may be pending; they are sent in the
//! order of the requests. Without this, a client that sends a small
//! Produce every millisecond (librdkafka's default `linger.ms`, with many
//! requests in flight) waits for one replication round per request, and
//! its queue grows without bound once a round takes longer than that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_kafka_codec::kafka_protocol::messages::ApiKey;
use fjord_kafka_codec::{Piece, peek_api};
use fjord_log::LogSlice;
use fjord_net::BudgetPermit;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::KafkaError;
use crate::instrument;
use crate::server::{Answer, KafkaGateway, Outgoing, Pending};

/// Most bytes one read of a frame body asks for (each read must see a byte
/// within the idle time).
const READ_CHUNK: usize = 256 * 1024;

/// Capacity of each connection's read and write buffers.
const CONN_BUFFER: usize = 8 * 1024;

/// Most answers a connection holds before reading further requests (each
/// holds a Produce's written state, not its records).
const MAX_IN_FLIGHT: usize = 64;

pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    gw: Arc<KafkaGateway>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), KafkaError> {
    stream.set_nodelay(true).map_err(|source| KafkaError::Io { context: "setting TCP_NODELAY", source })?;
    let (rd, wr) = stream.into_split();
    // Small buffers: they are allocated for every connection, idle ones
    // included; reads and writes larger than them bypass them anyway.
    let rd = BufReader::with_capacity(CONN_BUFFER, rd);
    let wr = BufWriter::with_capacity(CONN_BUFFER, wr);
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    let reader = read_requests(rd, peer, gw, shutdown, tx);
    let writer = write_answers(wr, rx);
    tokio::pin!(reader, writer);
    tokio::select! {
        // No more requests (the client closed, shutdown, or a request that
        // closes the connection): the answers to those before still go.
        read = &mut reader => {
            let written = writer.await;
            read.and(written)
        }
        // The writer ends first only when it failed: nothing more can be
        // answered.
        written = &mut writer => written,
    }
}

/// A request on its way to being answered, in the connection's order.
struct InFlight {
    api: &'static str,
    start: Instant,
    answer: Answering,
}

enum Answering {
    Ready(Answer),
    /// A Produce waiting for its acknowledgements, in a task of its own so
    /// that its timeout runs from the request's arrival.
    Later(Acknowledging),
}

/// A Produce's acknowledgement task, aborted if its answer can no longer
/// be sent (the connection ended first): the writes stand, and a client
/// that reconnects again and again leaves no waiting tasks behind.
struct Acknowledging(JoinHandle<Result<Answer, KafkaError>>);

impl Drop for Acknowledging {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads requests and handles each as far as the connection's order
/// requires (a Produce's writes; everything else whole) before reading the
/// next, handing the answers to [`write_answers`]. Returns at the end of
/// the stream, at shutdown, on an idle timeout, or with the error that
/// closes the connection.
async fn read_requests(
    mut rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    peer: SocketAddr,
    gw: Arc<KafkaGateway>,
    mut shutdown: watch::Receiver<bool>,
    tx: mpsc::Sender<InFlight>,
) -> Result<(), KafkaError> {
    let io = |context| move |source| KafkaError::Io { context, source };
    let client_host = peer.ip().to_string();
    let idle = gw.config.connections_max_idle;
    loop {
        let size = tokio::select! {
            r = read_size(&mut rd, idle) => match r {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    tracing::debug!(%peer, ?idle, "closing idle kafka connection");
                    return Ok(());
                }
                Err(e) => return Err(io("reading a frame size")(e)),
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let (frame, reserved) = read_frame(&mut rd, size, &gw).await?;
        let start = Instant::now();
        let api = instrument::api_name(peek_api(&frame).map_or(-1, |(key, _)| key));
        let handled = gw.respond(frame, &client_host).await;
        // The request's bytes are gone once it is handled (the response
        // is not counted: Kafka's budget covers requests only).
        drop(reserved);
        let answer = match handled {
            Ok(Pending::Ready(answer)) => Answering::Ready(answer),
            Ok(Pending::Later(later)) => Answering::Later(Acknowledging(tokio::spawn(later))),
            Err(e) => {
                instrument::METRICS.request_done(api, start, true);
                return Err(e);
            }
        };
        // Waits while MAX_IN_FLIGHT answers are pending: the client's
        // requests then wait in its socket.
        if tx.send(InFlight { api, start, answer }).await.is_err() {
            return Ok(());
        }
    }
}

/// Sends the answers in the order of their requests, flushing whenever the
/// next one is not ready yet (so pipelined answers leave in one write).
async fn write_answers(mut wr: BufWriter<OwnedWriteHalf>, mut rx: mpsc::Receiver<InFlight>) -> Result<(), KafkaError> {
    loop {
        let next = match rx.try_recv() {
            Ok(next) => next,
            Err(_) => {
                flush(&mut wr).await?;
                match rx.recv().await {
                    Some(next) => next,
                    None => return Ok(()),
                }
            }
        };
        let answer = match next.answer {
            Answering::Ready(answer) => Ok(answer),
            Answering::Later(mut task) => {
                if !task.0.is_finished() {
                    flush(&mut wr).await?;
                }
                (&mut task.0).await.map_err(KafkaError::Answering).and_then(|a| a)
            }
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                instrument::METRICS.request_done(next.api, next.start, true);
                return Err(e);
            }
        };
        let written = match answer.out {
            Some(out) => write_response(&mut wr, out).await,
            None => Ok(()),
        };
        instrument::METRICS.request_done(next.api, next.start, answer.error);
        written?;
    }
}

async fn flush(wr: &mut BufWriter<OwnedWriteHalf>) -> Result<(), KafkaError> {
    wr.flush().await.map_err(|source| KafkaError::Io { context: "writing a response", source })
}

/// Reads a frame's size prefix; `None` at a clean end of stream.
async fn read_size(rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, idle: Duration) -> std::io::Result<Option<i32>> {
    let mut prefix = [0u8; 4];
    match read_full(rd, &mut prefix, idle).await? {
        0 => Ok(None),
        4 => Ok(Some(i32::from_be_bytes(prefix))),
        _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
    }
}

/// Runs one read, failing with `TimedOut` when no byte arrives within
/// `idle`.
async fn within_idle<T>(idle: Duration, read: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    tokio::time::timeout(idle, read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no byte received for {idle:?}")))?
}

/// Fills `buf` unless the stream ends first; returns the bytes read. Each
/// read must see a byte within `idle` (a `TimedOut` error otherwise), so a
/// slow but steady peer is never idle.
async fn read_full(
    rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    buf: &mut [u8],
    idle: Duration,
) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = within_idle(idle, rd.read(&mut buf[got..])).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Writes one response: into the write buffer, Fetch record data with
/// `sendfile` after flushing what precedes it.
async fn write_response(wr: &mut BufWriter<OwnedWriteHalf>, out: Outgoing) -> Result<(), KafkaError> {
    let io = |source| KafkaError::Io { context: "writing a response", source };
    match out {
        Outgoing::Bytes(bytes) => wr.write_all(&bytes).await.map_err(io),
        Outgoing::Pieces { pieces, files } => {
            for piece in pieces {
                match piece {
                    Piece::Bytes(b) => wr.write_all(&b).await.map_err(io)?,
                    Piece::Records(i) => {
                        let slice = files.get(i).and_then(Option::as_ref).ok_or(KafkaError::MissingRecords(i))?;
                        // Whatever is buffered goes first, then the file
                        // range straight from the page cache.
                        wr.flush().await.map_err(io)?;
                        send_file(wr.get_ref().as_ref(), slice)
                            .await
                            .map_err(|source| KafkaError::Io { context: "sending records", source })?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// Reads the rest of a frame of `size` bytes, after reserving its size in
/// the broker-wide request budget (waiting, without reading, while the
/// budget is spent). Every read of the body must see a byte within the
/// idle time: a peer that stops halfway through a frame is closed like an
/// idle one. Frames refused for their size are counted as request errors
/// (of their API when its key was read).
async fn read_frame(
    rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    size: i32,
    gw: &KafkaGateway,
) -> Result<(Bytes, BudgetPermit), KafkaError> {
    let limit = gw.config.max_request_bytes;
    let too_large = |limit| KafkaError::FrameTooLarge { size: i64::from(size), limit };
    let Ok(size) = usize::try_from(size) else {
        instrument::METRICS.request_failed("Unknown");
        return Err(too_large(limit));
    };
    if size > limit {
        instrument::METRICS.request_failed("Unknown");
        return Err(too_large(limit));
    }
    let idle = gw.config.connections_max_idle;
    let io = |source| KafkaError::Io { context: "reading a frame", source };
    let mut buf = BytesMut::with_capacity(size.min(4));
    // The API key comes first: enforce the lower limit for everything but
    // Produce before reserving memory or reading further.
    let head = size.min(4);
    buf.resize(head, 0);
    if read_full(rd, &mut buf[..head], idle).await.map_err(io)? < head {
        return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if let Some((key, _)) = peek_api(&buf)
        && key != ApiKey::Produce as i16
        && size > gw.config.max_control_request_bytes
    {
        instrument::METRICS.request_failed(instrument::api_name(key));
        return Err(too_large(gw.config.max_control_request_bytes));
    }
    let reserved = gw.config.request_budget.reserve(size).await;
    // Reserved, so allocated at once: pages are touched only as bytes
    // arrive, and the buffer is never copied to grow.
    buf.reserve(size - buf.len());
    while buf.len() < size {
        let want = (size - buf.len()).min(READ_CHUNK);
        buf.reserve(want);
        let mut chunk = (&mut *rd).take(want as u64);
        let n = within_idle(idle, chunk.read_buf(&mut buf)).await.map_err(io)?;
        if n == 0 {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok((buf.freeze(), reserved))
}

/// Sends a log file range to the socket with `sendfile(2)`: the kernel
/// copies from the page cache to the socket buffer, the data never enters
/// this process.
async fn send_file(sock: &TcpStream, slice: &LogSlice) -> std::io::Result<()> {
    let file = slice.file().clone();
    let mut offset = i64::try_from(slice.position()).map_err(std::io::Error::other)?;
    let end = offset + i64::try_from(slice.len()).map_err(std::io::Error::other)?;
    while offset < end {
        sock.writable().await?;
        let want = usize::try_from(end - offset).map_err(std::io::Error::other)?;
        let sent = sock.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile64(sock, file.as_ref(), Some(&mut offset), want).map_err(std::io::Error::from)
        });
        match sent {
            // The range is inside the file the slice was cut from; a short
            // file means it changed underneath: the response cannot be
            // completed, so the connection is closed.
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
