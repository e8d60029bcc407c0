//! Hostile and stalled clients against a real `fjord serve` process (see
//! `docs/reliability.md`): stalled partial frames, connection floods, caps
//! per listener and per client IP, running out of file descriptors, slow
//! HTTP requests, oversized bodies and garbage in a loop. Each test fails
//! without the limit it checks.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Launch, Server};

/// A Kafka ApiVersions v0 request frame with correlation id `corr`.
fn api_versions(corr: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&corr.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.push(b't');
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Sends ApiVersions on `s` and reads the answer.
fn kafka_roundtrip(s: &mut TcpStream, corr: i32) -> std::io::Result<()> {
    s.write_all(&api_versions(corr))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp)?;
    assert_eq!(resp[..4], corr.to_be_bytes());
    Ok(())
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Connects from `local` (another loopback address, so its connections
/// count against a different client IP).
fn connect_from(local: &str, addr: &str) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{local}:0").parse::<SocketAddr>().unwrap()).unwrap();
        sock.connect(addr.parse().unwrap()).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// True when the peer closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
    }
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// `fjord_request_budget_bytes_in_use` as /metrics reports it.
fn budget_in_use(server: &Server) -> f64 {
    let page = http_get(&server.addr("http"), "/metrics");
    let line = page.lines().find(|l| l.starts_with("fjord_request_budget_bytes_in_use "));
    line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).expect("the gauge is exported")
}

fn data(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("data")
}

#[test]
fn stalled_partial_frames_hold_no_memory_for_long() {
    let dir = tempfile::tempdir().unwrap();
    let env =
        [("FJORD_KAFKA__CONNECTIONS_MAX_IDLE_MS", "1000"), ("FJORD_LIMITS__QUEUED_MAX_REQUEST_BYTES", "67108864")];
    let server = Server::start(&data(&dir), &env);
    let base = rss_mib(server.pid());
    // Six clients each announce a 50 MB Produce frame, send 40 MB of it
    // and go silent (without the budget: 240 MB held; without the body
    // deadline: held forever).
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let addr = server.kafka.clone();
            std::thread::spawn(move || {
                let mut s = connect(&addr);
                let mut head = 50_000_000i32.to_be_bytes().to_vec();
                head.extend_from_slice(&0i16.to_be_bytes()); // Produce
                head.extend_from_slice(&9i16.to_be_bytes());
                s.write_all(&head).unwrap();
                let chunk = vec![0u8; 1 << 20];
                for _ in 0..40 {
                    // The broker stops reading (budget) or closes (idle):
                    // either way this client's writes may fail.
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                assert!(closed_within(&mut s, Duration::from_secs(60)), "a stalled connection stays open");
            })
        })
        .collect();
    let mut peak = base;
    let mut budget_peak = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(90);
    while clients.iter().any(|c| !c.is_finished()) {
        peak = peak.max(rss_mib(server.pid()));
        budget_peak = budget_peak.max(budget_in_use(&server));
        assert!(Instant::now() < deadline, "stalled clients still connected after 90 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in clients {
        c.join().unwrap();
    }
    assert!(peak - base < 120, "RSS grew by {} MiB for stalled frames (budget 64 MiB)", peak - base);
    assert!(
        budget_peak > 0.0 && budget_peak <= 67_108_864.0,
        "/metrics showed {budget_peak} bytes of the budget in use"
    );
    assert_eq!(budget_in_use(&server), 0.0, "released with the connections");
    // And the broker serves as before.
    kafka_roundtrip(&mut connect(&server.kafka), 1).unwrap();
}

#[test]
fn connection_floods_leave_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&data(&dir), &[]);
    let flood = |n: usize| {
        let mut socks: Vec<TcpStream> = (0..n).map(|_| connect(&server.kafka)).collect();
        for (i, s) in socks.iter_mut().enumerate() {
            kafka_roundtrip(s, i as i32).unwrap();
        }
        socks
    };
    let base = rss_mib(server.pid());
    let n = 900;
    let socks = flood(n);
    let open1 = rss_mib(server.pid());
    drop(socks);
    // The broker notices the closes; the gauge in /metrics would say so,
    // but memory is what this checks.
    std::thread::sleep(Duration::from_millis(500));
    let closed1 = rss_mib(server.pid());
    let socks = flood(n);
    let open2 = rss_mib(server.pid());
    drop(socks);
    std::thread::sleep(Duration::from_millis(500));
    let per_conn_kib = (open1.saturating_sub(base)) * 1024 / n as u64;
    assert!(per_conn_kib < 48, "{per_conn_kib} KiB per idle connection (base {base}, open {open1} MiB)");
    assert!(open2 <= open1 + 16, "a second flood reuses the first one's memory: {open1} -> {open2} MiB");
    assert!(closed1 <= open1, "closing connections does not grow memory: {open1} -> {closed1} MiB");
}

#[test]
fn the_listener_cap_holds_new_connections_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&data(&dir), &[("FJORD_LIMITS__MAX_CONNECTIONS", "20")]);
    let mut open: Vec<TcpStream> = (0..20).map(|_| connect(&server.kafka)).collect();
    for (i, s) in open.iter_mut().enumerate() {
        kafka_roundtrip(s, i as i32).unwrap();
    }
    // The 21st waits in the backlog: its request is not read.
    let mut waiting = connect(&server.kafka);
    waiting.write_all(&api_versions(99)).unwrap();
    waiting.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let mut b = [0u8; 4];
    let err = waiting.read_exact(&mut b).expect_err("not served while the listener is full");
    assert!(matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{err}");
    // Other listeners have caps of their own.
    let livez = http_get(&server.addr("http"), "/livez");
    assert!(livez.starts_with("HTTP/1.1 200"), "{livez}");
    drop(open.pop());
    waiting.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut len = [0u8; 4];
    waiting.read_exact(&mut len).expect("served once a slot is free");
}

#[test]
fn connections_over_the_per_ip_cap_are_closed_across_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&data(&dir), &[("FJORD_LIMITS__MAX_CONNECTIONS_PER_IP", "10")]);
    let (kafka, http) = (server.kafka.clone(), server.addr("http"));
    let mut mine: Vec<TcpStream> = Vec::new();
    for i in 0..5 {
        let mut s = connect_from("127.0.0.2", &kafka);
        kafka_roundtrip(&mut s, i).unwrap();
        mine.push(s);
        let mut h = connect_from("127.0.0.2", &http);
        h.write_all(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut buf = [0u8; 12];
        h.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        mine.push(h);
    }
    // The 11th connection from that IP, on either listener, is closed.
    let mut over = connect_from("127.0.0.2", &kafka);
    let _ = over.write_all(&api_versions(11));
    assert!(closed_within(&mut over, Duration::from_secs(10)), "over the per-IP cap: closed at once");
    // Another client IP is not affected.
    kafka_roundtrip(&mut connect(&kafka), 1).unwrap();
    // A freed slot is usable again.
    drop(mine.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_from("127.0.0.2", &kafka);
        if kafka_roundtrip(&mut again, 12).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = http_get(&http, "/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("fjord_connections_refused_total")
            && l.contains("protocol=\"kafka\"")
            && l.contains("reason=\"per_ip_limit\"")),
        "refusals are counted"
    );
}

/// One HTTP/1.1 request on a fresh connection; the whole answer as text.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = connect(addr);
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn out_of_file_descriptors_no_listener_spins_and_the_limit_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let server = Server::launch(
        &data(&dir),
        Launch { env: &[("RUST_LOG", "warn")], stderr: Some(&log), wrapper: &["prlimit", "--nofile=96:96"] },
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("open-file limit is low"), "the low limit is reported at start: {text}");
    // Use up the descriptors with Kafka connections, then queue
    // connections on every other listener: each accept now fails.
    let mut hog: Vec<TcpStream> = Vec::new();
    for _ in 0..150 {
        hog.push(connect(&server.kafka));
    }
    let queued: Vec<TcpStream> = ["rocketmq_grpc", "rocketmq_namesrv", "rocketmq_broker", "http"]
        .iter()
        .flat_map(|l| {
            let addr = server.addr(l);
            (0..5).map(move |_| connect(&addr))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(server.pid()) - before;
    // Clock ticks are 1/100 s: a spinning accept loop burns ~300.
    assert!(used < 60, "the broker used {used} ticks of CPU in 3 s while out of file descriptors");
    drop(queued);
    drop(hog);
    // Recovers once descriptors are free.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = connect(&server.kafka);
        if kafka_roundtrip(&mut s, 5).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "not serving again after descriptors were freed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::launch(&data(&dir), Launch { wrapper: &["prlimit", "--nofile=256:4096"], ..Launch::default() });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["4096", "4096"], "{line}");
}

/// Sends `request` on a fresh HTTP connection; the answer's status line,
/// or `None` if the broker closed without one within 10 s.
fn http_status(addr: &str, request: &[u8]) -> Option<String> {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    text.lines().next().map(str::to_string).filter(|l| !l.is_empty())
}

#[test]
fn slow_or_oversized_http_requests_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("FJORD_LIMITS__HTTP_CONNECTIONS_MAX_IDLE_MS", "1500"), ("FJORD_LIMITS__HTTP_BODY_TIMEOUT_MS", "700")];
    let server = Server::start(&data(&dir), &env);
    let http = server.addr("http");
    // Half a request line and headers, then silence: closed.
    let start = Instant::now();
    assert_eq!(http_status(&http, b"GET /livez HTTP/1.1\r\nHost: t\r\n"), None);
    assert!(start.elapsed() < Duration::from_secs(8), "partial headers held {:?}", start.elapsed());
    // A body that never arrives whole: 408.
    let slow =
        b"POST /api/v1/topics HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    let status = http_status(&http, slow).expect("answered");
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    // A body announced over the cap: 413 before any of it is read.
    let big = b"POST /api/v1/topics HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 20000000\r\n\r\n";
    let status = http_status(&http, big).expect("answered");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // A chunked body that grows over the cap: 413 too.
    let mut s = connect(&http);
    s.write_all(b"POST /api/v1/topics HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..18 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{}", text.lines().next().unwrap_or(""));
    // Requests with bodies still work.
    let body = br#"{"name": "ok", "partitions": 1}"#;
    let mut req = format!(
        "POST /api/v1/topics HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let status = http_status(&http, &req).expect("answered");
    assert!(status.starts_with("HTTP/1.1 201"), "{status}");
}

#[test]
fn garbage_in_a_loop_costs_a_log_line_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let server =
        Server::launch(&data(&dir), Launch { env: &[("RUST_LOG", "info")], stderr: Some(&log), ..Launch::default() });
    // 300 frames with an unknown API key, one connection each.
    for i in 0..300i32 {
        let mut s = connect(&server.kafka);
        let mut body = 9999i16.to_be_bytes().to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&i.to_be_bytes());
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        s.write_all(&frame).unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(10)));
    }
    kafka_roundtrip(&mut connect(&server.kafka), 1).unwrap();
    let lines = count_lines(&log, "cannot serve");
    assert!((1..=3).contains(&lines), "{lines} log lines for 300 malformed frames");
}

fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path).unwrap().lines().filter(|l| l.contains(needle)).count()
}

/// Creates topic `name` through the admin API; the HTTP status.
fn create_topic(agent: &ureq::Agent, http: &str, name: &str) -> u16 {
    let body = serde_json::json!({ "name": name, "partitions": 1 });
    match agent.post(format!("{http}/api/v1/topics")).send_json(body) {
        Ok(r) => r.status().as_u16(),
        Err(e) => panic!("admin API unreachable: {e}"),
    }
}

/// The user topics on disk (the broker's internal ones left out).
fn topic_dirs(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("topics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("__"))
        .collect();
    v.sort();
    v
}

#[test]
fn out_of_file_descriptors_creations_fail_cleanly_and_restarts_serve_what_they_can() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(&dir);
    let agent = common::agent();
    // Every topic holds a segment file open.
    let created: Vec<String> = {
        let server = Server::launch(&data, Launch { wrapper: &["prlimit", "--nofile=400:400"], ..Launch::default() });
        let mut created = Vec::new();
        let mut failed = None;
        for i in 0..1000 {
            let name = format!("t{i:03}");
            match create_topic(&agent, &server.http, &name) {
                201 => created.push(name),
                status => {
                    assert!(status >= 500, "{name}: {status}");
                    failed = Some(name);
                    break;
                }
            }
        }
        let failed = failed.expect("creations ran out of file descriptors");
        assert!(!topic_dirs(&data).contains(&failed), "the failed creation of {failed} left its directory");
        assert_eq!(topic_dirs(&data), created, "exactly the topics created are on disk");
        assert!(server.terminate().success());
        created
    };
    // With fewer descriptors, not every topic fits: the broker starts
    // anyway (keeping room for its own state), serves the topics that fit
    // and reports the others offline.
    {
        let server = Server::launch(&data, Launch { wrapper: &["prlimit", "--nofile=330:330"], ..Launch::default() });
        let health: serde_json::Value =
            agent.get(server.url("/api/v1/cluster/health")).call().unwrap().body_mut().read_json().unwrap();
        let text = health.to_string();
        assert!(text.contains("open-file limit"), "offline topics are reported with the reason: {text}");
        kafka_roundtrip(&mut connect(&server.kafka), 3).unwrap();
        let first = &created[0];
        assert_eq!(create_topic(&agent, &server.http, first), 409, "{first} exists (online: name order)");
        let last = created.last().unwrap();
        let status = create_topic(&agent, &server.http, last);
        assert_eq!(status, 503, "{last} is offline and never created over");
        assert!(server.terminate().success());
    }
    // With enough, every topic is back, none lost.
    let server = Server::start(&data, &[]);
    let topics: serde_json::Value =
        agent.get(server.url("/api/v1/topics")).call().unwrap().body_mut().read_json().unwrap();
    let text = topics.to_string();
    for name in &created {
        assert!(text.contains(&format!("\"{name}\"")), "{name} missing after restart");
    }
}
