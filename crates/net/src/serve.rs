//! The accept loop every TCP gateway runs: one task per admitted
//! connection until shutdown, then a bounded drain.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Acceptor;

/// Runs `handle` for every connection `acceptor` admits, each in its own
/// task holding the connection's admission slot, until `stop` turns true.
/// Then it stops accepting (the listener closes), waits up to `drain` for
/// the connections to finish (they saw the same signal) and aborts the
/// rest, logging how many that was under `protocol`.
pub async fn serve_connections<F, Fut>(
    protocol: &'static str,
    acceptor: Acceptor,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            (stream, peer, admitted) = acceptor.accept() => {
                let conn = handle(stream, peer);
                conns.spawn(async move {
                    let _admitted = admitted;
                    conn.await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            // A closed sender ends it too: nobody is left to say stop.
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    drop(acceptor);
    let drained = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(protocol, remaining = conns.len(), "connections did not finish in time; closing them");
        conns.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::IpLimits;

    #[tokio::test]
    async fn serves_each_connection_then_drains_and_aborts_on_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = Acceptor::new(listener, "test", 16, IpLimits::new(16));
        let (tx, rx) = watch::channel(false);
        // Echoes one byte, then never ends on its own.
        let server =
            tokio::spawn(serve_connections("test", acceptor, rx, Duration::from_millis(200), |mut s, _| async move {
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).await.is_ok() {
                    let _ = s.write_all(&b).await;
                }
                std::future::pending::<()>().await;
            }));
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"x").await.expect("write");
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.expect("echo");
        assert_eq!(&b, b"x");
        tx.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("returns after the drain").expect("task");
        assert_eq!(c.read(&mut b).await.expect("read"), 0, "the lingering connection was aborted (closed)");
        assert!(TcpStream::connect(addr).await.is_err(), "no longer listening");
    }
}
