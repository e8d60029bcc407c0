//! `fjord group list|describe|seek|delete`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::seg;
use crate::error::Result;
use crate::output::{arr, blocks, count, duration, fields, s, table, time};
use crate::time::{now_ms, parse_time};
use crate::{Ctx, confirm, ensure_can_confirm, progress};

/// `fjord group ...`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Consumer groups with their state, members and total lag.
    List,
    /// Members, assignments and committed offsets with lag of a group.
    Describe(GroupArg),
    /// Reset a group's committed offsets (shows the plan and asks first
    /// unless --yes; the group must have no live members).
    Seek(SeekArgs),
    /// Delete a group's membership state and committed offsets (asks first unless --yes).
    Delete(DeleteArgs),
}

/// A group name.
#[derive(Debug, Args)]
pub struct GroupArg {
    /// Group name.
    group: String,
}

/// `fjord group seek`.
#[derive(Debug, Args)]
pub struct SeekArgs {
    /// Group name.
    group: String,
    /// Where to: earliest, latest, an offset (digits), or a time (RFC 3339,
    /// -1h style relative, now) for the first message at or after it.
    #[arg(long, value_name = "TARGET", value_parser = seek_target_arg, allow_hyphen_values = true)]
    to: SeekTarget,
    /// Only this topic [default: every topic the group has offsets for].
    #[arg(short, long)]
    topic: Option<String>,
    /// Only these partitions of --topic (repeatable or comma-separated).
    #[arg(short, long, requires = "topic", value_delimiter = ',')]
    partition: Vec<u32>,
    /// Show what would change without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    yes: bool,
}

/// `fjord group delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Group name.
    group: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    yes: bool,
}

/// Where `group seek --to` moves offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeekTarget {
    /// The oldest stored message.
    Earliest,
    /// The end of each partition (skip everything).
    Latest,
    /// This offset in every selected partition.
    Offset(u64),
    /// The first message at or after this time (ms since the epoch).
    Timestamp(i64),
}

impl SeekTarget {
    /// `earliest`, `latest`, digits (an offset), or a time (`parse_time`).
    pub(crate) fn parse(s: &str, now_ms: i64) -> std::result::Result<SeekTarget, String> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "earliest" | "beginning" => return Ok(SeekTarget::Earliest),
            "latest" | "end" => return Ok(SeekTarget::Latest),
            _ => {}
        }
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse().map(SeekTarget::Offset).map_err(|e| format!("invalid offset '{t}': {e}"));
        }
        parse_time(t, now_ms)
            .map(SeekTarget::Timestamp)
            .map_err(|e| format!("{e}; --to also takes earliest, latest or an offset"))
    }

    /// The `to` of the reset request body.
    pub(crate) fn to_json(self) -> Value {
        match self {
            SeekTarget::Earliest => json!("earliest"),
            SeekTarget::Latest => json!("latest"),
            SeekTarget::Offset(o) => json!({ "offset": o }),
            SeekTarget::Timestamp(t) => json!({ "timestamp_ms": t }),
        }
    }
}

fn seek_target_arg(s: &str) -> std::result::Result<SeekTarget, String> {
    SeekTarget::parse(s, now_ms())
}

fn path(group: &str) -> String {
    format!("/api/v1/groups/{}", seg(group))
}

pub(crate) fn run(ctx: &Ctx, cmd: GroupCommand) -> Result<()> {
    match cmd {
        GroupCommand::List => {
            let v = ctx.client.get("/api/v1/groups", &[])?;
            ctx.emit(&v, |v| {
                let rows = arr(&v["groups"])
                    .iter()
                    .map(|g| {
                        vec![s(&g["name"]), s(&g["protocol"]), s(&g["state"]), members(&g["members"]), s(&g["lag"])]
                    })
                    .collect();
                table(&["name", "protocol", "state", "members", "lag"], rows)
            })
        }
        GroupCommand::Describe(a) => {
            let v = ctx.client.get(&path(&a.group), &[])?;
            ctx.emit(&v, describe_table)
        }
        GroupCommand::Seek(a) => seek(ctx, &a),
        GroupCommand::Delete(a) => {
            confirm(
                a.yes,
                &format!("delete group '{}'", a.group),
                &format!("Delete group '{}' and its committed offsets?", a.group),
            )?;
            ctx.client.delete(&path(&a.group))?;
            eprintln!("Deleted group '{}'.", a.group);
            Ok(())
        }
    }
}

/// A member count, whether the API gives a number or the members.
fn members(v: &Value) -> String {
    match v {
        Value::Array(a) => a.len().to_string(),
        other => s(other),
    }
}

fn describe_table(v: &Value) -> String {
    let protocol = match (v["protocol"].as_str(), v["protocol_type"].as_str()) {
        (Some(p), Some(t)) if !t.is_empty() && p != t => format!("{p} ({t})"),
        _ => s(&v["protocol"]),
    };
    let head = fields(vec![
        ("Group", s(&v["name"])),
        ("State", s(&v["state"])),
        ("Protocol", protocol),
        ("Members", members(&v["members"])),
        ("Lag", s(&v["lag"])),
    ]);
    let member_rows: Vec<Vec<String>> = arr(&v["members"])
        .iter()
        .map(|m| {
            let assignment = arr(&m["assignment"])
                .iter()
                .map(|a| format!("{}: {}", s(&a["topic"]), s(&a["partitions"])))
                .collect::<Vec<_>>()
                .join("; ");
            vec![s(&m["member_id"]), s(&m["client_id"]), s(&m["client_host"]), assignment]
        })
        .collect();
    let members = if member_rows.is_empty() {
        String::new()
    } else {
        table(&["member", "client id", "host", "assignment"], member_rows)
    };
    let offsets = arr(&v["offsets"])
        .iter()
        .map(|o| {
            vec![
                s(&o["topic"]),
                s(&o["partition"]),
                s(&o["committed_offset"]),
                s(&o["log_end_offset"]),
                s(&o["lag"]),
                duration(&o["lag_seconds"].as_f64().map_or(Value::Null, |x| json!((x * 1000.0) as u64))),
                time(&o["commit_timestamp_ms"]),
            ]
        })
        .collect();
    let offsets = table(&["topic", "partition", "committed", "log end", "lag", "lag time", "committed at"], offsets);
    blocks(vec![head, members, offsets])
}

/// The `changes` of a reset response as a table.
fn changes_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = arr(&v["changes"])
        .iter()
        .map(|c| {
            let delta = match (c["current_offset"].as_i64(), c["new_offset"].as_i64()) {
                (Some(a), Some(b)) => format!("{:+}", b - a),
                _ => "-".into(),
            };
            vec![s(&c["topic"]), s(&c["partition"]), s(&c["current_offset"]), s(&c["new_offset"]), delta]
        })
        .collect();
    if rows.is_empty() {
        return "No committed offsets to change.".into();
    }
    let dry = if v["dry_run"] == true { " (dry run: nothing changed)" } else { "" };
    blocks(vec![
        format!("Group '{}': {}{dry}.", s(&v["group"]), count(rows.len(), "partition offset")),
        table(&["topic", "partition", "current", "new", "change"], rows),
    ])
}

/// Partitions reset per request when applying a plan.
const SEEK_CHUNK: usize = 100;

fn seek(ctx: &Ctx, a: &SeekArgs) -> Result<()> {
    let action = format!("reset the offsets of group '{}'", a.group);
    if !a.dry_run {
        ensure_can_confirm(a.yes, &action)?;
    }
    let url = format!("{}/offsets", path(&a.group));
    let mut body = json!({ "to": a.to.to_json(), "dry_run": true });
    if let Some(t) = &a.topic {
        body["topic"] = json!(t);
    }
    if !a.partition.is_empty() {
        body["partitions"] = json!(a.partition);
    }
    let plan = ctx.client.post(&url, &body)?;
    if a.dry_run {
        return ctx.emit(&plan, changes_table);
    }
    // (topic, partition) of every change, in the plan's order.
    let targets: Vec<(String, u64)> = arr(&plan["changes"])
        .iter()
        .filter_map(|c| Some((c["topic"].as_str()?.to_string(), c["partition"].as_u64()?)))
        .collect();
    if targets.is_empty() {
        let none = json!({ "group": a.group, "dry_run": false, "changes": [] });
        return ctx.emit(&none, changes_table);
    }
    if !a.yes {
        eprintln!("{}", changes_table(&plan));
        confirm(
            a.yes,
            &action,
            &format!("Reset {} of group '{}'?", count(targets.len(), "partition offset"), a.group),
        )?;
    }
    // Applied per topic, in chunks of partitions, so a large reset shows progress.
    let mut batches: Vec<(String, Vec<u64>)> = Vec::new();
    for (topic, p) in targets {
        match batches.last_mut() {
            Some((t, ps)) if *t == topic && ps.len() < SEEK_CHUNK => ps.push(p),
            _ => batches.push((topic, vec![p])),
        }
    }
    let total: usize = batches.iter().map(|(_, ps)| ps.len()).sum();
    let bar = progress(total as u64, "Resetting");
    let mut changes = Vec::with_capacity(total);
    for (topic, ps) in batches {
        let body = json!({ "to": a.to.to_json(), "topic": topic, "partitions": ps, "dry_run": false });
        match ctx.client.post(&url, &body) {
            Ok(v) => changes.extend(arr(&v["changes"]).iter().cloned()),
            Err(e) => {
                bar.finish_and_clear();
                let done = changes.len();
                return Err(e.with_note(&format!("{done} of {total} partition offsets were reset before this")));
            }
        }
        bar.inc(ps.len() as u64);
    }
    bar.finish_and_clear();
    let out = json!({ "group": a.group, "dry_run": false, "changes": changes });
    ctx.emit(&out, changes_table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

    #[test]
    fn seek_targets() {
        assert_eq!(SeekTarget::parse("earliest", NOW), Ok(SeekTarget::Earliest));
        assert_eq!(SeekTarget::parse("LATEST", NOW), Ok(SeekTarget::Latest));
        assert_eq!(SeekTarget::parse("0", NOW), Ok(SeekTarget::Offset(0)));
        assert_eq!(SeekTarget::parse("12345", NOW), Ok(SeekTarget::Offset(12_345)));
        assert_eq!(SeekTarget::parse("-1h", NOW), Ok(SeekTarget::Timestamp(NOW - 3_600_000)));
        assert_eq!(SeekTarget::parse("-15m", NOW), Ok(SeekTarget::Timestamp(NOW - 900_000)));
        assert_eq!(SeekTarget::parse("2024-05-01T12:00:00Z", 0), Ok(SeekTarget::Timestamp(NOW)));
        assert_eq!(SeekTarget::parse("2024-05-01T14:00:00+02:00", 0), Ok(SeekTarget::Timestamp(NOW)));
        assert_eq!(SeekTarget::parse("now", NOW), Ok(SeekTarget::Timestamp(NOW)));
        for bad in ["", "soon", "-5", "99999999999999999999999", "12ab", "2024-05-01T12:00:00"] {
            assert!(SeekTarget::parse(bad, NOW).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn seek_targets_as_json() {
        assert_eq!(SeekTarget::Earliest.to_json(), json!("earliest"));
        assert_eq!(SeekTarget::Latest.to_json(), json!("latest"));
        assert_eq!(SeekTarget::Offset(7).to_json(), json!({"offset": 7}));
        assert_eq!(SeekTarget::Timestamp(NOW).to_json(), json!({"timestamp_ms": NOW}));
    }

    #[test]
    fn change_tables() {
        let v = json!({"group": "g", "dry_run": true, "changes": [
            {"topic": "t", "partition": 0, "current_offset": 10, "new_offset": 3}]});
        let t = changes_table(&v);
        assert!(t.starts_with("Group 'g': 1 partition offset (dry run: nothing changed).\n\nTOPIC"), "{t}");
        assert_eq!(
            t.lines().last().map(|l| l.split_whitespace().collect::<Vec<_>>()),
            Some(vec!["t", "0", "10", "3", "-7"])
        );
        assert_eq!(changes_table(&json!({"changes": []})), "No committed offsets to change.");
    }
}
