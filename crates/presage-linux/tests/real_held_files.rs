//! Reading a real cgroup through held-open descriptors (what the agent turns on) must
//! still see processes join and leave: cgroup v1 builds a `cgroup.procs` list once per
//! open file, and a held descriptor once kept showing the empty list of the moment the
//! cgroup was adopted, which hid a fork storm and made a kill find nothing to kill. And a
//! frozen workload (the response ladder freezes before it kills) must really die.
//!
//! Its own test binary: holding files open is a process-wide switch. Needs root and a
//! writable cgroupfs; elsewhere it prints why and returns.

mod common;

use std::process::Command;

use common::{CgroupGuard, ChildGuard, writable_layout};
use presage_linux::{Cgroup, CgroupManager};

#[test]
fn held_descriptors_see_processes_join_and_a_frozen_cgroup_is_killed()
-> Result<(), Box<dyn std::error::Error>> {
    let Some(layout) = writable_layout() else {
        return Ok(());
    };
    presage_linux::hold_files_open(64);
    let name = format!("presage-held-{}", std::process::id());
    let guard = CgroupGuard(Cgroup::create(&layout, &name)?);
    let cg = &guard.0;
    // Read once while empty, as the agent does when it adopts a cgroup.
    assert_eq!(cg.read_sample()?.process_count, Some(0));

    let mut children: Vec<ChildGuard> = (0..3)
        .map(|_| Command::new("sleep").arg("30").spawn().map(ChildGuard))
        .collect::<Result<_, _>>()?;
    for child in &children {
        cg.add_process(child.0.id())?;
    }
    assert_eq!(cg.read_sample()?.process_count, Some(3));
    assert_eq!(cg.processes()?.map(|p| p.len()), Some(3));

    cg.set_frozen(true)?;
    cg.kill()?;
    for child in &mut children {
        // Our own children: reaped here, they show the signal that ended them. A child
        // left frozen would never exit, so the wait is bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.0.try_wait()? {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a killed process is still there after 20 s (frozen?)"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );
    }
    assert_eq!(cg.processes()?, Some(Vec::new()), "the kill left processes");
    drop(children);
    drop(guard);
    Ok(())
}
