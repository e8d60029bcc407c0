use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::batch::{BatchBuilder, Header, NewRecord, TimestampType};
use crate::clock::ManualClock;
use crate::error::FormatError;
use crate::segment::KeyIndexConfig;

const T0: i64 = 1_700_000_000_000;

fn batch(values: &[&str], ts: i64) -> BytesMut {
    let mut b = BatchBuilder::new(ts);
    for v in values {
        b.push(&NewRecord {
            key: Some(Bytes::from(format!("k-{v}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![Header { key: Bytes::from_static(b"id"), value: Some(Bytes::from(format!("id-{v}"))) }],
            ..Default::default()
        });
    }
    b.build()
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        key_index: KeyIndexConfig { enabled: true, header_keys: vec![b"id".to_vec()] },
        ..LogConfig::default()
    }
}

fn open(dir: &Path, cfg: LogConfig) -> (Log, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    (Log::open(dir, cfg, clock.clone()).unwrap(), clock)
}

fn leader() -> AppendOrigin {
    AppendOrigin::Leader { epoch: 0 }
}

fn values(log: &Log, from: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let recs = log.read_records(next, 4096, ReadBound::LogEnd).unwrap();
        if recs.is_empty() {
            return out;
        }
        for r in recs {
            next = r.offset + 1;
            out.push((r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
        }
    }
}

fn fill(log: &Log, n: usize) -> Vec<(u64, String)> {
    let mut expect = Vec::new();
    for i in 0..n {
        let a = format!("v{i}a");
        let b = format!("v{i}b");
        let info = log.append(batch(&[&a, &b], T0 + i as i64), leader()).unwrap();
        expect.push((info.base_offset, a));
        expect.push((info.last_offset, b));
    }
    expect
}

#[test]
fn appends_get_consecutive_offsets_and_read_back_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    let expect = fill(&log, 60);
    assert_eq!(expect.iter().map(|e| e.0).collect::<Vec<_>>(), (0..120).collect::<Vec<_>>());
    assert!(log.stats().segments > 3, "small segments must roll: {:?}", log.stats());
    assert_eq!(values(&log, 0), expect);
    // Reading from the middle of a batch returns records from that offset on.
    assert_eq!(values(&log, 77), expect[77..].to_vec());
    assert_eq!(log.log_end_offset(), 120);
    assert!(matches!(log.read(121, 100, ReadBound::LogEnd), Err(LogError::OffsetOutOfRange { .. })));
    assert!(log.read(120, 100, ReadBound::LogEnd).unwrap().slice.is_none());
}

#[test]
fn a_batch_larger_than_max_bytes_is_still_returned_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    let big = "x".repeat(500);
    log.append(batch(&[&big], T0), leader()).unwrap();
    let slice = log.read(0, 10, ReadBound::LogEnd).unwrap().slice.unwrap();
    let bytes = slice.to_bytes().unwrap();
    assert!(bytes.len() > 500);
    assert_eq!(crate::batch::validate(&bytes).unwrap().record_count, 1);
}

#[test]
fn high_watermark_bounds_consumer_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    fill(&log, 3);
    // The owner (broker or replication) advances the high watermark, not appends.
    assert_eq!(log.high_watermark(), 0);
    assert!(log.read_records(0, 1 << 20, ReadBound::HighWatermark).unwrap().is_empty());
    log.set_high_watermark(6);
    log.append(batch(&["late"], T0), leader()).unwrap();
    let recs = log.read_records(0, 1 << 20, ReadBound::HighWatermark).unwrap();
    assert_eq!(recs.len(), 6, "offset 6 is above the high watermark");
    log.set_high_watermark(7);
    assert_eq!(log.read_records(0, 1 << 20, ReadBound::HighWatermark).unwrap().len(), 7);
    log.set_high_watermark(3);
    assert_eq!(log.high_watermark(), 7, "never goes backwards");
    log.set_high_watermark(100);
    assert_eq!(log.high_watermark(), 7, "never passes the log end");
    drop(log);
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.high_watermark(), 7, "a single node reopens with everything recovered visible");
}

#[test]
fn oversize_and_malformed_appends_are_rejected_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig { max_message_bytes: 200, ..small_config() });
    let big = "y".repeat(300);
    assert!(matches!(log.append(batch(&[&big], T0), leader()), Err(LogError::MessageTooLarge { .. })));
    let mut bad = batch(&["a"], T0);
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert!(matches!(log.append(bad, leader()), Err(LogError::InvalidBatch(FormatError::CrcMismatch { .. }))));
    let good = batch(&["ok"], T0);
    let mut two = good.clone();
    two.extend_from_slice(&good[..20]);
    assert!(matches!(log.append(two, leader()), Err(LogError::InvalidBatch(FormatError::Truncated(_)))));
    assert!(log.append(BytesMut::new(), leader()).is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.append(good, leader()).unwrap().base_offset, 0);
}

#[test]
fn append_many_writes_each_request_in_order_and_fails_only_the_invalid_one() {
    for durability in [Durability::Interval(std::time::Duration::from_secs(60)), Durability::GroupCommit] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), LogConfig { durability, ..small_config() });
        fill(&log, 1);
        let mut bad = batch(&["bad"], T0);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let results =
            log.append_many(vec![(batch(&["a", "b"], T0), leader()), (bad, leader()), (batch(&["c"], T0), leader())]);
        assert_eq!(results.len(), 3);
        let offsets: Vec<_> = results.iter().map(|r| r.as_ref().map(|i| (i.base_offset, i.last_offset))).collect();
        assert!(matches!(offsets[0], Ok((2, 3))), "{durability:?}: {offsets:?}");
        assert!(matches!(results[1], Err(LogError::InvalidBatch(FormatError::CrcMismatch { .. }))));
        assert!(matches!(offsets[2], Ok((4, 4))), "{durability:?}: {offsets:?}");
        let got: Vec<String> = values(&log, 2).into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, ["a", "b", "c"]);
        if durability == Durability::GroupCommit {
            assert_eq!(log.sync.lock().durable, 5, "acknowledged only once durable");
        }
        assert!(log.append_many(Vec::new()).is_empty());
    }
}

#[test]
fn lookup_by_timestamp_is_exact_for_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    for i in 0..50i64 {
        log.append(batch(&[&format!("t{i}")], T0 + i * 10), leader()).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(T0).unwrap(), Some((0, T0)));
    assert_eq!(log.offset_for_timestamp(T0 + 5).unwrap(), Some((1, T0 + 10)));
    assert_eq!(log.offset_for_timestamp(T0 + 250).unwrap(), Some((25, T0 + 250)));
    assert_eq!(log.offset_for_timestamp(T0 + 491).unwrap(), None);
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((49, T0 + 490)));
}

#[test]
fn key_lookup_finds_record_keys_and_indexed_headers_before_and_after_sealing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    fill(&log, 40);
    for (key, want) in [("k-v3a", 6u64), ("id-v39b", 79), ("k-v20b", 41)] {
        let hits = log.lookup_key(key.as_bytes(), 10).unwrap();
        assert_eq!(hits.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![want], "key {key}");
    }
    assert!(log.lookup_key(b"absent", 10).unwrap().is_empty());
    log.close().unwrap();
    drop(log);
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.lookup_key(b"id-v3a", 10).unwrap()[0].offset, 6);
}

#[test]
fn clean_reopen_keeps_everything_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    let mut expect = fill(&log, 30);
    let stats = log.stats();
    log.close().unwrap();
    assert!(matches!(log.append(batch(&["x"], T0), leader()), Err(LogError::Closed(_))));
    drop(log);
    assert!(dir.path().join(CLEAN_SHUTDOWN).exists());
    let (log, _) = open(dir.path(), small_config());
    assert!(!dir.path().join(CLEAN_SHUTDOWN).exists(), "marker must be removed so a later crash is detected");
    assert_eq!(log.stats().log_end_offset, stats.log_end_offset);
    assert_eq!(log.stats().segments, stats.segments);
    let info = log.append(batch(&["after"], T0), leader()).unwrap();
    assert_eq!(info.base_offset, 60);
    expect.push((60, "after".into()));
    assert_eq!(values(&log, 0), expect);
}

/// Simulates a crash: the log is dropped without `close`, then damaged.
fn crash_and_damage(dir: &Path, damage: impl FnOnce(&Path)) -> Log {
    damage(dir);
    open(dir, small_config()).0
}

fn active_segment_path(dir: &Path) -> PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn torn_tail_is_truncated_to_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    let expect = fill(&log, 25);
    drop(log);
    let seg = active_segment_path(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    let log = crash_and_damage(dir.path(), |_| {
        // Cut the last batch in half, as a crash mid-write would.
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 7).unwrap();
    });
    assert_eq!(values(&log, 0), expect[..48].to_vec());
    assert_eq!(log.log_end_offset(), 48);
    assert_eq!(log.append(batch(&["next"], T0), leader()).unwrap().base_offset, 48);
}

#[test]
fn garbage_after_the_last_batch_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    let expect = fill(&log, 10);
    drop(log);
    let seg = active_segment_path(dir.path());
    let len_before = std::fs::metadata(&seg).unwrap().len();
    let log = crash_and_damage(dir.path(), |_| {
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0u8; 40]).unwrap();
        f.write_all(&[0xffu8; 100]).unwrap();
    });
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len_before);
    assert_eq!(values(&log, 0), expect);
}

#[test]
fn a_corrupt_batch_is_never_served_and_later_batches_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig { segment_bytes: 1 << 20, ..small_config() });
    let expect = fill(&log, 10);
    drop(log);
    let seg = active_segment_path(dir.path());
    let bytes = std::fs::read(&seg).unwrap();
    // Flip a byte inside the fourth batch's records.
    let mut pos = 0;
    for _ in 0..3 {
        pos += crate::batch::peek_total_len(&bytes[pos..]).unwrap().unwrap();
    }
    let log = crash_and_damage(dir.path(), |_| {
        let mut damaged = bytes.clone();
        damaged[pos + 70] ^= 0x55;
        std::fs::write(&seg, damaged).unwrap();
    });
    assert_eq!(values(&log, 0), expect[..6].to_vec());
}

#[test]
fn damaged_missing_and_stale_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    let expect = fill(&log, 40);
    log.close().unwrap();
    drop(log);
    let mut indexes: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "index"))
        .collect();
    indexes.sort();
    assert!(indexes.len() >= 3);
    std::fs::remove_file(&indexes[0]).unwrap();
    let mut damaged = std::fs::read(&indexes[1]).unwrap();
    let n = damaged.len();
    damaged[n - 1] ^= 0xff;
    std::fs::write(&indexes[1], damaged).unwrap();
    // Stale: an index recorded for a shorter log than the file now holds.
    let (log, _) = open(dir.path(), small_config());
    let extra = log.append(batch(&["more"], T0 + 999), leader()).unwrap();
    drop(log); // crash: the active segment's index on disk is now stale
    let (log, _) = open(dir.path(), small_config());
    let mut all = expect.clone();
    all.push((extra.base_offset, "more".into()));
    assert_eq!(values(&log, 0), all);
    for (off, _) in expect.iter().step_by(7) {
        assert_eq!(log.read_records(*off, 1, ReadBound::LogEnd).unwrap()[0].offset, *off);
    }
    assert_eq!(log.offset_for_timestamp(T0 + 999).unwrap().map(|x| x.0), Some(extra.base_offset));
    assert_eq!(log.lookup_key(b"k-more", 5).unwrap()[0].offset, extra.base_offset);
}

#[test]
fn time_retention_deletes_old_segments_and_rolls_an_expired_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { retention_ms: Some(60_000), ..small_config() };
    let (log, clock) = open(dir.path(), cfg);
    fill(&log, 30);
    let before = log.stats();
    clock.set(T0 + 30 + 60_001 - 15);
    let out = log.enforce_retention().unwrap();
    assert!(out.segments_deleted > 0 && out.segments_deleted < before.segments);
    let start = log.log_start_offset();
    assert_eq!(start, out.log_start_offset);
    assert!(matches!(log.read(0, 10, ReadBound::LogEnd), Err(LogError::OffsetOutOfRange { .. })));
    assert!(values(&log, start).iter().all(|(o, _)| *o >= start));
    clock.advance(10 * 60_000);
    log.enforce_retention().unwrap();
    assert_eq!(log.log_start_offset(), 60, "everything expired, including the old active segment");
    assert_eq!(log.stats().segments, 1);
    assert_eq!(log.append(batch(&["new"], clock.now_ms()), leader()).unwrap().base_offset, 60);
    drop(log);
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 60);
}

#[test]
fn segment_age_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_ms: 60_000, segment_bytes: 1 << 20, ..small_config() };
    let (log, _) = open(dir.path(), cfg.clone());
    log.append(batch(&["first"], T0), leader()).unwrap();
    log.close().unwrap();
    drop(log);
    let (log, clock) = open(dir.path(), cfg);
    clock.set(T0 + 30_000);
    log.append(batch(&["young"], T0 + 30_000), leader()).unwrap();
    assert_eq!(log.stats().segments, 1);
    clock.set(T0 + 60_001);
    log.append(batch(&["old"], T0 + 60_001), leader()).unwrap();
    assert_eq!(log.stats().segments, 2, "the segment is older than segment_ms counted from its first batch");
}

#[test]
fn producer_timestamps_near_i64_min_do_not_break_segment_age() {
    // Found by fuzzing: the age of a reopened segment was `now - first
    // timestamp`, which overflowed.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_ms: 60_000, ..small_config() };
    let (log, _) = open(dir.path(), cfg.clone());
    log.append(batch(&["ancient"], i64::MIN + 3), leader()).unwrap();
    log.close().unwrap();
    drop(log);
    let (log, _) = open(dir.path(), cfg);
    log.append(batch(&["now"], T0), leader()).unwrap();
    assert_eq!(log.stats().segments, 2, "an ancient first batch makes the segment old enough to roll");
}

#[test]
fn recovery_drops_batches_beyond_the_segments_32_bit_offset_range() {
    // Found by fuzzing: a batch far past its segment's base offset overflowed
    // the 32-bit relative offsets of the indexes.
    let dir = tempfile::tempdir().unwrap();
    let first = batch(&["a"], T0);
    let mut far = batch(&["b"], T0);
    crate::batch::set_base_offset(&mut far, 1 << 33);
    let mut file = first.to_vec();
    file.extend_from_slice(&far);
    std::fs::write(dir.path().join("00000000000000000000.log"), file).unwrap();
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(values(&log, 0), vec![(0, "a".to_string())]);
    assert_eq!(log.append(batch(&["c"], T0), leader()).unwrap().base_offset, 1);
}

#[test]
fn compressed_batches_are_served_as_records_and_indexed_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    log.append(batch(&["plain"], T0), leader()).unwrap();
    let mut b = BatchBuilder::new(T0).compression(crate::batch::Compression::Zstd);
    for i in 0..50 {
        b.push(&NewRecord {
            key: Some(Bytes::from(format!("zk-{i}"))),
            value: Some(Bytes::from(format!("zv-{i}"))),
            ..Default::default()
        });
    }
    let info = log.append(b.try_build().unwrap(), leader()).unwrap();
    assert_eq!((info.base_offset, info.last_offset, info.records), (1, 50, 50));
    let recs = log.read_records(10, 1 << 20, ReadBound::LogEnd).unwrap();
    assert_eq!(recs.first().map(|r| r.offset), Some(10), "records before the requested offset are skipped");
    assert_eq!(recs.last().and_then(|r| r.value.clone()), Some(Bytes::from("zv-49")));
    assert_eq!(log.lookup_key(b"zk-33", 5).unwrap()[0].offset, 34);
    drop(log); // unclean: recovery rescans and rebuilds the key index
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.lookup_key(b"zk-33", 5).unwrap()[0].offset, 34);
    assert_eq!(values(&log, 0).len(), 51);
}

#[test]
fn size_retention_keeps_the_log_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig { retention_bytes: Some(3000), ..small_config() });
    fill(&log, 100);
    log.enforce_retention().unwrap();
    let s = log.stats();
    assert!(s.size_bytes <= 3000 + 1024, "{s:?}");
    assert!(s.size_bytes >= 3000 - 1024, "{s:?}");
    assert_eq!(values(&log, s.log_start_offset).last().map(|x| x.0), Some(199));
}

#[test]
fn delete_records_moves_the_log_start_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    fill(&log, 40);
    assert!(log.delete_records_before(51).is_err(), "not past the high watermark");
    log.set_high_watermark(80);
    assert_eq!(log.delete_records_before(51).unwrap(), 51);
    assert!(matches!(log.read(50, 10, ReadBound::LogEnd), Err(LogError::OffsetOutOfRange { .. })));
    assert_eq!(values(&log, 51)[0].0, 51);
    assert!(log.delete_records_before(500).is_err());
    drop(log);
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 51);
}

#[test]
fn truncate_to_cuts_at_batch_boundaries_and_forgets_later_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    fill(&log, 20);
    log.append(batch(&["e1a", "e1b"], T0), AppendOrigin::Leader { epoch: 1 }).unwrap();
    log.append(batch(&["e2"], T0), AppendOrigin::Leader { epoch: 2 }).unwrap();
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 42)));
    assert_eq!(log.truncate_to(41).unwrap(), 40, "41 is inside the batch 40..=41");
    assert_eq!(log.latest_epoch().map(|e| e.epoch), Some(0));
    assert_eq!(values(&log, 0).len(), 40);
    assert_eq!(log.append(batch(&["x"], T0), leader()).unwrap().base_offset, 40);
    log.truncate_to(3).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    drop(log);
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn truncating_a_segment_scanned_at_open_keeps_everything_before_the_cut() {
    // Found by fjord-chaos: the rescan after a truncation read through the
    // file's shared cursor, which the scan at open had left at the end, so
    // it took the tail for the head and cut the segment to a fraction.
    let dir = tempfile::tempdir().unwrap();
    let cfg = || LogConfig { segment_bytes: 1 << 20, ..small_config() };
    let (log, _) = open(dir.path(), cfg());
    let mut expect = fill(&log, 20);
    drop(log); // no clean close: the next open scans the segment
    let (log, _) = open(dir.path(), cfg());
    for (i, v) in ["x", "y", "z"].iter().enumerate() {
        let info = log.append(batch(&[v], T0), AppendOrigin::Leader { epoch: 1 + i as i32 }).unwrap();
        expect.push((info.base_offset, v.to_string()));
    }
    let end = log.log_end_offset();
    assert_eq!(log.truncate_to(end - 1).unwrap(), end - 1);
    expect.pop();
    assert_eq!(values(&log, 0), expect);
    assert_eq!(log.append(batch(&["w"], T0), AppendOrigin::Leader { epoch: 4 }).unwrap().base_offset, end - 1);
    expect.push((end - 1, "w".into()));
    drop(log);
    let (log, _) = open(dir.path(), cfg());
    assert_eq!(values(&log, 0), expect);
}

#[test]
fn replica_appends_keep_leader_offsets_and_reject_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let (leader_log, _) = open(&dir.path().join("leader"), small_config());
    let (replica, _) = open(&dir.path().join("replica"), small_config());
    fill(&leader_log, 5);
    leader_log.append(batch(&["e3"], T0), AppendOrigin::Leader { epoch: 3 }).unwrap();
    let data = leader_log.read(0, 1 << 20, ReadBound::LogEnd).unwrap().slice.unwrap().to_bytes().unwrap();
    replica.append(BytesMut::from(&data[..]), AppendOrigin::Replica).unwrap();
    assert_eq!(values(&replica, 0), values(&leader_log, 0));
    assert_eq!(replica.latest_epoch(), leader_log.latest_epoch());
    assert!(replica.append(BytesMut::from(&data[..]), AppendOrigin::Replica).is_err());
}

#[test]
fn group_commit_with_concurrent_writers_assigns_unique_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig { segment_bytes: 64 * 1024, ..small_config() });
    let log = Arc::new(log);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let info = log.append(batch(&[&format!("{t}-{i}")], T0), leader()).unwrap();
                        assert!(log.durable_offset() > info.last_offset, "acknowledged before fsync");
                        info.base_offset
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..800).collect::<Vec<_>>());
    // Each writer's own records are in its append order.
    let all = values(&log, 0);
    for t in 0..16 {
        let mine: Vec<usize> =
            all.iter().filter_map(|(_, v)| v.strip_prefix(&format!("{t}-")).map(|i| i.parse().unwrap())).collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>());
    }
}

/// Write-group leadership passes between appenders while maintenance
/// (retention, flush) takes the writer lock in between: nobody waits
/// forever, offsets stay unique and contiguous, and each writer's records
/// stay in its order.
#[test]
fn write_groups_hand_over_leadership_under_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        durability: Durability::Interval(std::time::Duration::from_secs(1)),
        segment_bytes: 16 * 1024,
        ..small_config()
    };
    let (log, _) = open(dir.path(), cfg);
    let log = Arc::new(log);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let maintenance = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                log.enforce_retention().unwrap();
                log.flush().unwrap();
            }
        })
    };
    let (writers, each) = (8, 200);
    let threads: Vec<_> = (0..writers)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..each)
                    .map(|i| log.append(batch(&[&format!("{t}-{i}")], T0), leader()).unwrap().base_offset)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    maintenance.join().unwrap();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..(writers * each) as u64).collect::<Vec<_>>());
    let all = values(&log, 0);
    for t in 0..writers {
        let mine: Vec<usize> =
            all.iter().filter_map(|(_, v)| v.strip_prefix(&format!("{t}-")).map(|i| i.parse().unwrap())).collect();
        assert_eq!(mine, (0..each).collect::<Vec<_>>());
    }
}

#[test]
fn a_failed_fsync_poisons_the_log_and_nothing_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    log.append(batch(&["ok"], T0), leader()).unwrap();
    log.fail_fsync.store(true, Ordering::SeqCst);
    let err = log.append(batch(&["lost"], T0), leader()).unwrap_err();
    assert!(matches!(err, LogError::Poisoned { .. }), "{err}");
    log.fail_fsync.store(false, Ordering::SeqCst);
    // No silent retry: the log stays poisoned even though fsync works again.
    let err = log.append(batch(&["after"], T0), leader()).unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
    assert!(log.durable_offset() <= 1);
}

#[test]
fn interval_durability_acknowledges_before_fsync_and_flush_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { durability: Durability::Interval(std::time::Duration::from_secs(1)), ..small_config() };
    let (log, _) = open(dir.path(), cfg);
    let info = log.append(batch(&["a", "b"], T0), leader()).unwrap();
    assert_eq!(log.durable_offset(), 0);
    log.flush().unwrap();
    assert_eq!(log.durable_offset(), info.last_offset + 1);
}

/// A crash right after a roll (the new segment still empty, the recovery
/// point already at its base) and a torn tail in the segment before it:
/// recovery keeps every whole batch, drops the empty segment, and pulls the
/// recovery point back so later segments are not trusted by it.
#[test]
fn torn_tail_before_an_empty_rolled_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    let expect = fill(&log, 25);
    let end = log.log_end_offset();
    drop(log);
    let sealed = active_segment_path(dir.path());
    let len = std::fs::metadata(&sealed).unwrap().len();
    let log = crash_and_damage(dir.path(), |d| {
        std::fs::File::create(d.join(format!("{end:020}.log"))).unwrap();
        crate::checkpoint::write_u64(&d.join(RECOVERY_POINT), end).unwrap();
        OpenOptions::new().write(true).open(&sealed).unwrap().set_len(len - 7).unwrap();
    });
    assert_eq!(values(&log, 0), expect[..48].to_vec());
    assert_eq!(log.log_end_offset(), 48);
    let rp = crate::checkpoint::read_u64(&dir.path().join(RECOVERY_POINT)).unwrap();
    assert!(rp <= 48, "recovery point {rp} beyond the log end");
    assert!(!dir.path().join(format!("{end:020}.log")).exists(), "the empty segment after the tear is gone");
    assert_eq!(log.append(batch(&["next"], T0), leader()).unwrap().base_offset, 48);
}

#[test]
fn interval_mode_defers_the_fsync_of_rolled_segments_to_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { durability: Durability::Interval(std::time::Duration::from_secs(1)), ..small_config() };
    let (log, _) = open(dir.path(), cfg.clone());
    fill(&log, 30);
    assert!(log.stats().segments > 2);
    let rp = || crate::checkpoint::read_u64(&dir.path().join(RECOVERY_POINT));
    assert_eq!(rp(), None, "no segment was fsynced yet, so recovery must not skip any");
    log.flush().unwrap();
    let active_base = *log.inner.read().segments.keys().next_back().unwrap();
    assert_eq!(rp(), Some(active_base));
    assert_eq!(log.durable_offset(), 60);
    drop(log);
    let (log, _) = open(dir.path(), cfg);
    assert_eq!(values(&log, 0).len(), 60);
}

#[test]
fn log_append_time_replaces_producer_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { timestamp_type: TimestampType::LogAppendTime, ..small_config() };
    let (log, clock) = open(dir.path(), cfg);
    clock.set(T0 + 12345);
    let info = log.append(batch(&["a"], 5), leader()).unwrap();
    assert_eq!(info.log_append_time, Some(T0 + 12345));
    assert_eq!(log.read_records(0, 100, ReadBound::LogEnd).unwrap()[0].timestamp, T0 + 12345);
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(Vec<u8>),
        Reopen { clean: bool },
        TearTail(u8),
        Read(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => proptest::collection::vec(1u8..40, 1..6).prop_map(Op::Append),
            1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
            1 => (1u8..60).prop_map(Op::TearTail),
            2 => any::<u16>().prop_map(Op::Read),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Against a model (a Vec of values), the log agrees after any mix of
        /// appends, reads, clean and unclean reopens, and torn tails (which
        /// may remove only the last, unacknowledged-by-disk batch).
        #[test]
        fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Some(open(dir.path(), small_config()).0);
            let mut model: Vec<String> = Vec::new();
            let mut last_batch_len = 0usize;
            for op in ops {
                let l = log.as_ref().unwrap();
                match op {
                    Op::Append(sizes) => {
                        let vals: Vec<String> = sizes.iter().enumerate().map(|(i, s)| format!("{}-{}", model.len() + i, "z".repeat(*s as usize))).collect();
                        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
                        let info = l.append(batch(&refs, T0), leader()).unwrap();
                        prop_assert_eq!(info.base_offset as usize, model.len());
                        last_batch_len = vals.len();
                        model.extend(vals);
                    }
                    Op::Reopen { clean } => {
                        if clean { l.close().unwrap(); }
                        drop(log.take());
                        log = Some(open(dir.path(), small_config()).0);
                    }
                    Op::TearTail(n) => {
                        drop(log.take());
                        let seg = active_segment_path(dir.path());
                        let len = std::fs::metadata(&seg).unwrap().len();
                        if len > 0 && last_batch_len > 0 {
                            let cut = (n as u64).min(len);
                            OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - cut).unwrap();
                            model.truncate(model.len() - last_batch_len);
                            last_batch_len = 0;
                        }
                        log = Some(open(dir.path(), small_config()).0);
                        // Tearing may also remove the segment's only batch
                        // header bytes; the log end must match the model.
                    }
                    Op::Read(at) => {
                        if !model.is_empty() {
                            let at = at as usize % model.len();
                            let recs = l.read_records(at as u64, 64, ReadBound::LogEnd).unwrap();
                            prop_assert_eq!(recs[0].offset as usize, at);
                            prop_assert_eq!(recs[0].value.as_deref(), Some(model[at].as_bytes()));
                        }
                    }
                }
                let l = log.as_ref().unwrap();
                prop_assert_eq!(l.log_end_offset() as usize, model.len());
            }
            let l = log.as_ref().unwrap();
            let got: Vec<String> = values(l, 0).into_iter().map(|x| x.1).collect();
            prop_assert_eq!(got, model);
        }
    }
}

#[test]
fn the_high_watermark_checkpoint_survives_a_reopen_and_follows_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.checkpointed_high_watermark(), None, "never checkpointed");
    fill(&log, 10);
    let log_end = log.log_end_offset();
    log.set_high_watermark(4);
    log.checkpoint_high_watermark().unwrap();
    assert_eq!(log.checkpointed_high_watermark(), Some(4));
    log.set_high_watermark(6);
    log.close().unwrap();
    drop(log);
    let (log, _) = open(dir.path(), small_config());
    // The log's own high watermark starts at its end (a sole replica's);
    // the checkpoint tells a follower how much was committed.
    assert_eq!(log.high_watermark(), log_end);
    assert_eq!(log.checkpointed_high_watermark(), Some(6), "a clean close checkpoints the current one");
    // A cut below the checkpoint lowers it, on disk too.
    let end = log.truncate_to(4).unwrap();
    assert!(end <= 4);
    assert_eq!(log.high_watermark(), end);
    assert_eq!(log.checkpointed_high_watermark(), Some(end));
    drop(log);
    let (log, _) = open(dir.path(), small_config());
    assert_eq!(log.checkpointed_high_watermark(), Some(end));
}

/// `segment.jitter.ms`: each segment's roll age is `segment_ms` less a
/// jitter of at most the setting, fixed by its base offset (the same on
/// every replica and after a restart), so segments do not all roll at once.
#[test]
fn segment_jitter_spreads_roll_times_within_the_setting() {
    let cfg = LogConfig { segment_ms: 60_000, segment_jitter_ms: 10_000, ..LogConfig::default() };
    let ages: Vec<i64> = (0..50u64).map(|b| super::roll_after(&cfg, b * 1000)).collect();
    assert!(ages.iter().all(|a| (50_000..=60_000).contains(a)), "{ages:?}");
    assert!(ages.iter().collect::<std::collections::BTreeSet<_>>().len() > 10, "spread: {ages:?}");
    assert_eq!(super::roll_after(&cfg, 7000), super::roll_after(&cfg, 7000));
    let none = LogConfig { segment_ms: 60_000, ..LogConfig::default() };
    assert_eq!(super::roll_after(&none, 7000), 60_000);
}
