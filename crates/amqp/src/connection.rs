//! One client connection: the protocol header, `connection.start/tune/
//! open`, then frames until either side closes. Frames are read in order
//! by this task; methods of all channels run here one at a time (a
//! channel's order is the connection's), while deliveries and publish
//! confirms are written by the channels' own tasks through one writer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fjord_amqp_codec::protocol::connection as conn;
use fjord_amqp_codec::{AMQPClass, AMQPFrame, AMQPValue, FRAME_MIN_SIZE, FieldTable, PROTOCOL_HEADER, reply};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::AmqpGateway;
use crate::channel::Channel;
use crate::error::{AmqpError, Result};
use crate::exception::AmqpException;
use crate::instrument;
use crate::reader::{FrameReader, ReadError};

/// Frames queued for the writer before senders wait.
const OUT_QUEUE: usize = 1024;

/// Encodes a method frame.
pub(crate) fn method_frame(channel: u16, m: AMQPClass) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    if let Err(e) = fjord_amqp_codec::encode(&AMQPFrame::Method(channel, m), &mut out) {
        // Only over-long short strings fail, and every one we send is cut.
        tracing::error!(error = %e, "encoding an AMQP method");
    }
    out
}

/// What a connection negotiated and who it belongs to.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) gw: Arc<AmqpGateway>,
    pub(crate) id: u64,
    pub(crate) vhost: String,
    /// The authenticated user.
    pub(crate) user: String,
    pub(crate) frame_max: u32,
    pub(crate) channel_max: u16,
    pub(crate) out: mpsc::Sender<Vec<u8>>,
    pub(crate) channels: HashMap<u16, Channel>,
    /// The client understands server-sent basic.cancel.
    pub(crate) cancel_notify: bool,
    /// The client understands connection.blocked/unblocked.
    pub(crate) blocked_notify: bool,
    /// What the client said of itself in start-ok.
    pub(crate) client_properties: FieldTable,
}

/// How a connection ended, for the close sequence.
enum End {
    /// The client closed (close-ok sent) or went away.
    Done,
    /// The server closes: send connection.close with this.
    Close(AmqpException, u16, u16),
}

pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    gw: Arc<AmqpGateway>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let io = |context| move |source| AmqpError::Io { context, source };
    stream.set_nodelay(true).map_err(io("setting TCP_NODELAY"))?;
    let local = stream.local_addr().map_err(io("reading the local address"))?;
    let (rd, mut wr) = stream.into_split();
    let mut rd = FrameReader::new(rd, gw.config.frame_max);
    let header = match tokio::time::timeout(gw.config.handshake_timeout, rd.protocol_header()).await {
        Ok(Some(h)) => h,
        _ => return Ok(()),
    };
    if fjord_amqp_codec::check_protocol_header(&header).is_err() {
        // The spec: answer with the header we speak, then close.
        let _ = wr.write_all(&PROTOCOL_HEADER).await;
        let _ = wr.shutdown().await;
        return Ok(());
    }
    let (out, mut rx) = mpsc::channel::<Vec<u8>>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        let mut wr = tokio::io::BufWriter::with_capacity(64 * 1024, wr);
        while let Some(b) = rx.recv().await {
            wr.write_all(&b).await?;
            while let Ok(more) = rx.try_recv() {
                wr.write_all(&more).await?;
            }
            wr.flush().await?;
        }
        let _ = wr.shutdown().await;
        Ok::<_, std::io::Error>(())
    });
    let mut c = Conn {
        id: gw.next_id(),
        gw: gw.clone(),
        vhost: String::new(),
        user: String::new(),
        frame_max: gw.config.frame_max,
        channel_max: gw.config.channel_max,
        out,
        channels: HashMap::new(),
        cancel_notify: false,
        blocked_notify: false,
        client_properties: FieldTable::default(),
    };
    let handshake = tokio::time::timeout(gw.config.handshake_timeout, c.handshake(&mut rd, peer)).await;
    let heartbeat = match handshake {
        Ok(Ok(Some(hb))) => hb,
        Ok(Ok(None)) | Err(_) => {
            drop(c);
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
            return Ok(());
        }
        Ok(Err(e)) => {
            drop(c);
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
            return Err(e);
        }
    };
    tracing::debug!(conn = c.id, %peer, vhost = %c.vhost, "amqp connection open");
    let beats = (heartbeat > 0).then(|| {
        let out = c.out.clone();
        let every = Duration::from_secs(u64::from(heartbeat)) / 2;
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                // A full queue is traffic enough.
                if out.try_send(vec![8, 0, 0, 0, 0, 0, 0, 0xCE]).is_err() && out.is_closed() {
                    break;
                }
            }
        })
    });
    // Two missed heartbeats, as RabbitMQ; without heartbeats, only TCP.
    let idle = (heartbeat > 0).then(|| Duration::from_secs(2 * u64::from(heartbeat)));
    let info = crate::conns::ConnectionInfo {
        name: format!("{peer} -> {local}"),
        peer,
        local,
        user: c.user.clone(),
        vhost: c.vhost.clone(),
        client_properties: std::mem::take(&mut c.client_properties),
        frame_max: c.frame_max,
        channel_max: c.channel_max,
        heartbeat,
        connected_at: gw.messaging.broker().clock().now_ms(),
        channels: 0,
    };
    // Closed from outside (management API, a deleted user or vhost)
    // through its entry in the connection table.
    let mut listed = gw.connections.add(c.id, info);
    // The disk alarm is told by a side task, so the frame being read is
    // never cancelled halfway for it.
    let side = c.blocked_notify.then(|| tokio::spawn(tell_disk_alarm(gw.clone(), c.out.clone())));
    let mut alarm = gw.alarm.subscribe();
    // One timer for heartbeat idleness, moved on lazily from the last byte.
    let idle_timer = tokio::time::sleep(idle.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle_timer);
    let end = loop {
        let frame = tokio::select! {
            f = rd.next(&gw.config.request_budget) => f,
            () = &mut idle_timer, if idle.is_some() => {
                let due = rd.last_read() + idle.unwrap_or_default();
                if due <= tokio::time::Instant::now() {
                    tracing::debug!(conn = c.id, %peer, "amqp connection missed its heartbeats");
                    break End::Done;
                }
                idle_timer.as_mut().reset(due);
                continue;
            }
            _ = stop.changed() => break End::Close(AmqpException { code: reply::CONNECTION_FORCED, text: "broker shutdown".into() }, 0, 0),
            // (The sender stays in the connection table while this runs.)
            Ok(()) = listed.kill.changed() => {
                let e = listed.kill.borrow().clone();
                break End::Close(e.unwrap_or_else(|| AmqpException { code: reply::CONNECTION_FORCED, text: "closed".into() }), 0, 0);
            }
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break End::Done,
            Err(ReadError::Codec(e)) => {
                break End::Close(AmqpException { code: e.reply_code(), text: e.to_string() }, 0, 0);
            }
            Err(ReadError::Io(e)) => {
                tracing::debug!(conn = c.id, %peer, error = %e, "amqp connection lost");
                break End::Done;
            }
        };
        if matches!(
            frame,
            AMQPFrame::Method(_, AMQPClass::Basic(fjord_amqp_codec::protocol::basic::AMQPMethod::Publish(_)))
        ) && *alarm.borrow()
        {
            // Blocked: this publisher is not read from until disk space is back.
            tokio::select! {
                _ = alarm.wait_for(|on| !*on) => {}
                _ = stop.changed() => break End::Close(AmqpException { code: reply::CONNECTION_FORCED, text: "broker shutdown".into() }, 0, 0),
                r = listed.kill.wait_for(Option::is_some) => {
                    let e = r.ok().and_then(|e| e.clone());
                    let e = e.unwrap_or_else(|| AmqpException { code: reply::CONNECTION_FORCED, text: "closed".into() });
                    break End::Close(e, 0, 0);
                }
            }
        }
        let r = c.on_frame(frame).await;
        listed.channels.store(c.channels.len(), std::sync::atomic::Ordering::Relaxed);
        match r {
            Ok(true) => continue,
            Ok(false) => break End::Done,
            Err((e, class, method)) => break End::Close(e, class, method),
        }
    };
    if let End::Close(e, class_id, method_id) = end {
        tracing::debug!(conn = c.id, %peer, code = e.code, text = %e.text, "closing amqp connection");
        let close = conn::Close { reply_code: e.code, reply_text: e.reply_text().into(), class_id, method_id };
        let _ = c.out.send(method_frame(0, AMQPClass::Connection(conn::AMQPMethod::Close(close)))).await;
        // Wait briefly for close-ok, discarding anything else.
        let wait = async {
            while let Ok(Some(f)) = rd.next(&gw.config.request_budget).await {
                if matches!(f, AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::CloseOk(_)))) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
    }
    if let Some(side) = side {
        side.abort();
    }
    drop(listed);
    c.close_all_channels().await;
    if let Some(b) = beats {
        b.abort();
    }
    drop(c);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(())
}

/// Tells a client that understands connection.blocked when the disk alarm
/// goes on and off.
async fn tell_disk_alarm(gw: Arc<AmqpGateway>, out: mpsc::Sender<Vec<u8>>) {
    let mut alarm = gw.alarm.subscribe();
    let mut told = false;
    loop {
        let on = *alarm.borrow_and_update();
        if on != told {
            let m = if on {
                conn::AMQPMethod::Blocked(conn::Blocked { reason: "low on disk".into() })
            } else {
                conn::AMQPMethod::Unblocked(conn::Unblocked {})
            };
            if out.send(method_frame(0, AMQPClass::Connection(m))).await.is_err() {
                return;
            }
            told = on;
        }
        if alarm.changed().await.is_err() {
            return;
        }
    }
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// What Fjord tells clients in connection.start.
fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    p.insert("product".into(), long_str("Fjord"));
    p.insert("version".into(), long_str(env!("CARGO_PKG_VERSION")));
    p.insert("platform".into(), long_str("Rust"));
    p.insert("information".into(), long_str("https://github.com/fjord-mq/fjord"));
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p
}

/// The user and password of a PLAIN (`\0user\0password`) or AMQPLAIN (a
/// field table without its length) response.
fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
            let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
            Some((user, pass))
        }
        "AMQPLAIN" => {
            let mut framed = (response.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(response);
            let t = fjord_amqp_codec::decode_table(&framed).ok()?;
            let get = |k: &str| crate::model::string_arg(&t, k);
            Some((get("LOGIN")?, get("PASSWORD")?))
        }
        _ => None,
    }
}

impl Conn {
    /// Runs start/tune/open. `Some(heartbeat)` once open; `None` when the
    /// client gave up or was refused (a close was sent).
    async fn handshake(&mut self, rd: &mut FrameReader, peer: SocketAddr) -> Result<Option<u16>> {
        let start = conn::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: "PLAIN AMQPLAIN".into(),
            locales: "en_US".into(),
        };
        self.send(0, AMQPClass::Connection(conn::AMQPMethod::Start(start))).await;
        let cfg = self.gw.config.clone();
        let Some(AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::StartOk(ok)))) =
            self.handshake_frame(rd).await?
        else {
            return Ok(None);
        };
        self.client_properties = ok.client_properties.clone();
        if let Some(AMQPValue::FieldTable(caps)) = ok.client_properties.inner().get("capabilities") {
            let has = |cap: &str| matches!(caps.inner().get(cap), Some(AMQPValue::Boolean(true)));
            self.cancel_notify = has("consumer_cancel_notify");
            self.blocked_notify = has("connection.blocked");
        }
        let mechanism = ok.mechanism.as_str().to_string();
        let login = credentials(&mechanism, ok.response.as_bytes());
        let allowed = match &login {
            Some((u, p)) => self.gw.users.authenticate(u, p, peer.ip().is_loopback()),
            None => false,
        };
        if let (true, Some((u, _))) = (allowed, &login) {
            self.user = u.clone();
        } else {
            let user = login.map(|(u, _)| u).unwrap_or_default();
            let e = AmqpException::access_refused(format!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ));
            tracing::info!(%peer, %user, %mechanism, "amqp login refused");
            self.close_connection(e, 10, 11).await;
            return Ok(None);
        }
        let tune = conn::Tune { channel_max: cfg.channel_max, frame_max: cfg.frame_max, heartbeat: cfg.heartbeat };
        self.send(0, AMQPClass::Connection(conn::AMQPMethod::Tune(tune))).await;
        let Some(AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::TuneOk(t)))) =
            self.handshake_frame(rd).await?
        else {
            return Ok(None);
        };
        let negotiate = |client: u32, server: u32| if client == 0 { server } else { client.min(server) };
        if t.frame_max != 0 && t.frame_max < FRAME_MIN_SIZE {
            let e =
                AmqpException::not_allowed(format!("frame_max {} is below the minimum {FRAME_MIN_SIZE}", t.frame_max));
            self.close_connection(e, 10, 31).await;
            return Ok(None);
        }
        self.frame_max = negotiate(t.frame_max, cfg.frame_max);
        rd.frame_max = self.frame_max;
        self.channel_max = negotiate(u32::from(t.channel_max), u32::from(cfg.channel_max)) as u16;
        // The client has the last word (tune-ok).
        let heartbeat = t.heartbeat;
        let Some(AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::Open(open)))) =
            self.handshake_frame(rd).await?
        else {
            return Ok(None);
        };
        let vhost = open.virtual_host.as_str();
        if !self.gw.model.has_vhost(vhost) {
            let e = AmqpException::not_allowed(format!("vhost {vhost} not found"));
            self.close_connection(e, 10, 40).await;
            return Ok(None);
        }
        if !self.gw.users.may_open(&self.user, vhost) {
            let e = AmqpException::not_allowed(format!("access to vhost '{vhost}' refused for user '{}'", self.user));
            tracing::info!(%peer, user = %self.user, %vhost, "amqp vhost access refused");
            self.close_connection(e, 10, 40).await;
            return Ok(None);
        }
        self.vhost = vhost.to_string();
        self.send(0, AMQPClass::Connection(conn::AMQPMethod::OpenOk(conn::OpenOk {}))).await;
        Ok(Some(heartbeat))
    }

    /// The next handshake frame; heartbeats are skipped, a bad frame closes.
    async fn handshake_frame(&mut self, rd: &mut FrameReader) -> Result<Option<AMQPFrame>> {
        loop {
            match rd.next(&self.gw.config.request_budget).await {
                Ok(Some(AMQPFrame::Heartbeat)) => continue,
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) | Err(ReadError::Io(_)) => return Ok(None),
                Err(ReadError::Codec(e)) => {
                    self.close_connection(AmqpException { code: e.reply_code(), text: e.to_string() }, 0, 0).await;
                    return Ok(None);
                }
            }
        }
    }

    async fn close_connection(&self, e: AmqpException, class_id: u16, method_id: u16) {
        let close = conn::Close { reply_code: e.code, reply_text: e.reply_text().into(), class_id, method_id };
        self.send(0, AMQPClass::Connection(conn::AMQPMethod::Close(close))).await;
    }

    /// Sends a method frame (a gone client is noticed by the reader).
    pub(crate) async fn send(&self, channel: u16, m: AMQPClass) {
        let _ = self.out.send(method_frame(channel, m)).await;
    }

    /// Handles one frame after the handshake. `Ok(false)` ends the
    /// connection cleanly; `Err` closes it with an exception (and the
    /// class and method that caused it).
    async fn on_frame(&mut self, frame: AMQPFrame) -> std::result::Result<bool, (AmqpException, u16, u16)> {
        match frame {
            AMQPFrame::Heartbeat => Ok(true),
            AMQPFrame::Method(0, AMQPClass::Connection(m)) => match m {
                conn::AMQPMethod::Close(_) => {
                    self.close_all_channels().await;
                    self.send(0, AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {}))).await;
                    Ok(false)
                }
                conn::AMQPMethod::CloseOk(_) => Ok(false),
                conn::AMQPMethod::Blocked(_) | conn::AMQPMethod::Unblocked(_) => Ok(true),
                conn::AMQPMethod::UpdateSecret(_) => {
                    let ok = conn::UpdateSecretOk {};
                    self.send(0, AMQPClass::Connection(conn::AMQPMethod::UpdateSecretOk(ok))).await;
                    Ok(true)
                }
                other => {
                    let m = AMQPClass::Connection(other);
                    let e = AmqpException::command_invalid("connection method out of sequence");
                    Err((e, m.get_amqp_class_id(), m.get_amqp_method_id()))
                }
            },
            AMQPFrame::Method(0, m) => {
                let e = AmqpException::command_invalid("a channel method on channel 0");
                Err((e, m.get_amqp_class_id(), m.get_amqp_method_id()))
            }
            AMQPFrame::Header(0, _) | AMQPFrame::Body(0, _) => {
                Err((AmqpException::command_invalid("content on channel 0"), 0, 0))
            }
            AMQPFrame::ProtocolHeader(_) | AMQPFrame::InvalidHeartbeat(_) => {
                Err((AmqpException::frame_error("unexpected frame"), 0, 0))
            }
            f => {
                let id = f.channel_id();
                let (ids, api) = match &f {
                    AMQPFrame::Method(_, m) => {
                        ((m.get_amqp_class_id(), m.get_amqp_method_id()), Some(instrument::api_name(m)))
                    }
                    _ => ((0, 0), None),
                };
                let start = std::time::Instant::now();
                let r = self.on_channel_frame(id, f).await;
                if let Some(api) = api {
                    instrument::METRICS.request_done(api, start, r.is_err());
                }
                match r {
                    Ok(()) => Ok(true),
                    Err(e) if e.is_connection_level() => Err((e, ids.0, ids.1)),
                    Err(e) => {
                        self.fail_channel(id, e, ids.0, ids.1).await;
                        Ok(true)
                    }
                }
            }
        }
    }
}
