//! Accepting connections within the listener's and the client IP's caps.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::LogLimiter;

/// First pause after a failed `accept`; doubled per consecutive failure.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between `accept` attempts while they keep failing.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Connections per client IP, shared by every listener of the process
/// (Kafka's `max.connections.per.ip`).
#[derive(Debug)]
pub struct IpLimits {
    max_per_ip: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl IpLimits {
    /// At most `max_per_ip` open connections from one IP address.
    pub fn new(max_per_ip: usize) -> Arc<IpLimits> {
        Arc::new(IpLimits { max_per_ip: max_per_ip.max(1), open: Mutex::new(HashMap::new()) })
    }

    /// Open connections from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open.lock().get(&ip).copied().unwrap_or(0)
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot { table: self.clone(), ip })
    }
}

/// One connection counted against its IP.
#[derive(Debug)]
struct IpSlot {
    table: Arc<IpLimits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            // Forget IPs without connections: the table stays as small as
            // the set of connected clients.
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// An accepted connection's place under the caps; dropping it frees the
/// listener slot and the IP slot.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _ip: IpSlot,
}

/// A listener that admits connections within its caps and survives accept
/// errors (see the crate documentation).
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    protocol: &'static str,
    slots: Arc<Semaphore>,
    ips: Arc<IpLimits>,
    refused_log: LogLimiter,
    error_log: LogLimiter,
}

impl Acceptor {
    /// Accepts on `listener` at most `max_connections` open connections,
    /// within the per-IP caps of `ips`; `protocol` labels metrics and logs.
    pub fn new(listener: TcpListener, protocol: &'static str, max_connections: usize, ips: Arc<IpLimits>) -> Acceptor {
        Acceptor {
            listener,
            protocol,
            slots: Arc::new(Semaphore::new(max_connections.clamp(1, Semaphore::MAX_PERMITS))),
            ips,
            refused_log: LogLimiter::new(Duration::from_secs(10)),
            error_log: LogLimiter::new(Duration::from_secs(10)),
        }
    }

    /// An acceptor with the default caps ([`crate::DEFAULT_MAX_CONNECTIONS`]
    /// for the listener, [`crate::DEFAULT_MAX_CONNECTIONS_PER_IP`] per IP
    /// in a table of its own), for embedders and tests.
    pub fn with_default_caps(listener: TcpListener, protocol: &'static str) -> Acceptor {
        Acceptor::new(
            listener,
            protocol,
            crate::DEFAULT_MAX_CONNECTIONS,
            IpLimits::new(crate::DEFAULT_MAX_CONNECTIONS_PER_IP),
        )
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next admitted connection. Waits while the listener is at its
    /// cap; closes connections over their IP's cap at once; backs off on
    /// accept errors. Cancel-safe: dropping the future loses no connection
    /// that was admitted.
    pub async fn accept(&self) -> (TcpStream, SocketAddr, Admitted) {
        let mut backoff = BACKOFF_MIN;
        loop {
            // A closed semaphore cannot happen (never closed); treat it as
            // "no cap" rather than failing the listener.
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    backoff = BACKOFF_MIN;
                    match self.ips.admit(peer.ip()) {
                        Some(ip) => return (stream, peer, Admitted { _slot: slot, _ip: ip }),
                        None => {
                            metrics::counter!("fjord_connections_refused_total", "protocol" => self.protocol, "reason" => "per_ip_limit").increment(1);
                            if let Some(more) = self.refused_log.check() {
                                tracing::warn!(protocol = self.protocol, %peer, max_per_ip = self.ips.max_per_ip,
                                    suppressed = more, "connection refused: too many connections from this IP");
                            }
                            // Dropping the stream closes it: the client sees
                            // the connection closed, as with Kafka.
                            drop(stream);
                        }
                    }
                }
                Err(e) => {
                    drop(slot);
                    metrics::counter!("fjord_accept_errors_total", "protocol" => self.protocol).increment(1);
                    if let Some(more) = self.error_log.check() {
                        tracing::warn!(protocol = self.protocol, error = %e, suppressed = more, retry_in = ?backoff,
                            "accepting a connection failed");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn acceptor(max: usize, per_ip: usize) -> (Acceptor, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        (Acceptor::new(l, "test", max, IpLimits::new(per_ip)), addr)
    }

    #[tokio::test]
    async fn connections_over_the_ip_cap_are_closed_and_slots_come_back() {
        let (acc, addr) = acceptor(100, 2).await;
        let _c1 = TcpStream::connect(addr).await.expect("c1");
        let (_s1, _, a1) = acc.accept().await;
        let _c2 = TcpStream::connect(addr).await.expect("c2");
        let (_s2, _, _a2) = acc.accept().await;
        assert_eq!(acc.ips.open_from(addr.ip()), 2);
        // The third is accepted by the kernel, then closed by us.
        let mut c3 = TcpStream::connect(addr).await.expect("c3");
        let accept = tokio::spawn(async move {
            let r = acc.accept().await;
            (acc, r)
        });
        let mut b = [0u8; 1];
        assert_eq!(c3.read(&mut b).await.expect("closed, not reset"), 0, "over the cap: closed at once");
        // Freeing a slot lets the next one in.
        drop(a1);
        let _c4 = TcpStream::connect(addr).await.expect("c4");
        let (acc, c4) = accept.await.expect("task");
        assert_eq!(acc.ips.open_from(addr.ip()), 2, "a2 and c4");
        drop(c4);
        assert_eq!(acc.ips.open_from(addr.ip()), 1);
    }

    #[tokio::test]
    async fn at_the_listener_cap_new_connections_wait() {
        let (acc, addr) = acceptor(1, 100).await;
        let _c1 = TcpStream::connect(addr).await.expect("c1");
        let (_s1, _, a1) = acc.accept().await;
        let _c2 = TcpStream::connect(addr).await.expect("c2 waits in the backlog");
        let acc = Arc::new(acc);
        let waiting = {
            let acc = acc.clone();
            tokio::spawn(async move { acc.accept().await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "no slot: not accepted yet");
        drop(a1);
        let (_s2, _, _a2) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("accepted once a slot is free")
            .expect("task");
    }
}
