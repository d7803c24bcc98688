//! `presage evaluate-coldstart`: replay each workload as a second run after its profile
//! was learned on a first run (or taken from its nearest neighbour), and compare the
//! second run's first day with the steady state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::progress::{counting_bar, write_report};
use anyhow::{Result, bail};
use presage_sim::coldstart::{ColdStartOptions, coldstart, planned_steps, table};
use presage_sim::evaluate::{load_traces, sampled_workloads};
use presage_sim::plot;
use presage_sim::run::runs_for;
use presage_sim::synth::{SynthConfig, generate};
use presage_sim::trace::{ReadOptions, Trace};

/// Arguments of `presage evaluate-coldstart`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A trace, as FORMAT:PATH (bitbrains, alibaba, csv or prometheus; a file or a
    /// directory). Repeatable. Without any, the built-in synthetic mix (7 days) is used.
    #[arg(long = "trace", value_name = "FORMAT:PATH")]
    traces: Vec<String>,

    /// The policies to evaluate, comma-separated (see `presage policies`). Rules that keep
    /// no forecaster state (vpa, autopilot-*) start every second run cold: they show what
    /// a cold first day costs without a profile store.
    #[arg(long = "policy", value_delimiter = ',', default_value = "presage")]
    policies: Vec<String>,

    /// Days of each workload's first run (default: half its span, at least one day). The
    /// second run, the rest, must cover two days or the workload is skipped.
    #[arg(long, value_name = "D")]
    first_run_days: Option<f64>,

    /// Where coldstart.json and the plots go.
    #[arg(long, default_value = "presage-coldstart")]
    out: PathBuf,

    /// Evaluate only N workloads, evenly spaced through the id-sorted list (neighbours
    /// are then looked for among those N only).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// Leave out the neighbour arm.
    #[arg(long)]
    no_neighbour: bool,

    /// Days of the second run shown day by day in the report and plots.
    #[arg(long, default_value_t = 14)]
    curve_days: usize,

    /// Skip malformed trace lines instead of stopping at the first.
    #[arg(long)]
    lenient: bool,

    /// Do not draw plots.
    #[arg(long)]
    no_plots: bool,

    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs `presage evaluate-coldstart`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    if let Some(d) = args.first_run_days
        && !(d.is_finite() && d > 0.0)
    {
        bail!("--first-run-days {d}: must be a positive number of days");
    }
    if args.limit == Some(0) {
        bail!("--limit 0: at least one workload is needed");
    }
    let (trace, sources) = if args.traces.is_empty() {
        (
            generate(&SynthConfig::default_mix()),
            vec!["synthetic:default-mix".to_owned()],
        )
    } else {
        let read = ReadOptions {
            lenient: args.lenient,
            ..ReadOptions::default()
        };
        (load_traces(&args.traces, &read)?, args.traces.clone())
    };
    let trace = Arc::new(Trace {
        workloads: sampled_workloads(&trace, args.limit)
            .into_iter()
            .cloned()
            .collect(),
        ..Trace::default()
    });
    if trace.workloads.is_empty() {
        bail!("the trace holds no workloads");
    }
    let runs = runs_for(&args.policies, false)?;
    let options = ColdStartOptions {
        first_run_days: args.first_run_days,
        neighbour: !args.no_neighbour,
        curve_days: args.curve_days.max(2),
    };
    let bar = counting_bar(
        args.quiet,
        planned_steps(&trace, &options) * runs.len() as u64,
        "cold start",
        "workload-steps",
    );
    let mut report = coldstart(&trace, &runs, &options, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    report.sources = sources;

    let path = write_report(&args.out, "coldstart.json", &report)?;
    print!("{}", table(&report));
    if !args.no_plots {
        let mut written = 0;
        for p in &report.policies {
            for resource in ["cpu", "memory"] {
                written += plot::coldstart_days(p, resource, &args.out)?.len();
            }
        }
        println!("plots: {written}");
    }
    println!(
        "report: {} ({:.1} s)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
