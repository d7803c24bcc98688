//! Exponentially growing histogram buckets, laid out as Kubernetes VPA lays them out
//! (ANCHORS.md §1.3): bucket 0 covers `[0, first)`, bucket *n* has width `first·rⁿ`, so
//! bucket *n* starts at `first·(rⁿ − 1)/(r − 1)`. Shared by every histogram-based model
//! and baseline, so they all agree on where a value falls.

use serde::{Deserialize, Serialize};

use crate::ForecastError;

/// A bucket layout: `count` buckets growing by `ratio`, the first `first` wide.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExponentialBuckets {
    first: f64,
    ratio: f64,
    count: usize,
}

impl ExponentialBuckets {
    /// Buckets from 0 up to at least `max`, the first `first` wide, each `1 + growth` times
    /// the previous. VPA's CPU layout is `new(0.01, 1000.0, 0.05)` (176 buckets).
    pub fn new(first: f64, max: f64, growth: f64) -> Result<Self, ForecastError> {
        let check = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ForecastError::InvalidSetting {
                    field,
                    value: v.to_string(),
                    reason: "must be a positive number",
                })
            }
        };
        check("first bucket size", first)?;
        check("growth", growth)?;
        check("max value", max)?;
        if max <= first {
            return Err(ForecastError::InvalidSetting {
                field: "max value",
                value: max.to_string(),
                reason: "must exceed the first bucket size",
            });
        }
        let ratio = 1.0 + growth;
        // VPA's count: ⌈log_r(max·(r−1)/first + 1)⌉ + 1 (176 for its CPU and memory layouts).
        let count = ((max * (ratio - 1.0) / first + 1.0).ln() / ratio.ln()).ceil() as usize + 1;
        Ok(ExponentialBuckets {
            first,
            ratio,
            count,
        })
    }

    /// VPA's CPU layout: 0.01 core first bucket, up to 1000 cores, 5 % growth.
    pub fn vpa_cpu() -> Self {
        ExponentialBuckets {
            first: 0.01,
            ratio: 1.05,
            count: 176,
        }
    }

    /// VPA's memory layout: 10 MB (1e7 bytes) first bucket, up to 1e12 bytes, 5 % growth.
    pub fn vpa_memory() -> Self {
        ExponentialBuckets {
            first: 1e7,
            ratio: 1.05,
            count: 176,
        }
    }

    /// `(first bucket width, ratio, count)`, as a saved state holds them.
    pub(crate) fn parts(&self) -> (f64, f64, usize) {
        (self.first, self.ratio, self.count)
    }

    /// A layout from saved parts, unchecked as a deserialised one is (a histogram checks
    /// its layout before using it).
    pub(crate) fn from_parts(first: f64, ratio: f64, count: usize) -> Self {
        ExponentialBuckets {
            first,
            ratio,
            count,
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a layout has at least one bucket.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bucket `value` falls in (values past the last bucket fall in it; negative and
    /// NaN values fall in bucket 0).
    pub fn index_of(&self, value: f64) -> usize {
        if value.is_nan() || value <= 0.0 {
            return 0;
        }
        let i = ((value * (self.ratio - 1.0) / self.first + 1.0).ln() / self.ratio.ln()).floor();
        if i.is_finite() {
            (i.max(0.0) as usize).min(self.count - 1)
        } else {
            self.count - 1
        }
    }

    /// Where bucket `i` starts.
    pub fn start(&self, i: usize) -> f64 {
        self.first * (self.ratio.powi(i as i32) - 1.0) / (self.ratio - 1.0)
    }

    /// Where bucket `i` ends (the start of the next).
    pub fn end(&self, i: usize) -> f64 {
        self.start(i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpa_layouts_have_176_buckets() -> Result<(), ForecastError> {
        assert_eq!(
            ExponentialBuckets::new(0.01, 1000.0, 0.05)?,
            ExponentialBuckets::vpa_cpu()
        );
        assert_eq!(
            ExponentialBuckets::new(1e7, 1e12, 0.05)?,
            ExponentialBuckets::vpa_memory()
        );
        Ok(())
    }

    #[test]
    fn values_fall_inside_their_bucket() {
        let b = ExponentialBuckets::vpa_cpu();
        assert_eq!(b.index_of(0.0), 0);
        assert_eq!(b.index_of(0.009), 0);
        assert_eq!(b.index_of(0.01), 1);
        assert_eq!(b.index_of(1e9), b.len() - 1);
        assert_eq!(b.index_of(f64::NAN), 0);
        for v in [0.015, 0.5, 1.0, 3.3, 77.0, 999.0] {
            let i = b.index_of(v);
            assert!(
                b.start(i) <= v && v < b.end(i),
                "{v} in [{}, {})",
                b.start(i),
                b.end(i)
            );
            assert!((b.end(i) - b.start(i) - 0.01 * 1.05f64.powi(i as i32)).abs() < 1e-9);
        }
    }

    #[test]
    fn bad_layouts_are_rejected() {
        assert!(ExponentialBuckets::new(0.0, 10.0, 0.05).is_err());
        assert!(ExponentialBuckets::new(1.0, 0.5, 0.05).is_err());
        assert!(ExponentialBuckets::new(1.0, 10.0, -0.05).is_err());
    }
}
