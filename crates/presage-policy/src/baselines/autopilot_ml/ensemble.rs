//! One resource's ensemble: the 5-minute window builder, the decayed per-bucket statistics
//! (one set per decay rate, shared by every margin), the argmin models and the final pick.

use std::sync::Arc;

use presage_forecast::ExponentialBuckets;

/// Candidate limits: the upper boundary of every bucket of a layout.
#[derive(Debug)]
pub(super) struct Layout {
    buckets: ExponentialBuckets,
    /// `limit[i]` is the end of bucket `i`: every value in buckets `0..=i` is below it.
    limit: Vec<f64>,
    /// `1 / limit[i]`, so the sweep multiplies instead of dividing.
    inv: Vec<f64>,
}

impl Layout {
    pub(super) fn new(buckets: ExponentialBuckets) -> Self {
        let limit: Vec<f64> = (0..buckets.len()).map(|i| buckets.end(i)).collect();
        let inv = limit.iter().map(|l| 1.0 / l).collect();
        Layout {
            buckets,
            limit,
            inv,
        }
    }

    pub(super) fn limit(&self, i: usize) -> f64 {
        self.limit[i]
    }

    pub(super) fn index_of(&self, value: f64) -> usize {
        self.buckets.index_of(value)
    }
}

/// How a window's samples become its histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WindowMode {
    /// Every sample, weighted by its interval (CPU).
    Histogram,
    /// Only the window's peak, one-hot (memory).
    Peak,
}

/// The cost weights and decays every model of an ensemble shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Weights {
    pub(super) overrun: f64,
    pub(super) underrun: f64,
    pub(super) limit_change: f64,
    pub(super) model_switch: f64,
    pub(super) cost_decay: f64,
}

/// One bucket's share of a closed window: `weight` sums to 1 over the window, `sum` is
/// `weight × the mean value` of the samples that fell in the bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Entry {
    pub(super) bucket: usize,
    pub(super) weight: f64,
    pub(super) sum: f64,
}

/// The window being filled.
#[derive(Debug)]
struct Window {
    start_ms: Option<i64>,
    last_ms: i64,
    entries: Vec<Entry>,
    total: f64,
    peak: Option<(usize, f64)>,
}

impl Window {
    fn new() -> Self {
        Window {
            start_ms: None,
            last_ms: 0,
            entries: Vec::new(),
            total: 0.0,
            peak: None,
        }
    }

    fn add(&mut self, mode: WindowMode, bucket: usize, weight: f64, value: f64) {
        match mode {
            WindowMode::Histogram => {
                self.total += weight;
                // A window holds few distinct buckets (one for 5-minute samples, tens for
                // 1-second ones), so a linear scan beats any map.
                match self.entries.iter_mut().find(|e| e.bucket == bucket) {
                    Some(e) => {
                        e.weight += weight;
                        e.sum += weight * value;
                    }
                    None => self.entries.push(Entry {
                        bucket,
                        weight,
                        sum: weight * value,
                    }),
                }
            }
            WindowMode::Peak => {
                if self.peak.is_none_or(|(_, p)| value > p) {
                    self.peak = Some((bucket, value));
                }
            }
        }
    }

    /// Turns the window into normalised entries (weights summing to 1) in `out`.
    fn normalise(&mut self, mode: WindowMode, out: &mut Vec<Entry>) {
        out.clear();
        match mode {
            WindowMode::Histogram if self.total > 0.0 => {
                let k = 1.0 / self.total;
                out.extend(self.entries.iter().map(|e| Entry {
                    bucket: e.bucket,
                    weight: e.weight * k,
                    sum: e.sum * k,
                }));
            }
            WindowMode::Histogram => {}
            WindowMode::Peak => {
                if let Some((bucket, value)) = self.peak {
                    out.push(Entry {
                        bucket,
                        weight: 1.0,
                        sum: value,
                    });
                }
            }
        }
        self.start_ms = None;
        self.entries.clear();
        self.total = 0.0;
        self.peak = None;
    }
}

/// Rescale the lazily decayed arrays before the scale underflows.
const RESCALE_BELOW: f64 = 1e-150;

/// A bucket whose decayed weight is below this fraction of the total no longer bounds the
/// sweep from above (a spike long forgotten by a fast decay).
const NEGLIGIBLE: f64 = 1e-12;

/// A per-window decay 1 − d applied to windows of any length.
#[derive(Debug, Clone, Copy)]
struct Decay {
    /// ln(1 − d): Δt windows fade by exp(Δt × this).
    ln_keep: f64,
    /// ((elapsed, own), (fade, add)) of the last window; regular windows reuse it.
    last: ((f64, f64), (f64, f64)),
}

impl Decay {
    fn new(decay: f64) -> Self {
        Decay {
            ln_keep: (1.0 - decay).ln(),
            last: ((f64::NAN, f64::NAN), (1.0, 0.0)),
        }
    }

    /// The factor fading history for a window closing `elapsed` windows after the
    /// previous one, and the weight of a window `own` windows long.
    fn factors(&mut self, elapsed: f64, own: f64) -> (f64, f64) {
        if self.last.0 != (elapsed, own) {
            let fade = (elapsed * self.ln_keep).exp();
            let add = -(own * self.ln_keep).exp_m1();
            self.last = ((elapsed, own), (fade, add));
        }
        self.last.1
    }
}

/// The decayed histogram of one decay rate. Stored divided by `scale` (the product of
/// every decay factor so far), so decaying is O(1) and a window touches only its buckets.
#[derive(Debug)]
struct Rate {
    decay: Decay,
    scale: f64,
    /// Decayed weight per bucket, ÷ `scale`.
    h: Vec<f64>,
    /// Decayed weight × value per bucket, ÷ `scale`.
    v: Vec<f64>,
    total_h: f64,
    total_v: f64,
    /// Highest bucket with non-negligible weight.
    top: usize,
    /// L'_m(t−1) as a candidate index; shared by every margin of this rate because the
    /// argmin and its change penalty do not depend on the margin.
    chosen: Option<usize>,
    /// An upper bound on cost(chosen) − min cost (normalised): how far the choice is from
    /// losing to the change penalty.
    gap: f64,
}

impl Rate {
    fn new(decay: f64) -> Self {
        Rate {
            decay: Decay::new(decay),
            scale: 1.0,
            h: Vec::new(),
            v: Vec::new(),
            total_h: 0.0,
            total_v: 0.0,
            top: 0,
            chosen: None,
            gap: 0.0,
        }
    }

    /// Fades history by `factor`.
    fn fade(&mut self, factor: f64) {
        self.scale *= factor;
        if self.scale < RESCALE_BELOW {
            let s = self.scale;
            self.h.iter_mut().for_each(|x| *x *= s);
            self.v.iter_mut().for_each(|x| *x *= s);
            self.total_h *= s;
            self.total_v *= s;
            self.scale = 1.0;
        }
    }

    /// Adds a window with weight `weight`.
    fn add(&mut self, entries: &[Entry], weight: f64) {
        let k = weight / self.scale;
        for e in entries {
            if e.bucket >= self.h.len() {
                self.h.resize(e.bucket + 1, 0.0);
                self.v.resize(e.bucket + 1, 0.0);
            }
            self.h[e.bucket] += k * e.weight;
            self.v[e.bucket] += k * e.sum;
            self.total_v += k * e.sum;
            self.top = self.top.max(e.bucket);
        }
        self.total_h += k;
        while self.top > 0 && self.h[self.top] <= NEGLIGIBLE * self.total_h {
            self.top -= 1;
        }
    }

    /// The candidate minimising w_o·o(L) + w_u·u(L), with the change penalty against the
    /// previous choice. o(L) is the decayed fraction of samples above L; u(L) the decayed
    /// mean of (L − value)/L over samples below L. Candidates run from the highest bucket
    /// with weight down to one below the lowest ever seen (the "under everything" limit).
    ///
    /// The sweep runs top-down with suffix sums: the overrun term only grows on the way
    /// down and the underrun term is never negative, so once w_o·o(L) alone exceeds the
    /// best cost plus the change penalty no lower candidate can win, nor can a previous
    /// choice down there be kept. With w_o ≫ w_u that stops after the top few percent of
    /// the distribution.
    fn argmin(&mut self, layout: &Layout, lo: usize, w: &Weights) -> Option<usize> {
        if self.total_h <= 0.0 {
            return None;
        }
        let a = w.overrun / self.total_h;
        let b = w.underrun / self.total_h;
        let (wt, vt) = (self.total_h, self.total_v);
        let top = self.top.min(self.h.len().saturating_sub(1));
        let bottom = lo.saturating_sub(1).min(top);
        let (mut above_h, mut above_v) = (0.0, 0.0);
        let mut best = (top, f64::INFINITY);
        let mut prev_cost = match self.chosen {
            Some(p) if p > top => layout.inv.get(p).map(|inv| b * (wt - vt * inv)),
            _ => None,
        };
        let chosen = self.chosen.unwrap_or(usize::MAX);
        let (Some(hs), Some(vs), Some(invs)) = (
            self.h.get(bottom..=top),
            self.v.get(bottom..=top),
            layout.inv.get(bottom..=top),
        ) else {
            return None;
        };
        let buckets = hs.iter().zip(vs).zip(invs);
        for (k, ((&h, &v), &inv)) in buckets.enumerate().rev() {
            let cost = a * above_h + b * ((wt - above_h) - (vt - above_v) * inv);
            if cost < best.1 {
                best = (bottom + k, cost);
            }
            if bottom + k == chosen {
                prev_cost = Some(cost);
            }
            above_h += h;
            above_v += v;
            if a * above_h >= best.1 + w.limit_change {
                break;
            }
        }
        match (self.chosen, prev_cost) {
            (Some(prev), Some(kept)) if kept <= best.1 + w.limit_change => {
                self.gap = kept - best.1;
                Some(prev)
            }
            _ => {
                self.gap = 0.0;
                Some(best.0)
            }
        }
    }

    /// Folds a window into the histogram and moves the choice, skipping the sweep when
    /// the window provably cannot move it.
    ///
    /// With the window's normalised weight k and its cost x(L) ≥ 0 at each candidate,
    /// every new cost is (1 − k)·old + k·x(L): the minimum cannot fall below (1 − k)·old
    /// minimum, and the choice's cost rises to (1 − k)·old + k·x(choice). So if
    /// (1 − k)·gap + k·x(choice) ≤ w_ΔL the sweep would keep the choice, and is not run.
    /// Slowly decaying rates (small k) skip most windows; the result is the same.
    fn update(
        &mut self,
        layout: &Layout,
        entries: &[Entry],
        fade: f64,
        add: f64,
        lo: usize,
        w: &Weights,
    ) {
        self.fade(fade);
        let before = self.total_h * self.scale;
        self.add(entries, add);
        if let Some(i) = self.chosen {
            let k = add / (before + add);
            let x = bucket_cost(layout, entries, i, w);
            let bound = (1.0 - k) * self.gap + k * x;
            if bound <= w.limit_change * (1.0 - 1e-9) {
                self.gap = bound;
                return;
            }
        }
        self.chosen = self.argmin(layout, lo, w);
    }
}

/// A window's cost at candidate `i`, counted by bucket exactly as the sweep counts it.
fn bucket_cost(layout: &Layout, entries: &[Entry], i: usize, w: &Weights) -> f64 {
    let inv = layout.inv.get(i).copied().unwrap_or(0.0);
    entries
        .iter()
        .map(|e| {
            if e.bucket > i {
                w.overrun * e.weight
            } else {
                w.underrun * (e.weight - e.sum * inv)
            }
        })
        .sum()
}

/// One (decay, margin) member.
#[derive(Debug, Clone, Copy)]
struct Model {
    rate: usize,
    margin: f64,
    limit: Option<f64>,
    /// Decayed cost, not yet divided by the ensemble's cost weight.
    cost: f64,
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// A window's cost at an arbitrary limit (a member's limit carries its margin, so it
/// falls between bucket boundaries): each bucket's samples are counted at their mean.
fn window_cost(entries: &[Entry], limit: f64, w: &Weights) -> f64 {
    let (mut over, mut under) = (0.0, 0.0);
    for e in entries {
        if e.sum > limit * e.weight {
            over += e.weight;
        } else {
            under += e.weight - e.sum / limit;
        }
    }
    w.overrun * over + w.underrun * under
}

/// The ensemble for one resource.
#[derive(Debug)]
pub(super) struct Ensemble {
    layout: Arc<Layout>,
    mode: WindowMode,
    weights: Weights,
    window_ms: i64,
    window: Window,
    scratch: Vec<Entry>,
    rates: Vec<Rate>,
    models: Vec<Model>,
    /// Lowest bucket ever seen.
    lowest: Option<usize>,
    /// The members' cost decay.
    cost_decay: Decay,
    cost_weight: f64,
    last_close_ms: Option<i64>,
    windows: u32,
    winner: Option<usize>,
    limit: Option<f64>,
}

impl Ensemble {
    pub(super) fn new(
        layout: Arc<Layout>,
        mode: WindowMode,
        weights: Weights,
        window_s: u32,
        decays: &[f64],
        margins: &[f64],
    ) -> Self {
        let rates: Vec<Rate> = decays.iter().map(|&d| Rate::new(d)).collect();
        let models = (0..decays.len())
            .flat_map(|rate| {
                margins.iter().map(move |&margin| Model {
                    rate,
                    margin,
                    limit: None,
                    cost: 0.0,
                })
            })
            .collect();
        Ensemble {
            layout,
            mode,
            weights,
            window_ms: i64::from(window_s.max(1)) * 1000,
            window: Window::new(),
            scratch: Vec::new(),
            rates,
            models,
            lowest: None,
            cost_decay: Decay::new(weights.cost_decay),
            cost_weight: 0.0,
            last_close_ms: None,
            windows: 0,
            winner: None,
            limit: None,
        }
    }

    /// Adds one sample's value over the `interval_ms` ending at `at_ms`. Returns whether a
    /// window closed (and so the recommendation was recomputed).
    pub(super) fn push(&mut self, at_ms: i64, interval_ms: u32, value: f64) -> bool {
        let interval = i64::from(interval_ms.max(1));
        let start = at_ms - interval;
        let mut closed = false;
        // A gap of half a window or more ends the pending window where its data ends,
        // rather than letting one window straddle the silence.
        if self.window.start_ms.is_some() && start - self.window.last_ms >= self.window_ms / 2 {
            self.close();
            closed = true;
        }
        let bucket = self.layout.index_of(value);
        self.window
            .add(self.mode, bucket, interval as f64, value.max(0.0));
        self.window.start_ms.get_or_insert(start);
        self.window.last_ms = at_ms;
        let covered = at_ms - self.window.start_ms.unwrap_or(start);
        // Close once the window's end is nearer than half a sample: 299-s steps still make
        // one window each, 1-s samples make 300.
        if self.window_ms - covered <= interval / 2 {
            self.close();
            closed = true;
        }
        closed
    }

    /// Closes the pending window now, if it holds anything (after an OOM kill, the memory
    /// ensemble must not wait for the window to fill).
    pub(super) fn flush(&mut self) -> bool {
        if self.window.start_ms.is_none() {
            return false;
        }
        self.close();
        true
    }

    fn close(&mut self) {
        let Some(start) = self.window.start_ms else {
            return;
        };
        let end = self.window.last_ms;
        let mut entries = std::mem::take(&mut self.scratch);
        self.window.normalise(self.mode, &mut entries);
        if !entries.is_empty() {
            self.update(start, end, &entries);
        }
        self.scratch = entries;
    }

    fn update(&mut self, start: i64, end: i64, entries: &[Entry]) {
        let w = self.weights;
        let window = self.window_ms as f64;
        // Decay is per window of elapsed time; a window's own weight grows with its length,
        // so a gap fades history without inventing data and a 1-hour sample counts as 12
        // windows of evidence. Both are rounded to hundredths of a window, so the
        // 299–301-s steps of a trace reuse the previous window's decay factors.
        let hundredths = |x: f64| ((x * 100.0).round() / 100.0).max(0.01);
        let own = hundredths((end - start) as f64 / window);
        let elapsed = self
            .last_close_ms
            .map_or(own, |t| hundredths((end - t) as f64 / window).max(own));
        self.last_close_ms = Some(end);

        let any_scored = self.models.iter().any(|m| m.limit.is_some());
        for e in entries {
            self.lowest = Some(self.lowest.map_or(e.bucket, |lo| lo.min(e.bucket)));
        }
        let Some(lo) = self.lowest else {
            return;
        };
        for rate in &mut self.rates {
            let (fade, add) = rate.decay.factors(elapsed, own);
            rate.update(&self.layout, entries, fade, add, lo, &w);
        }

        let (fade, add) = self.cost_decay.factors(elapsed, own);
        if any_scored {
            self.cost_weight = self.cost_weight * fade + add;
        }
        for model in &mut self.models {
            let new = self.rates[model.rate]
                .chosen
                .map(|i| self.layout.limit(i) * (1.0 + model.margin));
            // Each member is scored on the window with the limit it had recommended
            // *before* seeing it, so its cost is an honest one-step-ahead cost.
            if let Some(score) = model.limit.map(|l| window_cost(entries, l, &w)) {
                let changed = match (model.limit, new) {
                    (Some(a), Some(b)) => !same(a, b),
                    _ => false,
                };
                let step = score + if changed { w.limit_change } else { 0.0 };
                model.cost = model.cost * fade + add * step;
            }
            model.limit = new.or(model.limit);
        }
        self.pick();
        self.windows = self.windows.saturating_add(1);
    }

    /// The member minimising its cost plus the penalties for switching member and limit.
    fn pick(&mut self) {
        let w = self.weights;
        let norm = if self.cost_weight > 0.0 {
            1.0 / self.cost_weight
        } else {
            0.0
        };
        let mut best: Option<(usize, f64)> = None;
        for (i, m) in self.models.iter().enumerate() {
            let Some(limit) = m.limit else {
                continue;
            };
            let mut score = m.cost * norm;
            if self.winner != Some(i) {
                score += w.model_switch;
            }
            if self.limit.is_none_or(|l| !same(l, limit)) {
                score += w.limit_change;
            }
            if best.is_none_or(|(_, s)| score < s) {
                best = Some((i, score));
            }
        }
        if let Some((i, _)) = best {
            self.winner = Some(i);
            self.limit = self.models[i].limit;
        }
    }

    /// Windows closed so far.
    pub(super) fn windows(&self) -> u32 {
        self.windows
    }

    /// The recommended limit, once a window has closed.
    pub(super) fn limit(&self) -> Option<f64> {
        self.limit
    }

    /// The winning member as (decay index, margin index) of the grid.
    pub(super) fn winner(&self, margins: usize) -> Option<(usize, usize)> {
        self.winner.map(|i| (i / margins, i % margins))
    }

    /// Each decay rate's raw argmin L' (for tests).
    #[cfg(test)]
    pub(super) fn raw_limits(&self) -> Vec<Option<f64>> {
        self.rates
            .iter()
            .map(|r| r.chosen.map(|i| self.layout.limit(i)))
            .collect()
    }
}
