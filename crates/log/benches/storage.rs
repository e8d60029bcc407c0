//! Storage benchmark: Fjord's log store against `fio` on the same directory.
//!
//! Run with `cargo bench -p fjord-log --bench storage`. One run measures, on
//! one disk directory:
//!
//! - **a**: buffered sequential write. fio (`--rw=write --bs=1M --ioengine=psync
//!   --end_fsync=0 --direct=0`) against one writer appending 1000 × 100-byte
//!   record batches with `Durability::Interval` (no fsync on the path).
//!   Target: Fjord ≥ 0.80 × fio.
//! - **b**: durable sequential write. fio with `--fdatasync=1` (an fdatasync
//!   after every 1 MiB write) against 64 writer threads appending 1000 ×
//!   100-byte record batches with `Durability::GroupCommit`. Target ≥ 0.70 × fio.
//! - **c**: sequential read from the page cache through `Log::read` +
//!   `LogSlice::to_bytes` with 1 MiB reads, after a warm-up pass. Target
//!   ≥ 2 GB/s. Two comparison figures are printed: the same reads copied
//!   with `pread` into one reused buffer (no allocation, no zeroing), and a
//!   zero-copy figure that hands each slice to the kernel (`sendfile`/`splice`
//!   through `std::io::copy` into `/dev/null`), as a network server would.
//!
//! Batches are built before timing: a pool of distinct pre-built batches is
//! cloned (a `BytesMut` clone is a memcpy) in chunks *outside* the timed
//! region (a), or up front per writer thread before the start barrier (b),
//! so neither throughput nor latency includes building or cloning.
//!
//! Environment:
//! - `FJORD_BENCH_DIR`: directory to write in (default `<target dir>/fjord-bench`);
//!   it should be on the disk you care about, not tmpfs;
//! - `FJORD_BENCH_BYTES`: bytes written per scenario and repetition (default
//!   1 GiB, quick mode 32 MiB); suffixes `K`, `M`, `G` (binary) are accepted;
//! - `FJORD_BENCH_REPS`: repetitions of a and b (default 3, quick mode 1);
//! - `FJORD_BENCH_QUICK=1`: small sizes, one repetition (CI smoke run).
//!
//! A missed target is reported, not fatal (machines are noisy); a missing
//! `fio` is fatal.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_log::batch::{BatchBuilder, BatchHeader, BatchSplitter, HEADER_LEN, LOG_OVERHEAD, NewRecord};
use fjord_log::{AppendOrigin, Clock, Durability, Log, LogConfig, LogSlice, ReadBound, SystemClock};
use hdrhistogram::Histogram;

/// Value bytes per record.
const RECORD_BYTES: usize = 100;
/// Records per appended batch.
const RECORDS_PER_BATCH: usize = 1000;
/// Concurrent writers of scenario b.
const WRITERS: usize = 64;
/// Distinct pre-built batches cloned for appends.
const POOL: usize = 16;
/// Batches cloned ahead of each timed chunk in scenario a.
const CHUNK: usize = 128;
/// `max_bytes` of each read in scenario c.
const READ_MAX_BYTES: usize = 1 << 20;

const TARGET_A: f64 = 0.80;
const TARGET_B: f64 = 0.70;
const TARGET_C_GBPS: f64 = 2.0;

#[derive(Debug)]
struct Settings {
    dir: PathBuf,
    fs_type: String,
    bytes: u64,
    reps: usize,
    quick: bool,
    /// Scenarios to run (`FJORD_BENCH_ONLY`, e.g. `a` or `a,c`); all by default.
    only: String,
}

/// Result of one write run (fio or Fjord).
#[derive(Debug, Clone, Copy, Default)]
struct WriteRun {
    bytes: u64,
    records: u64,
    secs: f64,
}

impl WriteRun {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
    fn rps(&self) -> f64 {
        self.records as f64 / self.secs
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; ignore arguments.
    let fio_version = match Command::new("fio").arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            eprintln!(
                "error: `fio` is not installed or not runnable; the storage benchmark compares against it.\n\
                 Install it with: apt-get update && apt-get install -y fio"
            );
            return ExitCode::from(2);
        }
    };
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&settings, &fio_version) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn settings() -> Result<Settings, String> {
    let quick = std::env::var("FJORD_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let bytes = match std::env::var("FJORD_BENCH_BYTES") {
        Ok(v) => parse_size(&v).ok_or_else(|| format!("FJORD_BENCH_BYTES={v:?} is not a size (e.g. 512M, 1G)"))?,
        Err(_) if quick => 32 << 20,
        Err(_) => 1 << 30,
    };
    // fio sizes are in whole 1 MiB blocks.
    let bytes = (bytes.max(4 << 20) >> 20) << 20;
    let reps = match std::env::var("FJORD_BENCH_REPS") {
        Ok(v) => v.parse::<usize>().map_err(|_| format!("FJORD_BENCH_REPS={v:?} is not a number"))?.max(1),
        Err(_) if quick => 1,
        Err(_) => 3,
    };
    let dir = match std::env::var_os("FJORD_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => default_dir(),
    };
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let dir = dir.canonicalize().map_err(|e| format!("canonicalize {}: {e}", dir.display()))?;
    let fs_type = fs_type(&dir);
    if fs_type == "tmpfs" || fs_type == "ramfs" {
        return Err(format!(
            "{} is on {fs_type}, which measures memory, not a disk; set FJORD_BENCH_DIR to a directory on disk",
            dir.display()
        ));
    }
    let only = std::env::var("FJORD_BENCH_ONLY").unwrap_or_else(|_| "abc".into()).to_ascii_lowercase();
    Ok(Settings { dir, fs_type, bytes, reps, quick, only })
}

/// `<target dir>/fjord-bench`, found from the bench executable
/// (`<target>/<profile>/deps/storage-…`).
fn default_dir() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|t| t.join("CACHEDIR.TAG").exists() || t.file_name().is_some_and(|n| n == "target"))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("fjord-bench")
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, shift) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 10),
        'M' => (&s[..s.len() - 1], 20),
        'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.trim().parse::<u64>().ok().map(|n| n << shift)
}

/// Filesystem type of the mount holding `dir` (longest matching mount point).
fn fs_type(dir: &Path) -> String {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(mnt), Some(ty)) = (f.next(), f.next(), f.next()) else { continue };
        let mnt = mnt.replace("\\040", " ");
        if dir.starts_with(&mnt) && best.as_ref().is_none_or(|(l, _)| mnt.len() >= *l) {
            best = Some((mnt.len(), ty.to_string()));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, t)| t)
}

/// Busy and total jiffies of all CPUs, and this process's own CPU jiffies,
/// to tell how much of the machine other processes used during a run.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    busy: u64,
    total: u64,
    own: u64,
}

fn cpu_sample() -> Option<CpuSample> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu.get(3)? + cpu.get(4)?;
    let own_stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime, stime, cutime, cstime are 14..17.
    let rest = own_stat.rsplit_once(')')?.1;
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    let own = f.get(11)? + f.get(12)? + f.get(13)? + f.get(14)?;
    Some(CpuSample { busy: total - idle, total, own })
}

/// Share of the machine's CPU time used by other processes between two samples.
fn foreign_cpu(a: Option<CpuSample>, b: Option<CpuSample>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let total = b.total.saturating_sub(a.total);
    let foreign = b.busy.saturating_sub(a.busy).saturating_sub(b.own.saturating_sub(a.own));
    (total > 0).then(|| foreign as f64 / total as f64)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap()
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
}

/// Medians and merged latencies of a write scenario.
#[derive(Debug)]
struct WriteScenario {
    label: String,
    fio: Vec<WriteRun>,
    fjord: Vec<WriteRun>,
    ratios: Vec<f64>,
    hist: Histogram<u64>,
    target: f64,
}

fn run(s: &Settings, fio_version: &str) -> io::Result<()> {
    let pool = build_pool();
    let batch_len = pool[0].len() as u64;
    let n_batches = s.bytes.div_ceil(batch_len) as usize;
    let cpu_start = cpu_sample();
    println!(
        "Fjord storage benchmark{}",
        if s.quick { " (QUICK mode: small sizes, numbers are indicative only)" } else { "" }
    );
    println!("  dir            {} ({})", s.dir.display(), s.fs_type);
    println!("  machine        {} CPUs, {}", cpus(), mem_total());
    println!("  fio            {fio_version}");
    println!(
        "  workload       {} per scenario and repetition, {} repetition(s); batches of {} × {} B records = {} B on disk",
        human(s.bytes),
        s.reps,
        RECORDS_PER_BATCH,
        RECORD_BYTES,
        batch_len
    );
    println!("  load average   {}", fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    println!();

    clean_dir(&s.dir)?;
    let mut writes = Vec::new();
    if s.only.contains('a') || s.only.contains('b') {
        // One unmeasured fio pass primes the page allocator and the filesystem,
        // so neither side pays for being first.
        fio(s, "warmup", &["--end_fsync=0"])?;
    }

    if s.only.contains('a') {
        println!("[a] buffered sequential write: fio vs Fjord Interval, 1 writer");
        let mut sc = WriteScenario {
            label: "a  append Interval, 1 writer".into(),
            fio: Vec::new(),
            fjord: Vec::new(),
            ratios: Vec::new(),
            hist: new_histogram(),
            target: TARGET_A,
        };
        for rep in 0..s.reps {
            // Alternate who goes first so that drift in the machine's state hits both.
            let (f, j) = if rep % 2 == 0 {
                let f = fio(s, "seqwrite", &["--end_fsync=0"])?;
                (f, fjord_interval(s, &pool, n_batches, &mut sc.hist)?)
            } else {
                let j = fjord_interval(s, &pool, n_batches, &mut sc.hist)?;
                (fio(s, "seqwrite", &["--end_fsync=0"])?, j)
            };
            println!(
                "    rep {}: fio {:8.1} MB/s   fjord {:8.1} MB/s {:>11.0} rec/s   ratio {:.2}",
                rep + 1,
                f.mbps(),
                j.mbps(),
                j.rps(),
                j.mbps() / f.mbps()
            );
            sc.ratios.push(j.mbps() / f.mbps());
            sc.fio.push(f);
            sc.fjord.push(j);
        }
        writes.push(sc);
    }

    if s.only.contains('b') {
        println!("[b] durable sequential write: fio --fdatasync=1 vs Fjord GroupCommit, {WRITERS} writers");
        let mut sc = WriteScenario {
            label: format!("b  append GroupCommit, {WRITERS} writers"),
            fio: Vec::new(),
            fjord: Vec::new(),
            ratios: Vec::new(),
            hist: new_histogram(),
            target: TARGET_B,
        };
        for rep in 0..s.reps {
            let (f, (j, syncs)) = if rep % 2 == 0 {
                let f = fio(s, "seqwrite-fdatasync", &["--fdatasync=1"])?;
                (f, fjord_group_commit(s, &pool, n_batches, &mut sc.hist)?)
            } else {
                let j = fjord_group_commit(s, &pool, n_batches, &mut sc.hist)?;
                (fio(s, "seqwrite-fdatasync", &["--fdatasync=1"])?, j)
            };
            println!(
                "    rep {}: fio {:8.1} MB/s   fjord {:8.1} MB/s {:>11.0} rec/s   ratio {:.2}   {} durable-offset advances seen (~{:.1} batches each)",
                rep + 1,
                f.mbps(),
                j.mbps(),
                j.rps(),
                j.mbps() / f.mbps(),
                syncs,
                n_batches as f64 / syncs.max(1) as f64
            );
            sc.ratios.push(j.mbps() / f.mbps());
            sc.fio.push(f);
            sc.fjord.push(j);
        }
        writes.push(sc);
    }

    let mut reads = Vec::new();
    if s.only.contains('c') {
        println!("[c] sequential read from the page cache, {} reads", human(READ_MAX_BYTES as u64));
        reads = read_bench(s, &pool, n_batches)?;
        for r in &reads {
            println!(
                "    {:<34} {:6.2} GB/s (best of {} passes; median {:.2} GB/s), {} reads, {:.1} µs/read",
                r.name,
                r.best_gbps,
                r.passes,
                r.median_gbps,
                r.reads,
                r.best_secs * 1e6 / r.reads as f64
            );
        }
    }
    let foreign = foreign_cpu(cpu_start, cpu_sample());
    clean_dir(&s.dir)?;

    // --- summary ------------------------------------------------------------------------
    let med = |v: &[WriteRun], f: fn(&WriteRun) -> f64| median(v.iter().map(f).collect());
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1e3;
    println!();
    println!("Summary (write rows: medians over {} repetition(s); latency = one append call, all repetitions)", s.reps);
    println!(
        "{:<44} {:>9} {:>12} {:>9} {:>9} {:>9} {:>10} {:>9} {:>6} {:>8}  verdict",
        "scenario", "MB/s", "records/s", "p50 µs", "p99 µs", "p999 µs", "max µs", "fio MB/s", "ratio", "target"
    );
    for sc in &writes {
        let r = median(sc.ratios.clone());
        println!(
            "{:<44} {:>9.1} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>6.2} {:>8}  {}",
            sc.label,
            med(&sc.fjord, WriteRun::mbps),
            med(&sc.fjord, WriteRun::rps),
            q(&sc.hist, 0.5),
            q(&sc.hist, 0.99),
            q(&sc.hist, 0.999),
            sc.hist.max() as f64 / 1e3,
            med(&sc.fio, WriteRun::mbps),
            r,
            format!("≥{:.2}", sc.target),
            verdict(r >= sc.target)
        );
    }
    for (i, r) in reads.iter().enumerate() {
        let (target, v) = if i == 0 {
            (format!("≥{TARGET_C_GBPS:.0} GB/s"), verdict(r.best_gbps >= TARGET_C_GBPS))
        } else {
            ("-".into(), "(info)")
        };
        println!(
            "{:<44} {:>9.0} {:>12.0} {:>9} {:>9} {:>9} {:>10} {:>9} {:>6} {:>8}  {} ({:.2} GB/s)",
            format!("c  read: {}", r.name),
            r.best_gbps * 1e3,
            r.records as f64 / r.best_secs,
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            target,
            v,
            r.best_gbps
        );
    }
    println!();
    if !writes.is_empty() {
        println!("ratio = Fjord MB/s / fio MB/s, median of per-repetition ratios (each repetition runs fio and Fjord");
        println!(
            "back to back, alternating which goes first); MB = 10^6 bytes of batches on disk (record values are {:.0}% of them).",
            (RECORDS_PER_BATCH * RECORD_BYTES) as f64 / batch_len as f64 * 100.0
        );
    }
    if !reads.is_empty() {
        println!(
            "read rows: best pass; bytes of complete batches delivered (partial trailing batches re-read are not counted)."
        );
    }
    if let Some(f) = foreign {
        println!(
            "other processes used {:.0}% of the machine's CPU time during this run{}",
            f * 100.0,
            if f > 0.10 { " — numbers are likely disturbed; rerun on an idle machine" } else { "" }
        );
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "BELOW TARGET" }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn mem_total() -> String {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: u64 = m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{} RAM", human(kb << 10)))
        })
        .unwrap_or_else(|| "RAM unknown".into())
}

fn human(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b as f64 / 1024.0)
    }
}

/// Removes everything in the bench directory, then flushes the filesystem so
/// the next measurement does not run against the previous one's writeback.
fn clean_dir(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() { fs::remove_dir_all(&p)? } else { fs::remove_file(&p)? }
    }
    settle();
    Ok(())
}

fn settle() {
    let _ = Command::new("sync").status();
}

/// `POOL` distinct batches of `RECORDS_PER_BATCH` records of `RECORD_BYTES`
/// pseudo-random bytes.
fn build_pool() -> Vec<BytesMut> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let now = SystemClock.now_ms();
    (0..POOL)
        .map(|_| {
            let mut b = BatchBuilder::new(now);
            for _ in 0..RECORDS_PER_BATCH {
                let mut v = vec![0u8; RECORD_BYTES];
                for chunk in v.chunks_mut(8) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
                }
                b.push(&NewRecord { value: Some(Bytes::from(v)), ..Default::default() });
            }
            b.build()
        })
        .collect()
}

/// Runs one fio sequential write of `s.bytes` into the bench directory and
/// returns its bandwidth. The file is created fresh and extended as written
/// (`--fallocate=none`), like a Fjord segment, and removed afterwards.
fn fio(s: &Settings, name: &str, extra: &[&str]) -> io::Result<WriteRun> {
    let file = s.dir.join(format!("fio-{name}.dat"));
    let _ = fs::remove_file(&file);
    let out = Command::new("fio")
        .arg(format!("--name={name}"))
        .arg(format!("--filename={}", file.display()))
        .args(["--rw=write", "--bs=1M", "--ioengine=psync", "--direct=0", "--fallocate=none", "--output-format=json"])
        .arg(format!("--size={}", s.bytes))
        .args(extra)
        .output()?;
    let _ = fs::remove_file(&file);
    settle();
    if !out.status.success() {
        return Err(io::Error::other(format!("fio failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    // fio may print warnings before the JSON document.
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.find('{').map_or("", |i| &text[i..]);
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| io::Error::other(format!("fio JSON: {e}: {text}")))?;
    let w = &v["jobs"][0]["write"];
    let bw = w["bw_bytes"].as_f64().ok_or_else(|| io::Error::other("fio JSON has no jobs[0].write.bw_bytes"))?;
    let bytes = w["io_bytes"].as_u64().unwrap_or(s.bytes);
    Ok(WriteRun { bytes, records: 0, secs: bytes as f64 / bw })
}

fn open_log(dir: &Path, durability: Durability) -> io::Result<Log> {
    let _ = fs::remove_dir_all(dir);
    let cfg = LogConfig { durability, ..LogConfig::default() };
    Log::open(dir, cfg, Arc::new(SystemClock)).map_err(io::Error::other)
}

/// Scenario a: one writer, `Durability::Interval`, clones prepared outside the timed region.
fn fjord_interval(s: &Settings, pool: &[BytesMut], n: usize, hist: &mut Histogram<u64>) -> io::Result<WriteRun> {
    let dir = s.dir.join("fjord-interval");
    let run = {
        let log = open_log(&dir, Durability::Interval(Duration::from_secs(1)))?;
        append_interval(&log, pool, n, hist)?
    };
    fs::remove_dir_all(&dir)?;
    settle();
    Ok(run)
}

fn append_interval(log: &Log, pool: &[BytesMut], n: usize, hist: &mut Histogram<u64>) -> io::Result<WriteRun> {
    let mut run = WriteRun::default();
    let mut timed = Duration::ZERO;
    let mut chunk: Vec<BytesMut> = Vec::with_capacity(CHUNK);
    let mut done = 0;
    while done < n {
        let k = CHUNK.min(n - done);
        chunk.extend((done..done + k).map(|i| pool[i % pool.len()].clone()));
        let start = Instant::now();
        for b in chunk.drain(..) {
            let t = Instant::now();
            let info = log.append(b, AppendOrigin::Leader { epoch: 0 }).map_err(io::Error::other)?;
            record(hist, t.elapsed());
            run.bytes += info.bytes as u64;
            run.records += info.records;
        }
        timed += start.elapsed();
        done += k;
    }
    run.secs = timed.as_secs_f64();
    Ok(run)
}

/// Scenario b: `WRITERS` threads, `Durability::GroupCommit`. Each thread
/// clones its share of batches before the start barrier. Also returns how
/// many times the durable offset was seen to advance (≈ fsyncs that covered
/// appends), sampled by the appenders themselves.
fn fjord_group_commit(
    s: &Settings,
    pool: &[BytesMut],
    n: usize,
    hist: &mut Histogram<u64>,
) -> io::Result<(WriteRun, u64)> {
    let dir = s.dir.join("fjord-group-commit");
    let log = Arc::new(open_log(&dir, Durability::GroupCommit)?);
    let barrier = Arc::new(Barrier::new(WRITERS + 1));
    let durable_seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let share = n / WRITERS + usize::from(w < n % WRITERS);
        let batches: Vec<BytesMut> = (0..share).map(|i| pool[(w + i * WRITERS) % pool.len()].clone()).collect();
        let (log, barrier, durable_seen) = (log.clone(), barrier.clone(), durable_seen.clone());
        handles.push(std::thread::spawn(move || -> io::Result<(WriteRun, Histogram<u64>, Instant)> {
            let mut h = new_histogram();
            let mut run = WriteRun::default();
            let mut seen = Vec::with_capacity(batches.len());
            barrier.wait();
            for b in batches {
                let t = Instant::now();
                let info = log.append(b, AppendOrigin::Leader { epoch: 0 }).map_err(io::Error::other)?;
                record(&mut h, t.elapsed());
                run.bytes += info.bytes as u64;
                run.records += info.records;
                seen.push(log.durable_offset());
            }
            let end = Instant::now();
            durable_seen.lock().unwrap().extend(seen);
            Ok((run, h, end))
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut total = WriteRun::default();
    let mut end = start;
    for h in handles {
        let (run, th, e) = h.join().map_err(|_| io::Error::other("writer thread panicked"))??;
        total.bytes += run.bytes;
        total.records += run.records;
        hist.add(&th).map_err(|e| io::Error::other(e.to_string()))?;
        end = end.max(e);
    }
    total.secs = (end - start).as_secs_f64();
    let advances = durable_seen.lock().unwrap().len() as u64;
    drop(log);
    fs::remove_dir_all(&dir)?;
    settle();
    Ok((total, advances))
}

#[derive(Debug)]
struct ReadFigure {
    name: &'static str,
    best_gbps: f64,
    median_gbps: f64,
    best_secs: f64,
    passes: usize,
    reads: u64,
    records: u64,
}

/// How one read pass moves data out of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// `LogSlice::to_bytes` (fresh zeroed buffer + pread), then split batches.
    ToBytes,
    /// pread into one reused buffer, then parse batch headers.
    PreadReuse,
    /// Kernel-side transfer of the slice to /dev/null (sendfile/splice via
    /// `std::io::copy`), walking batch headers with 61-byte preads.
    ZeroCopy,
}

/// Scenario c: write `n` batches, read them all once to warm the page cache,
/// then time full sequential passes in each mode.
fn read_bench(s: &Settings, pool: &[BytesMut], n: usize) -> io::Result<Vec<ReadFigure>> {
    let dir = s.dir.join("fjord-read");
    let log = open_log(&dir, Durability::Interval(Duration::from_secs(1)))?;
    let mut scratch = new_histogram();
    append_interval(&log, pool, n, &mut scratch)?;
    let end = log.log_end_offset();
    // Warm-up: everything is read once through the API.
    let (warm_bytes, _, _) = read_pass(&log, end, ReadMode::ToBytes, &mut Vec::new())?;
    let expected = pool[0].len() as u64 * n as u64;
    if warm_bytes != expected {
        return Err(io::Error::other(format!("read back {warm_bytes} bytes, wrote {expected}")));
    }
    // Enough passes for ~2 s per mode at 4 GB/s, between 2 and 8.
    let passes = ((8e9 / expected as f64).ceil() as usize).clamp(2, 8);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for (mode, name) in [
        (ReadMode::ToBytes, "Log::read + to_bytes"),
        (ReadMode::PreadReuse, "Log::read + pread, reused buffer"),
        (ReadMode::ZeroCopy, "Log::read + sendfile (zero-copy)"),
    ] {
        let mut gbps = Vec::new();
        let mut best_secs = f64::MAX;
        let (mut reads, mut records) = (0, 0);
        for _ in 0..passes {
            let start = Instant::now();
            let (bytes, r, recs) = read_pass(&log, end, mode, &mut buf)?;
            let secs = start.elapsed().as_secs_f64();
            if bytes != expected {
                return Err(io::Error::other(format!("{name}: read {bytes} bytes, expected {expected}")));
            }
            gbps.push(bytes as f64 / secs / 1e9);
            if secs < best_secs {
                best_secs = secs;
            }
            (reads, records) = (r, recs);
        }
        out.push(ReadFigure {
            name,
            best_gbps: gbps.iter().copied().fold(0.0, f64::max),
            median_gbps: median(gbps),
            best_secs,
            passes,
            reads,
            records,
        });
    }
    drop(log);
    fs::remove_dir_all(&dir)?;
    Ok(out)
}

/// One sequential pass over offsets `0..end`. Returns (bytes of complete
/// batches consumed, reads issued, records consumed). A read of `max_bytes`
/// usually ends inside a batch; that partial batch is read again by the next
/// read (as a Kafka consumer would), and only complete batches count.
fn read_pass(log: &Log, end: u64, mode: ReadMode, buf: &mut Vec<u8>) -> io::Result<(u64, u64, u64)> {
    let mut offset = 0;
    let (mut bytes, mut reads, mut records) = (0u64, 0u64, 0u64);
    let mut null = if mode == ReadMode::ZeroCopy { Some(fs::File::create("/dev/null")?) } else { None };
    while offset < end {
        let r = log.read(offset, READ_MAX_BYTES, ReadBound::LogEnd).map_err(io::Error::other)?;
        let slice = r.slice.ok_or_else(|| io::Error::other(format!("no data at offset {offset}")))?;
        reads += 1;
        let (used, next, recs) = match mode {
            ReadMode::ToBytes => {
                let data = slice.to_bytes().map_err(io::Error::other)?;
                let (mut used, mut next, mut recs) = (0u64, offset, 0u64);
                for b in BatchSplitter::new(data) {
                    let b = b.map_err(io::Error::other)?;
                    let h = BatchHeader::parse(&b).map_err(io::Error::other)?;
                    used += b.len() as u64;
                    next = h.next_offset();
                    recs += u64::from(h.record_count);
                }
                (used, next, recs)
            }
            ReadMode::PreadReuse => {
                buf.resize(slice.len(), 0);
                slice.file().read_exact_at(&mut buf[..slice.len()], slice.position())?;
                walk_headers(&buf[..slice.len()], offset)?
            }
            ReadMode::ZeroCopy => {
                let (used, next, recs) = walk_headers_in_file(&slice, offset)?;
                let mut file: &fs::File = slice.file();
                file.seek(SeekFrom::Start(slice.position()))?;
                let copied = io::copy(&mut io::Read::take(file, used), null.as_mut().unwrap())?;
                if copied != used {
                    return Err(io::Error::other("short zero-copy transfer"));
                }
                (used, next, recs)
            }
        };
        if next <= offset {
            return Err(io::Error::other(format!(
                "no complete batch in a {}-byte read at offset {offset}",
                slice.len()
            )));
        }
        bytes += used;
        records += recs;
        offset = next;
    }
    Ok((bytes, reads, records))
}

/// Complete batches at the start of `data`: (bytes, next offset, records).
fn walk_headers(data: &[u8], mut next: u64) -> io::Result<(u64, u64, u64)> {
    let (mut pos, mut recs) = (0usize, 0u64);
    while data.len() - pos >= HEADER_LEN {
        let h = BatchHeader::parse(&data[pos..]).map_err(io::Error::other)?;
        if h.total_len() > data.len() - pos {
            break;
        }
        pos += h.total_len();
        next = h.next_offset();
        recs += u64::from(h.record_count);
    }
    Ok((pos as u64, next, recs))
}

/// Like [`walk_headers`], reading only the batch headers from the slice's file.
fn walk_headers_in_file(slice: &LogSlice, mut next: u64) -> io::Result<(u64, u64, u64)> {
    let (mut pos, mut recs) = (0usize, 0u64);
    let mut head = [0u8; HEADER_LEN];
    while slice.len() - pos >= LOG_OVERHEAD.max(HEADER_LEN) {
        slice.file().read_exact_at(&mut head, slice.position() + pos as u64)?;
        let h = BatchHeader::parse(&head).map_err(io::Error::other)?;
        if h.total_len() > slice.len() - pos {
            break;
        }
        pos += h.total_len();
        next = h.next_offset();
        recs += u64::from(h.record_count);
    }
    Ok((pos as u64, next, recs))
}
