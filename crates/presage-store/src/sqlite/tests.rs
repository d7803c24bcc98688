use presage_core::{Decision, Limits, Reason, ResourceMap, WorkloadId};
use presage_forecast::ModelState;

use super::*;

fn profile(code: &str, version: u64) -> Profile {
    Profile {
        key: WorkloadKey::new(code, "v1", "in", "0").unwrap(),
        version,
        samples: 10 * version,
        updated_at: Timestamp::from_unix_secs(100),
        model: Some(ModelState {
            model: "m".into(),
            version: 1,
            state: serde_json::json!({"level": 0.5}),
        }),
    }
}

#[test]
fn profiles_survive_a_reopen_and_the_latest_save_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("presage.db");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        s.save(&[profile("a", 1), profile("b", 1)]).unwrap();
        s.save(&[profile("a", 2)]).unwrap();
        assert!(s.remove(&profile("b", 0).key).unwrap());
        assert!(!s.remove(&profile("b", 0).key).unwrap());
    }
    let mut s = SqliteStore::open(&path).unwrap();
    let a = s.load(&profile("a", 0).key).unwrap().unwrap();
    assert_eq!(a, profile("a", 2));
    assert_eq!(s.profiles().unwrap().len(), 1);
    let other = WorkloadKey::new("a", "v2", "in", "0").unwrap();
    assert_eq!(s.load(&other).unwrap(), None);
}

#[test]
fn the_audit_trail_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("p.db")).unwrap();
    let d = Decision {
        workload: WorkloadId::new("presage/x").unwrap(),
        at: Timestamp::from_unix_secs(5),
        old: Limits::unlimited(),
        new: Limits::unlimited(),
        reason: Reason::Initial,
        risk: ResourceMap::none(),
        model: "m".into(),
        behavior_score: None,
    };
    s.record(TickWrite {
        decisions: &[d.clone(), d],
        ..TickWrite::default()
    })
    .unwrap();
    assert_eq!(s.decision_count("presage/x").unwrap(), 2);
    assert_eq!(s.decision_count("presage/y").unwrap(), 0);
}

#[test]
fn a_newer_schema_is_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let e = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(e.contains("p.db") && e.contains("newer"), "{e}");
}

#[test]
fn reopening_does_not_migrate_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    SqliteStore::open(&path).unwrap();
    let s = SqliteStore::open(&path).unwrap();
    let ok: String = s
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

fn sample(workload: &str, at_ms: i64, cpu: f64) -> presage_core::Sample {
    let mut usage = presage_core::Usage::empty();
    usage.set(presage_core::Resource::Cpu, cpu).unwrap();
    presage_core::Sample::new(
        Timestamp::from_unix_ms(at_ms),
        WorkloadId::new(workload).unwrap(),
        1000,
        usage,
    )
    .unwrap()
}

#[test]
fn retention_rolls_raw_into_minutes_into_five_minutes_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("p.db")).unwrap();
    // Ten minutes of one sample per second, cpu = the minute's index (so means are known).
    let samples: Vec<_> = (0..600)
        .map(|i| sample("w", i * 1000, (i / 60) as f64))
        .collect();
    s.record(TickWrite {
        samples: &samples,
        ..TickWrite::default()
    })
    .unwrap();
    assert_eq!(s.counts().unwrap().raw_samples, 600);
    let keep = Retention {
        raw_s: 120,
        minute_s: 300,
        five_minute_s: 3600,
    };
    // At t = 600 s: raw before 480 s rolls up (8 minutes), minutes before 300 s roll to 5-minute.
    let r = s
        .apply_retention(Timestamp::from_unix_secs(600), &keep)
        .unwrap();
    assert_eq!(r.raw_rolled, 480);
    assert_eq!(r.minute_rolled, 5);
    let c = s.counts().unwrap();
    assert_eq!(
        (c.raw_samples, c.minute_samples, c.five_minute_samples),
        (120, 3, 1)
    );
    let (mean, max, n): (f64, f64, i64) = s
        .conn
        .query_row(
            "SELECT cpu_mean, cpu_max, n FROM samples_rollup WHERE resolution_s = 300",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(
        (mean - 2.0).abs() < 1e-9 && (max - 4.0).abs() < 1e-9 && n == 300,
        "{mean} {max} {n}"
    );
    // Much later everything has aged out.
    let r = s
        .apply_retention(Timestamp::from_unix_secs(100_000), &keep)
        .unwrap();
    assert!(r.expired >= 1);
    let c = s.counts().unwrap();
    assert_eq!(
        (c.raw_samples, c.minute_samples, c.five_minute_samples),
        (0, 0, 0)
    );
}

#[test]
fn executions_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("p.db")).unwrap();
    let mut peak = ResourceMap::none();
    *peak.get_mut(presage_core::Resource::Memory) = Some(3.0e8);
    let e = Execution {
        workload: WorkloadId::new("presage/run-x").unwrap(),
        key: WorkloadKey::new("c", "v2", "in", "0").unwrap(),
        started: Timestamp::from_unix_secs(10),
        ended: Timestamp::from_unix_secs(70),
        exit_status: Some(0),
        samples: 60,
        peak,
        total: ResourceMap::none(),
        prior: Some(PriorSource::PreviousVersion {
            code_version: "v1".into(),
        }),
        prior_error: Some(0.25),
    };
    s.record_execution(&e).unwrap();
    assert_eq!(s.executions("c").unwrap(), vec![e]);
    assert!(s.executions("other").unwrap().is_empty());
}

fn keyed(code: &str, version: &str, samples: u64, at_s: i64) -> Profile {
    Profile {
        key: WorkloadKey::new(code, version, "in", "0").unwrap(),
        version: 1,
        samples,
        updated_at: Timestamp::from_unix_secs(at_s),
        model: None,
    }
}

#[test]
fn priors_come_from_the_key_then_the_latest_earlier_version_then_a_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("p.db")).unwrap();
    s.save(&[
        keyed("job", "v1", 10, 100),
        keyed("job", "v2", 20, 200),
        keyed("twin", "", 30, 50),
    ])
    .unwrap();
    let exact = s
        .load_prior(&keyed("job", "v1", 0, 0).key, None)
        .unwrap()
        .unwrap();
    assert_eq!(
        (exact.source, exact.profile.samples),
        (PriorSource::Exact, 10)
    );
    let next = s
        .load_prior(&keyed("job", "v3", 0, 0).key, None)
        .unwrap()
        .unwrap();
    assert_eq!(
        next.source,
        PriorSource::PreviousVersion {
            code_version: "v2".into()
        }
    );
    let fp = |extra: &str| presage_core::Fingerprint {
        kind: "elf".into(),
        size: 1000,
        features: ["a", "b", "c", "d", extra]
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
    };
    let unknown = keyed("new", "", 0, 0).key;
    assert_eq!(s.load_prior(&unknown, Some(&fp("x"))).unwrap(), None);
    s.save_fingerprint("twin", &fp("e")).unwrap();
    s.save_fingerprint("new", &fp("x")).unwrap();
    let near = s.load_prior(&unknown, Some(&fp("x"))).unwrap().unwrap();
    match near.source {
        PriorSource::Neighbour {
            code_id,
            similarity,
        } => {
            assert_eq!(code_id, "twin");
            assert!(similarity > 0.6, "{similarity}");
        }
        other => panic!("expected a neighbour, got {other:?}"),
    }
    assert_eq!(near.profile.samples, 30);
    assert_eq!(s.counts().unwrap().fingerprints, 2);
}

#[test]
fn a_version_2_database_migrates_to_3_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // A database as a build of schema version 2 left it, with a decision written before
    // decisions carried a behavioural score.
    let mut old = serde_json::to_value(Decision {
        workload: WorkloadId::new("presage/x").unwrap(),
        at: Timestamp::from_unix_secs(5),
        old: Limits::unlimited(),
        new: Limits::unlimited(),
        reason: Reason::Initial,
        risk: ResourceMap::none(),
        model: "m".into(),
        behavior_score: Some(1.0),
    })
    .unwrap();
    old.as_object_mut().unwrap().remove("behavior_score");
    let old_decision = old.to_string();
    assert!(!old_decision.contains("behavior_score"));
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO decisions (workload, at_ms, body) VALUES ('presage/x', 5000, ?1)",
            params![old_decision],
        )
        .unwrap();
    }
    let mut s = SqliteStore::open(&path).unwrap();
    let version: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 3);
    let decisions = s.decisions(None).unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].behavior_score, None, "old rows parse");
    assert_eq!(s.counts().unwrap().responses, 0);
    assert!(s.responses(Some("presage/x")).unwrap().is_empty());
}
