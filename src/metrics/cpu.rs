//! The generator's own CPU use, for the self-check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// CPU time spent busy polling with nothing to do (`--busy-poll`), in
/// nanoseconds: left out of [`CpuMeter`]'s figure.
static IDLE_SPIN_NS: AtomicU64 = AtomicU64::new(0);

/// Counts `spun` as time a busy-polling worker found nothing to do.
pub fn add_idle_spin(spun: Duration) {
    IDLE_SPIN_NS.fetch_add(spun.as_nanos() as u64, Ordering::Relaxed);
}

/// Busy-polling time that found nothing to do, so far.
pub fn idle_spin() -> Duration {
    Duration::from_nanos(IDLE_SPIN_NS.load(Ordering::Relaxed))
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident memory of this process, in bytes.
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass it.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        // Linux reports ru_maxrss in KiB.
        usage.ru_maxrss as u64 * 1024
    }
}

/// Resident memory of this process now, in bytes (0 where the system
/// does not say).
pub fn current_rss_bytes() -> u64 {
    // /proc/self/statm: size, resident, ... in pages.
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    resident * u64::try_from(page).unwrap_or(4096)
}

/// Cores this process may run on (its CPU affinity, so `taskset` counts).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measures CPU use between successive calls, as a percentage of the cores
/// the process may use (100 % means every available core was busy). Busy
/// polling that found nothing to do is not use.
pub struct CpuMeter {
    cores: f64,
    last_cpu: Duration,
    last_idle: Duration,
    last_wall: Instant,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn new() -> Self {
        Self {
            cores: available_cores() as f64,
            last_cpu: process_cpu_time(),
            last_idle: idle_spin(),
            last_wall: Instant::now(),
        }
    }

    /// CPU use since the previous sample, in percent of available cores.
    pub fn sample(&mut self) -> f64 {
        let (cpu, idle, wall) = (process_cpu_time(), idle_spin(), Instant::now());
        let spun = idle.saturating_sub(self.last_idle);
        let used = cpu
            .saturating_sub(self.last_cpu)
            .saturating_sub(spun)
            .as_secs_f64();
        let elapsed = wall.duration_since(self.last_wall).as_secs_f64();
        self.last_cpu = cpu;
        self.last_idle = idle;
        self.last_wall = wall;
        if elapsed <= 0.0 {
            return 0.0;
        }
        100.0 * used / (elapsed * self.cores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_loop_shows_up_as_cpu_use() {
        let mut meter = CpuMeter::new();
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let pct = meter.sample() * available_cores() as f64;
        assert!(pct > 30.0, "one busy core measured as {pct}%");
    }
}
