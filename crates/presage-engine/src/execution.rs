//! One run of a workload, tallied as it goes, for the executions table — and how good
//! the prior it started from turned out to be.

use presage_core::{Resource, ResourceMap, Sample, Timestamp, WorkloadId, WorkloadKey};
use presage_forecast::Forecaster;

use crate::{Execution, PriorSource};

/// Peaks and totals so far, and what the prior predicted at the start.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunTally {
    started: Option<Timestamp>,
    samples: u64,
    peak: ResourceMap<Option<f64>>,
    total: ResourceMap<Option<f64>>,
    seconds: f64,
    prior: Option<PriorSource>,
    /// The prior's median at its first horizon, for CPU and memory, taken before the
    /// first sample taught the model anything.
    prior_median: Option<[Option<f64>; 2]>,
}

const JUDGED: [Resource; 2] = [Resource::Cpu, Resource::Memory];

impl RunTally {
    pub(crate) fn new(prior: Option<PriorSource>) -> Self {
        RunTally {
            prior,
            ..RunTally::default()
        }
    }

    /// Counts `sample`; on the first one, asks the restored forecaster what it expected.
    pub(crate) fn observe(
        &mut self,
        sample: &Sample,
        forecaster: Option<&dyn Forecaster>,
        first_horizon_s: u32,
    ) {
        if self.started.is_none() {
            self.started = Some(sample.at());
            if self.prior.is_some() {
                self.prior_median = forecaster.map(|f| {
                    JUDGED.map(|r| {
                        f.quantiles(sample.at(), first_horizon_s, r)
                            .map(|q| q.p50())
                    })
                });
            }
        }
        let dt = f64::from(sample.interval_ms()) / 1000.0;
        self.samples += 1;
        self.seconds += dt;
        for r in Resource::ALL {
            if let Some(v) = sample.usage().get(r) {
                let peak = self.peak.get_mut(r);
                *peak = Some(peak.map_or(v, |p| p.max(v)));
                let total = self.total.get_mut(r);
                *total = Some(total.unwrap_or(0.0) + v * dt);
            }
        }
    }

    /// The finished run. The prior's error is |predicted median − observed mean| /
    /// observed mean, averaged over CPU and memory where both are known and the mean
    /// is not zero: a mean is all a run can be judged on without keeping its samples.
    pub(crate) fn finish(
        self,
        workload: WorkloadId,
        key: WorkloadKey,
        ended: Timestamp,
        exit_status: Option<i32>,
    ) -> Execution {
        let prior_error = self.prior_median.and_then(|predicted| {
            let errors: Vec<f64> = JUDGED
                .iter()
                .zip(predicted)
                .filter_map(|(&r, p)| {
                    let (p, mean) = (p?, (*self.total.get(r))? / self.seconds);
                    (mean > 0.0).then(|| (p - mean).abs() / mean)
                })
                .collect();
            (!errors.is_empty()).then(|| errors.iter().sum::<f64>() / errors.len() as f64)
        });
        Execution {
            workload,
            key,
            started: self.started.unwrap_or(ended),
            ended,
            exit_status,
            samples: self.samples,
            peak: self.peak,
            total: self.total,
            prior: self.prior,
            prior_error,
        }
    }
}
