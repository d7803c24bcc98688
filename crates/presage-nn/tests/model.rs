//! Training, saving, loading and forecasting end to end, on small synthetic traces.

use std::sync::OnceLock;

use presage_core::{Resource, Sample, Timestamp};
use presage_forecast::ForecasterFactory;
use presage_nn::{CellKind, NeuralFactory, NnError, TrainConfig, TrainEvent, TrainedModel, train};
use presage_sim::synth::{Pattern, SynthConfig, generate};
use presage_sim::trace::{Trace, TraceWorkload};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn tiny_trace(seed: u64) -> Trace {
    generate(&SynthConfig {
        patterns: vec![
            (Pattern::Daily, 3),
            (Pattern::Bursty, 2),
            (Pattern::Leak, 2),
            (Pattern::Idle, 1),
        ],
        days: 3,
        seed,
        ..SynthConfig::default_mix()
    })
}

fn tiny_config(cell: CellKind) -> TrainConfig {
    TrainConfig {
        cell,
        hidden: 8,
        window: 24,
        burn_in: 8,
        batch: 16,
        batches_per_epoch: 20,
        epochs: 3,
        patience: 3,
        learning_rate: 1e-2,
        validation_fraction: 0.25,
        validation_windows: 64,
        seed: 5,
        trained_on: vec!["tiny synthetic".into()],
        ..TrainConfig::default()
    }
}

/// One small model shared by the tests that only need *a* model.
fn shared_model() -> Result<&'static TrainedModel, String> {
    static MODEL: OnceLock<Result<TrainedModel, String>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            train(&[tiny_trace(1)], &tiny_config(CellKind::Gru), &|_| {}).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn samples(w: &TraceWorkload) -> Vec<Sample> {
    let mut out = Vec::with_capacity(w.points.len());
    let mut previous: Option<Timestamp> = None;
    for p in &w.points {
        let interval = previous.map_or(300_000, |t| (p.at.unix_ms() - t.unix_ms()) as u32);
        previous = Some(p.at);
        if let Ok(s) = Sample::new(p.at, w.id.clone(), interval, p.demand) {
            out.push(s);
        }
    }
    out
}

#[test]
fn training_reduces_the_validation_loss_and_reports_progress() -> TestResult {
    for cell in [CellKind::Gru, CellKind::Lstm] {
        let batches = std::cell::Cell::new(0);
        let epochs = std::cell::Cell::new(0);
        let model = train(&[tiny_trace(1)], &tiny_config(cell), &|e| match e {
            TrainEvent::Batch { loss, .. } => {
                assert!(loss.is_finite());
                batches.set(batches.get() + 1);
            }
            TrainEvent::Epoch(_) => epochs.set(epochs.get() + 1),
            TrainEvent::Prepared { .. } => {}
        })?;
        let report = model.report();
        assert_eq!(batches.get(), 60, "{cell:?}");
        assert_eq!(epochs.get(), report.epochs.len());
        assert!(!report.validation_in_sample && report.validation_series > 0);
        let best = model
            .header()
            .validation_pinball
            .ok_or("a validation loss")?;
        assert!(
            best < 0.8 * report.initial_validation_pinball,
            "{cell:?}: {best} vs untrained {}",
            report.initial_validation_pinball
        );
    }
    Ok(())
}

#[test]
fn the_same_seed_gives_the_same_model() -> TestResult {
    let config = TrainConfig {
        epochs: 1,
        batches_per_epoch: 5,
        ..tiny_config(CellKind::Gru)
    };
    let a = train(&[tiny_trace(2)], &config, &|_| {})?.to_bytes()?;
    let b = train(&[tiny_trace(2)], &config, &|_| {})?.to_bytes()?;
    assert!(a == b, "two runs with seed {} differ", config.seed);
    Ok(())
}

#[test]
fn weights_round_trip_through_a_file() -> TestResult {
    let model = shared_model()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("m.safetensors");
    model.save(&path)?;
    let loaded = NeuralFactory::from_file(&path)?;
    assert_eq!(loaded.header(), model.header());
    let direct = model.factory()?;
    assert_eq!(loaded.fingerprint(), direct.fingerprint());
    assert_eq!(std::fs::read(&path)?, model.to_bytes()?);
    Ok(())
}

#[test]
fn bad_weights_files_are_typed_errors_naming_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"definitely not tensors")?;
    let err = NeuralFactory::from_file(&garbage)
        .err()
        .ok_or("garbage loaded")?;
    assert!(matches!(err, NnError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("garbage.safetensors"), "{err}");

    let missing = dir.path().join("missing.safetensors");
    let err = NeuralFactory::from_file(&missing)
        .err()
        .ok_or("missing loaded")?;
    assert!(matches!(err, NnError::Io { .. }) && err.to_string().contains("missing"));

    // A model from a "future" format: same bytes with the header's version changed.
    let bytes = shared_model()?.to_bytes()?;
    let needle = br#"\"version\":1"#;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .ok_or("the header carries the version")?;
    let mut future = bytes.clone();
    future[at + needle.len() - 1] = b'9';
    let err = NeuralFactory::from_bytes(&future, "future.safetensors")
        .err()
        .ok_or("future format loaded")?;
    assert!(
        matches!(
            err,
            NnError::Incompatible {
                field: "version",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("future.safetensors"));

    // Truncated: header intact, tensor data cut.
    let err = NeuralFactory::from_bytes(&bytes[..bytes.len() - 8], "cut.safetensors")
        .err()
        .ok_or("truncated file loaded")?;
    assert!(matches!(err, NnError::Corrupt { .. }), "{err}");
    Ok(())
}

#[test]
fn saved_state_continues_exactly_and_survives_a_model_change() -> TestResult {
    let family = shared_model()?.factory()?;
    let trace = tiny_trace(3);
    let series = samples(&trace.workloads[0]);
    let (head, tail) = series.split_at(400);
    let mut live = family.create();
    for s in head {
        live.observe(s);
    }
    let saved = live.save()?;
    let json = serde_json::to_string(&saved)?;
    let mut restored = family.restore(&serde_json::from_str(&json)?)?;
    for s in &tail[..50] {
        live.observe(s);
        restored.observe(s);
    }
    let now = tail[49].at();
    let a = live.forecast(now, &[60, 900, 3600]).ok_or("a forecast")?;
    let b = restored
        .forecast(now, &[60, 900, 3600])
        .ok_or("a forecast")?;
    assert_eq!(a, b, "the restored forecaster continues the same state");

    // Under other weights the recurrent state restarts: quiet until warm again.
    let other = train(
        &[tiny_trace(4)],
        &TrainConfig {
            epochs: 1,
            batches_per_epoch: 2,
            seed: 99,
            ..tiny_config(CellKind::Gru)
        },
        &|_| {},
    )?
    .factory()?
    .with_min_samples(3);
    assert_ne!(other.fingerprint(), family.fingerprint());
    let mut moved = other.restore(&saved)?;
    assert!(moved.forecast(now, &[60]).is_none());
    for s in &tail[..3] {
        moved.observe(s);
    }
    assert!(moved.forecast(tail[2].at(), &[60]).is_some());

    let mut wrong = saved.clone();
    wrong.state["tracks"][0]["input"] = serde_json::json!([1.0]);
    assert!(
        family.restore(&wrong).is_err(),
        "a wrong-sized input is refused"
    );
    Ok(())
}

#[test]
fn default_model_loads_and_covers_a_daily_series() -> TestResult {
    let family = NeuralFactory::default_model()?;
    assert_eq!(family.name(), "gru");
    let trace = generate(&SynthConfig {
        patterns: vec![(Pattern::Daily, 2)],
        days: 4,
        seed: 1234,
        ..SynthConfig::default_mix()
    });
    let (mut covered, mut total) = (0usize, 0usize);
    for w in &trace.workloads {
        let mut f = family.create();
        let series = samples(w);
        for pair in series.windows(2) {
            f.observe(&pair[0]);
            let Some(fc) = f.forecast(pair[0].at(), &[300]) else {
                continue;
            };
            for r in [Resource::Cpu, Resource::Memory] {
                let q = fc.at(r, 300).ok_or("both resources forecast")?;
                let actual = pair[1].usage().get(r).ok_or("synthetic demand")?;
                assert!(q.p50() > 0.0 && q.max() < 1e6 * (actual + 1.0), "{q:?}");
                total += 1;
                covered += usize::from(actual <= q.p95());
            }
        }
    }
    let coverage = covered as f64 / total as f64;
    assert!(total > 2000, "{total} forecasts");
    assert!(
        coverage > 0.85,
        "p95 covers {coverage:.3} of next-step demand"
    );
    Ok(())
}

#[test]
fn bad_settings_are_refused_by_name() {
    let bad = TrainConfig {
        burn_in: 50,
        window: 40,
        ..TrainConfig::default()
    };
    let err = train(&[tiny_trace(1)], &bad, &|_| {}).err();
    assert!(matches!(
        err,
        Some(NnError::InvalidConfig {
            field: "burn_in",
            ..
        })
    ));
    let empty = train(&[Trace::default()], &TrainConfig::default(), &|_| {}).err();
    assert!(matches!(empty, Some(NnError::NoData(_))), "{empty:?}");
}
