//! A partition log: ordered segments, one writer, many readers.

mod aborted;
mod admit;
mod append;
mod inspect;
mod maintenance;
mod read;
mod recover;
mod snapshots;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

pub use append::DurableMark;
pub(crate) use append::pwrite_all;
pub use inspect::{LogSummary, inspect};
pub use maintenance::RetentionOutcome;
pub use read::{LogSlice, ReadBound, ReadResult};
pub use recover::RecoveryOutcome;

use crate::checkpoint::{read_u64, sync_dir, write_u64};
use crate::clock::Clock;
use crate::config::{Durability, LogConfig};
use crate::epoch::{EpochCache, EpochEntry};
use crate::error::{LogError, Result};
use crate::segment::Segment;

const CLEAN_SHUTDOWN: &str = ".clean-shutdown";
const RECOVERY_POINT: &str = "recovery-point";
const LOG_START: &str = "log-start-offset";
const EPOCHS: &str = "leader-epoch-checkpoint";
const HIGH_WATERMARK: &str = "high-watermark";

/// Who is appending: the partition leader assigns offsets; a replica keeps
/// the leader's offsets and epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// Assign offsets from the log end and stamp this leader epoch.
    Leader {
        /// Current leader epoch.
        epoch: i32,
    },
    /// Keep offsets and epochs as given; they must continue the log.
    Replica,
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: u64,
    /// Offset of the last record appended.
    pub last_offset: u64,
    /// Number of batches.
    pub batches: usize,
    /// Number of records.
    pub records: u64,
    /// Bytes written.
    pub bytes: usize,
    /// Largest record timestamp appended.
    pub max_timestamp: i64,
    /// The append time when the log uses log-append time.
    pub log_append_time: Option<i64>,
}

/// Point-in-time figures of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// First offset still readable.
    pub log_start_offset: u64,
    /// Next offset to be written.
    pub log_end_offset: u64,
    /// Offsets below this are visible to consumers.
    pub high_watermark: u64,
    /// Offsets below this are known to be fsynced.
    pub durable_offset: u64,
    /// Bytes in all segments.
    pub size_bytes: u64,
    /// Number of segments.
    pub segments: usize,
    /// Largest timestamp in the log, `None` when empty.
    pub max_timestamp: Option<i64>,
}

#[derive(Debug)]
struct Inner {
    segments: BTreeMap<u64, Arc<Segment>>,
    log_start: u64,
    log_end: u64,
    high_watermark: u64,
    /// The high watermark last checkpointed, as found at open (clamped to
    /// the log) and lowered by truncation.
    hw_checkpoint: Option<u64>,
    epochs: EpochCache,
}

impl Inner {
    fn active(&self) -> Result<&Arc<Segment>> {
        self.segments.values().next_back().ok_or_else(|| LogError::Internal("log has no segment".into()))
    }
}

#[derive(Debug, Default)]
struct SyncState {
    /// Sealed segments not yet fsynced (interval mode defers their fsync to
    /// the next flush so a roll never stalls appends).
    unsynced_sealed: Vec<Arc<Segment>>,
    durable: u64,
    in_progress: bool,
    poison: Option<(&'static str, String)>,
    closed: bool,
    /// Bumped by every [`Log::recover`]: a write made before a recovery may
    /// have been cut by it, so its durability wait must not be satisfied by
    /// a `durable` that later writes reached at the same offsets.
    generation: u64,
}

impl SyncState {
    /// Records the first failure; later ones keep the original reason.
    fn set_poison(&mut self, op: &'static str, reason: String) {
        if self.poison.is_none() {
            crate::instrument::poisoned_logs(1.0);
            self.poison = Some((op, reason));
        }
    }
}

/// A durable, append-only partition log. See the crate docs for the design.
///
/// All methods block on file I/O; async callers run them on a blocking pool.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    config: RwLock<LogConfig>,
    /// Serialises writers (append, roll, truncate, retention).
    writer: Mutex<()>,
    inner: RwLock<Inner>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// Appends waiting for a writer (see `append.rs`).
    write_queue: Mutex<append::WriteQueue>,
    /// The recovery point the open rescanned from, after an unclean
    /// shutdown.
    rescanned_from: Option<u64>,
    #[cfg(any(test, feature = "fault-injection"))]
    fail_fsync: std::sync::atomic::AtomicBool,
}

impl Drop for Log {
    fn drop(&mut self) {
        // Keeps `fjord_poisoned_logs` counting live logs only (a deleted
        // topic's poisoned partition no longer needs attention).
        if self.sync.get_mut().poison.is_some() {
            crate::instrument::poisoned_logs(-1.0);
        }
    }
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering from an unclean
    /// shutdown: the segments after the last recovery point are scanned,
    /// torn or corrupt tails are truncated, and missing or stale indexes are
    /// rebuilt.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Log> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io("create log directory", &dir, e))?;
        let clean = dir.join(CLEAN_SHUTDOWN).exists();
        let recovery_point = read_u64(&dir.join(RECOVERY_POINT)).unwrap_or(0);
        let mut log_start = read_u64(&dir.join(LOG_START)).unwrap_or(0);
        let bases = list_segments(&dir)?;
        let mut segments = BTreeMap::new();
        let mut prev_next: Option<u64> = None;
        for (i, &base) in bases.iter().enumerate() {
            if prev_next.is_some_and(|n| base < n) {
                return Err(LogError::Internal(format!(
                    "segment {base} in {} overlaps the previous segment; refusing to guess which is right",
                    dir.display()
                )));
            }
            let next_base = bases.get(i + 1).copied();
            let trust = clean || next_base.is_some_and(|n| n <= recovery_point);
            let (seg, outcome) = Segment::open(&dir, base, trust, config.index_interval_bytes, &config.key_index)?;
            prev_next = Some(seg.next_offset());
            segments.insert(base, Arc::new(seg));
            if outcome.stopped_early && next_base.is_some() {
                // Data after a hole cannot be served in order: drop it.
                for &later in &bases[i + 1..] {
                    tracing::warn!(dir = %dir.display(), segment = later, "deleting segment after a corrupt one");
                    Segment::delete_files_at(&dir, later)?;
                }
                break;
            }
        }
        if segments.is_empty() {
            let seg = Segment::create(&dir, log_start, config.key_index.enabled)?;
            segments.insert(log_start, Arc::new(seg));
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let active = segments.values().next_back().cloned().ok_or_else(|| LogError::Internal("no segment".into()))?;
        let log_end = active.next_offset();
        log_start = log_start.clamp(first_base, log_end);
        if recovery_point > log_end {
            // The tail the recovery point vouched for was cut off (a crash
            // right after a roll, then a torn tail before it): segments
            // created later at lower offsets must not be trusted by it.
            write_u64(&dir.join(RECOVERY_POINT), active.base_offset)?;
        }
        // A crash may have cut the tail a snapshot described.
        snapshots::delete_after(&dir, log_end)?;
        let mut epochs = EpochCache::load(dir.join(EPOCHS));
        epochs.truncate_from_end(log_end)?;
        let hw_checkpoint = read_u64(&dir.join(HIGH_WATERMARK)).map(|hw| hw.clamp(log_start, log_end));
        // What survived the crash is now made durable, so it may be served.
        active.sync().map_err(|e| LogError::io("fsync segment", &active.log_path, e))?;
        match std::fs::remove_file(dir.join(CLEAN_SHUTDOWN)) {
            Ok(()) => sync_dir(&dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("remove clean-shutdown marker", dir.join(CLEAN_SHUTDOWN), e)),
        }
        tracing::debug!(dir = %dir.display(), clean, log_start, log_end, segments = segments.len(), "log opened");
        Ok(Log {
            dir,
            clock,
            config: RwLock::new(config),
            writer: Mutex::new(()),
            inner: RwLock::new(Inner { segments, log_start, log_end, high_watermark: log_end, hw_checkpoint, epochs }),
            sync: Mutex::new(SyncState { durable: log_end, ..SyncState::default() }),
            synced: Condvar::new(),
            write_queue: Mutex::new(append::WriteQueue::default()),
            rescanned_from: (!clean).then_some(recovery_point.min(log_end)),
            #[cfg(any(test, feature = "fault-injection"))]
            fail_fsync: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Makes every later fsync of the active segment fail (as a disk
    /// returning EIO would), or stops doing so. For tests of other crates.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_fsync_failure(&self, fail: bool) {
        self.fail_fsync.store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// Why the log refuses writes (`"failed <op>: <reason>"`), or `None`
    /// while it is writable. See [`Log::recover`].
    pub fn poisoned(&self) -> Option<String> {
        self.sync.lock().poison.as_ref().map(|(op, reason)| format!("failed {op}: {reason}"))
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current configuration.
    pub fn config(&self) -> LogConfig {
        self.config.read().clone()
    }

    /// Whether a write itself fsyncs (durability `EveryWrite`), so that it
    /// may take milliseconds rather than microseconds.
    pub fn write_fsyncs(&self) -> bool {
        self.config.read().durability == crate::config::Durability::EveryWrite
    }

    /// Replaces the configuration; applies to subsequent operations.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write() = config;
    }

    /// The base offset of the active segment (it changes when the log
    /// rolls).
    pub fn active_segment_base(&self) -> u64 {
        self.inner.read().segments.keys().next_back().copied().unwrap_or(0)
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> u64 {
        self.inner.read().log_start
    }

    /// Next offset to be written.
    pub fn log_end_offset(&self) -> u64 {
        self.inner.read().log_end
    }

    /// Offsets below this are visible to consumers.
    pub fn high_watermark(&self) -> u64 {
        self.inner.read().high_watermark
    }

    /// Offsets below this are known to be on stable storage.
    pub fn durable_offset(&self) -> u64 {
        self.sync.lock().durable
    }

    /// Moves the high watermark (never past the log end, never backwards).
    pub fn set_high_watermark(&self, offset: u64) {
        let mut inner = self.inner.write();
        inner.high_watermark = inner.high_watermark.max(offset.min(inner.log_end));
    }

    /// The latest leader epoch and where it started.
    pub fn latest_epoch(&self) -> Option<EpochEntry> {
        self.inner.read().epochs.latest()
    }

    /// All leader epochs with their start offsets, oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.inner.read().epochs.entries().to_vec()
    }

    /// The largest epoch `<= epoch` and the end offset of that epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        let inner = self.inner.read();
        inner.epochs.end_offset_for(epoch, inner.log_end)
    }

    /// Figures for monitoring.
    pub fn stats(&self) -> LogStats {
        let durable_offset = self.durable_offset();
        let inner = self.inner.read();
        let metas = inner.segments.values().map(|s| {
            let m = s.meta.read();
            (m.size, m.max_timestamp)
        });
        let (size_bytes, max_ts) = metas.fold((0, i64::MIN), |(sz, ts), (s, t)| (sz + s, ts.max(t)));
        LogStats {
            log_start_offset: inner.log_start,
            log_end_offset: inner.log_end,
            high_watermark: inner.high_watermark,
            durable_offset,
            size_bytes,
            segments: inner.segments.len(),
            max_timestamp: (max_ts != i64::MIN).then_some(max_ts),
        }
    }

    /// Whether the log takes writes now: not closed, not poisoned.
    pub fn check_writable(&self) -> Result<()> {
        let s = self.sync.lock();
        if s.closed {
            return Err(LogError::Closed(self.dir.clone()));
        }
        if let Some((op, reason)) = &s.poison {
            return Err(LogError::Poisoned { path: self.dir.clone(), op, reason: reason.clone() });
        }
        Ok(())
    }

    /// Marks the log unwritable after a failed write or fsync and returns
    /// the error to report. Retrying an fsync after failure can report
    /// success for pages the kernel already dropped, so we never retry.
    fn poison(&self, op: &'static str, err: LogError) -> LogError {
        tracing::error!(dir = %self.dir.display(), op, error = %err, "poisoning log");
        let mut s = self.sync.lock();
        s.set_poison(op, err.to_string());
        self.synced.notify_all();
        err
    }

    /// Rolls to a new segment when the active one is full, too old, or its
    /// relative offsets would overflow. Called with the writer lock held.
    fn maybe_roll(&self, cfg: &LogConfig, base: u64, len: usize, next: u64, now: i64) -> Result<Arc<Segment>> {
        let active = self.inner.read().active()?.clone();
        let (size, first_append) = {
            let m = active.meta.read();
            (m.size, m.first_append_ms)
        };
        let too_big = size + len as u64 > cfg.segment_bytes;
        // Timestamps come from producers and may be anything.
        let too_old = first_append.is_some_and(|t| now.saturating_sub(t) >= roll_after(cfg, active.base_offset));
        let overflow = next - active.base_offset > u64::from(u32::MAX) || size + len as u64 > u64::from(u32::MAX);
        if size == 0 || !(too_big || too_old || overflow) {
            return Ok(active);
        }
        self.roll(&active, base)
    }

    /// Seals `active` (index files, fsync) and starts a segment at `base`.
    ///
    /// Under interval durability the sealed segment's fsync is left to the
    /// next flush, which then moves the recovery point; otherwise it is
    /// fsynced here (cheap: group commit already synced almost all of it).
    fn roll(&self, active: &Arc<Segment>, base: u64) -> Result<Arc<Segment>> {
        let cfg = self.config.read().clone();
        let deferred = matches!(cfg.durability, Durability::Interval(_));
        if deferred {
            self.sync.lock().unsynced_sealed.push(active.clone());
        } else if let Err(e) = active.sync() {
            return Err(self.poison("fsync", LogError::io("fsync segment", &active.log_path, e)));
        }
        active.write_indexes()?;
        let seg = Arc::new(Segment::create(&self.dir, base, cfg.key_index.enabled)?);
        sync_dir(&self.dir)?;
        self.inner.write().segments.insert(base, seg.clone());
        if !deferred {
            // Everything before the new segment is fsynced: recovery can skip it.
            write_u64(&self.dir.join(RECOVERY_POINT), base)?;
        }
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        Ok(seg)
    }

    /// Blocks until every offset below `offset` is fsynced (group commit).
    ///
    /// The first waiter to find no sync running becomes the syncer for
    /// everybody: it fsyncs the active segment outside the lock, then
    /// publishes the log end it read before syncing. Waiters that arrive
    /// meanwhile are covered by the next round.
    pub fn wait_durable(&self, offset: u64) -> Result<()> {
        let generation = self.sync.lock().generation;
        self.wait_durable_in(offset, generation)
    }

    /// [`Log::wait_durable`] for a write made in `generation`: fails if a
    /// recovery happened since, as it may have cut that write.
    fn wait_durable_in(&self, offset: u64, generation: u64) -> Result<()> {
        let mut s = self.sync.lock();
        loop {
            if s.generation != generation {
                return Err(LogError::Poisoned {
                    path: self.dir.clone(),
                    op: "write",
                    reason: "the log was recovered before this write was fsynced; it may be lost".into(),
                });
            }
            // Checked before the poison: an fsync that succeeded before the
            // failure covers these offsets, so they are durable regardless.
            if s.durable >= offset {
                return Ok(());
            }
            if let Some((op, reason)) = &s.poison {
                return Err(LogError::Poisoned { path: self.dir.clone(), op, reason: reason.clone() });
            }
            if s.in_progress {
                self.synced.wait(&mut s);
                continue;
            }
            s.in_progress = true;
            drop(s);
            let result = self.sync_now();
            s = self.sync.lock();
            s.in_progress = false;
            match result {
                Ok(end) => s.durable = s.durable.max(end),
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), error = %e, "poisoning log");
                    s.set_poison("fsync", e.to_string());
                }
            }
            self.synced.notify_all();
        }
    }

    /// Fsyncs the active segment; returns the log end it covers. Earlier
    /// segments were fsynced when they were rolled.
    fn sync_now(&self) -> Result<u64> {
        let (end, active) = {
            let inner = self.inner.read();
            (inner.log_end, inner.active()?.clone())
        };
        let sealed = std::mem::take(&mut self.sync.lock().unsynced_sealed);
        for seg in &sealed {
            seg.sync().map_err(|e| LogError::io("fsync segment", &seg.log_path, e))?;
        }
        #[cfg(any(test, feature = "fault-injection"))]
        if self.fail_fsync.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(LogError::io("fsync segment", &active.log_path, std::io::Error::other("injected EIO")));
        }
        active.sync().map_err(|e| LogError::io("fsync segment", &active.log_path, e))?;
        if !sealed.is_empty() {
            write_u64(&self.dir.join(RECOVERY_POINT), active.base_offset)?;
        }
        Ok(end)
    }

    /// Fsyncs everything written so far (interval flushing, shutdown).
    pub fn flush(&self) -> Result<()> {
        let end = self.log_end_offset();
        self.wait_durable(end)
    }

    /// Writes the current high watermark to the `high-watermark` file, if
    /// it moved since the last checkpoint (a clean close always does). A
    /// log opened later reports it ([`Log::checkpointed_high_watermark`]):
    /// its own high watermark starts at the log end, which is right for a
    /// partition's only replica, while a follower must not serve more than
    /// the leader had committed, which the checkpoint bounds. A truncation
    /// below it lowers it.
    pub fn checkpoint_high_watermark(&self) -> Result<()> {
        // Under the writer lock: a truncation cannot lower the high
        // watermark between reading and writing it.
        let _w = self.writer.lock();
        self.write_hw_checkpoint()
    }

    /// [`Log::checkpoint_high_watermark`] with the writer lock held.
    pub(super) fn write_hw_checkpoint(&self) -> Result<()> {
        let (hw, last) = {
            let inner = self.inner.read();
            (inner.high_watermark, inner.hw_checkpoint)
        };
        if last == Some(hw) && self.dir.join(HIGH_WATERMARK).exists() {
            return Ok(());
        }
        write_u64(&self.dir.join(HIGH_WATERMARK), hw)?;
        self.inner.write().hw_checkpoint = Some(hw);
        Ok(())
    }

    /// The high watermark last checkpointed (clamped to what the log
    /// holds), or `None` if it never was.
    pub fn checkpointed_high_watermark(&self) -> Option<u64> {
        self.inner.read().hw_checkpoint
    }
}

/// Base offsets of the segments in `dir`, ascending; removes leftovers of
/// interrupted atomic writes and index files without a log.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io("list log directory", dir, e))? {
        let entry = entry.map_err(|e| LogError::io("list log directory", dir, e))?;
        let path = entry.path();
        let (Some(stem), Some(ext)) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        match (ext, stem.parse::<u64>()) {
            ("log", Ok(base)) => bases.push(base),
            ("tmp", _) => {
                let _ = std::fs::remove_file(&path);
            }
            ("index" | "keys" | "txnindex", Ok(base)) => others.push((base, path)),
            _ => {}
        }
    }
    bases.sort_unstable();
    for (base, path) in others {
        if bases.binary_search(&base).is_err() {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(bases)
}

/// How old (ms since its first append) the segment starting at `base`
/// may grow: `segment_ms` less a jitter of up to `segment_jitter_ms`, the
/// same for a segment on every replica and every restart (a hash of its
/// base offset), at least 1 ms.
fn roll_after(cfg: &LogConfig, base: u64) -> i64 {
    if cfg.segment_jitter_ms <= 0 {
        return cfg.segment_ms;
    }
    // SplitMix64's finaliser: nearby base offsets get unrelated jitters.
    let mut z = base.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let jitter = (z % (cfg.segment_jitter_ms.min(cfg.segment_ms) as u64 + 1)) as i64;
    (cfg.segment_ms - jitter).max(1)
}

#[cfg(test)]
mod tests;
