//! Creates, fills, limits and removes a real cgroup on this host.
//!
//! Needs root and a writable cgroupfs; elsewhere it prints why and returns. Everything it
//! creates is removed by guards, also when an assertion fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{CgroupGuard, ChildGuard, writable_layout};
use presage_linux::{Cgroup, CgroupManager, Controller, CpuMax};

fn read_trimmed(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(t) => t.trim().to_string(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

fn limit_files(cg: &Cgroup) -> (PathBuf, PathBuf) {
    if let Some(v2) = cg.as_v2() {
        return (v2.dir().join("memory.max"), v2.dir().join("cpu.max"));
    }
    let Some(v1) = cg.as_v1() else {
        panic!("cgroup is neither v1 nor v2: {cg:?}")
    };
    let (Some(mem), Some(cpu)) = (v1.dir(Controller::Memory), v1.dir(Controller::Cpu)) else {
        panic!("v1 layout lacks memory or cpu: {cg:?}")
    };
    (
        mem.join("memory.limit_in_bytes"),
        cpu.join("cpu.cfs_quota_us"),
    )
}

#[test]
fn create_fill_limit_and_remove_a_real_cgroup() -> Result<(), Box<dyn std::error::Error>> {
    let Some(layout) = writable_layout() else {
        return Ok(());
    };
    let name = format!("presage-test-{}", std::process::id());
    let guard = CgroupGuard(Cgroup::create(&layout, &name)?);
    let cg = &guard.0;
    // Idempotent on the real filesystem too.
    Cgroup::create(&layout, &name)?;

    let child = ChildGuard(Command::new("sleep").arg("5").spawn()?);
    let pid = child.0.id();
    cg.add_process(pid)?;
    assert_eq!(cg.processes()?, Some(vec![pid]), "only the child was moved");

    const LIMIT: u64 = 64 * 1024 * 1024;
    cg.set_memory_max(Some(LIMIT))?;
    cg.set_cpu_max(CpuMax::from_cores(0.5, 100_000)?)?;
    let (mem_file, cpu_file) = limit_files(cg);
    assert_eq!(read_trimmed(&mem_file), LIMIT.to_string());
    let cpu_text = read_trimmed(&cpu_file);
    assert!(
        cpu_text == "50000" || cpu_text == "50000 100000",
        "{}: {cpu_text}",
        cpu_file.display()
    );

    let sample = cg.read_sample()?;
    println!("sample: {sample:?}");
    assert!(
        sample.process_count.is_some_and(|n| n >= 1),
        "process count {:?}",
        sample.process_count
    );

    drop(child);
    drop(guard);
    for dir in [mem_file.parent(), cpu_file.parent()].into_iter().flatten() {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
    Ok(())
}
