//! One resource's Holt-Winters recursions, residual ladder and season detection (the
//! model is described in the parent module's docs).

use std::collections::VecDeque;

use presage_core::{Quantiles, Resource, Sample, Timestamp};

use super::{
    Bins, DAY_S, HoltWintersConfig, LADDER, MIN_RESIDUALS, PeriodogramDetector,
    ResidualDistribution, Season, Snapshot, Track, resource_layout, standardised_layout,
};
use crate::ForecastError;

/// Snapshots kept per ladder horizon, at most (one per `h/8`, so ~9 are ever needed).
const MAX_SNAPSHOTS: usize = 32;
/// Periodogram peaks refined per detection.
const CANDIDATES: usize = 3;

impl Track {
    pub(super) fn new(
        config: &HoltWintersConfig,
        resource: Resource,
        sample: &Sample,
    ) -> Result<Self, ForecastError> {
        let layout = standardised_layout(config.growth)?;
        let residuals = (0..LADDER)
            .map(|_| ResidualDistribution::with_layout(layout, config.residual_half_life_s))
            .collect::<Result<_, _>>()?;
        Ok(Track {
            level: 0.0,
            trend: 0.0,
            last_ms: 0,
            samples: 0,
            typical_dt_s: f64::from(sample.interval_ms()) / 1000.0,
            season: None,
            failed_detections: 0,
            bins: Bins::default(),
            last_detect_ms: None,
            since_detect: 0,
            scale: 0.0,
            scale_long: 0.0,
            scale_floor: resource_layout(resource, config.growth)?.end(0),
            residuals,
            snapshots: vec![VecDeque::new(); LADDER - 1],
        })
    }

    /// Refuses a restored track whose shape or numbers could not have been written.
    pub(super) fn check(&self, resource: Resource) -> Result<(), ForecastError> {
        let bad = |reason: &'static str| ForecastError::InvalidSetting {
            field: "holt-winters state",
            value: resource.to_string(),
            reason,
        };
        if self.residuals.len() != LADDER || self.snapshots.len() != LADDER - 1 {
            return Err(bad("has the wrong number of residual horizons"));
        }
        let numbers = [
            self.level,
            self.trend,
            self.typical_dt_s,
            self.scale,
            self.scale_long,
            self.scale_floor,
        ];
        if numbers.iter().any(|v| !v.is_finite()) {
            return Err(bad("holds a non-finite level, trend or step"));
        }
        if let Some(s) = &self.season
            && (s.period_ms <= 0 || s.values.is_empty() || s.values.iter().any(|v| !v.is_finite()))
        {
            return Err(bad("holds an invalid season"));
        }
        Ok(())
    }

    /// `b`'s contribution over `dt_s` seconds: `τ(1 − e^(−dt/τ))`.
    fn growth(config: &HoltWintersConfig, dt_s: f64) -> f64 {
        let tau = config.trend_damping_s;
        tau * -(-dt_s.max(0.0) / tau).exp_m1()
    }

    fn season_at(&self, t_ms: i64) -> f64 {
        self.season.as_ref().map_or(0.0, |s| s.at(t_ms))
    }

    pub(super) fn observe(
        &mut self,
        config: &HoltWintersConfig,
        at: Timestamp,
        y: f64,
        weight: f64,
    ) {
        let t = at.unix_ms();
        let bin_ms = (config.detect_bin_s * 1000.0).round().max(1.0) as i64;
        let capacity = (config.detect_window_s / config.detect_bin_s).round() as usize;
        if self.samples == 0 {
            self.level = y;
            self.last_ms = t;
            self.samples = 1;
            self.bins.push(t.div_euclid(bin_ms), y, capacity);
            return;
        }
        if t <= self.last_ms {
            return;
        }
        let dt = (t - self.last_ms) as f64 / 1000.0;
        self.typical_dt_s += 0.1 * (dt.min(DAY_S) - self.typical_dt_s);
        let season_now = self.season_at(t);
        let grow = Self::growth(config, dt);
        let error = y - (self.level + self.trend * grow + season_now);
        if self.samples == 1 {
            self.scale = error.abs();
            self.scale_long = error.abs();
        }
        let unit = self.unit(config);
        self.residuals[0].add(error / unit, weight, at);
        for (k, horizon) in config.residual_horizons_s.iter().enumerate() {
            let h_ms = i64::from(*horizon) * 1000;
            let queue = &mut self.snapshots[k];
            while queue.len() >= 2 && queue[1].at_ms <= t - h_ms {
                queue.pop_front();
            }
            let slack_ms = (h_ms / 4).max((2000.0 * self.typical_dt_s) as i64);
            if let Some(s) = queue.front()
                && s.at_ms <= t - h_ms
                && t - s.at_ms <= h_ms + slack_ms
            {
                let ahead = (t - s.at_ms) as f64 / 1000.0;
                let point = s.level + s.trend * Self::growth(config, ahead) + season_now;
                self.residuals[k + 1].add((y - point) / unit, weight, at);
            }
        }

        let keep = (-dt / config.volatility_half_life_s).exp2();
        self.scale = keep * self.scale + (1.0 - keep) * error.abs();
        let keep = (-dt / config.residual_half_life_s).exp2();
        self.scale_long = keep * self.scale_long + (1.0 - keep) * error.abs();
        let alpha = 1.0 - (-dt / config.level_half_life_s).exp2();
        let beta = 1.0 - (-dt / config.trend_half_life_s).exp2();
        let new_level = self.level + self.trend * grow + alpha * error;
        let damp = (-dt / config.trend_damping_s).exp();
        self.trend = (1.0 - beta) * self.trend * damp + beta * (new_level - self.level) / dt;
        self.level = new_level;
        if let Some(season) = &mut self.season {
            let bin_s = season.period_ms as f64 / 1000.0 / season.values.len() as f64;
            let per_period = 1.0 - (-1.0 / config.season_half_life_periods).exp2();
            let gamma = 1.0 - (1.0 - per_period).powf((dt / bin_s).min(1.0));
            let i = season.index(t);
            if let Some(s) = season.values.get_mut(i) {
                *s += gamma * (1.0 - alpha) * error;
            }
        }
        self.last_ms = t;
        self.samples = self.samples.saturating_add(1);

        for (k, horizon) in config.residual_horizons_s.iter().enumerate() {
            let spacing = i64::from(*horizon) * 1000 / 8;
            let queue = &mut self.snapshots[k];
            if queue.back().is_none_or(|b| t - b.at_ms >= spacing) {
                queue.push_back(Snapshot {
                    at_ms: t,
                    level: self.level,
                    trend: self.trend,
                });
                if queue.len() > MAX_SNAPSHOTS {
                    queue.pop_front();
                }
            }
        }

        self.bins.push(t.div_euclid(bin_ms), y, capacity);
        self.since_detect = self.since_detect.saturating_add(1);
        let due = self
            .last_detect_ms
            .is_none_or(|d| (t - d) as f64 >= config.detect_every_s * 1000.0);
        let min_bins = (config.min_period_s / config.detect_bin_s).ceil() as usize;
        if due
            && self.since_detect >= config.detect_min_samples
            && self.bins.values.len() >= 2 * min_bins
        {
            self.last_detect_ms = Some(t);
            self.since_detect = 0;
            match self.detect(config) {
                Some(period_s) => self.adopt(config, period_s),
                None => {
                    self.failed_detections += 1;
                    if self.failed_detections >= 2 {
                        self.drop_season();
                    }
                }
            }
        }
    }

    /// The season's period in seconds, if the binned history shows one.
    fn detect(&mut self, config: &HoltWintersConfig) -> Option<f64> {
        let v = self.bins.values.make_contiguous();
        let n = v.len();
        let min_b = ((config.min_period_s / config.detect_bin_s).ceil() as usize).max(2);
        let max_b = ((config.max_period_s / config.detect_bin_s).floor() as usize).min(n / 2 + 1);
        if max_b <= min_b + 1 {
            return None;
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        if var.is_nan() || var <= 1e-12 * mean.abs().max(1e-12).powi(2) {
            return None;
        }
        let autocorrelation = |lag: usize| {
            let pairs = n - lag;
            let cov: f64 = (0..pairs)
                .map(|k| (v[k] - mean) * (v[k + lag] - mean))
                .sum();
            cov / pairs as f64 / var
        };
        let periodogram = PeriodogramDetector::builder()
            .min_period(min_b as u32)
            .max_period(max_b as u32)
            .build()
            .periodogram(v);
        let mut peaks: Vec<(f64, u32)> = periodogram
            .peaks(0.5)
            .map(|p| (p.power, p.period))
            .collect();
        peaks.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut best: Option<(f64, usize)> = None;
        for &(_, period) in peaks.iter().take(CANDIDATES) {
            let p = period as f64;
            let lo = ((0.8 * p).floor() as usize).max(min_b);
            let hi = ((1.25 * p).ceil() as usize).min(max_b - 1).min(n - 2);
            for lag in lo..=hi {
                let r = autocorrelation(lag);
                if best.is_none_or(|(b, _)| r > b) {
                    best = Some((r, lag));
                }
            }
        }
        let (r, lag) = best?;
        if r < config.min_autocorrelation {
            return None;
        }
        let period_s = lag as f64 * config.detect_bin_s;
        Some(
            [DAY_S, 7.0 * DAY_S]
                .into_iter()
                .find(|c| (period_s - c).abs() <= 0.1 * c)
                .unwrap_or(period_s),
        )
    }

    /// Takes `period_s` as the season, re-initialising it from the binned history when it
    /// is new.
    fn adopt(&mut self, config: &HoltWintersConfig, period_s: f64) {
        self.failed_detections = 0;
        let period_ms = (period_s * 1000.0).round() as i64;
        if self
            .season
            .as_ref()
            .is_some_and(|s| (s.period_ms - period_ms).abs() as f64 <= 0.05 * period_ms as f64)
        {
            return;
        }
        self.drop_season();
        let bins = ((period_s / self.typical_dt_s.max(1.0)).round() as usize)
            .clamp(4, config.max_season_bins);
        let mut season = Season {
            period_ms,
            values: vec![0.0; bins],
        };
        let (Some(open), n) = (self.bins.open, self.bins.values.len()) else {
            return;
        };
        let bin_ms = (config.detect_bin_s * 1000.0).round() as i64;
        let mean = self.bins.values.iter().sum::<f64>() / n.max(1) as f64;
        let mut sums = vec![(0.0, 0u32); bins];
        for (k, v) in self.bins.values.iter().enumerate() {
            let start = (open - (n - k) as i64) * bin_ms;
            let i = season.index(start + bin_ms / 2);
            sums[i].0 += v - mean;
            sums[i].1 += 1;
        }
        // Phase bins the history did not reach take the last value before them.
        let first = sums.iter().position(|s| s.1 > 0).unwrap_or(0);
        let mut last = 0.0;
        for j in 0..bins {
            let (sum, count) = sums[(first + j) % bins];
            if count > 0 {
                last = sum / f64::from(count);
            }
            season.values[(first + j) % bins] = last;
        }
        let centre = season.values.iter().sum::<f64>() / bins as f64;
        for v in &mut season.values {
            *v -= centre;
        }
        self.level -= season.at(self.last_ms);
        self.season = Some(season);
        // Snapshots hold levels of the old decomposition.
        self.snapshots.iter_mut().for_each(VecDeque::clear);
    }

    fn drop_season(&mut self) {
        if let Some(old) = self.season.take() {
            self.level += old.at(self.last_ms);
            self.snapshots.iter_mut().for_each(VecDeque::clear);
        }
    }

    pub(super) fn forecast(
        &self,
        config: &HoltWintersConfig,
        target: Timestamp,
    ) -> Option<Quantiles> {
        if self.samples < config.min_samples {
            return None;
        }
        let t = target.unix_ms();
        let ahead = (t - self.last_ms) as f64 / 1000.0;
        let point = self.level + self.trend * Self::growth(config, ahead) + self.season_at(t);
        let mut rung = if ahead <= 1.5 * self.typical_dt_s {
            0
        } else {
            config
                .residual_horizons_s
                .iter()
                .position(|&h| f64::from(h) >= ahead)
                .map_or(LADDER - 1, |i| i + 1)
        };
        while rung > 0 && self.residuals[rung].count() < MIN_RESIDUALS {
            rung -= 1;
        }
        if self.residuals[rung].count() < 3 {
            return None;
        }
        let unit = self.unit(config);
        let offsets = self.residuals[rung].offsets();
        super::ordered(offsets.map(|o| point + o * unit))
    }

    /// What a standardised residual is a multiple of: the long-run error scale moved
    /// towards the recent one by `volatility_weight`.
    fn unit(&self, config: &HoltWintersConfig) -> f64 {
        let long = self.scale_long.max(self.scale_floor);
        let recent = self.scale.max(self.scale_floor);
        long * (recent / long).powf(config.volatility_weight)
    }

    /// The detected period in seconds (for tests and reports).
    #[cfg(test)]
    pub(super) fn period_s(&self) -> Option<f64> {
        self.season.as_ref().map(|s| s.period_ms as f64 / 1000.0)
    }
}
