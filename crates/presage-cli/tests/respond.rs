//! The response ladder from the command line: `presage audit` prints the store's audit
//! trail as JSON lines. The ladder acting on a live workload is `tests/real_live/anomaly.rs`.

#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use presage_core::{Alert, AlertKind, Severity, Timestamp, WorkloadId};
use presage_engine::{Outcome, ProfileStore, Response, ResponseEvent, TickWrite};
use presage_store::SqliteStore;
use serde_json::Value;

fn presage() -> Command {
    Command::cargo_bin("presage").unwrap()
}

fn event(workload: &str, at_s: i64, response: Response) -> ResponseEvent {
    let id = WorkloadId::new(workload).unwrap();
    let at = Timestamp::from_unix_secs(at_s);
    ResponseEvent {
        workload: id.clone(),
        at,
        rung: response.rung(),
        response,
        alert: Alert {
            workload: id,
            at,
            kind: AlertKind::MemoryLeak,
            severity: Severity::Warning,
            score: 3.5,
            message: "memory grows".into(),
        },
        behavior_score: 71.0,
        anomaly_score: Some(3.5),
        outcome: Outcome::Ok,
        message: "done".into(),
    }
}

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn audit_prints_responses_as_json_lines_per_workload() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        event("a", 1, Response::Record),
        event("b", 2, Response::Webhook),
        event("a", 3, Response::Throttle { cpu_cores: 0.5 }),
    ];
    SqliteStore::open(&dir.path().join("presage.db"))
        .unwrap()
        .record(TickWrite {
            alerts: &[events[0].alert.clone()],
            responses: &events,
            ..TickWrite::default()
        })
        .unwrap();
    let out = presage()
        .args(["audit", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let all = lines(&out.stdout);
    let parsed: Vec<ResponseEvent> = all
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert_eq!(parsed, events.to_vec());
    let out = presage()
        .args(["audit", "--workload", "a", "--store"])
        .arg(format!(
            "sqlite:{}",
            dir.path().join("presage.db").display()
        ))
        .output()
        .unwrap();
    let a = lines(&out.stdout);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1]["rung"], "throttle");
    assert_eq!(a[1]["response"]["cpu_cores"], 0.5);
    assert_eq!(a[1]["behavior_score"], 71.0);
    let out = presage()
        .args(["audit", "--what", "alerts", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(lines(&out.stdout).len(), 1);
    // A store that is not there is an error, not an empty trail.
    presage()
        .args(["audit", "--data-dir"])
        .arg(dir.path().join("nowhere"))
        .assert()
        .failure();
}
