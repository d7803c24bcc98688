//! `presage`: predictive resource allocation for Linux workloads.

mod agent_cmd;
mod anomaly_cmd;
mod audit_cmd;
mod bench_api;
mod bench_cmd;
mod bench_store;
mod coldstart_cmd;
mod compare_live;
mod config_cmd;
mod evaluate_cmd;
mod loadgen;
mod profiles_cmd;
mod progress;
mod run_cmd;
mod simulate;
mod trace_cmd;
mod train_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// presage learns how each workload uses CPU, memory, I/O and network, forecasts its demand
/// as a distribution, moves its limits before the demand arrives and gives them back when
/// it has passed.
///
/// Start with `presage simulate`: it replays a built-in synthetic trace (or your own, or a
/// public one) under presage and the allocators people use today (static limits,
/// threshold rules, Kubernetes VPA, Google Autopilot, CloudScale) and reports, side by
/// side, how much each wastes and how often each starves a workload.
#[derive(Debug, Parser)]
#[command(name = "presage", version, about, long_about)]
struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay traces under several allocation policies and compare slack, violations,
    /// OOM kills and churn.
    Simulate(simulate::Args),
    /// Work with traces: generate synthetic ones.
    #[command(subcommand)]
    Trace(trace_cmd::Command),
    /// List the allocation policies, their knobs and sweep grids.
    Policies,
    /// Train the neural (GRU/LSTM) forecaster on traces and write its weights.
    Train(train_cmd::Args),
    /// Score every forecasting model one step ahead against the seasonal-naive and ETS
    /// baselines (p95 pinball loss, p95 coverage, MASE).
    EvaluateForecast(evaluate_cmd::Args),
    /// Replay each workload as a second run after its profile was learned on a first run
    /// (or taken from its nearest neighbour), against a cold start: the first day's slack
    /// and violations relative to the steady state.
    EvaluateColdstart(coldstart_cmd::Args),
    /// Run presage's streaming anomaly detector on the Numenta Anomaly Benchmark's series
    /// and score it with NAB's rules (standard, reward-low-FP, reward-low-FN profiles).
    EvaluateAnomaly(anomaly_cmd::Args),
    /// Run the agent: discover the host's workloads and manage their limits live.
    Agent(agent_cmd::Args),
    /// Run a command in a new cgroup managed by presage from its first instant.
    Run(run_cmd::Args),
    /// The audit trail in the store: the responses to alerts (record, webhook, throttle,
    /// freeze, kill) with the alert and scores behind each, or the alerts or decisions,
    /// as JSON lines.
    Audit(audit_cmd::Args),
    /// The stored profiles: ls, show, export, import, rm.
    #[command(subcommand)]
    Profiles(profiles_cmd::Command),
    /// Benchmarks that need this host (agent overhead and latency).
    #[command(subcommand)]
    Bench(bench_cmd::Command),
    /// On this host: one periodic load under a static limit, the reactive threshold rule
    /// and presage, side by side.
    CompareLive(compare_live::Args),
    /// The agent's config file: `presage config check [FILE]`.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Generate a precise CPU and memory load, constant or following a pattern, for
    /// real-host tests and live experiments.
    Loadgen(loadgen::Args),
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(&args),
        Command::Trace(cmd) => trace_cmd::run(&cmd),
        Command::Train(args) => train_cmd::run(&args),
        Command::EvaluateForecast(args) => evaluate_cmd::run(&args),
        Command::EvaluateColdstart(args) => coldstart_cmd::run(&args),
        Command::EvaluateAnomaly(args) => anomaly_cmd::run(&args),
        Command::Loadgen(args) => loadgen::run(&args),
        Command::Agent(args) => agent_cmd::run(&args),
        Command::Bench(cmd) => bench_cmd::run(&cmd),
        Command::Profiles(cmd) => profiles_cmd::run(&cmd),
        Command::Audit(args) => audit_cmd::run(&args),
        Command::CompareLive(args) => compare_live::run(&args),
        Command::Config(cmd) => match config_cmd::run(&cmd) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Run(args) => match run_cmd::run(&args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Policies => {
            print!("{}", simulate::policy_list());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
