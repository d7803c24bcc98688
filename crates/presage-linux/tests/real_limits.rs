//! Writes limits to a real cgroup and reads them back with `read_limits`.
//!
//! Needs root and a writable cgroupfs; elsewhere it prints why and returns. The cgroup is
//! removed by a guard, also when an assertion fails.

mod common;

use common::{CgroupGuard, writable_layout};
use presage_linux::{Cgroup, CgroupManager, CpuMax, CpuWeight};

#[test]
fn limits_written_are_read_back() -> Result<(), Box<dyn std::error::Error>> {
    let Some(layout) = writable_layout() else {
        return Ok(());
    };
    let name = format!("presage-limits-test-{}", std::process::id());
    let guard = CgroupGuard(Cgroup::create(&layout, &name)?);
    let cg = &guard.0;

    let fresh = cg.read_limits()?;
    println!("fresh: {fresh:?}");
    assert_eq!(fresh.cpu_quota_cores(), None);
    assert_eq!(fresh.memory_max_bytes(), None);
    assert_eq!(fresh.memory_high_bytes(), None);
    assert!(
        matches!(fresh.cpu_weight(), None | Some(100)),
        "a new cgroup has the default weight: {:?}",
        fresh.cpu_weight()
    );

    const MAX: u64 = 64 * 1024 * 1024;
    const HIGH: u64 = 32 * 1024 * 1024;
    cg.set_cpu_max(CpuMax::from_cores(0.5, 100_000)?)?;
    cg.set_cpu_weight(CpuWeight::new(250)?)?;
    cg.set_memory_max(Some(MAX))?;
    cg.set_memory_high(Some(HIGH))?;
    let l = cg.read_limits()?;
    println!("after writes: {l:?}");
    assert_eq!(l.cpu_quota_cores(), Some(0.5));
    assert_eq!(l.cpu_weight(), Some(250));
    assert_eq!(l.memory_max_bytes(), Some(MAX as f64));
    assert_eq!(l.memory_high_bytes(), Some(HIGH as f64));

    cg.set_cpu_max(CpuMax::unlimited(100_000)?)?;
    cg.set_memory_high(None)?;
    cg.set_memory_max(None)?;
    let l = cg.read_limits()?;
    assert_eq!(
        (
            l.cpu_quota_cores(),
            l.memory_max_bytes(),
            l.memory_high_bytes()
        ),
        (None, None, None),
        "lifted limits read as none"
    );
    Ok(())
}
