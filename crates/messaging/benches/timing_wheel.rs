//! Criterion micro-benchmarks of the delayed-message timing wheel.
//!
//! Run with `cargo bench -p fjord-broker --bench timing_wheel` (add
//! `-- --quick` for a short run, `-- --test` to run each once).
//!
//! - `timing_wheel/insert_1M_over_60s`: inserting 1,000,000 entries with
//!   random deadlines in the next 60 s into an empty wheel of 10 ms ticks
//!   (throughput per entry);
//! - `timing_wheel/advance_10ms_1M_over_60s`: advancing such a wheel in 10 ms
//!   steps until all of it expired (6,000 `advance` calls; building the wheel
//!   is not timed; throughput per expired entry);
//! - `timing_wheel/idle_30_day_jumps`: 120 `advance` calls, each 30 days
//!   after the last, on a wheel of 1 ms ticks holding 100 entries spread over
//!   10 years (throughput per call; a wheel that walked tick by tick would
//!   visit 2.6 billion ticks per call).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use fjord_messaging::bench_support::TimingWheel;

const START_MS: i64 = 1_700_000_000_000;
const ENTRIES: usize = 1_000_000;
const SPAN_MS: i64 = 60_000;
const TICK_MS: u64 = 10;
const DAY_MS: i64 = 86_400_000;

fn deadlines(count: usize, span_ms: i64) -> Vec<i64> {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            START_MS + 1 + (rng % span_ms as u64) as i64
        })
        .collect()
}

fn filled(deadlines: &[i64], tick_ms: u64) -> TimingWheel<u64> {
    let mut wheel = TimingWheel::new(START_MS, tick_ms);
    for (item, &deadline) in (0u64..).zip(deadlines) {
        wheel.insert(deadline, item);
    }
    wheel
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
        .configure_from_args();
    let burst = deadlines(ENTRIES, SPAN_MS);
    let mut g = c.benchmark_group("timing_wheel");

    g.throughput(Throughput::Elements(ENTRIES as u64));
    g.bench_function("insert_1M_over_60s", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let wheel = filled(&burst, TICK_MS);
                total += started.elapsed();
                drop(black_box(wheel));
            }
            total
        })
    });

    g.bench_function("advance_10ms_1M_over_60s", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut wheel = filled(&burst, TICK_MS);
                let mut out = Vec::with_capacity(4096);
                let mut expired = 0;
                let started = Instant::now();
                let mut now = START_MS;
                while now < START_MS + SPAN_MS {
                    now += TICK_MS as i64;
                    wheel.advance(now, &mut out);
                    expired += out.len();
                    out.clear();
                }
                total += started.elapsed();
                assert_eq!(expired, ENTRIES);
                assert!(wheel.is_empty());
            }
            total
        })
    });

    const JUMPS: usize = 120;
    let sparse = deadlines(100, 10 * 365 * DAY_MS);
    g.throughput(Throughput::Elements(JUMPS as u64));
    g.bench_function("idle_30_day_jumps", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut wheel = filled(&sparse, 1);
                let mut out = Vec::new();
                let started = Instant::now();
                let mut now = START_MS;
                for _ in 0..JUMPS {
                    now += 30 * DAY_MS;
                    wheel.advance(now, &mut out);
                }
                total += started.elapsed();
                black_box(&out);
            }
            total
        })
    });
    g.finish();
    c.final_summary();
}
