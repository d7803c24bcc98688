use std::sync::Arc;

use presage_core::{Resource, ResourceMap, Sample, Timestamp, Usage, WorkloadId};
use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::{
    Ensemble, EnsembleConfig, Ewma, EwmaConfig, ForecasterFactory, HistogramModel,
    HistogramModelConfig, HoltWinters, HoltWintersConfig, MovingWindow, Periodic, PeriodicConfig,
    Residual, Segmented, SegmentedConfig, WindowConfig,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DAY: i64 = 86_400;
/// Monday 2024-01-08T00:00:00Z: when every host's last sample falls, give or take.
const END: i64 = 1_704_672_000;
/// Relative tolerance for floats that were added in a different order.
const TOL: f64 = 1e-9;

fn sample(t: i64, step_s: i64, cpu: f64, mem: f64) -> Sample {
    let usage = Usage::empty()
        .with(Resource::Cpu, cpu)
        .and_then(|u| u.with(Resource::Memory, mem))
        .expect("usage");
    let step_ms = u32::try_from(step_s * 1000).expect("step");
    let id = WorkloadId::new("w").expect("id");
    Sample::new(Timestamp::from_unix_secs(t), id, step_ms, usage).expect("sample")
}

/// Three hosts' series, all repeating with `period` s so every family (the periodic one
/// too) has something to find: a sine; a square wave whose level steps up halfway; a
/// sawtooth. Returns (cpu, memory) at `t` seconds into host `host`'s series.
fn demand(host: usize, t: i64, period: i64, len: i64) -> (f64, f64) {
    let phase = t.rem_euclid(period) as f64 / period as f64;
    match host {
        0 => {
            let s = (phase * std::f64::consts::TAU).sin();
            (1.0 + 0.5 * s, 2e9 + 5e8 * s)
        }
        1 => {
            let level = if t < len / 2 { 0.5 } else { 2.0 };
            let high = if phase < 0.3 { 1.0 } else { 0.0 };
            (level + high, 1e9 + 2e9 * high)
        }
        _ => (0.2 + 1.3 * phase, 4e9 + 1e9 * phase),
    }
}

/// A family as the tests feed it: its factory, sampling step, period and host lengths.
struct Family {
    factory: Arc<dyn ForecasterFactory>,
    step_s: i64,
    period: i64,
    /// Samples per host; different, so the choosing families have a winner to find.
    lengths: [i64; 3],
}

/// The default ensemble, as `presage_policy::registry` builds it (from this crate's API).
fn default_ensemble() -> Result<Ensemble, ForecastError> {
    let resources = [Resource::Cpu, Resource::Memory];
    let mut members: Vec<Arc<dyn ForecasterFactory>> = Vec::new();
    for window_s in [300, 900, 3_600, 14_400] {
        members.push(Arc::new(Residual::with_window(window_s, &resources)?));
    }
    members.push(Arc::new(HoltWinters::new(HoltWintersConfig::default())?));
    members.push(Arc::new(Segmented::new(SegmentedConfig::default())?));
    let mut price = ResourceMap::from_fn(|_| 0.0);
    price.set(Resource::Cpu, 4.0);
    price.set(Resource::Memory, 4.0 * 32.0 * 1024f64.powi(3));
    Ensemble::new(members, EnsembleConfig::with_price(price))
}

fn families() -> Result<Vec<Family>, ForecastError> {
    let slow = |factory: Arc<dyn ForecasterFactory>| Family {
        factory,
        step_s: 300,
        period: DAY,
        lengths: [576, 432, 720],
    };
    Ok(vec![
        slow(Arc::new(Ewma::new(EwmaConfig::default())?)),
        slow(Arc::new(Residual::with_window(
            900,
            &[Resource::Cpu, Resource::Memory],
        )?)),
        slow(Arc::new(HistogramModel::new(
            HistogramModelConfig::default(),
        )?)),
        slow(Arc::new(Segmented::new(SegmentedConfig::default())?)),
        slow(Arc::new(MovingWindow::new(WindowConfig::default())?)),
        slow(Arc::new(HoltWinters::new(HoltWintersConfig::default())?)),
        slow(Arc::new(default_ensemble()?)),
        Family {
            factory: Arc::new(Periodic::new(PeriodicConfig::default())?),
            step_s: 1,
            period: 120,
            lengths: [600, 900, 700],
        },
    ])
}

/// Host `host`'s saved state: its series ends `host` steps before [`END`], so the hosts'
/// clocks (and the histograms' reference times) differ.
fn learned(family: &Family, host: usize) -> Result<ModelState, ForecastError> {
    let mut f = family.factory.create();
    let len = family.lengths[host];
    let start = END - (host as i64 + len) * family.step_s;
    for i in 0..len {
        let (cpu, mem) = demand(host, i * family.step_s, family.period, len * family.step_s);
        f.observe(&sample(start + i * family.step_s, family.step_s, cpu, mem));
    }
    f.save()
}

fn hosts(family: &Family) -> Result<[ModelState; 3], ForecastError> {
    Ok([
        learned(family, 0)?,
        learned(family, 1)?,
        learned(family, 2)?,
    ])
}

/// The fields holding packed floats; other packed fields (times) must match exactly.
const PACKED_FLOATS: [&str; 2] = [".value", ".values"];

/// Whether two JSON values are equal, numbers (and packed floats) up to a relative
/// [`TOL`]; the path of the first difference otherwise.
fn approx_eq(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (p, q) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                if p == q || (p - q).abs() <= TOL * p.abs().max(q.abs()) {
                    return Ok(());
                }
            } else if x == y {
                return Ok(());
            }
            Err(format!("{path}: {x} != {y}"))
        }
        // Packed histograms and floats (`crate::codec`) were added in different orders too.
        (Value::String(x), Value::String(y)) if x != y => {
            let histogram = |t: &str| {
                serde_json::from_value::<DecayingHistogram>(Value::from(t))
                    .ok()
                    .and_then(|h| serde_json::to_value(h.checkpoint()).ok())
            };
            if let (Some(p), Some(q)) = (histogram(x), histogram(y)) {
                return approx_eq(&p, &q, path);
            }
            let floats = |t: &str| {
                crate::codec::decode_f64s::<Vec<f64>>(t)
                    .ok()
                    .map(Value::from)
            };
            match (floats(x), floats(y)) {
                (Some(p), Some(q)) if PACKED_FLOATS.iter().any(|f| path.ends_with(f)) => {
                    approx_eq(&p, &q, path)
                }
                _ => Err(format!("{path}: {x} != {y}")),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: {} != {} items", x.len(), y.len()));
            }
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                approx_eq(p, q, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            let (mut kx, mut ky) = (keys(x), keys(y));
            kx.sort();
            ky.sort();
            if kx != ky {
                return Err(format!("{path}: keys {kx:?} != {ky:?}"));
            }
            for (k, p) in x {
                approx_eq(p, &y[k], &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: {a} != {b}")),
    }
}

fn assert_same(a: &ModelState, b: &ModelState, what: &str) {
    assert_eq!((&a.model, a.version), (&b.model, b.version), "{what}");
    if let Err(diff) = approx_eq(&a.state, &b.state, &a.model) {
        panic!("{what}: {diff}");
    }
}

#[test]
fn approx_eq_sees_differences_beyond_the_tolerance() {
    // Packed histograms: their weights within the tolerance, their buckets exactly.
    let layout = crate::resource_layout(Resource::Cpu, 0.05).expect("layout");
    let packed = |weights: &[(usize, f64)]| -> Value {
        let mut h = DecayingHistogram::new(layout, 3600.0).expect("histogram");
        for &(bucket, w) in weights {
            h.add(layout.start(bucket), w, Timestamp::from_unix_secs(END));
        }
        serde_json::to_value(&h).expect("packed")
    };
    let a = serde_json::json!({"h": packed(&[(3, 1.0), (9, 2.0)])});
    let close = serde_json::json!({"h": packed(&[(3, 1.0), (9, 2.0 * (1.0 + 1e-12))])});
    assert!(approx_eq(&a, &close, "").is_ok());
    for far in [
        packed(&[(3, 1.0), (9, 2.0 * (1.0 + 1e-6))]),
        packed(&[(3, 1.0), (10, 2.0)]),
        packed(&[(3, 1.0)]),
    ] {
        assert!(approx_eq(&a, &serde_json::json!({"h": far}), "").is_err());
    }
    // Packed floats only where floats are packed.
    let floats = |v: &[f64]| -> Value {
        use base64::Engine;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    let nearly = [1.0, 2.0 * (1.0 + 1e-12)];
    let values = |v: &[f64]| serde_json::json!({"values": floats(v)});
    assert!(approx_eq(&values(&[1.0, 2.0]), &values(&nearly), "").is_ok());
    let at_ms = |v: &[f64]| serde_json::json!({"at_ms": floats(v)});
    assert!(approx_eq(&at_ms(&[1.0, 2.0]), &at_ms(&nearly), "").is_err());

    let a = serde_json::json!({"w": [1.0, 2.0], "n": 3, "s": "x"});
    assert!(approx_eq(&a, &a.clone(), "").is_ok());
    let close = serde_json::json!({"w": [1.0, 2.0 * (1.0 + 1e-12)], "n": 3, "s": "x"});
    assert!(approx_eq(&a, &close, "").is_ok());
    for far in [
        serde_json::json!({"w": [1.0, 2.0 * (1.0 + 1e-6)], "n": 3, "s": "x"}),
        serde_json::json!({"w": [1.0, 2.0], "n": 4, "s": "x"}),
        serde_json::json!({"w": [1.0], "n": 3, "s": "x"}),
        serde_json::json!({"w": [1.0, 2.0], "n": 3}),
    ] {
        assert!(approx_eq(&a, &far, "").is_err(), "{far}");
    }
}

#[test]
fn merge_is_associative_and_commutative_for_every_family() -> TestResult {
    for family in families()? {
        let [a, b, c] = hosts(&family)?;
        let name = family.factory.name();
        assert_same(&merge_states(&a, &b)?, &merge_states(&b, &a)?, name);
        let left = merge_states(&merge_states(&a, &b)?, &c)?;
        let right = merge_states(&a, &merge_states(&b, &c)?)?;
        assert_same(&left, &right, name);
        let other = merge_states(&merge_states(&c, &a)?, &b)?;
        assert_same(&left, &other, name);
    }
    Ok(())
}

#[test]
fn merged_and_decayed_states_restore_and_forecast() -> TestResult {
    let now = Timestamp::from_unix_secs(END);
    for family in families()? {
        let [a, b, c] = hosts(&family)?;
        let merged = merge_states(&merge_states(&a, &b)?, &c)?;
        let name = family.factory.name();
        for (what, state) in [
            ("merged", merged.clone()),
            ("decayed", decay_state(&merged, 0.3)?),
            ("decayed host", decay_state(&a, 0.5)?),
            ("decayed to almost nothing", decay_state(&merged, 1e-6)?),
        ] {
            let restored = family.factory.restore(&state)?;
            let forecast = restored.forecast(now, &[60, 3600]);
            assert!(forecast.is_some(), "{name}: {what} state does not forecast");
        }
    }
    Ok(())
}

#[test]
fn the_state_with_more_observations_is_chosen() -> TestResult {
    for family in families()? {
        let name = family.factory.name();
        if !matches!(name, "ewma" | "holt-winters") {
            continue;
        }
        // Host 2 saw the most samples.
        let [a, b, c] = hosts(&family)?;
        assert_eq!(merge_states(&a, &c)?, c, "{name}");
        assert_eq!(merge_states(&c, &b)?, c, "{name}");
        assert_eq!(merge_states(&a, &b)?, a, "{name}");
    }
    Ok(())
}

/// The histogram at `path` (keys) of a saved state.
fn histogram(
    state: &ModelState,
    path: &[&str],
) -> Result<DecayingHistogram, Box<dyn std::error::Error>> {
    let mut v = &state.state;
    for key in path {
        v = v.get(key).ok_or_else(|| format!("no {key} in {path:?}"))?;
    }
    Ok(serde_json::from_value(v.clone())?)
}

fn count(state: &ModelState, path: &[&str]) -> Result<u64, Box<dyn std::error::Error>> {
    let mut v = &state.state;
    for key in path {
        v = v.get(key).ok_or_else(|| format!("no {key} in {path:?}"))?;
    }
    Ok(v.as_u64().ok_or("not a count")?)
}

fn close(x: f64, y: f64) -> bool {
    (x - y).abs() <= TOL * x.abs().max(y.abs())
}

/// Each bucket's weight as of `at` (weights are stored relative to a reference time).
fn bucket_weights(h: &DecayingHistogram, at: Timestamp) -> Vec<f64> {
    let scale = h.total_weight(at) / h.weights().iter().sum::<f64>().max(f64::MIN_POSITIVE);
    h.weights().iter().map(|w| w * scale).collect()
}

#[test]
fn histogram_weights_and_counts_add_and_decay_scales_them() -> TestResult {
    let at = Timestamp::from_unix_secs(END);
    for family in families()? {
        let paths: Vec<(Vec<&str>, Vec<&str>)> = match family.factory.name() {
            "decaying-histogram" => vec![
                (
                    vec!["tracks", "cpu", "histogram"],
                    vec!["tracks", "cpu", "samples"],
                ),
                (
                    vec!["tracks", "memory", "histogram"],
                    vec!["tracks", "memory", "samples"],
                ),
            ],
            "segmented" => vec![
                (
                    vec!["profiles", "cpu", "overall"],
                    vec!["profiles", "cpu", "samples"],
                ),
                (
                    vec!["profiles", "memory", "overall"],
                    vec!["profiles", "memory", "samples"],
                ),
            ],
            _ => continue,
        };
        let [a, b, c] = hosts(&family)?;
        let merged = merge_states(&merge_states(&a, &b)?, &c)?;
        let factor = 0.25;
        let decayed = decay_state(&merged, factor)?;
        for (h, n) in &paths {
            let inputs = [&a, &b, &c].map(|s| histogram(s, h));
            let (merged_h, decayed_h) = (histogram(&merged, h)?, histogram(&decayed, h)?);
            let sum: f64 = inputs.iter().flatten().map(|i| i.total_weight(at)).sum();
            assert!(
                close(merged_h.total_weight(at), sum),
                "{h:?}: {} != {sum}",
                merged_h.total_weight(at)
            );
            let mut expected = vec![0.0; merged_h.weights().len()];
            for input in inputs.iter().flatten() {
                for (e, w) in expected.iter_mut().zip(bucket_weights(input, at)) {
                    *e += w;
                }
            }
            for (i, (m, e)) in bucket_weights(&merged_h, at)
                .iter()
                .zip(&expected)
                .enumerate()
            {
                assert!((m - e).abs() <= 1e-9 * sum, "{h:?} bucket {i}: {m} != {e}");
            }
            let scaled = factor * merged_h.total_weight(at);
            assert!(close(decayed_h.total_weight(at), scaled), "{h:?} decayed");
            assert_eq!(
                decayed_h.percentiles([0.5, 0.9]),
                merged_h.percentiles([0.5, 0.9])
            );

            let counts = [&a, &b, &c].map(|s| count(s, n));
            let total: u64 = counts.iter().flatten().sum();
            assert_eq!(count(&merged, n)?, total, "{n:?}");
            let expected = (total as f64 * factor).round() as u64;
            assert_eq!(count(&decayed, n)?, expected, "{n:?} decayed");
        }
    }
    Ok(())
}

#[test]
fn merging_different_families_or_versions_fails_naming_both() -> TestResult {
    let all = families()?;
    let ewma = learned(&all[0], 0)?;
    let segmented = learned(&all[3], 0)?;
    let err = merge_states(&ewma, &segmented)
        .err()
        .ok_or("merged two families")?;
    assert!(
        matches!(err, ForecastError::Unmergeable { field: "model", .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("ewma") && text.contains("segmented"),
        "{text}"
    );
    let newer = ModelState {
        version: ewma.version + 1,
        ..ewma.clone()
    };
    let err = merge_states(&ewma, &newer)
        .err()
        .ok_or("merged two versions")?;
    assert!(
        err.to_string().contains("v1") && err.to_string().contains("v2"),
        "{err}"
    );
    let alien = ModelState {
        model: "neural".into(),
        ..ewma.clone()
    };
    assert!(matches!(
        merge_states(&alien, &alien),
        Err(ForecastError::UnknownModel { .. })
    ));
    assert!(matches!(
        decay_state(&alien, 0.5),
        Err(ForecastError::UnknownModel { .. })
    ));
    Ok(())
}

/// A family fed every 5 minutes for about a day per host.
fn daily(factory: Arc<dyn ForecasterFactory>) -> Family {
    Family {
        factory,
        step_s: 300,
        period: DAY,
        lengths: [300, 200, 250],
    }
}

#[test]
fn residual_states_of_different_windows_do_not_merge() -> TestResult {
    let resources = [Resource::Cpu, Resource::Memory];
    let fifteen = learned(&daily(Arc::new(Residual::with_window(900, &resources)?)), 0)?;
    let five = learned(&daily(Arc::new(Residual::with_window(300, &resources)?)), 1)?;
    let err = merge_states(&fifteen, &five)
        .err()
        .ok_or("merged two windows")?;
    let text = err.to_string();
    assert!(
        text.contains("residual-15m") && text.contains("residual-5m"),
        "{text}"
    );
    Ok(())
}

#[test]
fn ensemble_member_lists_may_extend_each_other_but_not_disagree() -> TestResult {
    let mut price = ResourceMap::from_fn(|_| 0.0);
    price.set(Resource::Cpu, 4.0);
    let ensemble = |extra: Option<Arc<dyn ForecasterFactory>>| -> Result<Ensemble, ForecastError> {
        let resources = [Resource::Cpu, Resource::Memory];
        let mut members: Vec<Arc<dyn ForecasterFactory>> = vec![
            Arc::new(Residual::with_window(300, &resources)?),
            Arc::new(Residual::with_window(900, &resources)?),
        ];
        members.extend(extra);
        Ensemble::new(members, EnsembleConfig::with_price(price))
    };
    let extended = ensemble(Some(Arc::new(Ewma::new(EwmaConfig::default())?)))?;
    let base = learned(&daily(Arc::new(ensemble(None)?)), 0)?;
    let newer = learned(&daily(Arc::new(extended.clone())), 1)?;

    let merged = merge_states(&base, &newer)?;
    assert_same(&merged, &merge_states(&newer, &base)?, "extended ensemble");
    let members = merged.state["members"].as_array().map_or(0, Vec::len);
    assert_eq!(members, 3, "the appended member is kept");
    let restored = extended.restore(&merged)?;
    assert!(
        restored
            .forecast(Timestamp::from_unix_secs(END), &[300])
            .is_some()
    );

    let histogram = HistogramModel::new(HistogramModelConfig::default())?;
    let diverging = learned(&daily(Arc::new(ensemble(Some(Arc::new(histogram)))?)), 2)?;
    let err = merge_states(&newer, &diverging)
        .err()
        .ok_or("merged diverging members")?;
    assert!(
        matches!(
            err,
            ForecastError::Unmergeable {
                field: "members",
                ..
            }
        ),
        "{err}"
    );
    Ok(())
}

#[test]
fn decay_by_one_changes_nothing_and_bad_factors_are_refused() -> TestResult {
    for family in families()? {
        let [a, ..] = hosts(&family)?;
        assert_same(&decay_state(&a, 1.0)?, &a, family.factory.name());
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            assert!(decay_state(&a, bad).is_err(), "factor {bad}");
        }
    }
    Ok(())
}

#[test]
fn a_tiny_decay_keeps_the_histogram_and_its_percentiles() -> TestResult {
    let layout = crate::resource_layout(Resource::Cpu, 0.05)?;
    let mut h = DecayingHistogram::new(layout, 3600.0)?;
    for i in 0..100 {
        h.add(
            f64::from(i % 10) * 0.1,
            1.0,
            Timestamp::from_unix_secs(60 * i64::from(i)),
        );
    }
    let at = Timestamp::from_unix_secs(6000);
    // The smallest subnormal too: its weights would underflow if scaled directly.
    for factor in [0.5, 1e-3, 1e-12, f64::MIN_POSITIVE, 5e-324] {
        let s = scaled_histogram(&h, factor)?;
        assert!(!s.is_empty(), "factor {factor}");
        assert_eq!(
            s.percentiles([0.1, 0.5, 0.99]),
            h.percentiles([0.1, 0.5, 0.99])
        );
        // A subnormal product has lost the precision `close` asks for.
        if factor >= f64::MIN_POSITIVE {
            assert!(
                close(s.total_weight(at), factor * h.total_weight(at)),
                "factor {factor}"
            );
        }
    }
    Ok(())
}

#[test]
fn scaled_counts_round_and_keep_what_the_model_needs() {
    assert_eq!(scaled_count(100u32, 0.25, 3), 25);
    assert_eq!(scaled_count(10u32, 0.25, 3), 3, "kept at min_samples");
    assert_eq!(scaled_count(2u32, 0.25, 3), 2, "not raised above itself");
    assert_eq!(scaled_count(7u64, 0.5, 0), 4, "rounded");
    assert_eq!(scaled_count(u32::MAX, 1.0, 0), u32::MAX);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Histogram states of random hosts: any grouping and order merges alike.
    #[test]
    fn histogram_merges_are_associative(
        levels in prop::array::uniform3(0.01f64..50.0),
        lengths in prop::array::uniform3(5i64..400),
        offsets in prop::array::uniform3(0i64..2_000),
    ) {
        let model = HistogramModel::new(HistogramModelConfig::default()).expect("model");
        let states: Vec<ModelState> = (0..3)
            .map(|h| {
                let mut f = model.create();
                for i in 0..lengths[h] {
                    let t = END - (offsets[h] + lengths[h] - i) * 300;
                    let (cpu, mem) = demand(h, i * 300, DAY, lengths[h] * 300);
                    f.observe(&sample(t, 300, cpu * levels[h], mem));
                }
                f.save().expect("save")
            })
            .collect();
        let (a, b, c) = (&states[0], &states[1], &states[2]);
        let left = merge_states(&merge_states(a, b).expect("ab"), c).expect("ab c");
        let right = merge_states(a, &merge_states(c, b).expect("cb")).expect("a cb");
        prop_assert!(approx_eq(&left.state, &right.state, "").is_ok(), "{:?}", approx_eq(&left.state, &right.state, ""));
    }
}
