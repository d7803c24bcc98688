//! The v1 paths that a hybrid host normally hides behind its v2 tree: killing without
//! `cgroup.kill` (freeze, SIGKILL each process, thaw) and undoing a half-done move.
//!
//! The host's layout is taken without its cgroup2 mount, which is what a v1-only host
//! looks like. Needs root and writable v1 hierarchies; elsewhere it prints why and
//! returns. Cgroups and children are cleaned up by guards, also when an assertion fails.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{CgroupGuard, ChildGuard, is_root, probe_writable, procs, wait_for};
use presage_linux::{
    Cgroup, CgroupManager, Controller, DEFAULT_MOUNTINFO, DEFAULT_ROOT, Layout, LinuxError,
    parse_mountinfo,
};

fn v1_only_layout() -> Option<Layout> {
    if !is_root() {
        return None;
    }
    let text = match fs::read_to_string(DEFAULT_MOUNTINFO) {
        Ok(t) => t,
        Err(e) => {
            println!("skipped: cannot read {DEFAULT_MOUNTINFO}: {e}");
            return None;
        }
    };
    let mounts = match parse_mountinfo(Path::new(DEFAULT_MOUNTINFO), &text) {
        Ok(m) => m,
        Err(e) => panic!("this host's mountinfo does not parse: {e}"),
    };
    let v1: Vec<_> = mounts
        .into_iter()
        .filter(|m| m.fs_type != "cgroup2")
        .collect();
    match Layout::from_mounts(Path::new(DEFAULT_ROOT), Path::new(DEFAULT_MOUNTINFO), &v1) {
        Ok(l) => probe_writable(l),
        Err(e) => {
            println!("skipped: no v1 hierarchies on this host: {e}");
            None
        }
    }
}

/// The process state letter from /proc/<pid>/stat, `None` once the pid is gone.
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn kill_without_cgroup_kill_takes_a_forking_tree() -> Result<(), Box<dyn std::error::Error>> {
    let Some(layout) = v1_only_layout() else {
        return Ok(());
    };
    let guard = CgroupGuard(Cgroup::create(
        &layout,
        &format!("presage-kill-test-{}", std::process::id()),
    )?);
    let cg = &guard.0;
    let Some(v1) = cg.as_v1() else {
        panic!("a layout without cgroup2 gave a v2 handle: {cg:?}")
    };
    assert_eq!(v1.unified_dir(), None);
    // The shell forks its two sleeps only once it is inside the cgroup.
    let mut child = ChildGuard(
        Command::new("sh")
            .args(["-c", "read _; sleep 60 & sleep 60 & wait"])
            .stdin(Stdio::piped())
            .spawn()?,
    );
    cg.add_process(child.0.id())?;
    let Some(stdin) = child.0.stdin.as_mut() else {
        panic!("no stdin pipe to the shell")
    };
    writeln!(stdin, "go")?;
    assert!(
        wait_for(Duration::from_secs(5), || procs(cg).len() == 3),
        "the shell and its two sleeps never showed up: {:?}",
        procs(cg)
    );
    let pids = procs(cg);
    println!("killing {pids:?}");

    cg.kill()?;
    assert!(procs(cg).is_empty(), "survivors: {:?}", procs(cg));
    let status = child.0.wait()?;
    assert_eq!(status.signal(), Some(9), "{status}");
    for pid in pids {
        // Orphaned sleeps may linger as zombies until init reaps them; never running.
        assert!(
            matches!(state(pid), None | Some('Z')),
            "pid {pid} is still {:?}",
            state(pid)
        );
    }
    if let Some(f) = v1.dir(Controller::Freezer) {
        let s = fs::read_to_string(f.join("freezer.state"))?;
        assert_eq!(s.trim(), "THAWED", "left frozen");
    }
    Ok(())
}

#[test]
fn failed_move_is_rolled_back() -> Result<(), Box<dyn std::error::Error>> {
    let Some(layout) = v1_only_layout() else {
        return Ok(());
    };
    let name = format!("presage-rollback-test-{}", std::process::id());
    let guard = CgroupGuard(Cgroup::open(&layout, &name)?);
    let Some(v1) = guard.0.as_v1() else {
        panic!("a layout without cgroup2 gave a v2 handle")
    };
    // Only the first hierarchy gets a directory: the move succeeds there, then fails in
    // the next one.
    let (Some(first), Some(memory)) = (v1.dir(Controller::Cpu), v1.dir(Controller::Memory)) else {
        println!("skipped: needs both cpu and memory hierarchies");
        return Ok(());
    };
    if first.parent() == memory.parent() {
        println!("skipped: cpu and memory share a hierarchy");
        return Ok(());
    }
    fs::create_dir(first)?;
    let child = ChildGuard(Command::new("sleep").arg("30").spawn()?);
    let pid = child.0.id();
    let before = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;

    let err = match guard.0.add_process(pid) {
        Ok(()) => panic!("the move cannot succeed without the other directories"),
        Err(e) => e,
    };
    println!("expected failure: {err}");
    assert!(matches!(err, LinuxError::Write { .. }), "{err}");
    let after = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    assert_eq!(
        after,
        before,
        "the move into {} was not undone",
        first.display()
    );
    Ok(())
}
