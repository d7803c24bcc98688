//! `presage loadgen`: a precise CPU and memory load, constant or following a pattern, for
//! real-host tests and live experiments inside a cgroup whose limits presage moves.
//!
//! The CPU burners run as threads of this process ([`cpu`]); the memory is held by a
//! child worker process ([`memory`]) so that an OOM kill takes only the memory and the
//! run goes on. Both follow one [`pattern::Pattern`], a pure function of time.

mod cpu;
mod memory;
pub(crate) mod pattern;
mod turn;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use signal_hook::consts::{SIGINT, SIGTERM};

use pattern::{Demand, Pattern};

/// How often the parent re-evaluates the memory target and checks on the worker.
const TICK: Duration = Duration::from_millis(50);

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, fixed at 100 by the Linux
/// user-space ABI whatever the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// Arguments of `presage loadgen`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// CPU cores to burn on average (e.g. 0.5, 1.5). Each thread spins for its share of
    /// every 10 ms slice, so 1-second samples see a steady figure.
    #[arg(long, value_name = "CORES", conflicts_with = "pattern")]
    cpu: Option<String>,
    /// Resident memory to hold: plain bytes or K/M/G (binary multiples: 100M = 100 MiB;
    /// Ki/Mi/Gi also accepted). Held by a child process that is respawned if killed.
    #[arg(long, value_name = "SIZE", conflicts_with = "pattern")]
    memory: Option<String>,
    /// Time-varying demand instead of --cpu/--memory. One of:
    ///
    ///   periodic:period=S,low-cpu=C,high-cpu=C,low-mem=SIZE,high-mem=SIZE,duty=F,ramp=S
    ///       Each period of S seconds starts low; at (1-duty)·period the demand ramps
    ///       linearly over `ramp` seconds to high, holds, and ramps back down over the
    ///       last `ramp` seconds of the period so the next one starts low again.
    ///       Only period is required; duty defaults to 0.5, everything else to 0.
    ///       Example: periodic:period=60,low-cpu=0.2,high-cpu=0.9,low-mem=64M,high-mem=256M,duty=0.3,ramp=5
    ///   constant:cpu=C,mem=SIZE
    ///       The same as --cpu C --memory SIZE.
    ///   steps:T=C/SIZE,T=C/SIZE,...
    ///       Piecewise constant: from T seconds on, C cores and SIZE bytes; the first T
    ///       must be 0 and the last step holds forever. Example: steps:0=0.2/64M,30=0.9/256M
    ///
    /// Memory moves in 1 MiB chunks that are freed on the way down, so RSS really drops.
    #[arg(long, value_name = "SPEC", verbatim_doc_comment)]
    pattern: Option<String>,
    /// Stop behaving like itself at a moment, for anomaly tests: `spin@SECS` burns every
    /// core, `leak:SIZE@SECS` adds SIZE of resident memory per second on top of the
    /// demand, `fork:N@SECS` starts N idle child processes (20 per 50 ms).
    #[arg(long, value_name = "KIND@SECS")]
    turn: Option<String>,
    /// Stop after this many seconds (default: run until SIGTERM or SIGINT; either way
    /// the exit is clean, with status 0).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// CPU burner threads (default: the peak CPU demand rounded up). Each burns at most
    /// one core.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// On exit, write a JSON report: duration_s, cpu_target_mean, cpu_busy_s (measured
    /// CPU time of this process and its workers), memory_target_peak_bytes,
    /// worker_restarts, worker_oom_kills.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// Internal: run as the memory worker, reading byte targets from stdin.
    #[arg(long, hide = true, conflicts_with_all = ["cpu", "memory", "pattern", "report_json"])]
    memory_worker: bool,
}

/// The `--report-json` document.
#[derive(Debug, Serialize)]
struct Report {
    duration_s: f64,
    cpu_target_mean: f64,
    cpu_busy_s: f64,
    cpu_mean_cores: f64,
    threads: usize,
    memory_target_peak_bytes: u64,
    worker_restarts: u32,
    worker_oom_kills: u32,
}

/// Runs `presage loadgen`.
pub(crate) fn run(args: &Args) -> Result<()> {
    if args.memory_worker {
        return memory::run_worker();
    }
    let pattern = Arc::new(pattern_of(args)?);
    let peak = pattern.peak();
    let threads = thread_count(args.threads, peak.cpu)?;
    let duration = match args.duration {
        Some(d) if !(d.is_finite() && d > 0.0) => bail!("--duration {d}: must be > 0 seconds"),
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the SIGTERM/SIGINT handlers")?;
    }

    let busy_before = process_cpu_s()?;
    let start = Instant::now();
    let mut memory_peak = 0;
    let mut forks_wanted = match pattern.as_ref() {
        Pattern::Turned(_, turn) => match turn.kind {
            turn::TurnKind::Fork { processes } => Some((turn.at_s, processes)),
            _ => None,
        },
        _ => None,
    };
    let mut forks = turn::Forks::default();
    let mut supervisor = if peak.mem_bytes > 0 {
        let target = pattern.at(0.0).mem_bytes;
        memory_peak = target;
        Some(memory::Supervisor::start(target)?)
    } else {
        None
    };
    let burners = match cpu::start(
        Arc::clone(&pattern),
        threads,
        start,
        duration.map(|d| start + d),
    ) {
        Ok(b) => b,
        Err(e) => {
            if let Some(s) = supervisor {
                s.shutdown();
            }
            return Err(e);
        }
    };

    while !stop.load(Ordering::Relaxed) {
        let elapsed = start.elapsed();
        if duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        if let Some(s) = &mut supervisor {
            let target = pattern.at(elapsed.as_secs_f64()).mem_bytes;
            memory_peak = memory_peak.max(target);
            s.set_target(target);
            s.poll();
        }
        if let Some((at_s, processes)) = forks_wanted
            && elapsed.as_secs_f64() >= at_s
            && let Err(e) = forks.grow_to(processes)
        {
            // A refused fork (a pids limit, say) is part of what is being tested: keep
            // the load running with the children that did start, and stop asking.
            tracing::warn!("{e:#} ({} children running)", forks.len());
            forks_wanted = None;
        }
        let nap = duration.map_or(TICK, |d| d.saturating_sub(elapsed).min(TICK));
        std::thread::sleep(nap);
    }

    burners.stop();
    drop(forks);
    let stats = supervisor
        .map(memory::Supervisor::shutdown)
        .unwrap_or_default();
    let elapsed_s = start.elapsed().as_secs_f64();
    let cpu_busy_s = process_cpu_s()? - busy_before;
    let report = Report {
        duration_s: elapsed_s,
        cpu_target_mean: pattern.cpu_mean(elapsed_s),
        cpu_busy_s,
        cpu_mean_cores: cpu_busy_s / elapsed_s.max(f64::EPSILON),
        threads,
        memory_target_peak_bytes: memory_peak,
        worker_restarts: stats.restarts,
        worker_oom_kills: stats.oom_kills,
    };
    eprintln!(
        "loadgen: {:.1} s, cpu target {:.3} cores, measured {:.3} cores ({:.2} s busy, {} threads), \
         memory peak {:.1} MiB, worker restarts {} ({} OOM kills)",
        report.duration_s,
        report.cpu_target_mean,
        report.cpu_mean_cores,
        report.cpu_busy_s,
        report.threads,
        report.memory_target_peak_bytes as f64 / (1024.0 * 1024.0),
        report.worker_restarts,
        report.worker_oom_kills,
    );
    if let Some(path) = &args.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing --report-json {}", path.display()))?;
    }
    Ok(())
}

/// The pattern from `--pattern`, or a constant one from `--cpu`/`--memory`.
fn pattern_of(args: &Args) -> Result<Pattern> {
    let base = base_pattern_of(args)?;
    match &args.turn {
        Some(spec) => Ok(Pattern::Turned(Box::new(base), turn::Turn::parse(spec)?)),
        None => Ok(base),
    }
}

/// The pattern before any `--turn`.
fn base_pattern_of(args: &Args) -> Result<Pattern> {
    if let Some(spec) = &args.pattern {
        // clap already rejects --cpu/--memory next to --pattern; this is the message
        // should that declaration ever be lost.
        if args.cpu.is_some() || args.memory.is_some() {
            bail!("--pattern cannot be combined with --cpu or --memory");
        }
        return Pattern::parse(spec);
    }
    if args.cpu.is_none() && args.memory.is_none() {
        bail!("nothing to generate: give --cpu, --memory or --pattern");
    }
    let cpu = match &args.cpu {
        Some(text) => pattern::parse_cores("--cpu", text)?,
        None => 0.0,
    };
    let mem_bytes = match &args.memory {
        Some(text) => pattern::parse_size("--memory", text)?,
        None => 0,
    };
    Ok(Pattern::Constant(Demand { cpu, mem_bytes }))
}

/// Burner threads for a peak demand of `peak_cpu` cores: `--threads` if given (it must
/// be able to reach the peak), else one per started core.
fn thread_count(requested: Option<usize>, peak_cpu: f64) -> Result<usize> {
    let needed = peak_cpu.ceil() as usize;
    match requested {
        Some(0) => bail!("--threads 0: need at least one thread"),
        Some(n) if (n as f64) < peak_cpu => {
            bail!("--threads {n} cannot burn {peak_cpu} cores: each thread burns at most one core")
        }
        Some(n) => Ok(n),
        None => Ok(needed),
    }
}

/// CPU seconds used so far by this process (all threads) and its reaped children (the
/// memory workers), from `/proc/self/stat` (utime + stime + cutime + cstime).
pub(crate) fn process_cpu_s() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The command name (field 2) may hold spaces and parentheses: split after its end.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc/self/stat has no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime..cstime are fields 14..=17.
    let mut ticks = 0.0;
    for i in 11..=14 {
        let field = fields.get(i).context("/proc/self/stat is too short")?;
        ticks += field
            .parse::<f64>()
            .with_context(|| format!("/proc/self/stat field {} is {field:?}", i + 3))?;
    }
    Ok(ticks / USER_HZ)
}
