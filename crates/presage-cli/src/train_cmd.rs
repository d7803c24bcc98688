//! `presage train`: train the neural forecaster on traces and write its weights.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use presage_nn::{CellKind, TrainConfig, TrainEvent, synthetic_training_traces, train};
use presage_sim::trace::{ReadOptions, Trace, TraceFormat, read_trace};
use tracing::info;

/// Arguments of `presage train`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A trace to learn from, as FORMAT:PATH (bitbrains, alibaba, csv or prometheus; a
    /// file or a directory). Repeatable. Without any, the built-in synthetic mix (14 days,
    /// three seeds) is used.
    #[arg(long = "trace", value_name = "FORMAT:PATH")]
    traces: Vec<String>,

    /// Where to write the weights (safetensors with a presage header).
    #[arg(long)]
    out: PathBuf,

    /// Most epochs (default 20); training stops earlier when validation stops improving.
    #[arg(long)]
    epochs: Option<usize>,

    /// Seed of the split, the initial weights and the window sampling.
    #[arg(long)]
    seed: Option<u64>,

    /// The recurrent cell.
    #[arg(long, value_parser = ["gru", "lstm"], default_value = "gru")]
    cell: String,

    /// Hidden units (default 32).
    #[arg(long)]
    hidden: Option<usize>,

    /// Optimiser steps per epoch (default 200).
    #[arg(long)]
    batches_per_epoch: Option<usize>,

    /// Skip malformed trace lines instead of stopping at the first.
    #[arg(long)]
    lenient: bool,

    /// No progress bar or per-epoch lines.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs `presage train`.
pub(crate) fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let (traces, labels) = load(args)?;
    let mut config = TrainConfig {
        trained_on: labels,
        cell: if args.cell == "lstm" {
            CellKind::Lstm
        } else {
            CellKind::Gru
        },
        ..TrainConfig::default()
    };
    if let Some(epochs) = args.epochs {
        config.epochs = epochs;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(hidden) = args.hidden {
        config.hidden = hidden;
    }
    if let Some(batches) = args.batches_per_epoch {
        config.batches_per_epoch = batches;
    }
    let bar = progress_bar(args.quiet);
    let quiet = args.quiet;
    let model = train(&traces, &config, &|event| match event {
        TrainEvent::Prepared {
            train_series,
            validation_series,
            total_batches,
        } => {
            bar.set_length(*total_batches as u64);
            bar.set_message(format!(
                "{train_series} series, {validation_series} held out"
            ));
        }
        TrainEvent::Batch { loss, .. } => {
            bar.inc(1);
            bar.set_message(format!("loss {loss:.4}"));
        }
        TrainEvent::Epoch(e) => {
            if !quiet {
                let line = format!(
                    "epoch {:>3}: train {:.4}  validation {:.4}  p95 coverage {:.1} %  ({:.0} s)",
                    e.epoch,
                    e.train_pinball,
                    e.validation_pinball,
                    100.0 * e.validation_coverage_p95,
                    e.elapsed_s
                );
                // A bar drawing to a pipe is hidden, and so is its println.
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
        }
    })
    .context("training the neural forecaster")?;
    bar.finish_and_clear();
    model
        .save(&args.out)
        .with_context(|| format!("writing the model to {}", args.out.display()))?;
    let report = model.report();
    let size = std::fs::metadata(&args.out).map_or(0, |m| m.len());
    eprintln!(
        "wrote {} ({} KB): {} model, best epoch {} of {}{}, validation pinball {:.4} (untrained {:.4}){}; {:.0} s",
        args.out.display(),
        size.div_ceil(1024),
        config.cell.name(),
        report.best_epoch,
        report.epochs.len(),
        if report.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        model.header().validation_pinball.unwrap_or(f64::NAN),
        report.initial_validation_pinball,
        if report.validation_in_sample {
            " [in-sample: too few workloads to hold any out]"
        } else {
            ""
        },
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

fn load(args: &Args) -> Result<(Vec<Trace>, Vec<String>)> {
    if args.traces.is_empty() {
        info!("no --trace given: training on the built-in synthetic mix");
        return Ok(synthetic_training_traces().into_iter().unzip());
    }
    let options = ReadOptions {
        lenient: args.lenient,
        ..ReadOptions::default()
    };
    let mut traces = Vec::with_capacity(args.traces.len());
    for spec in &args.traces {
        let (format, path) = spec.split_once(':').with_context(|| {
            format!("--trace {spec:?}: expected FORMAT:PATH, e.g. bitbrains:data/fastStorage")
        })?;
        let format: TraceFormat = format
            .parse()
            .with_context(|| format!("--trace {spec:?}"))?;
        let trace = read_trace(format, Path::new(path), &options)
            .with_context(|| format!("reading {format} trace {path}"))?;
        info!(path, workloads = trace.workloads.len(), "read trace");
        traces.push(trace);
    }
    Ok((traces, args.traces.clone()))
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} training [{bar:40}] {pos}/{len} batches, {msg} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
