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

#[test]
fn sigint_also_shuts_down_cleanly_and_json_logs_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("stderr.log");
    let ready = dir.path().join("ready.json");
    let stderr = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .arg("--ready-file")
        .arg(&ready)
        .env("FJORD_LISTENERS__HTTP__BIND", "127.0.0.1:0")
        .env("FJORD_LISTENERS__KAFKA__BIND", "127.0.0.1:0")
        .env("FJORD_LISTENERS__ROCKETMQ_NAMESRV__BIND", "127.0.0.1:0")
        .env("FJORD_LISTENERS__ROCKETMQ_BROKER__BIND", "127.0.0.1:0")
        .env("FJORD_LISTENERS__ROCKETMQ_GRPC__BIND", "127.0.0.1:0")
        .env("FJORD_LISTENERS__AMQP__BIND", "127.0.0.1:0")
        .env("FJORD_LISTENERS__AMQP_MANAGEMENT__BIND", "127.0.0.1:0")
        .env("FJORD_LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .stderr(stderr)
        .spawn()
        .unwrap();
    for _ in 0..3000 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let http: Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let url = format!("http://{}", http["http"].as_str().unwrap());
    let (status, _) = produce(&agent(), &url, "t", 0, &["x".to_string()]);
    assert_eq!(status, 200);
    assert!(std::process::Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGINT must exit 0, got {status}");
    assert!(data.join("topics/t/0/.clean-shutdown").exists());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "expected startup and shutdown logs, got {logs:?}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(logs.contains("broker closed cleanly"));
}
