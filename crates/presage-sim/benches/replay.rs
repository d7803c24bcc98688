//! Replay throughput of the engine: workload-samples per second on one core, per policy.
//!
//! `cargo bench -p presage-sim --bench replay`. The trace is the built-in synthetic mix
//! stretched to four weeks, held in memory, so only the simulation is timed.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use presage_sim::synth::{SynthConfig, generate};
use presage_sim::{PolicyRun, SimOptions, simulate};

fn replay(c: &mut Criterion) {
    let config = SynthConfig {
        days: 28,
        ..SynthConfig::default_mix()
    };
    let trace = Arc::new(generate(&config));
    let samples: u64 = trace.workloads.iter().map(|w| w.points.len() as u64).sum();
    // One thread: the figure is per core.
    let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(1).build() else {
        eprintln!("cannot build a one-thread pool; skipping");
        return;
    };
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(samples));
    group.sample_size(10);
    for (name, knob) in [
        ("static", 1.0),
        ("threshold", 0.8),
        ("vpa", 0.15),
        ("autopilot-mw", 0.10),
        ("autopilot-ml", 10.0),
        ("cloudscale", 1.0),
        ("presage", 0.10),
        ("oracle", 1.0),
    ] {
        let runs = [PolicyRun {
            name: name.into(),
            knob,
            is_default: false,
        }];
        group.bench_function(name, |b| {
            b.iter(|| {
                pool.install(|| simulate(&trace, &runs, &SimOptions::default(), &|_| {}))
                    .map(|r| r.len())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Criterion's own charts need system fonts; the numbers are what we report.
    config = Criterion::default().without_plots();
    targets = replay
}
criterion_main!(benches);
