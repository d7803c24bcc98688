//! `presage bench store`: what the profile store costs. The agent's write load (N
//! workloads × one sample per second, one transaction per tick) paced in real time, and
//! start-up (loading N realistic profiles), against SQLite or PostgreSQL.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use presage_core::{Resource, Sample, Timestamp, Usage, WorkloadId, WorkloadKey};
use presage_engine::{Profile, TickWrite};
use presage_store::{AdminStore, StoreUrl};

/// Settings of `presage bench store`.
#[derive(Debug, Parser)]
pub(crate) struct StoreArgs {
    /// The store: `sqlite:PATH` or `postgres://…` [default: SQLite in a temporary dir].
    #[arg(long)]
    store: Option<String>,
    /// Workloads sampled once per second.
    #[arg(long, default_value_t = 1000)]
    workloads: usize,
    /// Seconds of writing (ticks).
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// Profiles to save and then load at "start-up" (0: skip).
    #[arg(long, default_value_t = 10_000)]
    profiles: usize,
    /// Write ticks back to back instead of once per second.
    #[arg(long)]
    unpaced: bool,
    /// Print `tick N` after each committed tick (the crash test reads it).
    #[arg(long, hide = true)]
    print_ticks: bool,
    /// Timestamp of the first tick, seconds (runs appending to one store use distinct ones).
    #[arg(long, default_value_t = 1_700_000_000)]
    start_s: i64,
}

pub(crate) fn run(args: &StoreArgs) -> Result<()> {
    let tmp = tempfile::tempdir().context("creating a temporary dir")?;
    let url = match &args.store {
        Some(text) => StoreUrl::parse(text).context("--store")?,
        None => StoreUrl::in_data_dir(tmp.path()),
    };
    let mut store = presage_store::open(&url)?;
    eprintln!("store: {}", store.describe());
    let writes = write_load(store.as_mut(), args)?;
    if !args.print_ticks {
        println!(
            "| store | workloads | ticks | paced | client CPU % of a core | server CPU % of a core | write ms/tick p50 | p99 | samples/s written |"
        );
        println!("|---|---:|---:|---|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {} | {:.2} | {} | {:.2} | {:.2} | {:.0} |",
            kind(&url),
            args.workloads,
            args.seconds,
            if args.unpaced { "no" } else { "1 s" },
            writes.client_cpu_pct,
            writes
                .server_cpu_pct
                .map_or_else(|| "—".into(), |v| format!("{v:.2}")),
            writes.p50_ms,
            writes.p99_ms,
            writes.rate,
        );
    }
    if args.profiles > 0 {
        let load = profile_load(store.as_mut(), args.profiles)?;
        println!();
        println!(
            "| store | profiles | bytes/profile (JSON) | save s | load by key s (adopt path) | load all s (bulk) |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {:.2} | {:.3} | {:.3} |",
            kind(&url),
            args.profiles,
            load.bytes,
            load.save_s,
            load.by_key_s,
            load.bulk_s
        );
    }
    Ok(())
}

fn kind(url: &StoreUrl) -> &'static str {
    match url {
        StoreUrl::Sqlite(_) => "SQLite",
        StoreUrl::Postgres(_) => "PostgreSQL",
    }
}

struct Writes {
    client_cpu_pct: f64,
    server_cpu_pct: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
    rate: f64,
}

fn ids(n: usize) -> Result<Vec<WorkloadId>> {
    (0..n)
        .map(|i| Ok(WorkloadId::new(format!("bench/w{i}"))?))
        .collect()
}

fn tick_samples(ids: &[WorkloadId], at_s: i64) -> Result<Vec<Sample>> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let mut u = Usage::empty();
            let phase = (at_s as f64 / 60.0 + i as f64).sin();
            u.set(Resource::Cpu, 0.5 + 0.4 * phase)?;
            u.set(Resource::Memory, 2.0e8 + 1.0e8 * phase)?;
            Ok(Sample::new(
                Timestamp::from_unix_secs(at_s),
                id.clone(),
                1000,
                u,
            )?)
        })
        .collect()
}

fn write_load(store: &mut dyn AdminStore, args: &StoreArgs) -> Result<Writes> {
    let ids = ids(args.workloads)?;
    let bar = if args.print_ticks {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(u64::from(args.seconds)).with_message("writing ticks")
    };
    let server0 = postgres_cpu_s();
    let cpu0 = crate::loadgen::process_cpu_s()?;
    let wall = Instant::now();
    let mut next = Instant::now();
    let mut per_tick = Vec::with_capacity(args.seconds as usize);
    for t in 0..args.seconds {
        let samples = tick_samples(&ids, args.start_s + i64::from(t))?;
        let began = Instant::now();
        store.record(TickWrite {
            samples: &samples,
            ..TickWrite::default()
        })?;
        per_tick.push(began.elapsed().as_secs_f64() * 1000.0);
        if args.print_ticks {
            let mut out = std::io::stdout().lock();
            writeln!(out, "tick {}", t + 1).context("writing to stdout")?;
            out.flush().context("flushing stdout")?;
        }
        bar.inc(1);
        if !args.unpaced {
            next += Duration::from_secs(1);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
    bar.finish_and_clear();
    let wall_s = wall.elapsed().as_secs_f64();
    let cpu = crate::loadgen::process_cpu_s()? - cpu0;
    let server = match (server0, postgres_cpu_s()) {
        (Some(a), Some(b)) => Some((b - a) / wall_s * 100.0),
        _ => None,
    };
    per_tick.sort_by(f64::total_cmp);
    let pct = |p: f64| per_tick[((per_tick.len() - 1) as f64 * p).round() as usize];
    if per_tick.is_empty() {
        bail!("--seconds must be at least 1");
    }
    Ok(Writes {
        client_cpu_pct: cpu / wall_s * 100.0,
        server_cpu_pct: server,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        rate: (args.workloads as f64 * f64::from(args.seconds)) / wall_s,
    })
}

/// CPU seconds used by every `postgres` process on the host (a loopback server's share
/// of the write load); `None` when there is none.
fn postgres_cpu_s() -> Option<f64> {
    let mut total = 0.0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        total += ticks / 100.0;
        found = true;
    }
    found.then_some(total)
}

struct Load {
    bytes: usize,
    save_s: f64,
    by_key_s: f64,
    bulk_s: f64,
}

/// A profile as the agent saves it: the presage forecaster after an hour of a periodic
/// workload sampled every second.
fn realistic_model() -> Result<presage_forecast::ModelState> {
    let config = presage_agent::AgentConfig::embedded()?;
    let parts = presage_agent::build_policy(&config)?;
    let factory = parts
        .forecaster
        .context("the presage rule has no forecaster")?;
    let mut f = factory.create();
    let id = WorkloadId::new("bench/model")?;
    for t in 0..3600i64 {
        let mut u = Usage::empty();
        let phase = (t as f64 * std::f64::consts::TAU / 120.0).sin();
        u.set(Resource::Cpu, 0.3 + 0.2 * phase)?;
        u.set(Resource::Memory, 2.0e8 + 1.0e8 * phase)?;
        f.observe(&Sample::new(
            Timestamp::from_unix_secs(1_700_000_000 + t),
            id.clone(),
            1000,
            u,
        )?);
    }
    Ok(f.save()?)
}

fn profile_load(store: &mut dyn AdminStore, n: usize) -> Result<Load> {
    let model = realistic_model()?;
    let bytes = serde_json::to_string(&model)?.len();
    let keys: Vec<WorkloadKey> = (0..n)
        .map(|i| Ok(WorkloadKey::new(format!("bench-code-{i}"), "", "in", "0")?))
        .collect::<Result<_>>()?;
    let bar = indicatif::ProgressBar::new(n as u64).with_message("saving profiles");
    let began = Instant::now();
    for chunk in keys.chunks(500) {
        let batch: Vec<Profile> = chunk
            .iter()
            .map(|key| Profile {
                key: key.clone(),
                version: 1,
                samples: 3600,
                updated_at: Timestamp::from_unix_secs(1_700_003_600),
                model: Some(model.clone()),
            })
            .collect();
        store.save(&batch)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let save_s = began.elapsed().as_secs_f64();
    let began = Instant::now();
    let mut found = 0usize;
    for key in &keys {
        found += usize::from(store.load(key)?.is_some());
    }
    let by_key_s = began.elapsed().as_secs_f64();
    if found != n {
        bail!("saved {n} profiles but loaded {found}");
    }
    let began = Instant::now();
    let all = store.profiles()?;
    let bulk_s = began.elapsed().as_secs_f64();
    std::hint::black_box(all.len());
    Ok(Load {
        bytes,
        save_s,
        by_key_s,
        bulk_s,
    })
}
