//! The decaying exponential histogram: Kubernetes VPA's core data structure (ANCHORS.md
//! §1.3), shared by the VPA and Autopilot baselines and by presage's own models.
//!
//! Buckets come from [`ExponentialBuckets`]. Each bucket holds the summed weight of the
//! samples that fell in it; a [`percentile`](DecayingHistogram::percentile) walks the
//! buckets upward and reports the **end** of the bucket where the running sum reaches
//! `p · total` (the last bucket, which has no end, reports its start), so answers are
//! biased upward by at most one bucket width, exactly as VPA's are.
//!
//! **Decay, VPA's way.** Rather than shrinking every old weight as time passes (O(buckets)
//! per step), a sample added at time `t` is given weight `w · 2^((t − t_ref)/half_life)`:
//! newer samples weigh more, and since only relative weights matter, a sample one
//! half-life older counts half. `t_ref` is kept at a whole multiple of the half-life. When
//! a sample lands more than 100 half-lives past `t_ref` the exponent would overflow, so the
//! histogram is renormalised: `t_ref` moves to the sample's time (rounded to a multiple of
//! the half-life) and every weight is multiplied by `2^(−shift)`, a power of two, which is
//! exact in floating point and so leaves every percentile where it was. Adding is O(1);
//! renormalising is O(buckets) once per 100 half-lives.
//!
//! **Emptiness.** As in VPA, a bucket whose weight is below [`EPSILON`] counts as empty at
//! the edges: the lowest and highest non-empty buckets are tracked and re-tightened after
//! anything that lowers a weight, and the percentile walk runs between them. Because the
//! weights are relative to `t_ref`, samples old enough that a renormalisation pushes them
//! under epsilon drop out of the edges (VPA forgets them the same way).
//!
//! **Checkpoints keep f64 weights.** VPA rescales its checkpoints so the heaviest bucket is
//! the integer 10000, to keep Kubernetes objects small. presage stores profiles in its own
//! database and merges them across nodes, where rounding would compound, so a checkpoint
//! here keeps the exact weights (only the non-empty buckets): a save/load round trip
//! reproduces the histogram exactly. A saved histogram is its checkpoint packed into one
//! string, every weight as its IEEE-754 bits (see `crate::codec`), so no JSON number
//! parser can move one by an ulp.

use presage_core::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ExponentialBuckets, ForecastError};

/// Weight under which a bucket counts as empty (VPA: 0.001 × its minimum sample weight
/// 0.1). Weights are relative to the histogram's reference time (see the module docs).
pub const EPSILON: f64 = 1e-4;

/// How many half-lives past the reference time a sample may land before the histogram is
/// renormalised (VPA's `maxDecayExponent`).
const MAX_DECAY_EXPONENT: i64 = 100;

/// Layouts bigger than this are refused when restoring a checkpoint, so a corrupt one
/// cannot make us allocate without bound.
const MAX_BUCKETS: usize = 1 << 16;

/// A histogram over an exponential bucket layout whose samples lose half their weight per
/// half-life (or never, with an infinite half-life). See the module documentation.
///
/// Serialises as its [`HistogramCheckpoint`] packed into one string (`crate::codec`), and
/// reads that or the checkpoint object earlier versions wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct DecayingHistogram {
    layout: ExponentialBuckets,
    /// `None`: no decay.
    half_life_ms: Option<i64>,
    /// Always a whole multiple of the half-life.
    reference_ms: i64,
    weights: Box<[f64]>,
    total: f64,
    /// Lowest bucket holding at least [`EPSILON`]; the last bucket when empty.
    min_bucket: usize,
    /// Highest bucket holding at least [`EPSILON`]; 0 when empty.
    max_bucket: usize,
}

impl DecayingHistogram {
    /// An empty histogram over `layout` whose samples' weight halves every `half_life_s`
    /// seconds; `f64::INFINITY` means no decay. The half-life is kept to the millisecond
    /// and must be at least 1 ms.
    pub fn new(layout: ExponentialBuckets, half_life_s: f64) -> Result<Self, ForecastError> {
        let half_life_ms = if half_life_s == f64::INFINITY {
            None
        } else if half_life_s.is_finite() && half_life_s * 1000.0 >= 1.0 {
            Some((half_life_s * 1000.0).round().min(i64::MAX as f64 / 4.0) as i64)
        } else {
            return Err(ForecastError::InvalidSetting {
                field: "histogram half-life",
                value: half_life_s.to_string(),
                reason: "must be at least 1 ms, or infinite for no decay",
            });
        };
        check_layout(&layout)?;
        Ok(Self::empty(layout, half_life_ms))
    }

    fn empty(layout: ExponentialBuckets, half_life_ms: Option<i64>) -> Self {
        DecayingHistogram {
            layout,
            half_life_ms,
            reference_ms: 0,
            weights: vec![0.0; layout.len()].into_boxed_slice(),
            total: 0.0,
            min_bucket: layout.len() - 1,
            max_bucket: 0,
        }
    }

    /// The bucket layout.
    pub fn layout(&self) -> &ExponentialBuckets {
        &self.layout
    }

    /// The half-life in seconds (`f64::INFINITY` when the histogram does not decay).
    pub fn half_life_s(&self) -> f64 {
        self.half_life_ms
            .map_or(f64::INFINITY, |h| h as f64 / 1000.0)
    }

    /// Whether no bucket holds at least [`EPSILON`].
    pub fn is_empty(&self) -> bool {
        self.weights[self.min_bucket] < EPSILON
    }

    /// The raw bucket weights, relative to the reference time (only their ratios mean
    /// anything; see [`DecayingHistogram::total_weight`] for weights in sample units).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// What all samples together weigh as of `now`: a sample of weight `w` added at `t`
    /// counts `w · 2^(−(now − t)/half_life)`.
    pub fn total_weight(&self, now: Timestamp) -> f64 {
        match self.half_life_ms {
            None => self.total,
            Some(h) => {
                self.total * ((self.reference_ms as f64 - now.unix_ms() as f64) / h as f64).exp2()
            }
        }
    }

    /// Forgets every sample (the layout and half-life stay).
    pub fn reset(&mut self) {
        self.clear_weights();
        self.reference_ms = 0;
    }

    /// Adds a sample of `value` with `weight` observed at `at`. A negative, NaN or infinite
    /// weight and a NaN value are ignored (a histogram must never be poisoned); values
    /// below 0 fall in the first bucket and values past the layout in the last. Weights
    /// are meant to be well above [`EPSILON`] (VPA uses 0.1 and 1): a bucket holding less
    /// counts as empty.
    pub fn add(&mut self, value: f64, weight: f64, at: Timestamp) {
        if value.is_nan() || !(weight.is_finite() && weight >= 0.0) {
            return;
        }
        if self.is_empty() && self.total < EPSILON {
            // Nothing to rescale: start afresh with the reference at this sample, which
            // also drops any sub-epsilon residue left by subtractions.
            self.clear(at);
        }
        let w = weight * self.growth(at);
        let bucket = self.layout.index_of(value);
        self.weights[bucket] += w;
        self.total += w;
        if self.weights[bucket] >= EPSILON {
            self.min_bucket = self.min_bucket.min(bucket);
            self.max_bucket = self.max_bucket.max(bucket);
        }
    }

    /// Removes a sample of `value` with `weight` observed at `at` (the same arguments it
    /// was added with). A bucket never goes negative: removing more than it holds, or all
    /// but less than [`EPSILON`], empties it. Invalid arguments are ignored as in
    /// [`DecayingHistogram::add`].
    pub fn subtract(&mut self, value: f64, weight: f64, at: Timestamp) {
        if value.is_nan() || !(weight.is_finite() && weight >= 0.0) {
            return;
        }
        let mut w = weight * self.growth(at);
        let bucket = self.layout.index_of(value);
        if w > self.weights[bucket] - EPSILON {
            w = self.weights[bucket];
        }
        self.weights[bucket] -= w;
        self.total = (self.total - w).max(0.0);
        self.tighten();
    }

    /// The `p`-quantile (`p` in [0, 1]) of the weighted samples: the end of the bucket at
    /// which the running weight first reaches `p ·` total (the start of the last bucket
    /// when it is that one); 0 when empty. One walk over the non-empty range.
    pub fn percentile(&self, p: f64) -> f64 {
        self.percentiles([p])[0]
    }

    /// Several percentiles in one walk (the walk is shared when `ps` is in increasing
    /// order; otherwise each is walked on its own).
    pub fn percentiles<const N: usize>(&self, ps: [f64; N]) -> [f64; N] {
        self.walk(ps, false)
    }

    /// The `p`-quantile of *load-adjusted* usage (Autopilot's `S_pj`, ANCHORS.md §2.2):
    /// every bucket's weight is multiplied by its value before walking, so the answer is a
    /// percentile of work (area under the load curve) rather than of time. A bucket's value
    /// is the one [`DecayingHistogram::percentile`] reports for it: its end (the last
    /// bucket: its start). Returns 0 when empty.
    pub fn load_adjusted_percentile(&self, p: f64) -> f64 {
        self.load_adjusted_percentiles([p])[0]
    }

    /// Several load-adjusted percentiles in two walks (one for the total load, one for the
    /// percentiles), shared when `ps` is increasing.
    pub fn load_adjusted_percentiles<const N: usize>(&self, ps: [f64; N]) -> [f64; N] {
        self.walk(ps, true)
    }

    /// Adds every sample of `other` to this histogram, as if each had been added here.
    /// The older reference time is first moved to the younger one (VPA's alignment). Both
    /// must share the bucket layout and the half-life.
    pub fn merge(&mut self, other: &DecayingHistogram) -> Result<(), ForecastError> {
        if self.layout != other.layout {
            return Err(ForecastError::InvalidSetting {
                field: "histogram layout",
                value: format!("{:?}", other.layout),
                reason: "merged histograms must share the bucket layout",
            });
        }
        if self.half_life_ms != other.half_life_ms {
            return Err(ForecastError::InvalidSetting {
                field: "histogram half-life",
                value: other.half_life_s().to_string(),
                reason: "merged histograms must share the half-life",
            });
        }
        if other.is_empty() {
            return Ok(());
        }
        if self.is_empty() {
            *self = other.clone();
            return Ok(());
        }
        let mut factor = 1.0;
        if let Some(h) = self.half_life_ms {
            if self.reference_ms < other.reference_ms {
                self.shift_reference(other.reference_ms);
            } else {
                factor = pow2(half_lives(other.reference_ms, self.reference_ms, h));
            }
        }
        for b in other.min_bucket..=other.max_bucket {
            self.weights[b] += other.weights[b] * factor;
        }
        self.total += other.total * factor;
        self.min_bucket = self.min_bucket.min(other.min_bucket);
        self.max_bucket = self.max_bucket.max(other.max_bucket);
        // Scaling `other` down may have pushed its edge buckets under epsilon.
        self.tighten();
        Ok(())
    }

    /// The histogram's state, for a profile store.
    pub fn checkpoint(&self) -> HistogramCheckpoint {
        let buckets = if self.is_empty() {
            Vec::new()
        } else {
            (self.min_bucket..=self.max_bucket)
                .filter(|&b| self.weights[b] > 0.0)
                .map(|b| (b, self.weights[b]))
                .collect()
        };
        HistogramCheckpoint {
            layout: self.layout,
            half_life_ms: self.half_life_ms,
            reference_ms: self.reference_ms,
            total_weight: self.total,
            buckets,
        }
    }

    /// A histogram continuing from `checkpoint`, after checking every field.
    pub fn from_checkpoint(checkpoint: &HistogramCheckpoint) -> Result<Self, ForecastError> {
        let bad = |field: &'static str, value: String, reason: &'static str| {
            ForecastError::InvalidSetting {
                field,
                value,
                reason,
            }
        };
        let layout = checkpoint.layout;
        check_layout(&layout)?;
        if let Some(h) = checkpoint.half_life_ms
            && h <= 0
        {
            return Err(bad(
                "histogram checkpoint half_life_ms",
                h.to_string(),
                "must be positive",
            ));
        }
        let total = checkpoint.total_weight;
        if !(total.is_finite() && total >= 0.0) {
            return Err(bad(
                "histogram checkpoint total_weight",
                total.to_string(),
                "must be a finite, non-negative weight",
            ));
        }
        let mut h = Self::empty(layout, checkpoint.half_life_ms);
        h.reference_ms = checkpoint.reference_ms;
        for &(bucket, weight) in &checkpoint.buckets {
            if bucket >= layout.len() {
                return Err(bad(
                    "histogram checkpoint bucket",
                    bucket.to_string(),
                    "is past the layout's last bucket",
                ));
            }
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(bad(
                    "histogram checkpoint weight",
                    weight.to_string(),
                    "must be a finite, non-negative weight",
                ));
            }
            h.weights[bucket] += weight;
        }
        h.total = total;
        h.min_bucket = 0;
        h.max_bucket = layout.len() - 1;
        h.tighten();
        Ok(h)
    }

    /// `2^((at − t_ref)/half_life)`, renormalising first when `at` is too far ahead.
    fn growth(&mut self, at: Timestamp) -> f64 {
        let Some(h) = self.half_life_ms else {
            return 1.0;
        };
        let t = at.unix_ms();
        if (t as i128 - self.reference_ms as i128) > i128::from(h) * i128::from(MAX_DECAY_EXPONENT)
        {
            self.shift_reference(t);
        }
        ((t as f64 - self.reference_ms as f64) / h as f64).exp2()
    }

    /// Moves the reference time to `t` rounded to a multiple of the half-life, rescaling
    /// every weight by the power of two that keeps each sample's relative weight.
    fn shift_reference(&mut self, t: i64) {
        let Some(h) = self.half_life_ms else {
            return;
        };
        let new_ref = round_to_multiple(t, h);
        let shift = half_lives(self.reference_ms, new_ref, h);
        self.reference_ms = new_ref;
        if shift == 0 {
            return;
        }
        let factor = pow2(shift);
        if self.is_empty() {
            self.clear_weights();
            return;
        }
        for w in &mut self.weights[self.min_bucket..=self.max_bucket] {
            *w *= factor;
        }
        self.total *= factor;
        self.tighten();
    }

    fn clear(&mut self, at: Timestamp) {
        self.clear_weights();
        if let Some(h) = self.half_life_ms {
            self.reference_ms = round_to_multiple(at.unix_ms(), h);
        }
    }

    fn clear_weights(&mut self) {
        self.weights.fill(0.0);
        self.total = 0.0;
        self.min_bucket = self.layout.len() - 1;
        self.max_bucket = 0;
    }

    /// Re-tightens the non-empty range after weights went down (VPA's rule).
    fn tighten(&mut self) {
        let last = self.layout.len() - 1;
        while self.weights[self.min_bucket] < EPSILON && self.min_bucket < last {
            self.min_bucket += 1;
        }
        while self.weights[self.max_bucket] < EPSILON && self.max_bucket > 0 {
            self.max_bucket -= 1;
        }
    }

    /// The shared percentile walk; with `load`, each bucket's weight counts times its value.
    fn walk<const N: usize>(&self, ps: [f64; N], load: bool) -> [f64; N] {
        let mut out = [0.0; N];
        if self.is_empty() || N == 0 {
            return out;
        }
        if ps
            .windows(2)
            .any(|w| w[0] > w[1] || w[0].is_nan() || w[1].is_nan())
        {
            for (o, p) in out.iter_mut().zip(ps) {
                *o = self.walk([p], load)[0];
            }
            return out;
        }
        let (lo, hi) = (self.min_bucket, self.max_bucket);
        let mut values = load.then(|| BucketEnds::from(&self.layout, lo));
        let total = match &values {
            Some(v) => {
                let mut v = v.clone();
                self.weights[lo..=hi]
                    .iter()
                    .map(|w| w * v.next_value())
                    .sum()
            }
            None => self.total,
        };
        // Bucket indices first, values after: computing a value inside the loop lets the
        // optimiser hoist it (two powers per bucket) out of the rarely taken branch.
        let mut found = [hi; N];
        let mut next = 0;
        let mut partial = 0.0;
        for b in lo..hi {
            partial += match values.as_mut() {
                Some(v) => self.weights[b] * v.next_value(),
                None => self.weights[b],
            };
            while next < N && partial >= ps[next] * total {
                found[next] = b;
                next += 1;
            }
            if next == N {
                break;
            }
        }
        found.map(|b| self.reported_value(b))
    }

    /// What a percentile landing in bucket `b` reports: its end, or for the last bucket
    /// (which has no end) its start.
    fn reported_value(&self, b: usize) -> f64 {
        if b + 1 < self.layout.len() {
            self.layout.end(b)
        } else {
            self.layout.start(b)
        }
    }
}

/// Walks the buckets' reported values upward with one multiply-add per bucket
/// (`start(n+1) = r·start(n) + first`) instead of a power per bucket.
#[derive(Debug, Clone)]
struct BucketEnds {
    next_end: f64,
    ratio: f64,
    first: f64,
    bucket: usize,
    last: usize,
}

impl BucketEnds {
    fn from(layout: &ExponentialBuckets, bucket: usize) -> Self {
        let first = layout.start(1);
        BucketEnds {
            next_end: layout.end(bucket),
            ratio: layout.start(2) / first - 1.0,
            first,
            bucket,
            last: layout.len() - 1,
        }
    }

    fn next_value(&mut self) -> f64 {
        let end = self.next_end;
        self.next_end = end * self.ratio + self.first;
        self.bucket += 1;
        if self.bucket > self.last {
            // The last bucket reports its start, which is the previous bucket's end.
            (end - self.first) / self.ratio
        } else {
            end
        }
    }
}

/// A [`DecayingHistogram`]'s saved state: the layout, the decay, the reference time and the
/// exact weight of every non-empty bucket (see the module docs on why not VPA's integers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramCheckpoint {
    /// The bucket layout.
    pub layout: ExponentialBuckets,
    /// The half-life in milliseconds; absent when the histogram does not decay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life_ms: Option<i64>,
    /// The reference time (UTC ms) the weights are relative to.
    pub reference_ms: i64,
    /// The sum of all bucket weights, relative to the reference time.
    pub total_weight: f64,
    /// `(bucket index, weight)` for each bucket holding weight.
    pub buckets: Vec<(usize, f64)>,
}

impl Serialize for DecayingHistogram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::codec::histogram::pack(&self.checkpoint()))
    }
}

impl<'de> Deserialize<'de> for DecayingHistogram {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let checkpoint = crate::codec::histogram::deserialize(d)?;
        DecayingHistogram::from_checkpoint(&checkpoint).map_err(serde::de::Error::custom)
    }
}

impl From<DecayingHistogram> for HistogramCheckpoint {
    fn from(h: DecayingHistogram) -> Self {
        h.checkpoint()
    }
}

impl TryFrom<HistogramCheckpoint> for DecayingHistogram {
    type Error = ForecastError;
    fn try_from(c: HistogramCheckpoint) -> Result<Self, Self::Error> {
        DecayingHistogram::from_checkpoint(&c)
    }
}

/// Refuses layouts a histogram cannot index (only a deserialised one can be that bad).
fn check_layout(layout: &ExponentialBuckets) -> Result<(), ForecastError> {
    let (first, second) = (layout.start(1), layout.end(1));
    // `is_empty` is always false for a layout built by `new`; a deserialised one can
    // still claim zero buckets.
    let count = layout.len();
    let usable = (1..=MAX_BUCKETS).contains(&count)
        && first.is_finite()
        && first > 0.0
        && second > 2.0 * first
        && layout.start(count).is_finite();
    if usable {
        Ok(())
    } else {
        Err(ForecastError::InvalidSetting {
            field: "histogram layout",
            value: format!("{layout:?}"),
            reason: "is not a usable exponential layout",
        })
    }
}

/// `2^e`, exact for every exponent whose result is a normal float (0 or ∞ past them).
fn pow2(e: i64) -> f64 {
    2f64.powi(e.clamp(-2000, 2000) as i32)
}

/// `(a − b) / h` without overflow, saturated into `i64`.
fn half_lives(a: i64, b: i64, h: i64) -> i64 {
    let q = (i128::from(a) - i128::from(b)) / i128::from(h);
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// `t` rounded to the nearest multiple of `h` (halves away from −∞, like Go's
/// `Time.Round`).
fn round_to_multiple(t: i64, h: i64) -> i64 {
    let (t, h) = (i128::from(t), i128::from(h));
    let r = (t + h / 2).div_euclid(h) * h;
    r.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests;
