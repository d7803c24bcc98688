//! One resource's PRESS-style demand predictor with CloudScale's adaptive padding: 5-minute
//! steps (each the peak of its samples), a repeating-pattern signature when the history
//! has one, a Markov chain over usage bins when it does not, and the padding against the
//! errors either makes.

use std::collections::VecDeque;
use std::sync::Arc;

use super::fft::{Fft, burst_amplitude, detect_period};

/// The predictor's fixed settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Tuning {
    /// Step length in milliseconds.
    pub(super) step_ms: i64,
    /// Steps of history kept (and searched for a period).
    pub(super) history: usize,
    /// Steps between period searches.
    pub(super) period_every: u64,
    /// Steps between refreshes of the burst padding and the Markov chain's bins.
    pub(super) refresh_every: u64,
    /// Shortest period worth detecting, in steps.
    pub(super) min_period: usize,
    /// Autocorrelation a period needs.
    pub(super) min_acf: f64,
    /// Transitions the Markov chain learns from.
    pub(super) markov_window: usize,
    /// Usage bins of the Markov chain.
    pub(super) markov_bins: usize,
    /// Steps the burst padding looks at.
    pub(super) burst_window: usize,
    /// Under-estimation errors the remedial padding averages.
    pub(super) remedial: usize,
}

/// A detected period within 2 % of a day is a day: noise leaves the correlation peak a
/// few steps wide, while the patterns that repeat in workloads follow the clock, and a
/// signature one step off per cycle would drift by an hour over a fortnight of history.
fn snap_to_day(period: usize, step_ms: i64) -> usize {
    let day = usize::try_from(86_400_000 / step_ms.max(1)).unwrap_or(0);
    if day > 0 && period.abs_diff(day) * 50 <= day {
        day
    } else {
        period
    }
}

/// A discrete-time Markov chain over equal-width usage bins, learnt from a sliding window
/// of transitions. The bins span the window's range and are refitted every refresh.
#[derive(Debug)]
struct Markov {
    bins: usize,
    window: usize,
    lo: f64,
    width: f64,
    /// counts[from × bins + to]; at most `window` per cell, so u16 is plenty.
    counts: Vec<u16>,
    rows: Vec<u32>,
    /// Sum and count of the values that landed in each bin, so a bin predicts its own mean.
    sum: Vec<f64>,
    hits: Vec<u32>,
    transitions: usize,
}

impl Markov {
    fn new(bins: usize, window: usize) -> Self {
        let bins = bins.max(1);
        Markov {
            bins,
            window: window.max(1),
            lo: 0.0,
            width: 0.0,
            counts: vec![0; bins * bins],
            rows: vec![0; bins],
            sum: vec![0.0; bins],
            hits: vec![0; bins],
            transitions: 0,
        }
    }

    fn bin(&self, x: f64) -> usize {
        if self.width <= 0.0 {
            return 0;
        }
        let b = (x - self.lo) / self.width;
        // Truncation is floor for the positive case; `as` saturates, NaN fails the test.
        if b > 0.0 {
            (b as usize).min(self.bins - 1)
        } else {
            0
        }
    }

    fn count(&mut self, from: f64, to: f64, add: bool) {
        let (a, b) = (self.bin(from), self.bin(to));
        let cell = &mut self.counts[a * self.bins + b];
        if add {
            *cell = cell.saturating_add(1);
            self.rows[a] += 1;
            self.sum[b] += to;
            self.hits[b] += 1;
            self.transitions += 1;
        } else if *cell > 0 {
            *cell -= 1;
            self.rows[a] -= 1;
            self.sum[b] -= to;
            self.hits[b] -= 1;
            self.transitions -= 1;
        }
    }

    /// Learns the transition into the newest value of `history`, forgetting the one that
    /// left the window.
    fn push(&mut self, history: &VecDeque<f64>) {
        let n = history.len();
        if n < 2 {
            return;
        }
        self.count(history[n - 2], history[n - 1], true);
        if self.transitions > self.window && n >= self.window + 2 {
            let old = n - self.window - 2;
            self.count(history[old], history[old + 1], false);
        }
    }

    /// Refits the bins to the window's range and recounts it, unless the current bins
    /// still fit: every value inside them and their span at most twice the window's (a
    /// refit would only sharpen the bins, at the cost of a recount).
    fn refresh(&mut self, history: &VecDeque<f64>) {
        let n = history.len();
        let first = n.saturating_sub(self.window + 1);
        let (lo, hi) = history
            .range(first..)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        let span = self.width * self.bins as f64;
        let fits = self.transitions > 0
            && lo >= self.lo
            && hi <= self.lo + span
            && (hi - lo) * 2.0 >= span;
        if fits {
            self.push(history);
            return;
        }
        self.rebuild(history, lo, hi);
    }

    /// Refits the bins to [`lo`, `hi`] and recounts the window.
    fn rebuild(&mut self, history: &VecDeque<f64>, lo: f64, hi: f64) {
        let n = history.len();
        let first = n.saturating_sub(self.window + 1);
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.rows.iter_mut().for_each(|c| *c = 0);
        self.sum.iter_mut().for_each(|c| *c = 0.0);
        self.hits.iter_mut().for_each(|c| *c = 0);
        self.transitions = 0;
        if !(lo.is_finite() && hi.is_finite()) {
            return;
        }
        self.lo = lo;
        self.width = (hi - lo) / self.bins as f64;
        for i in first + 1..n {
            self.count(history[i - 1], history[i], true);
        }
    }

    /// The expected next value from `last`, or `last` itself from a state never left.
    fn predict(&self, last: f64) -> f64 {
        let from = self.bin(last);
        let row = self.rows[from];
        if row == 0 {
            return last;
        }
        let cells = &self.counts[from * self.bins..(from + 1) * self.bins];
        let mut expected = 0.0;
        for (to, &c) in cells.iter().enumerate() {
            if c > 0 {
                let mean = if self.hits[to] > 0 {
                    self.sum[to] / f64::from(self.hits[to])
                } else {
                    self.lo + (to as f64 + 0.5) * self.width
                };
                expected += f64::from(c) * mean;
            }
        }
        expected / f64::from(row)
    }
}

/// One resource's predictor.
#[derive(Debug)]
pub(super) struct Predictor {
    tuning: Tuning,
    fft: Arc<Fft>,
    pending_start: Option<i64>,
    pending_last: i64,
    pending_peak: Option<f64>,
    history: VecDeque<f64>,
    steps: u64,
    period: Option<usize>,
    markov: Markov,
    burst: f64,
    errors: VecDeque<f64>,
    forecast: Option<f64>,
}

impl Predictor {
    pub(super) fn new(tuning: Tuning, fft: Arc<Fft>) -> Self {
        Predictor {
            markov: Markov::new(tuning.markov_bins, tuning.markov_window),
            history: VecDeque::with_capacity(tuning.history),
            errors: VecDeque::with_capacity(tuning.remedial),
            tuning,
            fft,
            pending_start: None,
            pending_last: 0,
            pending_peak: None,
            steps: 0,
            period: None,
            burst: 0.0,
            forecast: None,
        }
    }

    /// Adds a sample's value; returns whether a step closed (and the forecast moved on).
    pub(super) fn push(&mut self, at_ms: i64, interval_ms: u32, value: f64) -> bool {
        let interval = i64::from(interval_ms.max(1));
        let start = at_ms - interval;
        let step = self.tuning.step_ms;
        let mut closed = false;
        if self.pending_start.is_some() && start - self.pending_last >= step / 2 {
            self.close();
            closed = true;
        }
        let begun = *self.pending_start.get_or_insert(start);
        self.pending_peak = Some(self.pending_peak.map_or(value, |p| p.max(value)));
        self.pending_last = at_ms;
        // Same rule as the Autopilot windows: close when the step's end is nearer than
        // half a sample.
        if step - (at_ms - begun) <= interval / 2 {
            self.close();
            closed = true;
        }
        closed
    }

    fn close(&mut self) {
        self.pending_start = None;
        let Some(x) = self.pending_peak.take() else {
            return;
        };
        if let Some(f) = self.forecast {
            if self.errors.len() == self.tuning.remedial {
                self.errors.pop_front();
            }
            self.errors.push_back((x - f).max(0.0));
        }
        if self.history.len() == self.tuning.history {
            self.history.pop_front();
        }
        self.history.push_back(x);
        self.steps += 1;
        let t = &self.tuning;
        if self.steps.is_multiple_of(t.refresh_every) || self.steps == 1 {
            self.markov.refresh(&self.history);
            // Rotating the ring in place (only when it has wrapped) gives the spectral
            // routines a slice without copying the history.
            let history = self.history.make_contiguous();
            self.burst = burst_amplitude(&self.fft, history, t.burst_window);
            if self.steps.is_multiple_of(t.period_every) {
                self.period = detect_period(&self.fft, history, t.min_period, t.min_acf)
                    .map(|p| snap_to_day(p, t.step_ms));
            }
        } else {
            self.markov.push(&self.history);
        }
        self.forecast = Some(self.predict());
    }

    /// The next step's demand: the signature's value at the same phase in every past
    /// cycle, or the Markov chain's expectation from the latest value.
    fn predict(&self) -> f64 {
        let n = self.history.len();
        let last = self.history.back().copied().unwrap_or(0.0);
        if let Some(p) = self.period.filter(|&p| p > 0 && n >= p) {
            let (mut sum, mut cycles) = (0.0, 0u32);
            let mut i = n;
            while i >= p {
                i -= p;
                sum += self.history[i];
                cycles += 1;
            }
            if cycles > 0 {
                return sum / f64::from(cycles);
            }
        }
        self.markov.predict(last)
    }

    /// Steps closed so far.
    pub(super) fn steps(&self) -> u64 {
        self.steps
    }

    /// The raw forecast for the next step.
    pub(super) fn forecast(&self) -> Option<f64> {
        self.forecast
    }

    /// max(burst padding, remedial padding).
    pub(super) fn padding(&self) -> f64 {
        self.burst.max(self.remedial())
    }

    /// Weighted mean of the latest under-estimation errors, the newest weighing most.
    pub(super) fn remedial(&self) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (i, e) in self.errors.iter().enumerate() {
            let w = (i + 1) as f64;
            num += w * e;
            den += w;
        }
        if den > 0.0 { num / den } else { 0.0 }
    }

    /// The burst padding from the latest refresh.
    #[cfg(test)]
    pub(super) fn burst(&self) -> f64 {
        self.burst
    }

    /// The detected period, in steps.
    #[cfg(test)]
    pub(super) fn period(&self) -> Option<usize> {
        self.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(values: &[f64]) -> VecDeque<f64> {
        values.iter().copied().collect()
    }

    #[test]
    fn periods_near_a_day_snap_to_it() {
        assert_eq!(snap_to_day(283, 300_000), 288);
        assert_eq!(snap_to_day(293, 300_000), 288);
        assert_eq!(snap_to_day(280, 300_000), 280);
        assert_eq!(snap_to_day(144, 300_000), 144);
        assert_eq!(snap_to_day(1441, 60_000), 1440);
    }

    #[test]
    fn markov_chain_predicts_the_expected_next_value() {
        // A cycle low → low → high → low → low → high …: from "high" the next is always
        // "low"; from "low" it is low half the time and high half the time.
        let mut values = Vec::new();
        for _ in 0..20 {
            values.extend([1.0, 1.0, 9.0]);
        }
        let h = history(&values);
        let mut m = Markov::new(8, 100);
        m.refresh(&h);
        assert!((m.predict(9.0) - 1.0).abs() < 1e-12);
        let from_low = m.predict(1.0);
        assert!((from_low - 5.0).abs() < 0.2, "{from_low}");
        // A value the chain never left predicts itself.
        let mut m = Markov::new(8, 100);
        m.refresh(&history(&[2.0, 2.0, 7.0]));
        assert_eq!(m.predict(7.0), 7.0);
    }

    #[test]
    fn markov_window_forgets_old_transitions() {
        let mut m = Markov::new(4, 4);
        let mut h = history(&[0.0, 10.0]);
        m.refresh(&h);
        // The 0 → 10 jump is the only transition; then 10 → 10 five times pushes it out.
        for _ in 0..5 {
            h.push_back(10.0);
            m.push(&h);
        }
        assert_eq!(m.transitions, 4);
        assert_eq!(m.rows[m.bin(0.0)], 0, "0 → 10 forgotten");
        assert_eq!(m.predict(10.0), 10.0);
    }
}
