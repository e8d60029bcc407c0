//! Crash tests: kill -9 a real `fjord serve` in the middle of concurrent
//! writes, restart it, and check that every acknowledged record is there,
//! exactly once and in acknowledgement order, for each durability policy.
//! Then damage segment tails by hand (a torn write after a power cut, and
//! garbage) and check that recovery keeps every whole batch before them.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, agent, consume_all, produce};

const WRITERS: u32 = 6;
const BATCH: usize = 5;
const TOPIC: &str = "crash";

/// Acknowledged values per partition, in acknowledgement order.
type Acked = HashMap<u32, Vec<String>>;

fn run_crash_cycles(durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small segments so crashes also hit rolls and sealed segments.
    let env = [("FJORD_STORAGE__DURABILITY", durability), ("FJORD_STORAGE__SEGMENT_BYTES", "65536")];
    let mut acked = Acked::new();
    for cycle in 0..3 {
        let s = Server::start(&data, &env);
        if cycle == 0 {
            let r = agent()
                .post(&s.url("/api/v1/topics"))
                .send_json(serde_json::json!({"name": TOPIC, "partitions": WRITERS}))
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
        verify(&s, &acked, cycle);
        kill_during_writes(s, cycle, &mut acked);
    }
    let s = Server::start(&data, &env);
    let before = verify(&s, &acked, 3);
    tear_and_verify(s, &data, &env, &before);
}

/// Writers, one per partition, produce unique values until the server is
/// killed with SIGKILL mid-traffic. Only 200 answers count as acknowledged.
fn kill_during_writes(s: Server, cycle: usize, acked: &mut Acked) {
    let shared = Arc::new(Mutex::new(std::mem::take(acked)));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (shared, http) = (shared.clone(), s.http.clone());
            std::thread::spawn(move || {
                let a = agent();
                for n in 0..100_000 {
                    let vals: Vec<String> = (0..BATCH).map(|i| format!("w{w}-c{cycle}-{}", n * BATCH + i)).collect();
                    let (status, _) = produce(&a, &http, TOPIC, w, &vals);
                    if status != 200 {
                        return; // the server died: this batch is not acknowledged
                    }
                    shared.lock().unwrap().entry(w).or_default().extend(vals);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    s.kill9();
    for t in threads {
        t.join().unwrap();
    }
    *acked = Arc::try_unwrap(shared).unwrap().into_inner().unwrap();
    let this_cycle = acked.values().flatten().filter(|v| v.contains(&format!("-c{cycle}-"))).count();
    assert!(this_cycle > 0, "no write was acknowledged before the kill; the test would prove nothing");
}

/// Checks every partition; returns what each holds.
fn verify(s: &Server, acked: &Acked, cycle: usize) -> HashMap<u32, Vec<String>> {
    let a = agent();
    let mut all = HashMap::new();
    for w in 0..WRITERS {
        let got = consume_all(&a, &s.http, TOPIC, w);
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..got.len() as u64).collect::<Vec<_>>(), "offsets must be contiguous");
        let values: Vec<String> = got.into_iter().map(|(_, v)| v).collect();
        let unique: HashSet<&String> = values.iter().collect();
        assert_eq!(unique.len(), values.len(), "cycle {cycle} partition {w}: a record is duplicated");
        assert!(values.iter().all(|v| v.starts_with(&format!("w{w}-"))), "a record is in the wrong partition");
        let want = acked.get(&w).cloned().unwrap_or_default();
        let want_set: HashSet<&String> = want.iter().collect();
        let present: Vec<String> = values.iter().filter(|v| want_set.contains(v)).cloned().collect();
        assert_eq!(present.len(), want.len(), "cycle {cycle} partition {w}: acknowledged records are missing");
        assert_eq!(present, want, "cycle {cycle} partition {w}: acknowledged records out of order");
        all.insert(w, values);
    }
    all
}

fn tear_and_verify(s: Server, data: &Path, env: &[(&str, &str)], before: &HashMap<u32, Vec<String>>) {
    s.kill9();
    // Cut the last bytes of partition 0's newest segment, as a torn write
    // after a power cut would, and append garbage to partition 1's.
    for p in [0u32, 1] {
        let dir = data.join(format!("topics/{TOPIC}/{p}"));
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        // A kill between a roll's new (empty) segment and its first write
        // leaves that segment empty: tear the newest one holding data
        // (recovery then also drops the empty one after it).
        let size = |p: &std::path::PathBuf| std::fs::metadata(p).unwrap().len();
        let last = match p {
            0 => logs.iter().rev().find(|l| size(l) > 10).cloned().expect("partition 0 holds data"),
            _ => logs.pop().unwrap(),
        };
        let len = size(&last);
        let f = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
        if p == 0 {
            f.set_len(len - 10).unwrap();
        } else {
            use std::io::Write;
            (&f).write_all(&[0x7f; 300]).unwrap();
        }
    }
    let s = Server::start(data, env);
    let a = agent();
    for w in 0..WRITERS {
        let got: Vec<String> = consume_all(&a, &s.http, TOPIC, w).into_iter().map(|(_, v)| v).collect();
        let had = &before[&w];
        if w == 0 {
            // Exactly the torn last batch is gone; everything before it stays.
            assert_eq!(got.len(), had.len() - BATCH, "only the torn batch may be lost");
            assert_eq!(&had[..got.len()], &got[..]);
        } else {
            assert_eq!(&got, had, "partition {w} must be unchanged by the damage");
        }
    }
    let (status, body) = produce(&a, &s.http, TOPIC, 0, &["after-recovery".to_string()]);
    assert_eq!(status, 200, "{body}");
    assert!(s.terminate().success());
}

#[test]
fn kill_9_loses_no_acknowledged_record_with_group_commit() {
    run_crash_cycles("group-commit");
}

#[test]
fn kill_9_loses_no_acknowledged_record_with_every_write() {
    run_crash_cycles("every-write");
}

#[test]
fn kill_9_loses_no_acknowledged_record_with_interval_flush() {
    // A process crash keeps the page cache, so even interval flushing loses
    // nothing acknowledged; only a machine crash could.
    run_crash_cycles("interval");
}
