//! Reads the real cgroup of the test process on this host.
//!
//! Needs no root: it only reads. Skips (with the reason printed) where the host exposes no
//! readable cgroupfs, e.g. some sandboxes.

use std::path::Path;
use std::time::{Duration, Instant};

use presage_linux::{Cgroup, CgroupManager, Layout, RawCgroupSample};

fn burn_cpu(for_: Duration) -> u64 {
    let start = Instant::now();
    let mut x: u64 = 0;
    while start.elapsed() < for_ {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
    x
}

fn own_cgroup() -> Option<Cgroup> {
    if std::fs::read_dir(Path::new(presage_linux::DEFAULT_ROOT)).is_err() {
        println!("skipped: {} is not readable", presage_linux::DEFAULT_ROOT);
        return None;
    }
    let layout = match Layout::detect() {
        Ok(l) => l,
        Err(e) => {
            println!("skipped: no cgroup layout detected: {e}");
            return None;
        }
    };
    println!("layout: {:?}", layout.mode());
    match Cgroup::of_process(&layout, None) {
        Ok(cg) => Some(cg),
        Err(e) => panic!("cgroupfs is readable but this process's cgroup is not: {e}"),
    }
}

fn sample(cg: &Cgroup) -> RawCgroupSample {
    match cg.read_sample() {
        Ok(s) => s,
        Err(e) => panic!("reading {cg:?}: {e}"),
    }
}

#[test]
fn cpu_counter_of_own_cgroup_rises_under_load() {
    let Some(cg) = own_cgroup() else { return };
    let before = sample(&cg);
    println!("before: {before:?}");
    let Some(before_ns) = before.cpu_usage_ns else {
        panic!("no CPU usage counter in {cg:?}");
    };
    assert!(before_ns > 0, "CPU usage counter is zero");

    std::hint::black_box(burn_cpu(Duration::from_millis(300)));

    let after = sample(&cg);
    println!("after: {after:?}");
    let Some(after_ns) = after.cpu_usage_ns else {
        panic!("CPU usage counter vanished from {cg:?}");
    };
    // 300 ms of wall time spinning is at least ~100 ms of CPU even on a busy host.
    assert!(
        after_ns >= before_ns + 100_000_000,
        "CPU counter rose only {} ns",
        after_ns.saturating_sub(before_ns)
    );
    if let Some(ws) = after.memory_working_set_bytes {
        assert!(ws > 0, "memory working set of a running process is zero");
    }
    if let Some(n) = after.process_count {
        println!("processes in the memory/cpu cgroup: {n}");
    }
}
