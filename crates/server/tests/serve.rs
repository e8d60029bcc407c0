//! `fjord serve` as a process: health, produce/consume over HTTP, graceful
//! shutdown on SIGTERM and restart.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Server, agent, consume_all, produce};
use serde_json::Value;

#[test]
fn serves_health_and_records_and_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]);
    let a = agent();
    assert_eq!(a.get(&s.url("/livez")).call().unwrap().status().as_u16(), 200);
    assert_eq!(a.get(&s.url("/readyz")).call().unwrap().status().as_u16(), 200);

    let mut r =
        a.post(&s.url("/api/v1/topics")).send_json(serde_json::json!({"name": "orders", "partitions": 2})).unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.body_mut().read_json().unwrap();
    assert_eq!(created["partitions"].as_array().unwrap().len(), 2);
    let vals: Vec<String> = (0..5).map(|i| format!("order-{i}")).collect();
    let (status, body) = produce(&a, &s.http, "orders", 1, &vals);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["base_offset"], 0);
    assert_eq!(body["last_offset"], 4);

    // Bad input gets JSON errors with stable codes.
    let mut r = a.get(&s.url("/api/v1/topics/missing")).call().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.body_mut().read_json::<Value>().unwrap()["code"], "unknown_topic");
    let r = a.post(&s.url("/api/v1/topics")).header("content-type", "application/json").send("{not json").unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (status, _) = produce(&a, &s.http, "orders", 7, &vals);
    assert_eq!(status, 404);

    let status = s.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    assert!(data.join("topics/orders/1/.clean-shutdown").exists(), "logs must be closed cleanly");

    let s = Server::start(&data, &[]);
    let got = consume_all(&a, &s.http, "orders", 1);
    assert_eq!(got, vals.iter().cloned().enumerate().map(|(i, v)| (i as u64, v)).collect::<Vec<_>>());
    let (_, body) = produce(&a, &s.http, "orders", 1, &["after".to_string()]);
    assert_eq!(body["base_offset"], 5);
}

#[test]
fn a_bad_config_file_is_reported_with_exit_code_78() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fjord.toml");
    std::fs::write(&cfg, "[storage]\nsegment_bytez = 5\n").unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_fjord")).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("segment_bytez"), "{err}");
}
