//! A node run in-process with an injected listener, clock and shutdown.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use fjord::serve::{Options, run};
use fjord_log::ManualClock;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_an_injected_listener_with_an_injected_clock_and_stops_on_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fjord_config::Config::default();
    config.node.data_dir = dir.path().join("data");
    config.listeners.kafka.bind = "127.0.0.1:0".to_string();
    for l in [
        &mut config.listeners.rocketmq_namesrv,
        &mut config.listeners.rocketmq_broker,
        &mut config.listeners.rocketmq_grpc,
        &mut config.listeners.amqp,
        &mut config.listeners.amqp_management,
    ] {
        l.bind = "127.0.0.1:0".to_string();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clock = Arc::new(ManualClock::new(1_234_000));
    let opts = Options {
        listeners: [("http".to_string(), listener)].into(),
        clock: Some(clock.clone()),
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(run(config, opts, async move {
        let _ = stop_rx.await;
    }));

    let base = format!("http://{addr}");
    let http = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        for _ in 0..500 {
            if let Ok(r) = agent.get(&format!("{base}/readyz")).call()
                && r.status().as_u16() == 200
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let url = format!("{base}/api/v1/topics/clocked/partitions/0/records");
        let r = agent.post(&url).send_json(json!({"records": [{"value": "v"}]})).unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = agent.get(&format!("{url}?offset=0")).call().unwrap().body_mut().read_json().unwrap();
        v["records"][0]["timestamp"].as_i64().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(http, 1_234_000, "records are stamped by the injected clock");
    stop_tx.send(()).unwrap();
    node.await.unwrap().unwrap();
    assert!(dir.path().join("data/topics/clocked/0/.clean-shutdown").exists());
}
