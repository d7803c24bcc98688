use presage_core::{Events, Usage};
use proptest::prelude::*;

use super::*;
use crate::{WorkloadPolicy, safety};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
/// End of the CPU bucket holding 1.0 core: bucket 36 = [0.95836, 1.01628).
const P_ONE_CORE: f64 = 1.016_281_388_554_091_8;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

fn sample(
    t_s: i64,
    interval_s: u32,
    cpu: Option<f64>,
    memory: Option<f64>,
    oom_kills: u32,
) -> Result<Sample, Box<dyn std::error::Error>> {
    let mut usage = Usage::empty();
    if let Some(c) = cpu {
        usage.set(Resource::Cpu, c)?;
    }
    if let Some(m) = memory {
        usage.set(Resource::Memory, m)?;
    }
    Ok(Sample::new(
        Timestamp::from_unix_secs(t_s),
        WorkloadId::new("w")?,
        interval_s * 1000,
        usage,
    )?
    .with_events(Events {
        oom_kills,
        ..Events::default()
    })?)
}

fn state(limits: &Limits) -> Result<VpaState, PolicyError> {
    let vpa = Vpa::new(VpaConfig::default())?;
    Ok(VpaState::new(
        vpa.config,
        vpa.cpu.clone(),
        vpa.memory.clone(),
        limits,
    ))
}

/// One-minute CPU samples of 1 core, the first starting at 0, the last ending at `end_s`.
fn feed_one_core(s: &mut VpaState, limits: &Limits, end_s: i64) -> TestResult {
    for t in (MINUTE..=end_s).step_by(60) {
        s.observe(&sample(t, 60, Some(1.0), None, 0)?, limits);
    }
    Ok(())
}

fn ask(
    s: &mut VpaState,
    now_s: i64,
    current: &Limits,
) -> Result<Option<Proposal>, Box<dyn std::error::Error>> {
    let policy = WorkloadPolicy::default();
    let last = sample(now_s, 60, Some(1.0), None, 0)?;
    Ok(s.allocate(&AllocationInput {
        now: Timestamp::from_unix_secs(now_s),
        sample: &last,
        forecast: None,
        current,
        policy: &policy,
        horizon_s: 60,
        history_s: f64::INFINITY,
    }))
}

fn cpu_estimate(s: &mut VpaState) -> Result<Estimate, &'static str> {
    s.compute_estimates()[Resource::Cpu].ok_or("no CPU estimate")
}

#[test]
fn upper_bound_is_three_times_at_12_hours_and_twice_at_24() -> TestResult {
    // One-minute samples: n samples span (n − 1) minutes, so c = lifespan in days
    // (n/1440 is slightly more). Usage is a steady 1 core, so P50 = P90 = P95 = 1.01628.
    // 12 h: c = 720/1440 = 0.5, upper = P95 × 1.15 × (1 + 1/0.5) = target × 3.
    let limits = Limits::unlimited();
    let mut s = state(&limits)?;
    feed_one_core(&mut s, &limits, 12 * HOUR + MINUTE)?;
    assert!(close(s.confidence(), 0.5, 1e-12));
    let e = cpu_estimate(&mut s)?;
    assert!(close(e.target, P_ONE_CORE * 1.15, 1e-12));
    assert!(close(e.upper, 3.0 * e.target, 1e-12));
    // 24 h: c = 1, × (1 + 1/1) = 2.
    feed_one_core(&mut s, &limits, 24 * HOUR + MINUTE)?;
    assert!(close(s.confidence(), 1.0, 1e-12));
    let e = cpu_estimate(&mut s)?;
    assert!(close(e.upper, 2.0 * e.target, 1e-12));
    Ok(())
}

#[test]
fn lower_bound_is_060_at_5_minutes_and_095_at_60() -> TestResult {
    // 5 min: c = 5/1440 = 0.003472; (1 + 0.001/c)^−2 = (1 + 0.288)^−2 = 1/1.6589 = 0.6028.
    let limits = Limits::unlimited();
    let mut s = state(&limits)?;
    feed_one_core(&mut s, &limits, 6 * MINUTE)?;
    let e = cpu_estimate(&mut s)?;
    assert!(close(e.lower / e.target, 0.602_793_102_117_973_8, 1e-9));
    // 60 min: c = 60/1440 = 1/24; (1 + 0.024)^−2 = 0.9537.
    feed_one_core(&mut s, &limits, 61 * MINUTE)?;
    let e = cpu_estimate(&mut s)?;
    assert!(close(e.lower / e.target, 0.953_674_316_406_25, 1e-9));
    Ok(())
}

#[test]
fn coarse_samples_slow_confidence_down() -> TestResult {
    // A day of 5-minute samples is 288 samples: c = min(1 day, 288/1440 = 0.2) = 0.2,
    // so the upper bound is × (1 + 1/0.2) = ×6, not ×2.
    let limits = Limits::unlimited();
    let mut s = state(&limits)?;
    for t in (300..=86_400 + 300).step_by(300) {
        s.observe(&sample(t, 300, Some(1.0), None, 0)?, &limits);
    }
    assert!(close(s.confidence(), 289.0 / 1440.0, 1e-12));
    Ok(())
}

#[test]
fn oom_bump_is_the_larger_of_100_mib_and_20_percent_and_does_not_compound() -> TestResult {
    // Limit 1 GiB, usage pinned at it, OOM kill: used = max(1024 MiB, peak 1024 MiB);
    // needed = max(1024 + 100, 1024 × 1.2 = 1228.8) MiB = 1228.8 MiB.
    let limits = Limits::unlimited().with_hard(Resource::Memory, 1024.0 * MIB)?;
    let mut s = state(&limits)?;
    s.observe(&sample(60, 60, None, Some(512.0 * MIB), 0)?, &limits);
    s.observe(&sample(120, 60, None, Some(1024.0 * MIB), 1)?, &limits);
    assert_eq!(s.oom_peak, 1228.8 * MIB);
    assert_eq!(s.memory_peak, 1024.0 * MIB);
    // The window holds one peak (weight 1): 1228.8 MiB, bucket 41 = [1219.2, 1289.7) MiB.
    assert!(close(
        s.memory.percentile(0.5),
        1_352_317_511.023_486,
        1e-12
    ));
    // A second kill in the same window starts again from max(limit, real peak), not from
    // the first bump: still 1228.8 MiB (compounding would give 1474.6 MiB).
    s.observe(&sample(180, 60, None, Some(1024.0 * MIB), 1)?, &limits);
    assert_eq!(s.oom_peak, 1228.8 * MIB);
    assert!(close(
        s.memory.percentile(1.0),
        1_352_317_511.023_486,
        1e-12
    ));
    // Small limits get the +100 MiB: 256 MiB → max(356, 307.2) = 356 MiB.
    let small = Limits::unlimited().with_hard(Resource::Memory, 256.0 * MIB)?;
    let mut s = state(&small)?;
    s.observe(&sample(60, 60, None, Some(256.0 * MIB), 1)?, &small);
    assert_eq!(s.oom_peak, 356.0 * MIB);
    Ok(())
}

#[test]
fn memory_keeps_one_peak_per_window() -> TestResult {
    let limits = Limits::unlimited();
    let mut s = state(&limits)?;
    // First window: [60 s, 60 s + 24 h). Peaks 300 then 400 MiB: one sample of weight 1.
    s.observe(&sample(60, 60, None, Some(300.0 * MIB), 0)?, &limits);
    s.observe(&sample(3600, 60, None, Some(400.0 * MIB), 0)?, &limits);
    s.observe(&sample(7200, 60, None, Some(350.0 * MIB), 0)?, &limits);
    let end = Timestamp::from_unix_secs(24 * HOUR);
    assert!(close(s.memory.total_weight(end), 1.0, 1e-12));
    assert_eq!(s.memory_peak, 400.0 * MIB);
    // Next window: a second peak.
    s.observe(&sample(25 * HOUR, 60, None, Some(200.0 * MIB), 0)?, &limits);
    assert_eq!(s.window_end, Some((48 * HOUR) * 1000));
    Ok(())
}

#[test]
fn updater_applies_outside_the_bounds_at_once() -> TestResult {
    // 6 h of 1 core: c = 0.25, upper = 1.16872 × (1 + 4) = 5.84 cores. A 10-core limit is
    // above it, so the target (1.16872) is applied although the pod is only 6 h old.
    let limits = Limits::unlimited().with_hard(Resource::Cpu, 10.0)?;
    let mut s = state(&limits)?;
    feed_one_core(&mut s, &limits, 6 * HOUR)?;
    let p = ask(&mut s, 6 * HOUR, &limits)?.ok_or("no proposal")?;
    assert!(close(
        p.limits.cpu_quota_cores().ok_or("cpu")?,
        P_ONE_CORE * 1.15,
        1e-12
    ));
    assert_eq!(p.reason, Reason::Recommendation);
    assert_eq!(p.model, "vpa");
    Ok(())
}

#[test]
fn updater_leaves_small_in_bounds_changes_and_applies_big_ones_after_12_hours() -> TestResult {
    // Target 1.16872 cores. A limit 5 % above it is inside [lower ≈ 1.164, upper ≥ 3.5]:
    // diff = 0.05/1.05 = 0.048 < 0.10, so it stays, before and after 12 h.
    let target = P_ONE_CORE * 1.15;
    let near = Limits::unlimited().with_hard(Resource::Cpu, target * 1.05)?;
    let mut s = state(&near)?;
    feed_one_core(&mut s, &near, 11 * HOUR)?;
    assert_eq!(ask(&mut s, 11 * HOUR, &near)?, None);
    feed_one_core(&mut s, &near, 13 * HOUR)?;
    assert_eq!(ask(&mut s, 13 * HOUR, &near)?, None);
    // 12 % above: diff = 0.12/1.12 = 0.107 ≥ 0.10. Not before the pod is 12 h old
    // (it started with the first sample, at 0 s), then the target is applied.
    let far = Limits::unlimited().with_hard(Resource::Cpu, target * 1.12)?;
    let mut s = state(&far)?;
    feed_one_core(&mut s, &far, 11 * HOUR)?;
    assert_eq!(ask(&mut s, 11 * HOUR, &far)?, None);
    feed_one_core(&mut s, &far, 12 * HOUR)?;
    let p = ask(&mut s, 12 * HOUR, &far)?.ok_or("no proposal after 12 h")?;
    assert!(close(
        p.limits.cpu_quota_cores().ok_or("cpu")?,
        target,
        1e-12
    ));
    Ok(())
}

#[test]
fn a_quick_oom_forces_the_update_and_is_an_oom_repair() -> TestResult {
    // The pod starts at 0 with 600 MiB; the kill at 5 min is < 10 min into the container.
    let limits = Limits::unlimited().with_hard(Resource::Memory, 600.0 * MIB)?;
    let mut s = state(&limits)?;
    s.observe(&sample(60, 60, Some(1.0), Some(500.0 * MIB), 0)?, &limits);
    s.observe(&sample(300, 60, Some(1.0), Some(600.0 * MIB), 1)?, &limits);
    assert!(s.last_oom_quick);
    let p = ask(&mut s, 300, &limits)?.ok_or("no proposal")?;
    assert_eq!(p.reason, Reason::OomRepair);
    // needed = max(600 + 100, 720) = 720 MiB, × 1.15 at least.
    assert!(p.limits.memory_max_bytes().ok_or("memory")? > 720.0 * 1.15 * MIB);
    // An OOM 30 min into the container is not quick.
    let mut s = state(&limits)?;
    s.observe(&sample(60, 60, Some(1.0), Some(500.0 * MIB), 0)?, &limits);
    s.observe(&sample(1800, 60, Some(1.0), Some(600.0 * MIB), 1)?, &limits);
    assert!(!s.last_oom_quick);
    Ok(())
}

#[test]
fn no_history_keeps_the_provisioned_limits() -> TestResult {
    let limits = Limits::unlimited().with_hard(Resource::Cpu, 4.0)?;
    let mut s = state(&limits)?;
    assert_eq!(ask(&mut s, 60, &limits)?, None);
    Ok(())
}

#[test]
fn bad_knobs_are_named() {
    for knob in [f64::NAN, -1.0, -2.0, f64::INFINITY] {
        let err = build(knob).err().map(|e| e.field);
        assert_eq!(err.as_deref(), Some("vpa margin"), "knob {knob}");
    }
    for &knob in SWEEP {
        assert!(build(knob).is_ok(), "{knob}");
    }
    assert!(
        build(DEFAULT_KNOB).is_ok_and(|p| p.allocator.name() == "vpa"
            && !p.allocator.uses_forecast()
            && p.forecaster.is_none())
    );
}

/// A host in miniature: CPU usage capped at the quota, memory at the limit with an OOM
/// kill when demand passes it; every proposal goes through `safety::enforce`.
fn drive(
    alloc: &mut dyn Allocator,
    limits: &mut Limits,
    from_s: i64,
    steps: i64,
    demand: impl Fn(i64) -> (f64, f64),
) -> Result<Vec<Reason>, Box<dyn std::error::Error>> {
    let policy = WorkloadPolicy::default();
    let mut reasons = Vec::new();
    for i in 1..=steps {
        let t = from_s + i * 300;
        let (cpu, mem) = demand(t);
        let cap = |v: f64, l: Option<f64>| l.map_or(v, |l| v.min(l));
        let oom = u32::from(limits.memory_max_bytes().is_some_and(|l| mem > l));
        let s = sample(
            t,
            300,
            Some(cap(cpu, limits.cpu_quota_cores())),
            Some(cap(mem, limits.memory_max_bytes())),
            oom,
        )?;
        alloc.observe(&s, limits);
        let input = AllocationInput {
            now: s.at(),
            sample: &s,
            forecast: None,
            current: limits,
            policy: &policy,
            horizon_s: 300,
            history_s: f64::INFINITY,
        };
        if let Some(p) = alloc.allocate(&input) {
            let new = safety::enforce(&p.limits, limits, s.usage(), &policy);
            if new != *limits {
                reasons.push(p.reason);
                *limits = new;
            }
        }
    }
    Ok(reasons)
}

#[test]
fn drives_a_periodic_day_sensibly_and_repairs_ooms() -> TestResult {
    let day = 86_400.0;
    let gib = 1024.0 * MIB;
    let periodic = |t: i64| {
        let phase = std::f64::consts::TAU * t as f64 / day;
        (1.0 + 0.5 * phase.sin(), gib + 200.0 * MIB * phase.sin())
    };
    let mut limits = Limits::unlimited()
        .with_hard(Resource::Cpu, 8.0)?
        .with_hard(Resource::Memory, 8.0 * gib)?;
    let mut alloc = Vpa::new(VpaConfig::default())?.create(&WorkloadId::new("w")?, &limits);
    drive(alloc.as_mut(), &mut limits, 0, 3 * 288, periodic)?;
    let cpu = limits.cpu_quota_cores().ok_or("cpu")?;
    let mem = limits.memory_max_bytes().ok_or("memory")?;
    // Down from the over-provisioned 8 cores / 8 GiB, still above typical demand
    // (1 core, 1 GiB) and near the P90 × 1.15 of the daily swing.
    assert!(cpu < 4.0 && cpu > 1.3, "cpu limit {cpu}");
    assert!(mem < 4.0 * gib && mem > 1.2 * gib, "memory limit {mem}");
    // Memory demand doubles: OOM kills, each bumps the limit until it holds.
    let grown = |t: i64| (periodic(t).0, 2.5 * gib);
    let reasons = drive(alloc.as_mut(), &mut limits, 3 * 86_400, 288, grown)?;
    assert!(reasons.contains(&Reason::OomRepair), "{reasons:?}");
    let mem = limits.memory_max_bytes().ok_or("memory")?;
    assert!(mem > 2.5 * gib, "memory limit {mem} after OOMs");
    Ok(())
}

#[test]
fn cost_per_sample() -> TestResult {
    // Not a benchmark: prints the average cost of observe + allocate (run with
    // `--release -- --nocapture` for a number worth reading).
    let mut limits = Limits::unlimited()
        .with_hard(Resource::Cpu, 2.0)?
        .with_hard(Resource::Memory, 4e9)?;
    let mut alloc = Vpa::new(VpaConfig::default())?.create(&WorkloadId::new("w")?, &limits);
    let n = 200_000;
    let samples: Vec<Sample> = (1..=n)
        .map(|i| {
            let x = (i as f64 * 0.37).sin();
            sample(i * 300, 300, Some(1.0 + 0.5 * x), Some(2e9 + 3e8 * x), 0)
        })
        .collect::<Result<_, _>>()?;
    let policy = WorkloadPolicy::default();
    let started = std::time::Instant::now();
    for s in &samples {
        alloc.observe(s, &limits);
        let input = AllocationInput {
            now: s.at(),
            sample: s,
            forecast: None,
            current: &limits,
            policy: &policy,
            horizon_s: 300,
            history_s: f64::INFINITY,
        };
        if let Some(p) = alloc.allocate(&input) {
            limits = p.limits;
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    println!("vpa: {ns:.0} ns per observe + allocate over {n} samples");
    Ok(())
}

proptest! {
    #[test]
    fn any_sample_stream_gives_positive_finite_limits_or_none(
        start in prop_oneof![Just(i64::MIN / 2), Just(0i64), Just(i64::MAX / 2), -1_000_000_000i64..1_000_000_000],
        steps in prop::collection::vec(
            (1u32..100_000, 0.0..64.0f64, 0.0..1e11f64, 0u32..3, any::<bool>()),
            1..80,
        ),
    ) {
        let mut limits = Limits::unlimited().with_hard(Resource::Cpu, 4.0)?;
        let mut alloc = Vpa::new(VpaConfig::default())?.create(&WorkloadId::new("w")?, &limits);
        let policy = WorkloadPolicy::default();
        let mut t = start;
        for (dt_s, cpu, mem, oom, apply) in steps {
            t = t.saturating_add(i64::from(dt_s) * 1000);
            let usage = Usage::empty().with(Resource::Cpu, cpu)?.with(Resource::Memory, mem)?;
            let s = Sample::new(Timestamp::from_unix_ms(t), WorkloadId::new("w")?, dt_s * 1000, usage)?
                .with_events(Events { oom_kills: oom, ..Events::default() })?;
            alloc.observe(&s, &limits);
            let input = AllocationInput {
                now: s.at(),
                sample: &s,
                forecast: None,
                current: &limits,
                policy: &policy,
                horizon_s: 300,
                history_s: f64::INFINITY,
            };
            if let Some(p) = alloc.allocate(&input) {
                for r in [Resource::Cpu, Resource::Memory] {
                    if let Some(v) = p.limits.hard(r) {
                        prop_assert!(v.is_finite() && v > 0.0, "{r}: {v}");
                    }
                }
                if apply {
                    limits = safety::enforce(&p.limits, &limits, s.usage(), &policy);
                }
            }
        }
    }
}
