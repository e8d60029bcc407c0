//! The pop workload: unmodified RocketMQ 5.x gRPC clients
//! (rocketmq-python-client, from PyPI) in a child process
//! (`workloads/pop_workload.py`): producers sending unique values through
//! every node's gRPC endpoint, SimpleConsumers of one group receiving them
//! with an invisible duration and acking each one — Fjord's replicated pop
//! queues (`__fjord_pop`), whose deliveries and acks must survive the
//! faults as they survive a restart. The checks are in
//! [`super::pop_check`].

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::{Parsed, Program, Running};
use crate::history::{Event, History};

/// The topic written and read.
pub(crate) const TOPIC: &str = "chaos-pop";
/// The consumer group.
const GROUP: &str = "chaos-pop-cg";
/// The client program.
const PROGRAM: &str = include_str!("../../workloads/pop_workload.py");

/// What the gRPC clients do.
#[derive(Debug, Clone)]
pub(crate) struct PopWorkload {
    /// A Python with rocketmq-python-client installed.
    pub(crate) python: PathBuf,
    /// Every node's gRPC endpoint, `;`-separated.
    pub(crate) endpoints: String,
    /// Producers.
    pub(crate) producers: u32,
    /// Messages per second per producer.
    pub(crate) rate: u32,
    /// SimpleConsumers.
    pub(crate) consumers: u32,
    /// Seconds a received message stays invisible to the group.
    pub(crate) invisible: u32,
}

/// Starts the client program; its files go under `dir`.
pub(crate) fn start(w: &PopWorkload, history: &Arc<History>, dir: &Path) -> Result<Running> {
    let args = [w.endpoints.clone(), TOPIC.into(), GROUP.into()]
        .into_iter()
        .chain([w.producers, w.rate, w.consumers, w.invisible].map(|n| n.to_string()))
        .collect();
    let program = Program { python: &w.python, home: "pop-client", file: "pop_workload.py", text: PROGRAM, args };
    super::spawn(&program, history, dir, parse)
}

/// One line of the client program.
fn parse(line: &str) -> Option<Parsed> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = |k: &str| v[k].as_str().map(str::to_string);
    let number = |k: &str| v[k].as_u64().and_then(|n| u32::try_from(n).ok());
    Some(Parsed::Event(match v["e"].as_str()? {
        "send" => Event::PopSend { producer: number("p")?, value: text("v")? },
        "ok" => Event::PopOk { value: text("v")? },
        "unsure" => Event::PopUnsure { value: text("v")?, error: text("err").unwrap_or_default() },
        "poll" => Event::PopPoll { consumer: number("c")?, poll: v["n"].as_u64()? },
        "read" => {
            Event::PopRead { consumer: number("c")?, poll: v["n"].as_u64()?, value: text("v")?, receipt: text("r")? }
        }
        "acked" => Event::PopAcked { consumer: number("c")?, value: text("v")?, receipt: text("r")? },
        "ackfail" => {
            Event::PopAckFailed { consumer: number("c")?, value: text("v")?, error: text("err").unwrap_or_default() }
        }
        "stopped" => return Some(Parsed::Stopped),
        _ => return None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_lines_become_events() {
        let event = |l: &str| match parse(l) {
            Some(Parsed::Event(e)) => Some(e),
            _ => None,
        };
        assert_eq!(event(r#"{"e": "poll", "c": 1, "n": 7}"#), Some(Event::PopPoll { consumer: 1, poll: 7 }));
        assert_eq!(
            event(r#"{"e": "read", "c": 1, "n": 7, "v": "pop0:3", "r": "2 1f 9 chaos-pop"}"#),
            Some(Event::PopRead { consumer: 1, poll: 7, value: "pop0:3".into(), receipt: "2 1f 9 chaos-pop".into() })
        );
        assert_eq!(
            event(r#"{"e": "acked", "c": 1, "v": "pop0:3", "r": "2 1f 9 chaos-pop"}"#),
            Some(Event::PopAcked { consumer: 1, value: "pop0:3".into(), receipt: "2 1f 9 chaos-pop".into() })
        );
        assert_eq!(
            event(r#"{"e": "unsure", "v": "pop0:4", "err": "TimeoutError"}"#),
            Some(Event::PopUnsure { value: "pop0:4".into(), error: "TimeoutError".into() })
        );
        assert!(matches!(parse(r#"{"e": "stopped"}"#), Some(Parsed::Stopped)));
        assert!(parse(r#"{"e": "read", "c": 1, "v": "no poll"}"#).is_none());
    }
}
