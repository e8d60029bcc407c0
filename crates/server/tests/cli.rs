//! The `fjord` admin CLI (the real binary) against a real `fjord serve`:
//! table and JSON output of each noun, produce/consume round trips,
//! confirmations, profiles, completions and the sysexits exit codes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Server;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

/// What one `fjord` run did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "fjord failed: {self:#?}");
        &self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Asserts the exit code and returns stderr.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "expected exit code {code}: {self:#?}");
        &self.stderr
    }
}

/// Runs `fjord args...` with `stdin` (or an empty, non-terminal stdin),
/// isolated from the user's profile file and `FJORD_*` variables.
fn fjord_env(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fjord"));
    cmd.args(args)
        .env_remove("FJORD_SERVER")
        .env_remove("FJORD_PROFILE")
        .env("FJORD_CLI_CONFIG", "/nonexistent/fjord-cli-test/config.toml")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // A command that refuses without reading its input (a piped answer
        // to a confirmation) may have exited already: its exit code says
        // what happened, a broken pipe here does not.
        if let Err(e) = pipe.write_all(input.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing the command's stdin: {e}");
        }
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `fjord --server <server> args...`.
fn fjord(server: &Server, args: &[&str]) -> Run {
    fjord_in(server, args, None)
}

fn fjord_in(server: &Server, args: &[&str], stdin: Option<&str>) -> Run {
    let mut all = vec!["--server", server.http.as_str()];
    all.extend_from_slice(args);
    fjord_env(&all, stdin, &[])
}

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    (dir, server)
}

/// The whitespace-separated cells of each table line.
fn cells(table: &str) -> Vec<Vec<String>> {
    table.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

/// The row of a table whose first cell is `first`.
fn row(table: &str, first: &str) -> Vec<String> {
    cells(table)
        .into_iter()
        .find(|r| r.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row '{first}' in:\n{table}"))
}

fn values(v: &Value) -> Vec<String> {
    v["messages"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_string()).collect()
}

#[test]
fn topic_create_list_describe_alter() {
    let (_dir, server) = start();
    let created = fjord(&server, &["topic", "create", "orders", "--partitions", "3", "-c", "retention.ms=86400000"]);
    let table = created.ok();
    assert!(table.starts_with("Topic:  orders\n"), "{table}");
    assert!(table.contains("retention.ms=86400000"), "{table}");

    // JSON: the API response itself.
    let list = fjord(&server, &["topic", "list", "-o", "json"]).json();
    let orders = list["topics"].as_array().unwrap().iter().find(|t| t["name"] == "orders").expect("listed");
    assert_eq!(orders["partitions"], 3);
    assert_eq!(orders["kind"], "normal");
    assert_eq!(orders["messages"], 0);

    // Table: a header and one row per topic.
    let table = fjord(&server, &["topic", "list"]).ok().to_string();
    assert_eq!(cells(&table)[0], ["NAME", "KIND", "PARTITIONS", "MESSAGES", "SIZE", "LAST", "APPEND"]);
    assert_eq!(row(&table, "orders")[..4], ["orders", "normal", "3", "0"]);

    // Describe: one row per partition.
    let table = fjord(&server, &["topic", "describe", "orders"]).ok().to_string();
    let header = table.lines().position(|l| l.starts_with("PARTITION")).expect("partition table");
    let rows = cells(&table)[header + 1..].to_vec();
    assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["0", "1", "2"], "{table}");
    assert!(rows.iter().all(|r| r[1..5] == ["0", "0", "0", "0"]), "{table}");
    let yaml = fjord(&server, &["topic", "describe", "orders", "-o", "yaml"]).ok().to_string();
    assert!(yaml.contains("\nname: orders\n") && yaml.contains("\n  partition: 2\n"), "{yaml}");

    // Alter: more partitions, a config override set then reset.
    let v =
        fjord(&server, &["topic", "alter", "orders", "-p", "5", "-c", "retention.bytes=1048576", "-o", "json"]).json();
    assert_eq!(v["partitions"].as_array().unwrap().len(), 5);
    assert_eq!(v["config"]["retention.bytes"], "1048576");
    let v = fjord(&server, &["topic", "alter", "orders", "--reset-config", "retention.bytes", "-o", "json"]).json();
    assert!(v["config"].get("retention.bytes").is_none(), "{v}");
    // Nothing to change is a usage error; fewer partitions is the API's 400.
    assert!(fjord(&server, &["topic", "alter", "orders"]).fails(64).contains("--partitions"));
    let err = fjord(&server, &["topic", "alter", "orders", "-p", "2"]).fails(65).to_string();
    assert!(err.starts_with("fjord: bad_request: "), "{err}");

    // Creating it again: 409 topic_exists.
    let err = fjord(&server, &["topic", "create", "orders"]).fails(65).to_string();
    assert!(err.starts_with("fjord: topic_exists: "), "{err}");
}

#[test]
fn produce_from_stdin_then_consume() {
    let (dir, server) = start();
    fjord(&server, &["topic", "create", "events", "-p", "1"]).ok();
    let sent = fjord_in(&server, &["topic", "produce", "events"], Some("first\nsecond\r\n\nthird\n"));
    let table = sent.ok();
    assert!(table.starts_with("Sent 3 messages to 'events'."), "{table}");
    assert_eq!(row(table, "0"), ["0", "3", "0", "2"]);

    let v = fjord(&server, &["topic", "consume", "events", "-o", "json"]).json();
    assert_eq!(values(&v), ["first", "second", "third"]);
    assert_eq!(v["messages"][0]["offset"], 0);
    assert_eq!(v["partitions"], json!([{"partition": 0, "next_offset": 3, "high_watermark": 3}]));

    // From an offset, with a limit; table output.
    let v = fjord(&server, &["topic", "consume", "events", "-p", "0", "--offset", "1", "-o", "json"]).json();
    assert_eq!(values(&v), ["second", "third"]);
    let v = fjord(&server, &["topic", "consume", "events", "--limit", "2", "-o", "json"]).json();
    assert_eq!(values(&v), ["first", "second"]);
    let table = fjord(&server, &["topic", "consume", "events"]).ok().to_string();
    assert_eq!(cells(&table)[0], ["PARTITION", "OFFSET", "TIMESTAMP", "KEY", "VALUE"]);
    assert_eq!(cells(&table)[3][4], "third");
    // From a time: everything is younger than an hour.
    let v = fjord(&server, &["topic", "consume", "events", "--time", "-1h", "-o", "json"]).json();
    assert_eq!(values(&v).len(), 3);

    // Keys from a file with a key separator; JSON results of every message.
    let file = dir.path().join("keyed.txt");
    std::fs::write(&file, "k1=v1\nk2=v=2\n").unwrap();
    let v =
        fjord(&server, &["topic", "produce", "events", "-f", file.to_str().unwrap(), "-k", "=", "-o", "json"]).json();
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(v["results"][0]["offset"], 3);
    let v = fjord(&server, &["topic", "consume", "events", "--offset", "3", "-o", "json"]).json();
    assert_eq!(v["messages"][0]["key"], "k1");
    assert_eq!(values(&v), ["v1", "v=2"]);
    // A line without the separator: nothing is sent, exit 65.
    let err = fjord_in(&server, &["topic", "produce", "events", "-k", "="], Some("a=1\nnokey\n")).fails(65).to_string();
    assert!(err.contains("message 2 has no key separator"), "{err}");
    let missing = dir.path().join("missing.txt");
    fjord(&server, &["topic", "produce", "events", "-f", missing.to_str().unwrap()]).fails(66);
    let v = fjord(&server, &["topic", "describe", "events", "-o", "json"]).json();
    assert_eq!(v["partitions"][0]["messages"], 5);
}

#[test]
fn produce_many_in_chunks_and_consume_all_partitions() {
    let (_dir, server) = start();
    fjord(&server, &["topic", "create", "bulk", "-p", "3"]).ok();
    let lines: String = (0..1234).map(|i| format!("m{i}\n")).collect();
    let v = fjord_in(&server, &["topic", "produce", "bulk", "--batch-size", "500", "-o", "json"], Some(&lines)).json();
    assert_eq!(v["results"].as_array().unwrap().len(), 1234);
    let v = fjord(&server, &["topic", "list", "-o", "json"]).json();
    assert_eq!(v["topics"][0]["messages"], 1234);
    // Every partition, paged past the server's page size.
    let v = fjord(&server, &["topic", "consume", "bulk", "--limit", "5000", "-o", "json"]).json();
    let mut got = values(&v);
    assert_eq!(got.len(), 1234);
    got.sort_by_key(|m| m[1..].parse::<u32>().unwrap());
    assert_eq!(got, (0..1234).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_eq!(v["partitions"].as_array().unwrap().len(), 3);
    // The limit spans partitions.
    let v = fjord(&server, &["topic", "consume", "bulk", "--limit", "1000", "-o", "json"]).json();
    assert_eq!(values(&v).len(), 1000);
}

/// Commits `offsets` of `group` through the Kafka API (a consumer that
/// never joins the group, so the group has no live members).
fn commit(server: &Server, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &server.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

fn committed(server: &Server, group: &str) -> Vec<(u64, i64)> {
    let v = fjord(server, &["group", "describe", group, "-o", "json"]).json();
    let mut out: Vec<(u64, i64)> = v["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["partition"].as_u64().unwrap(), o["committed_offset"].as_i64().unwrap()))
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn groups_list_describe_seek_delete() {
    let (_dir, server) = start();
    fjord(&server, &["topic", "create", "pay", "-p", "2"]).ok();
    for p in 0..2 {
        let vals: Vec<String> = (0..5).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(common::produce(&common::agent(), &server.http, "pay", p, &vals).0, 200);
    }
    commit(&server, "billing", "pay", &[(0, 4), (1, 2)]);

    let v = fjord(&server, &["group", "list", "-o", "json"]).json();
    let g = v["groups"].as_array().unwrap().iter().find(|g| g["name"] == "billing").expect("group listed");
    assert_eq!(g["lag"], 4);
    let table = fjord(&server, &["group", "list"]).ok().to_string();
    assert_eq!(cells(&table)[0], ["NAME", "PROTOCOL", "STATE", "MEMBERS", "LAG"]);
    assert_eq!(row(&table, "billing").last().map(String::as_str), Some("4"));

    assert_eq!(committed(&server, "billing"), [(0, 4), (1, 2)]);
    let table = fjord(&server, &["group", "describe", "billing"]).ok().to_string();
    assert!(table.starts_with("Group:"), "{table}");
    assert_eq!(row(&table, "pay")[..5], ["pay", "0", "4", "5", "1"]);

    // Dry run: the plan, nothing changes (no confirmation needed).
    let v = fjord(&server, &["group", "seek", "billing", "--to", "earliest", "--dry-run", "-o", "json"]).json();
    assert_eq!(v["dry_run"], true);
    let mut plan: Vec<(u64, u64)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["partition"].as_u64().unwrap(), c["new_offset"].as_u64().unwrap()))
        .collect();
    plan.sort_unstable();
    assert_eq!(plan, [(0, 0), (1, 0)]);
    assert_eq!(committed(&server, "billing"), [(0, 4), (1, 2)]);
    let table = fjord(&server, &["group", "seek", "billing", "--to", "earliest", "--dry-run"]).ok().to_string();
    assert!(table.contains("dry run"), "{table}");
    assert_eq!(row(&table, "pay").len(), 5);

    // For real: refused without --yes off a terminal, done with it.
    let err = fjord(&server, &["group", "seek", "billing", "--to", "earliest"]).fails(64).to_string();
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(committed(&server, "billing"), [(0, 4), (1, 2)]);
    let v = fjord(&server, &["group", "seek", "billing", "--to", "earliest", "--yes", "-o", "json"]).json();
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["changes"].as_array().unwrap().len(), 2);
    assert_eq!(committed(&server, "billing"), [(0, 0), (1, 0)]);
    // An offset, one partition only; then latest; then a time.
    fjord(&server, &["group", "seek", "billing", "--to", "3", "-t", "pay", "-p", "1", "-y"]).ok();
    assert_eq!(committed(&server, "billing"), [(0, 0), (1, 3)]);
    fjord(&server, &["group", "seek", "billing", "--to", "latest", "-y"]).ok();
    assert_eq!(committed(&server, "billing"), [(0, 5), (1, 5)]);
    fjord(&server, &["group", "seek", "billing", "--to=-1h", "-y"]).ok();
    assert_eq!(committed(&server, "billing"), [(0, 0), (1, 0)]);
    fjord(&server, &["group", "seek", "billing", "--to", "soon", "-y"]).fails(64);

    // Delete: refused without --yes, then gone.
    fjord(&server, &["group", "delete", "billing"]).fails(64);
    fjord(&server, &["group", "delete", "billing", "--yes"]).ok();
    let err = fjord(&server, &["group", "describe", "billing"]).fails(66).to_string();
    assert!(err.starts_with("fjord: unknown_group: "), "{err}");
}

#[test]
fn topic_delete_needs_confirmation() {
    let (_dir, server) = start();
    fjord(&server, &["topic", "create", "doomed"]).ok();
    let err = fjord(&server, &["topic", "delete", "doomed"]).fails(64).to_string();
    assert!(err.contains("stdin is not a terminal") && err.contains("--yes"), "{err}");
    fjord(&server, &["topic", "describe", "doomed"]).ok();
    // A piped "y" is still not a terminal: refused too.
    fjord_in(&server, &["topic", "delete", "doomed"], Some("y\n")).fails(64);
    let r = fjord(&server, &["topic", "delete", "doomed", "--yes"]);
    assert!(r.ok().is_empty());
    assert!(r.stderr.contains("Deleted topic 'doomed'"), "{r:?}");
    fjord(&server, &["topic", "describe", "doomed"]).fails(66);
    let v = fjord(&server, &["topic", "list", "-o", "json"]).json();
    assert_eq!(v["topics"], json!([]));
}

#[test]
fn errors_and_exit_codes() {
    let (_dir, server) = start();
    let err = fjord(&server, &["topic", "describe", "nope"]).fails(66).to_string();
    assert!(err.starts_with("fjord: unknown_topic: "), "{err}");
    assert!(err.ends_with('\n') && err.lines().count() == 1, "{err}");
    fjord(&server, &["topic", "consume", "nope"]).fails(66);
    fjord_in(&server, &["topic", "produce", "nope"], Some("x\n")).fails(66);
    fjord(&server, &["topic", "delete", "nope", "--yes"]).fails(66);
    fjord(&server, &["msg", "get", "--topic", "nope", "--time", "-1h"]).fails(66);
    // Query by key on a topic without the key index: says how to enable it.
    fjord(&server, &["topic", "create", "plain"]).ok();
    let err = fjord(&server, &["msg", "get", "-t", "plain", "--key", "k1"]).fails(65).to_string();
    assert!(err.contains("fjord.key.index=true") && err.contains("fjord topic alter"), "{err}");
    // Usage errors: exit 64, nothing sent.
    fjord(&server, &["topic", "create"]).fails(64);
    fjord(&server, &["topic", "frobnicate"]).fails(64);
    fjord(&server, &["msg", "get", "--topic", "t"]).fails(64);
    fjord(&server, &["msg", "get", "--topic", "t", "--id", "a", "--key", "b"]).fails(64);
    fjord(&server, &["-o", "xml", "topic", "list"]).fails(64);
    fjord_env(&["--server", "ftp://x", "topic", "list"], None, &[]).fails(64);
    // Help is not an error.
    assert!(fjord_env(&["topic", "--help"], None, &[]).ok().contains("consume"));

    // Nobody listening: 69.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("http://127.0.0.1:{port}");
    let err = fjord_env(&["--server", &closed, "topic", "list"], None, &[]).fails(69).to_string();
    assert!(err.starts_with(&format!("fjord: cannot reach {closed}/api/v1/topics: ")), "{err}");
    fjord_env(&["--server", &closed, "--timeout", "2", "cluster", "info"], None, &[]).fails(69);
    // Something that is not the admin API: unknown route 404 → 66.
    let err = fjord_env(&["--server", &format!("{}/nothing-here", server.http), "topic", "list"], None, &[])
        .fails(66)
        .to_string();
    assert!(err.starts_with("fjord: "), "{err}");
}

#[test]
fn profiles_select_the_server() {
    let (dir, server) = start();
    fjord(&server, &["topic", "create", "via-profile"]).ok();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("config.toml");
    let write = |text: &str| std::fs::write(&config, text).unwrap();
    write(&format!(
        "default_profile = \"prod\"\n\n[profiles.prod]\nserver = \"{}\"\n\n[profiles.dead]\nserver = \"127.0.0.1:{port}\"\noutput = \"json\"\n",
        server.http
    ));
    let cfg = config.to_str().unwrap();
    let env = [("FJORD_CLI_CONFIG", cfg)];

    // default_profile.
    let table = fjord_env(&["topic", "list"], None, &env).ok().to_string();
    assert_eq!(row(&table, "via-profile")[0], "via-profile");
    // --profile (whose output is json), and --profile via FJORD_PROFILE.
    fjord_env(&["topic", "list", "--profile", "dead"], None, &env).fails(69);
    fjord_env(&["topic", "list"], None, &[("FJORD_CLI_CONFIG", cfg), ("FJORD_PROFILE", "dead")]).fails(69);
    // --server and FJORD_SERVER beat the profile; the profile's output format applies.
    let v = fjord_env(&["--server", &server.http, "--profile", "dead", "topic", "list"], None, &env).json();
    assert_eq!(v["topics"][0]["name"], "via-profile");
    let r = fjord_env(
        &["topic", "list", "--profile", "dead"],
        None,
        &[("FJORD_CLI_CONFIG", cfg), ("FJORD_SERVER", &server.http)],
    );
    assert_eq!(r.json()["topics"][0]["name"], "via-profile");
    // -o beats the profile's format.
    let table = fjord_env(&["--server", &server.http, "--profile", "dead", "-o", "table", "topic", "list"], None, &env);
    assert!(table.ok().starts_with("NAME"));

    // Unknown profile, broken file: 78.
    let err = fjord_env(&["topic", "list", "--profile", "staging"], None, &env).fails(78).to_string();
    assert!(err.contains("no profile 'staging'") && err.contains("dead, prod"), "{err}");
    write("default_profile = \"prod\"\n[profiles.prod]\nsever = \"x\"\n");
    fjord_env(&["topic", "list"], None, &env).fails(78);
    write("[profiles.prod\n");
    fjord_env(&["--server", &server.http, "topic", "list"], None, &env).fails(78);

    // Without FJORD_CLI_CONFIG: $XDG_CONFIG_HOME/fjord/config.toml.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("fjord")).unwrap();
    std::fs::write(
        xdg.join("fjord/config.toml"),
        format!("default_profile = \"x\"\n[profiles.x]\nserver = \"{}\"\n", server.http),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fjord"));
    let out = cmd
        .args(["topic", "list", "-o", "json"])
        .env_remove("FJORD_CLI_CONFIG")
        .env_remove("FJORD_SERVER")
        .env_remove("FJORD_PROFILE")
        .env("XDG_CONFIG_HOME", &xdg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["topics"][0]["name"], "via-profile");
}

#[test]
fn completions_cover_every_command() {
    let bash = fjord_env(&["completions", "bash"], None, &[]).ok().to_string();
    assert!(bash.contains("fjord"), "{bash}");
    for word in ["serve", "topic", "consume", "seek", "--dry-run", "--output"] {
        assert!(bash.contains(word), "{word} missing from the bash completions");
    }
    assert!(fjord_env(&["completions", "zsh"], None, &[]).ok().contains("#compdef fjord"));
    fjord_env(&["completions", "tcsh"], None, &[]).fails(64);
}

#[test]
fn cluster_info_and_health() {
    let (_dir, server) = start();
    let v = fjord(&server, &["cluster", "info", "-o", "json"]).json();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
    assert!(v["cluster_id"].is_string(), "{v}");
    let table = fjord(&server, &["cluster", "info"]).ok().to_string();
    assert!(table.starts_with("Cluster:"), "{table}");
    assert!(cells(&table).iter().any(|r| r.first().map(String::as_str) == Some("NODE")), "{table}");
    // Health: the report in any case; exit 69 when degraded (this test
    // machine's disk may be nearly full, which the broker reports).
    let r = fjord(&server, &["cluster", "health", "-o", "json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:#?}"));
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"] == "storage_writable" && c["ok"] == true), "{v}");
    if v["status"] == "ok" {
        assert_eq!(r.code, 0, "{r:#?}");
    } else {
        assert_eq!(v["status"], "degraded");
        assert!(r.fails(69).starts_with("fjord: degraded: "), "{r:#?}");
    }
    let table = fjord(&server, &["cluster", "health"]).stdout;
    assert!(table.starts_with(&format!("Status: {}\n", v["status"].as_str().unwrap())), "{table}");
    assert_eq!(row(&table, "storage_writable")[1], "ok", "{table}");
}

#[test]
fn msg_get_by_id_key_tag_time_and_offset() {
    let (_dir, server) = start();
    fjord(&server, &["topic", "create", "idx", "-p", "2", "-c", "fjord.key.index=true"]).ok();
    let v = fjord_in(
        &server,
        &["topic", "produce", "idx", "-k", ":", "--tag", "TagA", "-o", "json"],
        Some("order-1:one\norder-2:two\n"),
    )
    .json();
    let first = &v["results"][0];
    let id = first["message_id"].as_str().unwrap().to_string();

    let v = fjord(&server, &["msg", "get", "--topic", "idx", "--id", &id, "-o", "json"]).json();
    assert_eq!(values(&v), ["one"]);
    let table = fjord(&server, &["msg", "get", "-t", "idx", "--id", &id]).ok().to_string();
    assert!(table.contains(&format!("Message ID: {id}")) && table.contains("Value:      one"), "{table}");
    let err = fjord(&server, &["msg", "get", "-t", "idx", "--id", "NO-SUCH-ID"]).fails(66).to_string();
    assert!(err.starts_with("fjord: unknown_message: "), "{err}");

    let v = fjord(&server, &["msg", "get", "-t", "idx", "--key", "order-2", "-o", "json"]).json();
    assert_eq!(values(&v), ["two"]);
    let v = fjord(&server, &["msg", "get", "-t", "idx", "--tag", "TagA", "-o", "json"]).json();
    assert_eq!(values(&v).len(), 2);
    let v = fjord(&server, &["msg", "get", "-t", "idx", "--tag", "Other", "-o", "json"]).json();
    assert_eq!(values(&v).len(), 0);
    let v = fjord(&server, &["msg", "get", "-t", "idx", "--time", "-1h", "-o", "json"]).json();
    assert_eq!(values(&v).len(), 2);
    let table = fjord(&server, &["msg", "get", "-t", "idx", "--time", "-1h"]).ok().to_string();
    assert_eq!(cells(&table)[0], ["PARTITION", "OFFSET", "TIMESTAMP", "MESSAGE", "ID", "TAG", "KEY", "VALUE"]);

    let (p, o) = (first["partition"].to_string(), first["offset"].to_string());
    let v = fjord(&server, &["msg", "get", "-t", "idx", "-p", &p, "--offset", &o, "-o", "json"]).json();
    assert_eq!(v["value"], "one");
    assert_eq!(v["key"], "order-1");
    fjord(&server, &["msg", "get", "-t", "idx", "-p", &p, "--offset", "99"]).fails(65);
}

#[test]
fn dlq_and_delayed_messages() {
    let (_dir, server) = start();
    // A dead-letter queue as the messaging layer writes one: a `%DLQ%`
    // topic whose records carry an id and where they came from.
    fjord(&server, &["topic", "create", "work"]).ok();
    fjord(&server, &["topic", "create", "%DLQ%workers", "-c", "fjord.key.index=true"]).ok();
    let url = server.url("/api/v1/topics/%25DLQ%25workers/partitions/0/records");
    let dead: Vec<Value> = (1..=3)
        .map(|i| {
            json!({"value": format!("dead-{i}"), "headers": [
                ["fjord.id", format!("DEAD-{i}")], ["fjord.origin-topic", "work"], ["fjord.origin-partition", "0"]]})
        })
        .collect();
    let mut r = common::agent().post(&url).send_json(json!({ "records": dead })).unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.body_mut().read_to_string());

    let v = fjord(&server, &["dlq", "list", "-o", "json"]).json();
    assert_eq!(v["queues"], json!([{"group": "workers", "topic": "%DLQ%workers", "messages": 3}]));
    assert_eq!(row(fjord(&server, &["dlq", "list"]).ok(), "workers"), ["workers", "%DLQ%workers", "3"]);
    let v = fjord(&server, &["dlq", "browse", "workers", "-o", "json"]).json();
    assert_eq!(values(&v), ["dead-1", "dead-2", "dead-3"]);
    let table = fjord(&server, &["dlq", "browse", "workers", "--offset", "1", "-n", "1"]).ok().to_string();
    let dead2 = row(&table, "0");
    assert_eq!((dead2[1].as_str(), dead2[3].as_str(), dead2[5].as_str()), ("1", "DEAD-2", "dead-2"), "{table}");
    assert_eq!(cells(&table).len(), 2, "{table}");
    fjord(&server, &["dlq", "browse", "nobody"]).fails(66);

    fjord(&server, &["dlq", "resend", "workers", "DEAD-1"]).fails(64);
    let v = fjord(&server, &["dlq", "resend", "workers", "DEAD-1", "--yes", "-o", "json"]).json();
    assert_eq!(v["resent"][0]["message_id"], "DEAD-1");
    let v = fjord(&server, &["dlq", "resend", "workers", "--all", "--yes", "-o", "json"]).json();
    assert_eq!(v["resent"].as_array().unwrap().len(), 3);

    // Delayed messages are listed until delivered.
    fjord_in(&server, &["topic", "produce", "work", "--delay-ms", "3600000"], Some("later\n")).ok();
    let v = fjord(&server, &["delay", "list", "-o", "json"]).json();
    assert_eq!(v["pending"], 1, "{v}");
    assert_eq!(v["messages"][0]["message"]["value"], "later");
    let table = fjord(&server, &["delay", "list", "--topic", "work"]).ok().to_string();
    assert!(table.contains("later") && table.contains("1 pending."), "{table}");
}

/// `fjord serve` itself is unchanged: `Server::start` runs it, and it
/// still exits cleanly on SIGTERM.
#[test]
fn serve_still_runs() {
    let (_dir, server) = start();
    fjord(&server, &["cluster", "info"]).ok();
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn offline_topic_list_and_describe_read_a_stopped_brokers_data_dir() {
    let (dir, server) = start();
    fjord(&server, &["topic", "create", "ledger", "--partitions", "2"]).ok();
    fjord_in(&server, &["topic", "produce", "ledger", "--partition", "1"], Some("a\nb\nc\n")).ok();
    assert!(server.terminate().success());
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let before: Vec<_> = walk(&dir.path().join("data"));

    let table = fjord_env(&["topic", "list", "--data-dir", data], None, &[]);
    let r = row(table.ok(), "ledger");
    assert_eq!(r[1..4], ["normal", "2", "3"], "{r:?}");
    let d = fjord_env(&["topic", "describe", "ledger", "--data-dir", data, "-o", "json"], None, &[]).json();
    let p1 = &d["partitions"][1];
    assert_eq!((p1["log_start_offset"].as_u64(), p1["log_end_offset"].as_u64()), (Some(0), Some(3)), "{d}");
    assert_eq!(p1["clean_shutdown"], true, "{d}");
    assert_eq!(d["partitions"][0]["messages"], 0);
    let missing = fjord_env(&["topic", "describe", "nope", "--data-dir", data], None, &[]);
    assert!(missing.fails(66).contains("unknown_topic"));
    assert_eq!(walk(&dir.path().join("data")), before, "reading a data directory must not change it");
}

/// Every file under `dir` with its size and modification time.
fn walk(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}
