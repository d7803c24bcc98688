use std::path::PathBuf;
use std::sync::Arc;

use presage_core::{Limits, Resource, Timestamp, Usage, WorkloadId, WorkloadKey};

use super::summary::{median, violation_ratio};
use super::*;
use crate::synth::{Pattern, SynthConfig, generate};
use crate::trace::TracePoint;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const STEP_S: i64 = 300;
const T0: i64 = 1_704_067_200;

/// A flat workload with a point every 5 minutes over `days`, skipping `(from, to)` days.
fn flat(days: f64, gap: Option<(f64, f64)>) -> Result<TraceWorkload, Box<dyn std::error::Error>> {
    let n = (days * 86_400.0 / STEP_S as f64).round() as i64;
    let mut points = Vec::new();
    for k in 1..=n {
        let day = (k * STEP_S) as f64 / 86_400.0;
        if gap.is_some_and(|(a, b)| day > a && day <= b) {
            continue;
        }
        let mut demand = Usage::empty();
        demand.set(Resource::Cpu, 1.0)?;
        demand.set(Resource::Memory, 1e9)?;
        points.push(TracePoint {
            at: Timestamp::from_unix_secs(T0 + k * STEP_S),
            demand,
        });
    }
    Ok(TraceWorkload {
        id: WorkloadId::new("w")?,
        key: WorkloadKey::for_code("w")?,
        provisioned: Limits::unlimited(),
        points,
        origin: PathBuf::new(),
        surges: Vec::new(),
    })
}

#[test]
fn split_cuts_at_half_the_span_and_skips_short_workloads() -> TestResult {
    // 5 days: the first run is the first 2.5 days (720 five-minute points), the second
    // run the remaining 2.5.
    let w = flat(5.0, None)?;
    let s = split(&w, None).map_err(|e| format!("{e:?}"))?;
    assert_eq!(s.first_points, 720);
    assert!((s.first_run_days - 2.5).abs() < 1e-9);
    assert!((s.second_run_days - 2.5).abs() < 1e-9);
    assert_eq!(s.at, Timestamp::from_unix_secs(T0 + 720 * STEP_S));
    // An explicit first run of 2 days leaves 3.
    let s = split(&w, Some(2.0)).map_err(|e| format!("{e:?}"))?;
    assert_eq!(s.first_points, 576);
    // 1.5 days: the first run takes at least a day, leaving half a day: skipped.
    assert_eq!(split(&flat(1.5, None)?, None), Err(Skip::SecondRunTooShort));
    // A 4-day first run of 5 days leaves 1 day: skipped.
    assert_eq!(split(&w, Some(4.0)), Err(Skip::SecondRunTooShort));
    // A first run shorter than a step holds no point.
    assert_eq!(split(&w, Some(0.001)), Err(Skip::FirstRunTooShort));
    // A cut followed by a day and a half without data has no first day to judge.
    let gappy = flat(8.0, Some((3.0, 4.5)))?;
    assert_eq!(split(&gappy, Some(3.0)), Err(Skip::FirstDayEmpty));
    assert!(split(&gappy, Some(2.0)).is_ok());
    Ok(())
}

#[test]
fn days_of_the_second_run_end_on_interval_ends() {
    let cut = Timestamp::from_unix_secs(T0);
    assert_eq!(day_of(cut, cut), None);
    assert_eq!(day_of(cut.plus_ms(1), cut), Some(0));
    assert_eq!(day_of(cut.plus_secs(86_400), cut), Some(0));
    assert_eq!(day_of(cut.plus_secs(86_400).plus_ms(1), cut), Some(1));
    assert_eq!(day_of(cut.plus_secs(-300), cut), None);
}

#[test]
fn violation_ratios_are_floored_and_medians_are_medians() {
    assert_eq!(violation_ratio(0.0, 0.0, 0.01), 1.0);
    assert_eq!(violation_ratio(0.02, 0.0, 0.01), 2.0);
    assert_eq!(violation_ratio(0.02, 0.04, 0.01), 0.5);
    assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(Vec::new()), None);
}

#[test]
fn the_nearest_neighbour_is_another_candidate() {
    let sigs = [
        [0.0, 0.0, 0.0, 0.0],
        [0.1, 0.1, 0.1, 0.1],
        [5.0, 5.0, 5.0, 5.0],
        [5.1, 5.0, 5.0, 5.0],
    ];
    let n = nearest(&sigs, &[true, true, true, true]);
    let picked: Vec<Option<usize>> = n.iter().map(|x| x.map(|(j, _)| j)).collect();
    assert_eq!(picked, vec![Some(1), Some(0), Some(3), Some(2)]);
    // Workload 3 has no profile: 2 falls back on the next nearest.
    let n = nearest(&sigs, &[true, true, true, false]);
    assert_eq!(n[2].map(|(j, _)| j), Some(1));
    assert_eq!(nearest(&sigs[..1], &[true])[0], None);
}

fn daily_trace(workloads: usize, days: u32) -> Arc<Trace> {
    Arc::new(generate(&SynthConfig {
        patterns: vec![(Pattern::Daily, workloads)],
        days,
        ..SynthConfig::default_mix()
    }))
}

fn policy(name: &str) -> Result<Vec<PolicyRun>, SimError> {
    crate::run::runs_for(&[name.to_owned()], false)
}

#[test]
fn a_restored_profile_makes_the_first_day_of_a_daily_workload_cheaper() -> TestResult {
    // Six days of a business-hours surge: the first run learns three, the second run
    // starts with the surge a few hours away. Cold, the models have not seen it and the
    // limit follows demand up after the fact (violations) from the provisioned limit
    // (slack); warm, the seasonal members already know it.
    let trace = daily_trace(3, 6);
    let report = coldstart(
        &trace,
        &policy("presage")?,
        &ColdStartOptions::default(),
        &|_| {},
    )?;
    let p = &report.policies[0];
    assert_eq!(p.workloads, 3);
    assert!(p.skipped.is_empty());
    let cpu = &p.resources["cpu"];
    let warm = &cpu.arms[&Arm::Warm];
    let cold = &cpu.arms[&Arm::Cold];
    assert_eq!((warm.restored, cold.restored), (3, 0));
    assert_eq!(cpu.arms[&Arm::Neighbour].restored, 3);
    let cost = |a: &ArmSummary| a.first_day.slack + a.first_day.violation_rate;
    assert!(
        cost(warm) < cost(cold),
        "warm first day {:?} should beat cold {:?}",
        warm.first_day,
        cold.first_day
    );
    // Every arm covers the same first day.
    assert_eq!(warm.first_day.steps, cold.first_day.steps);
    assert_eq!(
        warm.first_day.steps,
        cpu.arms[&Arm::Continuous].first_day.steps
    );
    assert!(cpu.steady.steps > 0);
    assert_eq!(p.per_workload.len(), 3);
    assert!(
        p.per_workload
            .iter()
            .all(|w| w.restored && w.neighbour.is_some())
    );
    let json = serde_json::to_string(&report)?;
    assert!(json.contains("\"warm\""));
    assert!(table(&report).contains("goal (warm first day"));
    Ok(())
}

#[test]
fn a_rule_without_a_forecaster_starts_the_same_warm_or_cold() -> TestResult {
    // VPA keeps no model state in profiles: its warm arm is its cold arm, and there is
    // no neighbour to start from.
    let trace = daily_trace(2, 5);
    let report = coldstart(
        &trace,
        &policy("vpa")?,
        &ColdStartOptions::default(),
        &|_| {},
    )?;
    let p = &report.policies[0];
    for r in p.resources.values() {
        assert_eq!(r.arms[&Arm::Warm].first_day, r.arms[&Arm::Cold].first_day);
        assert_eq!(r.arms[&Arm::Warm].restored, 0);
        assert!(!r.arms.contains_key(&Arm::Neighbour));
    }
    Ok(())
}

#[test]
fn short_workloads_are_counted_not_measured() -> TestResult {
    let mut trace = (*daily_trace(2, 5)).clone();
    let mut short = flat(1.5, None)?;
    short.id = WorkloadId::new("short")?;
    short.key = WorkloadKey::for_code("short")?;
    trace.workloads.push(short);
    let trace = Arc::new(trace);
    let options = ColdStartOptions {
        neighbour: false,
        ..ColdStartOptions::default()
    };
    let report = coldstart(&trace, &policy("static")?, &options, &|_| {})?;
    let p = &report.policies[0];
    assert_eq!(p.workloads, 2);
    assert_eq!(p.skipped.get(&Skip::SecondRunTooShort), Some(&1));
    assert!(planned_steps(&trace, &options) > 0);
    Ok(())
}
