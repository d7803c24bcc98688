//! The SQLite profile store.

mod history;
mod priors;
mod schema;

use std::path::{Path, PathBuf};

use presage_core::{Fingerprint, Timestamp, WorkloadKey};
use presage_engine::{
    Execution, Prior, PriorSource, Profile, ProfileStore, Retention, RetentionReport, StoreError,
    TickWrite,
};
use rusqlite::{Connection, OptionalExtension, params};

use schema::MIGRATIONS;
pub use schema::SCHEMA_VERSION;

use crate::{AdminStore, AuditTable, ProfileRow, ResponseColumns, json_err, now_ms};

/// The columns [`row_parts`] reads, in its order.
const PROFILE_COLUMNS: &str =
    "code_id, code_version, input_hash, user, version, samples, updated_at_ms, model";

/// Profiles, executions, samples, fingerprints, decisions and alerts in one SQLite file.
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

    /// Runs `f` in one transaction.
    fn in_tx<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.transaction().map_err(err(what.to_owned()))?;
        let out = f(&tx)?;
        tx.commit().map_err(err(format!("committing ({what})")))?;
        Ok(out)
    }

    fn count(&self, sql: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(err(format!("counting ({sql})")))
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

fn row_parts(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProfileRow> {
    Ok(ProfileRow {
        key: [r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?],
        version: r.get(4)?,
        samples: r.get(5)?,
        updated_ms: r.get(6)?,
        model: r.get(7)?,
    })
}

fn profile_from(row: ProfileRow, path: &Path) -> Result<Profile, StoreError> {
    row.decode(&path.display().to_string())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ProfileStore for SqliteStore {
    fn load(&mut self, key: &WorkloadKey) -> Result<Option<Profile>, StoreError> {
        let parts = self
            .conn
            .query_row(
                &format!(
                    "SELECT {PROFILE_COLUMNS} FROM profiles
                 WHERE code_id = ?1 AND code_version = ?2 AND input_hash = ?3 AND user = ?4"
                ),
                params![
                    key.code_id(),
                    key.code_version(),
                    key.input_hash(),
                    key.user()
                ],
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

    fn load_prior(
        &mut self,
        key: &WorkloadKey,
        fingerprint: Option<&Fingerprint>,
    ) -> Result<Option<Prior>, StoreError> {
        if let Some(profile) = self.load(key)? {
            return Ok(Some(Prior {
                profile,
                source: PriorSource::Exact,
            }));
        }
        if let Some(prior) = priors::previous_version(&self.conn, key, &self.path)? {
            return Ok(Some(prior));
        }
        match fingerprint {
            Some(fp) => priors::neighbour(&self.conn, key, fp, &self.path),
            None => Ok(None),
        }
    }

    fn record(&mut self, tick: TickWrite<'_>) -> Result<(), StoreError> {
        if tick.is_empty() {
            return Ok(());
        }
        self.in_tx("recording a tick", |tx| {
            history::insert_samples(tx, tick.samples)?;
            insert_decisions(tx, tick.decisions)?;
            audit(tx, "alerts", tick.alerts, |a| (a.workload.as_str(), a.at))?;
            insert_responses(tx, tick.responses)
        })
    }

    fn save_fingerprint(&mut self, code_id: &str, fp: &Fingerprint) -> Result<(), StoreError> {
        priors::save_fingerprint(&self.conn, code_id, fp, Timestamp::from_unix_ms(now_ms()))
    }

    fn record_execution(&mut self, execution: &Execution) -> Result<(), StoreError> {
        self.in_tx("recording an execution", |tx| {
            history::insert_execution(tx, execution)
        })
    }

    fn apply_retention(
        &mut self,
        now: Timestamp,
        retention: &Retention,
    ) -> Result<RetentionReport, StoreError> {
        self.in_tx("applying sample retention", |tx| {
            history::retain(tx, now.unix_ms(), retention)
        })
    }
}

/// Appends decisions, each as its JSON body with the behavioural score beside it.
fn insert_decisions(
    tx: &rusqlite::Transaction<'_>,
    decisions: &[presage_core::Decision],
) -> Result<(), StoreError> {
    if decisions.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO decisions (workload, at_ms, body, behavior_score) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(err("recording decisions"))?;
    for d in decisions {
        let workload = d.workload.as_str();
        let body =
            serde_json::to_string(d).map_err(json_err(format!("one of {workload}'s decisions")))?;
        stmt.execute(params![workload, d.at.unix_ms(), body, d.behavior_score])
            .map_err(err(format!("recording one of {workload}'s decisions")))?;
    }
    Ok(())
}

/// Appends audited responses.
fn insert_responses(
    tx: &rusqlite::Transaction<'_>,
    responses: &[presage_engine::ResponseEvent],
) -> Result<(), StoreError> {
    if responses.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO responses (workload, at_ms, action, rung, cpu_cores, alert_kind,
                alert_severity, alert_score, behavior_score, anomaly_score, outcome, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .map_err(err("recording responses"))?;
    for e in responses {
        let c = ResponseColumns::of(e)?;
        stmt.execute(params![
            e.workload.as_str(),
            e.at.unix_ms(),
            c.action,
            c.rung,
            c.cpu_cores,
            c.alert_kind,
            c.alert_severity,
            c.alert_score,
            c.behavior_score,
            c.anomaly_score,
            c.outcome,
            c.body
        ])
        .map_err(err(format!("recording a response to {}", e.workload)))?;
    }
    Ok(())
}

/// Appends audit rows (decisions or alerts) to `table`, each as its JSON body.
fn audit<T: serde::Serialize>(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    rows: &[T],
    head: impl Fn(&T) -> (&str, Timestamp),
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO {table} (workload, at_ms, body) VALUES (?1, ?2, ?3)"
        ))
        .map_err(err(format!("recording {table}")))?;
    for row in rows {
        let (workload, at) = head(row);
        let body =
            serde_json::to_string(row).map_err(json_err(format!("one of {workload}'s {table}")))?;
        stmt.execute(params![workload, at.unix_ms(), body])
            .map_err(err(format!("recording one of {workload}'s {table}")))?;
    }
    Ok(())
}

impl AdminStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn profiles(&mut self) -> Result<Vec<Profile>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {PROFILE_COLUMNS} FROM profiles ORDER BY code_id, code_version, input_hash, user"
            ))
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

    fn remove(&mut self, key: &WorkloadKey) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "DELETE FROM profiles WHERE code_id = ?1 AND code_version = ?2 AND input_hash = ?3 AND user = ?4",
                params![key.code_id(), key.code_version(), key.input_hash(), key.user()],
            )
            .map(|n| n > 0)
            .map_err(err(format!("removing the profile of {key}")))
    }

    fn decision_count(&mut self, workload: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM decisions WHERE workload = ?1",
                params![workload],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(err("counting decisions"))
    }

    fn counts(&mut self) -> Result<crate::Counts, StoreError> {
        Ok(crate::Counts {
            profiles: self.count("SELECT COUNT(*) FROM profiles")?,
            executions: self.count("SELECT COUNT(*) FROM executions")?,
            raw_samples: self.count("SELECT COUNT(*) FROM samples_raw")?,
            minute_samples: self
                .count("SELECT COUNT(*) FROM samples_rollup WHERE resolution_s = 60")?,
            five_minute_samples: self
                .count("SELECT COUNT(*) FROM samples_rollup WHERE resolution_s = 300")?,
            fingerprints: self.count("SELECT COUNT(*) FROM fingerprints")?,
            decisions: self.count("SELECT COUNT(*) FROM decisions")?,
            responses: self.count("SELECT COUNT(*) FROM responses")?,
        })
    }

    fn executions(&mut self, code_id: &str) -> Result<Vec<Execution>, StoreError> {
        history::executions(&self.conn, code_id)
    }

    fn integrity_check(&mut self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .map_err(err(format!("checking {}", self.path.display())))
    }

    fn audit_bodies(
        &mut self,
        table: AuditTable,
        workload: Option<&str>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let name = table.name();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, body FROM {name} WHERE ?1 IS NULL OR workload = ?1 ORDER BY at_ms, id"
            ))
            .map_err(err(format!("listing {name}")))?;
        let rows = stmt
            .query_map(params![workload], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err(format!("listing {name}")))?;
        rows.collect::<Result<_, _>>()
            .map_err(err(format!("reading a row of {name}")))
    }
}

#[cfg(test)]
mod tests;
