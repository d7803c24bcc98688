//! One-step-ahead quality and cost of a neural model on a trace.
//!
//! ```text
//! cargo run --release -p presage-nn --example nn_eval -- FORMAT:PATH [MODEL.safetensors]
//! ```
//!
//! Replays every workload through the model's forecaster (observe, then forecast the next
//! step), and prints per resource the p95 coverage, the p95 pinball loss relative to the
//! mean demand, and the time per workload-step (observe + forecast).

use std::path::Path;
use std::time::Instant;

use presage_core::{Resource, Sample, Timestamp};
use presage_forecast::ForecasterFactory;
use presage_nn::NeuralFactory;
use presage_sim::trace::{ReadOptions, read_trace};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = args.first().ok_or("usage: nn_eval FORMAT:PATH [MODEL]")?;
    let (format, path) = spec.split_once(':').ok_or("expected FORMAT:PATH")?;
    let trace = read_trace(format.parse()?, Path::new(path), &ReadOptions::default())?;
    let family = match args.get(1) {
        Some(model) => NeuralFactory::from_file(Path::new(model))?,
        None => NeuralFactory::default_model()?,
    };
    let resources = [Resource::Cpu, Resource::Memory];
    let mut covered = [0u64; 2];
    let mut pinball = [0.0f64; 2];
    let mut demand = [0.0f64; 2];
    let mut scored = [0u64; 2];
    let mut steps = 0u64;
    let mut spent = std::time::Duration::ZERO;
    for w in &trace.workloads {
        let mut f = family.create();
        let mut pending: Option<presage_core::Forecast> = None;
        let mut previous: Option<Timestamp> = None;
        for p in &w.points {
            let interval = previous.map_or(300_000, |t| (p.at.unix_ms() - t.unix_ms()) as u32);
            previous = Some(p.at);
            let Ok(sample) = Sample::new(p.at, w.id.clone(), interval.max(1), p.demand) else {
                continue;
            };
            if let Some(fc) = pending.take() {
                for (i, r) in resources.iter().enumerate() {
                    let (Some(q), Some(y)) = (fc.at(*r, 300), p.demand.get(*r)) else {
                        continue;
                    };
                    let u = y - q.p95();
                    pinball[i] += (0.95 * u).max(-0.05 * u);
                    demand[i] += y;
                    covered[i] += u64::from(y <= q.p95());
                    scored[i] += 1;
                }
            }
            let started = Instant::now();
            f.observe(&sample);
            pending = f.forecast(p.at, &[300]);
            spent += started.elapsed();
            steps += 1;
        }
    }
    println!(
        "{} workloads, {steps} workload-steps, {:.2} µs per workload-step (observe + forecast)",
        trace.workloads.len(),
        spent.as_secs_f64() * 1e6 / steps.max(1) as f64
    );
    for (i, r) in resources.iter().enumerate() {
        let n = scored[i].max(1) as f64;
        println!(
            "{r}: {} scored, p95 coverage {:.4}, p95 pinball / mean demand {:.4}",
            scored[i],
            covered[i] as f64 / n,
            pinball[i] / demand[i].max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}
