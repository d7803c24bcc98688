//! `presage loadgen` end to end: argument errors, and the load it really generates as the
//! kernel sees it (CPU time in `/proc/<pid>/stat`, resident memory in `VmRSS`).
//!
//! The host is shared and has two cores, so the bounds are tolerant but still fail on a
//! generator that is off by more than noise; the live tests run one at a time so that
//! they do not compete with each other for the cores.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MIB: f64 = 1024.0 * 1024.0;

/// Serialises the tests that measure real load.
static LIVE: Mutex<()> = Mutex::new(());

fn live() -> MutexGuard<'static, ()> {
    // A failed live test poisons the lock; the others can still run.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn presage() -> Result<Command, Box<dyn std::error::Error>> {
    Ok(Command::cargo_bin("presage")?)
}

/// Starts `presage loadgen ARGS` in the background.
fn spawn(args: &[&str]) -> Result<Child, Box<dyn std::error::Error>> {
    Ok(std::process::Command::cargo_bin("presage")?
        .arg("loadgen")
        .args(args)
        .stdout(Stdio::null())
        .spawn()?)
}

fn read_json(path: &Path) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

fn number(report: &Value, key: &str) -> Result<f64, Box<dyn std::error::Error>> {
    report[key]
        .as_f64()
        .ok_or_else(|| format!("report has no number {key}: {report}").into())
}

/// utime + stime of a process, in seconds (`USER_HZ` = 100).
fn cpu_s(pid: u32) -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').ok_or("no comm in stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok((f[11].parse::<f64>()? + f[12].parse::<f64>()?) / 100.0)
}

/// The first child process of `parent` (the memory worker), if it has started.
fn child_of(parent: u32) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}

/// `VmRSS` of a process, in bytes.
fn rss(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Waits for `child` to exit, checking it succeeded.
fn finish(mut child: Child) -> TestResult {
    let status = child.wait()?;
    assert!(status.success(), "loadgen exited with {status}");
    Ok(())
}

#[test]
fn pattern_errors_name_the_field() -> TestResult {
    let cases = [
        ("periodic:period=4,high-cpu=lots", "high-cpu"),
        ("periodic:period=4,low-mem=12Q", "low-mem"),
        ("periodic:high-cpu=1", "period"),
        ("periodic:period=4,duty=1.5", "duty"),
        ("periodic:period=4,duty=0.5,ramp=1.5", "ramp"),
        ("periodic:period=4,wobble=1", "wobble"),
        ("constant:cpu=0.5,mem=lots", "mem"),
    ];
    for (spec, field) in cases {
        let out = presage()?
            .args(["loadgen", "--pattern", spec, "--duration", "1"])
            .output()?;
        assert!(!out.status.success(), "{spec} was accepted");
        let err = String::from_utf8(out.stderr)?;
        assert!(err.contains(field), "{spec}: {err}");
    }
    Ok(())
}

#[test]
fn bad_flags_are_rejected_with_their_name() -> TestResult {
    let cases: [(&[&str], &[&str]); 5] = [
        (&["--memory", "200X"], &["--memory", "200X"]),
        (&["--cpu", "half"], &["--cpu", "half"]),
        (&["--cpu", "1.5", "--threads", "1"], &["--threads", "1.5"]),
        (
            &["--cpu", "0.5", "--pattern", "constant:cpu=1"],
            &["--cpu", "--pattern"],
        ),
        (&["--duration", "3"], &["nothing to generate"]),
    ];
    for (args, needles) in cases {
        let out = presage()?.arg("loadgen").args(args).output()?;
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8(out.stderr)?;
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: {needle} not in {err}");
        }
    }
    Ok(())
}

#[test]
fn help_documents_the_pattern_syntax() -> TestResult {
    let out = presage()?.args(["loadgen", "--help"]).output()?;
    let text = String::from_utf8(out.stdout)?;
    for needle in [
        "periodic:period=",
        "low-mem",
        "duty",
        "ramp",
        "constant:cpu=",
        "steps:",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    Ok(())
}

#[test]
fn half_a_core_is_half_a_core() -> TestResult {
    let _live = live();
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("report.json");
    let report_arg = report.to_str().ok_or("non-UTF-8 temp path")?;
    let child = spawn(&[
        "--cpu",
        "0.5",
        "--duration",
        "3",
        "--report-json",
        report_arg,
    ])?;
    let pid = child.id();
    // Sample the way the agent would, from outside, away from start-up and shutdown.
    sleep(Duration::from_millis(800));
    let (t0, c0) = (Instant::now(), cpu_s(pid)?);
    sleep(Duration::from_millis(1800));
    let sampled = (cpu_s(pid)? - c0) / t0.elapsed().as_secs_f64();
    finish(child)?;

    let report = read_json(&report)?;
    let reported = number(&report, "cpu_busy_s")? / number(&report, "duration_s")?;
    eprintln!("--cpu 0.5: sampled {sampled:.3} cores, reported {reported:.3} cores");
    assert!((sampled - 0.5).abs() <= 0.1, "sampled {sampled:.3} cores");
    assert!(
        (reported - 0.5).abs() <= 0.1,
        "reported {reported:.3} cores"
    );
    assert!((number(&report, "cpu_target_mean")? - 0.5).abs() < 1e-9);
    Ok(())
}

#[test]
fn memory_is_resident_in_the_worker() -> TestResult {
    let _live = live();
    let child = spawn(&["--memory", "100M", "--duration", "3"])?;
    let pid = child.id();
    let mut seen = 0.0;
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        if let Some(rss) = child_of(pid).and_then(rss) {
            seen = rss;
        }
        sleep(Duration::from_millis(100));
    }
    finish(child)?;
    eprintln!("--memory 100M: worker VmRSS {:.1} MiB", seen / MIB);
    assert!(
        (seen / (100.0 * MIB) - 1.0).abs() <= 0.05,
        "VmRSS {:.1} MiB",
        seen / MIB
    );
    Ok(())
}

#[test]
fn periodic_pattern_grows_and_shrinks_without_restarts() -> TestResult {
    let _live = live();
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("report.json");
    let report_arg = report.to_str().ok_or("non-UTF-8 temp path")?;
    // Low on [0, 2) of every 4 s period, ramps to high over [2, 2.5), holds, ramps down
    // over [3.5, 4).
    let spec =
        "periodic:period=4,low-cpu=0.1,high-cpu=0.5,low-mem=32M,high-mem=128M,duty=0.5,ramp=0.5";
    let child = spawn(&[
        "--pattern",
        spec,
        "--duration",
        "8",
        "--report-json",
        report_arg,
    ])?;
    let pid = child.id();
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_millis(7800) {
        if let Some(rss) = child_of(pid).and_then(rss) {
            samples.push((start.elapsed().as_secs_f64(), rss / MIB));
        }
        sleep(Duration::from_millis(100));
    }
    finish(child)?;

    let high = samples
        .iter()
        .filter(|(t, _)| (2.8..3.3).contains(t))
        .map(|s| s.1)
        .fold(0.0, f64::max);
    let low_again = samples
        .iter()
        .filter(|(t, _)| (4.5..5.8).contains(t))
        .map(|s| s.1)
        .fold(f64::MAX, f64::min);
    eprintln!("periodic: worker VmRSS high {high:.1} MiB, low again {low_again:.1} MiB");
    assert!(
        (high - 128.0).abs() <= 0.05 * 128.0,
        "high phase VmRSS {high:.1} MiB"
    );
    assert!(
        (low_again - 32.0).abs() <= 4.0,
        "second low phase VmRSS {low_again:.1} MiB"
    );

    let report = read_json(&report)?;
    let mean = number(&report, "cpu_target_mean")?;
    let busy = number(&report, "cpu_busy_s")? / number(&report, "duration_s")?;
    eprintln!("periodic: cpu target mean {mean:.3}, measured {busy:.3} cores; {report}");
    assert_eq!(report["worker_restarts"], 0);
    assert_eq!(report["worker_oom_kills"], 0);
    assert!(mean > 0.1 && mean < 0.5, "target mean {mean}");
    // Expected mean: 0.1 + 0.4 · (1 s hold + 2 · 0.25 s of ramps) / 4 s = 0.25.
    assert!((mean - 0.25).abs() < 0.01, "target mean {mean}");
    assert!(
        (busy - mean).abs() <= 0.1,
        "measured {busy:.3} vs target {mean:.3}"
    );
    assert_eq!(number(&report, "memory_target_peak_bytes")?, 128.0 * MIB);
    Ok(())
}

#[test]
fn a_killed_worker_is_counted_and_respawned() -> TestResult {
    let _live = live();
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("report.json");
    let report_arg = report.to_str().ok_or("non-UTF-8 temp path")?;
    let child = spawn(&[
        "--memory",
        "16M",
        "--duration",
        "3",
        "--report-json",
        report_arg,
    ])?;
    let pid = child.id();
    sleep(Duration::from_millis(700));
    let first = child_of(pid).ok_or("no memory worker")?;
    // What the OOM killer does to the biggest process in a cgroup over its limit.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()?;
    assert!(killed.success());
    sleep(Duration::from_millis(1200));
    let second = child_of(pid).ok_or("the worker was not respawned")?;
    assert_ne!(first, second);
    let rss = rss(second).ok_or("respawned worker vanished")?;
    assert!(
        rss >= 15.0 * MIB,
        "respawned worker holds {:.1} MiB",
        rss / MIB
    );
    finish(child)?;
    let report = read_json(&report)?;
    assert_eq!(report["worker_restarts"], 1, "{report}");
    assert_eq!(report["worker_oom_kills"], 1, "{report}");
    Ok(())
}

#[test]
fn sigterm_ends_the_run_cleanly_and_takes_the_worker_along() -> TestResult {
    let _live = live();
    let child = spawn(&["--cpu", "0.2", "--memory", "8M"])?;
    let pid = child.id();
    sleep(Duration::from_millis(700));
    let worker = child_of(pid).ok_or("no memory worker")?;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(sent.success());
    finish(child)?;
    // The worker is killed and reaped before the parent exits.
    assert!(!Path::new(&format!("/proc/{worker}")).exists());
    Ok(())
}
