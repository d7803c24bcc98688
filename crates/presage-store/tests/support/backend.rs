//! One backend's store and raw access to it, and the macro that runs a check on every
//! backend, shared by the integration tests that compare SQLite and PostgreSQL.

use presage_core::{Decision, Limits, Reason, ResourceMap, Timestamp, WorkloadId};
use presage_store::{AdminStore, StoreUrl};

use super::pg::TestDb;

/// One backend's store location, and raw access for what the store API does not expose.
pub(crate) enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

/// One row of samples_rollup: (resolution_s, bucket_ms, n, cpu mean, cpu max, memory mean).
pub(crate) type Rollup = (i64, i64, i64, Option<f64>, Option<f64>, Option<f64>);

const ROLLUP_SQL: &str = "SELECT resolution_s, bucket_ms, n, cpu_mean, cpu_max, memory_mean
    FROM samples_rollup ORDER BY resolution_s, workload, bucket_ms";

impl Backend {
    pub(crate) fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    pub(crate) fn postgres(test: &str) -> Option<Backend> {
        TestDb::create(test).map(Backend::Postgres)
    }

    pub(crate) fn url(&self) -> StoreUrl {
        match self {
            Backend::Sqlite(dir) => StoreUrl::Sqlite(dir.path().join("presage.db")),
            Backend::Postgres(db) => StoreUrl::Postgres(db.url.clone()),
        }
    }

    pub(crate) fn open(&self) -> Box<dyn AdminStore> {
        presage_store::open(&self.url()).unwrap()
    }

    pub(crate) fn rollups(&self) -> Vec<Rollup> {
        match self {
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("presage.db")).unwrap();
                let mut stmt = conn.prepare(ROLLUP_SQL).unwrap();
                stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
            Backend::Postgres(db) => db
                .client()
                .query(ROLLUP_SQL, &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect(),
        }
    }

    /// How many rows `table` holds (for tables `Counts` leaves out).
    pub(crate) fn rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Backend::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("presage.db"))
                .unwrap()
                .query_row(&sql, [], |r| r.get(0))
                .unwrap(),
            Backend::Postgres(db) => db.client().query_one(&sql, &[]).unwrap().get(0),
        }
    }

    /// Marks the store as written by a newer build.
    pub(crate) fn set_schema_version(&self, version: i64) {
        match self {
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("presage.db")).unwrap();
                conn.pragma_update(None, "user_version", version).unwrap();
            }
            Backend::Postgres(db) => {
                db.client()
                    .execute("UPDATE presage_schema SET version = $1", &[&version])
                    .unwrap();
            }
        }
    }
}

/// Runs each named check as one test per backend: `sqlite::NAME` and `postgres::NAME`
/// (which skips, saying why once, without a server).
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Backend::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if let Some(b) = super::Backend::postgres(stringify!($name)) {
                    super::$name(b)
                }
            } )*
        }
    };
}

/// A decision of `workload` at `at_s` (its behavioural score 50 + `at_s`).
pub(crate) fn decision(workload: &str, at_s: i64) -> Decision {
    Decision {
        workload: WorkloadId::new(workload).unwrap(),
        at: Timestamp::from_unix_secs(at_s),
        old: Limits::unlimited(),
        new: Limits::unlimited(),
        reason: Reason::Initial,
        risk: ResourceMap::none(),
        model: "m".into(),
        behavior_score: Some(50.0 + at_s as f64),
    }
}
