//! Document scopes: small named entries the layers above keep for the
//! whole cluster (AMQP's virtual hosts with their exchanges, queues and
//! bindings; its users), changed by compare-and-set on the scope's version.
//!
//! The controller knows nothing of what the entries mean. A proposer reads
//! a scope at some version from its copy of the metadata, computes the
//! entries its change adds and removes, and proposes them with that
//! version; if another change landed first the command is rejected with
//! [`Rejection::Conflict`] and the proposer reads again. So each scope
//! changes as if its changes were serialized, whichever nodes make them.
//!
//! *Invariant*: a scope's version only grows (a scope emptied of entries is
//! kept with its version), so a proposer can never mistake a scope that was
//! removed and written again for the one it read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Rejection, Reply, rejected};

/// Longest scope name or entry key, in bytes.
pub const MAX_DOCUMENT_KEY: usize = 16 * 1024;
/// Largest entry value, in bytes.
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// Most entries one scope may hold: every node holds every scope, and
/// metadata snapshots carry them whole.
pub const MAX_DOCUMENTS: usize = 200_000;

/// One scope's entries and version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentScope {
    /// Bumped by every applied change; 0 for a scope never written.
    pub version: u64,
    /// Entries by key.
    pub entries: BTreeMap<String, String>,
}

/// Applies an `UpdateDocuments` command.
pub(super) fn update(
    all: &mut BTreeMap<String, DocumentScope>,
    scope: &str,
    expect: u64,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> Reply {
    if scope.is_empty() || scope.len() > MAX_DOCUMENT_KEY {
        return rejected(Rejection::Invalid, format!("a scope name has 1 to {MAX_DOCUMENT_KEY} bytes"));
    }
    if let Some((k, _)) = set.iter().find(|(k, v)| k.is_empty() || k.len() > MAX_DOCUMENT_KEY || v.len() > MAX_DOCUMENT)
    {
        let shown: String = k.chars().take(64).collect();
        return rejected(
            Rejection::Invalid,
            format!("entry '{shown}': keys have 1 to {MAX_DOCUMENT_KEY} bytes, values at most {MAX_DOCUMENT}"),
        );
    }
    let version = all.get(scope).map_or(0, |s| s.version);
    if version != expect {
        return rejected(Rejection::Conflict, format!("scope '{scope}' is at version {version}, not {expect}"));
    }
    let current = all.get(scope).map_or(0, |s| s.entries.len());
    let added = set.keys().filter(|k| !all.get(scope).is_some_and(|s| s.entries.contains_key(*k))).count();
    if current + added > MAX_DOCUMENTS + remove.len() {
        return rejected(Rejection::Invalid, format!("scope '{scope}' would hold more than {MAX_DOCUMENTS} entries"));
    }
    let s = all.entry(scope.to_string()).or_default();
    for k in remove {
        s.entries.remove(k);
    }
    for (k, v) in set {
        s.entries.insert(k.clone(), v.clone());
    }
    s.version += 1;
    Reply::Ok
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Command, Metadata};

    fn cmd(expect: u64, set: &[(&str, &str)], remove: &[&str]) -> Command {
        Command::UpdateDocuments {
            scope: "s".into(),
            expect,
            set: set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn changes_apply_only_at_the_version_read() {
        let mut m = Metadata::default();
        assert_eq!(m.apply(&cmd(0, &[("a", "1"), ("b", "2")], &[])), Reply::Ok);
        assert_eq!(m.documents["s"].version, 1);
        // A second proposer that also read version 0 lost the race.
        let lost = m.apply(&cmd(0, &[("a", "x")], &[]));
        assert!(matches!(lost, Reply::Rejected { reason: Rejection::Conflict, .. }), "{lost:?}");
        assert_eq!(m.documents["s"].entries["a"], "1", "a rejected change changes nothing");
        assert_eq!(m.apply(&cmd(1, &[("c", "3")], &["a", "b"])), Reply::Ok);
        assert_eq!(m.apply(&cmd(2, &[], &["c"])), Reply::Ok);
        // Emptied, the scope keeps its version: one who read it at 0 (or 1)
        // cannot write over it.
        assert!(m.documents["s"].entries.is_empty());
        assert!(matches!(m.apply(&cmd(0, &[("a", "1")], &[])), Reply::Rejected { .. }));
        assert_eq!(m.apply(&cmd(3, &[("a", "1")], &[])), Reply::Ok);
    }

    #[test]
    fn sizes_are_checked() {
        let mut m = Metadata::default();
        let big = "v".repeat(MAX_DOCUMENT + 1);
        assert!(matches!(m.apply(&cmd(0, &[("a", &big)], &[])), Reply::Rejected { reason: Rejection::Invalid, .. }));
        assert!(matches!(m.apply(&cmd(0, &[("", "1")], &[])), Reply::Rejected { reason: Rejection::Invalid, .. }));
        let empty_scope =
            Command::UpdateDocuments { scope: String::new(), expect: 0, set: Default::default(), remove: vec![] };
        assert!(matches!(m.apply(&empty_scope), Reply::Rejected { reason: Rejection::Invalid, .. }));
        assert!(m.documents.is_empty());
        // Metadata written before scopes existed still loads.
        let old = r#"{"nodes":{},"topics":{}}"#;
        assert!(serde_json::from_str::<Metadata>(old).unwrap().documents.is_empty());
    }
}
