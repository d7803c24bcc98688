use presage_core::{Events, Usage};
use proptest::prelude::*;

use super::*;
use crate::{WorkloadPolicy, safety};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

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

fn state(config: AutopilotMwConfig) -> Result<MwState, Box<dyn std::error::Error>> {
    let mw = AutopilotMw::new(config)?;
    let window_ms = i64::from(config.window_s) * 1000;
    let hold_ms = i64::from(config.hold_s) * 1000;
    Ok(MwState {
        config,
        window_ms,
        hold_ms,
        cpu: mw.cpu.clone(),
        memory: mw.memory.clone(),
        last_end: i64::MIN,
        window: None,
        windows_opened: 0,
        computed_window: None,
        held: vec![Held::EMPTY; usize::try_from(hold_ms / window_ms + 2)?].into_boxed_slice(),
        oom_pending: false,
    })
}

fn ask(
    s: &mut dyn Allocator,
    now_s: i64,
    current: &Limits,
) -> Result<Option<Proposal>, Box<dyn std::error::Error>> {
    let policy = WorkloadPolicy::default();
    let last = sample(now_s, 300, Some(1.0), None, 0)?;
    Ok(s.allocate(&AllocationInput {
        now: Timestamp::from_unix_secs(now_s),
        sample: &last,
        forecast: None,
        current,
        policy: &policy,
        horizon_s: 300,
        history_s: f64::INFINITY,
    }))
}

#[test]
fn load_adjusted_p90_of_nine_at_1_and_one_at_10_is_10() -> TestResult {
    // Ten 5-minute windows, nine at load 1 and one at load 10 (first, so it is the oldest
    // and weighs least: 2^(−45 min / 12 h) = 0.958 of the newest).
    // Load 1 lies in CPU bucket 36 = [0.95836, 1.01628), load 10 in bucket 80 =
    // [9.71229, 10.20790); each bucket's load is its weight × its end.
    // By time: 9 of ~10 units are in bucket 36 → P90 = 1.01628 (the end of its bucket).
    // By load: bucket 36 carries about 9 × 1.016 = 9.15 of about 9.15 + 0.97 × 10.21 =
    // 19.0, i.e. 48 % < 90 %, so P90 lands in bucket 80 → its end, 10.2079 cores.
    let config = AutopilotMwConfig {
        margin: 0.0,
        cpu_percentile: 0.9,
        ..AutopilotMwConfig::default()
    };
    let mut s = state(config)?;
    let none = Limits::unlimited();
    s.observe(&sample(300, 300, Some(10.0), None, 0)?, &none);
    for i in 2..=10 {
        s.observe(&sample(i * 300, 300, Some(1.0), None, 0)?, &none);
    }
    assert!(close(s.cpu.percentile(0.9), 1.016_281_388_554_091_8, 1e-12));
    let p = ask(&mut s, 3000, &none)?.ok_or("no proposal")?;
    let cpu = p.limits.cpu_quota_cores().ok_or("cpu")?;
    assert!(close(cpu, 10.207_902_624_036_937, 1e-12), "{cpu}");
    assert_eq!(p.limits.memory_max_bytes(), None, "memory was not measured");
    assert_eq!(p.model, "autopilot-mw");
    Ok(())
}

#[test]
fn the_max_of_the_last_hour_holds_a_peak_for_an_hour() -> TestResult {
    let mut s = state(AutopilotMwConfig::default())?;
    let none = Limits::unlimited();
    // A 5-minute sample opens a window; at t = 10 min the recommendation peaks at 10.
    let at =
        |s: &mut MwState, t_s: i64, rec: f64| -> Result<Option<f64>, Box<dyn std::error::Error>> {
            s.observe(&sample(t_s, 300, Some(1.0), None, 0)?, &none);
            Ok(s.hold(t_s * 1000, (Some(rec), None)).0)
        };
    at(&mut s, 300, 1.0)?;
    assert_eq!(at(&mut s, 600, 10.0)?, Some(10.0));
    // Lower recommendations in every later window: the peak's window opened at 600 s,
    // so it counts while now − 600 s < 1 h, i.e. up to and including 600 s + 55 min.
    for t in (900..=600 + 55 * 60).step_by(300) {
        assert_eq!(at(&mut s, t, 2.0)?, Some(10.0), "at {t} s");
    }
    assert_eq!(
        at(&mut s, 600 + 3600, 2.0)?,
        Some(2.0),
        "released an hour later"
    );
    Ok(())
}

#[test]
fn short_samples_fill_five_minute_windows() -> TestResult {
    let mut s = state(AutopilotMwConfig::default())?;
    let none = Limits::unlimited();
    // 1-minute samples: five make a window; each window keeps only its memory peak.
    for i in 1..=10 {
        let mem = if i == 3 { 900.0 * MIB } else { 500.0 * MIB };
        s.observe(&sample(i * 60, 60, Some(1.0), Some(mem), 0)?, &none);
    }
    assert_eq!(s.windows_opened, 2);
    let now = Timestamp::from_unix_secs(600);
    // Two windows of weight 1 (decayed a little over ≤ 5 minutes of a 48 h half-life).
    assert!(close(s.memory.total_weight(now), 2.0, 0.002));
    // CPU: ten samples of 1/5 window each: two windows' worth (decayed by up to
    // 2^(−9 min / 12 h) = 0.991).
    assert!(close(s.cpu.total_weight(now), 2.0, 0.01));
    // The first window's peak is the 900 MiB sample; P50 of two peaks is the low one.
    assert!(s.memory.percentile(1.0) > 900.0 * MIB);
    assert!(s.memory.percentile(0.4) < 600.0 * MIB);
    Ok(())
}

#[test]
fn no_history_keeps_the_provisioned_limits() -> TestResult {
    let limits = Limits::unlimited().with_hard(Resource::Cpu, 4.0)?;
    let mut alloc =
        AutopilotMw::new(AutopilotMwConfig::default())?.create(&WorkloadId::new("w")?, &limits);
    assert_eq!(ask(alloc.as_mut(), 300, &limits)?, None);
    Ok(())
}

#[test]
fn bad_knobs_are_named() {
    for knob in [f64::NAN, -1.0, -3.0, f64::NEG_INFINITY] {
        let err = build(knob).err().map(|e| e.field);
        assert_eq!(err.as_deref(), Some("autopilot-mw margin"), "knob {knob}");
    }
    for &knob in SWEEP {
        assert!(build(knob).is_ok(), "{knob}");
    }
    assert!(
        build(DEFAULT_KNOB).is_ok_and(|p| p.allocator.name() == "autopilot-mw"
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
fn drives_a_periodic_day_sensibly_and_recovers_from_ooms() -> TestResult {
    let day = 86_400.0;
    let periodic = |t: i64| {
        let phase = std::f64::consts::TAU * t as f64 / day;
        (1.0 + 0.5 * phase.sin(), GIB + 200.0 * MIB * phase.sin())
    };
    let mut limits = Limits::unlimited()
        .with_hard(Resource::Cpu, 8.0)?
        .with_hard(Resource::Memory, 8.0 * GIB)?;
    let mut alloc =
        AutopilotMw::new(AutopilotMwConfig::default())?.create(&WorkloadId::new("w")?, &limits);
    drive(alloc.as_mut(), &mut limits, 0, 3 * 288, periodic)?;
    let cpu = limits.cpu_quota_cores().ok_or("cpu")?;
    let mem = limits.memory_max_bytes().ok_or("memory")?;
    // Well down from 8 cores / 8 GiB, above typical demand (1 core, 1 GiB): CPU near the
    // load-adjusted P95 of the swing (≈ 1.5) × 1.1, memory near its peak (1.2 GiB) × 1.1.
    assert!(cpu > 1.3 && cpu < 2.5, "cpu limit {cpu}");
    assert!(mem > 1.2 * GIB && mem < 2.0 * GIB, "memory limit {mem}");
    // Memory demand jumps to 2.5 GiB: OOM kills until the limit holds it.
    let grown = |t: i64| (periodic(t).0, 2.5 * GIB);
    let reasons = drive(alloc.as_mut(), &mut limits, 3 * 86_400, 288, grown)?;
    assert!(reasons.contains(&Reason::OomRepair), "{reasons:?}");
    let mem = limits.memory_max_bytes().ok_or("memory")?;
    assert!(mem > 2.5 * GIB, "memory limit {mem} after OOMs");
    Ok(())
}

#[test]
fn cost_per_sample() -> TestResult {
    // Not a benchmark: prints the average cost of observe + allocate (run with
    // `--release -- --nocapture` for a number worth reading).
    let mut limits = Limits::unlimited()
        .with_hard(Resource::Cpu, 2.0)?
        .with_hard(Resource::Memory, 4e9)?;
    let mut alloc =
        AutopilotMw::new(AutopilotMwConfig::default())?.create(&WorkloadId::new("w")?, &limits);
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
    println!("autopilot-mw: {ns:.0} ns per observe + allocate over {n} samples");
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
        let mut alloc = AutopilotMw::new(AutopilotMwConfig::default())?.create(&WorkloadId::new("w")?, &limits);
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
