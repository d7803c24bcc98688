//! `presage agent`: the daemon. Parses, wires, prints; the work is in presage-agent.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Parser;
use presage_agent::{Agent, AgentConfig, DEFAULT_CONFIG_TOML, Mode, Persistence, pid_file};
use tracing::{info, warn};

/// Manage the host's workloads: discover their cgroups, sample them every interval,
/// forecast, and (in enforce mode) move their limits. Runs until SIGTERM/SIGINT, then
/// restores the limits each workload had when adopted and exits 0.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// TOML config; keys left out keep the embedded defaults (see --print-config).
    #[arg(long)]
    config: Option<PathBuf>,
    /// observe (never writes), recommend (records decisions) or enforce (applies them).
    #[arg(long)]
    mode: Option<Mode>,
    /// Where the adoption ledger, decision log, registrations and (by default) the
    /// profile store live [default: /var/lib/presage as root, else the user's data dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The profile store: `sqlite:PATH` or `postgres://…` [default: sqlite:DATA_DIR/presage.db].
    #[arg(long)]
    store: Option<String>,
    /// On shutdown, leave presage's limits in place instead of restoring the adopted ones.
    #[arg(long)]
    keep_limits: bool,
    /// Print the embedded default config and exit.
    #[arg(long)]
    print_config: bool,
    /// Stop after this many ticks (for tests and scripted checks).
    #[arg(long, hide = true)]
    ticks: Option<u64>,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    if args.print_config {
        print!("{DEFAULT_CONFIG_TOML}");
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::embedded()?,
    };
    if let Some(mode) = args.mode {
        config.mode = mode;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &args.store {
        presage_store::StoreUrl::parse(url).context("--store")?;
        config.store = Some(url.clone());
    }
    let data_dir = config.data_dir.clone();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .with_context(|| format!("installing the handler for signal {signal}"))?;
    }
    let restore = config.restore_on_exit && !args.keep_limits;
    let mut agent = Agent::new(config, Persistence::DataDir(data_dir.clone()), true)
        .context("starting the agent")?;
    let pid_path = pid_file(&data_dir);
    std::fs::write(&pid_path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pid_path.display()))?;
    eprintln!(
        "presage agent: {} mode, {:?} cgroups, data in {} (SIGTERM/SIGINT to stop)",
        agent.config().mode,
        agent.layout().mode(),
        data_dir.display()
    );
    let mut ticks = 0u64;
    let limit = args.ticks;
    let stop_after = stop.clone();
    agent.run_until(&stop, |agent, tick| {
        for id in &tick.adopted {
            info!(workload = %id, "adopted");
        }
        for id in &tick.released {
            info!(workload = %id, "released");
        }
        for d in &tick.report.decisions {
            info!(workload = %d.workload, reason = %d.reason, old = ?d.old, new = ?d.new, "decision");
        }
        for p in &tick.problems {
            warn!("{p}");
        }
        for i in &tick.report.issues {
            warn!("{}", i.message);
        }
        ticks += 1;
        if limit.is_some_and(|n| ticks >= n) {
            stop_after.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = agent;
    });
    let problems = agent.shutdown(restore);
    for p in &problems {
        warn!("shutdown: {p}");
    }
    let _ = std::fs::remove_file(&pid_path);
    eprintln!(
        "presage agent: stopped after {ticks} ticks; {}",
        if restore {
            "adopted limits restored"
        } else {
            "limits left in place"
        }
    );
    Ok(())
}
