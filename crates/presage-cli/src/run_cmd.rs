//! `presage run`: a command under presage from its first instant. Parses, wires, prints.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::Parser;
use presage_agent::run::{RunBudget, RunOptions};
use presage_agent::{AgentConfig, ExecutionSummary, Mode};
use presage_core::{Limits, Resource};

use crate::loadgen::pattern::{parse_cores, parse_size};

/// Run a command in a new cgroup managed by presage: its limits follow the forecast of
/// its demand, never above the budget. Prints an execution summary at exit and exits
/// with the command's status.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// The run's name (default: the program's file name).
    #[arg(long)]
    name: Option<String>,
    /// Hard ceilings: `cpu=CORES,memory=SIZE[,cpu-seconds=S,window=SECS]`.
    #[arg(long)]
    budget: Option<String>,
    /// Priority weight when the node is short of capacity.
    #[arg(long)]
    weight: Option<f64>,
    /// Version label of the code: the code is then known by its path and this label, and
    /// a new label starts from the previous one's profile (weakened).
    #[arg(long = "code-version")]
    code_version: Option<String>,
    /// Write the execution summary as JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Agent config (policy, interval, paths); keys left out keep the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the adoption ledger, decision log, registrations and (by default) the
    /// profile store live [default: /var/lib/presage as root, else the user's data dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The profile store: `sqlite:PATH` or `postgres://…` [default: sqlite:DATA_DIR/presage.db].
    #[arg(long)]
    store: Option<String>,
    /// enforce (default for a run: its cgroup is presage's own), recommend or observe.
    #[arg(long, default_value = "enforce")]
    mode: Mode,
    /// The allocation rule (see `presage policies`).
    #[arg(long)]
    policy: Option<String>,
    /// The rule's knob.
    #[arg(long)]
    knob: Option<f64>,
    /// Seconds between samples.
    #[arg(long)]
    interval: Option<f64>,
    /// Seconds between allocation decisions.
    #[arg(long)]
    decide_every: Option<u32>,
    /// Starting limits instead of the budget: `cpu=CORES,memory=SIZE`.
    #[arg(long)]
    initial: Option<String>,
    /// Manage the run in this process even when an agent is running.
    #[arg(long)]
    standalone: bool,
    /// The highest rung of the anomaly response ladder: record, webhook (default),
    /// throttle, freeze or kill.
    #[arg(long, value_name = "RUNG")]
    respond_up_to: Option<presage_policy::Rung>,
    /// The rung the first alert acts at (default record); the ladder climbs from there.
    #[arg(long, value_name = "RUNG")]
    respond_from: Option<presage_policy::Rung>,
    /// POST the ladder's alerts to this `http://` URL.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// Seconds every rung of the ladder holds before the next action (default: per rung,
    /// 10 s for record up to 300 s for kill).
    #[arg(long, value_name = "SECS")]
    response_cooldown: Option<u32>,
    /// Seconds without an alert after which the ladder drops back to record.
    #[arg(long, value_name = "SECS")]
    response_reset: Option<u32>,
    /// The throttle rung's CPU quota as a fraction of current usage, in (0, 1).
    #[arg(long, value_name = "FRACTION")]
    throttle_fraction: Option<f64>,
    /// Never freeze or kill this run (the ladder stops at throttle).
    #[arg(long)]
    protected: bool,
    /// A label the agent's `[policies.match]` selectors can test (`labels = { team =
    /// "ml" }`); repeatable. The label `kind` is set by the agent from the cgroup path.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::embedded()?,
    };
    config.mode = args.mode;
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &args.store {
        presage_store::StoreUrl::parse(url).context("--store")?;
        config.store = Some(url.clone());
    }
    if let Some(p) = &args.policy {
        if presage_policy::registry::find(p).is_none() {
            bail!("--policy: unknown rule {p:?} (see `presage policies`)");
        }
        config.policy = p.clone();
    }
    if args.knob.is_some() {
        config.knob = args.knob;
    }
    if let Some(i) = args.interval {
        if !(i.is_finite() && (0.05..=3600.0).contains(&i)) {
            bail!("--interval: {i} is outside 0.05..=3600 seconds");
        }
        config.interval_s = i;
    }
    if let Some(d) = args.decide_every {
        config.decide_every_s = d;
    }
    apply_response_args(args, &mut config)?;
    let budget = match &args.budget {
        Some(text) => parse_budget(text).with_context(|| format!("--budget {text:?}"))?,
        None => RunBudget::default(),
    };
    let initial_limits = match &args.initial {
        Some(text) => Some(parse_limits(text).with_context(|| format!("--initial {text:?}"))?),
        None => None,
    };
    let opts = RunOptions {
        name: args.name.clone(),
        command: args.command.clone(),
        budget,
        weight: args.weight,
        version: args.code_version.clone(),
        config,
        initial_limits,
        register_with_agent: !args.standalone,
        labels: args.labels.iter().cloned().collect(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .with_context(|| format!("installing the handler for signal {signal}"))?;
    }
    let summary = presage_agent::run::run(&opts, &stop, |_, _| {}).context("presage run")?;
    eprint!("{}", human(&summary));
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary).context("serialising the summary")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::from(
        u8::try_from(summary.exit_status.clamp(0, 255)).unwrap_or(1),
    ))
}

/// The ladder and webhook flags, over the config's `[response]` and
/// `[default_policy.response]`.
fn apply_response_args(args: &Args, config: &mut AgentConfig) -> Result<()> {
    let policy = &mut config.default_policy;
    if let Some(rung) = args.respond_up_to {
        policy.response.max_rung = rung;
    }
    if let Some(rung) = args.respond_from {
        policy.response.start_rung = rung;
    }
    if let Some(s) = args.response_cooldown {
        policy.response.cooldown_s = presage_policy::Cooldowns::all(s);
    }
    if let Some(s) = args.response_reset {
        policy.response.reset_after_s = s;
    }
    if let Some(f) = args.throttle_fraction {
        policy.response.throttle_fraction = f;
    }
    policy.protected |= args.protected;
    policy
        .validate()
        .context("--respond-up-to/--response-*/--throttle-fraction")?;
    if let Some(url) = &args.webhook {
        config.response.webhook_url = Some(url.clone());
        config
            .response
            .validate()
            .map_err(anyhow::Error::msg)
            .context("--webhook")?;
    }
    Ok(())
}

fn fields(text: &str) -> impl Iterator<Item = Result<(&str, &str)>> {
    text.split(',').filter(|f| !f.trim().is_empty()).map(|f| {
        f.split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .with_context(|| format!("field {f:?} is not key=value"))
    })
}

/// `KEY=VALUE`, the key a plain word (letters, digits, `_`, `-`, `.`) so it can be
/// written unquoted in a `labels` table.
fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if key.is_empty() || !key.chars().all(plain) {
        return Err(format!(
            "label key {key:?} must be letters, digits, `_`, `-` or `.`"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

fn parse_budget(text: &str) -> Result<RunBudget> {
    let mut b = RunBudget::default();
    for field in fields(text) {
        let (k, v) = field?;
        match k {
            "cpu" => b.cpu_cores = Some(parse_cores("cpu", v)?),
            "memory" | "mem" => b.memory_bytes = Some(parse_size("memory", v)? as f64),
            "cpu-seconds" => b.cpu_seconds = Some(parse_cores("cpu-seconds", v)?),
            "window" => {
                b.window_s = Some(v.parse().ok().filter(|w| *w > 0).with_context(|| {
                    format!("field `window`: {v:?} is not a positive whole number of seconds")
                })?);
            }
            other => bail!("unknown field `{other}` (expected cpu, memory, cpu-seconds, window)"),
        }
    }
    Ok(b)
}

pub(crate) fn parse_limits(text: &str) -> Result<Limits> {
    let mut l = Limits::unlimited();
    for field in fields(text) {
        let (k, v) = field?;
        match k {
            "cpu" => l.set_hard(Resource::Cpu, parse_cores("cpu", v)?)?,
            "memory" | "mem" => l.set_hard(Resource::Memory, parse_size("memory", v)? as f64)?,
            other => bail!("unknown field `{other}` (expected cpu, memory)"),
        }
    }
    Ok(l)
}

fn human(s: &ExecutionSummary) -> String {
    let get = |m: &std::collections::BTreeMap<&str, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let mib = |b: f64| b / (1024.0 * 1024.0);
    format!(
        "presage run {}: exit {} after {:.1} s ({})\n  cpu    mean {:.2} cores, peak {:.2}; throttled {:.1} s\n  memory mean {:.0} MiB, peak {:.0} MiB; OOM kills {}\n  {} decisions over {} samples; final limits: cpu {}, memory {}\n  code {}… inputs {} user {}\n",
        s.name,
        s.exit_status,
        s.duration_s,
        s.managed_by,
        get(&s.mean, "cpu"),
        get(&s.peaks, "cpu"),
        s.throttled_s,
        mib(get(&s.mean, "memory")),
        mib(get(&s.peaks, "memory")),
        s.oom_kills,
        s.decisions,
        s.samples,
        s.limits_final
            .cpu_quota_cores()
            .map_or("none".into(), |c| format!("{c:.2} cores")),
        s.limits_final
            .memory_max_bytes()
            .map_or("none".into(), |b| format!("{:.0} MiB", mib(b))),
        s.code_id.get(..12).unwrap_or(&s.code_id),
        s.input_hash,
        s.user,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_errors_name_the_field() {
        let b = parse_budget("cpu=2,memory=1G").unwrap();
        assert_eq!(b.cpu_cores, Some(2.0));
        assert_eq!(b.memory_bytes, Some(1024.0 * 1024.0 * 1024.0));
        let e = format!("{:#}", parse_budget("cpu=2,disk=3").unwrap_err());
        assert!(e.contains("disk"), "{e}");
        let e = format!("{:#}", parse_budget("cpu=-1").unwrap_err());
        assert!(e.contains("cpu"), "{e}");
        let l = parse_limits("cpu=0.5,memory=64Mi").unwrap();
        assert_eq!(l.memory_max_bytes(), Some(64.0 * 1024.0 * 1024.0));
    }
}
