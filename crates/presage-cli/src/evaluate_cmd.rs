//! `presage evaluate-forecast`: score every forecasting model against the seasonal-naive
//! and ETS baselines, one step ahead, on traces.

use std::path::PathBuf;
use std::sync::Arc;

use crate::progress::{counting_bar, write_report};
use anyhow::{Context, Result, bail};
use presage_nn::NeuralFactory;
use presage_sim::evaluate::{
    EtsOptions, EvalOptions, default_models, evaluate, load_traces, sampled_workloads, table,
};
use presage_sim::synth::{SynthConfig, generate};
use presage_sim::trace::ReadOptions;

/// Arguments of `presage evaluate-forecast`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A trace, as FORMAT:PATH (bitbrains, alibaba, csv or prometheus; a file or a
    /// directory). Repeatable. Without any, the built-in synthetic mix is used.
    #[arg(long = "trace", value_name = "FORMAT:PATH")]
    traces: Vec<String>,

    /// Where report.json goes.
    #[arg(long, default_value = "presage-eval")]
    out: PathBuf,

    /// Evaluate only N workloads, evenly spaced through the id-sorted list. The ETS
    /// baseline refits a batch model per workload and resource every simulated day, which
    /// dominates the run time; a sample trades the figures' precision for that time.
    #[arg(long, value_name = "N")]
    sample: Option<usize>,

    /// The neural model's weights (from `presage train`); the built-in default model
    /// when absent.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,

    /// Leave out the neural model.
    #[arg(long)]
    no_neural: bool,

    /// Leave out the ETS baseline (the expensive one).
    #[arg(long)]
    no_ets: bool,

    /// Hours of data between ETS refits.
    #[arg(long, default_value_t = 24.0)]
    ets_refit_hours: f64,

    /// Days of history each ETS fit sees.
    #[arg(long, default_value_t = 3.0)]
    ets_window_days: f64,

    /// Hours after each workload's first sample before steps are scored.
    #[arg(long, default_value_t = 24)]
    warmup_hours: u32,

    /// Skip malformed trace lines instead of stopping at the first.
    #[arg(long)]
    lenient: bool,

    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs `presage evaluate-forecast`.
pub(crate) fn run(args: &Args) -> Result<()> {
    for (name, v) in [
        ("--ets-refit-hours", args.ets_refit_hours),
        ("--ets-window-days", args.ets_window_days),
    ] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{name} {v}: must be a positive number");
        }
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
    let options = EvalOptions {
        warmup_s: args.warmup_hours.saturating_mul(3600),
        seasonal_naive: true,
        ets: (!args.no_ets).then(|| EtsOptions {
            refit_every_s: args.ets_refit_hours * 3600.0,
            window_s: args.ets_window_days * 86_400.0,
            ..EtsOptions::default()
        }),
        sample: args.sample,
    };
    let mut models = default_models().context("building the models")?;
    if !args.no_neural {
        let neural = match &args.model {
            Some(path) => NeuralFactory::from_file(path)
                .with_context(|| format!("loading the neural model {}", path.display()))?,
            None => NeuralFactory::default_model().context("loading the built-in neural model")?,
        };
        models.push(Arc::new(neural));
    }
    let steps: u64 = sampled_workloads(&trace, args.sample)
        .iter()
        .map(|w| w.points.len() as u64)
        .sum();
    let bar = counting_bar(args.quiet, steps, "evaluating", "workload-steps");
    let report = evaluate(&trace, &models, &options, sources, &|n| bar.inc(n))?;
    bar.finish_and_clear();

    let path = write_report(&args.out, "report.json", &report)?;
    print!("{}", table(&report));
    println!("report: {}", path.display());
    Ok(())
}
