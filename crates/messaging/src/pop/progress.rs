//! A pop queue's progress as committed to the group's offsets: the lowest
//! unacked offset (the committed offset itself) and, in its metadata, the
//! offsets acked above it and the deliveries in flight.
//!
//! The pop/ack state is node-local (until it moves onto replicated
//! partitions, `docs/design/replication.md` §4); the committed offsets are
//! replicated. The node that leads a partition next opens its queues from
//! them: with the acked offsets it delivers again only what was in flight
//! (or acked within the last second, before the maintenance committed),
//! not everything acked above the first unacked message; with the
//! deliveries in flight it counts their attempts on (AMQP's `redelivered`,
//! delivery limits) instead of starting again at 1.
//!
//! Format: `fjord-pop/1 ` then comma-separated acked ranges `a-b` (offsets
//! `base+a .. base+b`, half-open, relative to the committed offset), then
//! `;` and comma-separated in-flight runs `a-b:n` (delivered `n` times).
//! At most [`MAX_LEN`] bytes (Kafka's default `offset.metadata.max.bytes`
//! is 4096): what does not fit is left out — delivered again after a
//! failover, or counted from 1. Metadata in any other form (a Kafka
//! client's commit) means nothing is known above the offset.

const PREFIX: &str = "fjord-pop/1 ";

/// Longest metadata written.
pub(crate) const MAX_LEN: usize = 4000;

/// What the metadata records above the committed offset (absolute
/// offsets, ascending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Acked ranges, half-open.
    pub(crate) acked: Vec<(u64, u64)>,
    /// In-flight runs, half-open, with their delivery count.
    pub(crate) delivered: Vec<(u64, u64, u32)>,
}

/// The metadata for acked `ranges` and in-flight `delivered` runs above
/// `base`; `""` when there is neither.
pub(crate) fn encode(base: u64, acked: &[(u64, u64)], delivered: &[(u64, u64, u32)]) -> String {
    let mut s = String::from(PREFIX);
    let mut first = true;
    for (a, b) in acked.iter().filter(|(a, b)| *a >= base && b > a) {
        let part = format!("{}-{}", a - base, b - base);
        if s.len() + 1 + part.len() > MAX_LEN {
            break;
        }
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(&part);
    }
    let mut runs = String::new();
    for (a, b, n) in delivered.iter().filter(|(a, b, n)| *a >= base && b > a && *n >= 1) {
        let part = format!("{}-{}:{n}", a - base, b - base);
        if s.len() + 1 + runs.len() + 1 + part.len() > MAX_LEN {
            break;
        }
        if !runs.is_empty() {
            runs.push(',');
        }
        runs.push_str(&part);
    }
    if first && runs.is_empty() {
        return String::new();
    }
    if !runs.is_empty() {
        s.push(';');
        s.push_str(&runs);
    }
    s
}

/// What `metadata` records above `base`; nothing for metadata this module
/// did not write, or that does not parse.
pub(crate) fn decode(base: u64, metadata: &str) -> Progress {
    parse(base, metadata).unwrap_or_default()
}

fn parse(base: u64, metadata: &str) -> Option<Progress> {
    let body = metadata.strip_prefix(PREFIX)?;
    let (acked, runs) = body.split_once(';').unwrap_or((body, ""));
    let range = |part: &str, last: &mut u64| -> Option<(u64, u64)> {
        let (a, b) = part.split_once('-')?;
        let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
        // Ascending, non-empty, and no overflow: anything else is not ours.
        if b <= a || a < *last || base.checked_add(b).is_none() {
            return None;
        }
        *last = b;
        Some((base + a, base + b))
    };
    let mut out = Progress::default();
    let mut last = 0;
    for part in acked.split(',').filter(|p| !p.is_empty()) {
        out.acked.push(range(part, &mut last)?);
    }
    let mut last = 0;
    for part in runs.split(',').filter(|p| !p.is_empty()) {
        let (r, n) = part.split_once(':')?;
        let n = n.parse::<u32>().ok().filter(|n| *n >= 1)?;
        let (a, b) = range(r, &mut last)?;
        out.delivered.push((a, b, n));
    }
    if out.acked.is_empty() && out.delivered.is_empty() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_round_trip_relative_to_the_base() {
        let m = encode(100, &[(102, 105), (200, 201)], &[(101, 102, 1), (105, 108, 3)]);
        assert_eq!(m, "fjord-pop/1 2-5,100-101;1-2:1,5-8:3");
        let p = decode(100, &m);
        assert_eq!(p.acked, [(102, 105), (200, 201)]);
        assert_eq!(p.delivered, [(101, 102, 1), (105, 108, 3)]);
        assert_eq!(decode(100, &encode(100, &[], &[(100, 101, 2)])).delivered, [(100, 101, 2)]);
        assert_eq!(encode(100, &[], &[]), "");
    }

    #[test]
    fn foreign_or_malformed_metadata_means_nothing_known() {
        for m in [
            "",
            "my app's note",
            "fjord-pop/1 ",
            "fjord-pop/1 5-3",
            "fjord-pop/1 1-2,0-1",
            "fjord-pop/1 x-1",
            "fjord-pop/1 1-2;3-4",
            "fjord-pop/1 ;3-4:0",
            "fjord-pop/1 ;3-4:1,2-3:1",
        ] {
            assert_eq!(decode(0, m), Progress::default(), "{m:?}");
        }
        assert_eq!(decode(u64::MAX - 1, "fjord-pop/1 1-5"), Progress::default());
    }

    #[test]
    fn too_much_is_cut_to_the_cap() {
        let acked: Vec<(u64, u64)> = (0..5000).map(|i| (i * 2, i * 2 + 1)).collect();
        let m = encode(0, &acked, &[(1, 2, 1)]);
        assert!(m.len() <= MAX_LEN);
        let back = decode(0, &m);
        assert!(back.acked.len() > 100);
        assert_eq!(back.acked[..], acked[..back.acked.len()]);
        let runs: Vec<(u64, u64, u32)> = (0..5000).map(|i| (i * 2, i * 2 + 1, 2)).collect();
        let m = encode(0, &[(100_000, 100_001)], &runs);
        assert!(m.len() <= MAX_LEN);
        let back = decode(0, &m);
        assert_eq!(back.acked, [(100_000, 100_001)]);
        assert_eq!(back.delivered[..], runs[..back.delivered.len()]);
    }

    proptest! {
        #[test]
        fn decode_never_panics(base in any::<u64>(), m in "fjord-pop/1 [0-9,:;-]{0,40}") {
            let _ = decode(base, &m);
        }

        #[test]
        fn what_fits_round_trips(
            base in 0u64..1_000_000,
            acked in proptest::collection::btree_set(0u64..10_000, 0..50),
            runs in proptest::collection::btree_map(0u64..10_000, 1u32..9, 0..50),
        ) {
            let acked: Vec<(u64, u64)> = acked.into_iter().map(|o| (base + o, base + o + 1)).collect();
            let delivered: Vec<(u64, u64, u32)> = runs.into_iter().map(|(o, n)| (base + o, base + o + 1, n)).collect();
            let got = decode(base, &encode(base, &acked, &delivered));
            prop_assert_eq!(got.acked, acked);
            prop_assert_eq!(got.delivered, delivered);
        }
    }
}
