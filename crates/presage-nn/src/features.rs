//! The per-step input of the network, computed the same way in training and inference.
//!
//! Training walks each recorded series through a [`SeriesFeatures`] exactly as the online
//! forecaster walks live samples through it, so the two can only disagree if the network
//! does; the feature names are written into every model's header and checked at load.

use std::f64::consts::TAU;

use presage_core::{Resource, Timestamp};
use serde::{Deserialize, Serialize};

/// The resources the model forecasts, in the order of their one-hot input.
pub const MODEL_RESOURCES: [Resource; 2] = [Resource::Cpu, Resource::Memory];

/// Normalised values (demand ÷ scale) are clipped to this, so a workload waking from idle
/// cannot blow the loss up.
pub(crate) const CLIP: f32 = 20.0;

/// Width of a slot of the daily memory, in seconds (Bitbrains' and the synthetic traces'
/// step; faster sampling keeps the latest sample of each slot).
const SLOT_S: i64 = 300;
const SLOTS: usize = (86_400 / SLOT_S) as usize;
/// A remembered value stands for "the same time yesterday" if it was recorded within this
/// many seconds of exactly one day before the target time.
const LAG_TOLERANCE_S: i64 = 1_800;

/// Inputs before the per-horizon lags.
const BASE_FEATURES: [&str; 9] = [
    "demand/scale",
    "ln(scale/ref)/5",
    "sin(day)",
    "cos(day)",
    "sin(week)",
    "cos(week)",
    "ln(dt/300s)/3",
    "is_cpu",
    "is_memory",
];

/// The names of the inputs for a model with `horizon_steps` heads: the layout this build
/// computes, compared with a model's header at load.
pub fn feature_names(horizon_steps: &[u32]) -> Vec<String> {
    let mut names: Vec<String> = BASE_FEATURES.iter().map(|s| (*s).to_owned()).collect();
    for k in horizon_steps {
        names.push(format!("lag1d(+{k})/scale"));
    }
    names.push("lag1d_known".to_owned());
    names
}

/// How many inputs a model with `horizons` heads takes.
pub(crate) fn feature_count(horizons: usize) -> usize {
    BASE_FEATURES.len() + horizons + 1
}

/// The smallest scale per resource: below it a workload counts as idle, and its
/// normalised demand stays finite.
fn scale_floor(resource: Resource) -> f64 {
    match resource {
        Resource::Cpu => 1e-3,
        Resource::Memory => 1024.0 * 1024.0,
        _ => 1.0,
    }
}

/// The reference size per resource for the log-scale workload feature.
fn scale_reference(resource: Resource) -> f64 {
    match resource {
        Resource::Cpu => 1.0,
        Resource::Memory => 1024.0 * 1024.0 * 1024.0,
        _ => 1024.0 * 1024.0,
    }
}

/// Demand at each 5-minute slot of the last day: the "same time yesterday" lag, kept in
/// O(1) space and time whatever the sampling rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DailyMemory {
    values: Vec<f32>,
    /// Minutes since the epoch at which each slot was written; 0 = never.
    minutes: Vec<u32>,
}

impl DailyMemory {
    fn new() -> Self {
        DailyMemory {
            values: vec![0.0; SLOTS],
            minutes: vec![0; SLOTS],
        }
    }

    fn slot(at_s: i64) -> usize {
        (at_s.rem_euclid(86_400) / SLOT_S) as usize
    }

    fn record(&mut self, at_s: i64, value: f64) {
        let i = Self::slot(at_s);
        self.values[i] = value as f32;
        self.minutes[i] = u32::try_from((at_s / 60).max(1)).unwrap_or(u32::MAX);
    }

    /// The value recorded about one day before `target_s`, if there is one.
    fn yesterday(&self, target_s: i64) -> Option<f64> {
        let i = Self::slot(target_s);
        let written = i64::from(*self.minutes.get(i)?);
        if written == 0 {
            return None;
        }
        let want = target_s - 86_400;
        ((written * 60 - want).abs() <= LAG_TOLERANCE_S).then(|| f64::from(self.values[i]))
    }

    fn is_well_formed(&self) -> bool {
        self.values.len() == SLOTS
            && self.minutes.len() == SLOTS
            && self.values.iter().all(|v| v.is_finite() && *v >= 0.0)
    }
}

/// The running feature state of one resource of one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SeriesFeatures {
    resource: Resource,
    scale: f64,
    last_at_ms: Option<i64>,
    /// The typical step, in seconds: the last step that was not a gap.
    step_s: f64,
    daily: DailyMemory,
}

impl SeriesFeatures {
    pub(crate) fn new(resource: Resource) -> Self {
        SeriesFeatures {
            resource,
            scale: 0.0,
            last_at_ms: None,
            step_s: 0.0,
            daily: DailyMemory::new(),
        }
    }

    /// The scale (decayed maximum of the demand) after the last observation.
    pub(crate) fn scale(&self) -> f64 {
        self.scale
    }

    /// The typical step between samples, in seconds.
    pub(crate) fn step_s(&self) -> f64 {
        self.step_s
    }

    /// Demand divided by the current scale, clipped: the network's target unit.
    pub(crate) fn normalise(&self, demand: f64) -> f32 {
        ((demand / self.scale) as f32).clamp(0.0, CLIP)
    }

    /// Whether a restored state is usable (not hand-edited into NaNs or wrong sizes).
    pub(crate) fn is_well_formed(&self) -> bool {
        self.scale.is_finite()
            && self.scale >= 0.0
            && self.step_s.is_finite()
            && self.step_s >= 0.0
            && self.daily.is_well_formed()
    }

    /// Takes in the demand over the `interval_s` seconds ending at `at` and writes the
    /// network's input for this step into `out` (length [`feature_count`]).
    pub(crate) fn observe(
        &mut self,
        at: Timestamp,
        interval_s: f64,
        demand: f64,
        half_life_s: f64,
        horizon_steps: &[u32],
        out: &mut [f32],
    ) {
        let at_ms = at.unix_ms();
        let interval_s = if interval_s.is_finite() && interval_s > 0.0 {
            interval_s
        } else {
            SLOT_S as f64
        };
        let elapsed_s = self
            .last_at_ms
            .map_or(interval_s, |t| ((at_ms - t) as f64 / 1000.0).max(0.0));
        // A gap says nothing about the sampling rate, so the typical step ignores it.
        if self.step_s <= 0.0 {
            self.step_s = interval_s;
        } else if elapsed_s > 0.0 && elapsed_s <= 3.0 * self.step_s {
            self.step_s = elapsed_s;
        }
        self.last_at_ms = Some(at_ms);
        let decayed = self.scale * (-elapsed_s / half_life_s).exp2();
        self.scale = demand.max(decayed).max(scale_floor(self.resource));

        let sod = f64::from(at.second_of_day()) / 86_400.0;
        let week = (f64::from(at.day_of_week()) + sod) / 7.0;
        let x = self.normalise(demand);
        let base = [
            x,
            ((self.scale / scale_reference(self.resource)).ln() / 5.0).clamp(-3.0, 3.0) as f32,
            (TAU * sod).sin() as f32,
            (TAU * sod).cos() as f32,
            (TAU * week).sin() as f32,
            (TAU * week).cos() as f32,
            ((elapsed_s.max(1.0) / 300.0).ln() / 3.0).clamp(-2.0, 2.0) as f32,
            f32::from(u8::from(self.resource == Resource::Cpu)),
            f32::from(u8::from(self.resource == Resource::Memory)),
        ];
        out[..base.len()].copy_from_slice(&base);
        let at_s = at_ms.div_euclid(1000);
        let mut known = 0.0;
        for (i, k) in horizon_steps.iter().enumerate() {
            let target_s = at_s + (f64::from(*k) * self.step_s).round() as i64;
            // Without a yesterday, "as now" is the neutral guess.
            out[base.len() + i] = match self.daily.yesterday(target_s) {
                Some(v) => {
                    if i == 0 {
                        known = 1.0;
                    }
                    self.normalise(v)
                }
                None => x,
            };
        }
        out[base.len() + horizon_steps.len()] = known;
        self.daily.record(at_s, demand);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HORIZONS: [u32; 3] = [1, 3, 12];

    fn run(series: &[(i64, f64)]) -> (SeriesFeatures, Vec<Vec<f32>>) {
        let mut f = SeriesFeatures::new(Resource::Cpu);
        let mut rows = Vec::new();
        for (t, y) in series {
            let mut out = vec![0.0; feature_count(HORIZONS.len())];
            f.observe(
                Timestamp::from_unix_secs(*t),
                300.0,
                *y,
                86_400.0,
                &HORIZONS,
                &mut out,
            );
            rows.push(out);
        }
        (f, rows)
    }

    #[test]
    fn scale_is_a_decaying_max_and_normalises_demand() {
        let (f, rows) = run(&[(300, 2.0), (600, 1.0), (86_700, 0.5)]);
        assert_eq!(rows[0][0], 1.0);
        assert!((rows[1][0] - 0.5).abs() < 1e-2, "{}", rows[1][0]);
        // One half-life later the scale has halved from ~2 to ~1.
        assert!((f.scale() - 1.0).abs() < 0.01, "{}", f.scale());
        assert!((f.normalise(3.0) - 3.0).abs() < 0.05);
        assert_eq!(f.normalise(1e9), CLIP);
    }

    #[test]
    fn yesterday_lag_appears_after_one_day_and_gaps_keep_the_step() {
        let series: Vec<(i64, f64)> = (1..=300).map(|i| (i * 300, 1.0 + i as f64)).collect();
        let (f, rows) = run(&series);
        let names = feature_names(&HORIZONS);
        assert_eq!(names.len(), rows[0].len());
        let known = names.len() - 1;
        assert_eq!(rows[100][known], 0.0, "no lag before a day has passed");
        // Row 287 is at t = 86 400 s: its +1 lag targets 86 700 s, whose yesterday is the
        // first sample (demand 2); the row's own demand is 289 and is its scale.
        let row = &rows[287];
        assert_eq!(row[known], 1.0);
        let ratio = row[BASE_FEATURES.len()] / row[0];
        assert!((ratio - 2.0 / 289.0).abs() < 1e-5, "lag ratio {ratio}");
        // The +12 lag (one hour on) targets yesterday's 12th sample (demand 13).
        let ratio12 = row[BASE_FEATURES.len() + 2] / row[0];
        assert!((ratio12 - 13.0 / 289.0).abs() < 1e-5, "lag ratio {ratio12}");
        let mut g = f.clone();
        let mut out = vec![0.0; names.len()];
        g.observe(
            Timestamp::from_unix_secs(300 * 400),
            300.0,
            1.0,
            86_400.0,
            &HORIZONS,
            &mut out,
        );
        assert_eq!(g.step_s(), 300.0, "a gap is not a new sampling rate");
        let gap = (100.0f32.ln() / 3.0 - out[6]).abs();
        assert!(gap < 1e-5, "but the step feature shows the gap: {}", out[6]);
    }
}
