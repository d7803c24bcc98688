//! `presage bench agent`: what the live agent costs. Creates N cgroups, measures the
//! floor (only reading their files once per interval) and the whole agent (discovery,
//! sampling, forecasting, deciding, writing) on the same cgroups, side by side.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use presage_agent::{Agent, AgentConfig, Mode, Persistence};
use presage_core::Timestamp;
use presage_linux::{Cgroup, CgroupManager, Layout};

/// Benchmarks that need this host (the trace benchmarks are criterion benches).
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Agent overhead at N cgroups: CPU per tick against the file-reading floor, RSS, and
    /// sample-to-limit latency.
    Agent(AgentArgs),
    /// Profile store cost: N workloads × 1 sample/s written one transaction per tick
    /// (CPU, latency), and loading N profiles at start-up, against SQLite or PostgreSQL.
    Store(crate::bench_store::StoreArgs),
    /// The HTTP API under load (wrk) with N managed workloads, while the control loop
    /// runs at its interval: requests/s, latency percentiles, errors, and the loop's ticks.
    Api(crate::bench_api::ApiArgs),
}

/// Settings of `presage bench agent`.
#[derive(Debug, Parser)]
pub(crate) struct AgentArgs {
    /// Cgroup counts to measure, comma-separated.
    #[arg(long, default_value = "100,1000", value_delimiter = ',')]
    cgroups: Vec<usize>,
    /// Ticks per measurement (one simulated second each).
    #[arg(long, default_value_t = 120)]
    ticks: u32,
}

pub(crate) fn run(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Agent(args) => bench_agent(args),
        Command::Store(args) => crate::bench_store::run(args),
        Command::Api(args) => crate::bench_api::run(args),
    }
}

/// N empty cgroups under `presage/bench-<pid>/`, removed on drop.
pub(crate) struct Tree {
    layout: Layout,
    parent: Cgroup,
    leaves: Vec<Cgroup>,
}

impl Tree {
    /// Creates `presage/bench-<pid>` with `n` leaves `c0…`, with a progress bar.
    pub(crate) fn create(layout: &Layout, n: usize) -> Result<(Tree, String)> {
        let parent_rel = format!("presage/bench-{}", std::process::id());
        let parent = Cgroup::create(layout, &parent_rel)?;
        let mut tree = Tree {
            layout: layout.clone(),
            parent,
            leaves: Vec::new(),
        };
        let bar =
            indicatif::ProgressBar::new(n as u64).with_message(format!("creating {n} cgroups"));
        for i in 0..n {
            tree.leaves
                .push(Cgroup::create(&tree.layout, &format!("{parent_rel}/c{i}"))?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok((tree, parent_rel))
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for c in &self.leaves {
            let _ = c.remove();
        }
        let _ = self.parent.remove();
    }
}

fn bench_agent(args: &AgentArgs) -> Result<()> {
    let layout = Layout::detect().context("detecting the cgroup layout")?;
    println!(
        "| cgroups | open/read/close CPU ms/tick | floor (held files) ms/tick | agent CPU ms/tick | agent / floor | agent CPU % of a core at 1 s | RSS MiB | latency p50 ms | p99 ms | writes |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.cgroups {
        let (tree, parent_rel) = Tree::create(&layout, n)?;
        presage_linux::hold_files_open(0);
        let naive = floor_cpu_per_tick(&tree.leaves, args.ticks)?;
        presage_linux::hold_files_open(presage_agent::file_budget());
        let floor = floor_cpu_per_tick(&tree.leaves, args.ticks)?;
        presage_linux::hold_files_open(0);
        let agent = agent_cost(&parent_rel, args.ticks)?;
        let ratio = agent.cpu_s_per_tick / floor;
        println!(
            "| {n} | {:.2} | {:.2} | {:.2} | {ratio:.2}× | {:.2} % | {:.1} | {:.3} | {:.3} | {} |",
            naive * 1e3,
            floor * 1e3,
            agent.cpu_s_per_tick * 1e3,
            agent.cpu_s_per_tick * 100.0,
            agent.rss_mib,
            agent.latency_p50_s * 1e3,
            agent.latency_p99_s * 1e3,
            agent.writes
        );
        drop(tree);
    }
    println!(
        "\n(open/read/close: every cgroup's files read once per tick, each opened afresh; floor: the same through descriptors held open, as the agent reads them; agent: discovery every 10 ticks, sampling, forecasting, deciding every 10 s and writing in enforce mode, presage policy; ticks run back to back with timestamps 1 s apart, so CPU per tick is CPU per second at a 1 s interval.)"
    );
    Ok(())
}

/// CPU seconds this thread has used: the bench is single-threaded, and schedstat counts
/// nanoseconds where /proc/self/stat counts 10 ms ticks.
fn thread_cpu_s() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    let ns: f64 = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("parsing /proc/thread-self/schedstat")?;
    Ok(ns / 1e9)
}

fn floor_cpu_per_tick(leaves: &[Cgroup], ticks: u32) -> Result<f64> {
    let start = thread_cpu_s()?;
    let mut read = 0usize;
    for _ in 0..ticks {
        for c in leaves {
            read += usize::from(c.read_sample().is_ok());
        }
    }
    std::hint::black_box(read);
    Ok((thread_cpu_s()? - start) / f64::from(ticks))
}

struct AgentCost {
    cpu_s_per_tick: f64,
    rss_mib: f64,
    latency_p50_s: f64,
    latency_p99_s: f64,
    writes: usize,
}

fn agent_cost(parent_rel: &str, ticks: u32) -> Result<AgentCost> {
    let dir = tempfile::tempdir().context("creating a data dir")?;
    let text = format!(
        "mode = \"enforce\"\nnetwork = false\n[presage]\nwarmup_s = 0\n[discovery]\nroots = [\"{parent_rel}/*\"]\nskip_empty = false\n"
    );
    let mut config = AgentConfig::from_toml(&text, std::path::Path::new("<bench>"))?;
    config.data_dir = dir.path().to_path_buf();
    config.mode = Mode::Enforce;
    let mut agent = Agent::new(config, Persistence::DataDir(dir.path().to_path_buf()), true)?;
    let t0 = presage_agent::now();
    // Adoption (discovery, reading limits, hashing executables) is a one-off: measured
    // ticks start after it.
    agent.tick(t0);
    let mut latencies = Vec::new();
    let start = thread_cpu_s()?;
    let wall = Instant::now();
    for i in 1..=ticks {
        let tick = agent.tick(Timestamp::from_unix_ms(t0.unix_ms() + i64::from(i) * 1000));
        latencies.extend(tick.latencies_s);
    }
    let cpu = thread_cpu_s()? - start;
    let _ = wall.elapsed();
    let rss_mib = rss_mib()?;
    agent.shutdown(true);
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if latencies.is_empty() {
            f64::NAN
        } else {
            latencies[((latencies.len() - 1) as f64 * p).round() as usize]
        }
    };
    Ok(AgentCost {
        cpu_s_per_tick: cpu / f64::from(ticks),
        rss_mib,
        latency_p50_s: pct(0.5),
        latency_p99_s: pct(0.99),
        writes: latencies.len(),
    })
}

pub(crate) fn rss_mib() -> Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS missing from /proc/self/status")?;
    Ok(kib / 1024.0)
}
