//! `fjord topic create|list|describe|alter|delete|produce|consume`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};

use crate::client::seg;
use crate::error::{CliError, Result};
use crate::output::{Col, arr, blocks, bytes, count, fields, messages, s, table, time};
use crate::time::time_arg;
use crate::{Ctx, confirm, key_value, progress};

/// `fjord topic ...`
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics with partition and message counts and sizes.
    List(ListArgs),
    /// Partitions (offsets, sizes) and configuration of a topic.
    Describe(DescribeArgs),
    /// Add partitions, set or reset configuration overrides.
    Alter(AlterArgs),
    /// Delete a topic and all its messages (asks first unless --yes).
    Delete(DeleteArgs),
    /// Send messages, one per line, from a file or stdin (or --message).
    Produce(ProduceArgs),
    /// Print the messages of a partition (or of all partitions) from an
    /// offset or a time; reads what is stored and stops.
    Consume(ConsumeArgs),
    /// Move a partition to other nodes while it keeps serving (the new
    /// replicas copy the log; the old ones go once the new are in sync),
    /// or cancel a move in progress.
    Reassign(ReassignArgs),
}

/// `fjord topic reassign`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["replicas", "cancel"])))]
pub struct ReassignArgs {
    /// Topic name.
    topic: String,
    /// Partition index.
    #[arg(short, long)]
    partition: u32,
    /// Node ids of the new replicas, preferred leader first (e.g. 2,3).
    #[arg(short, long, value_delimiter = ',', num_args = 1..)]
    replicas: Vec<i32>,
    /// Cancel the move in progress (the replicas it added go).
    #[arg(long)]
    cancel: bool,
}

/// `fjord topic describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Topic name.
    topic: String,
    /// Read the topic from this data directory instead of asking a broker
    /// (for a stopped broker; nothing is written).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// `fjord topic create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name.
    topic: String,
    /// Number of partitions [default: the broker's default].
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: Option<u32>,
    /// Replicas per partition [default: the cluster's default; one on a
    /// single node].
    #[arg(short = 'r', long, value_parser = clap::value_parser!(u16).range(1..))]
    replication_factor: Option<u16>,
    /// Configuration override, e.g. retention.ms=86400000 (repeatable).
    #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,
}

/// `fjord topic list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include the broker's internal topics.
    #[arg(long)]
    internal: bool,
    /// Read topics from this data directory instead of asking a broker
    /// (for a stopped broker; nothing is written).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// `fjord topic alter`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args(["partitions", "config", "reset_config"])))]
pub struct AlterArgs {
    /// Topic name.
    topic: String,
    /// New total number of partitions (partitions can be added, not removed).
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: Option<u32>,
    /// Set a configuration override (repeatable).
    #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,
    /// Remove a configuration override, back to the broker default (repeatable).
    #[arg(long = "reset-config", value_name = "KEY")]
    reset_config: Vec<String>,
}

/// `fjord topic delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Topic name.
    topic: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    yes: bool,
}

/// `fjord topic produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to send to.
    topic: String,
    /// Read messages from this file, one per line ('-' for stdin) [default: stdin].
    #[arg(short, long, value_name = "PATH", conflicts_with = "messages")]
    file: Option<PathBuf>,
    /// A message to send instead of reading lines (repeatable).
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    messages: Vec<String>,
    /// Split each line at the first SEP into key and value (lines without it are an error).
    #[arg(short = 'k', long, value_name = "SEP", value_parser = non_empty)]
    key_separator: Option<String>,
    /// Send every message to this partition [default: by key hash, else round-robin].
    #[arg(short, long)]
    partition: Option<u32>,
    /// Tag of every message.
    #[arg(long)]
    tag: Option<String>,
    /// Property (header) of every message (repeatable).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// Deliver every message this many milliseconds after sending.
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,
    /// Messages per request.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch_size: u64,
}

/// `fjord topic consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Partition to read [default: every partition, one after the other].
    #[arg(short, long)]
    partition: Option<u32>,
    /// First offset [default: the oldest stored message].
    #[arg(long, conflicts_with = "time")]
    offset: Option<u64>,
    /// Start at the first message stored at or after this time (RFC 3339, -1h, now).
    #[arg(long, value_name = "TIME", value_parser = time_arg, allow_hyphen_values = true)]
    time: Option<i64>,
    /// Most messages to print, over all partitions.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
}

fn non_empty(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() { Err("must not be empty".into()) } else { Ok(s.to_string()) }
}

/// `/api/v1/topics/{topic}`.
pub(crate) fn path(topic: &str) -> String {
    format!("/api/v1/topics/{}", seg(topic))
}

pub(crate) fn run(ctx: &Ctx, cmd: TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create(a) => {
            let mut body = json!({ "name": a.topic });
            if let Some(p) = a.partitions {
                body["partitions"] = json!(p);
            }
            if let Some(r) = a.replication_factor {
                body["replication_factor"] = json!(r);
            }
            if !a.config.is_empty() {
                body["config"] = json!(a.config.into_iter().collect::<BTreeMap<_, _>>());
            }
            let v = ctx.client.post("/api/v1/topics", &body)?;
            ctx.emit(&v, detail_table)
        }
        TopicCommand::List(ListArgs { internal, data_dir: Some(dir) }) => {
            ctx.emit(&crate::offline::list(&dir, internal)?, list_table)
        }
        TopicCommand::Describe(DescribeArgs { topic, data_dir: Some(dir) }) => {
            ctx.emit(&crate::offline::describe(&dir, &topic)?, detail_table)
        }
        TopicCommand::List(a) => {
            let query = if a.internal { vec![("internal", "true".to_string())] } else { Vec::new() };
            let v = ctx.client.get("/api/v1/topics", &query)?;
            ctx.emit(&v, list_table)
        }
        TopicCommand::Describe(a) => {
            let v = ctx.client.get(&path(&a.topic), &[])?;
            ctx.emit(&v, detail_table)
        }
        TopicCommand::Alter(a) => {
            let mut body = json!({});
            if let Some(p) = a.partitions {
                body["partitions"] = json!(p);
            }
            if !a.config.is_empty() {
                body["config"] = json!(a.config.into_iter().collect::<BTreeMap<_, _>>());
            }
            if !a.reset_config.is_empty() {
                body["reset_config"] = json!(a.reset_config);
            }
            let v = ctx.client.patch(&path(&a.topic), &body)?;
            ctx.emit(&v, detail_table)
        }
        TopicCommand::Delete(a) => {
            confirm(
                a.yes,
                &format!("delete topic '{}'", a.topic),
                &format!("Delete topic '{}' and all its messages?", a.topic),
            )?;
            ctx.client.delete(&path(&a.topic))?;
            eprintln!("Deleted topic '{}'.", a.topic);
            Ok(())
        }
        TopicCommand::Produce(a) => produce(ctx, a),
        TopicCommand::Consume(a) => consume(ctx, &a),
        TopicCommand::Reassign(a) => {
            let at = format!("{}/partitions/{}/replicas", path(&a.topic), a.partition);
            let v = if a.cancel {
                ctx.client.delete(&at)?
            } else {
                ctx.client.put(&at, &json!({ "replicas": a.replicas }))?
            };
            ctx.emit(&v, detail_table)
        }
    }
}

fn list_table(v: &Value) -> String {
    let rows = arr(&v["topics"])
        .iter()
        .map(|t| {
            // Older servers list partitions as an array.
            let partitions = match &t["partitions"] {
                Value::Array(a) => a.len().to_string(),
                other => s(other),
            };
            vec![
                s(&t["name"]),
                s(&t["kind"]),
                partitions,
                s(&t["messages"]),
                bytes(&t["size_bytes"]),
                time(&t["last_append_ms"]),
            ]
        })
        .collect();
    table(&["name", "kind", "partitions", "messages", "size", "last append"], rows)
}

/// A `TopicDetail`: what it is, its configuration, one row per partition.
fn detail_table(v: &Value) -> String {
    let config = v["config"].as_object().filter(|c| !c.is_empty()).map_or_else(
        || "(broker defaults)".to_string(),
        |c| c.iter().map(|(k, v)| format!("{k}={}", s(v))).collect::<Vec<_>>().join("\n"),
    );
    let head = fields(vec![("Topic", s(&v["name"])), ("ID", s(&v["id"])), ("Kind", s(&v["kind"])), ("Config", config)]);
    let rows = arr(&v["partitions"])
        .iter()
        .map(|p| {
            vec![
                s(&p["partition"]),
                s(&p["log_start_offset"]),
                s(&p["log_end_offset"]),
                s(&p["high_watermark"]),
                s(&p["messages"]),
                bytes(&p["size_bytes"]),
                s(&p["segments"]),
                time(&p["last_append_ms"]),
                s(&p["leader"]),
                s(&p["replicas"]),
                s(&p["isr"]),
                moving(p),
            ]
        })
        .collect();
    let parts = table(
        &[
            "partition",
            "log start",
            "log end",
            "high watermark",
            "messages",
            "size",
            "segments",
            "last append",
            "leader",
            "replicas",
            "isr",
            "moving",
        ],
        rows,
    );
    blocks(vec![head, parts])
}

/// A reassignment in progress: `+added -removed`, or `-`.
fn moving(p: &Value) -> String {
    let (add, rm) = (arr(&p["adding"]), arr(&p["removing"]));
    if add.is_empty() && rm.is_empty() {
        return "-".into();
    }
    let ids = |v: &[Value], sign: char| v.iter().map(|x| format!("{sign}{}", s(x))).collect::<Vec<_>>().join(" ");
    format!("{} {}", ids(add, '+'), ids(rm, '-')).trim().to_string()
}

/// The lines to send: non-empty lines of the file or stdin (a trailing
/// `\r` dropped), or the `--message` values.
fn input_lines(a: &ProduceArgs) -> Result<Vec<String>> {
    if !a.messages.is_empty() {
        return Ok(a.messages.clone());
    }
    let (name, mut raw) = (a.file.as_ref().map_or("stdin".to_string(), |p| p.display().to_string()), Vec::new());
    let read = match &a.file {
        Some(p) if p.as_os_str() != "-" => std::fs::File::open(p).and_then(|mut f| f.read_to_end(&mut raw)),
        _ => {
            if std::io::stdin().is_terminal() {
                eprintln!("Reading messages from stdin, one per line; end with Ctrl-D.");
            }
            std::io::stdin().lock().read_to_end(&mut raw)
        }
    };
    read.map_err(|e| CliError::Input { path: name.clone(), source: e })?;
    split_lines(&raw).map_err(|n| CliError::Data(format!("{name}: line {n} is not valid UTF-8")))
}

/// Non-empty lines; `Err(line number)` for one that is not UTF-8.
fn split_lines(raw: &[u8]) -> std::result::Result<Vec<String>, usize> {
    let mut out = Vec::new();
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        out.push(String::from_utf8(line.to_vec()).map_err(|_| i + 1)?);
    }
    Ok(out)
}

/// The API message for each line.
fn build_messages(lines: Vec<String>, a: &ProduceArgs) -> Result<Vec<Value>> {
    let headers: BTreeMap<&str, &str> = a.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let mut m = match &a.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => json!({ "key": k, "value": v }),
                    None => {
                        return Err(CliError::Data(format!(
                            "message {} has no key separator '{sep}': {}",
                            i + 1,
                            crate::output::clip(&line, 60)
                        )));
                    }
                },
                None => json!({ "value": line }),
            };
            if let Some(p) = a.partition {
                m["partition"] = json!(p);
            }
            if let Some(t) = &a.tag {
                m["tag"] = json!(t);
            }
            if !headers.is_empty() {
                m["headers"] = json!(headers);
            }
            if let Some(d) = a.delay_ms {
                m["delay_ms"] = json!(d);
            }
            Ok(m)
        })
        .collect()
}

fn produce(ctx: &Ctx, a: ProduceArgs) -> Result<()> {
    // Everything is read and checked before anything is sent.
    let msgs = build_messages(input_lines(&a)?, &a)?;
    let total = msgs.len();
    if total == 0 {
        eprintln!("No messages to send.");
    }
    let url = format!("{}/messages", path(&a.topic));
    let bar = progress(total as u64, "Sending");
    let mut results: Vec<Value> = Vec::with_capacity(total);
    for chunk in msgs.chunks(usize::try_from(a.batch_size).unwrap_or(500)) {
        let sent = ctx.client.post(&url, &json!({ "messages": chunk })).and_then(|v| match v["results"].as_array() {
            Some(r) if r.len() == chunk.len() => Ok(r.clone()),
            _ => Err(CliError::BadResponse {
                url: format!("{}{url}", ctx.client.base()),
                reason: format!("expected {} results", chunk.len()),
            }),
        });
        match sent {
            Ok(r) => results.extend(r),
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.with_note(&format!("{} of {total} messages were sent before this", results.len())));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let out = json!({ "results": results });
    ctx.emit(&out, |v| produce_summary(&a.topic, v))
}

/// Per partition: how many messages went there and their offsets.
fn produce_summary(topic: &str, v: &Value) -> String {
    let results = arr(&v["results"]);
    let mut per: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    let mut delayed = 0;
    for r in results {
        match (r["partition"].as_u64(), r["offset"].as_u64()) {
            (Some(p), Some(o)) => {
                let e = per.entry(p).or_insert((0, o, o));
                *e = (e.0 + 1, e.1.min(o), e.2.max(o));
            }
            _ => delayed += 1,
        }
    }
    let mut head = format!("Sent {} to '{topic}'", count(results.len(), "message"));
    if delayed > 0 {
        head.push_str(&format!(" ({delayed} delayed)"));
    }
    head.push('.');
    let rows =
        per.into_iter().map(|(p, (n, lo, hi))| vec![p.to_string(), n.to_string(), lo.to_string(), hi.to_string()]);
    let t = if results.len() > delayed {
        table(&["partition", "messages", "first offset", "last offset"], rows.collect())
    } else {
        String::new()
    };
    blocks(vec![head, t])
}

/// Where to start reading one partition.
#[derive(Debug, Clone, Copy)]
enum Start {
    Oldest,
    Offset(u64),
    Time(i64),
}

/// Largest page asked for at once.
const PAGE: u64 = 1000;

fn consume(ctx: &Ctx, a: &ConsumeArgs) -> Result<()> {
    let start = match (a.offset, a.time) {
        (Some(o), _) => Start::Offset(o),
        (None, Some(t)) => Start::Time(t),
        (None, None) => Start::Oldest,
    };
    // (partition, start) for each partition to read, in order.
    let plan: Vec<(u64, Option<Start>, Option<u64>)> = match a.partition {
        Some(p) => vec![(u64::from(p), Some(start), None)],
        None => {
            let detail = ctx.client.get(&path(&a.topic), &[])?;
            arr(&detail["partitions"])
                .iter()
                .filter_map(|p| {
                    let (id, lo, hw) =
                        (p["partition"].as_u64()?, p["log_start_offset"].as_u64(), p["high_watermark"].as_u64());
                    // The same offset in every partition: clamp it into each
                    // one's stored range rather than fail on the short ones.
                    let s = match (start, lo, hw) {
                        (Start::Offset(o), _, Some(hw)) if o >= hw => None,
                        (Start::Offset(o), Some(lo), _) => Some(Start::Offset(o.max(lo))),
                        (s, _, _) => Some(s),
                    };
                    Some((id, s, hw))
                })
                .collect()
        }
    };
    let mut remaining = a.limit;
    let (mut all, mut positions) = (Vec::new(), Vec::new());
    for (p, first, hw) in plan {
        let Some(first) = first else {
            positions.push(json!({ "partition": p, "next_offset": a.offset, "high_watermark": hw }));
            continue;
        };
        if remaining == 0 {
            break;
        }
        let url = format!("{}/partitions/{p}/messages", path(&a.topic));
        let mut pos = first;
        let (mut next, mut high) = (None, hw);
        loop {
            let mut query = vec![("limit", remaining.min(PAGE).to_string())];
            match pos {
                Start::Oldest => {}
                Start::Offset(o) => query.push(("offset", o.to_string())),
                Start::Time(t) => query.push(("start_ms", t.to_string())),
            }
            let v = ctx.client.get(&url, &query)?;
            let page = arr(&v["messages"]);
            remaining = remaining.saturating_sub(page.len() as u64);
            all.extend(page.iter().cloned());
            let last = page.last().and_then(|m| m["offset"].as_u64()).map(|o| o + 1);
            next = v["next_offset"].as_u64().or(last).or(next);
            high = v["high_watermark"].as_u64().or(high);
            let advanced = match (pos, next) {
                (Start::Offset(o), Some(n)) => n > o,
                (_, Some(_)) => true,
                (_, None) => false,
            };
            let at_end = matches!((next, high), (Some(n), Some(h)) if n >= h);
            if page.is_empty() || remaining == 0 || at_end || !advanced {
                break;
            }
            pos = Start::Offset(next.unwrap_or_default());
        }
        positions.push(json!({ "partition": p, "next_offset": next, "high_watermark": high }));
    }
    let out = json!({ "messages": all, "partitions": positions });
    ctx.emit(&out, |v| messages(arr(&v["messages"]), &[Col::Partition, Col::Offset, Col::Time, Col::Key, Col::Value]))?;
    if remaining == 0 && ctx.format == crate::Format::Table {
        let more: Vec<String> = arr(&out["partitions"])
            .iter()
            .filter(
                |p| matches!((p["next_offset"].as_u64(), p["high_watermark"].as_u64()), (Some(n), Some(h)) if n < h),
            )
            .map(|p| format!("partition {} from offset {}", s(&p["partition"]), s(&p["next_offset"])))
            .collect();
        if !more.is_empty() {
            eprintln!("Stopped at --limit {}; more to read: {}.", a.limit, more.join(", "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_checked() {
        assert_eq!(split_lines(b"a\r\nb\n\nc"), Ok(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(split_lines(b"a\n\xff\n"), Err(2));
        assert_eq!(split_lines(b""), Ok(vec![]));
    }

    fn args(sep: Option<&str>) -> ProduceArgs {
        ProduceArgs {
            topic: "t".into(),
            file: None,
            messages: vec![],
            key_separator: sep.map(str::to_string),
            partition: Some(2),
            tag: None,
            headers: vec![("h".into(), "v".into())],
            delay_ms: None,
            batch_size: 500,
        }
    }

    #[test]
    fn messages_from_lines() {
        let m = build_messages(vec!["k1:v:1".into()], &args(Some(":"))).ok();
        assert_eq!(m, Some(vec![json!({"key": "k1", "value": "v:1", "partition": 2, "headers": {"h": "v"}})]));
        let e = build_messages(vec!["ok:1".into(), "nokey".into()], &args(Some(":"))).err();
        assert_eq!(
            e.map(|e| (e.exit_code(), e.to_string())),
            Some((65, "message 2 has no key separator ':': nokey".into()))
        );
        let m = build_messages(vec!["a:b".into()], &args(None)).ok();
        assert_eq!(m.map(|m| m[0]["value"].clone()), Some(json!("a:b")));
    }

    #[test]
    fn produce_summary_per_partition() {
        let v = json!({"results": [
            {"partition": 0, "offset": 4}, {"partition": 1, "offset": 0}, {"partition": 0, "offset": 5},
            {"partition": null, "offset": null, "deliver_at_ms": 1}]});
        let text = produce_summary("t", &v);
        assert!(text.starts_with("Sent 4 messages to 't' (1 delayed).\n\n"), "{text}");
        let rows: Vec<Vec<&str>> = text.lines().skip(3).map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows, [["0", "2", "4", "5"], ["1", "1", "0", "0"]], "{text}");
    }
}
