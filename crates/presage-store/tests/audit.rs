//! The response audit trail on every backend: responses written in the tick's
//! transaction and read back whole, their query columns, the behavioural score beside
//! each decision, and a store of schema 2 migrating to 3.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use presage_core::{Alert, AlertKind, Severity, Timestamp, WorkloadId};
use presage_engine::{Outcome, Response, ResponseEvent, TickWrite};
use support::backend::{Backend, decision};

on_every_backend!(
    responses_are_audited_with_the_alert_and_scores,
    a_version_2_store_migrates_to_3_keeping_its_rows,
);

fn response(workload: &str, at_s: i64, response: Response, outcome: Outcome) -> ResponseEvent {
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
            kind: AlertKind::Anomaly,
            severity: Severity::Critical,
            score: 0.91,
            message: "forks far above its profile".into(),
        },
        behavior_score: 87.5,
        anomaly_score: Some(0.91),
        outcome,
        message: format!("{outcome}"),
    }
}

/// action, rung, outcome, alert_kind, behavior_score, anomaly_score, cpu_cores.
type ResponseRow = (String, i64, String, String, f64, Option<f64>, Option<f64>);

fn responses_are_audited_with_the_alert_and_scores(b: Backend) {
    let events = [
        response("presage/x", 10, Response::Record, Outcome::Ok),
        response("presage/x", 20, Response::Webhook, Outcome::Deferred),
        response("presage/y", 25, Response::Freeze, Outcome::Refused),
        response(
            "presage/x",
            30,
            Response::Throttle { cpu_cores: 0.25 },
            Outcome::Ok,
        ),
        response("presage/x", 40, Response::Kill, Outcome::Failed),
    ];
    {
        let mut s = b.open();
        // Responses arrive in the tick's transaction, with its decisions and alerts.
        s.record(TickWrite {
            decisions: &[decision("presage/x", 30)],
            alerts: &[events[0].alert.clone()],
            responses: &events[..3],
            ..TickWrite::default()
        })
        .unwrap();
        s.record(TickWrite {
            responses: &events[3..],
            ..TickWrite::default()
        })
        .unwrap();
    }
    // Read back after a reopen, oldest first, whole.
    let mut s = b.open();
    assert_eq!(s.responses(None).unwrap(), events.to_vec());
    let x: Vec<_> = events
        .iter()
        .filter(|e| e.workload.as_str() == "presage/x")
        .cloned()
        .collect();
    assert_eq!(s.responses(Some("presage/x")).unwrap(), x);
    assert!(s.responses(Some("presage/none")).unwrap().is_empty());
    assert_eq!(s.counts().unwrap().responses, 5);
    assert_eq!(s.alerts(None).unwrap(), vec![events[0].alert.clone()]);
    let decisions = s.decisions(Some("presage/x")).unwrap();
    assert_eq!(decisions, vec![decision("presage/x", 30)]);
    assert_eq!(decisions[0].behavior_score, Some(80.0));
    // The query columns say the same as the bodies.
    let sql = "SELECT action, rung, outcome, alert_kind, behavior_score, anomaly_score, cpu_cores
        FROM responses ORDER BY at_ms";
    let rows: Vec<ResponseRow> = match &b {
        Backend::Sqlite(dir) => {
            let conn = rusqlite::Connection::open(dir.path().join("presage.db")).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        }
        Backend::Postgres(db) => db
            .client()
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .collect(),
    };
    let throttle = &rows[3];
    assert_eq!(
        throttle,
        &(
            "throttle".to_owned(),
            2,
            "ok".to_owned(),
            "anomaly".to_owned(),
            87.5,
            Some(0.91),
            Some(0.25)
        )
    );
    let outcomes: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(outcomes, ["ok", "deferred", "refused", "ok", "failed"]);
    let score: Option<f64> = match &b {
        Backend::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("presage.db"))
            .unwrap()
            .query_row("SELECT behavior_score FROM decisions", [], |r| r.get(0))
            .unwrap(),
        Backend::Postgres(db) => db
            .client()
            .query_one("SELECT behavior_score FROM decisions", &[])
            .unwrap()
            .get(0),
    };
    assert_eq!(score, Some(80.0));
}

/// A store taken back to schema 2 (as a build before responses left it: no responses
/// table, no decisions.behavior_score, a decision without the score in its JSON) opens,
/// migrates and keeps its rows.
fn a_version_2_store_migrates_to_3_keeping_its_rows(b: Backend) {
    b.open()
        .record(TickWrite {
            decisions: &[decision("presage/x", 5)],
            ..TickWrite::default()
        })
        .unwrap();
    let mut old = serde_json::to_value(decision("presage/x", 5)).unwrap();
    old.as_object_mut().unwrap().remove("behavior_score");
    let old = old.to_string();
    let back_to_2 = "DROP TABLE responses; ALTER TABLE decisions DROP COLUMN behavior_score;";
    match &b {
        Backend::Sqlite(dir) => {
            let conn = rusqlite::Connection::open(dir.path().join("presage.db")).unwrap();
            conn.execute_batch(back_to_2).unwrap();
            conn.execute("UPDATE decisions SET body = ?1", [&old])
                .unwrap();
        }
        Backend::Postgres(db) => {
            let mut c = db.client();
            c.batch_execute(back_to_2).unwrap();
            c.execute("UPDATE decisions SET body = $1", &[&old])
                .unwrap();
        }
    }
    b.set_schema_version(2);
    let mut s = b.open();
    let decisions = s.decisions(None).unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].behavior_score, None);
    s.record(TickWrite {
        decisions: &[decision("presage/x", 6)],
        responses: &[response("presage/x", 6, Response::Record, Outcome::Ok)],
        ..TickWrite::default()
    })
    .unwrap();
    assert_eq!(s.counts().unwrap().responses, 1);
    assert_eq!(s.decisions(None).unwrap()[1].behavior_score, Some(56.0));
    assert_eq!(s.integrity_check().unwrap(), "ok");
}
