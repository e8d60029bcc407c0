//! Storage benchmark: Fjord's log store against `fio` on the same directory.
//!
//! Run with `cargo bench -p fjord-log --bench storage`. One run measures, on
//! one disk directory:
//!
//! - **a**: buffered sequential write. fio (`--rw=write --bs=1M --ioengine=psync
//!   --end_fsync=0 --direct=0 --fallocate=none`) against one writer appending
//!   1000 × 100-byte record batches with `Durability::Interval` (no fsync on
//!   the path). Target: Fjord ≥ 0.80 × fio. For context it also runs fio with
//!   Fjord's write size (`--bs=<batch bytes>`, row a0) and the Fjord appends
//!   with segments of a quarter of the data, so that three segment rolls
//!   happen (row a'; a roll fsyncs the sealed segment on the append path).
//! - **b**: durable sequential write. fio with `--fdatasync=1` (an fdatasync
//!   after every 1 MiB write) against 64 writer threads appending 1000 ×
//!   100-byte record batches with `Durability::GroupCommit`. Target ≥ 0.70 × fio.
//! - **c**: sequential read from the page cache through `Log::read` +
//!   `LogSlice::to_bytes` with 1 MiB reads, after a warm-up pass. Target
//!   ≥ 2 GB/s. Two comparison figures are printed: the same reads copied
//!   with `pread` into one reused buffer (no allocation, no zeroing), and a
//!   zero-copy figure that hands each slice to the kernel (`sendfile` through
//!   `std::io::copy` into `/dev/null`), as a network server would.
//!
//! Each repetition of a and b runs fio and Fjord back to back (alternating
//! which goes first) and the ratio is the median of the per-repetition
//! ratios. Fio writes a fresh file that it extends as it goes
//! (`--fallocate=none`), like a segment. Before every measured write run the
//! bench syncs and *primes*: it writes and deletes a file of the same size
//! (see `prepare` for why).
//!
//! Batches are built before timing: a pool of distinct pre-built batches is
//! cloned (a `BytesMut` clone is a memcpy) in chunks *outside* the timed
//! region (a), or up front per writer thread before the start barrier (b),
//! so neither throughput nor latency includes building or cloning.
//!
//! Environment:
//! - `FJORD_BENCH_DIR`: directory to write in (default `<target dir>/fjord-bench`);
//!   it must be on the disk you care about; tmpfs is refused;
//! - `FJORD_BENCH_BYTES`: bytes written per scenario and repetition (default
//!   1 GiB, quick mode 32 MiB); suffixes `K`, `M`, `G` (binary) are accepted;
//! - `FJORD_BENCH_REPS`: repetitions of a and b (default 3, quick mode 1);
//! - `FJORD_BENCH_QUICK=1`: small sizes, one repetition (CI smoke run);
//! - `FJORD_BENCH_ONLY`: scenarios to run, e.g. `a` or `bc` (default all);
//! - `FJORD_BENCH_PRIME=0`: do not prime before write runs.
//!
//! A missed target is reported, not fatal (machines are noisy); a missing
//! `fio` is fatal (exit code 2).
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

#[path = "storage/read.rs"]
mod read;
use read::read_bench;

/// Value bytes per record.
const RECORD_BYTES: usize = 100;
/// Records per appended batch.
const RECORDS_PER_BATCH: usize = 1000;
/// Concurrent writers of scenario b.
const WRITERS: usize = 64;
/// Concurrent producers of scenario a (a1 is the same with one).
const PRODUCERS_A: usize = 4;
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
    /// Write and delete a file of `bytes` right before each measured write run.
    prime: bool,
}

/// Result of one write run (fio or Fjord).
#[derive(Debug, Clone, Copy, Default)]
struct WriteRun {
    bytes: u64,
    records: u64,
    secs: f64,
    /// CPU cores this process used during the run (Fjord runs only).
    cores: f64,
    /// Share of the machine's CPU time used by other processes during the run.
    others: f64,
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
    let prime = std::env::var("FJORD_BENCH_PRIME").map_or(true, |v| v != "0");
    Ok(Settings { dir, fs_type, bytes, reps, quick, only, prime })
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

/// Cores used by this process, and the share of the machine's CPU time used
/// by other processes, between two samples.
fn cpu_use(a: Option<CpuSample>, b: Option<CpuSample>) -> (f64, f64) {
    let (Some(a), Some(b)) = (a, b) else { return (f64::NAN, f64::NAN) };
    let total = b.total.saturating_sub(a.total).max(1) as f64;
    let own = b.own.saturating_sub(a.own) as f64;
    (own / (total / cpus() as f64), foreign_cpu(Some(a), Some(b)).unwrap_or(f64::NAN))
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
    /// `None` for information-only rows.
    target: Option<f64>,
}

fn run(s: &Settings, fio_version: &str) -> io::Result<()> {
    let pool = build_pool();
    let batch_len = pool[0].len() as u64;
    // Whole batches that fit in `bytes`: with the default 1 GiB of data and
    // 1 GiB segments, the headline runs never roll (see scenario a').
    let n_batches = (s.bytes / batch_len).max(1) as usize;
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
    println!(
        "  priming        {}",
        if s.prime {
            "on: a file of the same size is written and deleted right before each measured write run"
        } else {
            "off (FJORD_BENCH_PRIME=0)"
        }
    );
    println!("  load average   {}", fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    println!();

    clean_dir(&s.dir)?;
    let mut writes = Vec::new();
    let mut rolling = None;
    let mut fio_small = None;

    if s.only.contains('a') {
        println!("[a] buffered sequential write: fio vs Fjord Interval, {PRODUCERS_A} producers (a1: 1 producer)");
        let mut sc = WriteScenario {
            label: format!("a  append Interval, {PRODUCERS_A} writers"),
            fio: Vec::new(),
            fjord: Vec::new(),
            ratios: Vec::new(),
            hist: new_histogram(),
            target: Some(TARGET_A),
        };
        let mut single = WriteScenario {
            label: "a1 append Interval, 1 writer".into(),
            fio: Vec::new(),
            fjord: Vec::new(),
            ratios: Vec::new(),
            hist: new_histogram(),
            target: None,
        };
        let batch_bs = batch_len.to_string();
        let mut fio_batch_bs = Vec::new();
        for rep in 0..s.reps {
            // Alternate who goes first so that drift in the machine's state hits both.
            let many = |h: &mut Histogram<u64>| {
                fjord_concurrent(s, &pool, n_batches, Durability::Interval(Duration::from_secs(1)), PRODUCERS_A, h)
                    .map(|(run, _)| run)
            };
            let (f, fb, j, one) = if rep % 2 == 0 {
                let f = fio(s, "seqwrite", "1M", &["--end_fsync=0"])?;
                let fb = fio(s, "seqwrite-batch-size", &batch_bs, &["--end_fsync=0"])?;
                (f, fb, many(&mut sc.hist)?, fjord_interval(s, &pool, n_batches, &mut single.hist)?)
            } else {
                let one = fjord_interval(s, &pool, n_batches, &mut single.hist)?;
                let j = many(&mut sc.hist)?;
                let fb = fio(s, "seqwrite-batch-size", &batch_bs, &["--end_fsync=0"])?;
                (fio(s, "seqwrite", "1M", &["--end_fsync=0"])?, fb, j, one)
            };
            println!(
                "    rep {}: a1 (1 writer) fjord {:7.1} MB/s   ratio {:.2} (to fio 1M), {:.2} (to fio bs={batch_bs})",
                rep + 1,
                one.mbps(),
                one.mbps() / f.mbps(),
                one.mbps() / fb.mbps()
            );
            single.ratios.push(one.mbps() / f.mbps());
            single.fio.push(f);
            single.fjord.push(one);
            println!(
                "    rep {}: fio {:7.1} MB/s (bs={batch_bs}: {:7.1} MB/s)   fjord {:7.1} MB/s {:>9.0} rec/s   ratio {:.2}   [fjord used {:.2} cores; others {:.0}% of the machine]",
                rep + 1,
                f.mbps(),
                fb.mbps(),
                j.mbps(),
                j.rps(),
                j.mbps() / f.mbps(),
                j.cores,
                j.others * 100.0
            );
            sc.ratios.push(j.mbps() / f.mbps());
            sc.fio.push(f);
            sc.fjord.push(j);
            fio_batch_bs.push(fb.mbps());
        }
        writes.push(single);
        fio_small = Some((batch_bs, median(fio_batch_bs)));
        // a': the same appends, but with segments of a quarter of the data, so
        // three rolls happen; each roll fsyncs the sealed segment on the append path.
        let seg = (s.bytes / 4).max(1 << 20);
        let mut roll_hist = new_histogram();
        let j = fjord_interval_with(s, &pool, n_batches, seg, &mut roll_hist)?;
        let fio_med = median(sc.fio.iter().map(WriteRun::mbps).collect());
        println!(
            "    a': segment_bytes = {} ({} rolls): fjord {:7.1} MB/s {:>9.0} rec/s   ratio {:.2} (to the median fio figure)   max append {:.1} ms",
            human(seg),
            (n_batches as u64 * batch_len).saturating_sub(1) / seg,
            j.mbps(),
            j.rps(),
            j.mbps() / fio_med,
            roll_hist.max() as f64 / 1e6
        );
        writes.push(sc);
        rolling = Some((seg, j, roll_hist, fio_med));
    }

    if s.only.contains('b') {
        println!("[b] durable sequential write: fio --fdatasync=1 vs Fjord GroupCommit, {WRITERS} writers");
        let mut sc = WriteScenario {
            label: format!("b  append GroupCommit, {WRITERS} writers"),
            fio: Vec::new(),
            fjord: Vec::new(),
            ratios: Vec::new(),
            hist: new_histogram(),
            target: Some(TARGET_B),
        };
        for rep in 0..s.reps {
            let (f, (j, syncs)) = if rep % 2 == 0 {
                let f = fio(s, "seqwrite-fdatasync", "1M", &["--fdatasync=1"])?;
                (f, fjord_concurrent(s, &pool, n_batches, Durability::GroupCommit, WRITERS, &mut sc.hist)?)
            } else {
                let j = fjord_concurrent(s, &pool, n_batches, Durability::GroupCommit, WRITERS, &mut sc.hist)?;
                (fio(s, "seqwrite-fdatasync", "1M", &["--fdatasync=1"])?, j)
            };
            println!(
                "    rep {}: fio {:7.1} MB/s   fjord {:7.1} MB/s {:>9.0} rec/s   ratio {:.2}   {} durable-offset advances seen (~{:.1} batches each)   [fjord used {:.2} cores; others {:.0}% of the machine]",
                rep + 1,
                f.mbps(),
                j.mbps(),
                j.rps(),
                j.mbps() / f.mbps(),
                syncs,
                n_batches as f64 / syncs.max(1) as f64,
                j.cores,
                j.others * 100.0
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
            sc.target.map_or("-".to_string(), |t| format!("≥{t:.2}")),
            sc.target.map_or("(info)", |t| verdict(r >= t))
        );
        if sc.label.starts_with("a ") {
            if let Some((bs, mbps)) = &fio_small {
                println!(
                    "{:<44} {:>9.1} {:>12} {:>9} {:>9} {:>9} {:>10} {:>9.1} {:>6.2} {:>8}  (info: ratio = a's Fjord / this)",
                    format!("a0 fio --bs={bs} (Fjord's write size)"),
                    mbps,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    mbps,
                    med(&sc.fjord, WriteRun::mbps) / mbps,
                    "-"
                );
            }
            if let Some((seg, j, h, fio_med)) = &rolling {
                println!(
                    "{:<44} {:>9.1} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>6.2} {:>8}  (info)",
                    format!("a' same, segment_bytes = {} (rolls)", human(*seg)),
                    j.mbps(),
                    j.rps(),
                    q(h, 0.5),
                    q(h, 0.99),
                    q(h, 0.999),
                    h.max() as f64 / 1e3,
                    fio_med,
                    j.mbps() / fio_med,
                    "-"
                );
            }
        }
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

/// Prepares the machine for one measured write run: flushes the filesystem,
/// then (unless `FJORD_BENCH_PRIME=0`) writes a file of `s.bytes` with 1 MiB
/// writes and deletes it. On the VM this was written on, buffered writes of
/// 64 KiB and more ran 5-10x slower (0.4-0.6 GB/s against 3-5 GB/s, nearly all
/// of it in the kernel's copy into new page-cache folios) when started ~2 s
/// after the previous large write than right after it, while 4 KiB writes
/// and tmpfs were unaffected. The likely cause is the balloon driver's free
/// page reporting (2 MiB blocks and up, after a 2 s delay): the host drops
/// reported memory and faults it back in on the next touch. Without priming,
/// the fio figure swung between 0.4 and 7 GB/s from run to run; priming gives
/// fio and Fjord the same, warm, state.
fn prepare(s: &Settings) -> io::Result<()> {
    settle();
    if !s.prime {
        return Ok(());
    }
    let path = s.dir.join("prime.dat");
    let buf = vec![0x5au8; 1 << 20];
    let f = fs::File::create(&path)?;
    let mut pos = 0;
    while pos < s.bytes {
        f.write_all_at(&buf, pos)?;
        pos += buf.len() as u64;
    }
    drop(f);
    fs::remove_file(&path)
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
fn fio(s: &Settings, name: &str, bs: &str, extra: &[&str]) -> io::Result<WriteRun> {
    let file = s.dir.join(format!("fio-{name}.dat"));
    let _ = fs::remove_file(&file);
    prepare(s)?;
    let out = Command::new("fio")
        .arg(format!("--name={name}"))
        .arg(format!("--filename={}", file.display()))
        .args(["--rw=write", "--ioengine=psync", "--direct=0", "--fallocate=none", "--output-format=json"])
        .arg(format!("--bs={bs}"))
        .arg(format!("--size={}", s.bytes))
        .args(extra)
        .output()?;
    let _ = fs::remove_file(&file);
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
    Ok(WriteRun { bytes, secs: bytes as f64 / bw, ..WriteRun::default() })
}

fn open_log(dir: &Path, durability: Durability, segment_bytes: u64) -> io::Result<Log> {
    let _ = fs::remove_dir_all(dir);
    let cfg = LogConfig { durability, segment_bytes, ..LogConfig::default() };
    Log::open(dir, cfg, Arc::new(SystemClock)).map_err(io::Error::other)
}

/// Scenario a: one writer, `Durability::Interval`, clones prepared outside the timed region.
fn fjord_interval(s: &Settings, pool: &[BytesMut], n: usize, hist: &mut Histogram<u64>) -> io::Result<WriteRun> {
    fjord_interval_with(s, pool, n, LogConfig::default().segment_bytes, hist)
}

fn fjord_interval_with(
    s: &Settings,
    pool: &[BytesMut],
    n: usize,
    segment_bytes: u64,
    hist: &mut Histogram<u64>,
) -> io::Result<WriteRun> {
    let dir = s.dir.join("fjord-interval");
    let run = {
        let log = open_log(&dir, Durability::Interval(Duration::from_secs(1)), segment_bytes)?;
        prepare(s)?;
        let before = cpu_sample();
        let mut run = append_interval(&log, pool, n, hist)?;
        (run.cores, run.others) = cpu_use(before, cpu_sample());
        run
    };
    fs::remove_dir_all(&dir)?;
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

/// Scenarios a (`PRODUCERS_A` writers, interval durability) and b
/// (`WRITERS` writers, group commit). Each thread clones its share of
/// batches before the start barrier. Also returns how
/// many times the durable offset was seen to advance (≈ fsyncs that covered
/// appends), sampled by the appenders themselves.
fn fjord_concurrent(
    s: &Settings,
    pool: &[BytesMut],
    n: usize,
    durability: Durability,
    writers: usize,
    hist: &mut Histogram<u64>,
) -> io::Result<(WriteRun, u64)> {
    let dir = s.dir.join("fjord-concurrent");
    let shares: Vec<Vec<BytesMut>> = (0..writers)
        .map(|w| {
            let share = n / writers + usize::from(w < n % writers);
            (0..share).map(|i| pool[(w + i * writers) % pool.len()].clone()).collect()
        })
        .collect();
    let log = Arc::new(open_log(&dir, durability, LogConfig::default().segment_bytes)?);
    let barrier = Arc::new(Barrier::new(writers + 1));
    let durable_seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mut handles = Vec::new();
    for batches in shares {
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
    prepare(s)?;
    let before = cpu_sample();
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
    (total.cores, total.others) = cpu_use(before, cpu_sample());
    let advances = durable_seen.lock().unwrap().len() as u64;
    drop(log);
    fs::remove_dir_all(&dir)?;
    Ok((total, advances))
}
