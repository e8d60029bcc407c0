//! Loading the topics at start. One broken topic never stops the broker: it
//! is logged, kept *offline* (name → reason) and the rest is served.
//!
//! Creation writes `topic.json` last, so a topic directory without one is
//! an interrupted creation that was never acknowledged: it is removed, as
//! are partition directories beyond the count in `topic.json` (an
//! interrupted `create_partitions`). Nothing is ever removed because it
//! could not be *read*: an unreadable `topic.json` or an unopenable
//! partition keeps its data, offline, for an operator to repair or delete.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use fjord_log::Clock;
use parking_lot::RwLock;

use crate::broker::{BrokerConfig, TOPIC_FILE, TOPICS_DIR, io_err, open_partition};
use crate::error::Result;
use crate::partition::Topic;
use crate::topic::TopicRecord;

/// The topics found in the data directory.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) topics: BTreeMap<String, Arc<Topic>>,
    /// Topic name → why it could not be loaded.
    pub(crate) offline: BTreeMap<String, String>,
}

pub(crate) fn load_topics(cfg: &BrokerConfig, clock: &Arc<dyn Clock>) -> Result<Loaded> {
    let root = cfg.data_dir.join(TOPICS_DIR);
    let mut loaded = Loaded::default();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| io_err("list topics", &root, e))? {
        dirs.push(entry.map_err(|e| io_err("list topics", &root, e))?.path());
    }
    // Internal topics first (the broker's own state must load), then in
    // name order, so which topics fit under the open-file limit does not
    // change from one start to the next.
    let user =
        |d: &std::path::PathBuf| !d.file_name().and_then(|n| n.to_str()).is_some_and(crate::offsets::is_internal_topic);
    dirs.sort_by(|a, b| (user(a), a).cmp(&(user(b), b)));
    // Descriptors topics may still take: the limit, less what is open now
    // and the reserve for the broker's own state and its listeners.
    let mut room = cfg.open_files_limit.map(|limit| limit.saturating_sub(open_files_now() + cfg.open_files_reserve));
    for dir in dirs {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            tracing::warn!(dir = %dir.display(), "ignoring a topic directory whose name is not UTF-8");
            continue;
        };
        if !dir.is_dir() {
            tracing::warn!(path = %dir.display(), "ignoring a file among the topic directories");
            continue;
        }
        if let Some(room) = room.as_mut() {
            let need = segment_files(&dir);
            if need > *room {
                let reason = format!(
                    "not opened: its {need} segment files do not fit under the open-file limit ({}) with {} kept for \
                     the broker itself; raise the limit (ulimit -n, systemd LimitNOFILE) and restart",
                    cfg.open_files_limit.unwrap_or_default(),
                    cfg.open_files_reserve
                );
                tracing::error!(topic = name, reason, "topic is offline");
                loaded.offline.insert(name, reason);
                continue;
            }
            *room -= need;
        }
        match load_topic(cfg, clock, &dir) {
            Ok(Some(topic)) => {
                loaded.topics.insert(topic.name(), Arc::new(topic));
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::error!(topic = name, dir = %dir.display(), reason, "topic is offline: it could not be loaded; its data is kept and the other topics are served");
                loaded.offline.insert(name, reason);
            }
        }
    }
    Ok(loaded)
}

/// One topic; `Ok(None)` for an interrupted creation (removed), `Err` with
/// the reason it must stay offline.
fn load_topic(cfg: &BrokerConfig, clock: &Arc<dyn Clock>, dir: &Path) -> std::result::Result<Option<Topic>, String> {
    let path = dir.join(TOPIC_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            remove_logged(dir, "removing the directory of an interrupted topic creation (no topic.json)");
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let record: TopicRecord = serde_json::from_slice(&bytes).map_err(|e| format!("corrupt {}: {e}", path.display()))?;
    remove_partitions_from(dir, record.partitions);
    let log_cfg = record.config.apply(&cfg.log_defaults);
    // Partitions opened before a failing one are dropped here, which closes
    // their files (without a clean-shutdown marker: the next open rescans).
    let partitions = (0..record.partitions)
        .map(|p| open_partition(dir, &record.name, p, &log_cfg, clock))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    Ok(Some(Topic { dir: dir.to_path_buf(), record: RwLock::new(record), partitions: RwLock::new(partitions) }))
}

/// File descriptors in use by this process now (Linux: `/proc/self/fd`;
/// 0 where that cannot be read).
fn open_files_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Segment files under a topic directory: each holds a descriptor while
/// its partition is open (at least one per partition directory).
fn segment_files(dir: &Path) -> u64 {
    let Ok(parts) = std::fs::read_dir(dir) else { return 1 };
    parts
        .flatten()
        .filter(|p| p.path().is_dir())
        .map(|p| {
            let logs = std::fs::read_dir(p.path()).map_or(0, |files| {
                files.flatten().filter(|f| f.path().extension().is_some_and(|e| e == "log")).count() as u64
            });
            logs.max(1)
        })
        .sum::<u64>()
        .max(1)
}

/// Removes partition directories numbered `count` or more: left by a
/// `create_partitions` interrupted before `topic.json` recorded them, and
/// never acknowledged. A later growth must not inherit their data.
pub(crate) fn remove_partitions_from(dir: &Path, count: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let extra =
            path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok()).is_some_and(|p| p >= count);
        if extra && path.is_dir() {
            remove_logged(&path, "removing a partition directory of an interrupted partition creation");
        }
    }
}

/// Removes `dir` recursively, logging why; a failure is logged, not fatal
/// (the leftover is retried at the next start or creation).
pub(crate) fn remove_logged(dir: &Path, why: &'static str) {
    tracing::warn!(dir = %dir.display(), "{why}");
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(dir = %dir.display(), error = %e, "could not remove a leftover directory"),
    }
}
