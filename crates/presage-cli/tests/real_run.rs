//! `presage run` and the cgroup it manages, on this host's real cgroups: sampling
//! accuracy, quota and memory-limit enforcement, OOM kills recorded as events, freeze
//! and kill, and the `--summary-json` contract. Runs as root; skips with the reason
//! otherwise. Tests run one at a time: they measure CPU on a 2-core machine.

#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use presage_agent::run::{procs_files, spawn_in_cgroup};
use presage_agent::{Sampler, now};
use presage_core::WorkloadId;
use presage_engine::PriorSource;
use presage_linux::{Cgroup, CgroupManager, Layout};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

const MIB: f64 = 1024.0 * 1024.0;

fn root_layout() -> Option<Layout> {
    presage_linux::writable_layout()
        .map_err(|why| println!("skipped: {why}"))
        .ok()
}

fn presage() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("presage")
}

/// `presage run ARGS -- presage loadgen LOAD`, returning the summary.
fn run_summary(run_args: &[&str], load: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let bin = presage();
    let mut cmd = Command::new(&bin);
    cmd.arg("run")
        .arg("--standalone")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--summary-json")
        .arg(&summary)
        .args(run_args)
        .arg("--")
        .arg(&bin)
        .arg("loadgen")
        .args(load);
    cmd.assert().success();
    serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap()
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

#[test]
fn cpu_is_measured_within_ten_percent() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if root_layout().is_none() {
        return;
    }
    for cores in [0.5, 1.0] {
        let s = run_summary(
            &["--mode", "observe"],
            &["--cpu", &cores.to_string(), "--duration", "6"],
        );
        let mean = f(&s, &["mean", "cpu"]);
        assert!(
            (mean - cores).abs() <= 0.1 * cores,
            "burning {cores} cores measured as {mean}"
        );
    }
}

#[test]
fn memory_is_measured_within_five_percent() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if root_layout().is_none() {
        return;
    }
    let s = run_summary(
        &["--mode", "observe"],
        &["--memory", "300M", "--duration", "4"],
    );
    let peak = f(&s, &["peaks", "memory"]);
    assert!(
        (peak - 300.0 * MIB).abs() <= 0.05 * 300.0 * MIB,
        "holding 300 MiB measured as {:.1} MiB",
        peak / MIB
    );
}

#[test]
fn a_quota_holds_a_spinning_process() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if root_layout().is_none() {
        return;
    }
    let s = run_summary(
        &["--mode", "observe", "--initial", "cpu=0.3"],
        &["--cpu", "1.0", "--duration", "6"],
    );
    let mean = f(&s, &["mean", "cpu"]);
    assert!(
        (mean - 0.3).abs() <= 0.05,
        "0.3-core quota let through {mean}"
    );
    assert!(f(&s, &["throttled_s"]) > 1.0, "{s}");
    assert_eq!(f(&s, &["limits_final", "cpu_quota_cores"]), 0.3);
}

#[test]
fn an_oom_kill_is_recorded_as_an_event() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if root_layout().is_none() {
        return;
    }
    let s = run_summary(
        &["--mode", "observe", "--initial", "memory=100M"],
        &["--memory", "300M", "--duration", "4"],
    );
    assert!(f(&s, &["oom_kills"]) >= 1.0, "{s}");
}

#[test]
fn summary_json_keeps_its_contract_and_the_exit_status() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if root_layout().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    Command::new(presage())
        .args([
            "run",
            "--standalone",
            "--budget",
            "cpu=2,memory=1G",
            "--data-dir",
        ])
        .arg(dir.path())
        .arg("--summary-json")
        .arg(&summary)
        .args(["--", "sh", "-c", "exit 3"])
        .assert()
        .code(3);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    for key in [
        "code_id",
        "input_hash",
        "user",
        "duration_s",
        "exit_status",
        "peaks",
        "mean",
        "oom_kills",
        "throttled_s",
        "decisions",
        "limits_final",
    ] {
        assert!(s.get(key).is_some(), "summary lacks {key}: {s}");
    }
    assert_eq!(s["exit_status"], 3);
    assert_eq!(s["code_id"].as_str().unwrap().len(), 64);
    assert_eq!(f(&s, &["limits_final", "cpu_quota_cores"]), 2.0);
    assert_eq!(f(&s, &["limits_final", "memory_max_bytes"]), 1024.0 * MIB);
    // The run's cgroup is gone afterwards.
    let cg = s["cgroup"].as_str().unwrap();
    let layout = Layout::detect().unwrap();
    let left = Cgroup::open(&layout, cg).unwrap().processes().unwrap();
    assert!(left.is_none(), "{cg} still exists");
}

/// Mean cores of `cg` over `secs`, from two readings.
fn cores_over(sampler: &mut Sampler, secs: f64) -> f64 {
    sampler.round(now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let round = sampler.round(now());
    round.samples[0].usage().cpu_cores().unwrap()
}

#[test]
fn freeze_stops_and_thaw_resumes_and_kill_empties() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(layout) = root_layout() else {
        return;
    };
    let rel = format!("presage/freeze-test-{}", std::process::id());
    let cg = Cgroup::create(&layout, &rel).unwrap();
    struct Guard(Cgroup);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.set_frozen(false);
            let _ = self.0.kill();
            for _ in 0..100 {
                if self.0.remove().is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let guard = Guard(cg.clone());
    let bin = presage();
    let cmd: Vec<OsString> = [
        bin.as_os_str(),
        "loadgen".as_ref(),
        "--cpu".as_ref(),
        "0.5".as_ref(),
    ]
    .iter()
    .map(|s| s.to_os_string())
    .collect();
    let mut child = spawn_in_cgroup(&cmd, Path::new(&bin), &procs_files(&layout, &rel)).unwrap();
    let mut sampler = Sampler::new(None);
    sampler.track(
        WorkloadId::new(&rel).unwrap(),
        std::sync::Arc::new(cg.clone()),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        cores_over(&mut sampler, 1.0) > 0.3,
        "running before the freeze"
    );
    cg.set_frozen(true).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let frozen = cores_over(&mut sampler, 1.0);
    assert!(frozen < 0.02, "frozen cgroup still used {frozen} cores");
    cg.set_frozen(false).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        cores_over(&mut sampler, 1.0) > 0.3,
        "running again after the thaw"
    );
    cg.kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "kill did not end the process");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let left = cg.processes().unwrap().unwrap_or_default();
    assert!(left.is_empty(), "processes left after kill: {left:?}");
    drop(guard);
}

fn cpu_quota(cg: &Cgroup) -> Option<f64> {
    cg.read_limits().unwrap().cpu_quota_cores()
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agent_enforces_takes_registrations_and_restores_on_sigterm() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(layout) = root_layout() else {
        return;
    };
    let parent = format!("presage/agent-cli-{}", std::process::id());
    let leaf = format!("{parent}/w1");
    let parent_cg = Cgroup::create(&layout, &parent).unwrap();
    let cg = Cgroup::create(&layout, &leaf).unwrap();
    struct Guard(Vec<Cgroup>, Vec<std::process::Child>);
    impl Drop for Guard {
        fn drop(&mut self) {
            for c in &mut self.1 {
                let _ = c.kill();
                let _ = c.wait();
            }
            for cg in &self.0 {
                let _ = cg.kill();
                for _ in 0..100 {
                    if cg.remove().is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    let mut guard = Guard(vec![cg.clone(), parent_cg], Vec::new());
    cg.set_cpu_max(presage_linux::CpuMax::from_cores(1.5, 100_000).unwrap())
        .unwrap();
    let bin = presage();
    let spin: Vec<OsString> = [
        bin.as_os_str(),
        "loadgen".as_ref(),
        "--cpu".as_ref(),
        "0.2".as_ref(),
    ]
    .iter()
    .map(|s| s.to_os_string())
    .collect();
    guard
        .1
        .push(spawn_in_cgroup(&spin, Path::new(&bin), &procs_files(&layout, &leaf)).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "mode = \"enforce\"\npolicy = \"static\"\nknob = 0.5\ninterval_s = 0.2\ndecide_every_s = 0\nrediscover_every_s = 1\ndata_dir = {:?}\n[discovery]\nroots = [\"{parent}/*\", \"presage/run-*\"]\n[api]\nlisten = \"\"\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let agent = std::process::Command::new(&bin)
        .args(["agent", "--config"])
        .arg(&config)
        .spawn()
        .unwrap();
    guard.1.push(agent);
    wait_for("the agent to halve cpu.max", 20, || {
        cpu_quota(&cg) == Some(0.75)
    });

    // A run registers with the running agent, which manages it.
    let summary = dir.path().join("s.json");
    Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config)
        .arg("--summary-json")
        .arg(&summary)
        .args(["--budget", "cpu=1", "--"])
        .arg(&bin)
        .args(["loadgen", "--cpu", "0.2", "--duration", "4"])
        .assert()
        .success();
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(
        s["managed_by"].as_str().unwrap().starts_with("agent pid"),
        "{s}"
    );
    assert!(
        f(&s, &["decisions"]) >= 1.0,
        "the agent decided on the run: {s}"
    );

    let agent = guard.1.last_mut().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(st) = agent.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "agent exit {exit:?}");
    assert_eq!(
        cpu_quota(&cg),
        Some(1.5),
        "adopted limit restored on SIGTERM"
    );
}

#[test]
fn a_second_run_of_the_same_code_starts_from_its_profile() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if root_layout().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = presage();
    let run = |summary: &Path, version: &str| -> Value {
        Command::new(&bin)
            .args([
                "run",
                "--standalone",
                "--code-version",
                version,
                "--data-dir",
            ])
            .arg(dir.path())
            .arg("--summary-json")
            .arg(summary)
            .arg("--")
            .arg(&bin)
            .args(["loadgen", "--cpu", "0.2", "--duration", "3"])
            .assert()
            .success();
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap()
    };
    let first = run(&dir.path().join("1.json"), "1.0");
    let second = run(&dir.path().join("2.json"), "1.0");
    // A new version of the same program starts from the previous version's profile.
    let third = run(&dir.path().join("3.json"), "2.0");
    assert_eq!(first["profile_restored"], false, "{first}");
    assert_eq!(second["profile_restored"], true, "{second}");
    assert_eq!(third["profile_restored"], true, "{third}");
    assert_eq!(first["code_id"], second["code_id"]);
    // Every run is in the executions table, with its exit status and where its prior
    // came from.
    let code_id = first["code_id"].as_str().unwrap();
    let mut store = presage_store::SqliteStore::open(&dir.path().join("presage.db")).unwrap();
    let runs = presage_store::AdminStore::executions(&mut store, code_id).unwrap();
    let priors: Vec<_> = runs
        .iter()
        .map(|e| (e.exit_status, e.prior.clone()))
        .collect();
    assert_eq!(
        priors,
        vec![
            (Some(0), None),
            (Some(0), Some(PriorSource::Exact)),
            (
                Some(0),
                Some(PriorSource::PreviousVersion {
                    code_version: "1.0".into()
                })
            ),
        ]
    );
    assert!(runs.iter().all(|e| e.samples >= 2), "{runs:?}");
    let listed = Command::new(&bin)
        .args(["profiles", "runs", code_id, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 3);
}
