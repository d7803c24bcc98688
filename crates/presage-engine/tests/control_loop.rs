//! Drives `Engine::tick` end to end: a fake source, the EWMA forecaster, the margin
//! allocator and a recording actuator.

use std::sync::{Arc, Mutex};

use presage_core::{Decision, Limits, Resource, Sample, Timestamp, Usage, WorkloadId, WorkloadKey};
use presage_engine::{
    ActuationError, Actuator, Batch, Engine, EngineConfig, MemoryStore, Source, SourceError,
    WorkloadSpec,
};
use presage_forecast::{Ewma, EwmaConfig};
use presage_policy::{MarginAllocator, WorkloadPolicy};

const STEP_S: i64 = 60;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Debug, Clone, Default)]
struct Recording(Arc<Mutex<Vec<Decision>>>);

impl Recording {
    fn decisions(&self) -> Vec<Decision> {
        self.0.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

impl Actuator for Recording {
    fn apply(&mut self, decision: &Decision) -> Result<Limits, ActuationError> {
        self.0
            .lock()
            .map_err(|_| ActuationError::Failed {
                workload: decision.workload.clone(),
                message: "recorder poisoned".into(),
            })?
            .push(decision.clone());
        Ok(decision.new)
    }
}

/// Demand that rises from a low plateau to a high one, holds, and falls back.
fn demand(step: i64) -> (f64, f64) {
    let level = match step {
        0..100 => 0.0,
        100..150 => (step - 100) as f64 / 50.0,
        150..250 => 1.0,
        250..300 => 1.0 - (step - 250) as f64 / 50.0,
        _ => 0.0,
    };
    (0.5 + 1.5 * level, GIB * (1.0 + 2.0 * level))
}

struct RampSource {
    id: WorkloadId,
    step: i64,
    steps: i64,
}

impl Source for RampSource {
    fn next_batch(&mut self) -> Option<Result<Batch, SourceError>> {
        if self.step >= self.steps {
            return None;
        }
        let (cpu, mem) = demand(self.step);
        let now = Timestamp::from_unix_secs(1_700_000_000 + self.step * STEP_S);
        self.step += 1;
        let sample = Usage::empty()
            .with(Resource::Cpu, cpu)
            .and_then(|u| u.with(Resource::Memory, mem))
            .and_then(|u| Sample::new(now, self.id.clone(), 60_000, u));
        Some(
            sample
                .map(|s| Batch {
                    now,
                    samples: vec![s],
                })
                .map_err(|e| SourceError {
                    context: "ramp".into(),
                    source: Box::new(e),
                }),
        )
    }
}

fn engine(recorder: &Recording) -> Result<Engine, Box<dyn std::error::Error>> {
    let config = EngineConfig {
        horizons_s: vec![60, 300],
        ..EngineConfig::default()
    };
    let forecaster = Ewma::new(EwmaConfig {
        half_life_s: 300.0,
        min_samples: 3,
    })?;
    Ok(Engine::builder(Arc::new(MarginAllocator::default()))
        .config(config)
        .forecaster(Arc::new(forecaster))
        .actuator(Box::new(recorder.clone()))
        .store(Box::new(MemoryStore::with_audit()))
        .build()?)
}

fn spec(id: &WorkloadId) -> Result<WorkloadSpec, Box<dyn std::error::Error>> {
    Ok(WorkloadSpec {
        id: id.clone(),
        key: WorkloadKey::for_code("ramp-code")?,
        limits: Limits::unlimited()
            .with_hard(Resource::Cpu, 4.0)?
            .with_hard(Resource::Memory, 8.0 * GIB)?,
        policy: WorkloadPolicy::default(),
        fingerprint: None,
    })
}

/// The CPU and memory limits in force after `step`, from the recorded decisions.
fn limits_at(decisions: &[Decision], step: i64) -> (f64, f64) {
    let t = Timestamp::from_unix_secs(1_700_000_000 + step * STEP_S);
    let last = decisions.iter().rfind(|d| d.at <= t);
    let l = last.map_or(Limits::unlimited(), |d| d.new);
    (
        l.cpu_quota_cores().unwrap_or(f64::INFINITY),
        l.memory_max_bytes().unwrap_or(f64::INFINITY),
    )
}

#[test]
fn limits_follow_a_rising_and_a_falling_demand() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = Recording::default();
    let mut engine = engine(&recorder)?;
    let id = WorkloadId::new("ramp-1")?;
    engine.adopt(spec(&id)?)?;
    let mut source = RampSource {
        id: id.clone(),
        step: 0,
        steps: 400,
    };
    let mut used = 0;
    let ticks = engine.run(&mut source, |_, report| {
        used += report.samples_used;
        assert_eq!(report.samples_from_future, 0);
        for d in &report.decisions {
            assert!(d.at <= report.now, "a decision is dated at its tick");
        }
    })?;
    assert_eq!(ticks, 400);
    assert_eq!(used, 400);

    let decisions = recorder.decisions();
    assert!(
        decisions.len() >= 4,
        "limits moved: {} decisions",
        decisions.len()
    );
    // On the low plateau the 4-core provisioned limit is released to near the 0.5 demand.
    let (cpu_low, mem_low) = limits_at(&decisions, 95);
    assert!(cpu_low < 1.0, "cpu limit on the low plateau: {cpu_low}");
    assert!(
        mem_low < 2.0 * GIB,
        "memory limit on the low plateau: {mem_low}"
    );
    // On the high plateau it covers the 2-core, 3 GiB demand.
    let (cpu_high, mem_high) = limits_at(&decisions, 200);
    assert!(
        (2.0..3.0).contains(&cpu_high),
        "cpu limit on the high plateau: {cpu_high}"
    );
    assert!(
        (3.0 * GIB..4.5 * GIB).contains(&mem_high),
        "memory on the high plateau: {mem_high}"
    );
    // After the fall, it is released again.
    let (cpu_after, mem_after) = limits_at(&decisions, 399);
    assert!(cpu_after < 1.0, "cpu limit after the fall: {cpu_after}");
    assert!(
        mem_after < 2.0 * GIB,
        "memory limit after the fall: {mem_after}"
    );
    // Memory is never set below the usage it was set at (plus the margin).
    for d in &decisions {
        let step = (d.at.unix_ms() / 1000 - 1_700_000_000) / STEP_S;
        let (_, used_mem) = demand(step);
        let limit = d.new.memory_max_bytes().unwrap_or(f64::INFINITY);
        assert!(
            limit >= used_mem * 1.1 - 1.0,
            "step {step}: {limit} < {used_mem}"
        );
    }
    Ok(())
}

#[test]
fn a_decision_uses_only_samples_up_to_now() -> Result<(), Box<dyn std::error::Error>> {
    let id = WorkloadId::new("ramp-2")?;
    let plain = Recording::default();
    let peeking = Recording::default();
    let mut e1 = engine(&plain)?;
    let mut e2 = engine(&peeking)?;
    e1.adopt(spec(&id)?)?;
    e2.adopt(spec(&id)?)?;
    let mut source = RampSource {
        id: id.clone(),
        step: 0,
        steps: 120,
    };
    while let Some(batch) = source.next_batch() {
        let batch = batch?;
        e1.tick(batch.now, &batch.samples);
        // The second engine is also handed a sample from ten minutes ahead with a huge
        // demand. It must refuse it, and decide exactly as the first.
        let future = Sample::new(
            batch.now.plus_secs(600),
            id.clone(),
            60_000,
            Usage::empty().with(Resource::Cpu, 64.0)?,
        )?;
        let mut samples = batch.samples.clone();
        samples.push(future);
        let report = e2.tick(batch.now, &samples);
        assert_eq!(report.samples_from_future, 1);
    }
    assert_eq!(plain.decisions(), peeking.decisions());
    assert!(!plain.decisions().is_empty());
    Ok(())
}

#[test]
fn out_of_order_samples_are_refused() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = Recording::default();
    let mut engine = engine(&recorder)?;
    let id = WorkloadId::new("w")?;
    let usage = Usage::empty().with(Resource::Cpu, 1.0)?;
    let t = Timestamp::from_unix_secs(1000);
    let r1 = engine.tick(t, &[Sample::new(t, id.clone(), 1000, usage)?]);
    assert_eq!(
        (r1.samples_used, r1.adopted.len()),
        (1, 1),
        "unknown workloads are adopted"
    );
    let r2 = engine.tick(t.plus_secs(1), &[Sample::new(t, id.clone(), 1000, usage)?]);
    assert_eq!((r2.samples_used, r2.samples_out_of_order), (0, 1));
    Ok(())
}
