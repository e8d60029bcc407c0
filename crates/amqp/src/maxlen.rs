//! `x-max-length` / `x-max-length-bytes` with the default overflow,
//! `drop-head`: the oldest ready messages go (dead-lettered with reason
//! `maxlen`) until the queue is within both limits.
//!
//! The publishing channel trims right after its write and before its
//! confirm ([`crate::publish`]), so a client sees the queue within its
//! limits once its publish is confirmed. That trim can miss: its pop
//! fails while the queue's pop shard changes leader, or its node cannot
//! count the queue. A missed trim would leave the queue over its limit
//! until the next publish, so the queue's own node also trims, in its
//! once-a-second sweep ([`crate::expiry`]), a queue it finds over a limit
//! with nothing published to it since the previous look. Waiting for a
//! quiet second keeps the sweep out of the way of publishers' own trims:
//! two trims counting the same excess at once would drop twice as many.

use std::time::Duration;

use fjord_messaging::{ConsumeModel, PopRequest};

use crate::AmqpGateway;
use crate::deadletter::{QueueRef, Reason};
use crate::model::{AMQP_GROUP, int_arg, string_arg};

/// Most messages one trim pops in one call.
const TRIM_CHUNK: usize = 1024;

/// What a queue does with a publish over its length limits
/// (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Takes it and drops the oldest ready messages (the default).
    DropHead,
    /// Refuses it (nacked under confirms).
    RejectPublish,
    /// Refuses it and dead-letters it.
    RejectPublishDlx,
}

/// A queue's length limits as its arguments set them (one reading for the
/// publishing channel and the sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LengthLimits {
    pub(crate) max_len: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) overflow: Overflow,
}

impl LengthLimits {
    /// The limits of `q`, if it has any (a stream queue's are its topic's
    /// retention instead).
    pub(crate) fn of(q: &crate::model::Queue) -> Option<LengthLimits> {
        if crate::stream::is_stream(q) {
            return None;
        }
        let max_len = int_arg(&q.arguments, "x-max-length").map(|n| n.max(0) as u64);
        let max_bytes = int_arg(&q.arguments, "x-max-length-bytes").map(|n| n.max(0) as u64);
        let overflow = match string_arg(&q.arguments, "x-overflow").as_deref() {
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
            _ => Overflow::DropHead,
        };
        (max_len.is_some() || max_bytes.is_some()).then_some(LengthLimits { max_len, max_bytes, overflow })
    }
}

/// A drop-head queue's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadLimits {
    pub(crate) max_len: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
}

impl HeadLimits {
    /// The limits of a queue whose overflow is `drop-head`, if it has any
    /// (a stream queue's are its topic's retention instead).
    pub(crate) fn of(q: &crate::model::Queue) -> Option<HeadLimits> {
        LengthLimits::of(q)
            .filter(|l| l.overflow == Overflow::DropHead)
            .map(|l| HeadLimits { max_len: l.max_len, max_bytes: l.max_bytes })
    }

    /// How many messages to drop from the head of a ready part with these
    /// body sizes (in pop order) so it is within both limits again.
    pub(crate) fn excess(&self, sizes: &[u64]) -> usize {
        let (mut len, mut bytes) = (sizes.len() as u64, sizes.iter().sum::<u64>());
        let mut n = 0;
        while n < sizes.len() && (self.max_len.is_some_and(|m| len > m) || self.max_bytes.is_some_and(|m| bytes > m)) {
            len -= 1;
            bytes -= sizes[n];
            n += 1;
        }
        n
    }
}

/// The ready part of the AMQP group on `topic` (at the queue's node): its
/// count, and its body sizes in pop order when `with_sizes` (queues
/// bounded by bytes: they cost a read) and they could be read.
pub(crate) async fn ready_part(gw: &AmqpGateway, topic: &str, with_sizes: bool) -> (u64, Option<Vec<u64>>) {
    let model = ConsumeModel::Clustering;
    if with_sizes {
        match gw.messaging.pop_ready_sizes_at_leader(AMQP_GROUP, &model, topic).await {
            Ok(sizes) => return (sizes.len() as u64, Some(sizes)),
            Err(e) => tracing::warn!(%topic, error = %e, "amqp: could not measure a queue's ready bytes"),
        }
    }
    (gw.depth(topic).await.0, None)
}

/// Trims the drop-head queue `q` back within `limits`, oldest first, and
/// returns how many it dropped; `None` when a pop failed (with a warning:
/// the queue's node finishes the trim in its sweep).
pub(crate) async fn trim(gw: &AmqpGateway, q: &QueueRef, limits: HeadLimits) -> Option<u64> {
    let topic = q.queue.topic.as_str();
    let mut excess = match ready_part(gw, topic, limits.max_bytes.is_some()).await {
        (_, Some(sizes)) => limits.excess(&sizes) as u64,
        // Counted only (no byte limit, or the sizes could not be read).
        (ready, None) => ready.saturating_sub(limits.max_len.unwrap_or(u64::MAX)),
    };
    let mut dropped = 0;
    while excess > 0 {
        let mut req = PopRequest::new(AMQP_GROUP, topic, excess.min(TRIM_CHUNK as u64) as usize);
        req.invisible = Duration::from_secs(60);
        let popped = match gw.messaging.pop_at_leader(req).await {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(queue = %q.queue.name, error = %e, excess, "amqp: could not drop a queue's head over its length limit");
                return None;
            }
        };
        excess = excess.saturating_sub(popped.len() as u64);
        dropped += popped.len() as u64;
        let msgs = popped.into_iter().map(|p| (p.message, p.receipt)).collect();
        gw.dead_letter(q, msgs, Reason::Maxlen).await;
    }
    Some(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excess_is_counted_from_the_head_against_both_limits() {
        let len = HeadLimits { max_len: Some(2), max_bytes: None };
        assert_eq!(len.excess(&[5, 5, 5]), 1);
        assert_eq!(len.excess(&[5, 5]), 0);
        let bytes = HeadLimits { max_len: None, max_bytes: Some(10) };
        assert_eq!(bytes.excess(&[8, 1, 1, 9]), 2, "dropping 8 leaves 11, dropping 1 more leaves 10");
        let both = HeadLimits { max_len: Some(1), max_bytes: Some(100) };
        assert_eq!(both.excess(&[1, 1, 1]), 2);
    }
}
