//! The SQLite profile store.

use std::path::{Path, PathBuf};

use presage_core::{Timestamp, WorkloadKey};
use presage_engine::{Profile, ProfileStore, StoreError, TickWrite};
use presage_forecast::ModelState;
use rusqlite::{Connection, OptionalExtension, params};

/// The schema version this build writes; older databases are migrated on open, newer ones
/// refused (a downgraded binary must not write a schema it does not know).
pub const SCHEMA_VERSION: i64 = 1;

/// Each step takes the schema from its index to the next version.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: profiles keyed by what the code is, and the audit trail.
    "CREATE TABLE profiles (
        code_id TEXT NOT NULL,
        code_version TEXT NOT NULL,
        input_hash TEXT NOT NULL,
        user TEXT NOT NULL,
        version INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        model TEXT,
        PRIMARY KEY (code_id, code_version, input_hash, user)
    );
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        workload TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX decisions_by_workload ON decisions (workload, at_ms);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        workload TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX alerts_by_workload ON alerts (workload, at_ms);",
];

/// Profiles, decisions and alerts in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
}

fn err(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let context = context.into();
    move |e| StoreError {
        context,
        source: Box::new(e),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to
    /// [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let at = |what: &str| format!("{what} {}", path.display());
        let mut conn = Connection::open(path).map_err(err(at("opening")))?;
        // WAL: readers never block the writer, and a crash mid-write leaves the last
        // committed transaction intact. NORMAL sync is durable across process crashes
        // (the agent's kill -9), which is what matters here.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err(at("enabling WAL on")))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err(at("setting synchronous on")))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err(at("setting the busy timeout on")))?;
        migrate(&mut conn, path)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every stored profile.
    pub fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT code_id, code_version, input_hash, user, version, samples, updated_at_ms, model
                 FROM profiles ORDER BY code_id, code_version, input_hash, user",
            )
            .map_err(err("listing profiles"))?;
        let rows = stmt
            .query_map([], row_parts)
            .map_err(err("listing profiles"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(profile_from(
                row.map_err(err("reading a profile row"))?,
                &self.path,
            )?);
        }
        Ok(out)
    }

    /// Deletes the profile of `key`; whether there was one.
    pub fn remove(&mut self, key: &WorkloadKey) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "DELETE FROM profiles WHERE code_id = ?1 AND code_version = ?2 AND input_hash = ?3 AND user = ?4",
                params![key.code_id(), key.code_version(), key.input_hash(), key.user()],
            )
            .map(|n| n > 0)
            .map_err(err(format!("removing the profile of {key}")))
    }

    /// How many decisions are recorded for `workload`.
    pub fn decision_count(&self, workload: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM decisions WHERE workload = ?1",
                params![workload],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(err("counting decisions"))
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err(format!(
            "reading the schema version of {}",
            path.display()
        )))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError {
            context: format!(
                "{} has schema version {version}; this build knows up to {SCHEMA_VERSION}",
                path.display()
            ),
            source: "database is newer than this presage".into(),
        });
    }
    for (from, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let to = from as i64 + 1;
        let tx = conn
            .transaction()
            .map_err(err(format!("migrating {} to {to}", path.display())))?;
        tx.execute_batch(sql)
            .map_err(err(format!("migrating {} to {to}", path.display())))?;
        tx.pragma_update(None, "user_version", to)
            .map_err(err(format!("migrating {} to {to}", path.display())))?;
        tx.commit()
            .map_err(err(format!("migrating {} to {to}", path.display())))?;
    }
    Ok(())
}

type Parts = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
);

fn row_parts(r: &rusqlite::Row<'_>) -> rusqlite::Result<Parts> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn profile_from(parts: Parts, path: &Path) -> Result<Profile, StoreError> {
    let (code_id, code_version, input_hash, user, version, samples, updated, model) = parts;
    let corrupt = |what: String| StoreError {
        context: format!("{}: profile of code {code_id:?}", path.display()),
        source: what.into(),
    };
    let key = WorkloadKey::new(code_id.clone(), code_version, input_hash, user)
        .map_err(|e| corrupt(format!("key: {e}")))?;
    let model = model
        .map(|text| serde_json::from_str::<ModelState>(&text))
        .transpose()
        .map_err(|e| corrupt(format!("column `model`: {e}")))?;
    Ok(Profile {
        key,
        version: u64::try_from(version).map_err(|_| corrupt(format!("version {version}")))?,
        samples: u64::try_from(samples).map_err(|_| corrupt(format!("samples {samples}")))?,
        updated_at: Timestamp::from_unix_ms(updated),
        model,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ProfileStore for SqliteStore {
    fn load(&mut self, key: &WorkloadKey) -> Result<Option<Profile>, StoreError> {
        let parts = self
            .conn
            .query_row(
                "SELECT code_id, code_version, input_hash, user, version, samples, updated_at_ms, model
                 FROM profiles WHERE code_id = ?1 AND code_version = ?2 AND input_hash = ?3 AND user = ?4",
                params![key.code_id(), key.code_version(), key.input_hash(), key.user()],
                row_parts,
            )
            .optional()
            .map_err(err(format!("loading the profile of {key}")))?;
        parts.map(|p| profile_from(p, &self.path)).transpose()
    }

    fn save(&mut self, profiles: &[Profile]) -> Result<(), StoreError> {
        if profiles.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(err("saving profiles"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO profiles (code_id, code_version, input_hash, user, version, samples, updated_at_ms, model)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (code_id, code_version, input_hash, user) DO UPDATE SET
                        version = excluded.version, samples = excluded.samples,
                        updated_at_ms = excluded.updated_at_ms, model = excluded.model",
                )
                .map_err(err("saving profiles"))?;
            for p in profiles {
                let model = p
                    .model
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StoreError {
                        context: format!("serialising the profile of {}", p.key),
                        source: Box::new(e),
                    })?;
                stmt.execute(params![
                    p.key.code_id(),
                    p.key.code_version(),
                    p.key.input_hash(),
                    p.key.user(),
                    to_i64(p.version),
                    to_i64(p.samples),
                    p.updated_at.unix_ms(),
                    model
                ])
                .map_err(err(format!("saving the profile of {}", p.key)))?;
            }
        }
        tx.commit().map_err(err("committing profiles"))
    }

    fn record(&mut self, tick: TickWrite<'_>) -> Result<(), StoreError> {
        if tick.is_empty() {
            return Ok(());
        }
        let (decisions, alerts) = (tick.decisions, tick.alerts);
        let tx = self
            .conn
            .transaction()
            .map_err(err("recording the audit trail"))?;
        {
            let mut d = tx
                .prepare_cached("INSERT INTO decisions (workload, at_ms, body) VALUES (?1, ?2, ?3)")
                .map_err(err("recording decisions"))?;
            for x in decisions {
                let body = serde_json::to_string(x).map_err(|e| StoreError {
                    context: format!("serialising a decision for {}", x.workload),
                    source: Box::new(e),
                })?;
                d.execute(params![x.workload.as_str(), x.at.unix_ms(), body])
                    .map_err(err("recording a decision"))?;
            }
            let mut a = tx
                .prepare_cached("INSERT INTO alerts (workload, at_ms, body) VALUES (?1, ?2, ?3)")
                .map_err(err("recording alerts"))?;
            for x in alerts {
                let body = serde_json::to_string(x).map_err(|e| StoreError {
                    context: format!("serialising an alert for {}", x.workload),
                    source: Box::new(e),
                })?;
                a.execute(params![x.workload.as_str(), x.at.unix_ms(), body])
                    .map_err(err("recording an alert"))?;
            }
        }
        tx.commit().map_err(err("committing the audit trail"))
    }
}

#[cfg(test)]
mod tests {
    use presage_core::{Decision, Limits, Reason, ResourceMap, WorkloadId};

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
}
