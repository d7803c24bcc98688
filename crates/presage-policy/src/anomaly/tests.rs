//! Hand-built series for each component of the anomaly scorer: what must alert does so
//! within 30 s of its onset at a 1 s sampling interval, and a noisy periodic workload
//! that changes nothing never does.

use presage_core::{
    Events, Forecast, HorizonForecast, Quantiles, Resource, ResourceMap, Sample, Timestamp, Usage,
    WorkloadId,
};

use super::*;

const MIB: f64 = 1024.0 * 1024.0;

/// A small deterministic generator (64-bit LCG): the tests must be reproducible.
struct Noise(u64);

impl Noise {
    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [−a, a].
    fn sym(&mut self, a: f64) -> f64 {
        (2.0 * self.next() - 1.0) * a
    }
}

#[derive(Clone, Copy)]
struct Point {
    cpu: f64,
    memory: f64,
    processes: u32,
}

/// A sleep/burn workload with a 30 s cycle (10 s burning one core), jittered the way a
/// busy shared host jitters it: phase edges move by up to 2 s, levels by ±10 %, memory
/// breathes by a few MiB and a helper process comes and goes.
fn periodic(t: usize, noise: &mut Noise) -> Point {
    let phase = (t % 30) as f64 + noise.sym(2.0);
    let burning = (0.0..10.0).contains(&phase);
    let cpu = if burning { 1.0 } else { 0.03 } * (1.0 + noise.sym(0.1)) + noise.next() * 0.02;
    // The odd scheduler hiccup: a sleep-phase sample that shows a full core.
    let cpu = if noise.next() < 0.02 { 1.0 } else { cpu };
    Point {
        cpu,
        memory: 200.0 * MIB + if burning { 8.0 * MIB } else { 0.0 } + noise.sym(2.0 * MIB),
        processes: 3 + u32::from(burning) + u32::from(noise.next() < 0.1),
    }
}

fn sample(t: usize, p: Point) -> Sample {
    let usage = Usage::empty()
        .with(Resource::Cpu, p.cpu)
        .and_then(|u| u.with(Resource::Memory, p.memory))
        .expect("usage");
    Sample::new(
        Timestamp::from_unix_secs(1_700_000_000 + t as i64),
        WorkloadId::new("w").expect("id"),
        1000,
        usage,
    )
    .expect("sample")
    .with_events(Events {
        processes: Some(p.processes),
        ..Events::default()
    })
    .expect("events")
}

/// What a forecaster that learnt the periodic workload would say: p50 between the two
/// phases, p99 a little above a burn.
fn forecast() -> Forecast {
    let mut quantiles = ResourceMap::none();
    let q =
        |lo: f64, hi: f64| Quantiles::from_fn(|p| lo + (hi - lo) * p.powf(3.0)).expect("quantiles");
    quantiles.set(Resource::Cpu, Some(q(0.02, 1.15)));
    quantiles.set(Resource::Memory, Some(q(196.0 * MIB, 212.0 * MIB)));
    Forecast::new(
        Timestamp::from_unix_secs(0),
        "test",
        vec![HorizonForecast {
            horizon_s: 60,
            quantiles,
        }],
    )
    .expect("forecast")
}

/// Runs `seconds` of the periodic workload through a scorer, with `change` applied from
/// `onset` on; returns every reading.
fn run(
    seconds: usize,
    onset: usize,
    change: impl Fn(usize, Point) -> Point,
) -> Vec<AnomalyReading> {
    run_seeded(42, seconds, onset, change)
}

fn run_seeded(
    seed: u64,
    seconds: usize,
    onset: usize,
    change: impl Fn(usize, Point) -> Point,
) -> Vec<AnomalyReading> {
    let policy = AnomalyPolicy::default();
    let mut scorer = AnomalyScorer::new();
    let mut noise = Noise(seed);
    let fc = forecast();
    (0..seconds)
        .map(|t| {
            let base = periodic(t, &mut noise);
            let p = if t >= onset {
                change(t - onset, base)
            } else {
                base
            };
            scorer.update(&sample(t, p), Some(&fc), &policy)
        })
        .collect()
}

/// The first reading at or over the default alert score, as (seconds after onset,
/// component).
fn first_alert(readings: &[AnomalyReading], onset: usize) -> Option<(usize, Component)> {
    let threshold = AnomalyPolicy::default().alert_score;
    readings
        .iter()
        .enumerate()
        .find(|(_, r)| r.score >= threshold)
        .and_then(|(i, r)| Some((i.checked_sub(onset)?, r.component?)))
}

#[test]
fn a_noisy_periodic_workload_runs_fifteen_minutes_without_an_alert() {
    for seed in 1..=6 {
        let readings = run_seeded(seed, 900, usize::MAX, |_, p| p);
        let (at, worst) = readings
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .expect("readings");
        assert!(
            worst.score < AnomalyPolicy::default().alert_score,
            "seed {seed}, {at} s: {worst:?}"
        );
    }
}

#[test]
fn spinning_every_cpu_is_alerted_within_30_s() {
    let readings = run(600, 300, |_, p| Point { cpu: 2.0, ..p });
    let (after, component) = first_alert(&readings, 300).expect("an alert");
    assert!(after <= 30, "{after} s, {component:?}");
}

#[test]
fn spinning_one_core_through_the_sleep_phase_breaks_the_pattern() {
    // The burn level itself is not exceeded: only the pattern changes.
    let readings = run(600, 300, |_, p| Point { cpu: 1.0, ..p });
    let (after, component) = first_alert(&readings, 300).expect("an alert");
    assert!(after <= 30, "{after} s, {component:?}");
    assert!(
        matches!(
            component,
            Component::SustainedCpu | Component::Shift(Resource::Cpu) | Component::Envelope
        ),
        "{component:?}"
    );
}

#[test]
fn a_steady_leak_is_named_a_leak_within_30_s() {
    let readings = run(600, 300, |dt, p| Point {
        memory: p.memory + 20.0 * MIB * dt as f64,
        ..p
    });
    let threshold = AnomalyPolicy::default().alert_score;
    let leak_at = readings
        .iter()
        .enumerate()
        .find(|(_, r)| r.component == Some(Component::Leak) && r.score >= threshold)
        .map(|(i, _)| i)
        .expect("a leak reading");
    assert!((300..=330).contains(&leak_at), "{leak_at}");
    assert!(readings[leak_at].detail.contains("MiB/s"));
}

#[test]
fn a_fork_bomb_is_named_a_process_explosion_at_once() {
    let readings = run(400, 300, |dt, p| Point {
        processes: 4 + 40 * dt as u32,
        ..p
    });
    let (after, component) = first_alert(&readings, 300).expect("an alert");
    assert_eq!(component, Component::ProcessExplosion);
    assert!(after <= 5, "{after}");
    // It keeps scoring while it lasts (the peak does not learn the explosion).
    assert!(readings[399].score >= 0.5, "{:?}", readings[399]);
}

#[test]
fn a_cpu_spike_is_alerted() {
    let readings = run(
        400,
        300,
        |dt, p| if dt < 4 { Point { cpu: 6.0, ..p } } else { p },
    );
    let (after, _) = first_alert(&readings, 300).expect("an alert");
    assert!(after <= 4, "{after}");
}

#[test]
fn a_level_shift_in_memory_is_alerted() {
    // Memory steps up by 300 MiB and stays: no trend, a new level.
    let readings = run(500, 300, |_, p| Point {
        memory: p.memory + 300.0 * MIB,
        ..p
    });
    let (after, component) = first_alert(&readings, 300).expect("an alert");
    assert!(after <= 10, "{after}");
    assert!(
        matches!(
            component,
            Component::Shift(Resource::Memory) | Component::Envelope
        ),
        "{component:?}"
    );
}

#[test]
fn nothing_is_alerted_during_the_warm_up() {
    let readings = run(100, 10, |_, p| Point {
        cpu: 8.0,
        processes: 5000,
        ..p
    });
    assert!(readings.iter().all(|r| r.score == 0.0));
}

#[test]
fn scores_stay_bounded_on_absurd_input() {
    let policy = AnomalyPolicy::default();
    let mut scorer = AnomalyScorer::new();
    let fc = forecast();
    let mut noise = Noise(7);
    for t in 0..600 {
        let p = Point {
            cpu: if t > 200 {
                1e9 * noise.next()
            } else {
                noise.next()
            },
            memory: if t > 300 { 1e15 } else { MIB },
            processes: if t > 400 { u32::MAX } else { 1 },
        };
        let r = scorer.update(&sample(t, p), Some(&fc), &policy);
        assert!((0.0..1.0).contains(&r.score), "{t}: {r:?}");
        assert!(r.ratio <= MAX_RATIO);
    }
    assert_eq!(score_of(1.0), 0.5);
    assert_eq!(score_of(f64::NAN), score_of(MAX_RATIO));
    assert_eq!(score_of(-3.0), 0.0);
}

#[test]
fn the_stream_detector_finds_the_period_and_predicts_from_it() {
    let mut d = StreamDetector::new(StreamSettings::default());
    let mut last = StreamScore::default();
    for i in 0..2000 {
        let x = if i % 48 < 12 { 100.0 } else { 10.0 };
        last = d.update(x);
    }
    assert_eq!(d.period(), Some(48));
    assert!(last.seasonal);
    assert!(last.z < 1.0, "{last:?}");
}

#[test]
fn old_policies_parse_and_bad_anomaly_fields_are_named() {
    let p: crate::WorkloadPolicy = serde_json::from_str(r#"{"headroom":0.1}"#).expect("parse");
    assert_eq!(p.anomaly, AnomalyPolicy::default());
    let p: crate::WorkloadPolicy =
        serde_json::from_str(r#"{"anomaly":{"realert_s":60}}"#).expect("parse");
    assert_eq!(p.anomaly.realert_s, 60.0);
    let mut bad = crate::WorkloadPolicy::default();
    bad.anomaly.fork_ratio = 0.0;
    assert_eq!(
        bad.validate().expect_err("invalid").field,
        "anomaly.fork_ratio"
    );
}

#[test]
fn a_five_minute_trace_neither_alerts_early_nor_on_noise() {
    let policy = AnomalyPolicy::default();
    let mut scorer = AnomalyScorer::new();
    let mut noise = Noise(3);
    for t in 0..576 {
        let usage = Usage::empty()
            .with(Resource::Cpu, 1.0 + noise.sym(0.2))
            .and_then(|u| u.with(Resource::Memory, 1e9 * (1.0 + noise.sym(0.05))))
            .expect("usage");
        let s = Sample::new(
            Timestamp::from_unix_secs(1_700_000_000 + 300 * t),
            WorkloadId::new("w").expect("id"),
            300_000,
            usage,
        )
        .expect("sample");
        let r = scorer.update(&s, None, &policy);
        assert!(r.score < policy.alert_score, "step {t}: {r:?}");
        if t < 30 {
            assert_eq!(r.score, 0.0, "step {t} is inside the warm-up");
        }
    }
}
