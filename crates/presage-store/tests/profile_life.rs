//! A profile's life through the engine and the store: a new version starts from the
//! previous one, unknown code from its nearest fingerprint, every run is recorded with
//! how good its prior was; profiles of one key merge associatively.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use presage_core::{
    Decision, Fingerprint, Limits, Resource, Sample, Timestamp, Usage, WorkloadId, WorkloadKey,
};
use presage_engine::{
    ActuationError, Actuator, Engine, EngineConfig, PriorSource, Profile, WorkloadSpec,
};
use presage_forecast::ForecasterFactory;
use presage_policy::{MarginAllocator, WorkloadPolicy};
use presage_store::{AdminStore, SqliteStore, merge_profiles};
use proptest::prelude::*;

#[derive(Debug)]
struct Accepting;
impl Actuator for Accepting {
    fn apply(&mut self, d: &Decision) -> Result<Limits, ActuationError> {
        Ok(d.new)
    }
}

fn presage_forecaster() -> Arc<dyn ForecasterFactory> {
    let info = presage_policy::registry::find("presage").unwrap();
    (info.build)(info.default_knob).unwrap().forecaster.unwrap()
}

fn sample(id: &WorkloadId, t: i64, cpu: f64, mem: f64) -> Sample {
    let usage = Usage::empty()
        .with(Resource::Cpu, cpu)
        .unwrap()
        .with(Resource::Memory, mem)
        .unwrap();
    Sample::new(Timestamp::from_unix_secs(t), id.clone(), 300_000, usage).unwrap()
}

fn fingerprint(extra: &str) -> Fingerprint {
    Fingerprint {
        kind: "elf".into(),
        size: 100_000,
        features: [
            "needed:libc.so.6",
            "import:malloc",
            "import:free",
            "section:.text",
            extra,
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect(),
    }
}

/// Runs one instance of `key` for `steps` 5-minute samples of a steady load and ends it.
fn run(
    engine: &mut Engine,
    name: &str,
    key: WorkloadKey,
    fp: Option<Fingerprint>,
    t0: i64,
    steps: i64,
) -> bool {
    let id = WorkloadId::new(name).unwrap();
    let restored = engine
        .adopt(WorkloadSpec {
            id: id.clone(),
            key,
            limits: Limits::unlimited(),
            policy: WorkloadPolicy::default(),
            fingerprint: fp,
        })
        .unwrap();
    for i in 0..steps {
        let t = t0 + i * 300;
        let wave = (i as f64 * 0.3).sin();
        engine.tick(
            Timestamp::from_unix_secs(t),
            &[sample(&id, t, 1.0 + 0.2 * wave, 4.0e8 + 5.0e7 * wave)],
        );
    }
    engine
        .end(&id, Timestamp::from_unix_secs(t0 + steps * 300), Some(0))
        .unwrap();
    restored
}

#[test]
fn versions_and_neighbours_are_priors_and_runs_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presage.db");
    let mut engine = Engine::builder(Arc::new(MarginAllocator::default()))
        .forecaster(presage_forecaster())
        .actuator(Box::new(Accepting))
        .store(Box::new(SqliteStore::open(&db).unwrap()))
        .config(EngineConfig {
            save_every_s: None,
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    let v1 = WorkloadKey::new("path:/opt/job", "v1", "in", "1000").unwrap();
    assert!(!run(&mut engine, "job-1", v1, None, 0, 300));
    engine
        .store_mut()
        .save_fingerprint("path:/opt/job", &fingerprint("import:job_main"))
        .unwrap();
    let v2 = WorkloadKey::new("path:/opt/job", "v2", "in", "1000").unwrap();
    assert!(
        run(&mut engine, "job-2", v2, None, 100_000, 50),
        "v2 starts from v1"
    );
    let other = WorkloadKey::new("sha-of-a-rebuild", "", "in", "1000").unwrap();
    assert!(
        run(
            &mut engine,
            "rebuilt",
            other.clone(),
            Some(fingerprint("import:job_main2")),
            200_000,
            50
        ),
        "a similar binary starts from the known one"
    );
    let stranger = WorkloadKey::new("sha-unrelated", "", "in", "1000").unwrap();
    let unrelated = Fingerprint {
        kind: "elf".into(),
        size: 9_000_000,
        features: ["import:zlib_inflate"]
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
    };
    assert!(!run(
        &mut engine,
        "stranger",
        stranger,
        Some(unrelated),
        300_000,
        5
    ));
    drop(engine);

    let mut store = SqliteStore::open(&db).unwrap();
    let job = store.executions("path:/opt/job").unwrap();
    assert_eq!(job.len(), 2);
    assert_eq!(
        (job[0].prior.clone(), job[0].exit_status, job[0].samples),
        (None, Some(0), 300)
    );
    assert_eq!(
        job[1].prior,
        Some(PriorSource::PreviousVersion {
            code_version: "v1".into()
        })
    );
    // The prior learned the same load: its first median is near the run's mean.
    let err = job[1].prior_error.unwrap();
    assert!(err < 0.25, "prior error {err}");
    let peak_cpu = job[0].peak.get(Resource::Cpu).unwrap();
    assert!((peak_cpu - 1.2).abs() < 0.01, "{peak_cpu}");
    let rebuilt = store.executions("sha-of-a-rebuild").unwrap();
    match &rebuilt[0].prior {
        Some(PriorSource::Neighbour {
            code_id,
            similarity,
        }) => {
            assert_eq!(code_id, "path:/opt/job");
            assert!(*similarity > 0.6);
        }
        other => panic!("expected a neighbour prior, got {other:?}"),
    }
    assert_eq!(store.executions("sha-unrelated").unwrap()[0].prior, None);
    // Old versions stay queryable.
    assert_eq!(store.counts().unwrap().profiles, 4);
}

/// Profiles of one key learned on "hosts" fed different loads.
fn learned(seed: u64) -> Profile {
    let factory = presage_forecaster();
    let mut f = factory.create();
    let id = WorkloadId::new("w").unwrap();
    for i in 0..(40 + seed as i64 * 7) {
        let phase = (i as f64 * 0.1 * (seed + 1) as f64).sin();
        f.observe(&sample(
            &id,
            1_000_000 + i * 300 + seed as i64,
            0.5 + 0.3 * phase,
            2.0e8 + 1.0e7 * seed as f64,
        ));
    }
    Profile {
        key: WorkloadKey::new("code", "", "in", "0").unwrap(),
        version: seed,
        samples: 40 + seed * 7,
        updated_at: Timestamp::from_unix_secs(1_000 + seed as i64),
        model: Some(f.save().unwrap()),
    }
}

/// Whether two merged profiles say the same: equal counters, and restored models that
/// forecast the same quantiles (to 1e-9 relative) — the saved states pack their floats, so
/// rounding in added histograms shows as different bytes, not different forecasts.
fn same(a: &Profile, b: &Profile) -> bool {
    if (a.key.clone(), a.version, a.samples, a.updated_at)
        != (b.key.clone(), b.version, b.samples, b.updated_at)
    {
        return false;
    }
    let factory = presage_forecaster();
    let (fa, fb) = (
        factory.restore(a.model.as_ref().unwrap()).unwrap(),
        factory.restore(b.model.as_ref().unwrap()).unwrap(),
    );
    let now = Timestamp::from_unix_secs(2_000_000);
    [Resource::Cpu, Resource::Memory].iter().all(|&r| {
        [300u32, 3600].iter().all(
            |&h| match (fa.quantiles(now, h, r), fb.quantiles(now, h, r)) {
                (Some(x), Some(y)) => x
                    .values()
                    .iter()
                    .zip(y.values())
                    .all(|(p, q)| (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1e-12)),
                (None, None) => true,
                _ => false,
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn merging_profiles_is_associative_and_commutative(a in 0u64..6, b in 0u64..6, c in 0u64..6) {
        let (a, b, c) = (learned(a), learned(b), learned(c));
        let left = merge_profiles(&merge_profiles(&a, &b).unwrap(), &c).unwrap();
        let right = merge_profiles(&a, &merge_profiles(&b, &c).unwrap()).unwrap();
        let ab = merge_profiles(&a, &b).unwrap();
        let ba = merge_profiles(&b, &a).unwrap();
        prop_assert!(same(&left, &right));
        prop_assert!(same(&ab, &ba));
        prop_assert_eq!(left.samples, a.samples + b.samples + c.samples);
        prop_assert_eq!(left.version, a.version.max(b.version).max(c.version));
        // The merged model restores and forecasts.
        let f = presage_forecaster().restore(left.model.as_ref().unwrap()).unwrap();
        prop_assert!(f.forecast(Timestamp::from_unix_secs(2_000_000), &[300]).is_some());
    }
}

#[test]
fn profiles_of_different_keys_do_not_merge() {
    let a = learned(1);
    let mut b = learned(2);
    b.key = WorkloadKey::new("other", "", "in", "0").unwrap();
    let e = merge_profiles(&a, &b).unwrap_err().to_string();
    assert!(e.contains("code") && e.contains("other"), "{e}");
}
