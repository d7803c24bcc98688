//! Creates, fills, limits and removes a real cgroup on this host.
//!
//! Needs root and a writable cgroupfs; elsewhere it prints why and returns. Everything it
//! creates is removed by guards, also when an assertion fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use presage_linux::{Cgroup, CgroupManager, Controller, CpuMax, Layout};

/// Removes the cgroup on drop, so a failing assertion leaves nothing behind.
struct CgroupGuard(Cgroup);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        // A just-reaped child can keep the cgroup populated for a moment.
        for _ in 0..50 {
            match self.0.remove() {
                Ok(()) => return,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if let Err(e) = self.0.remove() {
            eprintln!("could not remove test cgroup: {e}");
        }
    }
}

/// Kills and reaps the child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn writable_layout() -> Option<Layout> {
    // The effective uid from /proc avoids `unsafe { geteuid() }` and a libc dependency.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    if euid.as_deref() != Some("0") {
        println!("skipped: not running as root (euid {euid:?})");
        return None;
    }
    let layout = match Layout::detect() {
        Ok(l) => l,
        Err(e) => {
            println!("skipped: no cgroup layout detected: {e}");
            return None;
        }
    };
    let probe_dir = layout
        .controller(Controller::Memory)
        .map(|m| m.path().to_path_buf())
        .or_else(|| layout.v2_mount().map(Path::to_path_buf));
    let Some(probe_dir) = probe_dir else {
        println!("skipped: no memory controller mounted");
        return None;
    };
    let probe = probe_dir.join(format!("presage-probe-{}", std::process::id()));
    match fs::create_dir(&probe) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
            Some(layout)
        }
        Err(e) => {
            println!("skipped: cgroupfs not writable ({}): {e}", probe.display());
            None
        }
    }
}

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
