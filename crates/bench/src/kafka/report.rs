//! Report rows, phases (warm-up, measurement) and the whole-run aggregates.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Run;
use super::stats::{Counters, Latency, Stats, new_histogram, thousands};
use crate::cpu::{CpuSampler, CpuUse};

/// How often the reporter checks the end of a phase.
const TICK: Duration = Duration::from_millis(100);

/// Writes one line to stdout (a closed stdout is not an error worth dying for).
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// What a phase measured.
#[derive(Debug)]
pub(crate) struct Summary {
    /// Ctrl-C or a failed worker ended the phase.
    pub(crate) interrupted: bool,
    pub(crate) elapsed: Duration,
    pub(crate) counters: Counters,
    /// Produced minus consumed at the end of the phase.
    pub(crate) backlog: i64,
    pub(crate) publish: Latency,
    pub(crate) e2e: Latency,
    pub(crate) cpu: CpuUse,
}

/// Prints rows and aggregates for one run.
#[derive(Debug)]
pub(crate) struct Reporter {
    run: Arc<Run>,
    stats: Arc<Stats>,
    interrupted: bool,
}

impl Reporter {
    pub(crate) fn new(run: Arc<Run>, stats: Arc<Stats>) -> Self {
        Reporter { run, stats, interrupted: false }
    }

    pub(crate) fn header(&self) {
        let a = &self.run.args;
        let rate = if a.rate == 0 { "max".to_string() } else { format!("{} msg/s", thousands(a.rate as f64)) };
        let mode = match a.mode {
            super::Mode::Batch => format!(
                "batch ({} records/batch, pipeline {}, fetch max {} B / partition {} B, wait {} ms)",
                a.batch_records,
                a.pipeline,
                a.fetch_max_bytes,
                a.partition_max_bytes,
                a.fetch_max_wait.as_millis()
            ),
            super::Mode::Rdkafka => format!("rdkafka (linger.ms {}, batch.size {})", a.linger_ms, a.batch_size),
        };
        say(&format!(
            "fjord-bench kafka: {} | topics {:?} x {} partitions | {} B messages | {} producers, {} consumers | rate {} | acks {} | compression {:?} | warm-up {:?}, duration {:?}{}",
            mode,
            self.run.topics,
            a.partitions,
            a.message_size,
            a.producers,
            a.consumers,
            rate,
            a.acks.code(),
            a.compression,
            a.warmup,
            a.duration,
            if a.backlog > 0 {
                format!(" | backlog {} messages first", thousands(a.backlog as f64))
            } else {
                String::new()
            },
        ));
    }

    /// Runs one phase: prints a row every report interval (and at the end),
    /// until `length` has passed or `done` holds. `None` runs until `done`.
    pub(crate) async fn phase(
        &mut self,
        label: &str,
        length: Option<Duration>,
        done: &(dyn Fn(&Counters) -> bool + Sync),
    ) -> Summary {
        let stats = &self.stats;
        let pid = self.run.args.broker_pid;
        let interval = self.run.args.report_interval;
        let start = Instant::now();
        let first = stats.counters();
        let mut cpu_phase = CpuSampler::new(pid);
        let mut cpu_row = CpuSampler::new(pid);
        // Whatever was recorded before this phase belongs to the previous one.
        stats.take_histograms();
        let (mut pub_all, mut e2e_all) = (new_histogram(), new_histogram());
        let (mut row_start, mut row_first) = (start, first);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let last = loop {
            if !self.interrupted {
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = &mut ctrl_c => {
                        self.interrupted = true;
                        say("interrupted: stopping");
                    }
                }
            }
            if !self.interrupted && stats.failed_workers.load(Ordering::Relaxed) > 0 {
                self.interrupted = true;
                say("a producer or consumer failed: stopping");
            }
            let now = Instant::now();
            let last = stats.counters();
            let finished = self.interrupted || length.is_some_and(|l| now - start >= l) || done(&last);
            if now - row_start >= interval || finished {
                let (p, e) = stats.take_histograms();
                let _ = pub_all.add(&p);
                let _ = e2e_all.add(&e);
                let row_cpu = cpu_row.sample();
                let line = row(
                    &format!("[{label:>8} {:>6.1}s]", (now - start).as_secs_f64()),
                    &last.since(&row_first),
                    now - row_start,
                    backlog(&last),
                    &Latency::of(&p),
                    &Latency::of(&e),
                    &row_cpu,
                    self.run.args.consumers > 0,
                );
                say(&line);
                if self.run.args.json_rows {
                    let secs = (now - row_start).as_secs_f64().max(1e-9);
                    let c = last.since(&row_first);
                    say(&serde_json::json!({
                        "row": true,
                        "label": self.run.args.label,
                        "phase": label,
                        "t_s": (now - start).as_secs_f64(),
                        // The row's end on the wall clock: lines events
                        // outside the bench (a node killed) up with rows.
                        "unix_s": std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64()),
                        "pub_msgs_per_s": c.pub_msgs as f64 / secs,
                        "cons_msgs_per_s": c.cons_msgs as f64 / secs,
                        "pub_latency_ms": Latency::of(&p).json(),
                        "e2e_latency_ms": Latency::of(&e).json(),
                        "broker_cores": row_cpu.broker,
                    })
                    .to_string());
                }
                (row_start, row_first) = (now, last);
            }
            if finished {
                break last;
            }
        };
        Summary {
            interrupted: self.interrupted,
            elapsed: start.elapsed(),
            counters: last.since(&first),
            backlog: backlog(&last),
            publish: Latency::of(&pub_all),
            e2e: Latency::of(&e2e_all),
            cpu: cpu_phase.sample(),
        }
    }

    /// Prints the aggregates of the measured phase (and the JSON line).
    pub(crate) fn aggregates(&self, s: &Summary) {
        let a = &self.run.args;
        say(&format!(
            "Aggregated over {:.1} s{}:",
            s.elapsed.as_secs_f64(),
            if a.warmup.is_zero() { String::new() } else { format!(" after a {:?} warm-up", a.warmup) }
        ));
        say(&row("[ aggregate ]", &s.counters, s.elapsed, s.backlog, &s.publish, &s.e2e, &s.cpu, a.consumers > 0));
        let c = &s.counters;
        say(&format!(
            "  totals: {} messages produced ({} errors), {} consumed; CPU cores: broker {}, bench {:.2}, kernel threads {:.2}, others {:.2}, machine {:.2} of {}",
            c.pub_msgs,
            c.pub_errors,
            c.cons_msgs,
            s.cpu.broker.map_or("n/a".to_string(), |b| format!("{b:.2}")),
            s.cpu.bench,
            s.cpu.kernel,
            s.cpu.others(),
            s.cpu.machine,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        ));
        if a.json {
            let secs = s.elapsed.as_secs_f64().max(1e-9);
            let r2 = |v: f64| (v * 100.0).round() / 100.0;
            let json = serde_json::json!({
                "bench": "kafka",
                "label": a.label,
                "mode": format!("{:?}", a.mode).to_lowercase(),
                "topics": a.topics,
                "partitions": a.partitions,
                "message_size": a.message_size,
                "producers": a.producers,
                "consumers": a.consumers,
                "rate_target": a.rate,
                "acks": a.acks.code(),
                "compression": format!("{:?}", a.compression).to_lowercase(),
                "batch_records": a.batch_records,
                "pipeline": a.pipeline,
                "linger_ms": a.linger_ms,
                "backlog": a.backlog,
                "topic_config": a.topic_config.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "warmup_s": a.warmup.as_secs_f64(),
                "measured_s": r2(secs),
                "pub_msgs": c.pub_msgs,
                "pub_errors": c.pub_errors,
                "cons_msgs": c.cons_msgs,
                "pub_msg_per_s": (c.pub_msgs as f64 / secs).round(),
                "pub_mb_per_s": r2(c.pub_bytes as f64 / secs / 1e6),
                "cons_msg_per_s": (c.cons_msgs as f64 / secs).round(),
                "cons_mb_per_s": r2(c.cons_bytes as f64 / secs / 1e6),
                "backlog_end": s.backlog,
                "pub_latency_ms": s.publish.json(),
                "e2e_latency_ms": s.e2e.json(),
                "cpu_cores": {
                    "broker": s.cpu.broker.map(r2),
                    "bench": r2(s.cpu.bench),
                    "kernel_threads": r2(s.cpu.kernel),
                    "others": r2(s.cpu.others()),
                    "machine": r2(s.cpu.machine),
                },
            });
            say(&json.to_string());
        }
    }
}

fn backlog(c: &Counters) -> i64 {
    c.pub_msgs as i64 - c.cons_msgs as i64
}

#[allow(clippy::too_many_arguments)]
fn row(
    label: &str,
    c: &Counters,
    elapsed: Duration,
    backlog: i64,
    publish: &Latency,
    e2e: &Latency,
    cpu: &CpuUse,
    consumers: bool,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = |msgs: u64, bytes: u64| {
        format!("{:>10} msg/s {:>7.1} MB/s", thousands(msgs as f64 / secs), bytes as f64 / secs / 1e6)
    };
    let mut s = format!("{label} Pub {}", rate(c.pub_msgs, c.pub_bytes));
    if c.pub_errors > 0 {
        s.push_str(&format!(" ({} err/s)", thousands(c.pub_errors as f64 / secs)));
    }
    if consumers {
        s.push_str(&format!(" | Cons {} | Backlog {:>8.1} K", rate(c.cons_msgs, c.cons_bytes), backlog as f64 / 1e3));
    }
    s.push_str(&format!(
        " | Pub lat ms avg {:7.3} p50 {:7.3} p99 {:7.3} p99.9 {:7.3} max {:8.3}",
        publish.avg, publish.p50, publish.p99, publish.p999, publish.max
    ));
    if consumers {
        s.push_str(&format!(
            " | E2E ms p50 {:7.3} p99 {:7.3} p99.9 {:7.3} p99.99 {:8.3}",
            e2e.p50, e2e.p99, e2e.p999, e2e.p9999
        ));
    }
    s.push_str(&format!(
        " | CPU broker {} bench {:.2} kernel {:.2} other {:.2}",
        cpu.broker.map_or("n/a".to_string(), |b| format!("{b:.2}")),
        cpu.bench,
        cpu.kernel,
        cpu.others()
    ));
    s
}
