//! `moving-window`: the exact quantiles of the demand seen in the last
//! [`WindowConfig::window_s`] seconds (by sample timestamps), with `max` the window's
//! maximum. Like the histogram model it forecasts the same distribution at every horizon;
//! unlike it, it forgets abruptly, so it follows level shifts within one window.
//!
//! **Bounded and cheap.** Per resource the window is a ring buffer of `(time, value)` in
//! arrival order (for expiry) beside the same values kept sorted (for quantiles). An
//! observation inserts into and expires from the sorted vector by binary search and a
//! shift, O(log n + n) with a tiny constant; a forecast reads ten order statistics, O(1).
//! The buffer holds at most [`WindowConfig::max_points`] samples (default 1024: an hour at
//! 3.5 s sampling, so every trace presage reads and a 5 s agent fit; at 1 s sampling the
//! window shortens to the last 1024 samples, about 17 minutes), so the worst-case shift is
//! 8 KiB.
//!
//! **Quantile definition.** Nearest rank: the `q`-quantile of `n` values is the
//! `⌈q·n⌉`-th smallest (the smallest for `q·n ≤ 1`), so every forecast value is one the
//! workload actually showed and p100 is the maximum. Samples count equally regardless of
//! their interval: in a window of an hour, irregular sampling moves the ranks little and
//! exact order statistics are worth more than time weights here.

use std::borrow::Cow;
use std::collections::VecDeque;

use presage_core::{Forecast, QUANTILE_LEVELS, Resource, ResourceMap, Sample, Timestamp};
use serde::{Deserialize, Serialize};

use super::histogram_model::{assemble, ordered};
use crate::burst::{BurstClassifiers, BurstConfig};
use crate::demand::observed_demand;
use crate::{ForecastError, Forecaster, ForecasterFactory, ModelState, StateView};

pub(crate) const NAME: &str = "moving-window";
/// Version 2 packs the windows and the burst histograms (`crate::codec`); version 1 wrote
/// them as JSON arrays and objects and is still read.
const STATE_VERSION: u32 = 2;
const OLDEST_VERSION: u32 = 1;

/// Settings of the [`MovingWindow`] model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowConfig {
    /// Length of the window, in seconds (1 h).
    pub window_s: f64,
    /// Most samples the window holds per resource (1024); older ones drop out first.
    pub max_points: usize,
    /// Samples in the window before a resource is forecast (1).
    pub min_samples: usize,
    /// The burst classifier's settings.
    pub burst: BurstConfig,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            window_s: 3_600.0,
            max_points: 1024,
            min_samples: 1,
            burst: BurstConfig::default(),
        }
    }
}

impl WindowConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ForecastError> {
        self.burst.validate()?;
        if !(self.window_s.is_finite() && self.window_s >= 0.001) {
            return Err(ForecastError::InvalidSetting {
                field: "window_s",
                value: self.window_s.to_string(),
                reason: "must be a positive number of seconds (at least 1 ms)",
            });
        }
        if !(1..=1 << 20).contains(&self.max_points) {
            return Err(ForecastError::InvalidSetting {
                field: "max_points",
                value: self.max_points.to_string(),
                reason: "must be between 1 and 2^20",
            });
        }
        Ok(())
    }
}

/// The moving-window model family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MovingWindow {
    config: WindowConfig,
}

impl MovingWindow {
    /// The family with `config`, once validated.
    pub fn new(config: WindowConfig) -> Result<Self, ForecastError> {
        config.validate()?;
        Ok(MovingWindow { config })
    }
}

/// One resource's window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct Window {
    /// `(unix ms, value)` in arrival order. Packed: up to `max_points` (1024) of them.
    #[serde(with = "crate::codec::timed")]
    ring: VecDeque<(i64, f64)>,
    /// The same values, sorted; rebuilt from `ring` after a restore.
    #[serde(skip)]
    sorted: Vec<f64>,
}

impl Window {
    pub(crate) fn push(&mut self, at: Timestamp, value: f64, window_ms: i64, max_points: usize) {
        let t = at.unix_ms();
        let cutoff = t.saturating_sub(window_ms);
        while let Some(&(front_t, front_v)) = self.ring.front() {
            if front_t > cutoff && self.ring.len() < max_points {
                break;
            }
            self.ring.pop_front();
            let i = self
                .sorted
                .partition_point(|v| v.total_cmp(&front_v).is_lt());
            if self
                .sorted
                .get(i)
                .is_some_and(|v| v.total_cmp(&front_v).is_eq())
            {
                self.sorted.remove(i);
            }
        }
        self.ring.push_back((t, value));
        let i = self.sorted.partition_point(|v| v.total_cmp(&value).is_le());
        self.sorted.insert(i, value);
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The nearest-rank `q`-quantile (see the module docs); `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.sorted.len();
        let rank = (q * n as f64).ceil() as usize;
        self.sorted.get(rank.clamp(1, n.max(1)) - 1).copied()
    }

    fn rebuild(&mut self) {
        self.sorted = self.ring.iter().map(|&(_, v)| v).collect();
        self.sorted.sort_by(f64::total_cmp);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowState {
    config: WindowConfig,
    windows: ResourceMap<Option<Window>>,
    bursts: BurstClassifiers,
}

impl Forecaster for WindowState {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample) {
        let window_ms = (self.config.window_s * 1000.0).round() as i64;
        for (resource, _) in sample.usage().iter() {
            let Some(demand) = observed_demand(sample, resource) else {
                continue;
            };
            let w = self
                .windows
                .get_mut(resource)
                .get_or_insert_with(Window::default);
            if w.ring
                .back()
                .is_some_and(|&(t, _)| t >= sample.at().unix_ms())
            {
                // Out of order: the window is kept in time order.
                continue;
            }
            w.push(sample.at(), demand, window_ms, self.config.max_points);
        }
        self.bursts.observe(sample);
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let per_resource = self.windows.map(|_, w| {
            let w = w.as_ref()?;
            if w.len() < self.config.min_samples.max(1) {
                return None;
            }
            let mut values = [0.0; QUANTILE_LEVELS.len()];
            for (v, q) in values.iter_mut().zip(QUANTILE_LEVELS) {
                *v = w.quantile(q)?;
            }
            ordered(values)
        });
        assemble(NAME, now, horizons_s, &self.bursts, |_| per_resource)
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(NAME, STATE_VERSION, self)
    }
}

impl ForecasterFactory for MovingWindow {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(WindowState {
            config: self.config,
            windows: ResourceMap::none(),
            bursts: BurstClassifiers::new(self.config.burst),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore_view(state.view())
    }

    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        let mut restored: WindowState =
            state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
        restored.config = self.config;
        for r in Resource::ALL {
            if let Some(w) = restored.windows.get_mut(r) {
                if w.ring.iter().any(|&(_, v)| !(v.is_finite() && v >= 0.0)) {
                    return Err(ForecastError::InvalidSetting {
                        field: "moving-window state value",
                        value: format!("{r}"),
                        reason: "holds a negative or non-finite demand",
                    });
                }
                while w.ring.len() > self.config.max_points {
                    w.ring.pop_front();
                }
                w.rebuild();
            }
        }
        Ok(Box::new(restored))
    }
}

/// The merge key ([`crate::merge_states`] chooses the moving-window state with more of
/// them): the points held in the windows, summed over resources. A window is raw recent
/// history, which two hosts' streams cannot share (their timestamps interleave).
pub(crate) fn observations(state: &ModelState) -> Result<u64, ForecastError> {
    let saved: WindowState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    Ok(saved
        .windows
        .present()
        .map(|(_, w)| w.ring.len() as u64)
        .sum())
}

/// The state in this build's layout: one saved before the layout changed is decoded and
/// written anew ([`crate::merge_states`] merges states of one version).
pub(crate) fn upgrade(state: &ModelState) -> Result<Cow<'_, ModelState>, ForecastError> {
    crate::profile_ops::upgraded::<WindowState>(state, NAME, OLDEST_VERSION..=STATE_VERSION)
}

/// [`crate::decay_state`] of a moving-window state: the points are unweighted and leave
/// the window within `window_s` of new data anyway, so they are kept; only the burst
/// evidence is scaled.
pub(crate) fn decay(state: &ModelState, factor: f64) -> Result<ModelState, ForecastError> {
    let mut saved: WindowState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    saved.bursts = saved.bursts.decayed(factor)?;
    ModelState::encode(NAME, STATE_VERSION, &saved)
}

#[cfg(test)]
mod tests {
    use presage_core::{Usage, WorkloadId};

    use super::*;

    fn sample(t: i64, cpu: f64) -> Sample {
        let usage = Usage::empty()
            .with(Resource::Cpu, cpu)
            .expect("valid usage");
        Sample::new(
            Timestamp::from_unix_secs(t),
            WorkloadId::new("w").expect("valid id"),
            60_000,
            usage,
        )
        .expect("valid sample")
    }

    fn cpu_at(f: &dyn Forecaster, t: i64) -> Option<presage_core::Quantiles> {
        f.forecast(Timestamp::from_unix_secs(t), &[60, 600])
            .and_then(|fc| fc.at(Resource::Cpu, 60).copied())
    }

    #[test]
    fn quantiles_are_nearest_rank_order_statistics() -> Result<(), ForecastError> {
        let mut f = MovingWindow::new(WindowConfig::default())?.create();
        assert!(cpu_at(f.as_ref(), 0).is_none());
        // Arrival order scrambled: 3 1 4 1 5 9 2 6 5 3 (sorted 1 1 2 3 3 4 5 5 6 9).
        for (i, v) in [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
            .into_iter()
            .enumerate()
        {
            f.observe(&sample(60 * (i as i64 + 1), v));
        }
        let q = cpu_at(f.as_ref(), 600).ok_or(ForecastError::InvalidSetting {
            field: "test",
            value: String::new(),
            reason: "no forecast",
        })?;
        // n = 10: p5 → rank 1 = 1; p50 → rank 5 = 3; p75 → rank 8 = 5; p90 → rank 9 = 6;
        // p95 and above → rank 10 = 9.
        assert_eq!(
            q.values(),
            [1.0, 3.0, 5.0, 6.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]
        );
        Ok(())
    }

    #[test]
    fn old_samples_leave_the_window() -> Result<(), ForecastError> {
        let config = WindowConfig {
            window_s: 300.0,
            ..WindowConfig::default()
        };
        let mut f = MovingWindow::new(config)?.create();
        f.observe(&sample(60, 10.0));
        for t in 2..=10 {
            f.observe(&sample(60 * t, 1.0));
        }
        // The 10-core sample is 540 s old at t = 600: gone; the last five remain.
        assert_eq!(cpu_at(f.as_ref(), 600).map(|q| q.max()), Some(1.0));
        // The point bound evicts too.
        let mut f = MovingWindow::new(WindowConfig {
            max_points: 3,
            ..WindowConfig::default()
        })?
        .create();
        for (t, v) in [(60, 7.0), (120, 1.0), (180, 2.0), (240, 3.0)] {
            f.observe(&sample(t, v));
        }
        assert_eq!(
            cpu_at(f.as_ref(), 240).map(|q| (q.p5(), q.max())),
            Some((1.0, 3.0))
        );
        Ok(())
    }

    #[test]
    fn save_and_restore_give_identical_forecasts() -> Result<(), Box<dyn std::error::Error>> {
        let family = MovingWindow::new(WindowConfig::default())?;
        let mut f = family.create();
        for i in 0..300 {
            f.observe(&sample(60 * (i + 1), ((i * 37) % 11) as f64 * 0.25));
        }
        let json = serde_json::to_string(&f.save()?)?;
        let back = family.restore(&serde_json::from_str(&json)?)?;
        let now = Timestamp::from_unix_secs(18_000);
        assert_eq!(back.forecast(now, &[60]), f.forecast(now, &[60]));
        assert!(f.forecast(now, &[60]).is_some());
        Ok(())
    }

    #[test]
    fn bad_settings_are_refused() {
        for config in [
            WindowConfig {
                window_s: 0.0,
                ..WindowConfig::default()
            },
            WindowConfig {
                max_points: 0,
                ..WindowConfig::default()
            },
        ] {
            assert!(MovingWindow::new(config).is_err());
        }
    }
}
