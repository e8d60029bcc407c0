//! One client connection. Requests are read in order but answered
//! concurrently: a long-polling PULL_MESSAGE must not hold up the sends
//! and heartbeats a client multiplexes over the same connection, so each
//! request runs in its own task (at most
//! [`crate::RocketMqConfig::max_in_flight`] per connection; reading stops
//! while that many are running) and responses go through one writer task.
//! Offset updates are the exception: they finish before the next request
//! is read, so reading an offset back right after writing it one-way
//! sees the new value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use fjord_net::BudgetPermit;
use fjord_rocketmq_codec::frame::frame_len;
use fjord_rocketmq_codec::{Language, RemotingCommand, SerializeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::RocketMqGateway;
use crate::clients::ConnHandle;
use crate::error::RocketMqError;
use crate::instrument;

/// Responses (and broker requests) queued per connection before senders wait.
const OUT_QUEUE: usize = 1024;

/// Most bytes one read of a frame body asks for (each read must see a byte
/// within the idle time).
const READ_CHUNK: usize = 256 * 1024;

/// What a request handler knows about its connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) conn: ConnHandle,
}

pub(crate) async fn run(
    stream: TcpStream,
    addr: SocketAddr,
    gw: Arc<RocketMqGateway>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RocketMqError> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let io = |context| move |source| RocketMqError::Io { context, source };
    stream.set_nodelay(true).map_err(io("setting TCP_NODELAY"))?;
    let (mut rd, wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::with_capacity(64 * 1024, wr);
        while let Some(b) = rx.recv().await {
            wr.write_all(&b).await?;
            while let Ok(more) = rx.try_recv() {
                wr.write_all(&more).await?;
            }
            wr.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let conn = ConnHandle {
        id,
        tx,
        serialize_type: SerializeType::Json,
        addr: addr.to_string(),
        language: Language::JAVA,
        version: 0,
    };
    let mut peer = Peer { conn };
    tracing::debug!(conn = id, %addr, "rocketmq connection");
    let permits = Arc::new(Semaphore::new(gw.config.max_in_flight));
    // When the last frame arrived or a request finished: idleness counts
    // from there, and only while nothing is in flight.
    let activity = Arc::new(parking_lot::Mutex::new(Activity { last: Instant::now(), waiting_for_memory: false }));
    let result = loop {
        let read = read_command(&mut rd, &gw, &activity);
        let (cmd, reserved) = match until_idle(read, &gw, &permits, &activity, &mut shutdown).await {
            Some(Ok(Some(c))) => c,
            Some(Ok(None)) => break Ok(()),
            Some(Err(e)) => {
                if matches!(e, RocketMqError::Codec(_)) {
                    instrument::METRICS.request_failed("UNKNOWN");
                }
                break Err(e);
            }
            None => {
                tracing::debug!(conn = id, %addr, "closing idle or stopped rocketmq connection");
                break Ok(());
            }
        };
        activity.lock().last = Instant::now();
        if cmd.is_response() {
            // Clients answer broker requests only for codes Fjord sends
            // one-way; nothing waits for such an answer.
            continue;
        }
        // Broker-initiated requests follow the client's header format.
        peer.conn.serialize_type = cmd.serialize_type;
        (peer.conn.language, peer.conn.version) = (cmd.language, cmd.version);
        let Ok(permit) = permits.clone().acquire_owned().await else { break Ok(()) };
        // Offset updates are handled before the next request is read:
        // clients persist an offset one-way and read it back at once
        // (`persist` then `fetchConsumeOffset`), and a RocketMQ broker
        // answers the read with the value just written.
        let in_order = cmd.code == fjord_rocketmq_codec::codes::request::UPDATE_CONSUMER_OFFSET;
        let (gw, peer, activity) = (gw.clone(), peer.clone(), activity.clone());
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let api = instrument::api_name(cmd.code);
            let oneway = cmd.is_oneway();
            let resp = crate::handlers::handle(&gw, &peer, cmd).await;
            drop(reserved);
            let failed = instrument::is_error(resp.code);
            if !oneway {
                let _ = peer.conn.tx.send(resp.encode()).await;
            }
            instrument::METRICS.request_done(api, start, failed);
            activity.lock().last = Instant::now();
            drop(permit);
        });
        if in_order {
            let _ = task.await;
        }
    };
    gw.connection_closed(id);
    drop(peer);
    writer.abort();
    result
}

/// When the peer last sent a byte (or a request finished), and whether the
/// connection is waiting for request memory.
#[derive(Debug)]
pub(crate) struct Activity {
    last: Instant,
    waiting_for_memory: bool,
}

/// Drives `read` until it completes (`Some`), or returns `None` at
/// shutdown or once the connection has been idle, with nothing in flight,
/// for [`crate::RocketMqConfig::connection_max_idle`]. Dropping an
/// unfinished read is fine: the connection closes.
async fn until_idle<T>(
    read: impl std::future::Future<Output = T>,
    gw: &RocketMqGateway,
    permits: &Semaphore,
    activity: &parking_lot::Mutex<Activity>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<T> {
    let idle = gw.config.connection_max_idle;
    tokio::pin!(read);
    loop {
        let deadline = activity.lock().last.checked_add(idle);
        let wait = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut read => return Some(r),
            _ = wait => {
                // Waiting for request memory is the broker's doing, not
                // the peer's idleness.
                let busy = permits.available_permits() < gw.config.max_in_flight || activity.lock().waiting_for_memory;
                if !busy && activity.lock().last.elapsed() >= idle {
                    return None;
                }
                if busy {
                    // A long poll outlasting the idle time keeps it open.
                    activity.lock().last = Instant::now();
                }
            }
            _ = shutdown.changed() => return None,
        }
    }
}

/// Reads one command; `None` at a clean end of stream. The frame's size
/// is reserved in the request budget before its body is read (waiting
/// without reading while the budget is spent), and every chunk received
/// counts as activity, so idleness runs from the last byte.
async fn read_command(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    gw: &RocketMqGateway,
    activity: &parking_lot::Mutex<Activity>,
) -> Result<Option<(RemotingCommand, BudgetPermit)>, RocketMqError> {
    let io = |source| RocketMqError::Io { context: "reading a frame", source };
    let mut prefix = [0u8; 4];
    match rd.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    activity.lock().last = Instant::now();
    let len = frame_len(prefix, gw.config.max_frame_bytes)?;
    activity.lock().waiting_for_memory = true;
    let reserved = gw.config.request_budget.reserve(len).await;
    *activity.lock() = Activity { last: Instant::now(), waiting_for_memory: false };
    // Reserved, so allocated at once: pages are touched only as bytes
    // arrive, and the buffer is never copied to grow.
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let want = (len - buf.len()).min(READ_CHUNK);
        buf.reserve(want);
        let n = (&mut *rd).take(want as u64).read_buf(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        activity.lock().last = Instant::now();
    }
    Ok(Some((RemotingCommand::decode(buf.freeze())?, reserved)))
}
