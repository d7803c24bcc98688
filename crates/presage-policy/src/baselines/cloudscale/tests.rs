use std::sync::Arc;

use presage_core::{Events, Limits, Reason, Resource, Sample, Timestamp, Usage, WorkloadId};

use super::predictor::Predictor;
use super::*;
use crate::{AllocationInput, WorkloadPolicy, safety};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const STEP_MS: i64 = 300_000;
const DAY: usize = 288;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// 09:00–11:00 in 5-minute steps.
const SURGE: std::ops::Range<usize> = 108..132;

/// A deterministic noise source in [0, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A quiet 1-core day with a 4-core surge from 09:00 to 11:00, plus noise.
fn surging(steps: usize) -> Vec<f64> {
    let mut noise = Lcg(3);
    (0..steps)
        .map(|i| {
            let base = if SURGE.contains(&(i % DAY)) { 4.0 } else { 1.0 };
            base + 0.2 * noise.next()
        })
        .collect()
}

fn predictor(config: &CloudScaleConfig) -> Predictor {
    let fft = Arc::new(Fft::new(2 * config.history_steps));
    Predictor::new(config.tuning(), fft)
}

fn feed(p: &mut Predictor, values: &[f64]) {
    for (i, &v) in values.iter().enumerate() {
        assert!(
            p.push((i as i64 + 1) * STEP_MS, 300_000, v),
            "one step per sample"
        );
    }
}

#[test]
fn finds_the_daily_period_and_predicts_the_next_surge() -> TestResult {
    // Three days and the quiet morning of the fourth, stopping one step before 09:00.
    let values = surging(3 * DAY + SURGE.start);
    let config = CloudScaleConfig::default();
    let mut p = predictor(&config);
    feed(&mut p, &values);
    assert_eq!(p.period(), Some(DAY));
    let f = p.forecast().ok_or("a forecast")?;
    // The signature averages the three past 09:00 steps: 4 + noise.
    assert!((4.0..4.2).contains(&f), "surge predicted: {f}");

    // Without a pattern (an autocorrelation no series reaches), the Markov chain only
    // knows the quiet state it is in, and misses the surge.
    let mut blind = predictor(&CloudScaleConfig {
        min_autocorrelation: 1.0,
        ..config
    });
    feed(&mut blind, &values);
    assert_eq!(blind.period(), None);
    let f = blind.forecast().ok_or("a forecast")?;
    assert!(f < 2.0, "markov forecast {f}");
    Ok(())
}

#[test]
fn remedial_padding_grows_after_under_estimates() -> TestResult {
    let mut p = predictor(&CloudScaleConfig::default());
    feed(&mut p, &[1.0; 20]);
    assert_eq!(p.remedial(), 0.0);
    assert_eq!(p.forecast(), Some(1.0));
    // Step 21 is 3.0 against a forecast of 1.0: the error 2.0 enters as the newest of 10
    // (weight 10 of 1 + … + 10 = 55), so the remedial padding is 20/55.
    assert!(p.push(21 * STEP_MS, 300_000, 3.0));
    assert!(
        (p.remedial() - 20.0 / 55.0).abs() < 1e-12,
        "{}",
        p.remedial()
    );
    // More surprises raise it further; over-estimates (errors of 0) then let it decay.
    let before = p.remedial();
    for (i, v) in [1.0, 3.5, 1.0, 4.0].iter().enumerate() {
        p.push((22 + i as i64) * STEP_MS, 300_000, *v);
    }
    assert!(p.remedial() > before, "{} ≤ {before}", p.remedial());
    assert!(p.padding() >= p.remedial());
    Ok(())
}

#[test]
fn burst_padding_covers_fast_noise_only() -> TestResult {
    // Refreshed hourly: after 6 hours of a daily wave it is near zero; after 6 hours of
    // ±0.5 alternation it is 0.5.
    let mut slow = predictor(&CloudScaleConfig::default());
    let wave: Vec<f64> = (0..72)
        .map(|i| 2.0 + (i as f64 / 288.0 * std::f64::consts::TAU).sin())
        .collect();
    feed(&mut slow, &wave);
    assert!(slow.burst() < 0.01, "{}", slow.burst());
    let mut fast = predictor(&CloudScaleConfig::default());
    let zigzag: Vec<f64> = (0..72)
        .map(|i| if i % 2 == 0 { 2.5 } else { 1.5 })
        .collect();
    feed(&mut fast, &zigzag);
    assert!((fast.burst() - 0.5).abs() < 1e-9, "{}", fast.burst());
    Ok(())
}

// ---- the allocator on a simulated host ----

fn id() -> WorkloadId {
    WorkloadId::new("vm").expect("valid id")
}

fn sample(i: usize, cpu: f64, mem: f64, events: Events) -> Sample {
    let at = Timestamp::from_unix_ms(1_700_000_000_000 + (i as i64 + 1) * STEP_MS);
    let usage = Usage::empty()
        .with(Resource::Cpu, cpu)
        .and_then(|u| u.with(Resource::Memory, mem))
        .expect("valid usage");
    Sample::new(at, id(), 300_000, usage)
        .and_then(|s| s.with_events(events))
        .expect("valid sample")
}

/// One step of a host: demand capped by `limits`, with throttling or an OOM kill shown as
/// events. Returns the sample and whether CPU / memory were over their limits.
fn host(i: usize, limits: &Limits, cpu: f64, mem: f64) -> (Sample, bool, bool) {
    let quota = limits.cpu_quota_cores().unwrap_or(f64::INFINITY);
    let mem_max = limits.memory_max_bytes().unwrap_or(f64::INFINITY);
    let mut events = Events::default();
    if cpu > quota {
        events.cpu_throttled_s = (cpu - quota) / cpu * 300.0;
        events.cpu_throttled_periods = 1;
    }
    if mem > mem_max {
        events.oom_kills = 1;
    }
    (
        sample(i, cpu.min(quota), mem.min(mem_max), events),
        cpu > quota,
        mem > mem_max,
    )
}

fn allocate(a: &mut dyn Allocator, s: &Sample, current: &Limits) -> Option<Proposal> {
    let policy = WorkloadPolicy::default();
    a.allocate(&AllocationInput {
        now: s.at(),
        sample: s,
        forecast: None,
        current,
        policy: &policy,
        horizon_s: 300,
        history_s: f64::INFINITY,
    })
}

fn limits(cpu: f64, mem: f64) -> Limits {
    Limits::unlimited()
        .with_hard(Resource::Cpu, cpu)
        .and_then(|l| l.with_hard(Resource::Memory, mem))
        .expect("valid limits")
}

#[test]
fn alpha_correction_raises_geometrically_while_saturated_then_returns() -> TestResult {
    let rule = CloudScale::new(CloudScaleConfig::default())?;
    let mut a = rule.create(&id(), &limits(1.0, 4.0 * GIB));
    let mut current = limits(1.0, 4.0 * GIB);
    // Two quiet hours at 1 core (no noise: padding 0), so the limit settles at 1.0.
    for i in 0..24 {
        let (s, _, _) = host(i, &current, 1.0, GIB);
        a.observe(&s, &current);
        if let Some(p) = allocate(a.as_mut(), &s, &current) {
            current = p.limits;
        }
    }
    let settled = current.cpu_quota_cores().ok_or("cpu")?;
    assert!((settled - 1.0).abs() < 1e-9, "{settled}");
    // Demand jumps to 3 cores: throttled at 1.0 → 1.5 → 2.25 → 3.375, each ×1.5 and a
    // throttle repair; at 3.375 it no longer saturates.
    let mut raises = Vec::new();
    let mut i = 24;
    loop {
        let (s, over, _) = host(i, &current, 3.0, GIB);
        a.observe(&s, &current);
        let p = allocate(a.as_mut(), &s, &current).ok_or("a proposal")?;
        if !over {
            // Back to prediction + padding, which is no longer a multiple of 1.5.
            assert_eq!(p.reason, Reason::Recommendation);
            let back = p.limits.cpu_quota_cores().ok_or("cpu")?;
            assert!(back < 3.375, "returned to the prediction: {back}");
            break;
        }
        assert_eq!(p.reason, Reason::ThrottleRepair);
        raises.push(p.limits.cpu_quota_cores().ok_or("cpu")?);
        current = p.limits;
        i += 1;
        assert!(i < 40, "the correction should end");
    }
    let want = [1.5, 2.25, 3.375];
    assert_eq!(raises.len(), want.len(), "{raises:?}");
    for (got, want) in raises.iter().zip(want) {
        assert!((got - want).abs() < 1e-9, "{raises:?}");
    }
    Ok(())
}

#[test]
fn an_oom_kill_raises_memory_by_alpha_at_once() -> TestResult {
    let rule = CloudScale::new(CloudScaleConfig::default())?;
    let mut a = rule.create(&id(), &limits(1.0, 2.0 * GIB));
    let current = limits(1.0, 2.0 * GIB);
    // The very first sample is an OOM kill: no history needed to correct.
    let (s, _, oom) = host(0, &current, 0.5, 3.0 * GIB);
    assert!(oom);
    a.observe(&s, &current);
    let p = allocate(a.as_mut(), &s, &current).ok_or("a proposal")?;
    assert_eq!(p.reason, Reason::OomRepair);
    assert_eq!(p.limits.memory_max_bytes(), Some(3.0 * GIB));
    assert_eq!(p.limits.cpu_quota_cores(), Some(1.0), "CPU untouched");
    Ok(())
}

#[test]
fn corrections_are_spaced_by_the_correction_interval() -> TestResult {
    let rule = CloudScale::new(CloudScaleConfig::default())?;
    let mut a = rule.create(&id(), &limits(1.0, 4.0 * GIB));
    let current = limits(1.0, 4.0 * GIB);
    let throttled = Events {
        cpu_throttled_s: 0.5,
        cpu_throttled_periods: 5,
        ..Events::default()
    };
    // 1-second samples at the quota, throttled: one raise, then none for a minute.
    let mut raised = Vec::new();
    for s in 1..=61 {
        let usage = Usage::empty().with(Resource::Cpu, 1.0)?;
        let sample =
            Sample::new(Timestamp::from_unix_secs(s), id(), 1000, usage)?.with_events(throttled)?;
        a.observe(&sample, &current);
        if allocate(a.as_mut(), &sample, &current).is_some() {
            raised.push(s);
        }
    }
    assert_eq!(raised, vec![1, 61]);
    Ok(())
}

/// What a run over a daily surge did on its last day.
#[derive(Debug)]
struct LastDay {
    violations: usize,
    lead: bool,
    slack: f64,
}

fn run_surge(knob: f64, days: usize) -> Result<LastDay, Box<dyn std::error::Error>> {
    let parts = build(knob)?;
    let initial = limits(8.0, 16.0 * GIB);
    let mut a = parts.allocator.create(&id(), &initial);
    let policy = WorkloadPolicy::default();
    let mut current = initial;
    let demand = surging(days * DAY);
    let mut last = LastDay {
        violations: 0,
        lead: false,
        slack: 0.0,
    };
    let (mut unused, mut total) = (0.0, 0.0);
    for (i, &cpu) in demand.iter().enumerate() {
        let mem = 2.0 * GIB + cpu * 0.1 * GIB;
        if i == (days - 1) * DAY + SURGE.start {
            last.lead = current.cpu_quota_cores().is_some_and(|q| q >= cpu);
        }
        let (s, over, oom) = host(i, &current, cpu, mem);
        if i >= (days - 1) * DAY {
            last.violations += usize::from(over) + usize::from(oom);
            let q = current.cpu_quota_cores().ok_or("cpu")?;
            unused += (q - cpu).max(0.0);
            total += q;
        }
        a.observe(&s, &current);
        if let Some(p) = allocate(a.as_mut(), &s, &current) {
            current = safety::enforce(&p.limits, &current, s.usage(), &policy);
        }
    }
    last.slack = unused / total;
    Ok(last)
}

#[test]
fn meets_a_daily_surge_ahead_of_time_once_it_has_seen_the_pattern() -> TestResult {
    let day4 = run_surge(DEFAULT_KNOB, 4)?;
    assert!(day4.lead, "limit raised before the 09:00 surge: {day4:?}");
    assert!(day4.violations <= 15, "{day4:?}");
    // Static 8 cores would leave ~84 % unused.
    assert!(day4.slack < 0.4, "{day4:?}");
    // On day 1, with no pattern yet, the surge arrives unannounced.
    let day1 = run_surge(DEFAULT_KNOB, 1)?;
    assert!(!day1.lead, "{day1:?}");
    Ok(())
}

#[test]
fn the_knob_trades_violations_for_slack() -> TestResult {
    let none = run_surge(0.0, 4)?;
    let lots = run_surge(5.0, 4)?;
    assert!(none.violations > lots.violations, "{none:?} vs {lots:?}");
    assert!(none.slack < lots.slack, "{none:?} vs {lots:?}");
    Ok(())
}

#[test]
fn build_checks_its_knob_and_every_sweep_value_builds() {
    for bad in [-0.1, f64::NAN, f64::INFINITY] {
        let err = build(bad).expect_err("bad knob");
        assert!(err.field.contains("padding scale"), "{err}");
    }
    for &k in SWEEP {
        let parts = build(k).expect("sweep value builds");
        assert_eq!(parts.allocator.name(), "cloudscale");
        assert!(!parts.allocator.uses_forecast());
        assert!(parts.forecaster.is_none());
    }
    let bad_alpha = CloudScale::new(CloudScaleConfig {
        alpha: 1.0,
        ..CloudScaleConfig::default()
    });
    assert!(bad_alpha.is_err_and(|e| e.field.contains("alpha")));
}
