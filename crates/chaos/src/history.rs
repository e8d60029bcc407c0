//! The history of a run: every operation the clients invoked and what came
//! back, every fault and repair, with milliseconds since the start.
//!
//! Clients append from their threads under one mutex (a few thousand
//! events per second at most); the checks read it once the run is over,
//! and it is written as JSON lines next to the nodes' logs.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A producer handed a value to its client.
    Send {
        producer: String,
        value: String,
        partition: i32,
    },
    /// The broker acknowledged the value at this offset (acks=all).
    Ack {
        value: String,
        partition: i32,
        offset: i64,
    },
    /// The client gave up on the value (it may or may not be written).
    Fail {
        value: String,
        error: String,
    },
    /// A group consumer read the value.
    Read {
        consumer: u32,
        partition: i32,
        offset: i64,
        value: String,
    },
    /// A group consumer's offset commit succeeded.
    Commit {
        consumer: u32,
        partition: i32,
        offset: i64,
    },
    /// The group's committed offset, as OffsetFetch returned it; the fetch
    /// started at `asked` (ms).
    Committed {
        asked: u64,
        partition: i32,
        offset: i64,
    },
    /// A fault started.
    Fault {
        what: String,
    },
    /// A fault was repaired.
    Repair {
        what: String,
    },
    /// Every fault is repaired: from here on the clients must progress.
    Healed,
    /// Anything else worth reading (a producer's fatal error, a restart).
    Note {
        what: String,
    },
    /// A producer's batch attempt ended "possibly persisted" (librdkafka's
    /// words: a timeout, a lost connection): sequences `first_seq..=last_seq`
    /// of `epoch` on `partition` may or may not be written.
    Unsure {
        partition: i32,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        error: String,
    },
    /// AMQP: a publisher sent the value (persistent, with confirms).
    AmqpPublish {
        publisher: u32,
        value: String,
    },
    /// AMQP: the broker confirmed it (`basic.ack`): it is stored.
    AmqpConfirm {
        value: String,
    },
    /// AMQP: the broker refused it (`basic.nack`): not stored.
    AmqpNack {
        value: String,
    },
    /// AMQP: no confirm came (the connection failed or stalled): it may or
    /// may not be stored.
    AmqpUnsure {
        value: String,
        error: String,
    },
    /// AMQP: a consumer (or the final drain, consumer `u32::MAX`) got it.
    AmqpRead {
        consumer: u32,
        value: String,
        redelivered: bool,
    },
    RmqSend {
        producer: u32,
        value: String,
    },
    RmqOk {
        value: String,
    },
    RmqUnsure {
        value: String,
        error: String,
    },
    RmqRead {
        consumer: u32,
        value: String,
    },
    /// Pop workload (RocketMQ 5.x gRPC): a producer sends the value.
    PopSend {
        producer: u32,
        value: String,
    },
    /// Pop workload: the send was answered OK (stored, committed).
    PopOk {
        value: String,
    },
    /// Pop workload: the send failed; it may or may not be stored.
    PopUnsure {
        value: String,
        error: String,
    },
    /// Pop workload: a SimpleConsumer's receive call `poll` starts.
    PopPoll {
        consumer: u32,
        poll: u64,
    },
    /// Pop workload: receive call `poll` delivered the value, with the
    /// receipt naming where it is stored.
    PopRead {
        consumer: u32,
        poll: u64,
        value: String,
        receipt: String,
    },
    /// Pop workload: the ack of that delivery was answered OK.
    PopAcked {
        consumer: u32,
        value: String,
        receipt: String,
    },
    /// Pop workload: the ack of that delivery failed; it may have been
    /// applied (the message is not delivered again) or not (it is, once
    /// its invisibility runs out).
    PopAckFailed {
        consumer: u32,
        value: String,
        error: String,
    },
}

impl Event {
    /// The value this event is about, if any.
    pub(crate) fn value(&self) -> Option<&str> {
        match self {
            Event::Send { value, .. }
            | Event::Ack { value, .. }
            | Event::Fail { value, .. }
            | Event::Read { value, .. }
            | Event::AmqpPublish { value, .. }
            | Event::AmqpConfirm { value }
            | Event::AmqpNack { value }
            | Event::AmqpUnsure { value, .. }
            | Event::AmqpRead { value, .. }
            | Event::RmqSend { value, .. }
            | Event::RmqOk { value }
            | Event::RmqUnsure { value, .. }
            | Event::RmqRead { value, .. }
            | Event::PopSend { value, .. }
            | Event::PopOk { value }
            | Event::PopUnsure { value, .. }
            | Event::PopRead { value, .. }
            | Event::PopAcked { value, .. }
            | Event::PopAckFailed { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// An event with its time, milliseconds since the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    /// Milliseconds since the start.
    pub(crate) at: u64,
    /// What happened.
    #[serde(flatten)]
    pub(crate) event: Event,
}

/// The shared, append-only history.
#[derive(Debug)]
pub(crate) struct History {
    start: Instant,
    entries: Mutex<Vec<Entry>>,
}

impl Default for History {
    fn default() -> Self {
        History { start: Instant::now(), entries: Mutex::new(Vec::new()) }
    }
}

impl History {
    /// Milliseconds since the start.
    pub(crate) fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Appends an event at the current time.
    pub(crate) fn push(&self, event: Event) {
        let at = self.now();
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).push(Entry { at, event });
    }

    /// Appends several events at the current time under one lock.
    pub(crate) fn extend(&self, events: impl IntoIterator<Item = Event>) {
        let at = self.now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.extend(events.into_iter().map(|event| Entry { at, event }));
    }

    /// Everything so far.
    pub(crate) fn snapshot(&self) -> Vec<Entry> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Writes entries as JSON lines.
pub(crate) fn write_jsonl(path: &Path, entries: &[Entry]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in entries {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The part of a history that explains a violation: every fault and
/// repair, every note, and every event about the given values.
pub(crate) fn minimal(entries: &[Entry], values: &[String]) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| match &e.event {
            Event::Fault { .. } | Event::Repair { .. } | Event::Note { .. } | Event::Healed => true,
            ev => ev.value().is_some_and(|v| values.iter().any(|x| x == v)),
        })
        .cloned()
        .collect()
}
