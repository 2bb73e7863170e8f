//! What a stage cost the machine: CPU seconds and peak resident memory, for the manifest
//! (`stages[].cpu_seconds`, `stages[].peak_rss_bytes`) and `make bench-nightly`.
//!
//! CPU time is the process's user + system time (`getrusage`), read at a stage's start
//! and end. Peak memory per stage cannot come from the kernel's high-water mark without
//! resetting it (`/proc/self/clear_refs`), which would also hide the process's true peak
//! from `/usr/bin/time` and the orchestrator; so a sampler thread reads the resident set
//! (`/proc/self/statm`) every [`SAMPLE_EVERY`] and keeps the largest value since the last
//! [`RssSampler::mark`]. A spike shorter than the interval can be missed, and the kernel's
//! own mark (`VmHWM`) can miss memory that was returned with `madvise` (seen here: a
//! sampled 269 MB above a `VmHWM` below it), so the run's peak is the larger of the two.
//! Off Linux the memory figures are absent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the resident set is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// User + system CPU seconds of this process so far, all threads included.
pub(crate) fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The resident set now, in bytes.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as u64)
}

/// The process's peak resident set since it started (the kernel's `VmHWM`), in bytes.
pub(crate) fn process_peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A background thread that keeps the largest resident set seen since the last mark; it
/// stops when dropped.
pub(crate) struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    available: bool,
}

impl RssSampler {
    pub(crate) fn start() -> Self {
        let now = rss_bytes();
        let peak = Arc::new(AtomicU64::new(now.unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let available = now.is_some();
        if available {
            let (seen, stopped) = (peak.clone(), stop.clone());
            let spawned = std::thread::Builder::new().name("retain-rss".into()).spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    if let Some(now) = rss_bytes() {
                        seen.fetch_max(now, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            });
            if spawned.is_err() {
                return RssSampler { peak, stop, available: false };
            }
        }
        RssSampler { peak, stop, available }
    }

    /// Start a new measurement: the peak becomes the resident set now.
    pub(crate) fn mark(&self) {
        self.peak.store(rss_bytes().unwrap_or(0), Ordering::Relaxed);
    }

    /// The largest resident set sampled since the last mark (None off Linux).
    pub(crate) fn peak(&self) -> Option<u64> {
        if !self.available {
            return None;
        }
        let now = rss_bytes().unwrap_or(0);
        Some(self.peak.fetch_max(now, Ordering::Relaxed).max(now))
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work_and_the_sampler_sees_an_allocation() {
        let before = cpu_seconds();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds() > before, "CPU time moves");
        if cfg!(target_os = "linux") {
            let sampler = RssSampler::start();
            sampler.mark();
            let base = sampler.peak().unwrap();
            // 200 MB touched page by page is resident until dropped.
            let big = vec![1u8; 200 << 20];
            std::hint::black_box(&big);
            let peak = sampler.peak().unwrap();
            drop(big);
            assert!(peak >= base + (150 << 20), "peak {peak} against {base} before the allocation");
            assert!(process_peak_rss_bytes().unwrap() > 0);
        }
    }
}
