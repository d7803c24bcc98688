//! Forecast quality: how well each model forecasts the next sample of every workload.
//!
//! [`evaluate`] replays each workload's demand into a fresh forecaster of every candidate
//! — the models of [`default_models`] plus the [`SeasonalNaive`] and [`EtsBaseline`]
//! baselines — and, **before** each sample is observed, asks for the forecast of that
//! sample (issued at the previous sample's time, horizon = the gap between them). Nothing
//! a forecast is scored on has been seen by it.
//!
//! **Which steps count.** A step is scored when it lies at least
//! [`EvalOptions::warmup_s`] (a day: the seasonal-naive baseline needs one season) after
//! the workload's first sample and *every* candidate gave a forecast for it, so all are
//! judged on the same steps. Only CPU and memory are fed and scored.
//!
//! **Metrics**, per series (one workload × one resource × one candidate), over its `n`
//! scored steps with demand `y` and forecast quantiles `f`:
//! - `pinball_p95`: the mean pinball loss at q = 0.95, `0.95·(y − f) if y ≥ f else
//!   0.05·(f − y)`, divided by the series' mean demand (unit-free, so cores and bytes and
//!   big and small workloads average together), or by [`DEMAND_FLOOR`] (0.01 core, 16 MiB)
//!   when the mean is below it.
//! - `coverage_p95`: the share of steps with `y ≤ f_p95` (calibrated: 0.95).
//! - `mase`: the mean absolute error of `f_p50`, divided by the mean absolute error of the
//!   one-step naive forecast (the previous sample) on the same steps. Series whose demand
//!   never changes are left out.
//!
//! Per resource, `pinball_p95` and `mase` are means over series (each workload counts
//! once) and `coverage_p95` is pooled over all steps; the top-level figures do the same
//! over the CPU and memory series together.

mod baselines;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use presage_core::{Resource, Sample, Timestamp, Usage, WorkloadId};
use presage_forecast::{
    Ewma, EwmaConfig, ForecastError, ForecasterFactory, HistogramModel, HistogramModelConfig,
    HoltWinters, HoltWintersConfig, MovingWindow, Residual, Segmented, SegmentedConfig,
    WindowConfig,
};
use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

pub use baselines::{EtsBaseline, EtsOptions, SeasonalNaive};

use crate::trace::{ReadOptions, Trace, TraceError, TraceFormat, TraceWorkload, read_trace};

/// The quantile level the loss and coverage are taken at.
pub const LEVEL: f64 = 0.95;
/// The resources scored.
pub const RESOURCES: [Resource; 2] = [Resource::Cpu, Resource::Memory];
/// The least mean demand a series' pinball loss is divided by, per scored resource: 0.01
/// core and 16 MiB. Near-idle workloads would otherwise dominate the mean with errors no
/// allocator could act on (0.001 core off a 0.0002-core VM is "5×" its demand).
pub const DEMAND_FLOOR: [f64; 2] = [0.01, 16.0 * 1024.0 * 1024.0];

/// The models `presage evaluate-forecast` scores, with their default settings. Adding a
/// model is one line here.
pub fn default_models() -> Result<Vec<Arc<dyn ForecasterFactory>>, EvalError> {
    let mut models: Vec<Arc<dyn ForecasterFactory>> = vec![
        Arc::new(Ewma::new(EwmaConfig::default())?),
        Arc::new(HistogramModel::new(HistogramModelConfig::default())?),
        Arc::new(MovingWindow::new(WindowConfig::default())?),
        Arc::new(Segmented::new(SegmentedConfig::default())?),
        Arc::new(HoltWinters::new(HoltWintersConfig::default())?),
        Arc::new(Residual::with_window(3_600, &RESOURCES)?),
    ];
    // The forecaster presage's allocator runs, at its default price.
    let presage = presage_policy::registry::find("presage")
        .ok_or(EvalError::MissingPolicy("presage"))?
        .build_default()
        .map_err(|e| EvalError::Policy(e.to_string()))?;
    models.extend(presage.forecaster);
    Ok(models)
}

/// Why an evaluation could not run.
#[derive(Debug, Error)]
pub enum EvalError {
    /// A `--trace` argument is not `FORMAT:PATH`.
    #[error("trace {spec:?}: {reason}")]
    BadTraceSpec {
        /// The argument.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A trace could not be read.
    #[error("reading trace {spec:?}: {source}")]
    Trace {
        /// The argument.
        spec: String,
        /// The reader's error.
        source: TraceError,
    },
    /// A model could not be built.
    #[error("building the models: {0}")]
    Model(#[from] ForecastError),
    /// A policy the evaluation scores the forecaster of is not registered.
    #[error("no policy named {0:?} is registered")]
    MissingPolicy(&'static str),
    /// A policy's forecaster could not be built.
    #[error("building a policy's forecaster: {0}")]
    Policy(String),
    /// Nothing to evaluate.
    #[error("the trace holds no workloads")]
    EmptyTrace,
}

/// How to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalOptions {
    /// Seconds after a workload's first sample before steps are scored (1 day).
    pub warmup_s: u32,
    /// Whether to add the seasonal-naive baseline.
    pub seasonal_naive: bool,
    /// The ETS baseline's settings; `None` leaves it out (it costs most of the run).
    pub ets: Option<EtsOptions>,
    /// Evaluate only this many workloads, evenly spaced through the id-sorted list.
    pub sample: Option<usize>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            warmup_s: 86_400,
            seasonal_naive: true,
            ets: Some(EtsOptions::default()),
            sample: None,
        }
    }
}

/// One candidate's scores on one resource (or on all, at the top level).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Mean over series of the normalised p95 pinball loss (lower is better).
    pub pinball_p95: f64,
    /// Share of scored steps with demand ≤ p95 (0.95 is calibrated).
    pub coverage_p95: f64,
    /// Mean over series of p50's MAE over the one-step naive MAE (below 1 beats naive).
    pub mase: f64,
    /// Steps scored.
    pub steps: u64,
    /// Series scored.
    pub series: usize,
}

/// One candidate in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    /// The model's name.
    pub name: String,
    /// `model` or `baseline`.
    pub kind: &'static str,
    /// Over CPU and memory together.
    #[serde(flatten)]
    pub overall: Scores,
    /// Per resource (`cpu`, `memory`).
    pub resources: BTreeMap<String, Scores>,
    /// Wall time per workload-step spent observing and forecasting, in microseconds
    /// (both resources; rough, as the candidates share the machine).
    pub us_per_step: f64,
}

/// `report.json` of `presage evaluate-forecast`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// The `FORMAT:PATH` arguments.
    pub sources: Vec<String>,
    /// Workloads in the trace.
    pub workloads: usize,
    /// Workloads evaluated (all, or the `--sample`).
    pub workloads_evaluated: usize,
    /// The settings.
    pub options: EvalOptions,
    /// How the figures are defined.
    pub definitions: BTreeMap<&'static str, &'static str>,
    /// Every candidate: the models, then the baselines.
    pub models: Vec<ModelReport>,
    /// Wall time of the evaluation, in seconds.
    pub seconds: f64,
}

/// The loss of quantile forecast `f` at level `q` when `y` happened.
pub fn pinball(q: f64, y: f64, f: f64) -> f64 {
    if y >= f {
        q * (y - f)
    } else {
        (1.0 - q) * (f - y)
    }
}

/// Reads every `FORMAT:PATH` into one trace (ids prefixed `t<i>/` when there are several).
pub fn load_traces(specs: &[String], options: &ReadOptions) -> Result<Trace, EvalError> {
    let mut all = Trace::default();
    for (i, spec) in specs.iter().enumerate() {
        let (format, path) = spec
            .split_once(':')
            .ok_or_else(|| EvalError::BadTraceSpec {
                spec: spec.clone(),
                reason: "expected FORMAT:PATH, e.g. bitbrains:data/fastStorage".into(),
            })?;
        let format: TraceFormat = format.parse().map_err(|e| EvalError::BadTraceSpec {
            spec: spec.clone(),
            reason: format!("{e}"),
        })?;
        let mut trace =
            read_trace(format, Path::new(path), options).map_err(|source| EvalError::Trace {
                spec: spec.clone(),
                source,
            })?;
        if specs.len() > 1 {
            for w in &mut trace.workloads {
                w.id = WorkloadId::new(format!("t{i}/{}", w.id)).map_err(|e| {
                    EvalError::BadTraceSpec {
                        spec: spec.clone(),
                        reason: e.to_string(),
                    }
                })?;
            }
        }
        all.files += trace.files;
        all.workloads.append(&mut trace.workloads);
    }
    Ok(all)
}

/// Running sums of one series.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    steps: u64,
    covered: u64,
    pinball: f64,
    abs_error: f64,
    demand: f64,
    naive_error: f64,
    /// The resource's [`DEMAND_FLOOR`].
    floor: f64,
}

/// What one workload gave: per candidate, per scored resource, its sums; and the time
/// each candidate took.
struct WorkloadResult {
    sums: Vec<[Sums; 2]>,
    nanos: Vec<u128>,
    steps: u64,
}

/// The samples a forecaster sees: the demand of the scored resources.
fn samples_of(w: &TraceWorkload) -> Vec<Sample> {
    let mut out = Vec::with_capacity(w.points.len());
    let mut previous: Option<Timestamp> = None;
    for (i, p) in w.points.iter().enumerate() {
        let interval_ms = match previous {
            Some(t) => p.at.unix_ms() - t.unix_ms(),
            None => w
                .points
                .get(i + 1)
                .map_or(60_000, |n| n.at.unix_ms() - p.at.unix_ms()),
        };
        previous = Some(p.at);
        let mut usage = Usage::empty();
        for r in RESOURCES {
            if let Some(v) = p.demand.get(r) {
                // Trace demand is validated: finite and non-negative.
                let _ = usage.set(r, v);
            }
        }
        let interval = interval_ms.clamp(1, i64::from(u32::MAX)) as u32;
        if let Ok(s) = Sample::new(p.at, w.id.clone(), interval, usage) {
            out.push(s);
        }
    }
    out
}

/// One step's (p50, p95) forecast per scored resource.
type StepForecast = [Option<(f64, f64)>; 2];

fn evaluate_workload(
    w: &TraceWorkload,
    candidates: &[&dyn ForecasterFactory],
    warmup_s: u32,
) -> WorkloadResult {
    let samples = samples_of(w);
    let n = samples.len();
    // Per candidate and step, the (p50, p95) forecast of each resource.
    let mut forecasts: Vec<Vec<StepForecast>> = Vec::with_capacity(candidates.len());
    let mut nanos = Vec::with_capacity(candidates.len());
    for c in candidates {
        let started = Instant::now();
        let mut f = c.create();
        let mut per_step = vec![[None; 2]; n];
        for (i, s) in samples.iter().enumerate() {
            if i > 0 {
                let previous = samples[i - 1].at();
                let gap_s = s
                    .at()
                    .secs_since(previous)
                    .ceil()
                    .clamp(1.0, f64::from(u32::MAX));
                let horizon = gap_s as u32;
                if let Some(fc) = f.forecast(previous, &[horizon]) {
                    for (k, r) in RESOURCES.into_iter().enumerate() {
                        per_step[i][k] = fc.at(r, horizon).map(|q| (q.p50(), q.p95()));
                    }
                }
            }
            f.observe(s);
        }
        nanos.push(started.elapsed().as_nanos());
        forecasts.push(per_step);
    }

    let mut sums = vec![[Sums::default(); 2]; candidates.len()];
    let first = samples.first().map(Sample::at);
    for i in 1..n {
        let (s, before) = (&samples[i], &samples[i - 1]);
        if first.is_none_or(|f| s.at().secs_since(f) < f64::from(warmup_s)) {
            continue;
        }
        for (k, r) in RESOURCES.into_iter().enumerate() {
            let (Some(y), Some(y0)) = (s.usage().get(r), before.usage().get(r)) else {
                continue;
            };
            if forecasts.iter().any(|f| f[i][k].is_none()) {
                continue;
            }
            for (c, f) in forecasts.iter().enumerate() {
                let Some((p50, p95)) = f[i][k] else { continue };
                let acc = &mut sums[c][k];
                acc.floor = DEMAND_FLOOR[k];
                acc.steps += 1;
                acc.covered += u64::from(y <= p95);
                acc.pinball += pinball(LEVEL, y, p95);
                acc.abs_error += (y - p50).abs();
                acc.demand += y;
                acc.naive_error += (y - y0).abs();
            }
        }
    }
    WorkloadResult {
        sums,
        nanos,
        steps: n as u64,
    }
}

/// Folds series sums into scores.
fn scores<'a>(series: impl Iterator<Item = &'a Sums>) -> Scores {
    let (mut steps, mut covered) = (0u64, 0u64);
    let (mut pin_sum, mut pin_n, mut mase_sum, mut mase_n) = (0.0, 0usize, 0.0, 0usize);
    for s in series.filter(|s| s.steps > 0) {
        steps += s.steps;
        covered += s.covered;
        pin_sum += s.pinball
            / s.demand
                .max(s.floor * s.steps as f64)
                .max(f64::MIN_POSITIVE);
        pin_n += 1;
        if s.naive_error > 0.0 {
            mase_sum += s.abs_error / s.naive_error;
            mase_n += 1;
        }
    }
    let mean = |sum: f64, n: usize| if n > 0 { sum / n as f64 } else { f64::NAN };
    Scores {
        pinball_p95: mean(pin_sum, pin_n),
        coverage_p95: if steps > 0 {
            covered as f64 / steps as f64
        } else {
            f64::NAN
        },
        mase: mean(mase_sum, mase_n),
        steps,
        series: pin_n,
    }
}

/// Scores `models` and the baselines of `options` on every workload of `trace` (in
/// parallel over workloads); `progress` is called with each finished workload's steps.
pub fn evaluate(
    trace: &Trace,
    models: &[Arc<dyn ForecasterFactory>],
    options: &EvalOptions,
    sources: Vec<String>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<EvalReport, EvalError> {
    let started = Instant::now();
    if trace.workloads.is_empty() {
        return Err(EvalError::EmptyTrace);
    }
    let chosen = sampled_workloads(trace, options.sample);
    let naive = SeasonalNaive::default();
    let ets = options.ets.map(|options| EtsBaseline { options });
    let mut candidates: Vec<(&dyn ForecasterFactory, &'static str)> =
        models.iter().map(|m| (m.as_ref(), "model")).collect();
    if options.seasonal_naive {
        candidates.push((&naive, "baseline"));
    }
    if let Some(ets) = &ets {
        candidates.push((ets, "baseline"));
    }
    let factories: Vec<&dyn ForecasterFactory> = candidates.iter().map(|c| c.0).collect();
    let results: Vec<WorkloadResult> = chosen
        .par_iter()
        .map(|w| {
            let r = evaluate_workload(w, &factories, options.warmup_s);
            progress(r.steps);
            r
        })
        .collect();
    let total_steps: u64 = results.iter().map(|r| r.steps).sum::<u64>().max(1);
    let models = candidates
        .iter()
        .enumerate()
        .map(|(c, (factory, kind))| {
            let per = |k: usize| scores(results.iter().map(|r| &r.sums[c][k]));
            let resources = RESOURCES
                .into_iter()
                .enumerate()
                .map(|(k, r)| (r.name().to_owned(), per(k)))
                .collect();
            let nanos: u128 = results.iter().map(|r| r.nanos[c]).sum();
            ModelReport {
                name: factory.name().to_owned(),
                kind,
                overall: scores(results.iter().flat_map(|r| r.sums[c].iter())),
                resources,
                us_per_step: nanos as f64 / 1000.0 / total_steps as f64,
            }
        })
        .collect();
    Ok(EvalReport {
        sources,
        workloads: trace.workloads.len(),
        workloads_evaluated: chosen.len(),
        options: *options,
        definitions: definitions(),
        models,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The workloads an evaluation with `sample` covers: all, or `sample` of them evenly
/// spaced through the (id-sorted) list, so the choice is deterministic and spans the trace.
pub fn sampled_workloads(trace: &Trace, sample: Option<usize>) -> Vec<&TraceWorkload> {
    let all = &trace.workloads;
    match sample {
        Some(n) if n > 0 && n < all.len() => (0..n).map(|k| &all[k * all.len() / n]).collect(),
        _ => all.iter().collect(),
    }
}

fn definitions() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            "forecast",
            "one step ahead: issued at the previous sample, for the next sample, before it is observed",
        ),
        (
            "steps",
            "steps at least warmup_s after the workload's first sample where every candidate forecast",
        ),
        (
            "pinball_p95",
            "per series mean pinball loss at q=0.95 divided by max(the series' mean demand, 0.01 core or 16 MiB); mean over series",
        ),
        (
            "coverage_p95",
            "share of scored steps with demand <= forecast p95, pooled over series",
        ),
        (
            "mase",
            "per series MAE of p50 divided by the MAE of the previous-sample naive forecast on the same steps; mean over series",
        ),
        (
            "ets",
            "augurs AutoETS (non-seasonal) refitted every refit_every_s on the last window_s; between refits the k-step-ahead forecast of the last fit; p95 = upper bound of the level-0.90 interval",
        ),
        (
            "seasonal-naive",
            "p50 = demand one day before the target time; other quantiles from its own signed residuals (half-life 2 days)",
        ),
    ])
}

/// The report as a text table.
pub fn table(report: &EvalReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>9} {:>8}   {:>9} {:>9} {:>8}   {:>9} {:>9} {:>8} {:>9}",
        "model",
        "pinball",
        "coverage",
        "mase",
        "cpu pin",
        "cpu cov",
        "cpu mase",
        "mem pin",
        "mem cov",
        "mem mase",
        "µs/step"
    );
    for m in &report.models {
        let r = |name: &str| m.resources.get(name).copied();
        let cell = |s: Option<Scores>| match s {
            Some(s) => format!(
                "{:>9.4} {:>9.3} {:>8.3}",
                s.pinball_p95, s.coverage_p95, s.mase
            ),
            None => format!("{:>9} {:>9} {:>8}", "-", "-", "-"),
        };
        let _ = writeln!(
            out,
            "{:<20} {}   {}   {} {:>9.2}",
            m.name,
            cell(Some(m.overall)),
            cell(r("cpu")),
            cell(r("memory")),
            m.us_per_step
        );
    }
    let steps = report.models.first().map_or(0, |m| m.overall.steps);
    let _ = writeln!(
        out,
        "{} of {} workloads, {} scored workload-steps per model (cpu + memory), {:.1} s",
        report.workloads_evaluated, report.workloads, steps, report.seconds
    );
    out
}

#[cfg(test)]
mod tests;
