//! What librdkafka's `msg` debug lines tell about a producer's batches: the
//! producer id, epoch and sequences each attempt was sent with, and which
//! attempts ended with an outcome librdkafka itself calls "possibly
//! persisted" (a timeout, a lost connection: the client does not know
//! whether the write happened).
//!
//! The checker needs this to tell two kinds of duplicate apart. The
//! broker's idempotence holds within a producer epoch; librdkafka, when it
//! bumps its epoch (after an out-of-order answer, or messages timing out),
//! re-sends every message it has not seen acknowledged under new sequence
//! numbers — including ones whose earlier attempt was possibly written
//! (librdkafka issue #4953, open upstream; Apache Kafka sees the same). A
//! value written twice under two epochs whose earlier copy's attempt was
//! "possibly persisted" is that; one written twice under one epoch, or
//! after the broker answered "not written" for every attempt, is the
//! broker's.
//!
//! The lines parsed (librdkafka 2.x, the version this crate pins):
//! `... chaos [4]: Produce MessageSet with 1 message(s) (83 bytes, ApiVersion
//! 10, MsgVersion 2, MsgId 5206, BaseSeq 2179, PID{Id:1099511627776,Epoch:1},
//! uncompressed)` and `... chaos [4]: MessageSet with 1 message(s) (MsgId
//! 5206, BaseSeq 2179) encountered error: Local: Timed out (actions
//! Retry,MsgPossiblyPersisted)`.

use std::collections::HashMap;

/// A batch attempt whose outcome was "possibly persisted".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsure {
    pub(crate) partition: i32,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) error: String,
}

/// Follows one producer's debug lines.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// (partition, first message id, base sequence) → (producer id, epoch)
    /// of the latest attempt sent so.
    sent: HashMap<(i32, u64, i32), (i64, i16)>,
}

impl Tracker {
    /// Takes one debug line; returns the attempt it reports as possibly
    /// persisted, if it does.
    pub(crate) fn line(&mut self, fac: &str, message: &str) -> Option<Unsure> {
        match fac {
            "PRODUCE" if message.contains("Produce MessageSet with") => {
                let partition = partition(message)?;
                let msgid = number_after(message, "MsgId ")?;
                let seq = number_after(message, "BaseSeq ")?;
                let pid = number_after(message, "PID{Id:")?;
                let epoch = number_after(message, ",Epoch:")?;
                self.sent.insert((partition, msgid, seq), (pid, epoch));
                None
            }
            // An out-of-order answer is librdkafka's "possibly persisted"
            // at first, but the broker refused the batch: not an unknown.
            "MSGSET"
                if message.contains("encountered error")
                    && message.contains("MsgPossiblyPersisted")
                    && !message.contains("out of order sequence") =>
            {
                let partition = partition(message)?;
                let count: i32 = number_after(message, "MessageSet with ")?;
                let msgid = number_after(message, "MsgId ")?;
                let seq: i32 = number_after(message, "BaseSeq ")?;
                let (producer_id, epoch) = *self.sent.get(&(partition, msgid, seq))?;
                let error = message.split("encountered error: ").nth(1).unwrap_or_default().to_string();
                Some(Unsure { partition, producer_id, epoch, first_seq: seq, last_seq: seq + count.max(1) - 1, error })
            }
            _ => None,
        }
    }
}

/// The partition in `... <topic> [<partition>]: ...`.
fn partition(message: &str) -> Option<i32> {
    let start = message.find(" [")? + 2;
    let end = start + message[start..].find(']')?;
    message[start..end].parse().ok()
}

/// The (possibly negative) integer right after `label`.
fn number_after<T: std::str::FromStr>(message: &str, label: &str) -> Option<T> {
    let start = message.find(label)? + label.len();
    let rest = &message[start..];
    let end = rest
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_possibly_persisted_attempt_is_reported_with_the_epoch_it_was_sent_in() {
        let mut t = Tracker::default();
        let sent = "10.213.77.3:9092/3: chaos [4]: Produce MessageSet with 2 message(s) (83 bytes, ApiVersion 10, \
                    MsgVersion 2, MsgId 5206, BaseSeq 2179, PID{Id:1099511627776,Epoch:1}, uncompressed)";
        assert_eq!(t.line("PRODUCE", sent), None);
        let not_persisted = "10.213.77.3:9092/3: chaos [4]: MessageSet with 2 message(s) (MsgId 5206, BaseSeq 2179) \
                             encountered error: Broker: Not leader for partition (actions Refresh,MsgNotPersisted)";
        assert_eq!(t.line("MSGSET", not_persisted), None, "the broker said: not written");
        let unsure = "10.213.77.1:9092/1: chaos [4]: MessageSet with 2 message(s) (MsgId 5206, BaseSeq 2179) \
                      encountered error: Local: Timed out (actions Retry,MsgPossiblyPersisted) [NOT LEADER]";
        let u = t.line("MSGSET", unsure).expect("possibly persisted");
        assert_eq!((u.partition, u.producer_id, u.epoch, u.first_seq, u.last_seq), (4, 1099511627776, 1, 2179, 2180));
        assert!(u.error.starts_with("Local: Timed out"), "{}", u.error);
        let refused = "10.213.77.1:9092/1: chaos [4]: MessageSet with 2 message(s) (MsgId 5206, BaseSeq 2179) \
                       encountered error: Broker: Broker received an out of order sequence number (actions \
                       Permanent,MsgPossiblyPersisted)";
        assert_eq!(t.line("MSGSET", refused), None, "refused as out of order: not written");
        // After an epoch bump the same message goes out with new numbers.
        let again = "10.213.77.2:9092/2: chaos [4]: MessageSet with 2 message(s) (MsgId 5206, BaseSeq 0) \
                     encountered error: Local: Timed out (actions Retry,MsgPossiblyPersisted)";
        assert_eq!(t.line("MSGSET", again), None, "never sent so: nothing known");
    }
}
