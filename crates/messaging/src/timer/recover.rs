//! Opening the timer after a restart, and the snapshots that keep that
//! cheap.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use fjord_broker::{Broker, TopicPartition};
use parking_lot::Mutex;

use super::wheel::TimingWheel;
use super::{Entry, IntentTarget, TimerService, TimerState, decode, deliver_at_of, encode};
use crate::MessagingConfig;
use crate::error::{MessagingError, Result, blocking};
use crate::journal::Journal;
use crate::message::{header, headers};

const MAGIC: &[u8; 4] = b"FJTS";
const VERSION: u32 = 1;
const SNAPSHOT: &str = "snapshot";

/// A consistent cut of the timer: the pending pairs, the timer-log offset
/// from which entries may be missing from them, and the journal offset
/// after which deliveries are not reflected in them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub(super) scan_from: u64,
    pub(super) journal_from: u64,
    pub(super) entries: Vec<(i64, u64)>,
}

pub(super) async fn open(broker: &Arc<Broker>, dir: &Path, config: &MessagingConfig) -> Result<TimerService> {
    let (b, dir, cfg) = (broker.clone(), dir.to_path_buf(), config.clone());
    let clock = broker.clock().clone();
    let tick_ms = (config.timer_tick.as_millis() as u64).max(1);
    blocking(move || -> Result<TimerService> {
        std::fs::create_dir_all(&dir).map_err(|e| MessagingError::io("create timer directory", &dir, e))?;
        let base = &b.config().log_defaults;
        let schedule = Journal::open(&dir.join("schedule"), "timer log", base, cfg.durability, true, clock.clone())?;
        let journal = Journal::open(&dir.join("journal"), "timer journal", base, cfg.durability, false, clock.clone())?;
        let snap = read_snapshot(&dir.join(SNAPSHOT))?.unwrap_or_default();

        // Deliveries after the snapshot, and intents left unresolved.
        let mut delivered = HashSet::new();
        let mut intents: BTreeMap<u64, Vec<IntentTarget>> = BTreeMap::new();
        journal.scan(snap.journal_from, |r| {
            match decode(r.value.as_deref().unwrap_or_default())? {
                Entry::Intent(t) => {
                    intents.insert(r.offset, t);
                }
                Entry::Done { intent, offsets } => {
                    intents.remove(&intent);
                    delivered.extend(offsets);
                }
            }
            Ok(())
        })?;
        for (intent, targets) in intents {
            let found = resolve_intent(&b, &targets)?;
            tracing::info!(intent, delivered = found.len(), "timer: resolved an interrupted delivery");
            delivered.extend(found.iter().copied());
            let done = journal.append_value(encode(&Entry::Done { intent, offsets: found })?, 0)?;
            journal.sync(done)?;
        }

        let mut wheel = TimingWheel::new(clock.now_ms(), tick_ms);
        let mut in_snapshot = HashSet::new();
        for &(at, o) in &snap.entries {
            if !delivered.contains(&o) {
                wheel.insert(at, o);
                if o >= snap.scan_from {
                    in_snapshot.insert(o);
                }
            }
        }
        schedule.scan(snap.scan_from, |r| {
            if !delivered.contains(&r.offset) && !in_snapshot.contains(&r.offset) {
                wheel.insert(deliver_at_of(&r), r.offset);
            }
            Ok(())
        })?;
        tracing::info!(pending = wheel.len(), "timer opened");
        let state = TimerState { wheel, appending: BTreeMap::new(), next_token: 0 };
        Ok(TimerService {
            schedule: Arc::new(schedule),
            journal: Arc::new(journal),
            state: Arc::new(Mutex::new(state)),
            wake: Default::default(),
            gate: Default::default(),
            clock,
            dir,
            tick_ms,
        })
    })
    .await?
}

/// Which entries of an interrupted delivery reached their targets: those
/// whose `fjord.timer-ref` appears after the log end recorded in the intent.
fn resolve_intent(broker: &Broker, targets: &[IntentTarget]) -> Result<Vec<u64>> {
    let mut found = Vec::new();
    for t in targets {
        let Ok(p) = broker.partition(&TopicPartition::new(&t.topic, t.partition)) else { continue };
        let log = &p;
        let mut refs = HashSet::new();
        let mut offset = t.log_end.max(log.log_start_offset());
        while offset < log.log_end_offset() {
            let recs = log
                .read_appended(offset, 1 << 20)
                .map_err(|e| MessagingError::log(format!("{}-{}", t.topic, t.partition), e))?;
            let Some(last) = recs.last().map(|r| r.offset) else { break };
            refs.extend(recs.iter().filter_map(|r| header(r, headers::TIMER_REF)?.parse::<u64>().ok()));
            offset = last + 1;
        }
        found.extend(t.offsets.iter().copied().filter(|o| refs.contains(o)));
    }
    Ok(found)
}

/// Writes a snapshot, then trims the journal and the timer log below what
/// it covers. The caller holds the dispatch gate.
pub(super) fn write_snapshot(
    dir: &Path,
    schedule: &Journal,
    journal: &Journal,
    state: &Mutex<TimerState>,
) -> Result<()> {
    let snap = {
        let s = state.lock();
        let scan_from = s.appending.values().copied().min().unwrap_or(u64::MAX).min(schedule.end());
        Snapshot { scan_from, journal_from: journal.end(), entries: s.wheel.iter().map(|(d, o)| (d, *o)).collect() }
    };
    fjord_log::write_atomic(&dir.join(SNAPSHOT), &encode_snapshot(&snap))
        .map_err(|e| MessagingError::log("timer snapshot", e))?;
    journal.trim_before(snap.journal_from)?;
    let oldest = snap.entries.iter().map(|(_, o)| *o).min().unwrap_or(u64::MAX).min(snap.scan_from);
    schedule.trim_before(oldest)
}

pub(super) fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(36 + s.entries.len() * 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&s.scan_from.to_be_bytes());
    out.extend_from_slice(&s.journal_from.to_be_bytes());
    out.extend_from_slice(&(s.entries.len() as u64).to_be_bytes());
    for (d, o) in &s.entries {
        out.extend_from_slice(&d.to_be_bytes());
        out.extend_from_slice(&o.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

pub(super) fn decode_snapshot(b: &[u8]) -> Result<Snapshot> {
    let bad = |d: &str| MessagingError::Corrupt { what: "timer snapshot", detail: d.to_string() };
    if b.len() < 36 || &b[..4] != MAGIC {
        return Err(bad("too short or wrong magic"));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err(bad("checksum mismatch"));
    }
    let u64_at = |i: usize| body.get(i..i + 8).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes);
    if body.get(4..8) != Some(&VERSION.to_be_bytes()[..]) {
        return Err(bad("unknown version"));
    }
    let (Some(scan_from), Some(journal_from), Some(count)) = (u64_at(8), u64_at(16), u64_at(24)) else {
        return Err(bad("truncated header"));
    };
    if (body.len() - 32) as u64 != count.saturating_mul(16) {
        return Err(bad("entry count does not match the size"));
    }
    let entries = body[32..]
        .chunks_exact(16)
        .filter_map(|c| Some((u64_at_slice(&c[..8])? as i64, u64_at_slice(&c[8..])?)))
        .collect();
    Ok(Snapshot { scan_from, journal_from, entries })
}

fn u64_at_slice(s: &[u8]) -> Option<u64> {
    s.try_into().ok().map(u64::from_be_bytes)
}

fn read_snapshot(path: &Path) -> Result<Option<Snapshot>> {
    match std::fs::read(path) {
        Ok(b) => decode_snapshot(&b).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MessagingError::io("read timer snapshot", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trip_and_damage_is_detected() {
        let s = Snapshot { scan_from: 7, journal_from: 9, entries: vec![(100, 1), (-5, 2), (i64::MAX, u64::MAX)] };
        let b = encode_snapshot(&s);
        assert_eq!(decode_snapshot(&b).unwrap(), s);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(decode_snapshot(&c).is_err(), "flip at {i} accepted");
        }
        assert!(decode_snapshot(&b[..b.len() - 1]).is_err());
    }
}
