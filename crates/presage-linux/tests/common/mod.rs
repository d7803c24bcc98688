//! Guards and probes shared by the tests that touch this host's real cgroups.
//!
//! Each test binary uses a different subset, so unused items are expected.
#![allow(dead_code)]

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use presage_linux::{Cgroup, CgroupManager, Layout};

/// Removes the cgroup on drop, so a failing assertion leaves nothing behind.
pub(crate) struct CgroupGuard(pub(crate) Cgroup);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        // A just-killed child can keep the cgroup populated for a moment.
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
pub(crate) struct ChildGuard(pub(crate) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True when running as root; prints why not otherwise.
pub(crate) fn is_root() -> bool {
    // The effective uid from /proc avoids `unsafe { geteuid() }` in a test.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    if euid.as_deref() == Some("0") {
        return true;
    }
    println!("skipped: not running as root (euid {euid:?})");
    false
}

/// The host's layout if this process may create cgroups in it; prints why not otherwise.
pub(crate) fn writable_layout() -> Option<Layout> {
    if !is_root() {
        return None;
    }
    presage_linux::writable_layout()
        .map_err(|why| println!("skipped: {why}"))
        .ok()
}

/// `layout` if a cgroup can be made in it; prints why not otherwise.
pub(crate) fn probe_writable(layout: Layout) -> Option<Layout> {
    match presage_linux::probe_writable(&layout) {
        Ok(()) => Some(layout),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// Polls `cond` every 10 ms for up to `timeout`.
pub(crate) fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// The cgroup's processes, panicking with the cgroup on error.
pub(crate) fn procs(cg: &Cgroup) -> Vec<u32> {
    match cg.processes() {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => panic!("listing {cg:?}: {e}"),
    }
}
