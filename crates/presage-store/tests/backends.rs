//! The same checks against every backend, through `presage_store::open` and
//! `Box<dyn AdminStore>`: SQLite in a temporary directory and PostgreSQL on a real
//! server (`support::pg`). Then what only a shared database has: a fleet.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use presage_core::{
    Alert, AlertKind, Fingerprint, Resource, ResourceMap, Sample, Severity, Timestamp, Usage,
    WorkloadId, WorkloadKey,
};
use presage_engine::{Execution, PriorSource, Profile, ProfileStore, Retention, TickWrite};
use presage_forecast::ModelState;
use presage_store::{AdminStore, PostgresStore, SCHEMA_VERSION, StoreUrl};
use support::backend::{Backend, decision};
use support::pg::{TestDb, with_dbname};

on_every_backend!(
    profiles_round_trip_and_the_latest_save_wins,
    remove_deletes_one_key,
    priors_come_from_the_key_then_the_latest_earlier_version_then_a_neighbour,
    executions_round_trip,
    retention_rolls_raw_into_minutes_into_five_minutes_and_expires,
    late_samples_merge_into_rolled_buckets_by_count,
    the_audit_trail_is_counted,
    reopening_keeps_everything,
    a_newer_schema_is_refused_naming_the_store,
    the_integrity_check_passes,
);

fn key(code: &str, version: &str) -> WorkloadKey {
    WorkloadKey::new(code, version, "in", "0").unwrap()
}

fn profile(code: &str, version: u64) -> Profile {
    Profile {
        key: key(code, "v1"),
        version,
        samples: 10 * version,
        updated_at: Timestamp::from_unix_secs(100),
        model: Some(ModelState {
            model: "m".into(),
            version: 1,
            // Floats that only an exact round trip keeps.
            state: serde_json::json!({"level": 0.1 + 0.2, "trend": [1e-300, -2.5]}),
        }),
    }
}

fn keyed(code: &str, version: &str, samples: u64, at_s: i64) -> Profile {
    Profile {
        key: key(code, version),
        version: 1,
        samples,
        updated_at: Timestamp::from_unix_secs(at_s),
        model: None,
    }
}

fn sample(workload: &str, at_ms: i64, cpu: f64) -> Sample {
    let mut usage = Usage::empty();
    usage.set(Resource::Cpu, cpu).unwrap();
    Sample::new(
        Timestamp::from_unix_ms(at_ms),
        WorkloadId::new(workload).unwrap(),
        1000,
        usage,
    )
    .unwrap()
}

fn execution(code: &str, started_s: i64) -> Execution {
    let mut peak = ResourceMap::none();
    *peak.get_mut(Resource::Memory) = Some(3.0e8);
    let mut total = ResourceMap::none();
    *total.get_mut(Resource::Cpu) = Some(12.5);
    Execution {
        workload: WorkloadId::new("presage/run-x").unwrap(),
        key: key(code, "v2"),
        started: Timestamp::from_unix_secs(started_s),
        ended: Timestamp::from_unix_secs(started_s + 60),
        exit_status: Some(0),
        samples: 60,
        peak,
        total,
        prior: Some(PriorSource::PreviousVersion {
            code_version: "v1".into(),
        }),
        prior_error: Some(0.25),
    }
}

fn fp(extra: &str) -> Fingerprint {
    Fingerprint {
        kind: "elf".into(),
        size: 1000,
        features: ["a", "b", "c", "d", extra]
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
    }
}

fn profiles_round_trip_and_the_latest_save_wins(b: Backend) {
    let mut s = b.open();
    s.save(&[profile("a", 1), profile("b", 1)]).unwrap();
    s.save(&[profile("a", 2)]).unwrap();
    // One batch saving a key twice: the later wins.
    s.save(&[profile("c", 1), profile("c", 3)]).unwrap();
    assert_eq!(s.load(&key("a", "v1")).unwrap(), Some(profile("a", 2)));
    assert_eq!(s.load(&key("c", "v1")).unwrap(), Some(profile("c", 3)));
    assert_eq!(s.load(&key("a", "v2")).unwrap(), None);
    let listed: Vec<_> = s.profiles().unwrap().into_iter().map(|p| p.key).collect();
    assert_eq!(listed, vec![key("a", "v1"), key("b", "v1"), key("c", "v1")]);
}

fn remove_deletes_one_key(b: Backend) {
    let mut s = b.open();
    s.save(&[profile("a", 1), profile("b", 1)]).unwrap();
    assert!(s.remove(&key("b", "v1")).unwrap());
    assert!(!s.remove(&key("b", "v1")).unwrap());
    assert_eq!(s.load(&key("b", "v1")).unwrap(), None);
    assert_eq!(s.profiles().unwrap(), vec![profile("a", 1)]);
}

fn priors_come_from_the_key_then_the_latest_earlier_version_then_a_neighbour(b: Backend) {
    let mut s = b.open();
    s.save(&[
        keyed("job", "v1", 10, 100),
        keyed("job", "v2", 20, 200),
        keyed("twin", "", 30, 50),
    ])
    .unwrap();
    let exact = s.load_prior(&key("job", "v1"), None).unwrap().unwrap();
    assert_eq!(
        (exact.source, exact.profile.samples),
        (PriorSource::Exact, 10)
    );
    let next = s.load_prior(&key("job", "v3"), None).unwrap().unwrap();
    assert_eq!(
        (next.source, next.profile.samples),
        (
            PriorSource::PreviousVersion {
                code_version: "v2".into()
            },
            20
        )
    );
    let unknown = key("new", "");
    assert_eq!(s.load_prior(&unknown, Some(&fp("x"))).unwrap(), None);
    s.save_fingerprint("twin", &fp("e")).unwrap();
    s.save_fingerprint("new", &fp("x")).unwrap();
    // Saving again replaces, not duplicates.
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
    assert_eq!(s.load_prior(&unknown, None).unwrap(), None);
    assert_eq!(s.counts().unwrap().fingerprints, 2);
}

fn executions_round_trip(b: Backend) {
    let mut s = b.open();
    let (late, early) = (execution("c", 500), execution("c", 10));
    let mut bare = execution("c", 20);
    bare.exit_status = None;
    bare.prior = None;
    bare.prior_error = None;
    for e in [&late, &early, &bare] {
        s.record_execution(e).unwrap();
    }
    assert_eq!(s.executions("c").unwrap(), vec![early, bare, late]);
    assert!(s.executions("other").unwrap().is_empty());
    assert_eq!(s.counts().unwrap().executions, 3);
}

fn retention_rolls_raw_into_minutes_into_five_minutes_and_expires(b: Backend) {
    let mut s = b.open();
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
    assert_eq!((r.raw_rolled, r.minute_rolled, r.expired), (480, 5, 0));
    let c = s.counts().unwrap();
    assert_eq!(
        (c.raw_samples, c.minute_samples, c.five_minute_samples),
        (120, 3, 1)
    );
    // Minutes 5, 6, 7 at one minute each (cpu = index), then minutes 0–4 as one
    // five-minute bucket: mean 2, max 4, 300 samples. Memory was never sampled.
    assert_eq!(
        b.rollups(),
        vec![
            (60, 300_000, 60, Some(5.0), Some(5.0), None),
            (60, 360_000, 60, Some(6.0), Some(6.0), None),
            (60, 420_000, 60, Some(7.0), Some(7.0), None),
            (300, 0, 300, Some(2.0), Some(4.0), None),
        ]
    );
    // Much later everything has aged out.
    let r = s
        .apply_retention(Timestamp::from_unix_secs(100_000), &keep)
        .unwrap();
    assert_eq!((r.raw_rolled, r.minute_rolled, r.expired), (120, 5, 2));
    let c = s.counts().unwrap();
    assert_eq!(
        (c.raw_samples, c.minute_samples, c.five_minute_samples),
        (0, 0, 0)
    );
}

fn late_samples_merge_into_rolled_buckets_by_count(b: Backend) {
    let mut s = b.open();
    let keep = Retention {
        raw_s: 60,
        minute_s: 3600,
        five_minute_s: 86_400,
    };
    // Minute 0: 30 samples at cpu 1, rolled up; then 10 more arrive late at cpu 5.
    let first: Vec<_> = (0..30).map(|i| sample("w", i * 1000, 1.0)).collect();
    let late: Vec<_> = (30..40).map(|i| sample("w", i * 1000, 5.0)).collect();
    s.record(TickWrite {
        samples: &first,
        ..TickWrite::default()
    })
    .unwrap();
    s.apply_retention(Timestamp::from_unix_secs(120), &keep)
        .unwrap();
    s.record(TickWrite {
        samples: &late,
        ..TickWrite::default()
    })
    .unwrap();
    let r = s
        .apply_retention(Timestamp::from_unix_secs(130), &keep)
        .unwrap();
    assert_eq!(r.raw_rolled, 10);
    // (30 × 1 + 10 × 5) / 40 = 2.
    assert_eq!(b.rollups(), vec![(60, 0, 40, Some(2.0), Some(5.0), None)]);
}

fn the_audit_trail_is_counted(b: Backend) {
    let mut s = b.open();
    let alert = Alert {
        workload: WorkloadId::new("presage/x").unwrap(),
        at: Timestamp::from_unix_secs(6),
        kind: AlertKind::MemoryLeak,
        severity: Severity::Warning,
        score: 4.5,
        message: "memory grows 1 MiB/s".into(),
    };
    s.record(TickWrite {
        samples: &[sample("presage/x", 5000, 0.5)],
        decisions: &[decision("presage/x", 5), decision("presage/x", 6)],
        alerts: &[alert],
        responses: &[],
    })
    .unwrap();
    s.record(TickWrite {
        decisions: &[decision("presage/y", 7)],
        ..TickWrite::default()
    })
    .unwrap();
    // Nothing to write is not an error and writes nothing.
    s.record(TickWrite::default()).unwrap();
    assert_eq!(s.decision_count("presage/x").unwrap(), 2);
    assert_eq!(s.decision_count("presage/y").unwrap(), 1);
    assert_eq!(s.decision_count("presage/z").unwrap(), 0);
    let c = s.counts().unwrap();
    assert_eq!((c.decisions, c.raw_samples), (3, 1));
    assert_eq!(b.rows("alerts"), 1);
}

fn reopening_keeps_everything(b: Backend) {
    {
        let mut s = b.open();
        s.save(&[profile("a", 1)]).unwrap();
        s.record_execution(&execution("a", 1)).unwrap();
        s.save_fingerprint("a", &fp("e")).unwrap();
        s.record(TickWrite {
            samples: &[sample("w", 1000, 1.0)],
            decisions: &[decision("w", 1)],
            ..TickWrite::default()
        })
        .unwrap();
    }
    let mut s = b.open();
    assert_eq!(s.load(&key("a", "v1")).unwrap(), Some(profile("a", 1)));
    let c = s.counts().unwrap();
    assert_eq!(
        (
            c.profiles,
            c.executions,
            c.fingerprints,
            c.raw_samples,
            c.decisions
        ),
        (1, 1, 1, 1, 1)
    );
}

fn a_newer_schema_is_refused_naming_the_store(b: Backend) {
    let described = b.open().describe();
    b.set_schema_version(SCHEMA_VERSION + 1);
    let e = presage_store::open(&b.url()).unwrap_err().to_string();
    // SQLite names its file, PostgreSQL its URL.
    let named = described.strip_prefix("sqlite:").unwrap_or(&described);
    assert!(e.contains(named) && e.contains("newer"), "{e}");
    if let Backend::Postgres(db) = &b {
        // With a password in the URL (trust authentication ignores it), the message
        // still names the store, and never the password.
        let secret = db.url.replacen("://postgres@", "://postgres:hunter2@", 1);
        if secret != db.url {
            let e = PostgresStore::connect(&secret).unwrap_err().to_string();
            assert!(e.contains(&db.url) && !e.contains("hunter2"), "{e}");
        }
    }
}

fn the_integrity_check_passes(b: Backend) {
    let mut s = b.open();
    s.save(&[profile("a", 1)]).unwrap();
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

// What only a shared database has.

#[test]
fn a_profile_saved_on_one_host_is_the_prior_on_another() {
    let Some(db) = TestDb::create("fleet") else {
        return;
    };
    let mut host_a = PostgresStore::connect(&db.url).unwrap();
    let mut host_b = PostgresStore::connect(&db.url).unwrap();
    assert_eq!(host_b.load_prior(&key("job", "v1"), None).unwrap(), None);
    host_a.save(&[keyed("job", "v1", 40, 100)]).unwrap();
    let exact = host_b.load_prior(&key("job", "v1"), None).unwrap().unwrap();
    assert_eq!(
        (exact.source, exact.profile.samples),
        (PriorSource::Exact, 40)
    );
    // A new release seen first on host B starts from what host A learned.
    let next = host_b.load_prior(&key("job", "v2"), None).unwrap().unwrap();
    assert_eq!(
        next.source,
        PriorSource::PreviousVersion {
            code_version: "v1".into()
        }
    );
    // And a new program similar to one host A knows starts from host A's profile.
    host_a.save_fingerprint("job", &fp("e")).unwrap();
    let near = host_b
        .load_prior(&key("lookalike", ""), Some(&fp("x")))
        .unwrap()
        .unwrap();
    assert!(
        matches!(&near.source, PriorSource::Neighbour { code_id, .. } if code_id == "job"),
        "{:?}",
        near.source
    );
    // Both write ticks to the same tables.
    host_a
        .record(TickWrite {
            decisions: &[decision("a/w", 1)],
            ..TickWrite::default()
        })
        .unwrap();
    host_b
        .record(TickWrite {
            decisions: &[decision("b/w", 1)],
            ..TickWrite::default()
        })
        .unwrap();
    assert_eq!(host_a.counts().unwrap().decisions, 2);
}

#[test]
fn agents_connecting_at_once_migrate_once() {
    let Some(db) = TestDb::create("concurrent_migration") else {
        return;
    };
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || PostgresStore::connect(&url).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let mut c = db.client();
    let versions: Vec<i64> = c
        .query("SELECT version FROM presage_schema", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![SCHEMA_VERSION]);
}

#[test]
fn a_store_reconnects_after_its_connection_is_dropped() {
    let Some(db) = TestDb::create("reconnect") else {
        return;
    };
    let mut s = PostgresStore::connect(&db.url).unwrap();
    s.save(&[profile("a", 1)]).unwrap();
    // What a server restart or failover looks like from the agent's side.
    db.client()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db.name()],
        )
        .unwrap();
    // The call that finds the connection gone fails; the next one reconnects.
    let first = s.load(&key("a", "v1"));
    let loaded = match first {
        Ok(p) => p,
        Err(e) => {
            assert!(e.to_string().contains(&db.url), "{e}");
            s.load(&key("a", "v1")).unwrap()
        }
    };
    assert_eq!(loaded, Some(profile("a", 1)));
}

#[test]
fn the_integrity_check_reports_a_missing_table() {
    let Some(db) = TestDb::create("integrity") else {
        return;
    };
    let mut s = PostgresStore::connect(&db.url).unwrap();
    db.client()
        .batch_execute("DROP TABLE fingerprints")
        .unwrap();
    let report = s.integrity_check().unwrap();
    assert!(
        report.contains("fingerprints") && report != "ok",
        "{report}"
    );
}

#[test]
fn an_unreachable_server_is_named_without_its_password() {
    // Port 1 on loopback: refused at once, no server needed.
    let e = PostgresStore::connect("postgres://agent:hunter2@127.0.0.1:1/fleet?connect_timeout=2")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("postgres://agent@127.0.0.1:1/fleet?connect_timeout=2")
            && !e.contains("hunter2"),
        "{e}"
    );
    let e = presage_store::open(&StoreUrl::parse("postgresql://u:pw@127.0.0.1:1/x").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("postgresql://u@127.0.0.1:1/x") && !e.contains("pw@"),
        "{e}"
    );
}

#[test]
fn test_urls_point_at_their_own_database() {
    assert_eq!(
        with_dbname("postgres://postgres@127.0.0.1:5/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5/t1"
    );
    assert_eq!(
        with_dbname("postgres://u:p@h:5/db?sslmode=disable", "t1"),
        "postgres://u:p@h:5/t1?sslmode=disable"
    );
    assert_eq!(with_dbname("postgres://h", "t1"), "postgres://h/t1");
}
