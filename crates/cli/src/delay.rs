//! `fjord delay list`: delayed (scheduled) messages not yet delivered.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::Ctx;
use crate::error::Result;
use crate::output::{arr, blocks, payload, s, table, time};

/// `fjord delay ...`
#[derive(Debug, Subcommand)]
pub enum DelayCommand {
    /// Pending delayed messages, earliest delivery first.
    List(ListArgs),
}

/// `fjord delay list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only messages for this topic.
    #[arg(short, long)]
    topic: Option<String>,
    /// Most messages listed.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,
}

pub(crate) fn run(ctx: &Ctx, cmd: DelayCommand) -> Result<()> {
    let DelayCommand::List(a) = cmd;
    let mut query = vec![("limit", a.limit.to_string())];
    if let Some(t) = &a.topic {
        query.push(("topic", t.clone()));
    }
    let v = ctx.client.get("/api/v1/delayed", &query)?;
    ctx.emit(&v, list_table)
}

fn list_table(v: &Value) -> String {
    let items = arr(&v["messages"]);
    let rows = items
        .iter()
        .map(|d| {
            let m = &d["message"];
            vec![time(&d["deliver_at_ms"]), s(&m["topic"]), s(&m["message_id"]), s(&m["tag"]), payload(m, "value", 60)]
        })
        .collect();
    let pending = match v["pending"].as_u64() {
        Some(n) if n as usize > items.len() => format!("{n} pending ({} shown).", items.len()),
        Some(n) => format!("{n} pending."),
        None => String::new(),
    };
    blocks(vec![table(&["deliver at", "topic", "message id", "tag", "value"], rows), pending])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn delayed_table() {
        let v = json!({"pending": 3, "messages": [{"deliver_at_ms": 0, "message": {"topic": "t", "message_id": "M1",
            "tag": null, "value": "hi", "value_encoding": "utf8"}}]});
        let text = list_table(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["1970-01-01T00:00:00Z", "t", "M1", "-", "hi"]);
        assert_eq!(lines.last().copied(), Some("3 pending (1 shown)."));
    }
}
