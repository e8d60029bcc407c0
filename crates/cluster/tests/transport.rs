//! The internode transport under a peer that floods it: requests one
//! connection may have in flight are capped, and the rest wait (the
//! connection stops being read) instead of piling up tasks and memory;
//! and calls racing to a peer share one connection.
#![allow(clippy::unwrap_used, missing_docs)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fjord_cluster::transport::{Handler, Identity, Peers, serve_peer};
use fjord_cluster_codec::Kind;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// Holds every request until released; counts how many it holds at once.
#[derive(Debug, Default)]
struct Held {
    now: AtomicUsize,
    most: AtomicUsize,
    release: Notify,
}

impl Handler for Held {
    fn handle(
        &self,
        _from: u64,
        _kind: Kind,
        body: Bytes,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send + '_>> {
        Box::pin(async move {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            self.release.notified().await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(body)
        })
    }
}

fn identity(node_id: u64) -> Identity {
    Identity { cluster_id: "t".into(), node_id, max_frame: 1 << 20 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_gets_at_most_256_requests_in_flight() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let held = Arc::new(Held::default());
    let (_stop, stop_rx) = watch::channel(false);
    let handler: Arc<dyn Handler> = held.clone();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_peer(s, identity(1), handler.clone(), stop_rx.clone()));
        }
    });
    let peers = Peers::new(identity(2));
    let calls: Vec<_> = (0..300u32)
        .map(|i| {
            let (peers, addr) = (peers.clone(), addr.clone());
            tokio::spawn(async move {
                let body = Bytes::from(i.to_be_bytes().to_vec());
                peers.call(1, &addr, Kind::Forward, body.clone(), Duration::from_secs(60)).await.map(|r| r == body)
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while held.now.load(Ordering::SeqCst) < 256 {
        assert!(tokio::time::Instant::now() < deadline, "requests never reached the handler");
        tokio::task::yield_now().await;
    }
    // The other 44 stay unread while 256 are held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held.most.load(Ordering::SeqCst), 256);
    // Released, every request is answered with its own body.
    while held.now.load(Ordering::SeqCst) > 0 || calls.iter().any(|c| !c.is_finished()) {
        held.release.notify_waiters();
        tokio::task::yield_now().await;
    }
    for c in calls {
        assert!(c.await.unwrap().unwrap(), "a request was answered with another's body");
    }
    assert!(held.most.load(Ordering::SeqCst) <= 256);
    // Calls racing to a peer share one connection.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
