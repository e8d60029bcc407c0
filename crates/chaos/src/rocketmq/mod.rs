//! The RocketMQ workload: unmodified RocketMQ 4.x clients
//! (rocketmq-client-cpp through rocketmq-client-python, from PyPI) in a
//! child process (`workloads/rmq_workload.py`, written next to the run's
//! files): producers sending unique values with `send_sync` through the
//! name servers of every node, push consumers of one group reading them.
//! The program reports each operation as a JSON line, which becomes an
//! event of the history here.
//!
//! SEND_OK promises that the message is stored (on a cluster, committed on
//! its queue's in-sync replicas), so every value answered SEND_OK must be
//! delivered at least once. A send that failed or was answered another
//! status (FLUSH_SLAVE_TIMEOUT: stored, commit unknown) may or may not
//! arrive. Deliveries of a value again are counted, not failed: push
//! consumers commit their progress every few seconds, and a failover or
//! rebalance delivers again what came after it.
//!
//! Once everything is repaired the producers stop, and the consumers go on
//! until every acknowledged value has been delivered (or a minute passed:
//! the check then reports what is missing).

pub(crate) mod check;
pub(crate) mod pop;
pub(crate) mod pop_check;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::history::{Entry, Event, History};

/// The topic written and read.
pub(crate) const TOPIC: &str = "chaos-rmq";
/// The consumer group.
const GROUP: &str = "chaos-rmq-cg";
/// The client program.
const PROGRAM: &str = include_str!("../../workloads/rmq_workload.py");

/// What the RocketMQ clients do.
#[derive(Debug, Clone)]
pub(crate) struct RocketMqWorkload {
    /// A Python with rocketmq-client-python installed.
    pub(crate) python: PathBuf,
    /// Every node's name server, `;`-separated (RocketMQ's form).
    pub(crate) namesrv: String,
    /// Producers.
    pub(crate) producers: u32,
    /// Messages per second per producer.
    pub(crate) rate: u32,
    /// Push consumers.
    pub(crate) consumers: u32,
}

/// The running client program.
#[derive(Debug)]
pub(crate) struct Running {
    child: Child,
    stdin: ChildStdin,
    reader: JoinHandle<()>,
    stopped: Arc<AtomicBool>,
    name: &'static str,
}

/// Starts the client program; its files (the program, the C++ client's
/// logs) go under `dir`.
pub(crate) fn start(w: &RocketMqWorkload, history: &Arc<History>, dir: &Path) -> Result<Running> {
    let args = [w.namesrv.clone(), TOPIC.into(), GROUP.into()]
        .into_iter()
        .chain([w.producers, w.rate, w.consumers].map(|n| n.to_string()))
        .collect();
    // Not `rocketmq.py`: it would shadow the client package.
    let program = Program { python: &w.python, home: "rocketmq-client", file: "rmq_workload.py", text: PROGRAM, args };
    spawn(&program, history, dir, parse)
}

/// A Python client program reporting its operations as JSON lines.
pub(crate) struct Program<'a> {
    pub(crate) python: &'a Path,
    /// Its directory under the run's (its file, its stderr, its $HOME).
    pub(crate) home: &'static str,
    pub(crate) file: &'static str,
    pub(crate) text: &'static str,
    pub(crate) args: Vec<String>,
}

/// What a line of a client program says.
pub(crate) enum Parsed {
    Event(Event),
    /// Its producers stopped.
    Stopped,
}

/// Starts `program`, each of its lines `parse`d into the history.
pub(crate) fn spawn(
    program: &Program<'_>,
    history: &Arc<History>,
    dir: &Path,
    parse: fn(&str) -> Option<Parsed>,
) -> Result<Running> {
    let home = dir.join(program.home);
    std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let file = home.join(program.file);
    std::fs::write(&file, program.text).with_context(|| format!("writing {}", file.display()))?;
    let stderr = std::fs::File::create(home.join("stderr.log"))?;
    let mut child = Command::new(program.python)
        .arg(&file)
        .args(&program.args)
        // The clients write their logs under $HOME.
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {} with {}", program.file, program.python.display()))?;
    let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let stopped = Arc::new(AtomicBool::new(false));
    let (h, s, name) = (history.clone(), stopped.clone(), program.file);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match parse(&line) {
                Some(Parsed::Event(e)) => h.push(e),
                Some(Parsed::Stopped) => s.store(true, Ordering::Release),
                None => h.push(Event::Note { what: format!("{name} said: {line}") }),
            }
        }
    });
    Ok(Running { child, stdin, reader, stopped, name })
}

/// One line of the client program.
fn parse(line: &str) -> Option<Parsed> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let value = || v["v"].as_str().map(str::to_string);
    let number = |k: &str| v[k].as_u64().and_then(|n| u32::try_from(n).ok());
    Some(Parsed::Event(match v["e"].as_str()? {
        "send" => Event::RmqSend { producer: number("p")?, value: value()? },
        "ok" => Event::RmqOk { value: value()? },
        "unsure" => Event::RmqUnsure { value: value()?, error: v["err"].as_str().unwrap_or_default().to_string() },
        "read" => Event::RmqRead { consumer: number("c")?, value: value()? },
        "stopped" => return Some(Parsed::Stopped),
        _ => return None,
    }))
}

/// How long consumers that still read get past the last read.
const DRAIN_IDLE: Duration = Duration::from_secs(15);

/// How many times its `drain` a draining workload gets at most.
const DRAIN_LIMIT: u32 = 3;

impl Running {
    /// Stops the producers, lets the consumers read until every
    /// acknowledged value was delivered (`done`), then ends the program;
    /// returns what went wrong. The consumers get `drain`, and while they
    /// still make progress (`reads` grows: a backlog left by the faults
    /// being worked off on this small machine) up to [`DRAIN_LIMIT`] times
    /// that: a value never delivered is reported once they fall idle.
    pub(crate) fn stop(
        mut self,
        history: &History,
        drain: Duration,
        done: fn(&[Entry]) -> bool,
        reads: fn(&[Entry]) -> usize,
    ) -> Vec<String> {
        let name = self.name;
        let mut errors = Vec::new();
        if let Err(e) = writeln!(self.stdin, "stop").and_then(|()| self.stdin.flush()) {
            errors.push(format!("{name}: stopping the producers: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.stopped.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !self.stopped.load(Ordering::Acquire) {
            errors.push(format!("{name}: the producers did not stop within 30 s"));
        }
        let (start, mut deadline, mut seen) = (Instant::now(), Instant::now() + drain, 0);
        loop {
            let h = history.snapshot();
            if done(&h) || Instant::now() >= deadline {
                break;
            }
            let now_read = reads(&h);
            if now_read > seen {
                seen = now_read;
                deadline = deadline.max((Instant::now() + DRAIN_IDLE).min(start + drain * DRAIN_LIMIT));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = writeln!(self.stdin, "exit").and_then(|()| self.stdin.flush());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => {
                    errors.push(format!("{name}: the program ended with {status} (see its stderr.log)"));
                    break;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Ok(None) | Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    errors.push(format!("{name}: the program did not end within 20 s; killed"));
                    break;
                }
            }
        }
        let _ = self.reader.join();
        errors
    }
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
        assert_eq!(
            event(r#"{"e": "send", "p": 1, "v": "rmq1:7"}"#),
            Some(Event::RmqSend { producer: 1, value: "rmq1:7".into() })
        );
        assert_eq!(event(r#"{"e": "ok", "v": "rmq1:7"}"#), Some(Event::RmqOk { value: "rmq1:7".into() }));
        assert_eq!(
            event(r#"{"e": "unsure", "v": "rmq1:8", "err": "status SEND_FLUSH_SLAVE_TIMEOUT"}"#),
            Some(Event::RmqUnsure { value: "rmq1:8".into(), error: "status SEND_FLUSH_SLAVE_TIMEOUT".into() })
        );
        assert_eq!(
            event(r#"{"e": "read", "c": 0, "v": "rmq1:7"}"#),
            Some(Event::RmqRead { consumer: 0, value: "rmq1:7".into() })
        );
        assert!(matches!(parse(r#"{"e": "stopped"}"#), Some(Parsed::Stopped)));
        assert!(parse("Traceback (most recent call last):").is_none());
        assert!(parse(r#"{"e": "send", "v": "no producer"}"#).is_none());
    }
}
