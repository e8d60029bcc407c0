//! Criterion micro-benchmarks of the log store's hot paths.
//!
//! Run with `cargo bench -p fjord-log --bench log` (about 1.5 minutes).
//!
//! - `batch/build`, `batch/validate`, `batch/build_validate`: one batch of
//!   1000 records with 100-byte values (throughput in batch bytes);
//! - `batch/decode_records`: decoding that batch into owned records;
//! - `append/interval_1000x100B`: `Log::append` of that batch with
//!   `Durability::Interval` (page cache only; the batch is cloned from a
//!   pre-built pool outside the timed region, and the log is recreated every
//!   256 MiB, also outside it, so no segment ever rolls);
//! - `read/random_offset`: `Log::read` at a random offset of a 1M-record log
//!   of 10-record batches, which is a binary search of the sparse index plus
//!   a scan of at most `index_interval_bytes` of batch headers; and
//!   `read/random_offset_to_bytes`, the same plus copying the batch out.
//!
//! Logs are written under `FJORD_BENCH_DIR` or `<target dir>/fjord-bench`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput};
use fjord_log::batch::{self, BatchBuilder, NewRecord};
use fjord_log::{AppendOrigin, Durability, Log, LogConfig, ReadBound, SystemClock};

const RECORD_BYTES: usize = 100;
const RECORDS_PER_BATCH: usize = 1000;
const POOL: usize = 16;
/// The append benchmark starts a fresh log after this many bytes.
const APPEND_LOG_LIMIT: u64 = 256 << 20;
/// Records in the log of the random-read benchmark, in batches of `READ_BATCH`.
const READ_RECORDS: u64 = 1_000_000;
const READ_BATCH: usize = 10;

fn value(seed: &mut u64) -> Bytes {
    let mut v = vec![0u8; RECORD_BYTES];
    for chunk in v.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(v)
}

fn records(n: usize, seed: &mut u64) -> Vec<NewRecord> {
    (0..n).map(|_| NewRecord { value: Some(value(seed)), ..Default::default() }).collect()
}

fn build(recs: &[NewRecord]) -> BytesMut {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for r in recs {
        b.push(r);
    }
    b.build()
}

fn bench_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("FJORD_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
            .filter(|t| t.join("CACHEDIR.TAG").exists())
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("fjord-bench")
    });
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open(dir: &Path) -> Log {
    let _ = std::fs::remove_dir_all(dir);
    let cfg = LogConfig { durability: Durability::Interval(Duration::from_secs(1)), ..LogConfig::default() };
    Log::open(dir, cfg, Arc::new(SystemClock)).unwrap()
}

fn batch_benches(c: &mut Criterion) {
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let recs = records(RECORDS_PER_BATCH, &mut seed);
    let built = build(&recs);
    let frozen = built.clone().freeze();
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Bytes(built.len() as u64));
    g.bench_function("build", |b| b.iter(|| build(black_box(&recs))));
    g.bench_function("validate", |b| b.iter(|| batch::validate(black_box(&built)).unwrap()));
    g.bench_function("build_validate", |b| {
        b.iter(|| {
            let batch = build(black_box(&recs));
            batch::validate(&batch).unwrap();
            batch
        })
    });
    g.bench_function("decode_records", |b| b.iter(|| batch::decode_records(black_box(&frozen)).unwrap()));
    g.finish();
}

fn append_benches(c: &mut Criterion) {
    let mut seed = 0x2545_F491_4F6C_DD1D;
    let pool: Vec<BytesMut> = (0..POOL).map(|_| build(&records(RECORDS_PER_BATCH, &mut seed))).collect();
    let batch_len = pool[0].len() as u64;
    let dir = bench_dir("criterion-append");
    let log_dir = dir.join("log");
    let mut log = open(&log_dir);
    let mut written = 0u64;
    let mut next = 0usize;
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Bytes(batch_len));
    g.bench_function("interval_1000x100B", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                if written >= APPEND_LOG_LIMIT {
                    // Recreating the log discards its dirty pages: no writeback, no roll.
                    log = open(&log_dir);
                    written = 0;
                }
                let batch = pool[next % POOL].clone();
                next += 1;
                let start = Instant::now();
                let info = log.append(batch, AppendOrigin::Leader { epoch: 0 }).unwrap();
                timed += start.elapsed();
                written += info.bytes as u64;
            }
            timed
        })
    });
    g.finish();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

fn read_benches(c: &mut Criterion) {
    let mut seed = 0x1234_5678_9ABC_DEF1;
    let pool: Vec<BytesMut> = (0..POOL).map(|_| build(&records(READ_BATCH, &mut seed))).collect();
    let dir = bench_dir("criterion-read");
    let log = open(&dir.join("log"));
    let batches = READ_RECORDS as usize / READ_BATCH;
    // Append several batches per call so that building the log is quick.
    for chunk in 0..batches / 100 {
        let mut data = BytesMut::new();
        for i in 0..100 {
            data.extend_from_slice(&pool[(chunk * 100 + i) % POOL]);
        }
        log.append(data, AppendOrigin::Leader { epoch: 0 }).unwrap();
    }
    let end = log.log_end_offset();
    assert_eq!(end, READ_RECORDS);
    let mut rng = 0xDEAD_BEEF_CAFE_F00Du64;
    let mut random_offset = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % end
    };
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(1));
    g.bench_function("random_offset", |b| {
        b.iter_batched(
            &mut random_offset,
            |off| {
                let r = log.read(off, 1, ReadBound::LogEnd).unwrap();
                let s = r.slice.unwrap();
                assert!(s.first_offset <= off);
                s
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("random_offset_to_bytes", |b| {
        b.iter_batched(
            &mut random_offset,
            |off| log.read(off, 1, ReadBound::LogEnd).unwrap().slice.unwrap().to_bytes().unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    batch_benches(&mut c);
    append_benches(&mut c);
    read_benches(&mut c);
    c.final_summary();
}
