//! Shared checks of Fjord's fuzz targets (see fuzz/README.md).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use fjord_log::batch::{self, BatchBuilder, BatchHeader, BatchSplitter, Compression, NewRecord, Record};
use fjord_log::{AppendOrigin, Log, LogConfig, LogError, ReadBound, SystemClock};

const SEGMENT: &str = "00000000000000000000.log";

/// Where the temporary log directories go: tmpfs when there is one, as every
/// open and append fsyncs. `FJORD_FUZZ_TMPDIR` overrides.
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(d) = std::env::var_os("FJORD_FUZZ_TMPDIR") {
            return PathBuf::from(d);
        }
        let shm = Path::new("/dev/shm");
        if tempfile::tempdir_in(shm).is_ok() { shm.to_path_buf() } else { std::env::temp_dir() }
    })
}

fn open(dir: &Path) -> Log {
    Log::open(dir, LogConfig::default(), Arc::new(SystemClock))
        .unwrap_or_else(|e| panic!("Log::open failed on a damaged segment instead of recovering: {e}"))
}

/// The records a reader should see in a recovered segment file: every batch
/// must validate; non-control batches contribute their records, except
/// compressed ones whose payload does not decompress (the CRC covers the
/// compressed bytes, not their meaning), which are unreadable.
fn expected_records(file: &[u8]) -> Vec<Record> {
    let bytes = Bytes::copy_from_slice(file);
    let mut consumed = 0;
    let mut out = Vec::new();
    for b in BatchSplitter::new(bytes) {
        let b = b.unwrap_or_else(|e| panic!("recovered segment holds a bad frame at byte {consumed}: {e}"));
        consumed += b.len();
        let h = batch::validate(&b).unwrap_or_else(|e| panic!("recovered segment keeps an invalid batch: {e}"));
        if h.is_control() {
            continue;
        }
        match batch::decode_records(&b) {
            Ok((_, recs)) => out.extend(recs),
            Err(_) if h.compression() != Ok(Compression::None) => {}
            Err(e) => panic!("valid uncompressed batch does not decode: {e}"),
        }
    }
    assert_eq!(consumed, file.len(), "recovered segment ends in a partial batch");
    out
}

/// Reads every record from `from` to the log end, batch by batch.
fn read_all(log: &Log, from: u64) -> Vec<Record> {
    let end = log.log_end_offset();
    let mut off = from;
    let mut out: Vec<Record> = Vec::new();
    while off < end {
        // Whole slices first; on an error retry the single batch at `off`, so
        // one unreadable (compressed) batch does not hide its neighbours.
        let recs = match log.read_records(off, 1 << 20, ReadBound::LogEnd) {
            Ok(r) => Ok(r),
            Err(_) => log.read_records(off, 1, ReadBound::LogEnd),
        };
        let unreadable = recs.is_err();
        match recs {
            Ok(recs) if !recs.is_empty() => {
                for r in &recs {
                    assert!(r.offset >= off && r.offset < end, "read_records({off}) returned offset {}", r.offset);
                }
                off = recs.last().map_or(off, |r| r.offset + 1);
                out.extend(recs);
                continue;
            }
            Ok(_) => {}
            Err(LogError::InvalidBatch(_)) => {}
            Err(e) => panic!("read_records({off}) failed on a recovered log: {e}"),
        }
        // Nothing readable at `off` (control batch, compressed batch, or a
        // batch whose last offsets hold no records): skip that batch.
        let r = log.read(off, 1, ReadBound::LogEnd).unwrap_or_else(|e| panic!("read({off}) failed: {e}"));
        let Some(slice) = r.slice else { break };
        let b = slice.to_bytes().unwrap_or_else(|e| panic!("slice read failed: {e}"));
        let h = BatchHeader::parse(&b).unwrap_or_else(|e| panic!("read({off}) returned a bad header: {e}"));
        assert!(h.next_offset() > off, "read({off}) returned a batch ending before it");
        assert!(
            !unreadable || h.compression() != Ok(Compression::None),
            "an uncompressed batch at {off} could not be read"
        );
        off = h.next_offset();
    }
    out
}

/// Rewrites the CRC of every complete batch frame in `data` (frames are
/// followed by their length fields from the start, as recovery does), so
/// mutations inside the CRC-covered part of a batch reach the code behind
/// the CRC check. Stops at the first frame that does not fit.
pub fn repair_crcs(data: &mut [u8]) {
    let mut pos = 0;
    while let Some(Ok(total)) = batch::peek_total_len(&data[pos..]) {
        let Some(frame) = data.get_mut(pos..pos + total) else { break };
        let crc = batch::compute_crc(frame);
        frame[17..21].copy_from_slice(&crc.to_be_bytes());
        pos += total;
    }
}

/// `data` as the only segment file (`00000000000000000000.log`) of a fresh
/// log directory, then `Log::open`: recovery must succeed (cutting off
/// whatever is invalid), leave a file of whole CRC-valid batches, serve
/// exactly the records of those batches, and accept a new append at the
/// recovered log end, which must survive a clean close and reopen.
pub fn check_recovery(data: &[u8]) {
    let dir = tempfile::Builder::new().prefix("fjord-fuzz-").tempdir_in(scratch_root()).expect("temp dir");
    let seg_path = dir.path().join(SEGMENT);
    std::fs::write(&seg_path, data).expect("write segment");

    let log = open(dir.path());
    let recovered = std::fs::read(&seg_path).expect("read recovered segment");
    assert!(data.starts_with(&recovered), "recovery changed bytes instead of truncating");

    let start = log.log_start_offset();
    let end = log.log_end_offset();
    assert!(start <= end);
    let expected: Vec<Record> = expected_records(&recovered).into_iter().filter(|r| r.offset >= start).collect();
    let got = read_all(&log, start);
    assert_eq!(got.len(), expected.len(), "read_records did not return every recovered record");
    assert!(got == expected, "read_records returned other records than the recovered segment holds");

    // A fresh append continues at the recovered log end...
    let mut b = BatchBuilder::new(1_700_000_000_000);
    b.push(&NewRecord {
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        ..Default::default()
    });
    let info = log
        .append(b.build(), AppendOrigin::Leader { epoch: 1 })
        .unwrap_or_else(|e| panic!("append after recovery failed (log end {end}): {e}"));
    assert_eq!(info.base_offset, end, "append did not continue at the recovered log end");
    assert_eq!(log.log_end_offset(), end + 1);
    let recs = log.read_records(end, 1 << 20, ReadBound::LogEnd).expect("read the appended record");
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].offset, recs[0].value.as_deref()), (end, Some(&b"v"[..])));

    // ...and survives a clean close and reopen (trusted-index path).
    log.close().expect("close");
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.log_end_offset(), end + 1, "log end changed across a clean reopen");
    let recs = log.read_records(end, 1 << 20, ReadBound::LogEnd).expect("read after reopen");
    assert_eq!(recs.len(), 1, "appended record lost across a clean reopen");
}
