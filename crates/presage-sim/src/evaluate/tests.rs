use presage_core::{Forecast, HorizonForecast, Quantiles, ResourceMap, WorkloadKey};
use presage_forecast::{Forecaster, ModelState};

use super::*;
use crate::synth::{Pattern, SynthConfig, generate};
use crate::trace::TracePoint;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn pinball_matches_hand_worked_values() {
    // Under-forecast by 2 at q = 0.95 costs 0.95 · 2; over-forecast by 2 costs 0.05 · 2.
    assert!((pinball(0.95, 10.0, 8.0) - 1.9).abs() < 1e-12);
    assert!((pinball(0.95, 8.0, 10.0) - 0.1).abs() < 1e-12);
    assert!((pinball(0.5, 3.0, 1.0) - 1.0).abs() < 1e-12);
    assert_eq!(pinball(0.95, 4.0, 4.0), 0.0);
}

#[test]
fn scores_average_series_and_pool_steps() {
    // Series a: 2 steps, demand 1 and 3 (mean 2), pinball sum 0.4 (mean 0.2), one covered,
    // p50 errors summing 1 against a naive 2. Series b: 1 step, demand 0, so its pinball
    // 0.05 is divided by the floor 0.1; covered; no naive change (left out of MASE).
    let a = Sums {
        steps: 2,
        covered: 1,
        pinball: 0.4,
        abs_error: 1.0,
        demand: 4.0,
        naive_error: 2.0,
        floor: 0.1,
    };
    let b = Sums {
        steps: 1,
        covered: 1,
        pinball: 0.05,
        floor: 0.1,
        ..Sums::default()
    };
    let s = scores([a, b].iter());
    assert!(
        (s.pinball_p95 - (0.2 / 2.0 + 0.05 / 0.1) / 2.0).abs() < 1e-12,
        "{s:?}"
    );
    assert!((s.coverage_p95 - 2.0 / 3.0).abs() < 1e-12);
    assert!((s.mase - 0.5).abs() < 1e-12);
    assert_eq!((s.steps, s.series), (3, 2));
    assert!(scores([].iter()).pinball_p95.is_nan());
}

/// Knows the series `demand(t)` and forecasts it exactly.
#[derive(Debug, Clone, Copy)]
struct Perfect;

fn demand(t: Timestamp) -> f64 {
    1.0 + (t.unix_ms() / 300_000 % 7) as f64
}

impl Forecaster for Perfect {
    fn name(&self) -> &'static str {
        "perfect"
    }
    fn observe(&mut self, _: &Sample) {}
    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let horizons = horizons_s
            .iter()
            .map(|&h| {
                let q = Quantiles::point(demand(now.plus_secs(i64::from(h)))).ok();
                let mut quantiles = ResourceMap::none();
                quantiles.set(Resource::Cpu, q);
                quantiles.set(
                    Resource::Memory,
                    q.and_then(|q| Quantiles::point(q.p50() * 1e9).ok()),
                );
                HorizonForecast {
                    horizon_s: h,
                    quantiles,
                }
            })
            .collect();
        Forecast::new(now, "perfect", horizons).ok()
    }
    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode("perfect", 1, &())
    }
}

impl ForecasterFactory for Perfect {
    fn name(&self) -> &'static str {
        "perfect"
    }
    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(Perfect)
    }
    fn restore(&self, _: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        Ok(Box::new(Perfect))
    }
}

fn trace_of(
    series: impl Fn(Timestamp) -> f64,
    points: i64,
) -> Result<Trace, Box<dyn std::error::Error>> {
    let id = WorkloadId::new("w")?;
    let points = (1..=points)
        .map(|i| {
            let at = Timestamp::from_unix_secs(1_704_067_200 + 300 * i);
            let usage = Usage::empty()
                .with(Resource::Cpu, series(at))?
                .with(Resource::Memory, series(at) * 1e9)?;
            Ok(TracePoint { at, demand: usage })
        })
        .collect::<Result<Vec<_>, presage_core::CoreError>>()?;
    Ok(Trace {
        workloads: vec![TraceWorkload {
            key: WorkloadKey::new(id.as_str(), "", "", "")?,
            id,
            provisioned: presage_core::Limits::default(),
            points,
            origin: "test".into(),
            surges: Vec::new(),
        }],
        ..Trace::default()
    })
}

#[test]
fn a_perfect_forecast_scores_zero_loss_full_coverage_zero_mase() -> TestResult {
    let trace = trace_of(demand, 600)?;
    let models: Vec<std::sync::Arc<dyn ForecasterFactory>> = vec![std::sync::Arc::new(Perfect)];
    let options = EvalOptions {
        warmup_s: 3600,
        seasonal_naive: false,
        ets: None,
        sample: None,
    };
    let report = evaluate(&trace, &models, &options, vec![], &|_| {})?;
    let m = &report.models[0];
    assert_eq!(m.overall.pinball_p95, 0.0);
    assert_eq!(m.overall.coverage_p95, 1.0);
    assert_eq!(m.overall.mase, 0.0);
    // 600 points, the first 12 inside the hour of warm-up (and the first has no forecast).
    assert_eq!(m.resources["cpu"].steps, 600 - 12);
    Ok(())
}

#[test]
fn every_model_and_baseline_is_scored_on_a_synthetic_trace() -> TestResult {
    let config = SynthConfig {
        patterns: vec![(Pattern::Daily, 2), (Pattern::Bursty, 1)],
        days: 3,
        ..SynthConfig::default_mix()
    };
    let trace = generate(&config);
    let models = default_models()?;
    let report = evaluate(
        &trace,
        &models,
        &EvalOptions::default(),
        vec!["synthetic".into()],
        &|_| {},
    )?;
    let names: Vec<&str> = report.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ewma",
            "decaying-histogram",
            "moving-window",
            "segmented",
            "holt-winters",
            "residual-1h",
            "ensemble",
            "seasonal-naive",
            "ets"
        ]
    );
    for m in &report.models {
        for s in std::iter::once(&m.overall).chain(m.resources.values()) {
            assert!((0.0..=1.0).contains(&s.coverage_p95), "{}: {s:?}", m.name);
            assert!(
                s.pinball_p95.is_finite() && s.pinball_p95 >= 0.0,
                "{}: {s:?}",
                m.name
            );
            assert!(s.mase.is_finite() && s.mase >= 0.0, "{}: {s:?}", m.name);
            assert!(s.steps > 0);
        }
    }
    // Same steps for everyone.
    let steps: Vec<u64> = report.models.iter().map(|m| m.overall.steps).collect();
    assert!(steps.windows(2).all(|w| w[0] == w[1]), "{steps:?}");
    assert!(table(&report).contains("holt-winters"));
    Ok(())
}

#[test]
fn a_sample_is_evenly_spread_and_deterministic() -> TestResult {
    let config = SynthConfig {
        patterns: vec![(Pattern::Idle, 10)],
        days: 1,
        ..SynthConfig::default_mix()
    };
    let trace = generate(&config);
    let ids: Vec<&str> = sampled_workloads(&trace, Some(3))
        .iter()
        .map(|w| w.id.as_str())
        .collect();
    assert_eq!(ids, ["idle-00", "idle-03", "idle-06"]);
    assert_eq!(sampled_workloads(&trace, Some(50)).len(), 10);
    assert_eq!(sampled_workloads(&trace, None).len(), 10);
    Ok(())
}

#[test]
fn bad_trace_arguments_are_named() {
    let options = ReadOptions::default();
    let err = load_traces(&["nonsense".into()], &options).map_err(|e| e.to_string());
    assert!(err.is_err_and(|e| e.contains("FORMAT:PATH")));
    let err = load_traces(&["tsv:/nowhere".into()], &options).map_err(|e| e.to_string());
    assert!(err.is_err_and(|e| e.contains("tsv")));
    let err = load_traces(&["csv:/nowhere/at/all.csv".into()], &options).map_err(|e| e.to_string());
    assert!(err.is_err_and(|e| e.contains("/nowhere/at/all.csv")));
}

#[test]
#[ignore = "diagnostic"]
fn diag_bitbrains() -> TestResult {
    use presage_forecast::{HoltWinters, HoltWintersConfig};
    let path = std::env::var("DIAG_TRACE")
        .unwrap_or("bitbrains:/work/shared/data/bitbrains_fastStorage".into());
    let trace = load_traces(&[path], &ReadOptions::default())?;
    let d = HoltWintersConfig::default();
    let variants: Vec<(&str, HoltWintersConfig)> = vec![
        ("default", d),
        (
            "level60",
            HoltWintersConfig {
                level_half_life_s: 60.0,
                ..d
            },
        ),
        (
            "level100",
            HoltWintersConfig {
                level_half_life_s: 100.0,
                ..d
            },
        ),
        (
            "level150",
            HoltWintersConfig {
                level_half_life_s: 150.0,
                ..d
            },
        ),
        (
            "level250",
            HoltWintersConfig {
                level_half_life_s: 250.0,
                ..d
            },
        ),
        (
            "level150-k0.3",
            HoltWintersConfig {
                level_half_life_s: 150.0,
                volatility_weight: 0.3,
                ..d
            },
        ),
        (
            "level150-k0.7",
            HoltWintersConfig {
                level_half_life_s: 150.0,
                volatility_weight: 0.7,
                ..d
            },
        ),
    ];
    let mut models = default_models()?;
    for (_, c) in &variants {
        models.push(std::sync::Arc::new(HoltWinters::new(*c)?));
    }
    let factories: Vec<&dyn ForecasterFactory> = models.iter().map(|m| m.as_ref()).collect();
    let chosen = sampled_workloads(&trace, Some(60));
    let results: Vec<WorkloadResult> = chosen
        .par_iter()
        .map(|w| evaluate_workload(w, &factories, 86_400))
        .collect();
    let names: Vec<String> = models
        .iter()
        .map(|m| m.name().to_owned())
        .take(5)
        .chain(variants.iter().map(|v| format!("hw-{}", v.0)))
        .collect();
    for (c, name) in names.iter().enumerate() {
        let cpu = scores(results.iter().map(|r| &r.sums[c][0]));
        let mem = scores(results.iter().map(|r| &r.sums[c][1]));
        println!(
            "{name:<22} cpu pin {:.4} cov {:.3} mase {:.3} | mem pin {:.4} cov {:.3} mase {:.3}",
            cpu.pinball_p95,
            cpu.coverage_p95,
            cpu.mase,
            mem.pinball_p95,
            mem.coverage_p95,
            mem.mase
        );
    }
    Ok(())
}
