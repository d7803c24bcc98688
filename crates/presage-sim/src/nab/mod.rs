//! The Numenta Anomaly Benchmark (NAB): its corpus, its scoring rules and presage's
//! detector run over it (`presage evaluate-anomaly`).

pub mod data;
pub mod detect;
pub mod score;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use thiserror::Error;

pub use data::{NabError, NabSeries, PublishedScores, load_corpus, read_published};
pub use detect::{DetectorSettings, detect};
pub use score::{PROFILES, Profile, SeriesScore, WindowSpan, normalised, score_series};

/// Why an evaluation failed.
#[derive(Debug, Error)]
pub enum EvaluateError {
    /// The corpus could not be read.
    #[error(transparent)]
    Data(#[from] NabError),
    /// The directory holds no labelled series.
    #[error("{0}: no labelled series under labels/combined_windows.json")]
    Empty(String),
}

/// One profile's corpus totals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProfileTotals {
    /// The normalised score (0 = null detector, 100 = perfect).
    pub normalised: f64,
    /// The raw score summed over the series.
    pub raw: f64,
    /// The null detector's raw score.
    pub null: f64,
    /// The perfect detector's raw score.
    pub perfect: f64,
}

/// The normalised scores, keyed as the report contract says.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// NAB's standard profile.
    pub standard: f64,
    /// NAB's reward-low-FP profile.
    pub reward_low_fp: f64,
    /// NAB's reward-low-FN profile.
    pub reward_low_fn: f64,
}

/// One series' outcome (the counts do not depend on the profile).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesReport {
    /// `"<folder>/<file>.csv"`.
    pub name: String,
    /// Rows in the series.
    pub rows: usize,
    /// Rows of the probationary period (detections there are ignored).
    pub probationary_rows: usize,
    /// Alerts after the probationary period.
    pub detections: usize,
    /// Windows detected.
    pub true_positives: usize,
    /// Alerts outside every window.
    pub false_positives: usize,
    /// Windows without an alert.
    pub missed_windows: usize,
    /// Windows scored (those reaching past the probationary period).
    pub windows: usize,
    /// The standard profile's raw score of this series.
    pub raw_standard: f64,
    /// Every alert's row index, probationary ones included (for plots and audits).
    pub alert_rows: Vec<usize>,
}

/// `report.json` of `presage evaluate-anomaly`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NabReport {
    /// The normalised score per profile.
    pub scores: Scores,
    /// Each profile's raw, null and perfect totals, by profile name.
    pub profiles: BTreeMap<String, ProfileTotals>,
    /// The per-series outcomes, in name order.
    pub series: Vec<SeriesReport>,
    /// The detector's settings (fixed, the same for every series).
    pub detector: DetectorSettings,
    /// NAB's published normalised scores (detector → profile → score), over NAB's full
    /// 58-file corpus, when `results/final_results.json` was present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishedScores>,
}

/// Scores detections already made: `alerts[k]` are the alert rows of `corpus[k]`.
pub fn score_corpus(
    corpus: &[NabSeries],
    alerts: &[Vec<usize>],
) -> (BTreeMap<String, ProfileTotals>, Vec<SeriesReport>) {
    let mut profiles = BTreeMap::new();
    let mut series = Vec::with_capacity(corpus.len());
    for profile in &PROFILES {
        let (mut raw, mut null, mut perfect) = (0.0, 0.0, 0.0);
        for (s, a) in corpus.iter().zip(alerts) {
            let sc = score_series(s.values.len(), &s.windows, a, profile);
            raw += sc.raw;
            null += sc.null;
            perfect += sc.perfect;
            if profile.name == "standard" {
                series.push(SeriesReport {
                    name: s.name.clone(),
                    rows: s.values.len(),
                    probationary_rows: score::probationary_length(s.values.len()),
                    detections: sc.detections,
                    true_positives: sc.true_positives,
                    false_positives: sc.false_positives,
                    missed_windows: sc.missed_windows,
                    windows: sc.windows,
                    raw_standard: sc.raw,
                    alert_rows: a.clone(),
                });
            }
        }
        profiles.insert(
            profile.name.to_owned(),
            ProfileTotals {
                normalised: normalised(raw, null, perfect),
                raw,
                null,
                perfect,
            },
        );
    }
    (profiles, series)
}

/// Loads the NAB directory `dir`, runs the detector with `settings` on every labelled
/// series and scores it; `progress` is called with each series' row count once it is done.
pub fn evaluate(
    dir: &Path,
    settings: &DetectorSettings,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<NabReport, EvaluateError> {
    let corpus = load_corpus(dir)?;
    if corpus.is_empty() {
        return Err(EvaluateError::Empty(dir.display().to_string()));
    }
    let mut alerts = Vec::with_capacity(corpus.len());
    for s in &corpus {
        let (a, _) = detect(&s.values, settings);
        alerts.push(a);
        progress(s.values.len() as u64);
    }
    let (profiles, series) = score_corpus(&corpus, &alerts);
    let get = |name: &str| profiles.get(name).map_or(0.0, |t| t.normalised);
    Ok(NabReport {
        scores: Scores {
            standard: get("standard"),
            reward_low_fp: get("reward_low_fp"),
            reward_low_fn: get("reward_low_fn"),
        },
        profiles,
        series,
        detector: *settings,
        published: read_published(dir)?,
    })
}

/// Total rows of the labelled series under `dir` (for a progress bar), without parsing.
pub fn corpus_rows(dir: &Path) -> u64 {
    data::read_windows(dir).map_or(0, |w| {
        w.keys()
            .filter_map(|name| std::fs::read_to_string(dir.join("data").join(name)).ok())
            .map(|t| t.lines().count().saturating_sub(1) as u64)
            .sum()
    })
}

/// The Markdown tables: presage's scores beside NAB's published ones, then the series.
pub fn table(report: &NabReport) -> String {
    let mut out = String::new();
    let s = &report.scores;
    let _ = writeln!(
        out,
        "| detector | corpus | standard | reward low FP | reward low FN |\n|---|---|---:|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| **presage** | these {} files | **{:.1}** | **{:.1}** | **{:.1}** |",
        report.series.len(),
        s.standard,
        s.reward_low_fp,
        s.reward_low_fn
    );
    if let Some(published) = &report.published {
        let mut rows: Vec<(&String, &BTreeMap<String, f64>)> = published.iter().collect();
        let standard = |m: &BTreeMap<String, f64>| m.get("standard").copied().unwrap_or(f64::MIN);
        rows.sort_by(|a, b| standard(b.1).total_cmp(&standard(a.1)));
        for (name, m) in rows {
            let cell = |k: &str| m.get(k).map_or("–".to_owned(), |v| format!("{v:.1}"));
            let _ = writeln!(
                out,
                "| {name} | NAB full corpus (58 files), published | {} | {} | {} |",
                cell(PROFILES[0].nab_name),
                cell(PROFILES[1].nab_name),
                cell(PROFILES[2].nab_name)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| series | windows | detections | TP | FP | missed | raw (standard) |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in &report.series {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.2} |",
            r.name,
            r.windows,
            r.detections,
            r.true_positives,
            r.false_positives,
            r.missed_windows,
            r.raw_standard
        );
    }
    out
}
