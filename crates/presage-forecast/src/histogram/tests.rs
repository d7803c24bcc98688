use proptest::prelude::*;

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const HOUR_S: f64 = 3600.0;

fn secs(s: i64) -> Timestamp {
    Timestamp::from_unix_secs(s)
}

fn cpu(half_life_s: f64) -> Result<DecayingHistogram, ForecastError> {
    DecayingHistogram::new(ExponentialBuckets::vpa_cpu(), half_life_s)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn a_sample_one_half_life_older_counts_half() -> TestResult {
    let mut h = cpu(HOUR_S)?;
    let b = ExponentialBuckets::vpa_cpu();
    h.add(1.0, 1.0, secs(0));
    h.add(2.0, 1.0, secs(3600));
    // Same weight, one half-life apart: the older holds exactly half of the newer.
    let (old, new) = (h.weights()[b.index_of(1.0)], h.weights()[b.index_of(2.0)]);
    assert_eq!(old / new, 0.5);
    // As of the newer sample's time they weigh 0.5 + 1; one half-life later, half that.
    assert!(close(h.total_weight(secs(3600)), 1.5));
    assert!(close(h.total_weight(secs(7200)), 0.75));
    // The median: the running weight is 1/3 of the total after the bucket holding 1.0,
    // short of 1/2, so it lands in the bucket holding 2.0, [1.98427, 2.09348): its end.
    assert!(close(h.percentile(0.5), 2.093_479_957_150_738));
    Ok(())
}

#[test]
fn percentile_reports_the_end_of_the_bucket() -> TestResult {
    let mut h = cpu(f64::INFINITY)?;
    assert_eq!(h.percentile(0.5), 0.0, "empty histogram");
    // 0.5 cores falls in bucket 25 = [0.01·(1.05²⁵−1)/0.05, 0.01·(1.05²⁶−1)/0.05)
    // = [0.47727, 0.51113): every percentile is that bucket's end.
    h.add(0.5, 1.0, secs(0));
    for p in [0.0, 0.5, 1.0] {
        assert!(close(h.percentile(p), 0.511_134_537_588_872_8), "p = {p}");
    }
    // Loads 1, 2, …, 10 at weight 1 each: the running weight first reaches 0.9 · 10 = 9 in
    // the bucket holding 9, bucket 78 = [8.79074, 9.24027), so P90 is 9.24027.
    let mut h = cpu(f64::INFINITY)?;
    for v in 1..=10 {
        h.add(f64::from(v), 1.0, secs(i64::from(v)));
    }
    assert!(close(h.percentile(0.9), 9.240_274_488_922_392));
    // Past the layout everything lands in the last bucket, which reports its start.
    let mut h = cpu(f64::INFINITY)?;
    h.add(1e9, 1.0, secs(0));
    assert!(close(h.percentile(0.5), 1_021.109_408_904_865));
    Ok(())
}

#[test]
fn load_adjusted_percentile_weighs_work_not_time() -> TestResult {
    // ANCHORS §2.2: nine time units at load 1 and one at load 10.
    // 1 falls in bucket 36 = [0.95836, 1.01628), 10 in bucket 80 = [9.71229, 10.20790).
    // By time: the running weight reaches 0.9 · 10 = 9 in bucket 36 → P90 = 1.01628.
    // Load-adjusted, each bucket's weight is multiplied by its value (its end):
    // 9 · 1.01628 = 9.14653 and 1 · 10.20790, total 19.35444; 0.9 of it is 17.41899,
    // which bucket 36 alone does not reach, so P90 lands in bucket 80 → 10.20790.
    let mut h = cpu(f64::INFINITY)?;
    for t in 0..9 {
        h.add(1.0, 1.0, secs(t));
    }
    h.add(10.0, 1.0, secs(9));
    assert!(close(h.percentile(0.9), 1.016_281_388_554_091_8));
    assert!(close(
        h.load_adjusted_percentile(0.9),
        10.207_902_624_036_937
    ));
    // Below 9.14653 / 19.35444 = 47 % of the work, the answer is still the low bucket.
    assert!(close(
        h.load_adjusted_percentile(0.45),
        1.016_281_388_554_091_8
    ));
    Ok(())
}

#[test]
fn subtract_removes_what_add_put_in() -> TestResult {
    let mut h = cpu(HOUR_S)?;
    h.add(0.3, 1.0, secs(100));
    h.add(3.0, 1.0, secs(200));
    h.subtract(3.0, 1.0, secs(200));
    // Only 0.3 is left: bucket 18 = [0.28132, 0.30539).
    assert!(close(h.percentile(1.0), 0.305_390_039_075_127_8));
    h.subtract(0.3, 5.0, secs(100));
    assert!(h.is_empty());
    assert_eq!(h.percentile(0.9), 0.0);
    assert_eq!(h.weights().iter().copied().fold(0.0, f64::max), 0.0);
    Ok(())
}

#[test]
fn invalid_samples_are_ignored() -> TestResult {
    let mut h = cpu(HOUR_S)?;
    h.add(f64::NAN, 1.0, secs(0));
    h.add(1.0, -1.0, secs(0));
    h.add(1.0, f64::INFINITY, secs(0));
    h.add(1.0, f64::NAN, secs(0));
    assert!(h.is_empty());
    assert!(DecayingHistogram::new(ExponentialBuckets::vpa_cpu(), 0.0).is_err());
    assert!(DecayingHistogram::new(ExponentialBuckets::vpa_cpu(), -1.0).is_err());
    assert!(DecayingHistogram::new(ExponentialBuckets::vpa_cpu(), f64::NAN).is_err());
    Ok(())
}

#[test]
fn renormalisation_moves_the_reference_and_keeps_percentiles() -> TestResult {
    // One-second half-life so 100 half-lives pass quickly. The first sample sets the
    // reference to 0; the next ones weigh 2⁹⁶…2¹⁰⁰ relative to it.
    let mut h = cpu(1.0)?;
    h.add(3.0, 1.0, secs(0));
    for (i, v) in [1.0, 2.0, 3.0, 4.0, 5.0].into_iter().enumerate() {
        h.add(v, 1.0, secs(96 + i as i64));
    }
    let ps = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0];
    let before = h.percentiles(ps);
    let load_before = h.load_adjusted_percentiles(ps);
    // 100.6 s is past 100 half-lives: the reference moves to 101 s and every weight is
    // scaled by 2⁻¹⁰¹, exactly.
    h.add(3.0, 0.0, Timestamp::from_unix_ms(100_600));
    assert_eq!(h.checkpoint().reference_ms, 101_000);
    assert_eq!(h.percentiles(ps), before);
    assert_eq!(h.load_adjusted_percentiles(ps), load_before);
    Ok(())
}

#[test]
fn merge_rejects_other_layouts_and_half_lives() -> TestResult {
    let mut a = cpu(HOUR_S)?;
    let b = cpu(2.0 * HOUR_S)?;
    let c = DecayingHistogram::new(ExponentialBuckets::vpa_memory(), HOUR_S)?;
    assert!(a.merge(&b).is_err());
    assert!(a.merge(&c).is_err());
    Ok(())
}

#[test]
fn bad_checkpoints_are_refused() -> TestResult {
    let mut h = cpu(HOUR_S)?;
    h.add(1.0, 1.0, secs(0));
    let good = h.checkpoint();
    let mut bad = good.clone();
    bad.buckets.push((10_000, 1.0));
    assert!(DecayingHistogram::from_checkpoint(&bad).is_err());
    let mut bad = good.clone();
    bad.buckets[0].1 = -1.0;
    assert!(DecayingHistogram::from_checkpoint(&bad).is_err());
    let mut bad = good.clone();
    bad.total_weight = f64::NAN;
    assert!(DecayingHistogram::from_checkpoint(&bad).is_err());
    let mut bad = good;
    bad.half_life_ms = Some(0);
    assert!(DecayingHistogram::from_checkpoint(&bad).is_err());
    let json = r#"{"layout":{"first":0.01,"ratio":1.05,"count":0},"reference_ms":0,"total_weight":0,"buckets":[]}"#;
    assert!(serde_json::from_str::<DecayingHistogram>(json).is_err());
    let json = r#"{"layout":{"first":0.01,"ratio":0.5,"count":10},"reference_ms":0,"total_weight":0,"buckets":[]}"#;
    assert!(serde_json::from_str::<DecayingHistogram>(json).is_err());
    Ok(())
}

/// Samples as (seconds, value, weight).
fn samples(max_s: i64) -> impl Strategy<Value = Vec<(i64, f64, f64)>> {
    prop::collection::vec((0..max_s, 0.0..50.0f64, 0.01..10.0f64), 1..60).prop_map(|mut v| {
        v.sort_by_key(|s| s.0);
        v
    })
}

fn filled(
    half_life_s: f64,
    samples: &[(i64, f64, f64)],
) -> Result<DecayingHistogram, ForecastError> {
    let mut h = cpu(half_life_s)?;
    for &(t, v, w) in samples {
        h.add(v, w, secs(t));
    }
    Ok(h)
}

const PS: [f64; 9] = [0.0, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];

proptest! {
    #[test]
    fn percentiles_are_monotone_in_p(s in samples(10 * 86_400)) {
        let h = filled(86_400.0, &s)?;
        for out in [h.percentiles(PS), h.load_adjusted_percentiles(PS)] {
            prop_assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
            prop_assert!(out[0] > 0.0);
        }
    }

    #[test]
    fn one_walk_equals_one_walk_per_percentile(s in samples(86_400)) {
        let h = filled(3_600.0, &s)?;
        let all = h.percentiles(PS);
        let load = h.load_adjusted_percentiles(PS);
        for (i, p) in PS.into_iter().enumerate() {
            prop_assert_eq!(all[i], h.percentile(p));
            prop_assert_eq!(load[i], h.load_adjusted_percentile(p));
        }
        let mut reversed = PS;
        reversed.reverse();
        let back = h.percentiles(reversed);
        prop_assert!(back.iter().rev().eq(all.iter()));
    }

    #[test]
    fn shifting_the_reference_keeps_percentiles(
        s in samples(3 * 3_600),
        shift in 1i64..6,
    ) {
        // Weights ≥ 0.01 and at most 3 half-lives old stay ≥ 0.01 · 2⁻³ · 2⁻⁵ > EPSILON
        // after shifting up to 5 half-lives, so nothing falls out at the edges.
        let mut h = filled(3_600.0, &s)?;
        let before = (h.percentiles(PS), h.load_adjusted_percentiles(PS));
        let reference = h.checkpoint().reference_ms;
        h.shift_reference(reference + shift * 3_600_000);
        prop_assert_eq!(h.checkpoint().reference_ms, reference + shift * 3_600_000);
        prop_assert_eq!((h.percentiles(PS), h.load_adjusted_percentiles(PS)), before);
    }

    #[test]
    fn checkpoint_round_trip_keeps_everything(s in samples(20 * 86_400)) {
        let h = filled(86_400.0, &s)?;
        // In memory the round trip is exact.
        prop_assert_eq!(&DecayingHistogram::from_checkpoint(&h.checkpoint())?, &h);
        // Through JSON the number parser may be one ulp off (serde_json without its
        // `float_roundtrip` feature), which moves no percentile.
        let json = serde_json::to_string(&h)?;
        let back: DecayingHistogram = serde_json::from_str(&json)?;
        prop_assert_eq!(back.percentiles(PS), h.percentiles(PS));
        prop_assert_eq!(back.load_adjusted_percentiles(PS), h.load_adjusted_percentiles(PS));
        prop_assert!(close(back.total_weight(secs(0)), h.total_weight(secs(0))));
    }

    #[test]
    fn merge_equals_adding_everything_to_one(
        a in prop::collection::vec((0i64..10, 0.0..50.0f64, 1u8..10), 1..40),
        b in prop::collection::vec((0i64..10, 0.0..50.0f64, 1u8..10), 1..40),
    ) {
        // Times on whole half-lives and integer weights make every decay factor a power
        // of two and every sum exact, so the two routes must agree bit for bit. Within
        // 10 half-lives no weight (≥ 1 · 2⁻¹⁰) falls under EPSILON when the older
        // reference is aligned to the younger one; further apart, alignment forgets the
        // oldest samples, as VPA's does.
        let hl = 3_600i64;
        let mut ha = cpu(hl as f64)?;
        let mut hb = cpu(hl as f64)?;
        let mut all: Vec<(i64, f64, f64, bool)> = Vec::new();
        for &(t, v, w) in &a { all.push((t, v, f64::from(w), true)); }
        for &(t, v, w) in &b { all.push((t, v, f64::from(w), false)); }
        all.sort_by_key(|s| s.0);
        let mut one = cpu(hl as f64)?;
        for &(t, v, w, in_a) in &all {
            let at = secs(t * hl);
            one.add(v, w, at);
            if in_a { ha.add(v, w, at) } else { hb.add(v, w, at) }
        }
        ha.merge(&hb)?;
        prop_assert_eq!(ha.percentiles(PS), one.percentiles(PS));
        prop_assert_eq!(ha.load_adjusted_percentiles(PS), one.load_adjusted_percentiles(PS));
        let now = secs(10 * hl);
        prop_assert_eq!(ha.total_weight(now), one.total_weight(now));
    }

    #[test]
    fn merge_matches_within_rounding_at_any_times(s in samples(5 * 86_400), split in 0.0..1.0f64) {
        let mut ha = cpu(86_400.0)?;
        let mut hb = cpu(86_400.0)?;
        let one = filled(86_400.0, &s)?;
        for (i, &(t, v, w)) in s.iter().enumerate() {
            let h = if (i as f64) < split * s.len() as f64 { &mut ha } else { &mut hb };
            h.add(v, w, secs(t));
        }
        hb.merge(&ha)?;
        let now = secs(5 * 86_400);
        prop_assert!(close(hb.total_weight(now), one.total_weight(now)));
        for (x, y) in hb.weights().iter().zip(one.weights()) {
            // Merged weights are relative to the younger reference; compare in sample units.
            let scale = one.total_weight(now) / one.total;
            let scale_b = hb.total_weight(now) / hb.total;
            prop_assert!(close(x * scale_b, y * scale));
        }
    }
}

#[test]
fn cost_of_add_and_walk() -> TestResult {
    // Not a benchmark: prints what one add and one three-percentile walk cost (run with
    // `--release -- --nocapture` for numbers worth reading).
    let mut h = cpu(86_400.0)?;
    let n = 200_000;
    let t0 = std::time::Instant::now();
    let mut acc = 0.0;
    for i in 1..=n {
        let x = (i as f64 * 0.37).sin();
        h.add(1.0 + 0.5 * x, 0.1, secs(i * 300));
    }
    let add_ns = t0.elapsed().as_nanos() as f64 / n as f64;
    let t0 = std::time::Instant::now();
    for i in 1..=n {
        acc += h.percentiles([0.5, 0.9, 0.95 + (i % 2) as f64 * 1e-9])[1];
    }
    let walk_ns = t0.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "histogram: add {add_ns:.0} ns, 3-percentile walk over buckets {}..={} {walk_ns:.0} ns \
         (checksum {acc:.3})",
        h.min_bucket, h.max_bucket
    );
    Ok(())
}
