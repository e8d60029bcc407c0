//! The clock-jump fault: a node's wall clock steps forward or back (as an
//! NTP step, a VM resumed from a snapshot or an operator's `date -s` would
//! do it), and later back to true time.
//!
//! Every node runs under libfaketime (`LD_PRELOAD`), which offsets every
//! wall-clock reading the process makes — the broker's injected clock and
//! every other `SystemTime::now()` alike — by the value in a file of the
//! node's own; the fault rewrites that file. Monotonic time is left alone
//! (`FAKETIME_DONT_FAKE_MONOTONIC`): it never jumps on a real machine, and
//! leases, elections and timeouts are measured with it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where Debian's `libfaketime` package puts the library (and others).
const CANDIDATES: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// The libfaketime library: `FJORD_CHAOS_LIBFAKETIME`, or where Debian
/// installs it.
pub(crate) fn library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FJORD_CHAOS_LIBFAKETIME") {
        return Ok(PathBuf::from(p));
    }
    match CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()) {
        Some(p) => Ok(p),
        None => bail!("clock-jump faults need libfaketime (apt install libfaketime) or FJORD_CHAOS_LIBFAKETIME"),
    }
}

/// The file holding a node's clock offset.
pub(crate) fn offset_file(node_dir: &Path) -> PathBuf {
    node_dir.join("faketime")
}

/// Sets a node's wall clock `seconds` off true time (replaced atomically:
/// libfaketime rereads the file while the node runs).
pub(crate) fn set_offset(node_dir: &Path, seconds: i64) -> Result<()> {
    let path = offset_file(node_dir);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{seconds:+}\n")).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))
}

/// The environment a node runs with under libfaketime.
pub(crate) fn env(library: &Path, node_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", offset_file(node_dir).display().to_string()),
        // Reread within a second of a change (10 s by default).
        ("FAKETIME_CACHE_DURATION", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_signed_in_seconds() -> Result<()> {
        let dir = tempfile::tempdir()?;
        set_offset(dir.path(), 3600)?;
        assert_eq!(std::fs::read_to_string(offset_file(dir.path()))?, "+3600\n");
        set_offset(dir.path(), -90)?;
        assert_eq!(std::fs::read_to_string(offset_file(dir.path()))?, "-90\n");
        set_offset(dir.path(), 0)?;
        assert_eq!(std::fs::read_to_string(offset_file(dir.path()))?, "+0\n");
        Ok(())
    }
}
