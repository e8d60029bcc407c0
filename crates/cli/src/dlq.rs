//! `fjord dlq list|browse|resend`: dead-letter queues.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::seg;
use crate::error::Result;
use crate::output::{Col, arr, blocks, count, messages, s, table};
use crate::{Ctx, Format, confirm, ensure_can_confirm, progress};

/// `fjord dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead-letter queues (one per consumer group) with message counts.
    List,
    /// Dead letters of a group, oldest first.
    Browse(BrowseArgs),
    /// Send dead letters back to the group's retry topic (asks first unless --yes).
    Resend(ResendArgs),
}

/// `fjord dlq browse`.
#[derive(Debug, Args)]
pub struct BrowseArgs {
    /// Consumer group.
    group: String,
    /// First offset [default: the oldest].
    #[arg(long)]
    offset: Option<u64>,
    /// Most messages.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit: u64,
}

/// `fjord dlq resend`.
#[derive(Debug, Args)]
pub struct ResendArgs {
    /// Consumer group.
    group: String,
    /// Message ids to resend.
    #[arg(value_name = "MESSAGE_ID", required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,
    /// Resend every dead letter of the group.
    #[arg(long)]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    yes: bool,
}

fn path(group: &str) -> String {
    format!("/api/v1/dlq/{}", seg(group))
}

/// Dead letters read per request by `resend --all`.
const PAGE: u64 = 1000;
/// Ids resent per request.
const RESEND_CHUNK: usize = 500;

pub(crate) fn run(ctx: &Ctx, cmd: DlqCommand) -> Result<()> {
    match cmd {
        DlqCommand::List => {
            let v = ctx.client.get("/api/v1/dlq", &[])?;
            ctx.emit(&v, |v| {
                let rows =
                    arr(&v["queues"]).iter().map(|q| vec![s(&q["group"]), s(&q["topic"]), s(&q["messages"])]).collect();
                table(&["group", "topic", "messages"], rows)
            })
        }
        DlqCommand::Browse(a) => {
            let mut query = vec![("limit", a.limit.to_string())];
            if let Some(o) = a.offset {
                query.push(("offset", o.to_string()));
            }
            let v = ctx.client.get(&format!("{}/messages", path(&a.group)), &query)?;
            ctx.emit(&v, |v| {
                messages(arr(&v["messages"]), &[Col::Partition, Col::Offset, Col::Time, Col::Id, Col::Tag, Col::Value])
            })?;
            let n = arr(&v["messages"]).len() as u64;
            if ctx.format == Format::Table && n == a.limit && !v["next_offset"].is_null() {
                eprintln!("More may follow: --offset {}.", s(&v["next_offset"]));
            }
            Ok(())
        }
        DlqCommand::Resend(a) => resend(ctx, a),
    }
}

/// Every message id in the group's dead-letter queue.
fn all_ids(ctx: &Ctx, group: &str) -> Result<Vec<String>> {
    let url = format!("{}/messages", path(group));
    let (mut ids, mut offset) = (Vec::new(), None::<u64>);
    loop {
        let mut query = vec![("limit", PAGE.to_string())];
        if let Some(o) = offset {
            query.push(("offset", o.to_string()));
        }
        let v = ctx.client.get(&url, &query)?;
        let page = arr(&v["messages"]);
        for m in page {
            if let Some(id) = m["message_id"].as_str()
                && !ids.iter().any(|x| x == id)
            {
                ids.push(id.to_string());
            }
        }
        let next = v["next_offset"].as_u64().or_else(|| page.last().and_then(|m| m["offset"].as_u64()).map(|o| o + 1));
        match next {
            Some(n) if !page.is_empty() && offset.is_none_or(|o| n > o) => offset = Some(n),
            _ => return Ok(ids),
        }
    }
}

fn resend(ctx: &Ctx, a: ResendArgs) -> Result<()> {
    let action = format!("resend dead letters of group '{}'", a.group);
    ensure_can_confirm(a.yes, &action)?;
    let ids = if a.all { all_ids(ctx, &a.group)? } else { a.ids };
    if ids.is_empty() {
        eprintln!("No dead letters to resend.");
        return ctx.emit(&json!({ "resent": [] }), resent_table);
    }
    confirm(a.yes, &action, &format!("Resend {} dead letters of group '{}' to its retry topic?", ids.len(), a.group))?;
    let url = format!("{}/resend", path(&a.group));
    let bar = progress(ids.len() as u64, "Resending");
    let mut resent: Vec<Value> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(RESEND_CHUNK) {
        match ctx.client.post(&url, &json!({ "ids": chunk })) {
            Ok(v) => resent.extend(arr(&v["resent"]).iter().cloned()),
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.with_note(&format!("{} of {} were resent before this", resent.len(), ids.len())));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    ctx.emit(&json!({ "resent": resent }), resent_table)
}

fn resent_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = arr(&v["resent"])
        .iter()
        .map(|r| vec![s(&r["message_id"]), s(&r["topic"]), s(&r["partition"]), s(&r["offset"])])
        .collect();
    let n = rows.len();
    blocks(vec![
        format!("Resent {}.", count(n, "message")),
        table(&["message id", "topic", "partition", "offset"], rows),
    ])
}
