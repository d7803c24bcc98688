//! Turning two successive raw readings of a cgroup into one interval's [`Sample`].
//!
//! The kernel exposes cumulative counters; presage-core wants what happened in an interval.
//! A counter that went backwards means the cgroup was recreated under the same path (a
//! restarted service, a reused container name): the delta is meaningless, so that
//! interval gets no figure for it rather than a negative or wrapped-around one.

use presage_core::{
    CoreError, Events, Pressure, PressureStall, Resource, Sample, Timestamp, Usage, WorkloadId,
};

use crate::error::LinuxError;
use crate::net::NetScope;
use crate::parse;
use crate::sample::RawCgroupSample;

const NS_PER_S: f64 = 1e9;

/// The [`Sample`] for `workload` over the interval from `prev_at` to `at`, from the raw
/// readings taken at those two instants.
///
/// CPU is in cores (Δusage / Δt), memory is the working set at the end of the interval,
/// I/O and network are bytes/s from the byte counters (network only while both readings
/// are of the same namespace of the workload's own), PSI is the fraction of the interval stalled,
/// and OOM kills and throttling are the counters' deltas. A figure missing from either
/// reading, or whose counter went backwards, is left out; an event whose counter went
/// backwards counts as zero.
///
/// Fails if `at` is not after `prev_at` (clock stepped back, same tick read twice) or the
/// interval does not fit in `u32` milliseconds.
pub fn sample_between(
    workload: &WorkloadId,
    prev_at: Timestamp,
    prev: &RawCgroupSample,
    at: Timestamp,
    cur: &RawCgroupSample,
) -> Result<Sample, LinuxError> {
    let interval_ms = at.unix_ms().saturating_sub(prev_at.unix_ms());
    let interval_ms = u32::try_from(interval_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| LinuxError::InvalidValue {
            what: "sample interval",
            reason: format!(
                "from {} ms to {} ms is not a positive interval below 2^32 ms",
                prev_at.unix_ms(),
                at.unix_ms()
            ),
        })?;
    let dt_s = f64::from(interval_ms) / 1000.0;
    let core_err = |source: CoreError| LinuxError::Sample {
        workload: workload.to_string(),
        source,
    };

    let mut usage = Usage::empty();
    let per_second = |d: u64| d as f64 / dt_s;
    let figures = [
        (
            Resource::Cpu,
            delta(prev.cpu_usage_ns, cur.cpu_usage_ns).map(|ns| ns as f64 / NS_PER_S / dt_s),
        ),
        (
            Resource::Memory,
            cur.memory_working_set_bytes.map(|b| b as f64),
        ),
        (
            Resource::IoRead,
            delta(prev.io_read_bytes, cur.io_read_bytes).map(per_second),
        ),
        (
            Resource::IoWrite,
            delta(prev.io_write_bytes, cur.io_write_bytes).map(per_second),
        ),
        (
            Resource::NetRx,
            net_delta(prev, cur, |s| s.net_rx_bytes).map(per_second),
        ),
        (
            Resource::NetTx,
            net_delta(prev, cur, |s| s.net_tx_bytes).map(per_second),
        ),
    ];
    for (resource, value) in figures {
        if let Some(v) = value {
            usage.set(resource, v).map_err(core_err)?;
        }
    }

    let events = Events {
        oom_kills: delta(prev.oom_kills, cur.oom_kills)
            .map_or(0, |k| u32::try_from(k).unwrap_or(u32::MAX)),
        cpu_throttled_periods: delta(prev.cpu_nr_throttled, cur.cpu_nr_throttled).unwrap_or(0),
        cpu_throttled_s: delta(prev.cpu_throttled_ns, cur.cpu_throttled_ns)
            .map_or(0.0, |ns| ns as f64 / NS_PER_S),
        processes: cur
            .process_count
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
    };

    let dt_us = f64::from(interval_ms) * 1000.0;
    let pressure = Pressure {
        cpu: stall(prev.cpu_pressure.as_ref(), cur.cpu_pressure.as_ref(), dt_us),
        memory: stall(
            prev.memory_pressure.as_ref(),
            cur.memory_pressure.as_ref(),
            dt_us,
        ),
        io: stall(prev.io_pressure.as_ref(), cur.io_pressure.as_ref(), dt_us),
    };

    Sample::new(at, workload.clone(), interval_ms, usage)
        .map_err(core_err)?
        .with_pressure(pressure)
        .with_events(events)
        .map_err(core_err)
}

/// `cur − prev` when both were read and the counter did not go backwards.
fn delta(prev: Option<u64>, cur: Option<u64>) -> Option<u64> {
    cur?.checked_sub(prev?)
}

/// A network counter's delta, when both readings are of the same own namespace: a new
/// namespace (a restarted container) starts its counters afresh, and a host-shared one
/// has no figure to begin with.
fn net_delta(
    prev: &RawCgroupSample,
    cur: &RawCgroupSample,
    counter: impl Fn(&RawCgroupSample) -> Option<u64>,
) -> Option<u64> {
    match (prev.net_scope?, cur.net_scope?) {
        (NetScope::Own { netns: a }, NetScope::Own { netns: b }) if a == b => {
            delta(counter(prev), counter(cur))
        }
        _ => None,
    }
}

/// The fraction of the interval stalled, from PSI's cumulative `total` stall times.
///
/// The kernel's totals and our timestamps are not taken at the same instant, so a fully
/// stalled interval can show a little over 100 %; it is clamped rather than rejected.
fn stall(
    prev: Option<&parse::Pressure>,
    cur: Option<&parse::Pressure>,
    dt_us: f64,
) -> Option<PressureStall> {
    let (prev, cur) = (prev?, cur?);
    let fraction = |d: u64| (d as f64 / dt_us).clamp(0.0, 1.0);
    let some = fraction(delta(
        Some(prev.some.total_usec),
        Some(cur.some.total_usec),
    )?);
    // cpu.pressure has no `full` line before Linux 5.13; zero is what a kernel that has
    // it reports for a cgroup whose tasks never all stall on CPU at once.
    let full = match (&prev.full, &cur.full) {
        (Some(p), Some(c)) => delta(Some(p.total_usec), Some(c.total_usec)).map_or(0.0, fraction),
        _ => 0.0,
    };
    // Rounding in the clamp can put `full` a hair over `some`, which the type refuses.
    PressureStall::new(some, full.min(some)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::PressureLine;

    fn psi(some_total: u64, full_total: Option<u64>) -> parse::Pressure {
        let line = |total_usec| PressureLine {
            avg10: 0.0,
            avg60: 0.0,
            avg300: 0.0,
            total_usec,
        };
        parse::Pressure {
            some: line(some_total),
            full: full_total.map(line),
        }
    }

    fn id() -> WorkloadId {
        WorkloadId::new("presage/job").unwrap()
    }

    fn before() -> RawCgroupSample {
        RawCgroupSample {
            cpu_usage_ns: Some(1_000_000_000),
            cpu_nr_periods: Some(10),
            cpu_nr_throttled: Some(5),
            cpu_throttled_ns: Some(100_000_000),
            memory_usage_bytes: Some(80 << 20),
            memory_working_set_bytes: Some(50 << 20),
            memory_peak_bytes: Some(90 << 20),
            oom_kills: Some(1),
            io_read_bytes: Some(1_000),
            io_write_bytes: Some(0),
            cpu_pressure: Some(psi(0, Some(0))),
            memory_pressure: Some(psi(100_000, Some(0))),
            io_pressure: None,
            process_count: Some(2),
            net_rx_bytes: Some(5_000),
            net_tx_bytes: Some(100),
            net_scope: Some(NetScope::Own { netns: 7 }),
        }
    }

    fn after() -> RawCgroupSample {
        RawCgroupSample {
            cpu_usage_ns: Some(4_000_000_000),
            cpu_nr_periods: Some(30),
            cpu_nr_throttled: Some(9),
            cpu_throttled_ns: Some(600_000_000),
            memory_usage_bytes: Some(90 << 20),
            memory_working_set_bytes: Some(60 << 20),
            memory_peak_bytes: Some(95 << 20),
            oom_kills: Some(3),
            io_read_bytes: Some(4_001_000),
            io_write_bytes: Some(1_000_000),
            cpu_pressure: Some(psi(500_000, Some(200_000))),
            memory_pressure: Some(psi(100_000, Some(0))),
            io_pressure: Some(psi(7, None)),
            process_count: Some(3),
            net_rx_bytes: Some(205_000),
            net_tx_bytes: Some(2_100),
            net_scope: Some(NetScope::Own { netns: 7 }),
        }
    }

    const T0: Timestamp = Timestamp::from_unix_ms(1_000);
    const T1: Timestamp = Timestamp::from_unix_ms(3_000);

    #[test]
    fn two_seconds_of_counters_become_rates() {
        let s = sample_between(&id(), T0, &before(), T1, &after()).unwrap();
        assert_eq!(s.at(), T1);
        assert_eq!(s.interval_ms(), 2_000);
        let u = s.usage();
        // 3e9 ns of CPU over 2 s.
        assert_eq!(u.cpu_cores(), Some(1.5));
        assert_eq!(u.memory_bytes(), Some(62_914_560.0));
        // 4,000,000 B read and 1,000,000 B written over 2 s.
        assert_eq!(u.get(Resource::IoRead), Some(2_000_000.0));
        assert_eq!(u.get(Resource::IoWrite), Some(500_000.0));
        // 200,000 B received and 2,000 B sent over 2 s in the same namespace.
        assert_eq!(u.get(Resource::NetRx), Some(100_000.0));
        assert_eq!(u.get(Resource::NetTx), Some(1_000.0));
        let e = s.events();
        assert_eq!(e.oom_kills, 2);
        assert_eq!(e.cpu_throttled_periods, 4);
        assert!((e.cpu_throttled_s - 0.5).abs() < 1e-12);
        assert_eq!(e.processes, Some(3));
        let p = s.pressure();
        // 500 ms of 2 s with some tasks stalled, 200 ms with all.
        let cpu = p.cpu.unwrap();
        assert!((cpu.some() - 0.25).abs() < 1e-6, "{cpu:?}");
        assert!((cpu.full() - 0.1).abs() < 1e-6, "{cpu:?}");
        assert_eq!(p.memory.unwrap().some(), 0.0);
        assert!(p.io.is_none(), "no earlier io.pressure to diff against");
    }

    #[test]
    fn counters_that_went_backwards_give_no_rate() {
        let mut cur = after();
        cur.cpu_usage_ns = Some(5_000);
        cur.io_read_bytes = Some(10);
        cur.oom_kills = Some(0);
        cur.cpu_nr_throttled = Some(0);
        cur.cpu_throttled_ns = Some(0);
        let mut prev = before();
        prev.cpu_pressure = Some(psi(1_000, Some(500)));
        cur.cpu_pressure = Some(psi(3, Some(1)));
        let s = sample_between(&id(), T0, &prev, T1, &cur).unwrap();
        assert_eq!(s.usage().cpu_cores(), None);
        assert_eq!(s.usage().get(Resource::IoRead), None);
        assert_eq!(s.usage().get(Resource::IoWrite), Some(500_000.0));
        assert_eq!(s.usage().memory_bytes(), Some(62_914_560.0), "a gauge");
        assert_eq!(s.events().oom_kills, 0);
        assert_eq!(s.events().cpu_throttled_periods, 0);
        assert_eq!(s.events().cpu_throttled_s, 0.0);
        assert!(s.pressure().cpu.is_none());
    }

    #[test]
    fn missing_readings_stay_missing() {
        let s = sample_between(
            &id(),
            T0,
            &RawCgroupSample::default(),
            T1,
            &RawCgroupSample::default(),
        )
        .unwrap();
        assert_eq!(s.usage().iter().count(), 0);
        assert_eq!(*s.events(), Events::default());
        assert_eq!(*s.pressure(), Pressure::default());
    }

    #[test]
    fn stall_over_the_interval_is_clamped_and_full_never_exceeds_some() {
        let mut prev = before();
        let mut cur = after();
        // 2.1 s of "some" stall in a 2 s interval; "full" larger still.
        prev.cpu_pressure = Some(psi(0, None));
        cur.cpu_pressure = Some(psi(2_100_000, None));
        prev.io_pressure = Some(psi(0, Some(0)));
        cur.io_pressure = Some(psi(1_000_000, Some(1_500_000)));
        let s = sample_between(&id(), T0, &prev, T1, &cur).unwrap();
        let cpu = s.pressure().cpu.unwrap();
        assert_eq!((cpu.some(), cpu.full()), (1.0, 0.0));
        let io = s.pressure().io.unwrap();
        assert_eq!((io.some(), io.full()), (0.5, 0.5));
    }

    #[test]
    fn non_positive_interval_is_refused() {
        for at in [T0, Timestamp::from_unix_ms(999)] {
            let err = sample_between(&id(), T0, &before(), at, &after()).unwrap_err();
            assert!(matches!(err, LinuxError::InvalidValue { .. }), "{err}");
        }
    }

    #[test]
    fn network_needs_the_same_own_namespace_in_both_readings() {
        let mut cur = after();
        cur.net_scope = Some(NetScope::Own { netns: 8 });
        let s = sample_between(&id(), T0, &before(), T1, &cur).unwrap();
        assert_eq!(s.usage().get(Resource::NetRx), None, "namespace changed");
        assert_eq!(s.usage().get(Resource::NetTx), None);
        cur.set_network(&crate::NetAttribution::SharedWithHost);
        let s = sample_between(&id(), T0, &before(), T1, &cur).unwrap();
        assert_eq!(s.usage().get(Resource::NetRx), None, "shared with host");
        let mut cur = after();
        cur.net_rx_bytes = Some(1);
        let s = sample_between(&id(), T0, &before(), T1, &cur).unwrap();
        assert_eq!(s.usage().get(Resource::NetRx), None, "went backwards");
        assert_eq!(s.usage().get(Resource::NetTx), Some(1_000.0));
        let mut prev = before();
        prev.net_scope = None;
        let s = sample_between(&id(), T0, &prev, T1, &after()).unwrap();
        assert_eq!(s.usage().get(Resource::NetRx), None, "not read before");
    }

    #[test]
    fn quarter_core_over_half_a_second() {
        let prev = RawCgroupSample {
            cpu_usage_ns: Some(0),
            ..RawCgroupSample::default()
        };
        let cur = RawCgroupSample {
            cpu_usage_ns: Some(125_000_000),
            ..RawCgroupSample::default()
        };
        let s = sample_between(&id(), T0, &prev, T0.plus_ms(500), &cur).unwrap();
        assert_eq!(s.usage().cpu_cores(), Some(0.25));
        assert_eq!(s.interval_ms(), 500);
    }
}
