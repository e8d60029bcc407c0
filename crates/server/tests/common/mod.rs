//! Starts real `fjord serve` processes for tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `fjord serve` child process.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) http: String,
    /// Kafka listener address (`host:port`).
    pub(crate) kafka: String,
    pub(crate) data: PathBuf,
    /// The ready file: every listener's bound address by name.
    pub(crate) listeners: Value,
}

/// How to launch a node beyond its data directory and environment.
#[derive(Default)]
pub(crate) struct Launch<'a> {
    /// Extra environment variables.
    pub(crate) env: &'a [(&'a str, &'a str)],
    /// Where its stderr goes (inherited when `None`).
    pub(crate) stderr: Option<&'a Path>,
    /// A command the binary runs under, e.g. `["prlimit", "--nofile=100:100"]`.
    pub(crate) wrapper: &'a [&'a str],
}

impl Server {
    /// Starts a node on `data` with an ephemeral HTTP port and extra env.
    pub(crate) fn start(data: &Path, env: &[(&str, &str)]) -> Server {
        Server::launch(data, Launch { env, ..Launch::default() })
    }

    /// Starts a node on `data` as `how` says, every listener on an
    /// ephemeral port.
    pub(crate) fn launch(data: &Path, how: Launch<'_>) -> Server {
        let ready = data.with_extension(format!("ready-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let mut cmd = match how.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_fjord"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_fjord")),
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data)
            .arg("--ready-file")
            .arg(&ready)
            .env("FJORD_LISTENERS__HTTP__BIND", "127.0.0.1:0")
            .env("FJORD_LISTENERS__KAFKA__BIND", "127.0.0.1:0")
            .env("FJORD_LISTENERS__ROCKETMQ_NAMESRV__BIND", "127.0.0.1:0")
            .env("FJORD_LISTENERS__ROCKETMQ_BROKER__BIND", "127.0.0.1:0")
            .env("FJORD_LISTENERS__ROCKETMQ_GRPC__BIND", "127.0.0.1:0")
            .env("FJORD_LISTENERS__AMQP__BIND", "127.0.0.1:0")
            .env("FJORD_LISTENERS__AMQP_MANAGEMENT__BIND", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        match how.stderr {
            Some(path) => cmd.stderr(std::fs::File::create(path).unwrap()),
            None => cmd.stderr(Stdio::inherit()),
        };
        for (k, v) in how.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                let http = format!("http://{}", v["http"].as_str().unwrap());
                let kafka = v["kafka"].as_str().unwrap_or_default().to_string();
                return Server { child, http, kafka, data: data.to_path_buf(), listeners: v };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("fjord exited before becoming ready: {status}");
            }
            assert!(Instant::now() < deadline, "fjord did not become ready in 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address a listener is bound to (`kafka`, `rocketmq_grpc`, ...).
    pub(crate) fn addr(&self, listener: &str) -> String {
        self.listeners[listener].as_str().unwrap().to_string()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// SIGTERM, then wait for the exit status.
    pub(crate) fn terminate(self) -> std::process::ExitStatus {
        self.signal("-TERM")
    }

    /// Sends a signal (`-TERM`, `-INT`), then waits for the exit status.
    pub(crate) fn signal(mut self, sig: &str) -> std::process::ExitStatus {
        let ok = Command::new("kill").arg(sig).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "fjord did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush or close anything.
    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Produces values to a partition; returns (status, body).
pub(crate) fn produce(agent: &ureq::Agent, http: &str, topic: &str, p: u32, values: &[String]) -> (u16, Value) {
    let records: Vec<Value> = values.iter().map(|v| json!({ "value": v })).collect();
    let url = format!("{http}/api/v1/topics/{topic}/partitions/{p}/records");
    match agent.post(&url).send_json(json!({ "records": records })) {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// Reads a whole partition as (offset, value) pairs.
pub(crate) fn consume_all(agent: &ureq::Agent, http: &str, topic: &str, p: u32) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let url = format!("{http}/api/v1/topics/{topic}/partitions/{p}/records?offset={offset}");
        let mut r = agent.get(&url).call().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.body_mut().read_json().unwrap();
        let recs = v["records"].as_array().unwrap();
        if recs.is_empty() {
            return out;
        }
        for rec in recs {
            let o = rec["offset"].as_u64().unwrap();
            out.push((o, rec["value"].as_str().unwrap().to_string()));
            offset = o + 1;
        }
    }
}
