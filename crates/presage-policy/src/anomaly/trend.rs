//! Robust trend statistics for the leak test: Mann–Kendall's τ (is the series rising at
//! almost every step, whatever the size of the steps?) and the Theil–Sen slope (how fast,
//! unmoved by a few outliers). Both are O(n²) in the points given; the scorer passes at
//! most [`MAX_POINTS`].

/// The most points a trend is computed from; longer windows are thinned evenly.
pub const MAX_POINTS: usize = 64;

/// Thins `points` evenly to at most [`MAX_POINTS`], keeping the first and the last.
pub fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let last = points.len() - 1;
    (0..MAX_POINTS)
        .map(|k| points[k * last / (MAX_POINTS - 1)])
        .collect()
}

/// Mann–Kendall τ of the values in time order: (concordant − discordant pairs) / all
/// pairs, in [−1, 1]; 0 with fewer than two points.
pub fn mann_kendall_tau(points: &[(f64, f64)]) -> f64 {
    let n = points.len();
    if n < 2 {
        return 0.0;
    }
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            let d = points[j].1 - points[i].1;
            if d > 0.0 {
                s += 1;
            } else if d < 0.0 {
                s -= 1;
            }
        }
    }
    s as f64 / (n * (n - 1) / 2) as f64
}

/// Theil–Sen slope: the median of the slopes between every pair of points with distinct
/// times (value units per time unit); `None` when no pair has distinct times.
pub fn theil_sen_slope(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dt = b.0 - a.0;
            if dt.abs() > f64::EPSILON {
                slopes.push((b.1 - a.1) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    let mid = slopes.len() / 2;
    let (_, m, _) = slopes.select_nth_unstable_by(mid, f64::total_cmp);
    Some(*m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rising_line_with_an_outlier() {
        let mut pts: Vec<(f64, f64)> = (0..20)
            .map(|i| (f64::from(i), 3.0 * f64::from(i)))
            .collect();
        pts[10].1 = -500.0;
        let slope = theil_sen_slope(&pts).expect("slope");
        assert!((slope - 3.0).abs() < 1e-9, "{slope}");
        let tau = mann_kendall_tau(&pts);
        assert!(tau > 0.8 && tau < 1.0, "{tau}");
    }

    #[test]
    fn flat_and_alternating_have_no_trend() {
        let pts: Vec<(f64, f64)> = (0..30)
            .map(|i| (f64::from(i), if i % 2 == 0 { 1.0 } else { 2.0 }))
            .collect();
        assert!(mann_kendall_tau(&pts).abs() < 0.1);
        assert_eq!(theil_sen_slope(&[(1.0, 1.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn thinning_keeps_the_ends() {
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (f64::from(i), 0.0)).collect();
        let t = thin(&pts);
        assert_eq!(t.len(), MAX_POINTS);
        assert_eq!(t.first().map(|p| p.0), Some(0.0));
        assert_eq!(t.last().map(|p| p.0), Some(999.0));
    }
}
