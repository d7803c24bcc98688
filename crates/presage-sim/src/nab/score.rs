//! NAB's scoring rules as pure functions (Lavin & Ahmad 2015, and `nab/sweeper.py` in
//! numenta/NAB): windows, the scaled sigmoid of a detection's position, the three
//! application profiles, the probationary period and the normalisation between the null
//! and the perfect detector.

use serde::Serialize;

/// An application profile: NAB's weights. The costs are stored as positive weights as
/// NAB's `profiles.json` does; a false positive *costs* `fp_weight` (A_FP = −fp_weight)
/// and a missed window `fn_weight` (A_FN = −fn_weight).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    /// The profile's key in reports: `standard`, `reward_low_fp` or `reward_low_fn`.
    pub name: &'static str,
    /// The key of the same profile in NAB's `final_results.json`.
    pub nab_name: &'static str,
    /// A_TP: the score of a detection at the very start of a window.
    pub tp_weight: f64,
    /// −A_FP.
    pub fp_weight: f64,
    /// −A_FN.
    pub fn_weight: f64,
}

/// NAB's three profiles (A_TN is 0 in all of them, so it never appears).
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        nab_name: "standard",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 1.0,
    },
    Profile {
        name: "reward_low_fp",
        nab_name: "reward_low_FP_rate",
        tp_weight: 1.0,
        fp_weight: 0.22,
        fn_weight: 1.0,
    },
    Profile {
        name: "reward_low_fn",
        nab_name: "reward_low_FN_rate",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 2.0,
    },
];

/// NAB's probationary share of each series.
pub const PROBATION_SHARE: f64 = 0.15;

/// A labelled window as an inclusive span of row indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowSpan {
    /// First row inside the window.
    pub start: usize,
    /// Last row inside the window.
    pub end: usize,
}

impl WindowSpan {
    fn width(&self) -> usize {
        self.end - self.start + 1
    }

    fn contains(&self, i: usize) -> bool {
        (self.start..=self.end).contains(&i)
    }
}

/// NAB's scaled sigmoid of a relative position: −1 (a window's left edge) gives ≈ 0.987,
/// 0 (its right edge) gives 0, positive positions (past a window) go towards −1, and NAB
/// clamps 3 and beyond to exactly −1.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 || position.is_nan() {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// The rows at the start of a series whose detections NAB ignores: 15 % of the rows,
/// capped at 15 % of 5000 (NAB's rule, so a very long series does not learn for ever).
pub fn probationary_length(rows: usize) -> usize {
    let share = (PROBATION_SHARE * rows as f64).floor();
    share.min(PROBATION_SHARE * 5000.0) as usize
}

/// One series scored under one profile.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SeriesScore {
    /// The raw score: TP rewards minus FP and FN costs.
    pub raw: f64,
    /// What the null detector (never fires) scores: every counted window missed.
    pub null: f64,
    /// What the perfect detector scores: A_TP for every counted window.
    pub perfect: f64,
    /// Detections after the probationary period (the ones scored).
    pub detections: usize,
    /// Windows detected (each counts once, by its earliest detection).
    pub true_positives: usize,
    /// Detections outside every window.
    pub false_positives: usize,
    /// Counted windows without a detection.
    pub missed_windows: usize,
    /// Windows that reach past the probationary period (the ones scored).
    pub windows: usize,
}

/// Scores one series of `rows` rows whose detector fired at the row indices `detections`
/// (any order), against `windows` (inclusive spans, in time order, not overlapping).
///
/// As NAB does: detections in the probationary period are ignored, and so are windows
/// entirely inside it; a window's earliest detection scores
/// `tp_weight × σ(−(end − i + 1)/width) / σ(−1)` (so exactly A_TP at its first row) and its
/// later detections nothing; a detection outside every window costs
/// `fp_weight × σ((i − end_prev)/(width_prev − 1))`, i.e. less just after a window, and
/// the full A_FP before the first window or ≥ 3 widths after one; an undetected window
/// costs `fn_weight`.
pub fn score_series(
    rows: usize,
    windows: &[WindowSpan],
    detections: &[usize],
    profile: &Profile,
) -> SeriesScore {
    let probation = probationary_length(rows);
    let counted: Vec<&WindowSpan> = windows.iter().filter(|w| w.end >= probation).collect();
    let max_tp = scaled_sigmoid(-1.0);
    let mut best: Vec<Option<f64>> = vec![None; counted.len()];
    let mut fp_total = 0.0;
    let mut out = SeriesScore {
        windows: counted.len(),
        ..SeriesScore::default()
    };
    let mut sorted: Vec<usize> = detections
        .iter()
        .copied()
        .filter(|&i| i >= probation && i < rows)
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    for &i in &sorted {
        out.detections += 1;
        if let Some(k) = counted.iter().position(|w| w.contains(i)) {
            let w = counted[k];
            let position = -((w.end - i + 1) as f64) / w.width() as f64;
            let score = scaled_sigmoid(position) * profile.tp_weight / max_tp;
            // Sorted ascending, so the first one seen is the earliest and scores highest.
            if best[k].is_none() {
                best[k] = Some(score);
            }
            continue;
        }
        out.false_positives += 1;
        // The preceding window, probationary or not: NAB measures from the last window
        // the stream has passed.
        let position = match windows.iter().rev().find(|w| w.end < i) {
            None => 3.0,
            Some(w) if w.width() <= 1 => 3.0,
            Some(w) => (i - w.end) as f64 / (w.width() - 1) as f64,
        };
        fp_total += scaled_sigmoid(position) * profile.fp_weight;
    }
    let mut tp_total = 0.0;
    for b in &best {
        match b {
            Some(s) => {
                out.true_positives += 1;
                tp_total += s;
            }
            None => {
                out.missed_windows += 1;
                tp_total -= profile.fn_weight;
            }
        }
    }
    out.raw = tp_total + fp_total;
    out.null = -profile.fn_weight * counted.len() as f64;
    out.perfect = profile.tp_weight * counted.len() as f64;
    out
}

/// NAB's normalised score: 100 × (raw − null) / (perfect − null), with the three summed
/// over the corpus first. 0 when there is no window to detect (the null and the perfect
/// detector then agree).
pub fn normalised(raw: f64, null: f64, perfect: f64) -> f64 {
    let span = perfect - null;
    if span > 0.0 {
        100.0 * (raw - null) / span
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STD: Profile = PROFILES[0];
    const LOW_FP: Profile = PROFILES[1];
    const LOW_FN: Profile = PROFILES[2];

    // 1000 rows: the probationary period is rows 0..150.
    const ROWS: usize = 1000;
    const W: WindowSpan = WindowSpan {
        start: 400,
        end: 499,
    };

    fn norm(s: &SeriesScore) -> f64 {
        normalised(s.raw, s.null, s.perfect)
    }

    #[test]
    fn nab_sigmoid_matches_the_papers_values() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614).abs() < 1e-5);
        assert!((scaled_sigmoid(-0.5) - 0.848_283).abs() < 1e-5);
        assert!(scaled_sigmoid(0.0).abs() < 1e-12);
        assert!((scaled_sigmoid(1.0) + 0.986_614).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn nab_probation_is_15_percent_capped_at_750() {
        assert_eq!(probationary_length(1000), 150);
        assert_eq!(probationary_length(4032), 604);
        assert_eq!(probationary_length(10_320), 750);
    }

    #[test]
    fn nab_detection_at_window_start_beats_one_at_its_end() {
        let early = score_series(ROWS, &[W], &[W.start], &STD);
        let late = score_series(ROWS, &[W], &[W.end], &STD);
        assert!(early.raw > late.raw, "{early:?} vs {late:?}");
        // The window's first row scores exactly A_TP; its last, σ(−1/100)/σ(−1) ≈ 0.025.
        assert!((early.raw - 1.0).abs() < 1e-12);
        assert!((late.raw - scaled_sigmoid(-0.01) / scaled_sigmoid(-1.0)).abs() < 1e-12);
        assert!(late.raw > 0.0 && late.raw < 0.05);
        assert_eq!((early.true_positives, early.missed_windows), (1, 0));
    }

    #[test]
    fn nab_only_the_first_detection_in_a_window_counts() {
        let one = score_series(ROWS, &[W], &[420], &STD);
        let more = score_series(ROWS, &[W], &[420, 450, 499], &STD);
        assert_eq!(one.raw, more.raw);
        assert_eq!(
            (more.detections, more.true_positives, more.false_positives),
            (3, 1, 0)
        );
    }

    #[test]
    fn nab_false_positive_costs_the_profiles_weight() {
        // Before any window, an FP costs the full A_FP, and a detected window earns 1.
        for (p, a_fp) in [(STD, -0.11), (LOW_FP, -0.22), (LOW_FN, -0.11)] {
            let s = score_series(ROWS, &[W], &[200, W.start], &p);
            assert!((s.raw - (1.0 + a_fp)).abs() < 1e-12, "{}: {s:?}", p.name);
            assert_eq!(s.false_positives, 1);
        }
        // Just after a window it costs less; three widths on, the full weight again.
        let near = score_series(ROWS, &[W], &[W.start, W.end + 1], &STD).raw;
        let far = score_series(ROWS, &[W], &[W.start, W.end + 400], &STD).raw;
        assert!(near > far);
        assert!((far - (1.0 - 0.11)).abs() < 1e-12);
    }

    #[test]
    fn nab_missed_window_costs_fn_weight_and_null_scores_zero() {
        for p in PROFILES {
            let s = score_series(ROWS, &[W], &[], &p);
            assert_eq!(s.raw, -p.fn_weight);
            assert_eq!(s.missed_windows, 1);
            assert_eq!(norm(&s), 0.0);
        }
    }

    #[test]
    fn nab_perfect_detector_scores_100() {
        let windows = [
            W,
            WindowSpan {
                start: 700,
                end: 799,
            },
        ];
        for p in PROFILES {
            let s = score_series(ROWS, &windows, &[400, 700], &p);
            assert!((norm(&s) - 100.0).abs() < 1e-9, "{}: {s:?}", p.name);
        }
    }

    #[test]
    fn nab_probationary_detections_and_windows_are_ignored() {
        let early = WindowSpan { start: 10, end: 60 };
        let s = score_series(ROWS, &[early, W], &[20, 100, W.start], &STD);
        // The detections at rows 20 and 100 are ignored, and so is the window inside the
        // probationary period: one window, detected at its start.
        assert_eq!((s.detections, s.windows, s.false_positives), (1, 1, 0));
        assert!((norm(&s) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn nab_low_fn_profile_punishes_misses_harder() {
        let windows = [
            W,
            WindowSpan {
                start: 700,
                end: 799,
            },
        ];
        let std = score_series(ROWS, &windows, &[400], &STD);
        let low_fn = score_series(ROWS, &windows, &[400], &LOW_FN);
        assert!((std.raw - 0.0).abs() < 1e-12);
        assert!((low_fn.raw + 1.0).abs() < 1e-12);
        // Normalised, one of two windows found at its start is 50 under both.
        assert!((norm(&std) - 50.0).abs() < 1e-9);
        assert!((norm(&low_fn) - 100.0 * 3.0 / 6.0).abs() < 1e-9);
    }
}
