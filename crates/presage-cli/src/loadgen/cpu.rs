//! The CPU burners: threads that each spin for a duty cycle of every 10 ms slice.
//!
//! A short slice keeps the load smooth at the 1-second sampling the agent uses, so the
//! figure it sees is the target and not a saw-tooth. Each slice's busy time is set by a
//! closed loop on the thread's own CPU time (`/proc/thread-self/schedstat`): on a shared,
//! noisy host a spin measured only by the wall clock loses whatever time the scheduler
//! gives to others, and the burner would fall short of its target.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::pattern::Pattern;

/// One duty-cycle slice.
const SLICE: Duration = Duration::from_millis(10);

/// The most CPU time a burner still owes before it forgets the rest. After being
/// throttled by a CPU quota (or stopped) a thread would otherwise spin flat out until it
/// had paid back all the lost time, which is not the demand the pattern describes; a
/// backlog of a few slices is what a real, slightly queued workload carries.
const MAX_DEBT_S: f64 = 0.1;

/// Running burner threads; [`Burners::stop`] ends them.
#[derive(Debug)]
pub(crate) struct Burners {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

/// Starts `threads` burners that together follow the pattern's CPU demand, each taking an
/// equal share, timed from `start`, and stopping by themselves at `until`: under a tight
/// CPU quota the burners take every slice the quota allows, and the run loop, starved,
/// could take minutes to notice the end of the run and stop them.
pub(crate) fn start(
    pattern: Arc<Pattern>,
    threads: usize,
    start: Instant,
    until: Option<Instant>,
) -> Result<Burners> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut burners = Burners {
        stop: Arc::clone(&stop),
        handles: Vec::with_capacity(threads),
    };
    for i in 0..threads {
        let pattern = Arc::clone(&pattern);
        let stop = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name(format!("loadgen-cpu-{i}"))
            .spawn(move || burn(&pattern, threads, start, until, &stop));
        match spawned {
            Ok(handle) => burners.handles.push(handle),
            Err(e) => {
                burners.stop();
                return Err(e).context("starting a CPU burner thread");
            }
        }
    }
    Ok(burners)
}

impl Burners {
    /// Stops every burner and waits for it, so its CPU time is in the process's total.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            if handle.join().is_err() {
                tracing::warn!("a CPU burner thread panicked");
            }
        }
    }
}

/// One burner: per slice, spin until this thread has used its share of the target so far,
/// then sleep to the end of the slice.
fn burn(
    pattern: &Pattern,
    threads: usize,
    start: Instant,
    until: Option<Instant>,
    stop: &AtomicBool,
) {
    let share = threads.max(1) as f64;
    let cpu0 = thread_cpu_s();
    let mut owed_s = 0.0; // target CPU seconds so far, less what was used
    let mut used_before = 0.0;
    let mut spun_s = 0.0; // wall-clock spin so far: the open-loop stand-in for CPU time
    let mut slice_start = Instant::now();
    while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| slice_start < u) {
        let t = slice_start.duration_since(start).as_secs_f64();
        let duty = (pattern.at(t).cpu / share).clamp(0.0, 1.0);
        owed_s += duty * SLICE.as_secs_f64();
        // Without schedstat, fall back to trusting the wall clock (open loop).
        let used = match (cpu0, thread_cpu_s()) {
            (Some(a), Some(b)) => b - a,
            _ => spun_s,
        };
        owed_s -= used - used_before;
        used_before = used;
        owed_s = owed_s.clamp(-SLICE.as_secs_f64(), MAX_DEBT_S);
        let busy = Duration::from_secs_f64(owed_s.clamp(0.0, SLICE.as_secs_f64()));
        spun_s += busy.as_secs_f64();
        spin(slice_start + busy);
        slice_start += SLICE;
        let now = Instant::now();
        if slice_start > now {
            std::thread::sleep(slice_start - now);
        } else if now - slice_start > SLICE {
            // Far behind (suspended, heavily throttled): restart the grid from now rather
            // than running a burst of zero-sleep slices.
            slice_start = now;
        }
    }
}

/// Burns CPU until `until`; the arithmetic is kept opaque so it is not optimised away.
fn spin(until: Instant) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while Instant::now() < until {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
}

/// CPU seconds this thread has run, from the first field (ns) of
/// `/proc/thread-self/schedstat`; `None` where the kernel does not provide it.
fn thread_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}
