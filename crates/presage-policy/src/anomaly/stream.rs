//! The univariate streaming detector: one value at a time, causal, bounded memory. It is
//! the one detector core behind both harnesses — the live scorer runs one per resource
//! of a workload, and `presage evaluate-anomaly` runs one per NAB series.
//!
//! Per value, in order:
//!
//! 1. **Prediction** from what came before: the better (by recent absolute error) of an
//!    exponentially weighted level and a seasonal prediction (the mean of the values one,
//!    two, … `cycles` periods ago). The period is found by autocorrelation over the
//!    recent history, re-checked every half `max_period`. With `second_season` (NAB only;
//!    off in the live scorer) a second seasonal predictor runs on the strongest longer
//!    autocorrelation peak — a week beside a day — and competes by the same error.
//! 2. **Raw score**: ln(1 + |value − prediction| / scale), where scale is the median
//!    absolute residual over the last `scale_window` steps. A median is robust: a burst
//!    does not widen the scale the way a mean of |deviation| does, and the log keeps one
//!    huge residual from dominating the statistics below.
//! 3. **Likelihood** (after Numenta's HTM anomaly likelihood, re-derived here): the mean of
//!    the last `short_window` raw scores is compared with the distribution (mean, standard
//!    deviation) of that same short mean over the last `long_window` steps. Its z-score is
//!    the detector's output; the tail probability is reported beside it. A workload whose
//!    residuals are always large (a spiky series) raises no alarm for being spiky; one
//!    that turns spiky, drifts off its season or shifts its level does. A single value
//!    may also score on its own, at half weight, by its raw score's z-score against the
//!    raw scores of the long window (a one-step spike should not wait for the mean).
//!
//! Everything is counted in steps (values), not seconds: the caller converts.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Settings of a [`StreamDetector`], in steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Half-life of the level predictor.
    pub level_half_life: f64,
    /// Longest period searched for (0: no seasonal predictor).
    pub max_period: usize,
    /// Past cycles averaged by the seasonal predictor.
    pub cycles: usize,
    /// Steps of residuals the robust scale (median absolute residual) is taken over.
    pub scale_window: usize,
    /// Steps averaged into the short mean of raw scores.
    pub short_window: usize,
    /// Steps of short means the reference distribution is taken over.
    pub long_window: usize,
    /// Steps before any score is given (the statistics need a history).
    pub warmup: usize,
    /// Whether a second seasonal predictor runs beside the first, on the strongest other
    /// autocorrelation peak (a week beside a day). Off in the live scorer, whose traces
    /// are too short for a weekly season; NAB's series are weeks long.
    pub second_season: bool,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            level_half_life: 12.0,
            max_period: 400,
            cycles: 3,
            scale_window: 100,
            short_window: 6,
            long_window: 5000,
            warmup: 150,
            second_season: false,
        }
    }
}

/// One step's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StreamScore {
    /// The value's raw score (log of residual over robust scale).
    pub raw: f64,
    /// The z-score of the short mean of raw scores against its long-run distribution
    /// (0 during the warm-up).
    pub z: f64,
    /// The probability, under that distribution, of a short mean at least this high.
    pub tail: f64,
    /// The prediction the value was judged against.
    pub predicted: f64,
    /// Whether the seasonal predictor made the prediction.
    pub seasonal: bool,
}

/// Fixed-capacity window with running sums (mean and variance in O(1)).
#[derive(Debug, Clone, Default)]
struct Window {
    cap: usize,
    values: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
}

impl Window {
    fn new(cap: usize) -> Self {
        Window {
            cap: cap.max(1),
            values: VecDeque::with_capacity(cap.max(1)),
            sum: 0.0,
            sum_sq: 0.0,
        }
    }

    fn push(&mut self, x: f64) {
        if self.values.len() == self.cap
            && let Some(old) = self.values.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.values.push_back(x);
        self.sum += x;
        self.sum_sq += x * x;
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn mean(&self) -> f64 {
        if self.values.is_empty() {
            0.0
        } else {
            self.sum / self.values.len() as f64
        }
    }

    fn std(&self) -> f64 {
        let n = self.values.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let m = self.sum / n;
        (self.sum_sq / n - m * m).max(0.0).sqrt()
    }
}

/// The streaming detector's state for one series.
#[derive(Debug, Clone)]
pub struct StreamDetector {
    settings: StreamSettings,
    steps: usize,
    /// Recent values, for the seasonal predictor and period detection.
    history: VecDeque<f64>,
    history_cap: usize,
    level: Option<f64>,
    /// Detected period in steps.
    period: Option<usize>,
    /// The second season's period (only with `second_season`).
    period2: Option<usize>,
    /// Recent absolute errors of the level and seasonal predictors (EW means).
    level_err: f64,
    seasonal_err: f64,
    seasonal2_err: f64,
    /// Recent absolute residuals (of the prediction used), for the robust scale.
    residuals: VecDeque<f64>,
    /// Recent mean absolute value, to floor the scale on a flat series.
    magnitude: f64,
    short: Window,
    long: Window,
    /// Raw scores over the long window (for the single-value surprise).
    long_raw: Window,
}

impl StreamDetector {
    /// A detector with no history.
    pub fn new(settings: StreamSettings) -> Self {
        let history_cap = (settings.max_period * settings.cycles.max(1) + 1)
            .max(3 * settings.max_period)
            .max(1);
        StreamDetector {
            settings,
            steps: 0,
            history: VecDeque::with_capacity(history_cap),
            history_cap,
            level: None,
            period: None,
            period2: None,
            level_err: 0.0,
            seasonal_err: 0.0,
            seasonal2_err: 0.0,
            residuals: VecDeque::with_capacity(settings.scale_window.max(1)),
            magnitude: 0.0,
            short: Window::new(settings.short_window),
            long: Window::new(settings.long_window),
            long_raw: Window::new(settings.long_window),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    /// Values seen.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The detected period, in steps.
    pub fn period(&self) -> Option<usize> {
        self.period
    }

    /// Whether the warm-up is over (scores are meaningful).
    pub fn warm(&self) -> bool {
        self.steps >= self.settings.warmup
    }

    fn seasonal_prediction(&self, period: Option<usize>) -> Option<f64> {
        let p = period?;
        let n = self.history.len();
        let mut sum = 0.0;
        let mut k = 0usize;
        for c in 1..=self.settings.cycles.max(1) {
            let back = c * p;
            if back > n {
                break;
            }
            sum += self.history[n - back];
            k += 1;
        }
        (k > 0).then(|| sum / k as f64)
    }

    /// Scores `x` against what came before it, then learns from it. A non-finite value
    /// is ignored (the score of the previous step is not repeated: a zero score returns).
    pub fn update(&mut self, x: f64) -> StreamScore {
        if !x.is_finite() {
            return StreamScore::default();
        }
        let level = self.level.unwrap_or(x);
        let seasonal = self.seasonal_prediction(self.period);
        let seasonal2 = self.seasonal_prediction(self.period2);
        let mut use_seasonal = seasonal.is_some() && self.seasonal_err < self.level_err;
        let mut predicted = match seasonal {
            Some(s) if use_seasonal => s,
            _ => level,
        };
        // The second season replaces whichever of the two it beats (never set unless
        // `second_season` is on, so the live scorer's prediction is unchanged).
        if let Some(s2) = seasonal2 {
            let best = if use_seasonal {
                self.seasonal_err
            } else {
                self.level_err
            };
            if self.seasonal2_err < best {
                predicted = s2;
                use_seasonal = true;
            }
        }
        let residual = (x - predicted).abs();
        let scale = self.scale();
        let raw = (residual / scale).ln_1p();

        // The reference distribution is of short means *before* this step, so an anomaly
        // does not hide itself in its own statistics.
        let mu = self.long.mean();
        let sd = self.long.std().max(0.05 * mu.abs()).max(1e-6);
        self.short.push(raw);
        let m = self.short.mean();
        let (z, tail) = if self.warm() && self.long.len() >= self.settings.short_window.max(2) {
            // A single value can be surprise enough on its own, before the short mean
            // has moved: its own z against the raw scores, at half weight (one value is
            // weaker evidence than a run of them).
            let raw_mu = self.long_raw.mean();
            let raw_sd = self.long_raw.std().max(0.05 * raw_mu.abs()).max(1e-6);
            let z = ((m - mu) / sd).max(0.5 * (raw - raw_mu) / raw_sd);
            (z, normal_tail(z))
        } else {
            (0.0, 0.5)
        };
        self.long.push(m);
        self.long_raw.push(raw);

        self.learn(x, residual, level, seasonal, seasonal2);
        StreamScore {
            raw,
            z,
            tail,
            predicted,
            seasonal: use_seasonal,
        }
    }

    fn scale(&self) -> f64 {
        // A flat stretch has a zero median residual; 1 % of the series' magnitude keeps a
        // tiny wiggle from scoring as an infinite surprise.
        let floor = 0.01 * self.magnitude + 1e-9;
        if self.residuals.is_empty() {
            return floor;
        }
        let mut v: Vec<f64> = self.residuals.iter().copied().collect();
        let mid = v.len() / 2;
        let (_, median, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
        median.max(floor)
    }

    fn learn(
        &mut self,
        x: f64,
        residual: f64,
        level: f64,
        seasonal: Option<f64>,
        seasonal2: Option<f64>,
    ) {
        let s = &self.settings;
        let alpha = 1.0 - 0.5f64.powf(1.0 / s.level_half_life.max(1e-9));
        self.level = Some(level + alpha * (x - level));
        // The predictors' errors are compared over about a scale window.
        let beta = 1.0 - 0.5f64.powf(1.0 / (s.scale_window.max(1) as f64 / 2.0));
        self.level_err += beta * ((x - level).abs() - self.level_err);
        if let Some(p) = seasonal {
            self.seasonal_err += beta * ((x - p).abs() - self.seasonal_err);
        }
        if let Some(p) = seasonal2 {
            self.seasonal2_err += beta * ((x - p).abs() - self.seasonal2_err);
        }
        self.magnitude += beta * (x.abs() - self.magnitude);
        if self.residuals.len() == s.scale_window.max(1) {
            self.residuals.pop_front();
        }
        self.residuals.push_back(residual);
        if self.history.len() == self.history_cap {
            self.history.pop_front();
        }
        self.history.push_back(x);
        self.steps += 1;
        let every = (s.max_period / 2).max(1);
        if s.max_period >= 2 && self.steps.is_multiple_of(every) {
            let (found, other) = detect_period(&self.history, s.max_period);
            if self.period.is_none() && found.is_some() {
                // A first period starts level with the level predictor: it must earn its
                // place. A re-detected one (often a multiple of the old) keeps the
                // record, so a period that flickers between 30 and 60 steps does not
                // hand the prediction back to the level predictor each time.
                self.seasonal_err = self.level_err;
            }
            if found.is_some() {
                self.period = found;
            }
            if s.second_season && other.is_some() {
                if self.period2.is_none() {
                    // Like the first, it starts level with the level predictor.
                    self.seasonal2_err = self.level_err;
                }
                self.period2 = other;
            }
        }
    }
}

/// The smallest lag whose autocorrelation is a local maximum, at least 0.3 and within
/// 0.05 of the best one — the smallest, because a period's multiples correlate as well.
/// Written here rather than taken from augurs: augurs' periodogram detector is a batch
/// fit over a whole series, and this runs every few hundred steps on a short window.
/// Second, by the same rule among the peaks at longer lags than the first: the candidate
/// for a second season (a week when the first is a day), if any.
fn detect_period(history: &VecDeque<f64>, max_period: usize) -> (Option<usize>, Option<usize>) {
    let n = history.len();
    let max_lag = max_period.min(n / 2);
    if max_lag < 4 {
        return (None, None);
    }
    let mean = history.iter().sum::<f64>() / n as f64;
    let y: Vec<f64> = history.iter().map(|v| v - mean).collect();
    let energy: f64 = y.iter().map(|v| v * v).sum();
    if energy <= f64::EPSILON {
        return (None, None);
    }
    let acf: Vec<f64> = (0..=max_lag + 1)
        .map(|lag| {
            if lag >= n {
                return 0.0;
            }
            let s: f64 = y[..n - lag].iter().zip(&y[lag..]).map(|(a, b)| a * b).sum();
            // Scaled to the overlap so long lags are not penalised for being short.
            s / energy * n as f64 / (n - lag) as f64
        })
        .collect();
    let peaks: Vec<usize> = (2..=max_lag)
        .filter(|&l| acf[l] >= acf[l - 1] && acf[l] >= acf[l + 1] && acf[l] >= 0.3)
        .collect();
    let best = peaks
        .iter()
        .map(|&l| acf[l])
        .fold(f64::NEG_INFINITY, f64::max);
    let first = peaks.iter().copied().find(|&l| acf[l] >= best - 0.05);
    // The same rule among the longer peaks: the smallest within 0.05 of their best.
    let other = first.and_then(|f| {
        let longer: Vec<usize> = peaks.iter().copied().filter(|&l| l > f).collect();
        let best = longer
            .iter()
            .map(|&l| acf[l])
            .fold(f64::NEG_INFINITY, f64::max);
        longer.into_iter().find(|&l| acf[l] >= best - 0.05)
    });
    (first, other)
}

/// P(Z ≥ z) for a standard normal, by the complementary error function (Abramowitz and
/// Stegun 7.1.26, absolute error below 1.5e-7 — ample for a threshold).
pub fn normal_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    (0.5 * erfc).clamp(0.0, 1.0)
}
