//! The open connections, as RabbitMQ's management API shows them (and
//! closes them): name `"peer -> local"`, user, vhost, the client's
//! properties (`connection_name` among them), channels, when it opened.
//! A connection is listed from `connection.open-ok` until it ends.

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
    kill: Arc<watch::Sender<Option<AmqpException>>>,
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
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.table.open.lock().remove(&self.id);
    }
}

impl Connections {
    /// Lists connection `id`; `kill` asks it to close.
    pub(crate) fn add(
        &self,
        id: u64,
        info: ConnectionInfo,
        kill: Arc<watch::Sender<Option<AmqpException>>>,
    ) -> Listed<'_> {
        let channels = Arc::new(AtomicUsize::new(0));
        self.open.lock().insert(id, Entry { info, channels: channels.clone(), kill });
        Listed { table: self, id, channels }
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
        let open = self.open.lock();
        let Some(e) = open.values().find(|e| e.info.name == name) else { return false };
        e.kill.send_replace(Some(AmqpException { code: reply::CONNECTION_FORCED, text: reason.to_string() }));
        true
    }
}
