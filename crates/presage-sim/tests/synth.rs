//! The synthetic generator: determinism, and each pattern's known structure.

use presage_core::Timestamp;
use presage_sim::synth::{Pattern, SynthConfig, generate};
use presage_sim::trace::TraceWorkload;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn cpu(w: &TraceWorkload) -> Vec<f64> {
    w.points
        .iter()
        .map(|p| p.demand.cpu_cores().unwrap_or(f64::NAN))
        .collect()
}

fn memory(w: &TraceWorkload) -> Vec<f64> {
    w.points
        .iter()
        .map(|p| p.demand.memory_bytes().unwrap_or(f64::NAN))
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample autocorrelation at `lag`.
fn autocorrelation(xs: &[f64], lag: usize) -> f64 {
    let m = mean(xs);
    let var: f64 = xs.iter().map(|x| (x - m).powi(2)).sum();
    let cov: f64 = xs
        .iter()
        .zip(&xs[lag..])
        .map(|(a, b)| (a - m) * (b - m))
        .sum();
    cov / var
}

fn of(pattern: Pattern, count: usize) -> SynthConfig {
    SynthConfig {
        patterns: vec![(pattern, count)],
        ..SynthConfig::default_mix()
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let config = SynthConfig::default_mix();
    let a = generate(&config);
    assert_eq!(a, generate(&config));
    let other = generate(&SynthConfig {
        seed: 7,
        ..config.clone()
    });
    assert_ne!(a, other);
    // Workloads do not depend on which other patterns are generated with them.
    let daily_alone = generate(&of(Pattern::Daily, 5));
    let mixed_daily: Vec<&TraceWorkload> = a
        .workloads
        .iter()
        .filter(|w| w.id.as_str().starts_with("daily"))
        .collect();
    assert_eq!(
        daily_alone.workloads.iter().collect::<Vec<_>>(),
        mixed_daily
    );
}

#[test]
fn the_default_mix_is_a_week_of_24_sane_workloads() {
    let config = SynthConfig::default_mix();
    assert_eq!(config.workloads(), 24);
    let trace = generate(&config);
    assert_eq!(trace.workloads.len(), 24);
    for pattern in Pattern::ALL {
        assert!(
            trace
                .workloads
                .iter()
                .any(|w| w.id.as_str().starts_with(pattern.name())),
            "{pattern} missing"
        );
    }
    assert!(
        trace.workloads.windows(2).all(|w| w[0].id < w[1].id),
        "sorted by id"
    );
    for w in &trace.workloads {
        assert_eq!(w.points.len(), 7 * 288, "{}", w.id);
        assert_eq!(w.points[0].at, config.start.plus_secs(300));
        assert!(
            w.points
                .windows(2)
                .all(|p| p[1].at.secs_since(p[0].at) == 300.0)
        );
        let cpu = cpu(w);
        let mem = memory(w);
        assert!(
            cpu.iter().chain(&mem).all(|v| v.is_finite() && *v >= 0.0),
            "{}",
            w.id
        );
        let peak_cpu = cpu.iter().copied().fold(0.0, f64::max);
        let peak_mem = mem.iter().copied().fold(0.0, f64::max);
        let cores = w.provisioned.cpu_quota_cores().unwrap_or(0.0);
        let bytes = w.provisioned.memory_max_bytes().unwrap_or(0.0);
        assert!(
            cores >= 1.3 * peak_cpu && cores.fract() == 0.0,
            "{}: {cores} for {peak_cpu}",
            w.id
        );
        assert!(
            cores <= (2.0 * peak_cpu).ceil().max(1.0),
            "{}: {cores} for {peak_cpu}",
            w.id
        );
        assert!(
            bytes >= 1.3 * peak_mem && (bytes / GIB).fract() == 0.0,
            "{}",
            w.id
        );
        let pattern: Pattern =
            w.id.as_str()
                .split('-')
                .next()
                .unwrap_or("")
                .parse()
                .unwrap_or(Pattern::Idle);
        assert_eq!(w.key.code_id(), format!("synth-{pattern}"));
        assert_eq!(!w.surges.is_empty(), pattern.is_periodic(), "{}", w.id);
    }
}

#[test]
fn daily_repeats_every_day_with_a_recorded_surge_each_day() {
    let trace = generate(&of(Pattern::Daily, 4));
    for w in &trace.workloads {
        let cpu = cpu(w);
        let day = autocorrelation(&cpu, 288);
        let half_day = autocorrelation(&cpu, 144);
        assert!(day > 0.8, "{}: lag-1-day autocorrelation {day}", w.id);
        assert!(
            half_day < day - 0.5,
            "{}: half-day {half_day} vs day {day}",
            w.id
        );
        assert_eq!(w.surges.len(), 7, "{}", w.id);
        for pair in w.surges.windows(2) {
            let gap = pair[1].secs_since(pair[0]);
            assert!(
                (gap - 86_400.0).abs() <= 1800.0,
                "{}: surges {gap} s apart",
                w.id
            );
        }
        for &onset in &w.surges {
            // Demand in the hour before the onset vs the hour after the ramp.
            let window = |from: Timestamp, to: Timestamp| -> f64 {
                let xs: Vec<f64> = w
                    .points
                    .iter()
                    .filter(|p| p.at > from && p.at <= to)
                    .filter_map(|p| p.demand.cpu_cores())
                    .collect();
                mean(&xs)
            };
            let before = window(onset.plus_secs(-3600), onset);
            let after = window(onset.plus_secs(1800), onset.plus_secs(5400));
            assert!(
                after > 2.0 * before,
                "{}: {before} → {after} at {onset}",
                w.id
            );
            let hour = onset.second_of_day() as f64 / 3600.0;
            assert!(
                (6.7..10.3).contains(&hour),
                "{}: surge at hour {hour}",
                w.id
            );
        }
    }
}

#[test]
fn weekly_surges_on_weekdays_only() {
    let config = of(Pattern::Weekly, 3);
    assert_eq!(
        config.start.day_of_week(),
        0,
        "the default mix starts on a Monday"
    );
    let trace = generate(&config);
    for w in &trace.workloads {
        assert_eq!(w.surges.len(), 5, "{}", w.id);
        assert!(w.surges.iter().all(|s| s.day_of_week() < 5));
        let (weekday, weekend): (Vec<_>, Vec<_>) =
            w.points.iter().partition(|p| p.at.day_of_week() < 5);
        let avg = |ps: &[&presage_sim::trace::TracePoint]| {
            mean(
                &ps.iter()
                    .filter_map(|p| p.demand.cpu_cores())
                    .collect::<Vec<_>>(),
            )
        };
        assert!(avg(&weekday) > 1.5 * avg(&weekend), "{}", w.id);
    }
}

#[test]
fn bursty_spikes_far_above_a_low_base() {
    for w in &generate(&of(Pattern::Bursty, 4)).workloads {
        let mut cpu = cpu(w);
        cpu.sort_by(f64::total_cmp);
        let median = cpu[cpu.len() / 2];
        let p999 = cpu[cpu.len() * 999 / 1000];
        assert!(median < 0.4, "{}: median {median}", w.id);
        assert!(
            p999 > 3.0 * median,
            "{}: p99.9 {p999} vs median {median}",
            w.id
        );
        assert!(w.surges.is_empty());
    }
}

#[test]
fn trend_grows_and_step_shifts() {
    for w in &generate(&of(Pattern::Trend, 3)).workloads {
        let (cpu, mem) = (cpu(w), memory(w));
        assert!(
            mean(&cpu[cpu.len() - 288..]) > 1.3 * mean(&cpu[..288]),
            "{}",
            w.id
        );
        assert!(
            mean(&mem[mem.len() - 288..]) > 1.2 * mean(&mem[..288]),
            "{}",
            w.id
        );
    }
    for w in &generate(&of(Pattern::Step, 3)).workloads {
        let cpu = cpu(w);
        let quarter = cpu.len() / 4;
        let (first, last) = (mean(&cpu[..quarter]), mean(&cpu[cpu.len() - quarter..]));
        assert!(last > 1.8 * first, "{}: {first} → {last}", w.id);
    }
}

#[test]
fn leak_memory_only_grows_until_a_restart() {
    for w in &generate(&of(Pattern::Leak, 3)).workloads {
        let mem = memory(w);
        let restarts = mem.windows(2).filter(|p| p[1] < p[0]).count();
        let growing = mem.windows(2).filter(|p| p[1] > p[0]).count();
        assert!((2..=5).contains(&restarts), "{}: {restarts} restarts", w.id);
        assert_eq!(
            growing + restarts,
            mem.len() - 1,
            "{}: flat or noisy steps",
            w.id
        );
        let peak = mem.iter().copied().fold(0.0, f64::max);
        assert!(peak > 1.8 * mem[0], "{}: peak {peak} from {}", w.id, mem[0]);
    }
}

#[test]
fn idle_is_nearly_nothing() {
    for w in &generate(&of(Pattern::Idle, 2)).workloads {
        assert!(mean(&cpu(w)) < 0.05, "{}", w.id);
        assert!(
            memory(w).iter().all(|m| *m < 256.0 * 1024.0 * 1024.0),
            "{}",
            w.id
        );
        assert_eq!(w.provisioned.cpu_quota_cores(), Some(1.0));
        assert_eq!(w.provisioned.memory_max_bytes(), Some(GIB));
    }
}

#[test]
fn names_parse_and_degenerate_configs_do_not_panic() {
    for p in Pattern::ALL {
        assert_eq!(p.name().parse::<Pattern>(), Ok(p));
    }
    let err = "sawtooth".parse::<Pattern>().map_err(|e| e.to_string());
    assert!(err.is_err_and(|m| m.contains("sawtooth") && m.contains("daily")));
    let empty = generate(&SynthConfig {
        days: 0,
        ..SynthConfig::default_mix()
    });
    assert!(empty.workloads.iter().all(|w| w.points.is_empty()));
    let tiny = generate(&SynthConfig {
        step_s: 0,
        days: 1,
        patterns: vec![(Pattern::Daily, 1)],
        ..SynthConfig::default_mix()
    });
    assert_eq!(tiny.workloads[0].points.len(), 86_400);
}
