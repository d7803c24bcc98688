//! The live anomaly scorer: one per workload, updated with every sample and the forecast
//! made before it. Five components, each a *ratio* to its own threshold (1 = at the
//! threshold), capped at [`MAX_RATIO`]:
//!
//! - **envelope**: mean normalised excess above the forecast p99 over a short window;
//! - **shift**: the streaming detector's likelihood z-score per resource (level shifts,
//!   change points, a periodic pattern broken);
//! - **leak**: memory rising at nearly every step (Mann–Kendall τ), fast enough
//!   (Theil–Sen slope) and above anything seen before the window;
//! - **process explosion**: processes far above the most seen (ratio and absolute);
//! - **sustained CPU**: a busy run (CPU at ≥ half its peak) far longer than any seen
//!   before — a periodic burner that stops sleeping, a spin loop;
//! - **joint**: CPU pinned near its peak for a while *and* a network pattern that is
//!   already unusual, though not alarming on its own.
//!
//! The combined score is ratio / (1 + ratio) of the strongest component: bounded in
//! [0, 1), monotone, and 0.5 exactly at a component's threshold.

use std::collections::VecDeque;

use presage_core::{Forecast, Resource, Sample, Timestamp};
use serde::Serialize;

use super::settings::AnomalyPolicy;
use super::stream::{StreamDetector, StreamSettings};
use super::trend::{mann_kendall_tau, theil_sen_slope, thin};

/// The largest ratio a component can report: keeps the score away from 1 so that scores
/// stay comparable, and one absurd reading from dominating.
pub const MAX_RATIO: f64 = 20.0;

/// The resources the streaming detector watches.
const STREAMED: [Resource; 4] = [
    Resource::Cpu,
    Resource::Memory,
    Resource::NetRx,
    Resource::NetTx,
];

/// What drove a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Usage above the forecast's p99, sustained.
    Envelope,
    /// A level shift or broken pattern in one resource.
    Shift(Resource),
    /// Memory growing steadily.
    Leak,
    /// Far more processes than ever seen.
    ProcessExplosion,
    /// CPU busy for far longer than ever seen.
    SustainedCpu,
    /// CPU pinned together with an unusual network pattern.
    Joint,
}

impl Component {
    /// A short name for messages.
    pub fn describe(&self) -> String {
        match self {
            Component::Envelope => "usage above the forecast envelope".into(),
            Component::Shift(r) => format!("{r} level shift / broken pattern"),
            Component::Leak => "memory leak".into(),
            Component::ProcessExplosion => "process explosion".into(),
            Component::SustainedCpu => "CPU busy far longer than ever before".into(),
            Component::Joint => "CPU pinned with unusual network traffic".into(),
        }
    }
}

/// One update's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyReading {
    /// The combined score in [0, 1): ratio / (1 + ratio) of the strongest component.
    pub score: f64,
    /// The strongest component's ratio to its threshold.
    pub ratio: f64,
    /// The component that drove the score (`None` during the warm-up or with no data).
    pub component: Option<Component>,
    /// What the component saw, for the alert's message.
    pub detail: String,
}

impl AnomalyReading {
    fn quiet() -> Self {
        AnomalyReading {
            score: 0.0,
            ratio: 0.0,
            component: None,
            detail: String::new(),
        }
    }
}

/// Maps a component ratio onto the bounded score.
pub fn score_of(ratio: f64) -> f64 {
    let r = if ratio.is_finite() { ratio } else { MAX_RATIO };
    let r = r.clamp(0.0, MAX_RATIO);
    r / (1.0 + r)
}

/// One workload's anomaly scorer state.
#[derive(Debug, Clone, Default)]
pub struct AnomalyScorer {
    first_at: Option<Timestamp>,
    samples: u64,
    streams: Vec<(Resource, StreamDetector)>,
    /// (time, worst normalised excess) over the envelope window.
    excess: VecDeque<(Timestamp, f64)>,
    /// (time, memory bytes) over the leak window.
    memory: VecDeque<(Timestamp, f64)>,
    /// The highest memory seen before the leak window.
    memory_peak_before: Option<f64>,
    /// (time, CPU cores) over the joint window.
    cpu: VecDeque<(Timestamp, f64)>,
    cpu_peak: f64,
    /// When the current busy run began (the start of its first interval).
    busy_since: Option<Timestamp>,
    /// The longest unremarkable busy run, seconds.
    longest_busy_s: f64,
    /// Samples seen, and how many of them were not busy.
    cpu_samples: u64,
    idle_samples: u64,
    process_peak: Option<u32>,
}

fn steps(seconds: f64, interval_s: f64) -> usize {
    (seconds / interval_s).round().max(1.0) as usize
}

fn trim<T>(window: &mut VecDeque<(Timestamp, T)>, now: Timestamp, span_s: f64) -> Vec<T> {
    let mut dropped = Vec::new();
    while let Some((t, _)) = window.front()
        && now.secs_since(*t) > span_s
    {
        if let Some((_, v)) = window.pop_front() {
            dropped.push(v);
        }
    }
    dropped
}

impl AnomalyScorer {
    /// A scorer with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scores `sample` against `forecast` (made *before* the sample; `None` when there was
    /// none yet), then learns from it.
    pub fn update(
        &mut self,
        sample: &Sample,
        forecast: Option<&Forecast>,
        policy: &AnomalyPolicy,
    ) -> AnomalyReading {
        let now = sample.at();
        let first = *self.first_at.get_or_insert(now);
        self.samples += 1;
        // At least 30 samples as well as the warm-up span: on a 5-minute trace two
        // minutes would be a single sample.
        let warm = now.secs_since(first) >= policy.warmup_s && self.samples > 30;
        let interval_s = (f64::from(sample.interval_ms()) / 1000.0).max(1e-3);
        if self.streams.is_empty() {
            // On a coarse trace (5-minute steps) the second-scale spans would be one or
            // two samples, and a z-score over two samples means nothing: the statistics
            // keep a floor in samples whatever the interval.
            let settings = StreamSettings {
                level_half_life: (policy.level_half_life_s / interval_s).max(1.0),
                max_period: (policy.max_period_s / interval_s) as usize,
                cycles: 3,
                scale_window: steps(policy.scale_window_s, interval_s).max(10),
                short_window: steps(policy.short_window_s, interval_s),
                long_window: steps(policy.long_window_s, interval_s).max(60),
                warmup: steps(policy.warmup_s, interval_s).max(30),
                // Live traces are too short for a weekly season.
                second_season: false,
            };
            self.streams = STREAMED
                .iter()
                .map(|&r| (r, StreamDetector::new(settings)))
                .collect();
        }

        let mut candidates: Vec<(Component, f64, String)> = Vec::new();
        let envelope = self.envelope(sample, forecast, policy);
        if let Some(c) = envelope {
            candidates.push(c);
        }
        let mut net_ratio: f64 = 0.0;
        for (resource, detector) in &mut self.streams {
            let Some(x) = sample.usage().get(*resource) else {
                continue;
            };
            let s = detector.update(x);
            let ratio = s.z.max(0.0) / policy.shift_z;
            if matches!(resource, Resource::NetRx | Resource::NetTx) {
                net_ratio = net_ratio.max(ratio);
            }
            candidates.push((
                Component::Shift(*resource),
                ratio,
                format!(
                    "{resource} {x:.3} against {:.3} predicted{}, likelihood z {:.1} (tail {:.1e})",
                    s.predicted,
                    if s.seasonal { " (seasonal)" } else { "" },
                    s.z,
                    s.tail
                ),
            ));
        }
        if let Some(c) = self.leak(sample, policy) {
            candidates.push(c);
        }
        if let Some(c) = self.fork(sample, policy, warm) {
            candidates.push(c);
        }
        if let Some(c) = self.busy_run(sample, policy, warm) {
            candidates.push(c);
        }
        if let Some(c) = self.joint(sample, policy, net_ratio) {
            candidates.push(c);
        }
        if !warm {
            return AnomalyReading::quiet();
        }
        // The most specific component over its threshold names the alert (a leak also
        // shifts memory's level; it should be called a leak); otherwise the strongest.
        let specific = [
            Component::ProcessExplosion,
            Component::Leak,
            Component::Joint,
            Component::SustainedCpu,
        ];
        let named = specific.iter().find_map(|k| {
            candidates
                .iter()
                .find(|(c, r, _)| c == k && *r >= 1.0)
                .cloned()
        });
        let best = named.or_else(|| {
            candidates
                .iter()
                .filter(|(_, r, _)| r.is_finite())
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .cloned()
        });
        match best {
            Some((component, ratio, detail)) => {
                let ratio = ratio.clamp(0.0, MAX_RATIO);
                AnomalyReading {
                    score: score_of(ratio),
                    ratio,
                    component: Some(component),
                    detail,
                }
            }
            None => AnomalyReading::quiet(),
        }
    }

    fn envelope(
        &mut self,
        sample: &Sample,
        forecast: Option<&Forecast>,
        policy: &AnomalyPolicy,
    ) -> Option<(Component, f64, String)> {
        let now = sample.at();
        let quantiles = forecast.and_then(|f| f.horizons().first())?;
        let mut worst: Option<(Resource, f64)> = None;
        for resource in [Resource::Cpu, Resource::Memory] {
            let (Some(used), Some(q)) =
                (sample.usage().get(resource), quantiles.quantiles[resource])
            else {
                continue;
            };
            // As in the behavioural score: the spread is floored at 5 % of p99 so a
            // razor-thin forecast does not turn every wiggle into a huge excess.
            let spread = (q.p99() - q.p50()).max(q.p99() * 0.05).max(f64::EPSILON);
            let excess = ((used - q.p99()) / spread).clamp(0.0, 10.0);
            if worst.is_none_or(|(_, w)| excess > w) {
                worst = Some((resource, excess));
            }
        }
        let (resource, excess) = worst?;
        self.excess.push_back((now, excess));
        trim(&mut self.excess, now, policy.envelope_window_s);
        let mean = self.excess.iter().map(|(_, e)| e).sum::<f64>() / self.excess.len() as f64;
        Some((
            Component::Envelope,
            mean / policy.envelope_threshold,
            format!(
                "{resource} {excess:.1} spreads above the forecast p99 (model {}), {mean:.1} on average over {:.0} s",
                forecast.map_or("none", |f| f.model()),
                policy.envelope_window_s
            ),
        ))
    }

    fn leak(
        &mut self,
        sample: &Sample,
        policy: &AnomalyPolicy,
    ) -> Option<(Component, f64, String)> {
        let now = sample.at();
        let bytes = sample.usage().memory_bytes()?;
        self.memory.push_back((now, bytes));
        for old in trim(&mut self.memory, now, policy.leak_window_s) {
            self.memory_peak_before = Some(self.memory_peak_before.map_or(old, |p| p.max(old)));
        }
        let peak = self.memory_peak_before?;
        let (t0, _) = *self.memory.front()?;
        // The window must be (nearly) full, or a short burst looks like a trend.
        if now.secs_since(t0) < 0.75 * policy.leak_window_s || self.memory.len() < 5 {
            return None;
        }
        let points: Vec<(f64, f64)> = self
            .memory
            .iter()
            .map(|(t, v)| (t.secs_since(t0), *v))
            .collect();
        let points = thin(&points);
        let tau = mann_kendall_tau(&points);
        let slope = theil_sen_slope(&points)?;
        let above = bytes / (peak * (1.0 + policy.leak_above_peak)).max(1.0);
        // Every condition must hold: the ratio is the weakest of the three.
        let ratio = (slope / policy.leak_min_rate_bytes_per_s)
            .min(tau / policy.leak_min_tau.max(f64::EPSILON))
            .min(above);
        Some((
            Component::Leak,
            ratio,
            format!(
                "memory rising {:.1} MiB/s (Theil–Sen) over {:.0} s, Mann–Kendall τ {tau:.2}, now {:.0} MiB against a {:.0} MiB peak before",
                slope / 1_048_576.0,
                policy.leak_window_s,
                bytes / 1_048_576.0,
                peak / 1_048_576.0
            ),
        ))
    }

    fn fork(
        &mut self,
        sample: &Sample,
        policy: &AnomalyPolicy,
        warm: bool,
    ) -> Option<(Component, f64, String)> {
        let n = sample.events().processes?;
        let Some(peak) = self.process_peak else {
            self.process_peak = Some(n);
            return None;
        };
        let (nf, pf) = (f64::from(n), f64::from(peak.max(1)));
        let ratio = (nf / (policy.fork_ratio * pf))
            .min((nf - pf) / policy.fork_min_extra.max(1.0))
            .max(0.0);
        // The peak learns only from unremarkable counts (and freely during the warm-up),
        // so a sustained explosion keeps alerting instead of becoming the new normal.
        if !warm || ratio < 1.0 {
            self.process_peak = Some(peak.max(n));
        }
        Some((
            Component::ProcessExplosion,
            ratio,
            format!("{n} processes against at most {peak} seen before"),
        ))
    }

    fn busy_run(
        &mut self,
        sample: &Sample,
        policy: &AnomalyPolicy,
        warm: bool,
    ) -> Option<(Component, f64, String)> {
        let now = sample.at();
        let cpu = sample.usage().cpu_cores()?;
        // Judged against the peak before this sample (the joint component, which runs
        // after, raises it). 0.05 cores keeps an idle workload's noise from being "busy".
        let busy = cpu >= (0.5 * self.cpu_peak).max(0.05);
        let interval_s = f64::from(sample.interval_ms()) / 1000.0;
        let run_of = |since: Timestamp| now.secs_since(since);
        let allowed = (policy.busy_run_factor * self.longest_busy_s)
            .max(self.longest_busy_s + policy.busy_run_min_extra_s);
        self.cpu_samples += 1;
        if !busy {
            self.idle_samples += 1;
        }
        // A workload that is (nearly) always busy has no "normal run length" to exceed:
        // its runs are as long as its life.
        let idles = self.idle_samples as f64 >= 0.2 * self.cpu_samples as f64;
        if !busy {
            if let Some(since) = self.busy_since.take() {
                let run = run_of(since);
                // Only unremarkable runs (or any during the warm-up) set the norm, so a
                // spin that pauses does not teach the scorer that spinning is normal.
                if !warm || run < allowed {
                    self.longest_busy_s = self.longest_busy_s.max(run);
                }
            }
            return None;
        }
        let since = *self
            .busy_since
            .get_or_insert_with(|| now.plus_ms(-i64::from(sample.interval_ms())));
        let run = run_of(since).max(interval_s);
        if !idles {
            return None;
        }
        Some((
            Component::SustainedCpu,
            run / allowed.max(f64::EPSILON),
            format!(
                "CPU busy (≥ {:.2} cores) for {run:.0} s; the longest busy run before was {:.0} s",
                (0.5 * self.cpu_peak).max(0.05),
                self.longest_busy_s
            ),
        ))
    }

    fn joint(
        &mut self,
        sample: &Sample,
        policy: &AnomalyPolicy,
        net_ratio: f64,
    ) -> Option<(Component, f64, String)> {
        let now = sample.at();
        let cpu = sample.usage().cpu_cores()?;
        self.cpu.push_back((now, cpu));
        trim(&mut self.cpu, now, policy.joint_window_s);
        let peak = self.cpu_peak;
        self.cpu_peak = peak.max(cpu);
        let (t0, _) = *self.cpu.front()?;
        if peak <= 0.0 || now.secs_since(t0) < 0.75 * policy.joint_window_s {
            return None;
        }
        let low = self
            .cpu
            .iter()
            .map(|(_, c)| *c)
            .fold(f64::INFINITY, f64::min);
        let pinned = low / (0.9 * peak);
        let ratio = pinned.min(net_ratio / policy.joint_fraction);
        Some((
            Component::Joint,
            ratio,
            format!(
                "CPU at ≥ {low:.2} cores (peak {peak:.2}) for {:.0} s with network likelihood at {:.0} % of its threshold",
                policy.joint_window_s,
                net_ratio * 100.0
            ),
        ))
    }
}
