//! `presage compare-live`: the point of the product on a real host. One periodic load
//! (`presage loadgen --pattern …`) runs under a static limit at its average, under the
//! reactive-threshold rule, and under presage, each in its own cgroup, side by side;
//! the table compares throttling, OOM kills and the allocation each held.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::Parser;
use presage_agent::run::{RunBudget, RunOptions};
use presage_agent::{AgentConfig, ExecutionSummary, Mode};
use presage_core::{Limits, Resource};
use serde::Serialize;

use crate::loadgen::pattern::Pattern;

const DEFAULT_PATTERN: &str =
    "periodic:period=120,low-cpu=0.1,high-cpu=0.5,low-mem=64M,high-mem=320M,duty=0.3,ramp=5";

/// Run one periodic load under (a) a static limit at its average, (b) the reactive
/// threshold rule, (c) presage — concurrently, each in its own cgroup — and compare
/// throttled time, OOM kills and mean allocation.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// The load (see `presage loadgen --help`).
    #[arg(long, default_value = DEFAULT_PATTERN)]
    pattern: String,
    /// Seconds each arm runs.
    #[arg(long, default_value_t = 900)]
    duration: u32,
    /// Seconds presage keeps the provisioned limits while it learns the workload; the
    /// steady-state columns start here, for every arm.
    #[arg(long, default_value_t = 300)]
    warmup: u32,
    /// The provisioned limits the threshold rule and presage start from and never
    /// exceed: `cpu=CORES,memory=SIZE`.
    #[arg(long, default_value = "cpu=1,memory=1G")]
    provisioned: String,
    /// Seconds between samples.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Seconds between allocation decisions (threshold and presage).
    #[arg(long, default_value_t = 5)]
    decide_every: u32,
    /// Write the three summaries as JSON here.
    #[arg(long)]
    out_json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Arm {
    arm: &'static str,
    summary: ExecutionSummary,
    steady: Steady,
}

/// The figures from the end of the warm-up on.
#[derive(Debug, Default, Serialize)]
struct Steady {
    from_s: u32,
    throttled_s: f64,
    oom_kills: u64,
    mean_cpu_limit: f64,
    mean_memory_limit: f64,
    intervals: u64,
    /// What "no limit" counts as (read once, not per sample).
    #[serde(skip)]
    capacity: (f64, f64),
}

impl Steady {
    fn observe(&mut self, sample: &presage_core::Sample, limits: Option<&Limits>) {
        let e = sample.events();
        self.throttled_s += e.cpu_throttled_s;
        self.oom_kills += u64::from(e.oom_kills);
        let (cores, bytes) = self.capacity;
        if let Some(l) = limits {
            self.mean_cpu_limit += l.cpu_quota_cores().unwrap_or(cores);
            self.mean_memory_limit += l.memory_max_bytes().unwrap_or(bytes);
            self.intervals += 1;
        }
    }

    fn finish(mut self) -> Steady {
        if self.intervals > 0 {
            self.mean_cpu_limit /= self.intervals as f64;
            self.mean_memory_limit /= self.intervals as f64;
        }
        self
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let pattern = Pattern::parse(&args.pattern)?;
    let duration = f64::from(args.duration);
    let (cpu_avg, mem_avg) = averages(&pattern, duration);
    let static_limits = Limits::unlimited()
        .with_hard(Resource::Cpu, cpu_avg)?
        .with_hard(Resource::Memory, mem_avg)?;
    let exe = std::env::current_exe().context("finding the presage binary")?;
    let command: Vec<OsString> = vec![
        exe.into_os_string(),
        "loadgen".into(),
        "--pattern".into(),
        args.pattern.clone().into(),
        "--duration".into(),
        args.duration.to_string().into(),
    ];
    let provisioned = crate::run_cmd::parse_limits(&args.provisioned)
        .with_context(|| format!("--provisioned {:?}", args.provisioned))?;
    let arms: [(&'static str, &str, Limits); 3] = [
        ("static at the average", "static", static_limits),
        ("reactive threshold", "threshold", provisioned),
        ("presage", "presage", provisioned),
    ];
    eprintln!(
        "compare-live: {} s per arm, all three at once; the load averages {cpu_avg:.2} cores and {:.0} MiB; steady state from {} s",
        args.duration,
        mem_avg / MIB,
        args.warmup
    );
    // A fresh profile store: every invocation starts from unknown code, so runs compare.
    let data = tempfile::tempdir().context("creating a data dir")?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .with_context(|| format!("installing the handler for signal {signal}"))?;
    }
    let results: Vec<Result<Arm>> = std::thread::scope(|scope| {
        let handles: Vec<_> = arms
            .iter()
            .map(|(arm, policy, initial)| {
                let opts = arm_options(args, &command, policy, *initial, arm, data.path());
                let stop = stop.clone();
                scope.spawn(move || -> Result<Arm> {
                    let started = presage_agent::now();
                    let mut steady = Steady {
                        from_s: args.warmup,
                        capacity: presage_agent::run::host_capacity(),
                        ..Steady::default()
                    };
                    let summary = presage_agent::run::run(&opts?, &stop, |s, l| {
                        if s.at().secs_since(started) >= f64::from(args.warmup) {
                            steady.observe(s, l);
                        }
                    })
                    .with_context(|| format!("arm {arm}"))?;
                    Ok(Arm {
                        arm,
                        summary,
                        steady: steady.finish(),
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("an arm panicked")))
            .collect()
    });
    let results: Vec<Arm> = results.into_iter().collect::<Result<_>>()?;
    print!("{}", table(&results));
    if let Some(path) = &args.out_json {
        let text = serde_json::to_string_pretty(&results).context("serialising")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

fn arm_options(
    args: &Args,
    command: &[OsString],
    policy: &str,
    initial: Limits,
    arm: &str,
    data_dir: &std::path::Path,
) -> Result<RunOptions> {
    let mut config = AgentConfig::embedded()?;
    config.mode = Mode::Enforce;
    config.policy = policy.to_string();
    config.interval_s = args.interval;
    config.decide_every_s = args.decide_every;
    config.network = false;
    config.presage.warmup_s = args.warmup;
    config.data_dir = data_dir.join(arm.split(' ').next().unwrap_or("arm"));
    // The provisioned limits are the ceiling the allocators work under.
    let budget = RunBudget {
        cpu_cores: initial.cpu_quota_cores(),
        memory_bytes: initial.memory_max_bytes(),
        ..RunBudget::default()
    };
    Ok(RunOptions {
        name: Some(format!(
            "compare-{}",
            arm.split(' ').next().unwrap_or("arm")
        )),
        command: command.to_vec(),
        budget: if policy == "static" {
            RunBudget::default()
        } else {
            budget
        },
        weight: None,
        version: None,
        config,
        initial_limits: Some(initial),
        register_with_agent: false,
        labels: std::collections::BTreeMap::new(),
    })
}

/// The load's mean CPU and memory over `duration` seconds.
fn averages(pattern: &Pattern, duration: f64) -> (f64, f64) {
    let n = (duration * 10.0).max(1.0) as usize;
    let mem: f64 = (0..n)
        .map(|i| pattern.at((i as f64 + 0.5) * duration / n as f64).mem_bytes as f64)
        .sum::<f64>()
        / n as f64;
    (pattern.cpu_mean(duration), mem)
}

fn table(arms: &[Arm]) -> String {
    let from = arms.first().map_or(0, |a| a.steady.from_s);
    let mut out = format!(
        "| arm | throttled s | OOM kills | mean CPU limit | mean memory limit (MiB) | steady (≥ {from} s): throttled s | OOM kills | mean CPU limit | mean memory limit (MiB) | CPU used | memory peak (MiB) | decisions |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for a in arms {
        let s = &a.summary;
        let g = |m: &std::collections::BTreeMap<&str, f64>, k: &str| {
            m.get(k).copied().unwrap_or(f64::NAN)
        };
        out.push_str(&format!(
            "| {} | {:.1} | {} | {:.2} | {:.0} | {:.1} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {} |\n",
            a.arm,
            s.throttled_s,
            s.oom_kills,
            g(&s.mean_limits, "cpu"),
            g(&s.mean_limits, "memory") / MIB,
            a.steady.throttled_s,
            a.steady.oom_kills,
            a.steady.mean_cpu_limit,
            a.steady.mean_memory_limit / MIB,
            g(&s.mean, "cpu"),
            g(&s.peaks, "memory") / MIB,
            s.decisions
        ));
    }
    out
}
