//! The execution summary `presage run` prints and writes at exit: how long the command
//! ran, what it used (peak and mean per resource), what it suffered (OOM kills,
//! throttling) and how presage moved its limits.

use std::collections::BTreeMap;

use presage_core::{Limits, Resource, Sample};
use serde::Serialize;

/// The summary of one supervised run (the `--summary-json` contract: cores, bytes,
/// seconds, bytes/s).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionSummary {
    /// The run's name.
    pub name: String,
    /// The cgroup it ran in.
    pub cgroup: String,
    /// SHA-256 of the executable (plus `@version` when given).
    pub code_id: String,
    /// Hash of the arguments.
    pub input_hash: String,
    /// The invoking uid.
    pub user: u32,
    /// Wall-clock seconds from start to exit.
    pub duration_s: f64,
    /// The command's exit status (128 + signal when killed by one, as shells report).
    pub exit_status: i32,
    /// Highest interval figure per resource.
    pub peaks: BTreeMap<&'static str, f64>,
    /// Mean per resource over the run (CPU from the cgroup's total CPU time).
    pub mean: BTreeMap<&'static str, f64>,
    /// Processes OOM-killed in the run's cgroup.
    pub oom_kills: u64,
    /// Seconds the run's cgroup spent throttled by its CPU quota.
    pub throttled_s: f64,
    /// Limit changes made (applied, or recorded when not enforcing).
    pub decisions: u64,
    /// Interval samples taken.
    pub samples: u64,
    /// The limits in force at exit.
    pub limits_final: Limits,
    /// Time-averaged limit in force per resource (CPU cores, memory bytes): the
    /// allocation the run held. A resource without a limit counts at the host's
    /// capacity — what an unlimited workload can take.
    pub mean_limits: BTreeMap<&'static str, f64>,
    /// Whether the run started from a stored profile of its code (known code: no warm-up).
    pub profile_restored: bool,
    /// Whether presage managed the run itself or a running agent did.
    pub managed_by: String,
}

/// Accumulates samples into a summary.
#[derive(Debug, Default, Clone)]
pub struct SummaryBuilder {
    peaks: BTreeMap<&'static str, f64>,
    sums: BTreeMap<&'static str, (f64, f64)>,
    oom_kills: u64,
    throttled_s: f64,
    samples: u64,
    limit_sums: BTreeMap<&'static str, (f64, f64)>,
}

impl SummaryBuilder {
    /// Takes one interval sample into the peaks, means and event totals.
    pub fn observe(&mut self, sample: &Sample) {
        let weight = f64::from(sample.interval_ms()) / 1000.0;
        for (resource, value) in sample.usage().iter() {
            let name = resource.name();
            let peak = self.peaks.entry(name).or_insert(value);
            *peak = peak.max(value);
            let (sum, w) = self.sums.entry(name).or_insert((0.0, 0.0));
            *sum += value * weight;
            *w += weight;
        }
        self.oom_kills += u64::from(sample.events().oom_kills);
        self.throttled_s += sample.events().cpu_throttled_s;
        self.samples += 1;
    }

    /// Takes the limits in force for the last `dt_s` seconds into the mean allocation;
    /// a missing limit counts as `capacity` (cores, bytes).
    pub fn observe_limits(&mut self, limits: &Limits, dt_s: f64, capacity: (f64, f64)) {
        if !(dt_s.is_finite() && dt_s > 0.0) {
            return;
        }
        let figures = [
            (
                Resource::Cpu,
                limits.cpu_quota_cores().unwrap_or(capacity.0),
            ),
            (
                Resource::Memory,
                limits.memory_max_bytes().unwrap_or(capacity.1),
            ),
        ];
        for (resource, value) in figures {
            let (sum, w) = self.limit_sums.entry(resource.name()).or_insert((0.0, 0.0));
            *sum += value * dt_s;
            *w += dt_s;
        }
    }

    /// The time-averaged limits so far.
    pub fn mean_limits(&self) -> BTreeMap<&'static str, f64> {
        self.limit_sums
            .iter()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(k, (s, w))| (*k, s / w))
            .collect()
    }

    /// Samples taken so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The peaks and means so far, with the mean CPU replaced by `cpu_mean` when the
    /// caller has it from the whole run's counters (exact even for runs shorter than
    /// one interval).
    pub fn figures(
        &self,
        cpu_mean: Option<f64>,
    ) -> (BTreeMap<&'static str, f64>, BTreeMap<&'static str, f64>) {
        let mut mean: BTreeMap<&'static str, f64> = self
            .sums
            .iter()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(k, (s, w))| (*k, s / w))
            .collect();
        let mut peaks = self.peaks.clone();
        if let Some(c) = cpu_mean {
            let name = Resource::Cpu.name();
            mean.insert(name, c);
            let p = peaks.entry(name).or_insert(c);
            *p = p.max(c);
        }
        (peaks, mean)
    }

    /// OOM kills and throttled seconds so far.
    pub fn events(&self) -> (u64, f64) {
        (self.oom_kills, self.throttled_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presage_core::{Events, Timestamp, Usage, WorkloadId};

    fn sample(at: i64, cpu: f64, mem: f64, ooms: u32) -> Sample {
        let usage = Usage::empty()
            .with(Resource::Cpu, cpu)
            .unwrap()
            .with(Resource::Memory, mem)
            .unwrap();
        Sample::new(
            Timestamp::from_unix_secs(at),
            WorkloadId::new("w").unwrap(),
            1000,
            usage,
        )
        .unwrap()
        .with_events(Events {
            oom_kills: ooms,
            cpu_throttled_s: 0.25,
            ..Events::default()
        })
        .unwrap()
    }

    #[test]
    fn peaks_means_and_events_accumulate() {
        let mut b = SummaryBuilder::default();
        b.observe(&sample(1, 0.5, 100.0, 0));
        b.observe(&sample(2, 1.5, 300.0, 1));
        let (peaks, mean) = b.figures(None);
        assert_eq!(peaks["cpu"], 1.5);
        assert_eq!(peaks["memory"], 300.0);
        assert!((mean["cpu"] - 1.0).abs() < 1e-12);
        assert!((mean["memory"] - 200.0).abs() < 1e-12);
        assert_eq!(b.events(), (1, 0.5));
        let (peaks, mean) = b.figures(Some(0.9));
        assert_eq!(mean["cpu"], 0.9);
        assert_eq!(peaks["cpu"], 1.5);
        let half = Limits::unlimited().with_hard(Resource::Cpu, 0.5).unwrap();
        b.observe_limits(&half, 3.0, (2.0, 1e9));
        b.observe_limits(&Limits::unlimited(), 1.0, (2.0, 1e9));
        let m = b.mean_limits();
        assert!((m["cpu"] - 0.875).abs() < 1e-12);
        assert!((m["memory"] - 1e9).abs() < 1e-3);
    }
}
