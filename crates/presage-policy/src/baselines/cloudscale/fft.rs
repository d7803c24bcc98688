//! A small radix-2 FFT and the two spectral questions CloudScale asks of recent usage:
//! does it repeat (and with what period), and how large are its fast bursts.

/// A complex number, just enough for the transform.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Complex {
    pub(super) re: f64,
    pub(super) im: f64,
}

impl Complex {
    fn new(re: f64, im: f64) -> Self {
        Complex { re, im }
    }

    fn mul(self, o: Complex) -> Complex {
        Complex::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }

    fn norm_sqr(self) -> f64 {
        self.re * self.re + self.im * self.im
    }
}

/// Twiddle factors for transforms of every power-of-two size up to `max`, computed once
/// and shared by every workload.
#[derive(Debug)]
pub(super) struct Fft {
    max: usize,
    /// e^(−2πik/max) for k < max/2.
    twiddles: Vec<Complex>,
}

impl Fft {
    /// Transforms of up to `max` points (rounded up to a power of two, at least 2).
    pub(super) fn new(max: usize) -> Self {
        let max = max.max(2).next_power_of_two();
        let twiddles = (0..max / 2)
            .map(|k| {
                let a = -std::f64::consts::TAU * k as f64 / max as f64;
                Complex::new(a.cos(), a.sin())
            })
            .collect();
        Fft { max, twiddles }
    }

    /// The largest size this plan transforms.
    pub(super) fn max_len(&self) -> usize {
        self.max
    }

    /// The first n/2 + 1 bins of the (unscaled, forward) transform of the real series
    /// `x` (n a power of two, at least 4, at most this plan's size), into `out`, through one
    /// complex transform of n/2 points: the even samples as real parts, the odd ones as
    /// imaginary parts, then untangled. False (and `out` empty) if `x` does not fit.
    pub(super) fn real_spectrum(&self, x: &[f64], out: &mut Vec<Complex>) -> bool {
        let n = x.len();
        out.clear();
        if n < 4 || !n.is_power_of_two() || n > self.max {
            return false;
        }
        let m = n / 2;
        let mut z: Vec<Complex> = x
            .chunks_exact(2)
            .map(|pair| Complex::new(pair[0], pair[1]))
            .collect();
        if !self.transform(&mut z, false) {
            return false;
        }
        let stride = self.max / n;
        out.extend((0..=m).map(|k| {
            let a = z[k % m];
            let b = z[(m - k) % m];
            // even = (a + b̄)/2, odd = (a − b̄)/(2i): the spectra of the two halves.
            let even = Complex::new((a.re + b.re) / 2.0, (a.im - b.im) / 2.0);
            let odd = Complex::new((a.im + b.im) / 2.0, (b.re - a.re) / 2.0);
            let w = if k < m {
                self.twiddles[k * stride]
            } else {
                Complex::new(-1.0, 0.0)
            };
            let t = odd.mul(w);
            Complex::new(even.re + t.re, even.im + t.im)
        }));
        true
    }

    /// In-place transform (unscaled both ways). Lengths that are not a power of two or
    /// exceed the plan are left untouched and reported as `false`.
    pub(super) fn transform(&self, data: &mut [Complex], inverse: bool) -> bool {
        let n = data.len();
        if n < 2 || !n.is_power_of_two() || n > self.max {
            return n == 1;
        }
        let bits = n.trailing_zeros();
        for i in 0..n {
            let j = i.reverse_bits() >> (usize::BITS - bits);
            if j > i {
                data.swap(i, j);
            }
        }
        // The first two stages need no multiplications (their twiddles are 1 and ∓i);
        // doing them apart spares the general loop its costliest, tiniest blocks.
        for pair in data.chunks_exact_mut(2) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = Complex::new(a.re + b.re, a.im + b.im);
            pair[1] = Complex::new(a.re - b.re, a.im - b.im);
        }
        if n >= 4 {
            for quad in data.chunks_exact_mut(4) {
                let (a0, a1, b0, b1) = (quad[0], quad[1], quad[2], quad[3]);
                // b1 × (−i) forward, × i inverse.
                let t1 = if inverse {
                    Complex::new(-b1.im, b1.re)
                } else {
                    Complex::new(b1.im, -b1.re)
                };
                quad[0] = Complex::new(a0.re + b0.re, a0.im + b0.im);
                quad[2] = Complex::new(a0.re - b0.re, a0.im - b0.im);
                quad[1] = Complex::new(a1.re + t1.re, a1.im + t1.im);
                quad[3] = Complex::new(a1.re - t1.re, a1.im - t1.im);
            }
        }
        let mut len = 8;
        while len <= n {
            let stride = self.max / len;
            let half = len / 2;
            for block in data.chunks_exact_mut(len) {
                let (lower, upper) = block.split_at_mut(half);
                let twiddles = self.twiddles.iter().step_by(stride);
                for ((a, b), &w) in lower.iter_mut().zip(upper.iter_mut()).zip(twiddles) {
                    let w = if inverse {
                        Complex::new(w.re, -w.im)
                    } else {
                        w
                    };
                    let t = b.mul(w);
                    *b = Complex::new(a.re - t.re, a.im - t.im);
                    *a = Complex::new(a.re + t.re, a.im + t.im);
                }
            }
            len *= 2;
        }
        true
    }
}

/// The period, in steps, of the dominant repeating pattern of `series`, if there is one.
///
/// The strongest spectral peaks among periods in [`min_period`, n/2] give first guesses;
/// the correlation of the series with its own shift (computed through the same transform,
/// zero-padded so it is not circular) refines each to its best lag within ±20 %. The best
/// lag overall must correlate at least `min_acf` for the pattern to count.
pub(super) fn detect_period(
    fft: &Fft,
    series: &[f64],
    min_period: usize,
    min_acf: f64,
) -> Option<usize> {
    let series = &series[series.len().saturating_sub(fft.max_len() / 2)..];
    let n = series.len();
    let min_period = min_period.max(2);
    if n < 2 * min_period {
        return None;
    }
    let size = (2 * n).next_power_of_two();
    // Remove the least-squares line first: a trend correlates with itself at every lag
    // and would pass for a long period.
    let mean = series.iter().sum::<f64>() / n as f64;
    let centre = (n as f64 - 1.0) / 2.0;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, x) in series.iter().enumerate() {
        let t = i as f64 - centre;
        sxy += t * (x - mean);
        sxx += t * t;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let mut signal = vec![0.0; size];
    for (i, (slot, x)) in signal.iter_mut().zip(series).enumerate() {
        *slot = x - mean - slope * (i as f64 - centre);
    }
    let mut spectrum = Vec::new();
    if !fft.real_spectrum(&signal, &mut spectrum) {
        return None;
    }
    // Frequency bin k has period size/k steps. A spiky pattern (a short daily surge) puts
    // nearly as much power in its harmonics as in its fundamental, so the strongest few
    // spectral peaks are each checked against the autocorrelation.
    let k_lo = (2 * size).div_ceil(n).max(1);
    let k_hi = (size / min_period).min(size / 2 - 1);
    let mut peaks = [(0usize, 0.0f64); CANDIDATES];
    for k in k_lo..=k_hi {
        let p = spectrum[k].norm_sqr();
        let is_peak = p >= spectrum[k - 1].norm_sqr() && p >= spectrum[k + 1].norm_sqr();
        if is_peak && p > peaks[CANDIDATES - 1].1 {
            peaks[CANDIDATES - 1] = (k, p);
            peaks.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
    }
    // The power spectrum is real and even, so its transform (the autocorrelation) is
    // the same forwards and backwards, and a real transform computes it.
    let half = size / 2;
    for (k, slot) in signal.iter_mut().enumerate() {
        *slot = spectrum[if k <= half { k } else { size - k }].norm_sqr();
    }
    let mut buf = Vec::new();
    if !fft.real_spectrum(&signal, &mut buf) {
        return None;
    }
    // buf[lag].re / size is Σ x[i]·x[i+lag] (x about its trend line). Dividing it by
    // the energies of the two overlapping segments, rather than by the whole series',
    // makes identical segments score exactly 1: over a span that is not a whole number of
    // periods, the plain autocorrelation's partial-period terms can move its peak by
    // several steps.
    let mut energy = vec![0.0; n + 1];
    for (i, x) in series.iter().enumerate() {
        let r = x - mean - slope * (i as f64 - centre);
        energy[i + 1] = energy[i] + r * r;
    }
    // Flat up to rounding: nothing repeats.
    let variance = energy[n] / n as f64;
    if variance <= (1e-9 * mean.abs()).powi(2) || variance <= f64::MIN_POSITIVE {
        return None;
    }
    let scale = 1.0 / size as f64;
    let rho = |lag: usize| {
        let head = energy[n - lag];
        let tail = energy[n] - energy[lag];
        if head > 0.0 && tail > 0.0 {
            buf[lag].re * scale / (head * tail).sqrt()
        } else {
            0.0
        }
    };
    // Near its peak the correlation is flat and noise picks the top lag; the mean over
    // ±2 lags is as flat but far less noisy, and symmetric, so it keeps the true peak.
    let mut best: Option<(usize, f64)> = None;
    let mut around = Vec::new();
    for &(k, p) in &peaks {
        if p <= 0.0 {
            continue;
        }
        let guess = size as f64 / k as f64;
        let lo = ((guess * 0.8).floor() as usize).max(min_period);
        let hi = ((guess * 1.2).ceil() as usize).min(n / 2);
        if lo > hi {
            continue;
        }
        let first = lo.saturating_sub(2).max(1);
        around.clear();
        around.extend((first..=hi + 2).map(rho));
        for lag in lo..=hi {
            let window = &around[lag.saturating_sub(2).max(1) - first..=lag + 2 - first];
            let r = window.iter().sum::<f64>() / window.len() as f64;
            if best.is_none_or(|(_, b)| r > b) {
                best = Some((lag, r));
            }
        }
    }
    let (lag, _) = best?;
    (rho(lag) >= min_acf).then_some(lag)
}

/// Spectral peaks checked per period search.
const CANDIDATES: usize = 3;

/// The largest upward excursion of the high-frequency half of the spectrum of the last
/// `window` values (rounded down to a power of two, at least 8): the burst CloudScale pads
/// for. Zero when there is too little history.
pub(super) fn burst_amplitude(fft: &Fft, series: &[f64], window: usize) -> f64 {
    let m = window.min(series.len());
    if m < 8 {
        return 0.0;
    }
    let m = 1usize << (usize::BITS - 1 - m.leading_zeros());
    let recent = &series[series.len() - m..];
    // The transform treats the window as one period of a loop; a window that starts low
    // and ends high (any slice of a daily wave) would jump at the seam and smear that
    // jump over every frequency. Subtracting the line through the means of its first and
    // last sixteenths closes the seam without touching fast wiggles.
    let q = (m / 16).max(1);
    let head = recent[..q].iter().sum::<f64>() / q as f64;
    let tail = recent[m - q..].iter().sum::<f64>() / q as f64;
    let centre = (q as f64 - 1.0) / 2.0;
    let slope = (tail - head) / ((m - q) as f64);
    let mut buf: Vec<Complex> = recent
        .iter()
        .enumerate()
        .map(|(i, x)| Complex::new(x - head - slope * (i as f64 - centre), 0.0))
        .collect();
    if !fft.transform(&mut buf, false) {
        return 0.0;
    }
    // Keep periods shorter than 4 steps (20 minutes at 5-minute steps): bins k with
    // m/4 < k < 3m/4, which are their own mirror images so the result stays real.
    for (k, c) in buf.iter_mut().enumerate() {
        if k.min(m - k) <= m / 4 {
            *c = Complex::default();
        }
    }
    if !fft.transform(&mut buf, true) {
        return 0.0;
    }
    buf.iter().map(|c| c.re / m as f64).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_matches_a_direct_dft_and_inverts() {
        let fft = Fft::new(16);
        let x: Vec<f64> = (0..8)
            .map(|i| (i as f64 * 0.7).sin() + i as f64 * 0.1)
            .collect();
        let mut buf: Vec<Complex> = x.iter().map(|&v| Complex::new(v, 0.0)).collect();
        assert!(fft.transform(&mut buf, false));
        for (k, got) in buf.iter().enumerate() {
            let (mut re, mut im) = (0.0, 0.0);
            for (t, v) in x.iter().enumerate() {
                let a = -std::f64::consts::TAU * (k * t) as f64 / 8.0;
                re += v * a.cos();
                im += v * a.sin();
            }
            assert!(
                (got.re - re).abs() < 1e-9 && (got.im - im).abs() < 1e-9,
                "bin {k}"
            );
        }
        assert!(fft.transform(&mut buf, true));
        for (got, want) in buf.iter().zip(&x) {
            assert!((got.re / 8.0 - want).abs() < 1e-12);
        }
        let mut odd = vec![Complex::default(); 6];
        assert!(!fft.transform(&mut odd, false), "not a power of two");
        let mut big = vec![Complex::default(); 32];
        assert!(!fft.transform(&mut big, false), "larger than the plan");
    }

    #[test]
    fn real_spectrum_matches_the_complex_transform() {
        let fft = Fft::new(64);
        let x: Vec<f64> = (0..32)
            .map(|i| ((i * 37) % 11) as f64 - 0.3 * i as f64)
            .collect();
        let mut full: Vec<Complex> = x.iter().map(|&v| Complex::new(v, 0.0)).collect();
        assert!(fft.transform(&mut full, false));
        let mut half = Vec::new();
        assert!(fft.real_spectrum(&x, &mut half));
        assert_eq!(half.len(), 17);
        for (k, (got, want)) in half.iter().zip(&full).enumerate() {
            assert!(
                (got.re - want.re).abs() < 1e-9 && (got.im - want.im).abs() < 1e-9,
                "bin {k}: {got:?} vs {want:?}"
            );
        }
        assert!(!fft.real_spectrum(&x[..6], &mut half), "not a power of two");
        assert!(half.is_empty());
    }

    #[test]
    fn finds_a_daily_period_and_none_in_a_ramp_or_flat_series() {
        let fft = Fft::new(2048);
        // Three days at 5-minute steps of a daily wave plus a deterministic wobble.
        let mut state = 11u64;
        let daily: Vec<f64> = (0..864)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let noise = (state >> 11) as f64 / (1u64 << 53) as f64;
                let day = (i as f64 / 288.0) * std::f64::consts::TAU;
                10.0 + 5.0 * day.sin() + 2.0 * noise
            })
            .collect();
        // With noise the correlation peak is flat to within a few lags.
        let p = detect_period(&fft, &daily, 12, 0.5).expect("a period");
        assert!(p.abs_diff(288) <= 3, "{p}");
        let ramp: Vec<f64> = (0..864).map(|i| i as f64).collect();
        assert_eq!(detect_period(&fft, &ramp, 12, 0.5), None);
        assert_eq!(detect_period(&fft, &[3.0; 864], 12, 0.5), None);
        // Under two periods of history there is nothing to find.
        assert_eq!(detect_period(&fft, &daily[..500], 288, 0.5), None);
    }

    #[test]
    fn burst_amplitude_sees_fast_wiggles_not_slow_trends() {
        let fft = Fft::new(64);
        // Five hours of a daily wave of amplitude 1 (its steepest part): a slope, no burst.
        let slow: Vec<f64> = (0..64)
            .map(|i| 5.0 + (i as f64 / 288.0 * std::f64::consts::TAU).sin())
            .collect();
        let b = burst_amplitude(&fft, &slow, 64);
        assert!(b < 0.01, "{b}");
        // Alternating ±1 is the fastest pattern there is: all of it is burst.
        let fast: Vec<f64> = (0..64)
            .map(|i| 5.0 + if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert!((burst_amplitude(&fft, &fast, 64) - 1.0).abs() < 1e-9);
        assert_eq!(burst_amplitude(&fft, &fast[..5], 64), 0.0);
    }
}
