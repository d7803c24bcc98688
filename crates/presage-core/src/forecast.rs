use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::{CoreError, Resource, ResourceMap, Timestamp, check_quantity};

/// The number of quantile levels every forecast carries.
pub const QUANTILE_COUNT: usize = 10;

/// The quantile levels every forecast carries, lowest first. `p5` gives the envelope a
/// lower bound; the dense upper tail (p98 … p99.9) is what a limit at a small risk is read
/// from, so it is resolved finely there rather than interpolated across a wide gap.
pub const QUANTILE_LEVELS: [f64; QUANTILE_COUNT] =
    [0.05, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0];

const QUANTILE_NAMES: [&str; QUANTILE_COUNT] = [
    "p5", "p50", "p75", "p90", "p95", "p98", "p99", "p99_5", "p99_9", "max",
];

/// A forecast distribution of one resource at one horizon, as quantiles in the resource's
/// unit. Always finite, non-negative and non-decreasing (`p5 ≤ p50 ≤ … ≤ max`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawQuantiles", into = "RawQuantiles")]
pub struct Quantiles([f64; QUANTILE_COUNT]);

#[derive(Serialize, Deserialize)]
struct RawQuantiles {
    p5: f64,
    p50: f64,
    p75: f64,
    p90: f64,
    p95: f64,
    p98: f64,
    p99: f64,
    p99_5: f64,
    p99_9: f64,
    max: f64,
}

impl TryFrom<RawQuantiles> for Quantiles {
    type Error = CoreError;
    fn try_from(r: RawQuantiles) -> Result<Self, Self::Error> {
        Quantiles::new([
            r.p5, r.p50, r.p75, r.p90, r.p95, r.p98, r.p99, r.p99_5, r.p99_9, r.max,
        ])
    }
}

impl From<Quantiles> for RawQuantiles {
    fn from(q: Quantiles) -> Self {
        let [p5, p50, p75, p90, p95, p98, p99, p99_5, p99_9, max] = q.0;
        RawQuantiles {
            p5,
            p50,
            p75,
            p90,
            p95,
            p98,
            p99,
            p99_5,
            p99_9,
            max,
        }
    }
}

impl Quantiles {
    /// Quantiles at the levels of [`QUANTILE_LEVELS`], lowest first.
    pub fn new(values: [f64; QUANTILE_COUNT]) -> Result<Self, CoreError> {
        for (name, v) in QUANTILE_NAMES.iter().zip(values) {
            check_quantity(name, v)?;
        }
        for i in 1..values.len() {
            if values[i] < values[i - 1] {
                return Err(CoreError::QuantilesOutOfOrder {
                    lower_name: QUANTILE_NAMES[i - 1],
                    lower: values[i - 1],
                    upper_name: QUANTILE_NAMES[i],
                    upper: values[i],
                });
            }
        }
        Ok(Quantiles(values))
    }

    /// A degenerate distribution: every quantile equals `value`.
    pub fn point(value: f64) -> Result<Self, CoreError> {
        Quantiles::new([value; QUANTILE_COUNT])
    }

    /// Builds quantiles from any quantile function, then sorts out tiny inversions
    /// (a running max), so model code cannot hand out an unordered distribution.
    pub fn from_fn(mut f: impl FnMut(f64) -> f64) -> Result<Self, CoreError> {
        let mut values = QUANTILE_LEVELS.map(|q| f(q).max(0.0));
        for i in 1..values.len() {
            values[i] = values[i].max(values[i - 1]);
        }
        Quantiles::new(values)
    }

    /// The values at [`QUANTILE_LEVELS`], lowest first.
    pub fn values(&self) -> [f64; QUANTILE_COUNT] {
        self.0
    }

    /// The 5th percentile.
    pub fn p5(&self) -> f64 {
        self.0[0]
    }
    /// The median.
    pub fn p50(&self) -> f64 {
        self.0[1]
    }
    /// The 90th percentile.
    pub fn p90(&self) -> f64 {
        self.0[3]
    }
    /// The 95th percentile.
    pub fn p95(&self) -> f64 {
        self.0[4]
    }
    /// The 99th percentile.
    pub fn p99(&self) -> f64 {
        self.0[6]
    }
    /// The forecast maximum.
    pub fn max(&self) -> f64 {
        self.0[QUANTILE_COUNT - 1]
    }

    /// The value at quantile level `q` ∈ [0, 1], interpolating linearly between the stored
    /// levels and from 0 (at level 0) up to `p5`.
    pub fn value_at(&self, q: f64) -> f64 {
        let q = q.clamp(0.0, 1.0);
        let (mut lo_q, mut lo_v) = (0.0, 0.0);
        for (level, value) in QUANTILE_LEVELS.iter().zip(self.0) {
            if q <= *level {
                let span = level - lo_q;
                return if span <= 0.0 {
                    value
                } else {
                    lo_v + (value - lo_v) * (q - lo_q) / span
                };
            }
            (lo_q, lo_v) = (*level, value);
        }
        self.max()
    }

    /// P(usage > `limit`) under this distribution: 1 − CDF(limit), with the CDF linear
    /// between the stored levels. 0 at or above `max`.
    pub fn exceedance(&self, limit: f64) -> f64 {
        if limit >= self.max() {
            return 0.0;
        }
        if limit < 0.0 {
            return 1.0;
        }
        let (mut lo_q, mut lo_v) = (0.0, 0.0);
        for (level, value) in QUANTILE_LEVELS.iter().zip(self.0) {
            if limit < value {
                let cdf = if value > lo_v {
                    lo_q + (level - lo_q) * (limit - lo_v) / (value - lo_v)
                } else {
                    lo_q
                };
                return (1.0 - cdf).clamp(0.0, 1.0);
            }
            (lo_q, lo_v) = (*level, value);
        }
        0.0
    }

    /// The limit that minimises `limit + price · P(usage > limit)`: what a unit of
    /// resource costs against what one violation costs, `price` being the violation's cost
    /// in units of the resource (a newsvendor rule). With the CDF linear between the
    /// stored levels the objective is linear between them, so the best limit is one of
    /// the stored values. A higher price buys a lower risk; 0 gives the median.
    pub fn priced_limit(&self, price: f64) -> f64 {
        let price = if price.is_finite() {
            price.max(0.0)
        } else {
            f64::MAX
        };
        let mut best = (f64::INFINITY, self.max());
        for (level, value) in QUANTILE_LEVELS.iter().zip(self.0).skip(1) {
            let cost = value + price * (1.0 - level);
            if cost < best.0 {
                best = (cost, value);
            }
        }
        best.1
    }

    /// The element-wise maximum of two distributions (an upper envelope over horizons).
    pub fn upper(&self, other: &Quantiles) -> Quantiles {
        Quantiles(std::array::from_fn(|i| self.0[i].max(other.0[i])))
    }
}

/// Whether a workload's demand comes in short bursts or is sustained (seed 000). The
/// allocator holds bursty workloads' limits shorter and with more headroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurstClass {
    /// Short peaks over a low base.
    Bursty,
    /// Demand that stays near its level.
    Sustained,
}

/// The forecast of every forecast resource at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonForecast {
    /// How far ahead of `issued_at` this is, in seconds.
    pub horizon_s: u32,
    /// The distribution per resource; absent for resources the model does not forecast.
    pub quantiles: ResourceMap<Option<Quantiles>>,
}

/// A forecast: per horizon, per resource, a distribution of the demand over the interval
/// ending that far ahead of `issued_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawForecast")]
pub struct Forecast {
    issued_at: Timestamp,
    model: Cow<'static, str>,
    #[serde(default)]
    class: ResourceMap<Option<BurstClass>>,
    horizons: Vec<HorizonForecast>,
}

#[derive(Deserialize)]
struct RawForecast {
    issued_at: Timestamp,
    model: String,
    #[serde(default)]
    class: ResourceMap<Option<BurstClass>>,
    horizons: Vec<HorizonForecast>,
}

impl TryFrom<RawForecast> for Forecast {
    type Error = CoreError;
    fn try_from(r: RawForecast) -> Result<Self, Self::Error> {
        let mut f = Forecast::new(r.issued_at, r.model, r.horizons)?;
        f.class = r.class;
        Ok(f)
    }
}

impl Forecast {
    /// A forecast made at `issued_at` by `model`. Horizons must be positive and strictly
    /// increasing; there must be at least one.
    pub fn new(
        issued_at: Timestamp,
        model: impl Into<Cow<'static, str>>,
        horizons: Vec<HorizonForecast>,
    ) -> Result<Self, CoreError> {
        let model = model.into();
        if model.trim().is_empty() {
            return Err(CoreError::Empty {
                what: "forecast model name",
            });
        }
        if horizons.is_empty() {
            return Err(CoreError::Empty {
                what: "forecast horizons",
            });
        }
        let mut previous = 0;
        for h in &horizons {
            if h.horizon_s <= previous {
                return Err(CoreError::OutOfRange {
                    what: "forecast horizon_s (must be positive and increasing)",
                    range: "(previous horizon, 2^32)",
                    value: f64::from(h.horizon_s),
                });
            }
            previous = h.horizon_s;
        }
        Ok(Forecast {
            issued_at,
            model,
            class: ResourceMap::none(),
            horizons,
        })
    }

    /// Marks the burst class of `resource`.
    pub fn with_class(mut self, resource: Resource, class: BurstClass) -> Self {
        self.class.set(resource, Some(class));
        self
    }

    /// When the forecast was made.
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// The model that made it.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The model's name as carried (no copy when it is a static name).
    pub fn model_name(&self) -> Cow<'static, str> {
        self.model.clone()
    }

    /// The burst class of `resource`, if the model classified it.
    pub fn class(&self, resource: Resource) -> Option<BurstClass> {
        *self.class.get(resource)
    }

    /// The horizons, shortest first.
    pub fn horizons(&self) -> &[HorizonForecast] {
        &self.horizons
    }

    /// The distribution of `resource` at the shortest horizon of at least `horizon_s`
    /// (or the longest there is).
    pub fn at(&self, resource: Resource, horizon_s: u32) -> Option<&Quantiles> {
        let h = self
            .horizons
            .iter()
            .find(|h| h.horizon_s >= horizon_s)
            .or(self.horizons.last())?;
        h.quantiles.get(resource).as_ref()
    }

    /// The upper envelope of `resource` over every horizon up to `horizon_s` (at least the
    /// first): what the workload may need at any point in that window.
    pub fn peak_within(&self, resource: Resource, horizon_s: u32) -> Option<Quantiles> {
        let mut out: Option<Quantiles> = None;
        for (i, h) in self.horizons.iter().enumerate() {
            if i > 0 && h.horizon_s > horizon_s {
                break;
            }
            if let Some(q) = h.quantiles.get(resource) {
                out = Some(out.map_or(*q, |o| o.upper(q)));
            }
        }
        out
    }

    /// The risk score of `resource`: the probability that usage exceeds `limit` at some
    /// horizon up to `horizon_s`, taken as the largest per-horizon exceedance (a lower
    /// bound on the union, exact when the horizons are fully correlated).
    pub fn risk(&self, resource: Resource, limit: f64, horizon_s: u32) -> Option<f64> {
        let mut risk: Option<f64> = None;
        for (i, h) in self.horizons.iter().enumerate() {
            if i > 0 && h.horizon_s > horizon_s {
                break;
            }
            if let Some(q) = h.quantiles.get(resource) {
                let r = q.exceedance(limit);
                risk = Some(risk.map_or(r, |x: f64| x.max(r)));
            }
        }
        risk
    }

    /// The envelope of `resource` at `horizon_s` with the given two-sided confidence.
    pub fn envelope(
        &self,
        resource: Resource,
        horizon_s: u32,
        confidence: f64,
    ) -> Option<Result<Envelope, CoreError>> {
        let q = self.at(resource, horizon_s)?;
        let tail = (1.0 - confidence) / 2.0;
        Some(Envelope::new(
            q.value_at(tail),
            q.value_at(1.0 - tail),
            confidence,
        ))
    }
}

/// A range the demand is expected to stay within, at a stated confidence (seed 002's
/// "resource envelope").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEnvelope")]
pub struct Envelope {
    low: f64,
    high: f64,
    confidence: f64,
}

#[derive(Deserialize)]
struct RawEnvelope {
    low: f64,
    high: f64,
    confidence: f64,
}

impl TryFrom<RawEnvelope> for Envelope {
    type Error = CoreError;
    fn try_from(r: RawEnvelope) -> Result<Self, Self::Error> {
        Envelope::new(r.low, r.high, r.confidence)
    }
}

impl Envelope {
    /// `[low, high]` at `confidence` ∈ (0, 1].
    pub fn new(low: f64, high: f64, confidence: f64) -> Result<Self, CoreError> {
        check_quantity("envelope low", low)?;
        check_quantity("envelope high", high)?;
        if low > high {
            return Err(CoreError::EnvelopeInverted { low, high });
        }
        if !(confidence > 0.0 && confidence <= 1.0) {
            return Err(CoreError::OutOfRange {
                what: "envelope confidence",
                range: "(0, 1]",
                value: confidence,
            });
        }
        Ok(Envelope {
            low,
            high,
            confidence,
        })
    }

    /// Lower bound.
    pub fn low(&self) -> f64 {
        self.low
    }
    /// Upper bound.
    pub fn high(&self) -> f64 {
        self.high
    }
    /// Confidence the demand stays within.
    pub fn confidence(&self) -> f64 {
        self.confidence
    }
    /// Whether `value` lies within the envelope.
    pub fn contains(&self, value: f64) -> bool {
        (self.low..=self.high).contains(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantiles from `[p5, p50, p90, p95, p99, max]`, the intermediate levels filled by
    /// the neighbouring value below (a valid, ordered distribution).
    fn q(v: [f64; 6]) -> Quantiles {
        Quantiles::new([v[0], v[1], v[1], v[2], v[3], v[3], v[4], v[4], v[4], v[5]])
            .expect("valid quantiles")
    }

    #[test]
    fn quantiles_reject_disorder_nan_and_negatives() {
        assert!(matches!(
            Quantiles::new([0.0, 1.0, 2.0, 3.0, 2.0, 4.0, 4.0, 4.0, 4.0, 5.0]),
            Err(CoreError::QuantilesOutOfOrder {
                lower_name: "p90",
                upper_name: "p95",
                ..
            })
        ));
        assert!(matches!(
            Quantiles::new([0.0, f64::NAN, 3.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0]),
            Err(CoreError::NotFinite { what: "p50", .. })
        ));
        assert!(matches!(
            Quantiles::new([-1.0, 1.0, 3.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0]),
            Err(CoreError::Negative { what: "p5", .. })
        ));
        let ordered = r#"{"p5":0,"p50":1,"p75":1,"p90":2,"p95":3,"p98":3,"p99":4,"p99_5":4,"p99_9":4,"max":5}"#;
        assert!(serde_json::from_str::<Quantiles>(ordered).is_ok());
        let unordered = ordered.replace(r#""p90":2"#, r#""p90":0.5"#);
        assert!(serde_json::from_str::<Quantiles>(&unordered).is_err());
    }

    #[test]
    fn exceedance_inverts_value_at() {
        let d =
            Quantiles::new([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0, 9.5, 10.0]).expect("ordered");
        assert_eq!(d.exceedance(10.0), 0.0);
        assert_eq!(d.exceedance(11.0), 0.0);
        assert!((d.exceedance(2.0) - 0.5).abs() < 1e-12);
        // Halfway between p90 = 4 and p95 = 5: CDF 0.925.
        assert!((d.exceedance(4.5) - 0.075).abs() < 1e-12);
        for level in [0.01, 0.3, 0.5, 0.7, 0.93, 0.97, 0.995] {
            let v = d.value_at(level);
            assert!(
                (d.exceedance(v) - (1.0 - level)).abs() < 1e-9,
                "level {level}"
            );
        }
    }

    #[test]
    fn priced_limit_trades_resource_against_violations() {
        let d =
            Quantiles::new([0.0, 1.0, 1.2, 1.4, 1.6, 2.0, 2.4, 3.0, 5.0, 9.0]).expect("ordered");
        // Free violations: the median.
        assert_eq!(d.priced_limit(0.0), 1.0);
        // Price 20: p90 costs 1.4 + 2.0 = 3.4, p95 1.6 + 1.0 = 2.6, p98 2.0 + 0.4 = 2.4,
        // p99 2.4 + 0.2 = 2.6 — p98 wins.
        assert_eq!(d.priced_limit(20.0), 2.0);
        // Price 10 000: p99.9 costs 5 + 10 = 15 against max 9 — max wins.
        assert_eq!(d.priced_limit(10_000.0), 9.0);
        assert_eq!(d.priced_limit(f64::INFINITY), 9.0);
        // The limit never falls as the price rises.
        let mut last = 0.0;
        for price in [0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3, 1e4] {
            let l = d.priced_limit(price);
            assert!(l >= last);
            last = l;
        }
    }

    #[test]
    fn from_fn_repairs_small_inversions() -> Result<(), CoreError> {
        let d = Quantiles::from_fn(|level| if level == 0.9 { 0.5 } else { level })?;
        // p90 = 0.5 is below p75 = 0.75: it is lifted to p75.
        assert_eq!(d.p90(), 0.75);
        Ok(())
    }

    fn horizon(s: u32, d: Quantiles) -> HorizonForecast {
        let mut quantiles = ResourceMap::none();
        quantiles.set(Resource::Cpu, Some(d));
        HorizonForecast {
            horizon_s: s,
            quantiles,
        }
    }

    #[test]
    fn forecast_validates_horizons() {
        let d = q([1.0; 6]);
        let t = Timestamp::from_unix_secs(0);
        assert!(Forecast::new(t, "m", vec![]).is_err());
        assert!(Forecast::new(t, "m", vec![horizon(0, d)]).is_err());
        assert!(Forecast::new(t, "m", vec![horizon(60, d), horizon(60, d)]).is_err());
        assert!(Forecast::new(t, "", vec![horizon(60, d)]).is_err());
    }

    #[test]
    fn risk_and_peak_take_the_worst_horizon() -> Result<(), CoreError> {
        let low = q([0.5, 1.0, 1.0, 1.0, 1.0, 1.0]);
        let high = q([0.5, 1.0, 2.0, 3.0, 4.0, 6.0]);
        let f = Forecast::new(
            Timestamp::from_unix_secs(0),
            "m",
            vec![horizon(60, low), horizon(300, high)],
        )?;
        assert_eq!(f.risk(Resource::Cpu, 1.5, 60), Some(0.0));
        assert!(f.risk(Resource::Cpu, 1.5, 300).is_some_and(|r| r > 0.1));
        assert_eq!(
            f.peak_within(Resource::Cpu, 300).map(|p| p.max()),
            Some(6.0)
        );
        assert_eq!(f.risk(Resource::Memory, 1.0, 300), None);
        let env = f
            .envelope(Resource::Cpu, 300, 0.9)
            .transpose()?
            .ok_or(CoreError::Empty { what: "envelope" })?;
        assert!(
            (env.low() - 0.5).abs() < 1e-9 && (env.high() - 3.0).abs() < 1e-9,
            "{env:?}"
        );
        Ok(())
    }

    #[test]
    fn envelope_rejects_bad_bounds() {
        assert!(matches!(
            Envelope::new(2.0, 1.0, 0.9),
            Err(CoreError::EnvelopeInverted { .. })
        ));
        assert!(matches!(
            Envelope::new(1.0, 2.0, 0.0),
            Err(CoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            Envelope::new(-1.0, 2.0, 0.5),
            Err(CoreError::Negative { .. })
        ));
        assert!(Envelope::new(1.0, 2.0, 0.9).is_ok_and(|e| e.contains(1.5)));
    }
}
