//! presage's anomaly detection and response on this host's real cgroups. A workload runs a
//! periodic load under `presage run` for a while and then stops behaving like itself — it
//! spins every core, leaks memory, or forks many processes (`presage loadgen --turn`). Each
//! change must be alerted within 30 s of its onset and handled per the configured ladder;
//! the same workload unchanged must run 10 minutes without an alert.
//!
//! Latencies are measured from the store's audit trail (the alert's sample time against the
//! moment the turn was scheduled), printed, and checked against the 30 s bound; nothing
//! races the wall clock with a short timeout. The 10-minute quiet run is `#[ignore]`d in
//! `cargo test` and run by CI beside the rest of the suite (`.ci/run`), which makes it a
//! run on a busy machine. Runs as root; skips with the reason otherwise.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The workload's normal behaviour: a 20-second cycle between 0.15 and 0.45 cores and
/// 48 and 80 MiB, the kind of periodic service presage is meant to learn.
const PATTERN: &str =
    "periodic:period=20,low-cpu=0.15,high-cpu=0.45,low-mem=48M,high-mem=80M,duty=0.5,ramp=2";

/// How long the workload behaves before the turn: a few cycles to learn from.
const CALM_S: f64 = 150.0;

/// How long the workload runs after the turn (when nothing ends it sooner).
const TURNED_S: f64 = 75.0;

/// The ladder's configuration in the tests that climb it: a persisting anomaly is
/// re-alerted every 10 s (default 30 s), so the whole ladder fits in the run.
const CLIMB_CONFIG: &str = "[default_policy.anomaly]\nrealert_s = 10\n";

/// The bound on the time from onset to alert.
const ALERT_WITHIN_S: f64 = 30.0;

/// The alert kinds the anomaly detector raises (the others are operational: an OOM kill,
/// a capacity request, a failed actuation).
const OPERATIONAL: [&str; 3] = ["oom_kill", "capacity_shortfall", "actuation_failed"];

fn root_layout() -> bool {
    presage_linux::writable_layout()
        .map_err(|why| println!("skipped: {why}"))
        .is_ok()
}

fn presage() -> PathBuf {
    assert_cmd::cargo::cargo_bin("presage")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A local HTTP server that answers 200 to every request and keeps the bodies: the
/// webhook's receiving end.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

fn hook() -> Hook {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(json) = serde_json::from_slice(&body)
            {
                kept.lock().unwrap().push(json);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        }
    });
    Hook { url, bodies }
}

/// One run of the periodic workload under `presage run`, and what the store kept.
struct LiveRun {
    /// When `presage run` was started (ms since the epoch): the workload starts a
    /// little later, so latencies measured from it are slightly pessimistic.
    started_ms: i64,
    status: ExitStatus,
    alerts: Vec<Value>,
    responses: Vec<Value>,
    webhook: Vec<Value>,
}

impl LiveRun {
    /// The detector's alerts (not the operational ones).
    fn anomaly_alerts(&self) -> Vec<&Value> {
        self.alerts
            .iter()
            .filter(|a| !OPERATIONAL.contains(&a["kind"].as_str().unwrap_or("")))
            .collect()
    }

    /// The actions taken, in order, as their names.
    fn actions(&self) -> Vec<String> {
        self.responses
            .iter()
            .map(|r| r["response"]["action"].as_str().unwrap_or("?").to_owned())
            .collect()
    }
}

fn audit(store: &str, what: &str) -> Vec<Value> {
    let out = Command::new(presage())
        .args(["audit", "--store", store, "--what", what])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "presage audit --what {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn live_run(dir: &Path, turn: Option<&str>, seconds: f64, run_args: &[&str]) -> LiveRun {
    let hook = hook();
    let config = dir.join("agent.toml");
    std::fs::write(&config, CLIMB_CONFIG).unwrap();
    let store = format!("sqlite:{}", dir.join("presage.db").display());
    let mut cmd = Command::new(presage());
    cmd.arg("run")
        .arg("--standalone")
        .arg("--data-dir")
        .arg(dir)
        .args(["--store", &store, "--interval", "1", "--webhook", &hook.url])
        .arg("--config")
        .arg(&config)
        .args(run_args)
        .arg("--")
        .arg(presage())
        .args([
            "loadgen",
            "--pattern",
            PATTERN,
            "--duration",
            &seconds.to_string(),
        ]);
    if let Some(turn) = turn {
        cmd.args(["--turn", turn]);
    }
    let started_ms = now_ms();
    let status = cmd.status().unwrap();
    // The webhook worker delivers after the tick; give a last delivery a moment to land.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let webhook = hook.bodies.lock().unwrap().clone();
    LiveRun {
        started_ms,
        status,
        alerts: audit(&store, "alerts"),
        responses: audit(&store, "responses"),
        webhook,
    }
}

/// Runs the workload with `turn` at [`CALM_S`] and checks the first anomaly alert: none
/// before the onset, the first within [`ALERT_WITHIN_S`] after it. Returns the run.
fn turned_run(name: &str, turn_kind: &str, run_args: &[&str]) -> Option<LiveRun> {
    if !root_layout() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let turn = format!("{turn_kind}@{CALM_S}");
    let run = live_run(dir.path(), Some(&turn), CALM_S + TURNED_S, run_args);
    let onset_ms = run.started_ms + (CALM_S * 1000.0) as i64;
    let alerts = run.anomaly_alerts();
    let early: Vec<_> = alerts
        .iter()
        .filter(|a| a["at"].as_i64().unwrap() < onset_ms)
        .collect();
    assert!(
        early.is_empty(),
        "{name}: alerts before the onset: {early:#?}"
    );
    let first = alerts.first().unwrap_or_else(|| {
        panic!(
            "{name}: no anomaly alert at all; every alert: {:#?}",
            run.alerts
        )
    });
    let latency_s = (first["at"].as_i64().unwrap() - onset_ms) as f64 / 1000.0;
    println!(
        "{name}: first alert {latency_s:.1} s after the onset: {} (score {}): {}",
        first["kind"], first["score"], first["message"]
    );
    println!("{name}: actions {:?}", run.actions());
    assert!(
        latency_s <= ALERT_WITHIN_S,
        "{name}: alerted {latency_s:.1} s after the onset (bound {ALERT_WITHIN_S} s): {first}"
    );
    Some(run)
}

/// The webhook got the alert, with the workload and the scores behind it.
fn assert_webhook_delivered(name: &str, run: &LiveRun) {
    assert!(
        !run.webhook.is_empty(),
        "{name}: the webhook received nothing; responses: {:#?}",
        run.responses
    );
    let body = run.webhook[0].to_string();
    assert!(
        body.contains("score"),
        "{name}: the webhook body carries no score: {body}"
    );
}

fn spinning_every_core_is_alerted_and_throttled() {
    let Some(run) = turned_run(
        "spin",
        "spin",
        // The ladder starts at webhook: a spin starved by a busy host (a 2-core CI box
        // compiling beside it) may score near the threshold and re-alert only once or
        // twice in the run, and the second alert must already throttle.
        &[
            "--respond-from",
            "webhook",
            "--respond-up-to",
            "throttle",
            "--response-cooldown",
            "5",
        ],
    ) else {
        return;
    };
    assert!(
        run.status.success(),
        "spin: the run ended with {}",
        run.status
    );
    let actions = run.actions();
    assert!(
        actions.iter().any(|a| a == "throttle"),
        "spin: never throttled: {actions:?}"
    );
    assert!(
        !actions.iter().any(|a| a == "freeze" || a == "kill"),
        "spin: went past the ladder's top rung: {actions:?}"
    );
    assert_webhook_delivered("spin", &run);
}

fn a_memory_leak_is_alerted_and_climbs_the_whole_ladder_to_kill() {
    let Some(run) = turned_run(
        "leak",
        "leak:20M",
        &["--respond-up-to", "kill", "--response-cooldown", "3"],
    ) else {
        return;
    };
    let actions = run.actions();
    let rungs: Vec<&str> = ["webhook", "throttle", "freeze", "kill"]
        .into_iter()
        .filter(|rung| actions.iter().any(|a| a == rung))
        .collect();
    assert_eq!(
        rungs,
        ["webhook", "throttle", "freeze", "kill"],
        "leak: actions {actions:?}"
    );
    let position = |rung: &str| actions.iter().position(|a| a == rung).unwrap();
    assert!(
        position("webhook") < position("throttle")
            && position("throttle") < position("freeze")
            && position("freeze") < position("kill"),
        "leak: the ladder was not climbed in order: {actions:?}"
    );
    assert!(
        !run.status.success(),
        "leak: the workload was killed, yet the run succeeded"
    );
    assert_webhook_delivered("leak", &run);
}

fn a_fork_storm_is_alerted_and_a_protected_workload_is_never_frozen_or_killed() {
    let Some(run) = turned_run(
        "fork",
        "fork:300",
        &[
            "--respond-up-to",
            "kill",
            "--response-cooldown",
            "3",
            "--protected",
        ],
    ) else {
        return;
    };
    let actions = run.actions();
    let done: Vec<&Value> = run
        .responses
        .iter()
        .filter(|r| r["outcome"] == "ok")
        .collect();
    assert!(
        done.iter().all(|r| {
            let a = r["response"]["action"].as_str().unwrap_or("");
            a != "freeze" && a != "kill"
        }),
        "fork: a protected workload was frozen or killed: {actions:?}"
    );
    assert!(
        run.status.success(),
        "fork: the protected workload did not run to its end: {}",
        run.status
    );
    assert_webhook_delivered("fork", &run);
}

/// The three changes run side by side, each with its own workload, store and webhook
/// receiver: one after another they would take three times as long, and the test harness
/// runs only as many tests at once as there are cores.
#[test]
fn misbehaviour_is_alerted_within_30_s_and_handled_per_the_ladder() {
    if !root_layout() {
        return;
    }
    let scenarios: [(&str, fn()); 3] = [
        ("spin", spinning_every_core_is_alerted_and_throttled),
        (
            "leak",
            a_memory_leak_is_alerted_and_climbs_the_whole_ladder_to_kill,
        ),
        (
            "fork",
            a_fork_storm_is_alerted_and_a_protected_workload_is_never_frozen_or_killed,
        ),
    ];
    let failed: Vec<&str> = std::thread::scope(|scope| {
        let running: Vec<_> = scenarios
            .iter()
            .map(|(name, scenario)| (*name, scope.spawn(scenario)))
            .collect();
        running
            .into_iter()
            .filter_map(|(name, handle)| handle.join().is_err().then_some(name))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "failed: {failed:?} (their messages are above)"
    );
}

#[test]
#[ignore = "ten minutes: CI runs it beside the suite (.ci/run); run with --ignored"]
fn the_unchanged_workload_runs_ten_minutes_without_an_alert() {
    if !root_layout() {
        return;
    }
    let seconds: f64 = std::env::var("PRESAGE_QUIET_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600.0);
    println!("quiet: {seconds} s of the periodic workload, the ladder allowed up to kill");
    let dir = tempfile::tempdir().unwrap();
    let run = live_run(
        dir.path(),
        None,
        seconds,
        &["--respond-up-to", "kill", "--response-cooldown", "3"],
    );
    println!(
        "quiet: {} alerts, {} responses, {} webhook posts",
        run.alerts.len(),
        run.responses.len(),
        run.webhook.len()
    );
    assert!(
        run.alerts.is_empty(),
        "quiet: alerts on an unchanged workload: {:#?}",
        run.alerts
    );
    assert!(run.responses.is_empty(), "{:#?}", run.responses);
    assert!(
        run.status.success(),
        "quiet: the run ended with {}",
        run.status
    );
}
