//! `fjord cluster info|health|nodes|decommission`.

use clap::Subcommand;
use serde_json::Value;

use crate::Ctx;
use crate::error::{CliError, Result};
use crate::output::{arr, blocks, byte_rate, bytes, duration, fields, rate, s, table, time};

/// `fjord cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, version, counts, and each node's traffic and disk.
    Info,
    /// Health checks (listeners, storage, disk); exits 69 when degraded.
    Health,
    /// Every node of the cluster: state, controller role, partitions led.
    Nodes,
    /// Empty a node before taking it away: every replica it holds moves to
    /// other serving nodes (see `fjord topic describe`), and it gets no new
    /// ones.
    Decommission {
        /// The node's id.
        id: i32,
    },
}

pub(crate) fn run(ctx: &Ctx, cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Info => {
            let v = ctx.client.get("/api/v1/cluster", &[])?;
            ctx.emit(&v, info_table)
        }
        ClusterCommand::Health => health(ctx),
        ClusterCommand::Nodes => {
            let v = ctx.client.get("/api/v1/cluster/nodes", &[])?;
            ctx.emit(&v, nodes_table)
        }
        ClusterCommand::Decommission { id } => {
            ctx.client.post(&format!("/api/v1/cluster/nodes/{id}/decommission"), &serde_json::json!({}))?;
            eprintln!("Node {id} is being decommissioned: its replicas move to the other nodes.");
            Ok(())
        }
    }
}

fn nodes_table(v: &Value) -> String {
    let rows = arr(v)
        .iter()
        .map(|n| {
            let role = match (n["controller"].as_bool(), n["controller_leader"].as_bool()) {
                (_, Some(true)) => "controller (leader)",
                (Some(true), _) => "controller",
                _ => "broker",
            };
            vec![
                s(&n["id"]),
                s(&n["state"]),
                role.to_string(),
                s(&n["partitions_led"]),
                s(&n["rack"]),
                s(&n["listeners"]["kafka"]),
            ]
        })
        .collect();
    table(&["node", "state", "role", "partitions led", "rack", "kafka"], rows)
}

fn info_table(v: &Value) -> String {
    let summary = fields(vec![
        ("Cluster", s(&v["cluster_id"])),
        ("Controller", s(&v["controller_id"])),
        ("Version", s(&v["version"])),
        ("Topics", s(&v["topics"])),
        ("Partitions", s(&v["partitions"])),
        ("Groups", s(&v["groups"])),
    ]);
    let nodes = arr(&v["nodes"])
        .iter()
        .map(|n| {
            vec![
                s(&n["id"]),
                s(&n["rack"]),
                s(&n["version"]),
                duration(&n["uptime_ms"]),
                rate(&n["put_tps"]),
                rate(&n["get_tps"]),
                byte_rate(&n["bytes_in_per_sec"]),
                byte_rate(&n["bytes_out_per_sec"]),
                s(&n["backlog"]),
                bytes(&n["disk"]["used_bytes"]),
                bytes(&n["disk"]["free_bytes"]),
            ]
        })
        .collect();
    let nodes = table(
        &["node", "rack", "version", "uptime", "put tps", "get tps", "in", "out", "backlog", "disk used", "disk free"],
        nodes,
    );
    let listeners = arr(&v["nodes"])
        .iter()
        .flat_map(|n| {
            n["listeners"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, addr)| vec![s(&n["id"]), name.clone(), s(addr)])
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    let listeners =
        if listeners.is_empty() { String::new() } else { table(&["node", "listener", "address"], listeners) };
    let started = arr(&v["nodes"])
        .iter()
        .map(|n| vec![s(&n["id"]), time(&n["started_ms"]), s(&n["records_in_total"]), s(&n["records_out_total"])])
        .collect();
    let totals = table(&["node", "started", "records in", "records out"], started);
    let down: Vec<Vec<String>> =
        arr(&v["unavailable_nodes"]).iter().map(|n| vec![s(&n["id"]), s(&n["state"]), s(&n["reason"])]).collect();
    let down = if down.is_empty() { String::new() } else { table(&["node", "state", "reason"], down) };
    blocks(vec![summary, nodes, down, totals, listeners])
}

fn health(ctx: &Ctx) -> Result<()> {
    const PATH: &str = "/api/v1/cluster/health";
    let (status, body) = ctx.client.get_raw(PATH, &[])?;
    // A degraded node may answer 503 with the report: show it all the same.
    let report = serde_json::from_slice::<Value>(&body).ok().filter(|v| v["checks"].is_array());
    let v = match report {
        Some(v) if status == 200 || status == 503 => v,
        _ => ctx.client.finish(PATH, status, &body)?,
    };
    ctx.emit(&v, |v| {
        let checks = arr(&v["checks"])
            .iter()
            .map(|c| {
                let ok = if c["ok"].as_bool() == Some(true) { "ok" } else { "FAILED" };
                vec![s(&c["name"]), ok.to_string(), s(&c["detail"])]
            })
            .collect();
        blocks(vec![fields(vec![("Status", s(&v["status"]))]), table(&["check", "result", "detail"], checks)])
    })?;
    if v["status"] == "ok" {
        Ok(())
    } else {
        let failed: Vec<String> =
            arr(&v["checks"]).iter().filter(|c| c["ok"].as_bool() != Some(true)).map(|c| s(&c["name"])).collect();
        Err(CliError::Api {
            status: 503,
            code: "degraded".into(),
            message: format!("{} reports {} (failed: {})", ctx.client.base(), s(&v["status"]), failed.join(", ")),
        })
    }
}
