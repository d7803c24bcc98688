//! CPU budgets: CPU-seconds per window. The tracker counts what the instance used in the
//! current window and caps its quota so that, running flat out at the cap for the rest
//! of the window, it stays inside the budget — the budget is spread over the window
//! rather than spent at once and then starved. An exhausted budget holds the quota at
//! the kernel's minimum ([`crate::MIN_CPU_CORES`]) until the window renews: the one way
//! the budget can be overrun, by at most that minimum × the rest of the window.

use presage_core::{Resource, Sample, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{Budget, MIN_CPU_CORES};

/// Tracks one instance's CPU use against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetTracker {
    budget: Budget,
    window_start: Option<Timestamp>,
    used_cpu_seconds: f64,
}

impl BudgetTracker {
    /// A tracker for `budget`, its first window starting with the first sample.
    pub fn new(budget: Budget) -> Self {
        BudgetTracker {
            budget,
            window_start: None,
            used_cpu_seconds: 0.0,
        }
    }

    /// Counts a sample's CPU use.
    pub fn observe(&mut self, sample: &Sample) {
        let window_ms = i64::from(self.budget.window_s) * 1000;
        let start = *self
            .window_start
            .get_or_insert(sample.at().plus_ms(-i64::from(sample.interval_ms())));
        if sample.at().unix_ms() - start.unix_ms() > window_ms {
            // A new window (or several, after a gap): what was used before is forgiven.
            let windows = (sample.at().unix_ms() - start.unix_ms()) / window_ms;
            self.window_start = Some(start.plus_ms(windows * window_ms));
            self.used_cpu_seconds = 0.0;
        }
        if let Some(cores) = sample.usage().get(Resource::Cpu) {
            self.used_cpu_seconds += cores * f64::from(sample.interval_ms()) / 1000.0;
        }
    }

    /// CPU-seconds used in the current window.
    pub fn used_cpu_seconds(&self) -> f64 {
        self.used_cpu_seconds
    }

    /// The highest CPU quota, in cores, that keeps the instance inside its budget for the
    /// rest of the window (`None`: no CPU budget).
    pub fn cpu_cap(&self, now: Timestamp) -> Option<f64> {
        let budget = self.budget.cpu_seconds?;
        let window_s = f64::from(self.budget.window_s);
        let elapsed = self
            .window_start
            .map_or(0.0, |s| now.secs_since(s).clamp(0.0, window_s));
        let remaining_s = (window_s - elapsed).max(1.0);
        let left = (budget - self.used_cpu_seconds).max(0.0);
        Some((left / remaining_s).max(MIN_CPU_CORES))
    }
}

#[cfg(test)]
mod tests {
    use presage_core::{Usage, WorkloadId};

    use super::*;

    fn sample(t: i64, cores: f64) -> Sample {
        Sample::new(
            Timestamp::from_unix_secs(t),
            WorkloadId::new("w").expect("id"),
            60_000,
            Usage::empty().with(Resource::Cpu, cores).expect("usage"),
        )
        .expect("sample")
    }

    #[test]
    fn the_cap_spreads_what_is_left_over_what_remains() {
        // 1800 CPU-seconds per hour. After 10 minutes at 2 cores (1200 s used), 600 s are
        // left for 50 minutes: 0.2 cores.
        let mut b = BudgetTracker::new(Budget {
            cpu_seconds: Some(1800.0),
            window_s: 3600,
            memory_bytes: None,
        });
        for m in 1..=10 {
            b.observe(&sample(m * 60, 2.0));
        }
        assert_eq!(b.used_cpu_seconds(), 1200.0);
        let cap = b.cpu_cap(Timestamp::from_unix_secs(600)).unwrap_or(0.0);
        assert!((cap - 0.2).abs() < 1e-9, "{cap}");
        // Spent: the kernel's minimum until the window renews, then the budget is back.
        for m in 11..=20 {
            b.observe(&sample(m * 60, 2.0));
        }
        assert_eq!(
            b.cpu_cap(Timestamp::from_unix_secs(1200)),
            Some(MIN_CPU_CORES)
        );
        b.observe(&sample(3660, 0.0));
        let fresh = b.cpu_cap(Timestamp::from_unix_secs(3660)).unwrap_or(0.0);
        assert!((fresh - 1800.0 / 3540.0).abs() < 1e-6, "{fresh}");
    }

    #[test]
    fn no_cpu_budget_means_no_cap() {
        let b = BudgetTracker::new(Budget {
            cpu_seconds: None,
            window_s: 60,
            memory_bytes: Some(1e9),
        });
        assert_eq!(b.cpu_cap(Timestamp::from_unix_secs(0)), None);
    }
}
