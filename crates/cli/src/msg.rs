//! `fjord msg get`: find messages by id, key, tag or time, or one by
//! partition and offset.

use clap::{ArgGroup, Args, Subcommand};
use serde_json::Value;

use crate::error::{CliError, Result};
use crate::output::{Col, arr, blocks, count, message_detail, messages, s};
use crate::time::time_arg;
use crate::{Ctx, Format, topic};

/// `fjord msg ...`
#[derive(Debug, Subcommand)]
pub enum MsgCommand {
    /// Find messages of a topic by --id, --key, --tag or --time, or one
    /// by --partition and --offset.
    Get(GetArgs),
}

/// `fjord msg get`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["id", "key", "tag", "time", "offset"])))]
pub struct GetArgs {
    /// Topic to search.
    #[arg(short, long)]
    topic: String,
    /// Message id (needs the topic's key index).
    #[arg(long, conflicts_with_all = ["key", "tag", "time", "offset"])]
    id: Option<String>,
    /// Message key or Kafka record key (needs the topic's key index).
    #[arg(long, conflicts_with_all = ["tag", "time", "offset"])]
    key: Option<String>,
    /// Tag: scans up to --max-scan messages per partition from --time
    /// (or the oldest).
    #[arg(long, conflicts_with = "offset")]
    tag: Option<String>,
    /// Messages stored at or after this time (RFC 3339, -1h, now).
    #[arg(long, value_name = "TIME", value_parser = time_arg, allow_hyphen_values = true, conflicts_with = "offset")]
    time: Option<i64>,
    /// With --time: stored up to this time [default: now].
    #[arg(long, value_name = "TIME", value_parser = time_arg, allow_hyphen_values = true, requires = "time")]
    end_time: Option<i64>,
    /// The message at this offset of --partition.
    #[arg(long, requires = "partition")]
    offset: Option<u64>,
    /// Partition of --offset.
    #[arg(short, long, requires = "offset")]
    partition: Option<u32>,
    /// Most messages returned.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,
    /// With --tag: most messages examined per partition [default: the server's, 10000].
    #[arg(long, value_name = "N", requires = "tag")]
    max_scan: Option<u64>,
}

pub(crate) fn run(ctx: &Ctx, cmd: MsgCommand) -> Result<()> {
    let MsgCommand::Get(a) = cmd;
    if let (Some(p), Some(o)) = (a.partition, a.offset) {
        let v = ctx.client.get(&format!("{}/partitions/{p}/messages/{o}", topic::path(&a.topic)), &[])?;
        return ctx.emit(&v, message_detail);
    }
    let mut query = vec![("limit", a.limit.to_string())];
    let mut add = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            query.push((k, v));
        }
    };
    add("id", a.id.clone());
    add("key", a.key.clone());
    add("tag", a.tag.clone());
    add("start_ms", a.time.map(|t| t.to_string()));
    add("end_ms", a.end_time.map(|t| t.to_string()));
    add("max_scan", a.max_scan.map(|n| n.to_string()));
    let v = ctx.client.get(&format!("{}/messages", topic::path(&a.topic)), &query)?;
    let found = arr(&v["messages"]);
    if let Some(id) = &a.id
        && found.is_empty()
    {
        return Err(CliError::Api {
            status: 404,
            code: "unknown_message".into(),
            message: format!("no message with id '{id}' in topic '{}'", a.topic),
        });
    }
    if a.id.is_some() {
        return ctx.emit(&v, |v| blocks(arr(&v["messages"]).iter().map(message_detail).collect()));
    }
    ctx.emit(&v, list_table)?;
    if ctx.format == Format::Table
        && let Some(n) = v["scanned"].as_u64()
    {
        eprintln!("Found {}, {n} examined.", count(found.len(), "message"));
    }
    Ok(())
}

/// Found messages; id, tag and business-key columns only when some
/// message has one.
fn list_table(v: &Value) -> String {
    let msgs = arr(&v["messages"]);
    let has = |field: &str| msgs.iter().any(|m| !matches!(&m[field], Value::Null) && s(&m[field]) != "-");
    let mut cols = vec![Col::Partition, Col::Offset, Col::Time];
    for (field, col) in [("message_id", Col::Id), ("tag", Col::Tag), ("keys", Col::Keys)] {
        if has(field) {
            cols.push(col);
        }
    }
    cols.extend([Col::Key, Col::Value]);
    messages(msgs, &cols)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn optional_columns() {
        let v = json!({"messages": [{"partition": 0, "offset": 1, "timestamp_ms": 0, "tag": "TagA", "keys": [],
            "message_id": null, "key": null, "value": "v", "value_encoding": "utf8"}]});
        let header: Vec<String> = list_table(&v)
            .lines()
            .next()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        assert_eq!(header, ["PARTITION", "OFFSET", "TIMESTAMP", "TAG", "KEY", "VALUE"]);
    }
}
