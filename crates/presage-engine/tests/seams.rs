//! The engine's behaviour at its seams: profiles, the responder, a failing actuator, bad
//! settings.

use std::sync::Arc;

use presage_core::{Decision, Limits, Resource, Sample, Timestamp, Usage, WorkloadId, WorkloadKey};
use presage_engine::{
    ActuationError, Actuator, Engine, EngineConfig, EngineError, MemoryStore, Outcome,
    ProfileStore, Responder, Response, ResponseInput, WorkloadSpec,
};
use presage_forecast::{Ewma, EwmaConfig};
use presage_policy::{MarginAllocator, WorkloadPolicy};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Debug, Default)]
struct Accepting {
    frozen: Vec<WorkloadId>,
}
impl Actuator for Accepting {
    fn apply(&mut self, d: &Decision) -> Result<Limits, ActuationError> {
        Ok(d.new)
    }
    fn freeze(&mut self, w: &WorkloadId, _frozen: bool) -> Result<(), ActuationError> {
        self.frozen.push(w.clone());
        Ok(())
    }
}

#[derive(Debug)]
struct Failing;
impl Actuator for Failing {
    fn apply(&mut self, d: &Decision) -> Result<Limits, ActuationError> {
        Err(ActuationError::Failed {
            workload: d.workload.clone(),
            message: "write /sys/fs/cgroup/x/cpu.max = \"50000 100000\": permission denied".into(),
        })
    }
}

#[derive(Debug)]
struct AlwaysFreeze;
impl Responder for AlwaysFreeze {
    fn respond(&mut self, _input: &ResponseInput<'_>) -> Vec<Response> {
        vec![Response::Freeze]
    }
}

fn ewma() -> Result<Arc<Ewma>, Box<dyn std::error::Error>> {
    Ok(Arc::new(Ewma::new(EwmaConfig {
        half_life_s: 60.0,
        min_samples: 2,
    })?))
}

fn sample(id: &WorkloadId, t: i64, cpu: f64) -> Result<Sample, Box<dyn std::error::Error>> {
    let usage = Usage::empty()
        .with(Resource::Cpu, cpu)?
        .with(Resource::Memory, 1e8)?;
    Ok(Sample::new(
        Timestamp::from_unix_secs(t),
        id.clone(),
        1000,
        usage,
    )?)
}

fn spec(
    id: &WorkloadId,
    policy: WorkloadPolicy,
) -> Result<WorkloadSpec, Box<dyn std::error::Error>> {
    Ok(WorkloadSpec {
        id: id.clone(),
        key: WorkloadKey::new("code", "1", "", "alice")?,
        limits: Limits::unlimited().with_hard(Resource::Cpu, 8.0)?,
        policy,
        fingerprint: None,
    })
}

#[test]
fn a_released_workload_profile_warms_the_next_instance() -> TestResult {
    let mut engine = Engine::builder(Arc::new(MarginAllocator::default()))
        .forecaster(ewma()?)
        .actuator(Box::new(Accepting::default()))
        .config(EngineConfig {
            save_every_s: None,
            ..EngineConfig::default()
        })
        .build()?;
    let first = WorkloadId::new("run-1")?;
    assert!(!engine.adopt(spec(&first, WorkloadPolicy::default())?)?);
    for t in 0..10 {
        engine.tick(Timestamp::from_unix_secs(t), &[sample(&first, t, 1.0)?]);
    }
    let released = engine.release(&first, Timestamp::from_unix_secs(10))?;
    assert!(released.is_some());
    assert!(engine.workload(&first).is_none());
    // A second run of the same code starts from the saved profile and forecasts at once.
    let second = WorkloadId::new("run-2")?;
    assert!(engine.adopt(spec(&second, WorkloadPolicy::default())?)?);
    engine.tick(Timestamp::from_unix_secs(20), &[sample(&second, 20, 1.0)?]);
    let view = engine.workload(&second).ok_or("second run managed")?;
    assert!(view.forecast.is_some(), "forecast from the first sample");
    Ok(())
}

#[test]
fn adopting_twice_or_with_a_bad_policy_is_refused() -> TestResult {
    let mut engine = Engine::builder(Arc::new(MarginAllocator::default()))
        .actuator(Box::new(Accepting::default()))
        .build()?;
    let id = WorkloadId::new("w")?;
    let bad = WorkloadPolicy {
        target_risk: 1.5,
        ..WorkloadPolicy::default()
    };
    let err = engine.adopt(spec(&id, bad)?);
    assert!(
        matches!(err, Err(EngineError::InvalidPolicy { .. })),
        "{err:?}"
    );
    engine.adopt(spec(&id, WorkloadPolicy::default())?)?;
    assert!(matches!(
        engine.adopt(spec(&id, WorkloadPolicy::default())?),
        Err(EngineError::AlreadyManaged(_))
    ));
    Ok(())
}

#[test]
fn bad_engine_settings_are_refused() {
    let build = |horizons: Vec<u32>| {
        Engine::builder(Arc::new(MarginAllocator::default()))
            .actuator(Box::new(Accepting::default()))
            .config(EngineConfig {
                horizons_s: horizons,
                ..EngineConfig::default()
            })
            .build()
    };
    for bad in [vec![], vec![0, 60], vec![300, 60], vec![60, 60]] {
        assert!(
            matches!(
                build(bad.clone()),
                Err(EngineError::InvalidConfig {
                    field: "horizons_s",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    let no_actuator = Engine::builder(Arc::new(MarginAllocator::default())).build();
    assert!(matches!(
        no_actuator,
        Err(EngineError::InvalidConfig {
            field: "actuator",
            ..
        })
    ));
}

#[test]
fn a_failing_actuator_raises_an_alert_and_keeps_the_old_limits() -> TestResult {
    let mut engine = Engine::builder(Arc::new(MarginAllocator::default()))
        .forecaster(ewma()?)
        .actuator(Box::new(Failing))
        .build()?;
    let id = WorkloadId::new("w")?;
    engine.adopt(spec(&id, WorkloadPolicy::default())?)?;
    let mut alerts = 0;
    for t in 0..5 {
        let r = engine.tick(Timestamp::from_unix_secs(t), &[sample(&id, t, 1.0)?]);
        assert!(r.decisions.is_empty());
        alerts += r.alerts.len();
        assert!(r.issues.iter().all(|i| i.message.contains("cpu.max")));
    }
    assert!(alerts > 0);
    let view = engine.workload(&id).ok_or("managed")?;
    assert_eq!(view.limits.cpu_quota_cores(), Some(8.0));
    Ok(())
}

#[test]
fn protected_workloads_are_never_frozen() -> TestResult {
    for protected in [false, true] {
        let mut engine = Engine::builder(Arc::new(MarginAllocator::default()))
            .forecaster(ewma()?)
            .actuator(Box::new(Accepting::default()))
            .responder(Box::new(AlwaysFreeze))
            .config(EngineConfig {
                behavior_alert_score: Some(50.0),
                ..EngineConfig::default()
            })
            .build()?;
        let id = WorkloadId::new("w")?;
        let policy = WorkloadPolicy {
            protected,
            ..WorkloadPolicy::default()
        };
        engine.adopt(spec(&id, policy)?)?;
        let mut freezes = 0;
        let mut refusals = 0;
        for t in 0..20 {
            let cpu = if t < 15 { 1.0 } else { 50.0 };
            let r = engine.tick(Timestamp::from_unix_secs(t), &[sample(&id, t, cpu)?]);
            for e in r
                .responses
                .iter()
                .filter(|e| e.response == Response::Freeze)
            {
                freezes += 1;
                // The audit says what happened: refused for a protected workload.
                let expected = if protected {
                    Outcome::Refused
                } else {
                    Outcome::Ok
                };
                assert_eq!(e.outcome, expected, "{e:?}");
                assert_eq!(e.workload, id);
            }
            refusals += r
                .issues
                .iter()
                .filter(|i| i.message.contains("protected"))
                .count();
        }
        assert!(
            freezes > 0,
            "the runaway raised alerts (protected = {protected})"
        );
        assert_eq!(refusals > 0, protected, "protected = {protected}");
    }
    Ok(())
}

#[test]
fn memory_store_round_trips_profiles() -> TestResult {
    let mut store = MemoryStore::new();
    let key = WorkloadKey::for_code("c")?;
    assert!(store.load(&key)?.is_none());
    let profile = presage_engine::Profile {
        key: key.clone(),
        version: 3,
        samples: 10,
        updated_at: Timestamp::from_unix_secs(5),
        model: None,
    };
    store.save(std::slice::from_ref(&profile))?;
    assert_eq!(store.load(&key)?, Some(profile));
    Ok(())
}
