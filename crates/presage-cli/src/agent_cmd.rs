//! `presage agent`: the daemon. Parses, wires, prints; the work is in presage-agent.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use presage_agent::surface::{Command, Surface};
use presage_agent::{
    Agent, AgentConfig, AgentTick, DEFAULT_CONFIG_TOML, LoopHooks, Mode, Persistence, pid_file,
};
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
    /// Serve the HTTP API, /metrics and the dashboard at ADDR:PORT ("" turns it off)
    /// [default: the config's api.listen, 127.0.0.1:9477].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// A file whose first line is the bearer token mutating API requests must carry.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
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
    if let Some(listen) = &args.listen {
        config.api.listen = listen.clone();
    }
    if let Some(file) = &args.token_file {
        config.api.token_file = Some(file.clone());
        config.api.token = None;
    }
    let token = config.api.read_token().context("the API token")?;
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
    let surface = Surface::new(
        agent.config().mode,
        agent.config().interval_s,
        agent.config().api.history_points,
    );
    let server = start_server(&agent, &surface, token)?;
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing the handler for SIGHUP")?;
    let mut hooks = Hooks {
        surface,
        ticks: 0,
        limit: args.ticks,
        stop: stop.clone(),
        reload,
    };
    agent.run_until(&stop, &mut hooks);
    let ticks = hooks.ticks;
    if let Some(server) = server {
        server.stop();
    }
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

/// What `presage agent` does around each tick: logs it, publishes it to the HTTP
/// surface, serves operators' commands, reloads policies on SIGHUP.
struct Hooks {
    surface: Surface,
    ticks: u64,
    limit: Option<u64>,
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl LoopHooks for Hooks {
    fn on_tick(&mut self, agent: &mut Agent, tick: &AgentTick, took: Duration) {
        log_tick(tick);
        self.surface.publish(agent, tick, took);
        self.ticks += 1;
        if self.limit.is_some_and(|n| self.ticks >= n) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    fn idle(&mut self, agent: &mut Agent) {
        self.surface.serve(agent);
        if self.reload.swap(false, Ordering::Relaxed) {
            match agent.handle(Command::ReloadPolicies) {
                Ok(summary) => info!(%summary, "policies reloaded (SIGHUP)"),
                Err(e) => warn!("policy reload refused, the old policies stay: {e}"),
            }
        }
    }
}

fn log_tick(tick: &AgentTick) {
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
}

/// Serves the API, metrics and dashboard when a listen address is set. Reads of stored
/// history (profiles, decisions, alerts) go through a second store connection, so they
/// never wait on the loop's.
fn start_server(
    agent: &Agent,
    surface: &Surface,
    token: Option<String>,
) -> Result<Option<presage_server::ServerHandle>> {
    let api = &agent.config().api;
    if api.listen.is_empty() {
        return Ok(None);
    }
    let store = match agent.config().store_url() {
        Ok(url) => match presage_store::open(&url) {
            Ok(store) => Some(store),
            Err(e) => {
                warn!("the API serves no stored history: {e}");
                None
            }
        },
        Err(e) => {
            warn!("the API serves no stored history: {e}");
            None
        }
    };
    let state =
        presage_server::ServerState::new(surface.shared(), store, token, api.metrics_max_workloads);
    let server = presage_server::spawn(&api.listen, state)
        .with_context(|| format!("serving the API on {}", api.listen))?;
    eprintln!(
        "presage agent: API, /metrics and dashboard on http://{}/",
        server.local_addr()
    );
    Ok(Some(server))
}
