//! What a power loss took from a node: the sizes of its append-only logs
//! (partition segments, the messaging journals, the controller's Raft log)
//! before the cut — as the dead process left them in the page cache — and
//! after it, as the node's disk kept them ([`crate::volume::Volume::power_cut`]
//! makes the cut itself, at the block level).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Every `*.log` file under a directory, with its size.
pub(crate) fn log_sizes(dir: &Path) -> Result<BTreeMap<PathBuf, u64>> {
    let mut out = BTreeMap::new();
    collect(dir, dir, &mut out)?;
    Ok(out)
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "log") {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.insert(rel, entry.metadata()?.len());
        }
    }
    Ok(())
}

/// The logs that came back shorter (or not at all), with the bytes each
/// lost, described for the history.
pub(crate) fn describe_loss(before: &BTreeMap<PathBuf, u64>, after: &BTreeMap<PathBuf, u64>) -> String {
    let (mut total, mut cut) = (0, 0);
    let mut files = String::new();
    for (path, len) in before {
        let kept = after.get(path).copied().unwrap_or(0);
        if kept < *len {
            total += len - kept;
            cut += 1;
            files.push_str(&format!(" {}:{}", path.display(), len - kept));
        }
    }
    format!("{total} bytes not yet on disk lost from {cut} logs{files}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_and_missing_logs_are_counted() {
        let before = BTreeMap::from([("a.log".into(), 100), ("b.log".into(), 50), ("c.log".into(), 7)]);
        let after = BTreeMap::from([("a.log".into(), 60), ("c.log".into(), 7)]);
        assert_eq!(describe_loss(&before, &after), "90 bytes not yet on disk lost from 2 logs a.log:40 b.log:50");
    }

    #[test]
    fn only_logs_are_listed() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("topics/t/0"))?;
        std::fs::write(dir.path().join("topics/t/0/00000000000000000000.log"), b"abc")?;
        std::fs::write(dir.path().join("vote.json"), b"{}")?;
        let sizes = log_sizes(dir.path())?;
        assert_eq!(sizes, BTreeMap::from([(PathBuf::from("topics/t/0/00000000000000000000.log"), 3)]));
        Ok(())
    }
}
