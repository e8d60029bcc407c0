//! The node-local timer of earlier versions (`<data>/messaging/timer`: a
//! schedule log, a journal and a snapshot): its pending messages move onto
//! the timer shards once, then the directory is deleted. Each moved chunk
//! is recorded as delivered in the old journal before the next, so a crash
//! midway moves nothing twice.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use fjord_broker::{Broker, TopicPartition};
use fjord_log::batch::{NewRecord, Record};

use super::{Entry, IntentTarget, decode, encode};
use crate::Messaging;
use crate::error::{MessagingError, Result, blocking};
use crate::journal::Journal;
use crate::message::{header, headers};

const MAGIC: &[u8; 4] = b"FJTS";
const VERSION: u32 = 1;
const SNAPSHOT: &str = "snapshot";

/// Messages moved per step.
const CHUNK: usize = 256;

/// A consistent cut of the old timer: the pending pairs, the timer-log
/// offset from which entries may be missing from them, and the journal
/// offset after which deliveries are not reflected in them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub(super) scan_from: u64,
    pub(super) journal_from: u64,
    pub(super) entries: Vec<(i64, u64)>,
}

/// Moves what the old timer under `<data>/messaging/timer` still holds
/// onto the shards, then deletes it (nothing to do without it).
pub(crate) async fn migrate(m: &Messaging) -> Result<()> {
    let dir = m.dir().join("timer");
    if !dir.join("schedule").exists() {
        return Ok(());
    }
    let (b, d, durability) = (m.broker.clone(), dir.clone(), m.config.durability);
    let (schedule, journal, pending) = blocking(move || open(&b, &d, durability)).await??;
    let (schedule, journal) = (std::sync::Arc::new(schedule), std::sync::Arc::new(journal));
    let total = pending.len();
    for chunk in pending.chunks(CHUNK) {
        let (s, offsets) = (schedule.clone(), chunk.to_vec());
        let recs = blocking(move || read_offsets(&s, &offsets)).await??;
        let copies: Vec<NewRecord> = recs
            .iter()
            .map(|r| NewRecord {
                timestamp: Some(r.timestamp),
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            })
            .collect();
        if !copies.is_empty() {
            m.schedule(copies).await?;
        }
        let (j, offsets) = (journal.clone(), chunk.to_vec());
        blocking(move || -> Result<()> {
            let done = j.append_value(encode(&Entry::Done { intent: u64::MAX, offsets })?, 0)?;
            j.sync(done)
        })
        .await??;
    }
    blocking(move || -> Result<()> {
        schedule.close()?;
        journal.close()?;
        std::fs::remove_dir_all(&dir).map_err(|e| MessagingError::io("remove the old timer directory", &dir, e))
    })
    .await??;
    tracing::info!(messages = total, "moved the scheduled messages of an earlier version onto the timer shards");
    Ok(())
}

/// Opens the old logs and lists the offsets still pending there.
fn open(broker: &Broker, dir: &Path, durability: fjord_log::Durability) -> Result<(Journal, Journal, Vec<u64>)> {
    let clock = broker.clock().clone();
    let base = &broker.config().log_defaults;
    let schedule = Journal::open(&dir.join("schedule"), "old timer log", base, durability, clock.clone())?;
    let journal = Journal::open(&dir.join("journal"), "old timer journal", base, durability, clock)?;
    let snap = read_snapshot(&dir.join(SNAPSHOT))?.unwrap_or_default();
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
            // Never written to the old node-local journal.
            Entry::Decided { .. } | Entry::Checked { .. } => {}
        }
        Ok(())
    })?;
    for (intent, targets) in intents {
        let found = resolve_intent(broker, &targets)?;
        delivered.extend(found.iter().copied());
        let done = journal.append_value(encode(&Entry::Done { intent, offsets: found })?, 0)?;
        journal.sync(done)?;
    }
    let mut pending: Vec<u64> = Vec::new();
    let mut in_snapshot = HashSet::new();
    for &(_, o) in &snap.entries {
        if !delivered.contains(&o) {
            pending.push(o);
            in_snapshot.insert(o);
        }
    }
    schedule.scan(snap.scan_from, |r| {
        if !delivered.contains(&r.offset) && !in_snapshot.contains(&r.offset) {
            pending.push(r.offset);
        }
        Ok(())
    })?;
    pending.sort_unstable();
    pending.dedup();
    Ok((schedule, journal, pending))
}

/// The records at ascending `offsets` of an old log.
fn read_offsets(log: &Journal, offsets: &[u64]) -> Result<Vec<Record>> {
    super::shard::read_offsets_with(offsets, "old timer log", |o| log.read(o, 256 << 10))
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

#[cfg(test)]
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
