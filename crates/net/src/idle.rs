//! Read-idle deadlines measured from the last byte received.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::Admitted;

/// A stream whose reads fail with [`io::ErrorKind::TimedOut`] once one has
/// waited `idle` for its next byte. The clock starts when a read finds
/// nothing to read and stops at the next byte, so time spent handling a
/// request (when nobody reads) never counts, and a peer trickling a frame
/// is idle only between its bytes.
///
/// It can also hold the connection's [`Admitted`] slot, so protocol
/// servers that own the stream (hyper, tonic) release it when they drop
/// the connection.
#[derive(Debug)]
pub struct IdleStream<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    armed: bool,
    admitted: Option<Admitted>,
}

impl<S> IdleStream<S> {
    /// Wraps `inner` with an idle time of `idle`.
    pub fn new(inner: S, idle: Duration) -> IdleStream<S> {
        IdleStream { inner, idle, deadline: Box::pin(tokio::time::sleep(idle)), armed: false, admitted: None }
    }

    /// Keeps `admitted` until this stream is dropped.
    pub fn holding(mut self, admitted: Admitted) -> IdleStream<S> {
        self.admitted = Some(admitted);
        self
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    let at = Instant::now() + this.idle;
                    this.deadline.as_mut().reset(at);
                }
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no byte received for {:?}", this.idle),
                )))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idleness_counts_from_the_last_byte_received() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleStream::new(server, Duration::from_secs(10));
        let mut client = client;
        let feeder = tokio::spawn(async move {
            // A byte every 8 s: never idle for 10 s, though the whole
            // "frame" takes 40 s.
            for b in 0..5u8 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                client.write_all(&[b]).await.expect("write");
            }
            // Then silence, connection still open.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(client);
        });
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.expect("trickled bytes arrive");
        assert_eq!(got, [0, 1, 2, 3, 4]);
        let start = Instant::now();
        let err = server.read_u8().await.expect_err("silence times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn time_between_reads_does_not_count() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = IdleStream::new(server, Duration::from_secs(10));
        client.write_all(b"ab").await.expect("write");
        assert_eq!(server.read_u8().await.expect("a"), b'a');
        // "Handling a request" for a minute: nobody reads.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(server.read_u8().await.expect("b is still served"), b'b');
        let read = server.read_u8();
        tokio::pin!(read);
        assert!(futures_poll(&mut read).await.is_none(), "waits within the idle time");
    }

    /// Polls once (after letting timers at the current instant fire).
    async fn futures_poll<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
        tokio::select! {
            biased;
            r = f => Some(r),
            () = tokio::time::sleep(Duration::from_secs(5)) => None,
        }
    }
}
