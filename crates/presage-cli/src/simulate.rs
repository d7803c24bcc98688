//! `presage simulate`: replay traces under several policies and report side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use presage_core::WorkloadId;
use presage_forecast::ForecasterFactory;
use presage_nn::NeuralFactory;
use presage_policy::registry;
use presage_sim::report::{self, TraceSummary};
use presage_sim::run::{ORACLE_DEFAULT, ORACLE_SWEEP, PolicyRun, resolve, runs_for, simulate_with};
use presage_sim::synth::SynthConfig;
use presage_sim::trace::{ReadOptions, Trace, TraceFormat, read_trace};
use presage_sim::{NodeCapacity, SimError, SimOptions, plot, simulate};
use tracing::info;

const ALL_POLICIES: &str =
    "static,threshold,vpa,autopilot-mw,autopilot-ml,cloudscale,oracle,presage";

/// Arguments of `presage simulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A trace to replay, as FORMAT:PATH. FORMAT is bitbrains, alibaba, csv or prometheus;
    /// PATH a file or a directory (read recursively). Repeatable. Without any, a built-in
    /// synthetic trace (a mix of daily, weekly, bursty, trending, stepping, leaking and
    /// idle workloads) is replayed.
    #[arg(long = "trace", value_name = "FORMAT:PATH")]
    traces: Vec<String>,

    /// Add the neural forecaster (the built-in GRU, or --model) to presage's ensemble.
    /// Off by default: it adds about 11 µs per workload-step.
    #[arg(long)]
    neural: bool,

    /// Weights for --neural (from `presage train`).
    #[arg(long, value_name = "FILE", requires = "neural")]
    model: Option<PathBuf>,

    /// Days of the built-in synthetic trace (used when no --trace is given).
    #[arg(
        long,
        value_name = "DAYS",
        default_value_t = 7,
        conflicts_with = "traces"
    )]
    synthetic_days: u32,

    /// The policies to compare (see `presage policies`).
    #[arg(long, value_delimiter = ',', default_value = ALL_POLICIES)]
    policies: Vec<String>,

    /// Also run each policy over its knob's grid and draw the slack-vs-violation frontier;
    /// the headline is each policy's slack at VPA's violation rate, relative to VPA's.
    #[arg(long)]
    sweep: bool,

    /// Where report.json and the plots go.
    #[arg(long, default_value = "presage-out")]
    out: PathBuf,

    /// Skip malformed trace lines (counted in the report) instead of stopping at the first.
    #[arg(long)]
    lenient: bool,

    /// Seconds between a decision and the moment it takes effect (0: from the next step).
    #[arg(long, default_value_t = 0)]
    actuation_delay_s: u32,

    /// Seconds between allocation decisions of a workload (0: at every sample).
    #[arg(long, default_value_t = 0)]
    decide_every_s: u32,

    /// Workloads per simulated node; with --node-capacity they contend for it.
    #[arg(long, default_value_t = 1)]
    pack: usize,

    /// Capacity of each simulated node, e.g. `cpu=32,memory=128GiB`.
    #[arg(long, value_name = "cpu=CORES,memory=BYTES")]
    node_capacity: Option<String>,

    /// Workloads whose usage-vs-limit timelines are drawn (default: the two busiest
    /// workloads whose demand varies most).
    #[arg(long, value_delimiter = ',')]
    timeline: Vec<String>,

    /// Days shown in the timelines (the last days of the trace).
    #[arg(long, default_value_t = 3.0)]
    timeline_days: f64,

    /// Do not draw plots.
    #[arg(long)]
    no_plots: bool,

    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// The policy list printed by `presage policies`.
pub(crate) fn policy_list() -> String {
    let mut out = String::new();
    for p in registry::all() {
        let _ = writeln!(out, "{:<14} {}", p.name, p.summary);
        let _ = writeln!(
            out,
            "{:<14} knob: {} (default {}; sweep {:?})",
            "", p.knob, p.default_knob, p.sweep
        );
    }
    let _ = writeln!(
        out,
        "{:<14} knows the demand of the intervals its decisions govern (the floor no policy can beat)",
        "oracle"
    );
    let _ = writeln!(
        out,
        "{:<14} knob: scale on the known future peak (default {ORACLE_DEFAULT}; sweep {ORACLE_SWEEP:?})",
        ""
    );
    out
}

fn load_traces(args: &Args) -> Result<(Trace, TraceSummary)> {
    if args.traces.is_empty() {
        if args.synthetic_days == 0 {
            anyhow::bail!("--synthetic-days 0: the synthetic trace needs at least one day");
        }
        let config = SynthConfig {
            days: args.synthetic_days,
            ..SynthConfig::default_mix()
        };
        info!("no --trace given: replaying the built-in synthetic mix");
        let trace = presage_sim::synth::generate(&config);
        let summary = TraceSummary {
            sources: vec![format!("synthetic:default-mix({} days)", config.days)],
            ..TraceSummary::default()
        };
        return Ok((trace, summary));
    }
    let options = ReadOptions {
        lenient: args.lenient,
        ..ReadOptions::default()
    };
    let mut all = Trace::default();
    let mut summary = TraceSummary {
        sources: args.traces.clone(),
        ..TraceSummary::default()
    };
    let several = args.traces.len() > 1;
    for (i, spec) in args.traces.iter().enumerate() {
        let (format, path) = spec.split_once(':').with_context(|| {
            format!("--trace {spec:?}: expected FORMAT:PATH, e.g. bitbrains:data/fastStorage")
        })?;
        let format: TraceFormat = format
            .parse()
            .with_context(|| format!("--trace {spec:?}"))?;
        let started = Instant::now();
        let mut trace = read_trace(format, Path::new(path), &options)
            .with_context(|| format!("reading {format} trace {path}"))?;
        info!(
            path,
            workloads = trace.workloads.len(),
            seconds = started.elapsed().as_secs_f64(),
            "read trace"
        );
        if several {
            // Ids from different traces may collide (VM "1" of two datasets).
            for w in &mut trace.workloads {
                w.id = WorkloadId::new(format!("t{i}/{}", w.id))?;
            }
        }
        summary.files += trace.files;
        summary.duplicates += trace.duplicates;
        summary.skipped.lines += trace.skipped.lines;
        for (reason, n) in &trace.skipped.by_reason {
            *summary.skipped.by_reason.entry(reason.clone()).or_default() += n;
        }
        summary
            .skipped
            .examples
            .extend(trace.skipped.examples.iter().take(10).cloned());
        all.workloads.append(&mut trace.workloads);
    }
    Ok((all, summary))
}

fn parse_capacity(spec: &str) -> Result<NodeCapacity> {
    let mut cap = NodeCapacity::default();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .with_context(|| format!("--node-capacity {spec:?}: {part:?} is not KEY=VALUE"))?;
        match key {
            "cpu" => {
                let cores: f64 = value.parse().with_context(|| {
                    format!("--node-capacity cpu={value:?} is not a number of cores")
                })?;
                if !(cores.is_finite() && cores > 0.0) {
                    bail!("--node-capacity cpu={value}: must be a positive number of cores");
                }
                cap.cpu_cores = Some(cores);
            }
            "memory" => cap.memory_bytes = Some(parse_bytes(value)?),
            other => bail!("--node-capacity: unknown key {other:?} (expected cpu or memory)"),
        }
    }
    Ok(cap)
}

/// Bytes from `123`, `4.5G`, `512MiB`, `2GB` (binary multiples either way, as for memory).
pub(crate) fn parse_bytes(text: &str) -> Result<f64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .with_context(|| format!("{text:?} is not a size (e.g. 512MiB, 4G, 1073741824)"))?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => bail!("{text:?}: unknown size unit {other:?} (use K, M, G or T)"),
    };
    let bytes = value * multiplier;
    if !(bytes.is_finite() && bytes > 0.0) {
        bail!("{text:?}: a size must be positive");
    }
    Ok(bytes)
}

/// Runs `presage simulate`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let (trace, summary) = load_traces(args)?;
    if trace.workloads.is_empty() {
        bail!("the trace holds no workloads");
    }
    let samples: u64 = trace.workloads.iter().map(|w| w.points.len() as u64).sum();
    let workloads = trace.workloads.len();
    let timeline_ids: Vec<WorkloadId> = if args.timeline.is_empty() {
        default_timelines(&trace)
    } else {
        args.timeline
            .iter()
            .map(WorkloadId::new)
            .collect::<Result<_, _>>()?
    };
    let options = SimOptions {
        actuation_delay_s: args.actuation_delay_s,
        pack: args.pack.max(1),
        node_capacity: match &args.node_capacity {
            Some(spec) => parse_capacity(spec)?,
            None => NodeCapacity::default(),
        },
        timeline_workloads: timeline_ids.clone(),
        decide_every_s: args.decide_every_s,
    };
    let runs = runs_for(&args.policies, args.sweep)?;
    let trace = Arc::new(trace);
    let bar = crate::progress::counting_bar(
        args.quiet,
        samples * runs.len() as u64,
        "simulating",
        "workload-steps",
    );
    let results = if args.neural {
        let neural: Arc<dyn ForecasterFactory> = Arc::new(match &args.model {
            Some(path) => NeuralFactory::from_file(path)
                .with_context(|| format!("loading the neural model {}", path.display()))?,
            None => NeuralFactory::default_model().context("loading the built-in neural model")?,
        });
        let delay = options.actuation_delay_s;
        let resolver = |run: &PolicyRun| {
            if run.name != "presage" {
                return resolve(&trace, run, delay);
            }
            registry::build_presage_with(run.knob, vec![Arc::clone(&neural)]).map_err(|source| {
                SimError::Policy {
                    name: run.name.clone(),
                    source,
                }
            })
        };
        simulate_with(&trace, &runs, &options, &|n| bar.inc(n), &resolver)?
    } else {
        simulate(&trace, &runs, &options, &|n| bar.inc(n))?
    };
    bar.finish_and_clear();

    let report = report::build(&results, summary, options, workloads, samples, args.sweep);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output directory {}", args.out.display()))?;
    let json_path = args.out.join("report.json");
    let json = serde_json::to_vec_pretty(&report).context("serialising the report")?;
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    print!("{}", report::table(&report));

    if !args.no_plots {
        let mut written = Vec::new();
        for resource in ["cpu", "memory"] {
            written.extend(plot::frontier(
                &report,
                resource,
                &args.out.join(format!("frontier_{resource}")),
            )?);
        }
        for id in &timeline_ids {
            let timelines: Vec<_> = results
                .iter()
                .flat_map(|r| r.timelines.iter())
                .filter(|t| &t.workload == id)
                .collect();
            for resource in ["cpu", "memory"] {
                let stem = args
                    .out
                    .join(format!("timeline_{}_{resource}", sanitize(id.as_str())));
                written.extend(plot::timeline(
                    id.as_str(),
                    resource,
                    &timelines,
                    args.timeline_days,
                    &stem,
                )?);
            }
        }
        println!("\nplots: {}", written.len());
    }
    println!(
        "report: {} ({:.1} s)",
        json_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Two workloads worth a look: among the busier half (by mean CPU), the ones whose CPU
/// demand varies most relative to its mean — a flat or idle workload shows nothing about
/// how a policy follows demand.
fn default_timelines(trace: &Trace) -> Vec<WorkloadId> {
    let stats: Vec<(f64, f64, &WorkloadId)> = trace
        .workloads
        .iter()
        .filter(|w| w.points.len() >= 100)
        .map(|w| {
            let cpu: Vec<f64> = w
                .points
                .iter()
                .filter_map(|p| p.demand.cpu_cores())
                .collect();
            let n = cpu.len().max(1) as f64;
            let mean = cpu.iter().sum::<f64>() / n;
            let var = cpu.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / n;
            (
                mean,
                if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
                &w.id,
            )
        })
        .collect();
    let mut means: Vec<f64> = stats.iter().map(|s| s.0).collect();
    means.sort_by(f64::total_cmp);
    let median = means.get(means.len() / 2).copied().unwrap_or(0.0);
    let mut busy: Vec<&(f64, f64, &WorkloadId)> = stats.iter().filter(|s| s.0 >= median).collect();
    busy.sort_by(|a, b| b.1.total_cmp(&a.1));
    busy.into_iter().take(2).map(|s| s.2.clone()).collect()
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() -> Result<()> {
        assert_eq!(parse_bytes("1024")?, 1024.0);
        assert_eq!(parse_bytes("2KiB")?, 2048.0);
        assert_eq!(parse_bytes("1.5G")?, 1.5 * 1024.0 * 1024.0 * 1024.0);
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("-1G").is_err());
        assert!(parse_bytes("").is_err());
        Ok(())
    }

    #[test]
    fn node_capacity_names_bad_keys_and_values() -> Result<()> {
        let cap = parse_capacity("cpu=32, memory=128GiB")?;
        assert_eq!(cap.cpu_cores, Some(32.0));
        assert_eq!(cap.memory_bytes, Some(128.0 * 1024.0 * 1024.0 * 1024.0));
        let err = parse_capacity("gpu=1").map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("gpu")));
        assert!(parse_capacity("cpu=lots").is_err());
        assert!(parse_capacity("cpu=0").is_err());
        Ok(())
    }
}
