//! Profiles saved before the compact state layouts (numeric arrays as JSON arrays) still
//! restore, forecast as they did, merge with new ones and decay.
//!
//! `fixtures/states_before_compact.json` was written by the code of commit b4d0a6b (the
//! last with the old layouts): per family, the state after [`SAMPLES`] samples of
//! [`sample`] and the forecast it then made at [`HORIZONS`] from the last sample.

use std::sync::Arc;

use presage_core::{Forecast, Resource, ResourceMap, Sample, Timestamp, Usage, WorkloadId};
use presage_forecast::{
    Ensemble, EnsembleConfig, ForecastError, ForecasterFactory, HistogramModel,
    HistogramModelConfig, HoltWinters, HoltWintersConfig, ModelState, MovingWindow, Periodic,
    PeriodicConfig, Residual, Segmented, SegmentedConfig, WindowConfig, decay_state, merge_states,
};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const FIXTURE: &str = include_str!("fixtures/states_before_compact.json");
const T0: i64 = 1_700_000_000;
const SAMPLES: i64 = 240;
const HORIZONS: [u32; 4] = [1, 10, 60, 300];

/// The fixture's feed: a 30-s sine with a little deterministic noise, every second.
fn sample(t: i64) -> Sample {
    let mut x = (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let noise = (x % 1000) as f64 / 1000.0 - 0.5;
    let phase = (t as f64 * std::f64::consts::TAU / 30.0).sin();
    let usage = Usage::empty()
        .with(Resource::Cpu, 0.3 + 0.2 * phase + 0.02 * noise)
        .and_then(|u| u.with(Resource::Memory, 2.0e8 + 1.0e8 * phase + 1.0e6 * noise))
        .expect("usage");
    let id = WorkloadId::new("w").expect("id");
    Sample::new(Timestamp::from_unix_secs(T0 + t), id, 1000, usage).expect("sample")
}

/// A family by its key in the fixture.
type Family = (&'static str, Arc<dyn ForecasterFactory>);

/// The families of the fixture, with the settings they were saved with.
fn families() -> Result<Vec<Family>, ForecastError> {
    let res = [Resource::Cpu, Resource::Memory];
    let mut price = ResourceMap::from_fn(|_| 0.0);
    price.set(Resource::Cpu, 4.0);
    price.set(Resource::Memory, 4.0 * 32.0 * 1024f64.powi(3));
    let periodic = || Periodic::new(PeriodicConfig::default());
    Ok(vec![
        ("residual-5m", Arc::new(Residual::with_window(300, &res)?)),
        (
            "holt-winters",
            Arc::new(HoltWinters::new(HoltWintersConfig::default())?),
        ),
        (
            "segmented",
            Arc::new(Segmented::new(SegmentedConfig::default())?),
        ),
        (
            "decaying-histogram",
            Arc::new(HistogramModel::new(HistogramModelConfig::default())?),
        ),
        (
            "moving-window",
            Arc::new(MovingWindow::new(WindowConfig::default())?),
        ),
        ("periodic", Arc::new(periodic()?)),
        (
            "ensemble",
            Arc::new(Ensemble::new(
                vec![
                    Arc::new(Residual::with_window(300, &res)?),
                    Arc::new(periodic()?),
                ],
                EnsembleConfig::with_price(price),
            )?),
        ),
    ])
}

/// The old state and the forecast it made, of family `key`.
fn legacy(key: &str) -> Result<(ModelState, Forecast), Box<dyn std::error::Error>> {
    let fixture: Value = serde_json::from_str(FIXTURE)?;
    let entry = fixture
        .get(key)
        .ok_or_else(|| format!("no {key} in fixture"))?;
    Ok((
        serde_json::from_value(entry["state"].clone())?,
        serde_json::from_value(entry["forecast"].clone())?,
    ))
}

fn now() -> Timestamp {
    Timestamp::from_unix_secs(T0 + SAMPLES - 1)
}

fn forecast(
    factory: &dyn ForecasterFactory,
    state: &ModelState,
) -> Result<Option<Forecast>, ForecastError> {
    Ok(factory.restore(state)?.forecast(now(), &HORIZONS))
}

#[test]
fn old_states_restore_and_forecast_exactly_as_before() -> TestResult {
    for (key, factory) in families()? {
        let (old, expected) = legacy(key)?;
        let restored = factory.restore(&old)?;
        assert_eq!(
            restored.forecast(now(), &HORIZONS).as_ref(),
            Some(&expected),
            "{key}"
        );
        // Saved again, it is in the new layout, smaller, and forecasts the same.
        let new = restored.save()?;
        let (old_len, new_len) = (
            serde_json::to_string(&old)?.len(),
            serde_json::to_string(&new)?.len(),
        );
        assert!(new_len < old_len, "{key}: {new_len} ≥ {old_len} bytes");
        let text = serde_json::to_string(&new)?;
        let back: ModelState = serde_json::from_str(&text)?;
        assert_eq!(
            forecast(&*factory, &back)?.as_ref(),
            Some(&expected),
            "{key}"
        );
        // The same model fed afresh saves exactly that state.
        let mut fresh = factory.create();
        for t in 0..SAMPLES {
            fresh.observe(&sample(t));
        }
        assert_eq!(fresh.save()?, back, "{key}");
    }
    Ok(())
}

#[test]
fn every_changed_family_bumped_its_version() -> TestResult {
    for (key, factory) in families()? {
        let (old, _) = legacy(key)?;
        let new = factory.restore(&old)?.save()?;
        if key == "ensemble" {
            // Its own layout is unchanged; its members carry their versions.
            assert_eq!(new.version, old.version);
            let versions = |s: &ModelState| -> Vec<Option<u64>> {
                s.state["members"]
                    .as_array()
                    .map(|m| m.iter().map(|x| x["version"].as_u64()).collect())
                    .unwrap_or_default()
            };
            assert_eq!(versions(&old), [Some(1), Some(1)]);
            assert_eq!(versions(&new), [Some(2), Some(2)]);
        } else {
            assert_eq!((old.version, new.version), (1, 2), "{key}");
        }
    }
    Ok(())
}

#[test]
fn old_and_new_states_merge_and_decay() -> TestResult {
    for (key, factory) in families()? {
        let (old, _) = legacy(key)?;
        // A host that saw more since, in the new layout.
        let mut f = factory.create();
        for t in 0..SAMPLES + 60 {
            f.observe(&sample(t));
        }
        let new = f.save()?;
        let merged = merge_states(&old, &new)?;
        assert_eq!(merged, merge_states(&new, &old)?, "{key}");
        assert_eq!(
            merged.version, new.version,
            "{key}: merged in the new layout"
        );
        assert!(
            factory
                .restore(&merged)?
                .forecast(now(), &HORIZONS)
                .is_some()
        );
        // Old with old: the result is in the new layout too.
        let both_old = merge_states(&old, &old)?;
        assert_eq!(both_old.version, new.version, "{key}");
        factory.restore(&both_old)?;
        let decayed = decay_state(&old, 0.5)?;
        assert_eq!(decayed.version, new.version, "{key}");
        assert!(
            factory
                .restore(&decayed)?
                .forecast(now(), &HORIZONS)
                .is_some()
        );
    }
    Ok(())
}

#[test]
fn a_corrupt_packed_field_is_named_in_the_error() -> TestResult {
    let periodic = Periodic::new(PeriodicConfig::default())?;
    let mut f = periodic.create();
    for t in 0..SAMPLES {
        f.observe(&sample(t));
    }
    let mut state = f.save()?;
    state.state["series"]["cpu"]["value"] = Value::from("AAAA");
    let err = periodic.restore(&state).err().ok_or("restored")?;
    let text = err.to_string();
    assert!(matches!(err, ForecastError::Malformed { .. }), "{text}");
    assert!(
        text.contains("\"periodic\"") && text.contains("series.cpu.value"),
        "{text}"
    );
    assert!(text.contains("8-byte values"), "{text}");

    let newer = ModelState {
        version: 3,
        ..f.save()?
    };
    assert!(matches!(
        periodic.restore(&newer),
        Err(ForecastError::UnsupportedVersion {
            found: 3,
            supported: 2,
            ..
        })
    ));
    Ok(())
}

#[test]
fn an_ensemble_member_that_is_not_a_saved_state_is_named() -> TestResult {
    let (key, factory) = families()?
        .into_iter()
        .find(|(key, _)| *key == "ensemble")
        .ok_or("no ensemble")?;
    let (old, _) = legacy(key)?;
    let mut broken = factory.restore(&old)?.save()?;
    broken.state["members"][1]
        .as_object_mut()
        .ok_or("member is not an object")?
        .remove("version");
    let text = factory
        .restore(&broken)
        .err()
        .ok_or("restored")?
        .to_string();
    assert!(
        text.contains("\"ensemble\"") && text.contains("members[1]"),
        "{text}"
    );
    // A member's own malformed field is named by that member's family.
    let mut broken = factory.restore(&old)?.save()?;
    broken.state["members"][1]["state"]["series"]["memory"]["at_ms"] = Value::from("gA==");
    let text = factory
        .restore(&broken)
        .err()
        .ok_or("restored")?
        .to_string();
    assert!(
        text.contains("\"periodic\"") && text.contains("series.memory.at_ms"),
        "{text}"
    );
    Ok(())
}
