use presage_core::{Events, Usage, WorkloadId};

use super::*;

fn sample(t: i64, cpu: f64) -> Sample {
    let usage = Usage::empty().with(Resource::Cpu, cpu).expect("usage");
    Sample::new(
        Timestamp::from_unix_secs(t),
        WorkloadId::new("w").expect("id"),
        300_000,
        usage,
    )
    .expect("sample")
}

fn model(window_s: u32) -> Residual {
    Residual::new(ResidualConfig {
        window_s,
        horizon_steps: vec![1, 3],
        half_life_s: 1e9,
        min_residuals: 4,
        ..ResidualConfig::default()
    })
    .expect("config")
}

fn cpu_at(f: &dyn Forecaster, t: i64, horizon_s: u32) -> Quantiles {
    f.forecast(Timestamp::from_unix_secs(t), &[horizon_s])
        .and_then(|fc| fc.at(Resource::Cpu, horizon_s).copied())
        .expect("a cpu forecast")
}

#[test]
fn base_is_the_peak_over_the_window() {
    let family = Residual::new(ResidualConfig {
        window_s: 900,
        min_residuals: 100,
        ..ResidualConfig::default()
    })
    .expect("config");
    let mut f = family.create();
    for (i, cpu) in [1.0, 3.0, 2.0, 1.0, 1.0].iter().enumerate() {
        f.observe(&sample(i as i64 * 300, *cpu));
    }
    // Before enough residuals: the prior, starting at the base. The window (900 s back
    // from t = 1200) holds 2, 1, 1 — the 3 at t = 300 has left it.
    let q = cpu_at(f.as_ref(), 1200, 300);
    assert!((q.p5() - 2.0).abs() < 1e-3, "{q:?}");
    assert_eq!(q.max(), 4.0, "the prior allows twice the base");
}

#[test]
fn residual_quantiles_are_learned_per_horizon() {
    // A square wave 1,1,1,3 repeating, base = the last sample (300 s window).
    let mut f = model(300).create();
    let wave = [1.0, 1.0, 1.0, 3.0];
    for i in 0..400 {
        f.observe(&sample(i * 300, wave[(i % 4) as usize]));
    }
    // Now at a 3 (i = 399 is the 4th of its cycle): next is 1, so one step ahead the
    // residual from a base of 3 … but the distribution is over all bases seen: one-step
    // residuals are 0 (1→1, 1→1), +2 (1→3) and −2 (3→1), each a share of 1/2, 1/4, 1/4.
    let q = cpu_at(f.as_ref(), 399 * 300, 300);
    assert!((q.p50() - 3.0).abs() < 0.01, "median residual 0: {q:?}");
    assert!(
        q.max() >= 5.0 && q.max() < 5.2,
        "max residual +2 (bucket end): {q:?}"
    );
    assert!(q.p5() <= 1.0 + 1e-9, "the −2 residuals: {q:?}");
    // Three steps ahead the peak of the next three always includes a 3: from a base of 1
    // the residual is +2 three times in four; from a base of 3 it is 0.
    let q3 = cpu_at(f.as_ref(), 399 * 300, 900);
    assert!(q3.p50() > 4.9, "3-step median residual +2: {q3:?}");
}

#[test]
fn a_throttled_sample_counts_its_demand_not_its_cap() {
    let mut f = model(300).create();
    for i in 0..10 {
        f.observe(&sample(i * 300, 1.0));
    }
    // Capped at 2 cores with half the interval throttled: demand was 4.
    let throttled = sample(3000, 2.0)
        .with_events(Events {
            cpu_throttled_s: 150.0,
            cpu_throttled_periods: 1500,
            ..Events::default()
        })
        .expect("events");
    f.observe(&throttled);
    let p5 = cpu_at(f.as_ref(), 3000, 300).p5();
    assert!((p5 - 4.0).abs() < 0.01, "the base is the demand, 4: {p5}");
}

#[test]
fn save_and_restore_continue_the_same_forecast() -> Result<(), ForecastError> {
    let family = model(900);
    let mut f = family.create();
    for i in 0..50 {
        f.observe(&sample(i * 300, 1.0 + (i % 5) as f64));
    }
    let back = family.restore(&f.save()?)?;
    assert_eq!(
        back.forecast(Timestamp::from_unix_secs(15_000), &[300, 900]),
        f.forecast(Timestamp::from_unix_secs(15_000), &[300, 900])
    );
    let other = model(3600);
    assert!(
        other.restore(&f.save()?).is_err(),
        "another window's state does not apply"
    );
    Ok(())
}

#[test]
fn bad_settings_are_refused() {
    for config in [
        ResidualConfig {
            window_s: 0,
            ..ResidualConfig::default()
        },
        ResidualConfig {
            horizon_steps: vec![],
            ..ResidualConfig::default()
        },
        ResidualConfig {
            horizon_steps: vec![3, 1],
            ..ResidualConfig::default()
        },
        ResidualConfig {
            half_life_s: -1.0,
            ..ResidualConfig::default()
        },
    ] {
        assert!(Residual::new(config).is_err());
    }
}
