//! The open connections, as RabbitMQ's management API shows them: name
//! `"peer -> local"`, user, vhost, the client's properties
//! (`connection_name` among them), channels, when it opened. A connection
//! is listed from `connection.open-ok` until it ends, and is closed from
//! outside through its entry: by the management API, or when its user or
//! virtual host is deleted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fjord_amqp_codec::{FieldTable, reply};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::exception::AmqpException;

/// What the management API shows of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// RabbitMQ's name for it: `"<peer ip>:<port> -> <local ip>:<port>"`.
    pub name: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's address it connected to.
    pub local: SocketAddr,
    /// The authenticated user.
    pub user: String,
    /// The virtual host it opened.
    pub vhost: String,
    /// What the client sent in `connection.start-ok`.
    pub client_properties: FieldTable,
    /// Negotiated largest frame.
    pub frame_max: u32,
    /// Negotiated most channels.
    pub channel_max: u16,
    /// Negotiated heartbeat interval, seconds (0 = none).
    pub heartbeat: u16,
    /// Milliseconds since the epoch.
    pub connected_at: i64,
    /// Channels open now.
    pub channels: usize,
}

#[derive(Debug)]
struct Entry {
    info: ConnectionInfo,
    channels: Arc<AtomicUsize>,
    /// Tells the connection to close, with this exception.
    kill: watch::Sender<Option<AmqpException>>,
}

/// Every open connection by id.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<BTreeMap<u64, Entry>>,
}

/// Keeps a connection listed; dropping it unlists it.
#[derive(Debug)]
pub(crate) struct Listed<'a> {
    table: &'a Connections,
    id: u64,
    /// The connection's open channels (kept by the connection).
    pub(crate) channels: Arc<AtomicUsize>,
    /// Turns `Some` when the connection is to close with that exception.
    pub(crate) kill: watch::Receiver<Option<AmqpException>>,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.table.open.lock().remove(&self.id);
    }
}

impl Connections {
    /// Lists connection `id` until the returned entry is dropped.
    pub(crate) fn add(&self, id: u64, info: ConnectionInfo) -> Listed<'_> {
        let channels = Arc::new(AtomicUsize::new(0));
        let (kill, killed) = watch::channel(None);
        self.open.lock().insert(id, Entry { info, channels: channels.clone(), kill });
        Listed { table: self, id, channels, kill: killed }
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let open = self.open.lock();
        open.values()
            .map(|e| ConnectionInfo { channels: e.channels.load(Ordering::Relaxed), ..e.info.clone() })
            .collect()
    }

    /// Closes the connection named `name` (320 CONNECTION_FORCED with
    /// `reason`, as RabbitMQ's management API does); false when there is
    /// none by that name.
    pub fn close(&self, name: &str, reason: &str) -> bool {
        self.close_where(|c| c.name == name, reason) > 0
    }

    /// Closes every connection `which` selects (320 CONNECTION_FORCED with
    /// `reason`); returns how many.
    pub(crate) fn close_where(&self, which: impl Fn(&ConnectionInfo) -> bool, reason: &str) -> usize {
        let open = self.open.lock();
        let mut n = 0;
        for e in open.values().filter(|e| which(&e.info)) {
            e.kill.send_replace(Some(AmqpException { code: reply::CONNECTION_FORCED, text: reason.to_string() }));
            n += 1;
        }
        n
    }
}
