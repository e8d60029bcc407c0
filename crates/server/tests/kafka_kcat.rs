//! kcat (librdkafka's command-line client, from Debian) against a real
//! `fjord serve`: produce with keys and headers, consume from an offset
//! and from a timestamp, list metadata. `scripts/test` installs kcat;
//! without it these tests fail rather than pass vacuously.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn kcat(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat must be installed (scripts/test installs it from Debian)");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kcat {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kcat_produces_with_keys_and_headers_and_consumes_by_offset_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(&dir.path().join("data"), &[]);
    let b = server.kafka.as_str();

    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    kcat(&["-b", b, "-P", "-t", "kc", "-K", ":", "-H", "src=kcat", "-H", "n=1"], Some("k1:v1\nk2:v2\nk1:v3\n"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let middle = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    std::thread::sleep(std::time::Duration::from_millis(20));
    kcat(&["-b", b, "-P", "-t", "kc", "-K", ":"], Some("k3:v4\n"));

    let all = kcat(&["-b", b, "-C", "-t", "kc", "-o", "beginning", "-e", "-f", "%k=%s@%o [%h] %T\n"], None);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 4, "{all}");
    assert!(lines[0].starts_with("k1=v1@0 [src=kcat,n=1] "), "{all}");
    assert!(lines[1].starts_with("k2=v2@1 [src=kcat,n=1] "), "{all}");
    assert!(lines[2].starts_with("k1=v3@2 [src=kcat,n=1] "), "{all}");
    assert!(lines[3].starts_with("k3=v4@3 "), "{all}");
    let ts: i64 = lines[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(ts >= before, "producer timestamps are kept");

    // From an offset.
    let from2 = kcat(&["-b", b, "-C", "-t", "kc", "-o", "2", "-e", "-f", "%s\n"], None);
    assert_eq!(from2, "v3\nv4\n");
    // From a timestamp: only what was produced after `middle`.
    let by_time = kcat(&["-b", b, "-C", "-t", "kc", "-o", &format!("s@{middle}"), "-e", "-f", "%s\n"], None);
    assert_eq!(by_time, "v4\n");

    // Metadata listing.
    let meta = kcat(&["-b", b, "-L", "-t", "kc"], None);
    assert!(meta.contains("1 brokers:"), "{meta}");
    assert!(meta.contains("topic \"kc\" with 1 partitions:"), "{meta}");
    assert!(meta.contains("partition 0, leader 0, replicas: 0, isrs: 0"), "{meta}");
    assert_eq!(server.terminate().code(), Some(0));
}
