//! One multiplexed TCP connection per peer.
//!
//! A caller sends a request frame with a fresh correlation id and awaits
//! the response frame carrying it; many requests share one connection. The
//! first frame each way is a [`Hello`]: the server refuses a peer of
//! another cluster, and the client refuses a server that is not the node it
//! meant to reach (a stale address must never make a node vote for, or
//! replicate to, the wrong peer). Frames are capped before anything is
//! allocated for them, the handshake included.
//!
//! A connection that fails fails every request waiting on it; the next
//! call connects again (one attempt per address at a time). Callers bound
//! each call with a timeout. A server runs each peer's requests
//! concurrently, at most 256 and 256 MiB of them per connection: past
//! that it stops reading the connection until some finish.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_cluster_codec::{CodecError, Frame, Hello, Kind, decode, encode};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{ClusterError, Result};

/// Longest wait for a connection and its handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Who we are on the internode network.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The cluster's id: peers of other clusters are refused.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: u64,
    /// Frame cap, each way.
    pub max_frame: u32,
}

impl Identity {
    fn hello(&self) -> Result<Bytes> {
        let h = Hello { version: Hello::VERSION, cluster_id: self.cluster_id.clone(), node_id: self.node_id };
        h.encode().map_err(ClusterError::Codec)
    }
}

/// Answers requests from peers: gets the peer's node id and the request,
/// returns the response body or an error message.
pub trait Handler: Send + Sync + 'static {
    /// Serves one request.
    fn handle(
        &self,
        from: u64,
        kind: Kind,
        body: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send + '_>>;

    /// Peer `from`'s connection to this node ended (not by this node's
    /// shutdown): a hint that the peer may be gone.
    fn disconnected(&self, _from: u64) {}
}

/// Outgoing connections, one per peer address.
#[derive(Debug)]
pub struct Peers {
    me: Identity,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    /// One connection attempt per address at a time: calls racing to a
    /// peer with no connection share the one that is being made.
    connecting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Calls waiting for their response, by correlation id; `None` once the
/// connection failed (new calls fail at once).
type Pending = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<Frame>>>>>;

#[derive(Debug)]
struct Conn {
    peer: u64,
    out: mpsc::Sender<Frame>,
    pending: Pending,
    next: AtomicU32,
}

impl Conn {
    fn is_open(&self) -> bool {
        self.pending.lock().is_some() && !self.out.is_closed()
    }
}

impl Peers {
    /// A pool for `me`.
    pub fn new(me: Identity) -> Arc<Peers> {
        Arc::new(Peers { me, conns: Mutex::new(HashMap::new()), connecting: Mutex::new(HashMap::new()) })
    }

    /// Who we are.
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// Sends a request to the node `expect` (0: whoever answers at `addr`)
    /// and waits for its response body, at most `timeout`.
    pub async fn call(&self, expect: u64, addr: &str, kind: Kind, body: Bytes, timeout: Duration) -> Result<Bytes> {
        match tokio::time::timeout(timeout, self.call_inner(expect, addr, kind, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClusterError::Timeout { addr: addr.to_string(), kind: format!("{kind:?}") }),
        }
    }

    async fn call_inner(&self, expect: u64, addr: &str, kind: Kind, body: Bytes) -> Result<Bytes> {
        let conn = self.conn(expect, addr).await?;
        let correlation = conn.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match conn.pending.lock().as_mut() {
            Some(p) => p.insert(correlation, tx),
            None => return Err(ClusterError::ConnectionLost(addr.to_string())),
        };
        let closed = || ClusterError::ConnectionLost(addr.to_string());
        conn.out.send(Frame::request(kind, correlation, body)).await.map_err(|_| closed())?;
        let frame = rx.await.map_err(|_| closed())?;
        match frame.error_message() {
            Some(message) => Err(ClusterError::Remote { node: conn.peer, message }),
            None => Ok(frame.body),
        }
    }

    async fn conn(&self, expect: u64, addr: &str) -> Result<Arc<Conn>> {
        let usable = |c: &&Arc<Conn>| c.is_open() && (expect == 0 || c.peer == expect);
        if let Some(c) = self.conns.lock().get(addr).filter(usable) {
            return Ok(c.clone());
        }
        let gate = self.connecting.lock().entry(addr.to_string()).or_default().clone();
        let _connecting = gate.lock().await;
        if let Some(c) = self.conns.lock().get(addr).filter(usable) {
            return Ok(c.clone());
        }
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(expect, addr))
            .await
            .map_err(|_| ClusterError::Unreachable { addr: addr.to_string(), reason: "connect timed out".into() })??;
        let conn = Arc::new(conn);
        self.conns.lock().insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    async fn connect(&self, expect: u64, addr: &str) -> Result<Conn> {
        let unreachable =
            |e: std::io::Error| ClusterError::Unreachable { addr: addr.to_string(), reason: e.to_string() };
        let stream = TcpStream::connect(addr).await.map_err(unreachable)?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let mut buf = BytesMut::with_capacity(4096);
        write_frame(&mut wr, &Frame::request(Kind::Hello, 0, self.me.hello()?)).await.map_err(unreachable)?;
        let reply = read_frame(&mut rd, &mut buf, self.me.max_frame).await?;
        let Some(reply) = reply else { return Err(ClusterError::ConnectionLost(addr.to_string())) };
        if let Some(message) = reply.error_message() {
            return Err(ClusterError::Refused { addr: addr.to_string(), message });
        }
        let hello = Hello::decode(reply.body).map_err(ClusterError::Codec)?;
        if expect != 0 && hello.node_id != expect {
            return Err(ClusterError::Refused {
                addr: addr.to_string(),
                message: format!("expected node {expect} but node {} answered", hello.node_id),
            });
        }
        let (out, rx) = mpsc::channel(1024);
        let pending = Arc::new(Mutex::new(Some(HashMap::new())));
        tokio::spawn(write_loop(wr, rx));
        tokio::spawn(client_read_loop(rd, buf, self.me.max_frame, pending.clone(), addr.to_string()));
        Ok(Conn { peer: hello.node_id, out, pending, next: AtomicU32::new(1) })
    }
}

async fn client_read_loop(mut rd: OwnedReadHalf, mut buf: BytesMut, max: u32, pending: Pending, addr: String) {
    loop {
        match read_frame(&mut rd, &mut buf, max).await {
            Ok(Some(f)) if f.is_response() => {
                let waiter = pending.lock().as_mut().and_then(|p| p.remove(&f.correlation));
                if let Some(w) = waiter {
                    let _ = w.send(f);
                }
            }
            Ok(Some(f)) => {
                tracing::warn!(%addr, kind = ?f.kind, "peer sent a request on a client connection; closing it");
                break;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "internode connection failed");
                break;
            }
        }
    }
    // Dropping the senders fails every waiting call.
    pending.lock().take();
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Frame>) {
    let mut out = BytesMut::new();
    while let Some(f) = rx.recv().await {
        out.clear();
        if encode(&f, &mut out).is_err() {
            break;
        }
        // Batch what is already queued into one write.
        while let Ok(more) = rx.try_recv() {
            if encode(&more, &mut out).is_err() {
                return;
            }
        }
        if wr.write_all(&out).await.is_err() {
            break;
        }
    }
}

async fn write_frame(wr: &mut OwnedWriteHalf, f: &Frame) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    encode(f, &mut out).map_err(std::io::Error::other)?;
    wr.write_all(&out).await
}

/// Reads the next frame; `None` at a clean end of stream.
async fn read_frame(rd: &mut OwnedReadHalf, buf: &mut BytesMut, max: u32) -> Result<Option<Frame>> {
    loop {
        if let Some(f) = decode(buf, max).map_err(ClusterError::Codec)? {
            return Ok(Some(f));
        }
        let n = rd.read_buf(buf).await.map_err(|e| ClusterError::Io { op: "read internode frame", source: e })?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ClusterError::Codec(CodecError::Body { what: "frame", reason: "stream ended inside a frame" }))
            };
        }
    }
}

/// Requests one peer may have in flight on a connection.
const MAX_IN_FLIGHT_REQUESTS: usize = 256;
/// Bytes of requests one peer may have in flight on a connection.
const MAX_IN_FLIGHT_BYTES: usize = 256 << 20;
/// The byte budget's unit (permits are counted in these).
const BUDGET_UNIT: usize = 4096;

/// Serves one accepted internode connection until it closes or `stop`.
pub async fn serve_peer(stream: TcpStream, me: Identity, handler: Arc<dyn Handler>, mut stop: watch::Receiver<bool>) {
    let peer_addr = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(4096);
    // The handshake, under the same cap and a deadline: a silent or
    // hostile peer holds nothing for long.
    let first = tokio::time::timeout(CONNECT_TIMEOUT, read_frame(&mut rd, &mut buf, me.max_frame)).await;
    let hello = match first {
        Ok(Ok(Some(f))) if f.kind == Kind::Hello && !f.is_response() => f,
        Ok(Ok(Some(f))) => {
            let _ = write_frame(&mut wr, &f.error("the first frame must be a hello")).await;
            return;
        }
        _ => return,
    };
    let from = match Hello::decode(hello.body.clone()) {
        Ok(h) if h.cluster_id == me.cluster_id && h.version == Hello::VERSION => h.node_id,
        Ok(h) => {
            let msg = format!(
                "node {} of cluster '{}' (protocol {}) cannot join cluster '{}' (protocol {})",
                h.node_id,
                h.cluster_id,
                h.version,
                me.cluster_id,
                Hello::VERSION
            );
            tracing::warn!(peer = %peer_addr, "{msg}");
            let _ = write_frame(&mut wr, &hello.error(&msg)).await;
            return;
        }
        Err(e) => {
            let _ = write_frame(&mut wr, &hello.error(&e.to_string())).await;
            return;
        }
    };
    let Ok(body) = me.hello() else { return };
    if write_frame(&mut wr, &hello.response(body)).await.is_err() {
        return;
    }
    let (out, rx) = mpsc::channel(1024);
    let writer = tokio::spawn(write_loop(wr, rx));
    // What one peer may have in flight here: so many requests, so many
    // bytes of them. Past either, this connection stops reading (TCP pushes
    // back on the peer) until requests finish; other peers are unaffected.
    let requests = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_REQUESTS));
    let bytes = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_BYTES / BUDGET_UNIT));
    let mut stopped = false;
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd, &mut buf, me.max_frame) => f,
            _ = stop.wait_for(|s| *s) => {
                stopped = true;
                break;
            }
        };
        let f = match frame {
            Ok(Some(f)) if !f.is_response() => f,
            Ok(Some(_)) | Ok(None) => break,
            Err(e) => {
                tracing::debug!(peer = %peer_addr, node = from, error = %e, "closing internode connection");
                break;
            }
        };
        let units = (f.body.len() / BUDGET_UNIT + 1).min(MAX_IN_FLIGHT_BYTES / BUDGET_UNIT) as u32;
        let permits = tokio::select! {
            p = async { (requests.clone().acquire_owned().await, bytes.clone().acquire_many_owned(units).await) } => p,
            _ = stop.wait_for(|s| *s) => {
                stopped = true;
                break;
            }
        };
        let (Ok(request_permit), Ok(byte_permits)) = permits else { break };
        let (handler, out) = (handler.clone(), out.clone());
        // Requests run concurrently: a slow snapshot must not hold back
        // heartbeats sharing the connection.
        tokio::spawn(async move {
            let _permits = (request_permit, byte_permits);
            let reply = match f.kind {
                Kind::Unknown(c) => f.error(&format!("unknown request kind {c}")),
                kind => match handler.handle(from, kind, f.body.clone()).await {
                    Ok(body) => f.response(body),
                    Err(message) => f.error(&message),
                },
            };
            let _ = out.send(reply).await;
        });
    }
    drop(out);
    let _ = writer.await;
    if !stopped {
        handler.disconnected(from);
    }
}
