//! Training rows: every series walked through the same feature code as inference, and
//! windows sampled from them.

use presage_core::{Resource, Timestamp};
use presage_sim::trace::TraceWorkload;
use rand::Rng;
use rand::rngs::SmallRng;
use rayon::prelude::*;

use crate::features::{MODEL_RESOURCES, SeriesFeatures, feature_count};

/// A target further than this many nominal steps from where it should be crosses a gap.
const GAP_SLACK: f64 = 1.5;

/// One resource of one workload, as network inputs and normalised targets.
#[derive(Debug)]
pub(crate) struct Series {
    rows: usize,
    /// `[rows, input]`.
    features: Vec<f32>,
    /// `[rows, horizons]`: demand `k` steps on, over the scale known at the row.
    targets: Vec<f32>,
    /// `unusable[i]`: rows before `i` whose targets are missing or cross a gap.
    unusable: Vec<u32>,
}

/// Every series of one side (training or validation) of the split.
#[derive(Debug)]
pub(crate) struct Dataset {
    series: Vec<Series>,
    /// Cumulative row counts, to pick a series in proportion to its length.
    cumulative: Vec<u64>,
    pub(crate) input: usize,
    pub(crate) horizons: usize,
}

/// How the rows are made.
#[derive(Debug, Clone)]
pub(crate) struct RowSpec<'a> {
    pub(crate) horizon_steps: &'a [u32],
    pub(crate) half_life_s: f64,
    pub(crate) window: usize,
}

impl Dataset {
    /// The rows of `workloads`; series too short for one window are left out.
    pub(crate) fn build(workloads: &[&TraceWorkload], spec: &RowSpec<'_>) -> Dataset {
        let jobs: Vec<(&TraceWorkload, Resource)> = workloads
            .iter()
            .flat_map(|w| MODEL_RESOURCES.iter().map(move |r| (*w, *r)))
            .collect();
        let series: Vec<Series> = jobs
            .par_iter()
            .filter_map(|(w, r)| series(w, *r, spec))
            .collect();
        let mut cumulative = Vec::with_capacity(series.len());
        let mut total = 0u64;
        for s in &series {
            total += s.rows as u64;
            cumulative.push(total);
        }
        Dataset {
            series,
            cumulative,
            input: feature_count(spec.horizon_steps.len()),
            horizons: spec.horizon_steps.len(),
        }
    }

    /// Series kept.
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    /// Rows over all series.
    pub(crate) fn rows(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// A window of `window` usable rows, as (series, first row); `None` if a few tries
    /// found none (the data is mostly gaps).
    pub(crate) fn sample(&self, rng: &mut SmallRng, window: usize) -> Option<(usize, usize)> {
        let total = self.rows();
        if total == 0 {
            return None;
        }
        for _ in 0..32 {
            let pick = rng.random_range(0..total);
            let s = self.cumulative.partition_point(|&c| c <= pick);
            let series = self.series.get(s)?;
            if series.rows < window {
                continue;
            }
            let start = rng.random_range(0..=series.rows - window);
            if series.unusable[start + window] == series.unusable[start] {
                return Some((s, start));
            }
        }
        None
    }

    /// Writes the inputs (`[picks, window, input]`) and targets (`[picks, window,
    /// horizons]`) of `picks` into `x` and `y`.
    pub(crate) fn fill(
        &self,
        picks: &[(usize, usize)],
        window: usize,
        x: &mut Vec<f32>,
        y: &mut Vec<f32>,
    ) {
        x.clear();
        y.clear();
        for &(s, start) in picks {
            let series = &self.series[s];
            x.extend_from_slice(
                &series.features[start * self.input..(start + window) * self.input],
            );
            y.extend_from_slice(
                &series.targets[start * self.horizons..(start + window) * self.horizons],
            );
        }
    }
}

fn series(w: &TraceWorkload, resource: Resource, spec: &RowSpec<'_>) -> Option<Series> {
    let points: Vec<(Timestamp, f64)> = w
        .points
        .iter()
        .filter_map(|p| p.demand.get(resource).map(|v| (p.at, v)))
        .collect();
    let reach = *spec.horizon_steps.last()? as usize;
    let n = points.len();
    if n < spec.window + reach + 1 {
        return None;
    }
    let mut steps: Vec<i64> = points
        .windows(2)
        .map(|p| p[1].0.unix_ms() - p[0].0.unix_ms())
        .collect();
    steps.sort_unstable();
    let nominal_ms = steps[steps.len() / 2].max(1) as f64;

    let input = feature_count(spec.horizon_steps.len());
    let horizons = spec.horizon_steps.len();
    let mut features = vec![0.0f32; n * input];
    let mut targets = vec![0.0f32; n * horizons];
    let mut unusable = Vec::with_capacity(n + 1);
    unusable.push(0u32);
    let mut state = SeriesFeatures::new(resource);
    for i in 0..n {
        let (at, demand) = points[i];
        let interval_ms = if i > 0 {
            at.unix_ms() - points[i - 1].0.unix_ms()
        } else {
            points[1].0.unix_ms() - at.unix_ms()
        };
        state.observe(
            at,
            interval_ms as f64 / 1000.0,
            demand,
            spec.half_life_s,
            spec.horizon_steps,
            &mut features[i * input..(i + 1) * input],
        );
        let mut usable = true;
        for (k, steps_ahead) in spec.horizon_steps.iter().enumerate() {
            let j = i + *steps_ahead as usize;
            match points.get(j) {
                Some((later, value)) => {
                    targets[i * horizons + k] = state.normalise(*value);
                    let span = (later.unix_ms() - at.unix_ms()) as f64;
                    usable &= span <= (f64::from(*steps_ahead) + GAP_SLACK) * nominal_ms;
                }
                None => usable = false,
            }
        }
        let before = unusable[i];
        unusable.push(before + u32::from(!usable));
    }
    Some(Series {
        rows: n,
        features,
        targets,
        unusable,
    })
}

#[cfg(test)]
mod tests {
    use presage_sim::synth::{Pattern, SynthConfig, generate};

    use super::*;

    #[test]
    fn windows_avoid_gaps_and_carry_matching_targets() {
        let mut config = SynthConfig::default_mix();
        config.patterns = vec![(Pattern::Daily, 1)];
        config.days = 2;
        let mut trace = generate(&config);
        // A two-hour hole in the middle.
        let w = &mut trace.workloads[0];
        w.points.drain(200..224);
        let workloads: Vec<&TraceWorkload> = trace.workloads.iter().collect();
        let spec = RowSpec {
            horizon_steps: &[1, 3],
            half_life_s: 86_400.0,
            window: 16,
        };
        let ds = Dataset::build(&workloads, &spec);
        assert_eq!(ds.len(), 2, "cpu and memory");
        let mut rng = rand::SeedableRng::seed_from_u64(1);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let (s, start) = ds
                .sample(&mut rng, 16)
                .expect("the trace has gap-free windows");
            assert!(
                start + 16 + 3 <= 200 || start >= 200,
                "window at {start} spans the gap"
            );
            ds.fill(&[(s, start)], 16, &mut x, &mut y);
            assert_eq!(x.len(), 16 * ds.input);
            assert_eq!(y.len(), 16 * 2);
            // The +1 target of a row, times the row's scale, is the next row's demand (its
            // input times its scale); the scale is read back from the log-scale input.
            let scale = |t: usize| (5.0 * f64::from(x[t * ds.input + 1])).exp();
            for t in 0..15 {
                let target = f64::from(y[t * 2]) * scale(t);
                let next = f64::from(x[(t + 1) * ds.input]) * scale(t + 1);
                assert!((target - next).abs() <= 1e-3 * next.max(1e-9), "row {t}");
            }
        }
    }
}
