use presage_core::{BurstClass, Usage, WorkloadId};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Monday 2024-01-01T00:00:00Z.
const MONDAY: i64 = 1_704_067_200;
const STEP: i64 = 300;

fn sample(t: i64, cpu: f64) -> Sample {
    let usage = Usage::empty()
        .with(Resource::Cpu, cpu)
        .expect("valid usage");
    Sample::new(
        Timestamp::from_unix_secs(t),
        WorkloadId::new("w").expect("valid id"),
        (STEP * 1000) as u32,
        usage,
    )
    .expect("valid sample")
}

/// 1 core, rising over 30 min from 09:00 UTC to 3 cores until 17:00, falling back over
/// 30 min.
fn daily(t: i64) -> f64 {
    let h = (t.rem_euclid(86_400)) as f64 / 3600.0;
    let ramp = |x: f64| x.clamp(0.0, 1.0);
    1.0 + 2.0 * ramp((h - 9.0) * 2.0).min(ramp((17.5 - h) * 2.0))
}

/// A deterministic standard normal (Box-Muller over a 64-bit LCG).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn state() -> Result<HwState, ForecastError> {
    let family = HoltWinters::new(HoltWintersConfig::default())?;
    Ok(HwState {
        config: family.config,
        tracks: ResourceMap::none(),
        bursts: BurstClassifiers::new(family.config.burst),
    })
}

fn cpu_quantiles(f: &dyn Forecaster, now: i64, h: u32) -> Option<Quantiles> {
    f.forecast(Timestamp::from_unix_secs(now), &[h])
        .and_then(|fc| fc.at(Resource::Cpu, h).copied())
}

#[test]
fn residual_quantiles_match_hand_counts() -> TestResult {
    let mut d = ResidualDistribution::new(Resource::Cpu, f64::INFINITY, 0.05)?;
    for (i, r) in [-2.0, -1.0, 1.0, 3.0].into_iter().enumerate() {
        d.add(r, 1.0, Timestamp::from_unix_secs(i as i64));
    }
    let layout = resource_layout(Resource::Cpu, 0.05)?;
    let end = |v: f64| layout.end(layout.index_of(v));
    // Four equal weights, two below zero. p5: 0.2 of 4 lies in the lower half, at level
    // 1 − 0.2/2 = 0.9 of the magnitudes {1, 2} → 2. p50: exactly the lower half's weight,
    // so the upper side at level 0 → its first bucket, 1. p75: level 0.5 of {1, 3} → 1.
    // p90 and above: 3.
    let o = d.offsets();
    assert_eq!(o[0], -end(2.0));
    assert_eq!(o[1], end(1.0));
    assert_eq!(o[2], end(1.0));
    assert_eq!(o[3], end(3.0));
    assert_eq!(o[9], end(3.0));
    let q = d.around(10.0).ok_or("no quantiles")?;
    assert_eq!(q.p50(), 10.0 + end(1.0));
    // Around a point near zero, the lower quantiles clip at zero.
    assert_eq!(d.around(1.0).map(|q| q.p5()), Some(0.0));
    // Errors below the first bucket's width (0.001 core) read as none.
    let mut d = ResidualDistribution::new(Resource::Cpu, f64::INFINITY, 0.05)?;
    d.add(0.0005, 1.0, Timestamp::from_unix_secs(0));
    assert_eq!(d.offsets(), [0.0; QUANTILE_COUNT]);
    Ok(())
}

#[test]
fn detects_the_daily_period_and_forecasts_the_next_surge() -> TestResult {
    let mut f = state()?;
    let days = 8;
    for i in 1..=days * 288 {
        let t = MONDAY + STEP * i;
        f.observe(&sample(t, daily(t)));
    }
    let period = f
        .tracks
        .get(Resource::Cpu)
        .as_ref()
        .and_then(Track::period_s);
    assert_eq!(period, Some(86_400.0));
    // Day 9, 08:00: the surge starts in an hour. At 10:00 and 12:00 it is on (3 cores); at
    // 20:00 it is over (1 core).
    let now = MONDAY + days * 86_400 + 8 * 3600;
    f.observe(&sample(now, daily(now)));
    for (h, want) in [(2 * 3600, 3.0), (4 * 3600, 3.0), (12 * 3600, 1.0)] {
        let q = cpu_quantiles(&f, now, h).ok_or("no forecast")?;
        assert!(
            (q.p50() - want).abs() < 0.15 * want,
            "+{h} s: p50 {} want {want}",
            q.p50()
        );
    }
    Ok(())
}

#[test]
fn p95_covers_about_95_percent_of_a_noisy_series() -> TestResult {
    let mut f = state()?;
    let mut noise = Noise(7);
    let (mut scored, mut covered) = (0u32, 0u32);
    for i in 1..=14 * 288 {
        let t = MONDAY + STEP * i;
        let y = (daily(t) * (1.0 + 0.1 * noise.normal())).max(0.0);
        if i > 4 * 288 {
            let q = cpu_quantiles(&f, t - STEP, STEP as u32).ok_or("no forecast")?;
            scored += 1;
            covered += u32::from(y <= q.p95());
        }
        f.observe(&sample(t, y));
    }
    let coverage = f64::from(covered) / f64::from(scored);
    assert!((0.92..=0.98).contains(&coverage), "p95 coverage {coverage}");
    Ok(())
}

#[test]
fn no_season_on_white_noise_and_trend_is_damped() -> TestResult {
    let mut f = state()?;
    let mut noise = Noise(11);
    for i in 1..=5 * 288 {
        let t = MONDAY + STEP * i;
        f.observe(&sample(t, (2.0 + 0.3 * noise.normal()).max(0.0)));
    }
    assert_eq!(
        f.tracks
            .get(Resource::Cpu)
            .as_ref()
            .and_then(Track::period_s),
        None
    );
    // A steady climb of 2.88 cores a day: the forecast rises, but a day ahead it stays far
    // below the undamped 5.76 (the damped trend adds at most b·τ = 0.12; the 4-hour
    // residuals, read for want of day-ahead ones, add the lag they saw, ~0.36).
    let mut f = state()?;
    for i in 1..=288 {
        f.observe(&sample(MONDAY + STEP * i, 0.01 * i as f64));
    }
    let now = MONDAY + STEP * 288;
    let near = cpu_quantiles(&f, now, 3600).ok_or("no forecast")?.p50();
    let far = cpu_quantiles(&f, now, 86_400).ok_or("no forecast")?.p50();
    assert!(near > 2.8 && far >= near && far < 3.6, "{near} {far}");
    Ok(())
}

#[test]
fn bursts_are_classified_on_the_forecast() -> TestResult {
    let mut f = state()?;
    for i in 1..=576 {
        let t = MONDAY + STEP * i;
        f.observe(&sample(t, if i % 12 == 5 { 4.0 } else { 0.3 }));
    }
    let fc = f.forecast(Timestamp::from_unix_secs(MONDAY + STEP * 576), &[300]);
    assert_eq!(
        fc.and_then(|fc| fc.class(Resource::Cpu)),
        Some(BurstClass::Bursty)
    );
    Ok(())
}

#[test]
fn save_and_restore_give_identical_forecasts() -> TestResult {
    let family = HoltWinters::new(HoltWintersConfig::default())?;
    let mut f = family.create();
    let mut noise = Noise(3);
    for i in 1..=4 * 288 {
        let t = MONDAY + STEP * i;
        f.observe(&sample(t, daily(t) + 0.1 * noise.normal().abs()));
    }
    let json = serde_json::to_string(&f.save()?)?;
    let mut back = family.restore(&serde_json::from_str(&json)?)?;
    let now = Timestamp::from_unix_secs(MONDAY + 4 * 86_400);
    let horizons = [300, 900, 3600, 6 * 3600];
    assert!(f.forecast(now, &horizons).is_some());
    assert_eq!(back.forecast(now, &horizons), f.forecast(now, &horizons));
    // And they keep agreeing as both go on learning.
    let next = sample(MONDAY + 4 * 86_400 + STEP, 2.0);
    f.observe(&next);
    back.observe(&next);
    let later = now.plus_secs(STEP);
    assert_eq!(
        back.forecast(later, &horizons),
        f.forecast(later, &horizons)
    );
    Ok(())
}

#[test]
fn bad_settings_are_refused() {
    let bad = [
        HoltWintersConfig {
            level_half_life_s: 0.0,
            ..HoltWintersConfig::default()
        },
        HoltWintersConfig {
            max_period_s: 60.0,
            ..HoltWintersConfig::default()
        },
        HoltWintersConfig {
            residual_horizons_s: [900, 900, 3600, 7200],
            ..HoltWintersConfig::default()
        },
    ];
    for config in bad {
        assert!(HoltWinters::new(config).is_err(), "{config:?}");
    }
}
