//! The process's open-file limit: raised at start, checked against what
//! the configuration needs.
//!
//! Every segment file and every connection holds a file descriptor. A
//! broker that runs out of them cannot accept clients or open logs, so the
//! soft limit (often 1024) is raised to the hard limit before anything is
//! opened, and a limit still too low for the partitions on disk and the
//! configured connection cap is reported at start rather than found out
//! under load.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// File descriptors a node needs besides segments and connections
/// (listeners, epoll, data-directory files, the admin API's work).
const BASE_FDS: u64 = 256;

/// Raises the soft open-file limit to the hard limit; returns the limit
/// now in force (`None` if it cannot be read).
pub(crate) fn raise_open_files() -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

/// File descriptors `partitions` partitions and one listener full of
/// connections (`max_connections`) need: two per partition (its active
/// segment and one more being rolled or read), a connection's socket each,
/// and [`BASE_FDS`].
pub(crate) fn needed_open_files(partitions: u64, max_connections: u64) -> u64 {
    partitions.saturating_mul(2).saturating_add(max_connections).saturating_add(BASE_FDS)
}

/// Warns when `limit` is below what is needed.
pub(crate) fn check_open_files(limit: u64, partitions: u64, max_connections: u64) {
    let needed = needed_open_files(partitions, max_connections);
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            partitions,
            max_connections,
            "the open-file limit is low for this broker: raise it (ulimit -n, systemd LimitNOFILE) \
             or lower limits.max_connections; out of file descriptors, new connections wait and \
             new topics fail"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = raise_open_files().expect("readable");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("readable");
        assert_eq!(soft, hard, "raised");
        assert_eq!(limit, soft);
    }

    #[test]
    fn the_need_grows_with_partitions_and_connections() {
        assert_eq!(needed_open_files(0, 0), BASE_FDS);
        assert_eq!(needed_open_files(100, 1000), 200 + 1000 + BASE_FDS);
        assert_eq!(needed_open_files(u64::MAX, u64::MAX), u64::MAX);
    }
}
