//! `presage trace …`: generate synthetic traces.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use presage_sim::synth::{SynthConfig, generate};
use presage_sim::trace::write_csv;

/// `presage trace` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Write a synthetic trace with known structure (daily and weekly periodic, bursty,
    /// trend, step change, memory leak, idle) as generic CSV, readable by
    /// `presage simulate --trace csv:FILE`.
    Synth(SynthArgs),
}

/// Arguments of `presage trace synth`.
#[derive(Debug, clap::Args)]
pub(crate) struct SynthArgs {
    /// The CSV file to write (`-` for standard output).
    #[arg(long)]
    out: PathBuf,
    /// Days to generate.
    #[arg(long)]
    days: Option<u32>,
    /// Seconds between samples.
    #[arg(long)]
    step_s: Option<u32>,
    /// Seed of the random generator (the same seed gives the same trace).
    #[arg(long)]
    seed: Option<u64>,
}

/// Runs a `presage trace` subcommand.
pub(crate) fn run(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Synth(args) => synth(args),
    }
}

fn synth(args: &SynthArgs) -> Result<()> {
    let mut config = SynthConfig::default_mix();
    if let Some(days) = args.days {
        config.days = days;
    }
    if let Some(step) = args.step_s {
        config.step_s = step;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let trace = generate(&config);
    if args.out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        write_csv(&trace, &mut out).context("writing the trace to standard output")?;
        out.flush()
            .context("writing the trace to standard output")?;
    } else {
        let file = std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let mut out = BufWriter::new(file);
        write_csv(&trace, &mut out).with_context(|| format!("writing {}", args.out.display()))?;
        out.flush()
            .with_context(|| format!("writing {}", args.out.display()))?;
        let rows: usize = trace.workloads.iter().map(|w| w.points.len()).sum();
        eprintln!(
            "wrote {} workloads, {rows} rows to {}",
            trace.workloads.len(),
            args.out.display()
        );
    }
    Ok(())
}
