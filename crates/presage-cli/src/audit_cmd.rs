//! `presage audit`: the store's audit trail as JSON lines. Parses, wires, prints.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use serde::Serialize;

use crate::profiles_cmd::{StoreArgs, open};

/// Which audit table to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum What {
    /// What the response ladder did: one JSON object per response.
    Responses,
    /// The alerts raised.
    Alerts,
    /// The limit changes, each with the behavioural score at the time.
    Decisions,
}

/// Print the audit trail, oldest first, one JSON object per line.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Only this workload (its cgroup, as the store names it).
    #[arg(long)]
    workload: Option<String>,
    /// Which table.
    #[arg(long, value_enum, default_value = "responses")]
    what: What,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let mut store = open(&args.store)?;
    let workload = args.workload.as_deref();
    let out = std::io::stdout();
    let mut out = out.lock();
    match args.what {
        What::Responses => print_lines(&mut out, &store.responses(workload)?),
        What::Alerts => print_lines(&mut out, &store.alerts(workload)?),
        What::Decisions => print_lines(&mut out, &store.decisions(workload)?),
    }
}

fn print_lines<T: Serialize>(out: &mut impl Write, rows: &[T]) -> Result<()> {
    for row in rows {
        let line = serde_json::to_string(row).context("serialising an audit row")?;
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    Ok(())
}
