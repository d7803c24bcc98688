//! The response ladder inside the loop: a runaway workload climbs record → webhook →
//! throttle → freeze → kill, the throttle is a real limit change that the allocator does
//! not undo, every response is audited with the scores behind it, and decisions carry
//! the behavioural score.

use std::sync::{Arc, Mutex};

use presage_core::{
    Decision, Limits, Reason, Resource, Sample, Timestamp, Usage, WorkloadId, WorkloadKey,
};
use presage_engine::{
    ActuationError, Actuator, Engine, EngineConfig, LadderResponder, MemoryStore, Outcome,
    Response, ResponseEvent, WorkloadSpec,
};
use presage_forecast::{Ewma, EwmaConfig};
use presage_policy::{Cooldowns, MarginAllocator, ResponsePolicy, Rung, WorkloadPolicy};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Applies everything and remembers freezes and kills.
#[derive(Debug, Clone, Default)]
struct World {
    actions: Arc<Mutex<Vec<String>>>,
}

impl Actuator for World {
    fn apply(&mut self, d: &Decision) -> Result<Limits, ActuationError> {
        Ok(d.new)
    }
    fn freeze(&mut self, w: &WorkloadId, frozen: bool) -> Result<(), ActuationError> {
        self.log(format!("freeze {w} {frozen}"));
        Ok(())
    }
    fn kill(&mut self, w: &WorkloadId) -> Result<(), ActuationError> {
        self.log(format!("kill {w}"));
        Ok(())
    }
}

impl World {
    fn log(&self, what: String) {
        if let Ok(mut a) = self.actions.lock() {
            a.push(what);
        }
    }
    fn actions(&self) -> Vec<String> {
        self.actions.lock().map(|a| a.clone()).unwrap_or_default()
    }
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

fn policy(max_rung: Rung, protected: bool) -> WorkloadPolicy {
    WorkloadPolicy {
        protected,
        response: ResponsePolicy {
            max_rung,
            cooldown_s: Cooldowns::all(2),
            reset_after_s: 60,
            throttle_fraction: 0.5,
            ..ResponsePolicy::default()
        },
        ..WorkloadPolicy::default()
    }
}

/// An actuator in observe mode: keeps the old limits, cannot freeze or kill.
#[derive(Debug)]
struct Observing;

impl Actuator for Observing {
    fn apply(&mut self, d: &Decision) -> Result<Limits, ActuationError> {
        Ok(d.old)
    }
}

type Run = (Vec<ResponseEvent>, Vec<Decision>, Engine);

/// Runs a workload that behaves for 15 s and then spins 50 cores for `runaway_s`,
/// returning every response and the final engine.
fn run(
    policy: WorkloadPolicy,
    world: World,
    runaway_s: i64,
) -> Result<Run, Box<dyn std::error::Error>> {
    run_with(policy, Box::new(world), runaway_s)
}

fn run_with(
    policy: WorkloadPolicy,
    actuator: Box<dyn Actuator>,
    runaway_s: i64,
) -> Result<Run, Box<dyn std::error::Error>> {
    run_shaped(
        policy,
        actuator,
        runaway_s,
        |t| if t < 15 { 1.0 } else { 50.0 },
    )
}

/// [`run_with`] with the workload's CPU at each second given by `cpu_at`.
fn run_shaped(
    policy: WorkloadPolicy,
    actuator: Box<dyn Actuator>,
    runaway_s: i64,
    cpu_at: impl Fn(i64) -> f64,
) -> Result<Run, Box<dyn std::error::Error>> {
    let mut engine = Engine::builder(Arc::new(MarginAllocator::default()))
        .forecaster(Arc::new(Ewma::new(EwmaConfig {
            half_life_s: 60.0,
            min_samples: 2,
        })?))
        .actuator(actuator)
        .responder(Box::new(LadderResponder::new()))
        .store(Box::new(MemoryStore::with_audit()))
        .config(EngineConfig {
            behavior_alert_score: Some(50.0),
            decide_every_s: 1,
            ..EngineConfig::default()
        })
        .build()?;
    let id = WorkloadId::new("w")?;
    engine.adopt(WorkloadSpec {
        id: id.clone(),
        key: WorkloadKey::new("code", "1", "", "alice")?,
        limits: Limits::unlimited().with_hard(Resource::Cpu, 8.0)?,
        policy,
        fingerprint: None,
    })?;
    let mut responses = Vec::new();
    let mut decisions = Vec::new();
    for t in 0..15 + runaway_s {
        let cpu = cpu_at(t);
        let r = engine.tick(Timestamp::from_unix_secs(t), &[sample(&id, t, cpu)?]);
        responses.extend(r.responses);
        decisions.extend(r.decisions);
    }
    Ok((responses, decisions, engine))
}

fn first_of_each_rung(events: &[ResponseEvent]) -> Vec<Rung> {
    let mut out: Vec<Rung> = Vec::new();
    for e in events {
        if out.last() != Some(&e.rung) {
            out.push(e.rung);
        }
    }
    out
}

#[test]
fn a_runaway_climbs_the_whole_ladder_with_audited_scores() -> TestResult {
    let world = World::default();
    let (events, decisions, _engine) = run(policy(Rung::Kill, false), world.clone(), 30)?;
    assert_eq!(
        first_of_each_rung(&events),
        Rung::ALL.to_vec(),
        "{events:#?}"
    );
    // Rungs are spaced by at least the 2 s cooldown.
    for pair in events.windows(2) {
        assert!(
            pair[1].at.secs_since(pair[0].at) >= 2.0,
            "{:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    for e in &events {
        assert!(e.behavior_score >= 50.0, "the score that caused it: {e:?}");
        assert_eq!(e.alert.workload, e.workload);
        let expected = match e.rung {
            Rung::Webhook => Outcome::Deferred,
            _ => Outcome::Ok,
        };
        assert_eq!(e.outcome, expected, "{e:?}");
    }
    let throttle = events
        .iter()
        .find(|e| e.rung == Rung::Throttle)
        .ok_or("a throttle")?;
    let Response::Throttle { cpu_cores } = throttle.response else {
        return Err("throttle rung without a throttle".into());
    };
    let cut = decisions
        .iter()
        .find(|d| d.reason == Reason::AnomalyResponse)
        .ok_or("the throttle is a decision")?;
    // The workload uses 50 cores, more than its quota: half of the quota in force.
    let before = cut.old.cpu_quota_cores().ok_or("a quota before")?;
    assert!(before < 50.0, "{before}");
    assert!(
        (cpu_cores - before / 2.0).abs() < 1e-9,
        "{cpu_cores} vs {before}"
    );
    assert_eq!(cut.new.cpu_quota_cores(), Some(cpu_cores));
    assert_eq!(cut.at, throttle.at);
    // The allocator wants to raise a starved workload, but the throttle holds.
    let after: Vec<_> = decisions.iter().filter(|d| d.at > cut.at).collect();
    assert!(
        after.iter().all(|d| d
            .new
            .cpu_quota_cores()
            .is_some_and(|q| q <= cpu_cores + 1e-9)),
        "{after:#?}"
    );
    assert!(decisions.iter().all(|d| d.behavior_score.is_some()));
    let actions = world.actions();
    assert!(actions.contains(&"freeze w true".to_owned()), "{actions:?}");
    assert!(actions.contains(&"kill w".to_owned()), "{actions:?}");
    Ok(())
}

#[test]
fn the_default_policy_only_records_and_notifies() -> TestResult {
    let world = World::default();
    let (events, decisions, _) = run(WorkloadPolicy::default(), world.clone(), 600)?;
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.rung <= Rung::Webhook),
        "{events:#?}"
    );
    assert!(
        decisions
            .iter()
            .all(|d| d.reason != Reason::AnomalyResponse)
    );
    assert!(world.actions().is_empty());
    Ok(())
}

#[test]
fn a_protected_workload_is_throttled_but_never_frozen_or_killed() -> TestResult {
    let world = World::default();
    let (events, _, _) = run(policy(Rung::Kill, true), world.clone(), 30)?;
    assert_eq!(
        first_of_each_rung(&events),
        vec![Rung::Record, Rung::Webhook, Rung::Throttle]
    );
    assert!(world.actions().is_empty(), "{:?}", world.actions());
    Ok(())
}

#[test]
fn a_throttle_is_lifted_once_the_ladder_resets() -> TestResult {
    let world = World::default();
    let mut p = policy(Rung::Throttle, false);
    p.response.reset_after_s = 5;
    let (events, decisions, engine) = run(p, world, 8)?;
    assert!(events.iter().any(|e| e.rung == Rung::Throttle));
    let id = WorkloadId::new("w")?;
    let throttled = decisions
        .iter()
        .rfind(|d| d.reason == Reason::AnomalyResponse)
        .ok_or("throttled")?
        .clone();
    let mut engine = engine;
    // Calm from now on: no counted alert for longer than reset_after_s, so the cap goes
    // and the allocator is free to raise the quota again for the 50-core demand.
    let mut raised = false;
    for t in 23..60 {
        let r = engine.tick(Timestamp::from_unix_secs(t), &[sample(&id, t, 6.0)?]);
        raised |= r.decisions.iter().any(|d| {
            d.new.cpu_quota_cores() > throttled.new.cpu_quota_cores()
                && d.reason != Reason::AnomalyResponse
        });
    }
    assert!(raised, "the throttle never lifted");
    Ok(())
}

#[test]
fn an_actuator_that_writes_nothing_is_audited_as_such() -> TestResult {
    let (events, decisions, _) = run_with(policy(Rung::Kill, false), Box::new(Observing), 30)?;
    let outcome = |rung: Rung| {
        events
            .iter()
            .find(|e| e.rung == rung)
            .map(|e| (e.outcome, e.message.clone()))
    };
    let (o, m) = outcome(Rung::Throttle).ok_or("a throttle")?;
    assert_eq!(o, Outcome::Refused, "{m}");
    assert!(
        decisions
            .iter()
            .all(|d| d.reason != Reason::AnomalyResponse)
    );
    let (o, m) = outcome(Rung::Freeze).ok_or("a freeze")?;
    assert_eq!(o, Outcome::Failed);
    assert!(m.contains("freeze"), "{m}");
    Ok(())
}

#[test]
fn a_frozen_workload_is_killed_after_the_freeze_cooldown_without_new_alerts() -> TestResult {
    let world = World::default();
    // Spins until it is frozen (record 15, webhook 17, throttle 19, freeze 21), then, being
    // frozen, uses nothing: no new alert can come from it.
    let (events, _decisions, _engine) = run_shaped(
        policy(Rung::Kill, false),
        Box::new(world.clone()),
        25,
        |t| match t {
            ..15 => 1.0,
            15..22 => 50.0,
            _ => 0.0,
        },
    )?;
    let at = |rung: Rung| {
        events
            .iter()
            .find(|e| e.rung == rung && e.outcome == Outcome::Ok)
            .map(|e| e.at.unix_ms() / 1000)
    };
    let frozen = at(Rung::Freeze).ok_or("never frozen")?;
    let killed = at(Rung::Kill).ok_or_else(|| format!("never killed: {events:#?}"))?;
    assert_eq!(killed - frozen, 2, "killed one freeze cooldown later");
    let kill = events.iter().find(|e| e.rung == Rung::Kill).ok_or("kill")?;
    assert!(
        kill.alert.message.starts_with("still frozen"),
        "{}",
        kill.alert.message
    );
    assert_eq!(
        world.actions(),
        vec!["freeze w true".to_owned(), "kill w".to_owned()]
    );
    // Stopping at freeze instead: frozen, and never killed.
    let world = World::default();
    let (events, _, _) = run_shaped(
        policy(Rung::Freeze, false),
        Box::new(world.clone()),
        25,
        |t| if (15..22).contains(&t) { 50.0 } else { 0.5 },
    )?;
    assert!(events.iter().all(|e| e.rung != Rung::Kill), "{events:#?}");
    assert!(world.actions().iter().all(|a| !a.starts_with("kill")));
    Ok(())
}
