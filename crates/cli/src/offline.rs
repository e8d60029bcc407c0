//! `--data-dir`: topics read straight from a data directory, for a broker
//! that is stopped (or unreachable). Nothing is opened for writing and no
//! recovery runs (`fjord_log::inspect`), so this is also safe beside a
//! running broker, whose files it then shows as of that moment. The output
//! has the admin API's shapes, so `-o json` scripts work either way.

use std::path::Path;

use fjord_broker::{StoredTopic, stored_topics};
use fjord_messaging::retry::{DLQ_PREFIX, RETRY_PREFIX};
use serde_json::{Value, json};

use crate::error::{CliError, Result};

fn kind(t: &StoredTopic) -> &'static str {
    let name = &t.record.name;
    if t.record.internal {
        "internal"
    } else if name.starts_with(RETRY_PREFIX) {
        "retry"
    } else if name.starts_with(DLQ_PREFIX) {
        "dlq"
    } else {
        "normal"
    }
}

fn read(dir: &Path) -> Result<Vec<StoredTopic>> {
    stored_topics(dir).map_err(|e| CliError::Offline(format!("{}: {e}", dir.display())))
}

/// A `TopicDetail` from the files.
fn detail(t: &StoredTopic) -> Result<Value> {
    let mut partitions = Vec::with_capacity(t.partition_dirs.len());
    for (i, dir) in t.partition_dirs.iter().enumerate() {
        let s = fjord_log::inspect(dir).map_err(|e| CliError::Offline(format!("{}: {e}", dir.display())))?;
        partitions.push(json!({
            "partition": i,
            "log_start_offset": s.log_start_offset,
            "log_end_offset": s.log_end_offset,
            // Offline, everything on disk counts as written.
            "high_watermark": s.log_end_offset,
            "messages": s.log_end_offset - s.log_start_offset,
            "size_bytes": s.size_bytes,
            "segments": s.segments,
            "last_append_ms": s.last_batch_max_timestamp,
            "clean_shutdown": s.clean_shutdown,
        }));
    }
    Ok(json!({
        "name": t.record.name,
        "id": t.record.id.to_string(),
        "kind": kind(t),
        "partitions": partitions,
        "config": t.record.config.0,
    }))
}

/// `{topics: [TopicSummary]}` of the data directory.
pub(crate) fn list(dir: &Path, internal: bool) -> Result<Value> {
    let mut topics = Vec::new();
    for t in read(dir)?.iter().filter(|t| internal || !t.record.internal) {
        let d = detail(t)?;
        let parts = d["partitions"].as_array().cloned().unwrap_or_default();
        let sum = |k: &str| parts.iter().filter_map(|p| p[k].as_u64()).sum::<u64>();
        topics.push(json!({
            "name": d["name"],
            "kind": d["kind"],
            "partitions": parts.len(),
            "messages": sum("messages"),
            "size_bytes": sum("size_bytes"),
            "last_append_ms": parts.iter().filter_map(|p| p["last_append_ms"].as_i64()).max(),
        }));
    }
    Ok(json!({ "topics": topics }))
}

/// One topic's `TopicDetail` from the data directory.
pub(crate) fn describe(dir: &Path, topic: &str) -> Result<Value> {
    let all = read(dir)?;
    let t = all.iter().find(|t| t.record.name == topic).ok_or_else(|| CliError::Api {
        status: 404,
        code: "unknown_topic".into(),
        message: format!("no topic '{topic}' in {}", dir.display()),
    })?;
    detail(t)
}
