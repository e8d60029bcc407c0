//! A pop queue's progress as committed to the group's offsets: the lowest
//! unacked offset (the committed offset itself) and, in its metadata, the
//! offsets acked above it.
//!
//! The pop/ack state is node-local (until it moves onto replicated
//! partitions, `docs/design/replication.md` §4); the committed offsets are
//! replicated. The node that leads a partition next opens its queues from
//! them: with the acked offsets it delivers again only what was in flight
//! (or acked within the last second, before the maintenance committed),
//! not everything acked above the first unacked message.
//!
//! Format: `fjord-pop/1 ` then comma-separated ranges `a-b` (offsets
//! `base+a .. base+b`, half-open) relative to the committed offset. At most
//! [`MAX_LEN`] bytes (Kafka's default `offset.metadata.max.bytes` is 4096):
//! ranges past it are left out, and delivered again after a failover.
//! Metadata in any other form (a Kafka client's commit) means nothing is
//! known to be acked above the offset.

const PREFIX: &str = "fjord-pop/1 ";

/// Longest metadata written.
pub(crate) const MAX_LEN: usize = 4000;

/// The metadata for acked `ranges` (absolute, ascending, above `base`).
pub(crate) fn encode(base: u64, ranges: &[(u64, u64)]) -> String {
    let mut s = String::new();
    for (a, b) in ranges.iter().filter(|(a, b)| *a >= base && b > a) {
        let part = format!("{}-{}", a - base, b - base);
        if PREFIX.len() + s.len() + 1 + part.len() > MAX_LEN {
            break;
        }
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&part);
    }
    if s.is_empty() { s } else { format!("{PREFIX}{s}") }
}

/// The acked ranges (absolute) `metadata` records above `base`; none for
/// metadata this module did not write, or that does not parse.
pub(crate) fn decode(base: u64, metadata: &str) -> Vec<(u64, u64)> {
    let Some(body) = metadata.strip_prefix(PREFIX) else { return Vec::new() };
    let mut out = Vec::new();
    let mut last = 0u64;
    for part in body.split(',') {
        let Some((a, b)) = part.split_once('-') else { return Vec::new() };
        let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) else { return Vec::new() };
        // Ascending, non-empty, and no overflow: anything else is not ours.
        if b <= a || a < last || base.checked_add(b).is_none() {
            return Vec::new();
        }
        last = b;
        out.push((base + a, base + b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_round_trip_relative_to_the_base() {
        let m = encode(100, &[(102, 105), (200, 201)]);
        assert_eq!(m, "fjord-pop/1 2-5,100-101");
        assert_eq!(decode(100, &m), [(102, 105), (200, 201)]);
        assert_eq!(encode(100, &[]), "");
    }

    #[test]
    fn foreign_or_malformed_metadata_means_nothing_acked() {
        for m in ["", "my app's note", "fjord-pop/1 ", "fjord-pop/1 5-3", "fjord-pop/1 1-2,0-1", "fjord-pop/1 x-1"] {
            assert!(decode(0, m).is_empty(), "{m:?}");
        }
        assert!(decode(u64::MAX - 1, "fjord-pop/1 1-5").is_empty());
    }

    #[test]
    fn too_many_ranges_are_cut_to_the_cap() {
        let ranges: Vec<(u64, u64)> = (0..5000).map(|i| (i * 2, i * 2 + 1)).collect();
        let m = encode(0, &ranges);
        assert!(m.len() <= MAX_LEN);
        let back = decode(0, &m);
        assert!(back.len() > 100);
        assert_eq!(back[..], ranges[..back.len()]);
    }

    proptest! {
        #[test]
        fn decode_never_panics(base in any::<u64>(), m in "fjord-pop/1 [0-9,-]{0,40}") {
            let _ = decode(base, &m);
        }
    }
}
