//! The request budget for HTTP/2 request bodies (gRPC).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::{BudgetPermit, RequestBudget};

/// A reservation being waited for.
type Reservation = Pin<Box<dyn Future<Output = BudgetPermit> + Send>>;

/// A gRPC request body whose bytes count against the [`RequestBudget`]
/// while the server may hold them.
///
/// An HTTP/2 server reads a request body frame by frame, and the gRPC
/// decoder keeps a message's frames until the message is whole (up to its
/// size limit, per stream, for every concurrent stream). So each DATA
/// frame's bytes are reserved before the frame is handed on — while the
/// budget is spent, the body is simply not read, and HTTP/2 flow control
/// stops the client — and kept until the message they belong to is
/// complete and the decoder asks for more (by then it has taken the
/// message out of its buffer). Messages are found by the gRPC framing: a
/// 1-byte flag and a 4-byte big-endian length before each one. A frame
/// holding the end of one message and the start of the next is released
/// with the first (at most one frame's bytes go uncounted).
pub struct BudgetBody<B> {
    inner: B,
    budget: RequestBudget,
    /// Reservations for the message being received.
    held: Vec<BudgetPermit>,
    /// Reservations of messages completed; released at the next poll.
    done: Vec<BudgetPermit>,
    /// A frame waiting for its reservation.
    waiting: Option<(Frame<Bytes>, Reservation)>,
    framing: Framing,
}

impl<B> std::fmt::Debug for BudgetBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetBody").field("held", &self.held.len()).field("framing", &self.framing).finish()
    }
}

impl<B> BudgetBody<B> {
    /// Wraps `inner`, reserving its bytes in `budget`.
    pub fn new(inner: B, budget: RequestBudget) -> BudgetBody<B> {
        BudgetBody { inner, budget, held: Vec::new(), done: Vec::new(), waiting: None, framing: Framing::default() }
    }

    /// Takes `frame`, reserved by `permit`, into account; returns it.
    fn accept(&mut self, frame: Frame<Bytes>, permit: BudgetPermit) -> Frame<Bytes> {
        self.held.push(permit);
        if let Some(data) = frame.data_ref()
            && self.framing.advance(data)
        {
            self.done.append(&mut self.held);
        }
        frame
    }
}

impl<B> Body for BudgetBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        // The decoder asks for more: it is done with completed messages.
        this.done.clear();
        if let Some((_, reserve)) = &mut this.waiting {
            let permit = ready!(reserve.as_mut().poll(cx));
            let Some((frame, _)) = this.waiting.take() else { return Poll::Pending };
            return Poll::Ready(Some(Ok(this.accept(frame, permit))));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                if let Some(permit) = this.budget.try_reserve(len) {
                    return Poll::Ready(Some(Ok(this.accept(frame, permit))));
                }
                let budget = this.budget.clone();
                let mut reserve: Reservation = Box::pin(async move { budget.reserve(len).await });
                match reserve.as_mut().poll(cx) {
                    Poll::Ready(permit) => Poll::Ready(Some(Ok(this.accept(frame, permit)))),
                    Poll::Pending => {
                        this.waiting = Some((frame, reserve));
                        Poll::Pending
                    }
                }
            }
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where the body is in gRPC's length-prefixed message framing.
#[derive(Debug, Default)]
struct Framing {
    /// Bytes of the current 5-byte message prefix seen so far.
    prefix: Vec<u8>,
    /// Bytes of the current message still to come, once its prefix is read.
    remaining: Option<u64>,
}

impl Framing {
    /// Consumes `data`; true when a message ended inside it.
    fn advance(&mut self, mut data: &[u8]) -> bool {
        let mut ended = false;
        while !data.is_empty() {
            match self.remaining {
                None => {
                    let take = (5 - self.prefix.len()).min(data.len());
                    self.prefix.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if let [_, a, b, c, d] = self.prefix[..] {
                        let len = u64::from(u32::from_be_bytes([a, b, c, d]));
                        self.prefix.clear();
                        if len == 0 {
                            ended = true;
                        } else {
                            self.remaining = Some(len);
                        }
                    }
                }
                Some(left) => {
                    let take = left.min(data.len() as u64);
                    data = &data[take as usize..];
                    if take == left {
                        self.remaining = None;
                        ended = true;
                    } else {
                        self.remaining = Some(left - take);
                    }
                }
            }
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use super::*;

    /// A body of the given frames.
    struct Frames(VecDeque<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    async fn next(body: &mut BudgetBody<Frames>) -> Option<usize> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
            .await
            .map(|f| f.unwrap().into_data().unwrap().len())
    }

    #[test]
    fn framing_finds_message_ends_across_frames() {
        let mut f = Framing::default();
        let m = message(10);
        assert!(!f.advance(&m[..3]), "prefix split");
        assert!(!f.advance(&m[3..9]));
        assert!(f.advance(&m[9..]), "message ends");
        let two = [message(1), message(0)].concat();
        assert!(f.advance(&two));
        assert!(f.prefix.is_empty() && f.remaining.is_none());
    }

    proptest::proptest! {
        /// However the stream is cut into frames, `advance` says a message
        /// ended exactly for the frames that hold a message's last byte.
        #[test]
        fn framing_matches_message_ends_for_any_split(
            lens in proptest::collection::vec(0usize..300, 1..20),
            cuts in proptest::collection::vec(1usize..400, 1..60),
        ) {
            let stream: Vec<u8> = lens.iter().flat_map(|&l| message(l)).collect();
            let mut ends = Vec::new();
            let mut at = 0;
            for l in &lens {
                at += 5 + l;
                ends.push(at);
            }
            let mut f = Framing::default();
            let (mut start, mut i) = (0, 0);
            while start < stream.len() {
                let end = (start + cuts[i % cuts.len()]).min(stream.len());
                let expected = ends.iter().any(|&e| start < e && e <= end);
                proptest::prop_assert_eq!(f.advance(&stream[start..end]), expected, "frame {}..{}", start, end);
                start = end;
                i += 1;
            }
        }

        /// Arbitrary bytes never panic the framing.
        #[test]
        fn framing_takes_any_bytes(frames in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..32)) {
            let mut f = Framing::default();
            for frame in frames {
                f.advance(&frame);
            }
        }
    }

    #[tokio::test]
    async fn a_message_is_counted_until_it_is_whole_and_taken() {
        let budget = RequestBudget::new(1 << 20);
        let m = message(3000);
        let frames = m.chunks(1000).map(Bytes::copy_from_slice).collect();
        let mut body = BudgetBody::new(Frames(frames), budget.clone());
        assert_eq!(next(&mut body).await, Some(1000));
        assert_eq!(next(&mut body).await, Some(1000));
        assert_eq!(budget.in_use(), 2000, "partial message held");
        assert_eq!(next(&mut body).await, Some(1000));
        assert_eq!(next(&mut body).await, Some(5));
        assert_eq!(budget.in_use(), 3005, "whole message, not yet taken by the decoder");
        assert_eq!(next(&mut body).await, None);
        assert_eq!(budget.in_use(), 0, "released once the decoder asks for more");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_stops_reading_the_body() {
        let budget = RequestBudget::new(1000);
        let hog = budget.reserve(1000).await;
        let frames = [Bytes::from(message(10))].into_iter().collect();
        let mut body = BudgetBody::new(Frames(frames), budget.clone());
        let read = tokio::spawn(async move { next(&mut body).await });
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(!read.is_finished(), "waits for memory");
        drop(hog);
        assert_eq!(read.await.unwrap(), Some(15));
    }
}
