//! `presage evaluate-anomaly`: run presage's streaming detector on NAB's series and score
//! it with NAB's rules, beside NAB's published detector scores.

use std::path::PathBuf;

use crate::progress::{counting_bar, write_report};
use anyhow::{Context, Result};
use presage_sim::nab::{DetectorSettings, corpus_rows, evaluate, table};

/// Arguments of `presage evaluate-anomaly`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The NAB directory: it holds `data/`, `labels/combined_windows.json` and, optionally,
    /// `results/final_results.json` (NAB's published scores, shown beside presage's).
    #[arg(long, value_name = "DIR")]
    nab: PathBuf,

    /// Where report.json goes.
    #[arg(long, default_value = "presage-anomaly")]
    out: PathBuf,

    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs `presage evaluate-anomaly`. The detector's settings are not options on purpose:
/// they are fixed before any run and the same for every series (docs/EVALUATION.md).
pub(crate) fn run(args: &Args) -> Result<()> {
    let settings = DetectorSettings::default();
    let bar = counting_bar(args.quiet, corpus_rows(&args.nab), "detecting", "rows");
    let report = evaluate(&args.nab, &settings, &|n| bar.inc(n))
        .with_context(|| format!("evaluating on {}", args.nab.display()))?;
    bar.finish_and_clear();

    let path = write_report(&args.out, "report.json", &report)?;
    print!("{}", table(&report));
    println!("report: {}", path.display());
    Ok(())
}
