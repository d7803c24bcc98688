//! Synthetic traces whose structure is known, for tests and for judging forecasters on
//! behaviour that is there by construction.
//!
//! Every workload follows one [`Pattern`], for CPU and memory both, with multiplicative
//! noise. The output is deterministic for a [`SynthConfig::seed`] (on a given platform):
//! each workload draws from its own generator seeded from the config seed, its pattern and
//! its index, so adding a pattern does not change the workloads of the others.
//!
//! Time of day and day of week are UTC: a "business-hours" surge starts at the same UTC
//! hour each day, whatever [`SynthConfig::start`] is. For the periodic patterns the
//! surge onsets are recorded in [`TraceWorkload::surges`].

use std::f64::consts::TAU;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use presage_core::{CoreError, Limits, Resource, Timestamp, Usage, WorkloadId, WorkloadKey};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::trace::{Trace, TracePoint, TraceWorkload};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
const DAY_MS: i64 = 86_400_000;
/// How long a surge takes to ramp up (and down), in ms.
const RAMP_MS: i64 = 30 * 60 * 1000;

/// A demand shape with a known structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// A surge every day in (UTC) business hours, over a steady base.
    Daily,
    /// The daily surge on weekdays only; weekends run below the weekday base.
    Weekly,
    /// Short, unannounced spikes over a low base.
    Bursty,
    /// Slow linear growth over the whole trace.
    Trend,
    /// One lasting level shift up, somewhere in the middle of the trace.
    Step,
    /// Memory growing monotonically until a "restart" resets it, then again.
    Leak,
    /// Almost nothing: a few hundredths of a core and tens of MiB.
    Idle,
}

impl Pattern {
    /// Every pattern.
    pub const ALL: [Pattern; 7] = [
        Pattern::Daily,
        Pattern::Weekly,
        Pattern::Bursty,
        Pattern::Trend,
        Pattern::Step,
        Pattern::Leak,
        Pattern::Idle,
    ];

    /// The lower-case name, used in workload ids and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Pattern::Daily => "daily",
            Pattern::Weekly => "weekly",
            Pattern::Bursty => "bursty",
            Pattern::Trend => "trend",
            Pattern::Step => "step",
            Pattern::Leak => "leak",
            Pattern::Idle => "idle",
        }
    }

    /// Whether the pattern has scheduled surges (recorded in [`TraceWorkload::surges`]).
    pub const fn is_periodic(self) -> bool {
        matches!(self, Pattern::Daily | Pattern::Weekly)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pattern {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| CoreError::UnknownName {
                what: "synthetic pattern",
                name: s.to_owned(),
                expected: "daily, weekly, bursty, trend, step, leak, idle",
            })
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Each pattern with how many workloads follow it.
    pub patterns: Vec<(Pattern, usize)>,
    /// Length of the trace in days.
    pub days: u32,
    /// Sampling step in seconds (0 is taken as 1).
    pub step_s: u32,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// The start of the first interval; the first point is at `start + step_s`.
    pub start: Timestamp,
    /// Standard deviation of the multiplicative noise (0.08 = ±8 % typical).
    pub noise: f64,
}

impl SynthConfig {
    /// A small mixed trace: 24 workloads over all seven patterns, 7 days at 300 s steps
    /// from Monday 2024-01-01T00:00:00Z, seed 42. It simulates in seconds.
    pub fn default_mix() -> Self {
        SynthConfig {
            patterns: vec![
                (Pattern::Daily, 5),
                (Pattern::Weekly, 4),
                (Pattern::Bursty, 4),
                (Pattern::Trend, 3),
                (Pattern::Step, 3),
                (Pattern::Leak, 3),
                (Pattern::Idle, 2),
            ],
            days: 7,
            step_s: 300,
            seed: 42,
            start: Timestamp::from_unix_secs(1_704_067_200),
            noise: 0.08,
        }
    }

    /// How many workloads the config makes.
    pub fn workloads(&self) -> usize {
        self.patterns.iter().map(|(_, n)| n).sum()
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig::default_mix()
    }
}

/// Generates the trace `config` describes: workloads named `<pattern>-<nn>`, sorted by id,
/// each with a static allocation of 1.3–2× its peak, rounded up to whole cores and GiB.
pub fn generate(config: &SynthConfig) -> Trace {
    let mut workloads = Vec::with_capacity(config.workloads());
    for &(pattern, count) in &config.patterns {
        for i in 0..count {
            let seed = mix(config.seed ^ mix(((pattern as u64) << 32) | i as u64));
            let mut rng = SmallRng::seed_from_u64(seed);
            workloads.push(workload(config, pattern, i, &mut rng));
        }
    }
    workloads.sort_by(|a, b| a.id.cmp(&b.id));
    Trace {
        workloads,
        files: 0,
        duplicates: 0,
        skipped: Default::default(),
    }
}

/// SplitMix64's finaliser: spreads nearby seeds (pattern, index) far apart.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A standard normal draw (Box–Muller; `rand` alone has no normal distribution).
fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// `value` with multiplicative noise, never negative.
fn noisy(rng: &mut SmallRng, value: f64, sigma: f64) -> f64 {
    (value * (1.0 + sigma * normal(rng))).max(0.0)
}

/// A daily surge window: start offset from UTC midnight and length, both in ms.
#[derive(Debug, Clone, Copy)]
struct Window {
    onset_ms: i64,
    length_ms: i64,
}

/// Surge intensity in [0, 1] at `t` for a surge starting at `onset`: a linear ramp up,
/// a plateau, a linear ramp down.
fn surge_level(t: i64, onset: i64, length: i64) -> f64 {
    let into = t - onset;
    if into <= 0 || into >= length {
        0.0
    } else if into < RAMP_MS {
        into as f64 / RAMP_MS as f64
    } else if into > length - RAMP_MS {
        (length - into) as f64 / RAMP_MS as f64
    } else {
        1.0
    }
}

fn workload(
    config: &SynthConfig,
    pattern: Pattern,
    index: usize,
    rng: &mut SmallRng,
) -> TraceWorkload {
    let step_ms = i64::from(config.step_s.max(1)) * 1000;
    let span_ms = i64::from(config.days) * DAY_MS;
    let first = config.start.plus_ms(step_ms);
    let count = (span_ms / step_ms).max(0) as usize;
    let times: Vec<Timestamp> = (0..count as i64)
        .map(|k| first.plus_ms(k * step_ms))
        .collect();
    let sigma = config.noise.max(0.0);

    let cpu_base = rng.random_range(0.2..1.0);
    let mem_base = rng.random_range(0.5..4.0) * GIB;
    let mut surges = Vec::new();
    let (cpu, mem): (Vec<f64>, Vec<f64>) = match pattern {
        Pattern::Daily | Pattern::Weekly => {
            let window = Window {
                onset_ms: (rng.random_range(7.0..10.0) * 3_600_000.0) as i64,
                length_ms: (rng.random_range(6.0..10.0) * 3_600_000.0) as i64,
            };
            let cpu_amp = cpu_base * rng.random_range(2.0..5.0);
            let mem_amp = mem_base * rng.random_range(0.3..0.8);
            let weekend_factor = rng.random_range(0.4..0.7);
            // One onset per day, jittered by up to ±15 min so no forecaster is exact.
            let first_day = first.unix_ms().div_euclid(DAY_MS) - 1;
            let last_day = times
                .last()
                .map_or(first_day, |t| t.unix_ms().div_euclid(DAY_MS));
            let onsets: Vec<i64> = (first_day..=last_day)
                .filter_map(|day| {
                    let jitter = rng.random_range(-900_000..=900_000_i64);
                    let onset = day * DAY_MS + window.onset_ms + jitter;
                    let weekday = Timestamp::from_unix_ms(onset).day_of_week() < 5;
                    (pattern == Pattern::Daily || weekday).then_some(onset)
                })
                .collect();
            let end = times.last().map_or(first, |t| *t).unix_ms();
            surges = onsets
                .iter()
                .filter(|&&o| o >= config.start.unix_ms() && o <= end)
                .map(|&o| Timestamp::from_unix_ms(o))
                .collect();
            times
                .iter()
                .map(|t| {
                    let ms = t.unix_ms();
                    let level = onsets
                        .iter()
                        .map(|&o| surge_level(ms, o, window.length_ms))
                        .fold(0.0, f64::max);
                    let quiet = pattern == Pattern::Weekly && t.day_of_week() >= 5;
                    let base = if quiet { weekend_factor } else { 1.0 };
                    (
                        noisy(rng, cpu_base * base + cpu_amp * level, sigma),
                        noisy(rng, mem_base * base + mem_amp * level, sigma / 4.0),
                    )
                })
                .unzip()
        }
        Pattern::Bursty => {
            let base = rng.random_range(0.05..0.3);
            let per_day = rng.random_range(2.0..6.0);
            let mut bursts = Vec::new();
            let mut at = first.unix_ms();
            loop {
                let gap_days = -(1.0 - rng.random::<f64>()).ln() / per_day;
                at += (gap_days * DAY_MS as f64) as i64;
                if at >= first.unix_ms() + span_ms {
                    break;
                }
                let length = rng.random_range(5.0..30.0) * 60_000.0;
                let height = base * rng.random_range(5.0..15.0);
                bursts.push((at, at + length as i64, height));
            }
            times
                .iter()
                .map(|t| {
                    let ms = t.unix_ms();
                    let spike: f64 = bursts
                        .iter()
                        .filter(|(s, e, _)| ms >= *s && ms < *e)
                        .map(|(_, _, h)| *h)
                        .sum();
                    let busy = if spike > 0.0 { 1.2 } else { 1.0 };
                    (
                        noisy(rng, base + spike, sigma),
                        noisy(rng, mem_base * 0.5 * busy, sigma / 4.0),
                    )
                })
                .unzip()
        }
        Pattern::Trend => {
            let cpu_growth = rng.random_range(1.5..3.0);
            let mem_growth = rng.random_range(1.3..2.0);
            let n = times.len().max(2) as f64 - 1.0;
            (0..times.len())
                .map(|k| {
                    let f = k as f64 / n;
                    (
                        noisy(rng, cpu_base * (1.0 + (cpu_growth - 1.0) * f), sigma),
                        noisy(rng, mem_base * (1.0 + (mem_growth - 1.0) * f), sigma / 4.0),
                    )
                })
                .unzip()
        }
        Pattern::Step => {
            let at = rng.random_range(0.35..0.65);
            let cpu_factor = rng.random_range(2.0..4.0);
            let mem_factor = rng.random_range(1.5..2.5);
            let shift = (times.len() as f64 * at) as usize;
            (0..times.len())
                .map(|k| {
                    let (c, m) = if k >= shift {
                        (cpu_factor, mem_factor)
                    } else {
                        (1.0, 1.0)
                    };
                    (
                        noisy(rng, cpu_base * c, sigma),
                        noisy(rng, mem_base * m, sigma / 4.0),
                    )
                })
                .unzip()
        }
        Pattern::Leak => {
            let growth = mem_base * rng.random_range(1.0..3.0);
            let cycle_steps =
                (rng.random_range(1.5..3.0) * DAY_MS as f64 / step_ms as f64).max(2.0) as usize;
            let per_step = growth / cycle_steps as f64;
            let mut used = mem_base;
            let mut since_restart = 0;
            (0..times.len())
                .map(|_| {
                    if since_restart == cycle_steps {
                        used = mem_base;
                        since_restart = 0;
                    } else if since_restart > 0 {
                        // Positive increments only: the leak never gives memory back.
                        used += per_step * rng.random_range(0.5..1.5);
                    }
                    since_restart += 1;
                    (noisy(rng, cpu_base * 0.5, sigma), used)
                })
                .unzip()
        }
        Pattern::Idle => {
            let cpu_idle = rng.random_range(0.005..0.03);
            let mem_idle = rng.random_range(30.0..200.0) * MIB;
            (0..times.len())
                .map(|_| {
                    (
                        noisy(rng, cpu_idle, sigma),
                        noisy(rng, mem_idle, sigma / 4.0),
                    )
                })
                .unzip()
        }
    };

    let points: Vec<TracePoint> = times
        .iter()
        .zip(cpu.iter().zip(&mem))
        .map(|(&at, (&c, &m))| {
            let mut demand = Usage::empty();
            // Values are finite and clamped at 0 by construction; a failure would be a bug
            // here, and dropping the value is safer than a panic in a library.
            let _ = demand.set(Resource::Cpu, c);
            let _ = demand.set(Resource::Memory, m);
            TracePoint { at, demand }
        })
        .collect();
    let peak_cpu = cpu.iter().copied().fold(0.0, f64::max);
    let peak_mem = mem.iter().copied().fold(0.0, f64::max);
    let cores = (peak_cpu * rng.random_range(1.3..2.0)).ceil().max(1.0);
    let gib = (peak_mem * rng.random_range(1.3..2.0) / GIB)
        .ceil()
        .max(1.0);
    let mut provisioned = Limits::unlimited();
    let _ = provisioned.set_hard(Resource::Cpu, cores);
    let _ = provisioned.set_hard(Resource::Memory, gib * GIB);

    let name = format!("{}-{index:02}", pattern.name());
    let code = format!("synth-{}", pattern.name());
    TraceWorkload {
        id: WorkloadId::new(&name).expect("a pattern name is never empty"),
        key: WorkloadKey::for_code(code).expect("a pattern name is never empty"),
        provisioned,
        points,
        origin: PathBuf::from(format!("synth:{}", pattern.name())),
        surges,
    }
}
