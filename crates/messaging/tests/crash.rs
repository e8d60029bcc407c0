//! kill -9 with pending delayed messages, in-flight pop messages and a
//! scheduled retry: after the restart every acknowledged operation holds,
//! nothing is lost, and redeliveries happen only where the semantics allow.
//!
//! The test re-runs its own executable as the broker process
//! (`FJORD_CRASH_CHILD=<dir>`), waits for it to report what it did, and
//! SIGKILLs it mid-life; then it opens the same directory in-process.
#![allow(missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{T0, open_at};
use fjord_broker::TopicPartition;
use fjord_filter::Filter;
use fjord_log::ManualClock;
use fjord_messaging::{ConsumeModel, Delivery, Message, MessagingConfig, Partitioning, PopRequest, PullRequest};

const CHILD: &str = "FJORD_CRASH_CHILD";

/// The broker process: does the work, prints one line describing what was
/// acknowledged, then waits to be killed.
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD) else { return };
    let clock = Arc::new(ManualClock::new(T0));
    let env = open_at(std::path::Path::new(&dir), clock.clone(), MessagingConfig::default()).await;
    env.topic("d", 2).await;
    env.topic("p", 1).await;
    // 100 due at +5 s (delivered before the crash), 100 at +60 s (pending).
    let mut early = Vec::new();
    let mut late = Vec::new();
    for i in 0..200 {
        let at = if i < 100 { T0 + 5_000 } else { T0 + 60_000 };
        let m = Message { delivery: Delivery::At(at), ..Message::new("d", Bytes::from(format!("d{i}"))) };
        let id = env.m.send(m, Partitioning::Auto).await.expect("schedule").id;
        if i < 100 { early.push(id) } else { late.push(id) }
    }
    clock.advance(5_000);
    assert_eq!(env.m.deliver_due().await.expect("deliver"), 100);
    // Pop: 20 sent, 10 popped (30 s invisible), 5 of those acked.
    for i in 0..20 {
        env.m.send(Message::new("p", Bytes::from(format!("p{i}"))), Partitioning::Auto).await.expect("send");
    }
    let req = PopRequest { invisible: Duration::from_secs(30), ..PopRequest::new("g", "p", 10) };
    let popped = env.m.pop(req).await.expect("pop");
    assert_eq!(popped.len(), 10);
    let mut acked = Vec::new();
    for p in popped.iter().step_by(2) {
        env.m.ack("g", &ConsumeModel::Clustering, &p.receipt).await.expect("ack");
        acked.push(p.message.offset);
    }
    // A failed message from a pull consumer: its retry is scheduled (10 s).
    let tp = TopicPartition::new("p", 0);
    let pulled = env
        .m
        .pull(PullRequest {
            group: "r".into(),
            model: ConsumeModel::Clustering,
            partition: tp,
            offset: Some(0),
            max_messages: 1,
            filter: Filter::All,
            wait: Duration::ZERO,
        })
        .await
        .expect("pull");
    env.m.consume_failed("r", &pulled.messages[0], None).await.expect("retry");
    // At-most-once: commit past a message before processing it; the crash
    // "during processing" must not bring it back.
    let amo = ConsumeModel::Clustering;
    env.m.commit("amo", &amo, &TopicPartition::new("p", 0), 3).await.expect("commit");
    let report = serde_json::json!({ "early": early, "late": late, "acked": acked });
    println!("READY {report}");
    use std::io::Write;
    std::io::stdout().flush().expect("flush");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn kill_9_with_pending_delays_in_flight_pops_and_retries() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut report = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child");
        // libtest may print "test crash_child ... " on the same line.
        if let Some((_, r)) = line.split_once("READY ") {
            report = Some(serde_json::from_str::<serde_json::Value>(r).expect("report"));
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let report = report.expect("child reported");
    let strings = |k: &str| -> Vec<String> {
        report[k].as_array().expect("array").iter().map(|v| v.as_str().expect("str").to_string()).collect()
    };
    let (early, late) = (strings("early"), strings("late"));
    let acked: Vec<u64> = report["acked"].as_array().expect("array").iter().map(|v| v.as_u64().expect("u64")).collect();

    let clock = Arc::new(ManualClock::new(T0 + 5_000));
    let env = open_at(dir.path(), clock.clone(), MessagingConfig::default()).await;
    let ids_in_d = |env: &common::Env| {
        let env_m = env.m.clone();
        async move {
            let mut ids = Vec::new();
            for p in 0..2 {
                let tp = TopicPartition::new("d", p);
                for r in env_m.broker().read_records(&tp, 0, 1 << 24).await.expect("read") {
                    ids.push(fjord_messaging::StoredMessage::from_record("d", p, &r).id.expect("id"));
                }
            }
            ids.sort();
            ids
        }
    };
    // Delivered before the crash: exactly once. Pending: 100 + the retry.
    let mut want = early.clone();
    want.sort();
    assert_eq!(ids_in_d(&env).await, want);
    assert_eq!(env.m.timer_stats().pending, 101);
    // At-most-once: the committed position survived; offsets 0..3 are not
    // read again.
    let amo = env
        .m
        .pull(PullRequest {
            group: "amo".into(),
            model: ConsumeModel::Clustering,
            partition: TopicPartition::new("p", 0),
            offset: None,
            max_messages: 1,
            filter: Filter::All,
            wait: Duration::ZERO,
        })
        .await
        .expect("pull");
    assert_eq!(amo.messages[0].offset, 3);

    // At-least-once (pop): acked messages never come back; the 5 unacked ones do, once
    // their invisibility ends, with attempt 2; the 10 never popped come too.
    let req = || PopRequest { invisible: Duration::from_secs(30), ..PopRequest::new("g", "p", 100) };
    let now = env.m.pop(req()).await.expect("pop");
    assert!(now.iter().all(|p| p.attempt == 1 && p.message.offset >= 10), "in-flight ones stay invisible");
    assert_eq!(now.len(), 10);
    clock.advance(30_000);
    let again = env.m.pop(req()).await.expect("pop");
    let mut offs: Vec<u64> = again.iter().filter(|p| p.message.offset < 10).map(|p| p.message.offset).collect();
    offs.sort();
    let unacked: Vec<u64> = (0..10).filter(|o| !acked.contains(o)).collect();
    assert_eq!(offs, unacked);
    assert!(again.iter().filter(|p| p.message.offset < 10).all(|p| p.attempt == 2));
    // The retry (10 s back-off) and the late ones arrive at their time, once.
    // (The clock is at +35 s now.)
    assert_eq!(env.m.deliver_due().await.expect("deliver"), 1);
    let retry = env.m.broker().read_records(&TopicPartition::new("%RETRY%r", 0), 0, 1 << 20).await.expect("retry");
    assert_eq!(retry.len(), 1);
    clock.advance(25_000);
    assert_eq!(env.m.deliver_due().await.expect("deliver"), 100);
    let mut want: Vec<String> = early.into_iter().chain(late).collect();
    want.sort();
    assert_eq!(ids_in_d(&env).await, want);

    env.close().await;
}
