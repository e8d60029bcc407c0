//! CPU use from `/proc`: of the broker (by pid), of this process, and of
//! the whole machine, so every report says how many cores each side used
//! and how much the rest of the machine took.
//!
//! Linux reports process times in `USER_HZ` ticks, which is 100 on every
//! architecture Fjord targets.

use std::time::Instant;

const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of a process, in ticks.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are
    // space-separated, utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of every kernel thread (children of kthreadd, pid 2):
/// page-cache writeback, journaling and softirq work done on behalf of the
/// broker shows up there rather than in the broker's own times.
fn kernel_thread_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_ascii_whitespace().take(13).collect();
            // f[1] is the parent pid; f[11], f[12] are utime, stime.
            let kernel = f.get(1) == Some(&"2") || e.file_name() == "2";
            kernel.then(|| f.get(11)?.parse::<u64>().ok()?.checked_add(f.get(12)?.parse().ok()?)).flatten()
        })
        .sum()
}

/// (busy, total) ticks of all CPUs from `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_ascii_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Cores used over an interval (1.0 = one core fully busy).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUse {
    /// The broker process, when its pid is known.
    pub(crate) broker: Option<f64>,
    /// This benchmark process.
    pub(crate) bench: f64,
    /// Kernel threads (writeback, journaling, softirqs, ...).
    pub(crate) kernel: f64,
    /// Every CPU of the machine (includes the two above).
    pub(crate) machine: f64,
}

impl CpuUse {
    /// Cores used by everything except the broker, this process and kernel
    /// threads: other user processes, and interrupts.
    pub(crate) fn others(&self) -> f64 {
        (self.machine - self.bench - self.kernel - self.broker.unwrap_or(0.0)).max(0.0)
    }
}

/// Samples CPU counters; each [`CpuSampler::sample`] reports the use since
/// the previous one (or since creation).
#[derive(Debug, Clone)]
pub(crate) struct CpuSampler {
    broker_pid: Option<String>,
    at: Instant,
    broker: Option<u64>,
    bench: u64,
    kernel: u64,
    machine_busy: u64,
}

impl CpuSampler {
    pub(crate) fn new(broker_pid: Option<u32>) -> Self {
        let broker_pid = broker_pid.map(|p| p.to_string());
        let broker = broker_pid.as_deref().and_then(process_ticks);
        CpuSampler {
            broker_pid,
            at: Instant::now(),
            broker,
            bench: process_ticks("self").unwrap_or(0),
            kernel: kernel_thread_ticks(),
            machine_busy: machine_ticks().map_or(0, |m| m.0),
        }
    }

    /// Use since the previous sample; the sampler then starts a new interval.
    pub(crate) fn sample(&mut self) -> CpuUse {
        let next = CpuSampler::new(None);
        let broker_now = self.broker_pid.as_deref().and_then(process_ticks);
        let secs = next.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let cores = |now: u64, before: u64| now.saturating_sub(before) as f64 / TICKS_PER_SEC / secs;
        let used = CpuUse {
            broker: match (broker_now, self.broker) {
                (Some(now), Some(before)) => Some(cores(now, before)),
                _ => None,
            },
            bench: cores(next.bench, self.bench),
            kernel: cores(next.kernel, self.kernel),
            machine: cores(next.machine_busy, self.machine_busy),
        };
        self.at = next.at;
        self.bench = next.bench;
        self.kernel = next.kernel;
        self.machine_busy = next.machine_busy;
        self.broker = broker_now;
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_ticks() {
        assert!(process_ticks("self").is_some());
        let (busy, total) = machine_ticks().expect("/proc/stat");
        assert!(busy <= total);
        let mut s = CpuSampler::new(Some(std::process::id()));
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let u = s.sample();
        assert!(u.broker.is_some());
        assert!(u.bench >= 0.0 && u.machine >= 0.0);
    }
}
