//! The PostgreSQL profile store: many agents on many hosts sharing one database, with
//! the same logical schema and the same answers as the SQLite store.

mod conninfo;
mod history;
mod priors;
mod schema;

use std::collections::HashMap;
use std::time::Duration;

use postgres::{Client, NoTls, Row, Statement};
use presage_core::{Fingerprint, Timestamp, WorkloadKey};
use presage_engine::{
    Execution, Prior, PriorSource, Profile, ProfileStore, Retention, RetentionReport, StoreError,
    TickWrite,
};

pub(crate) use conninfo::redact;

use crate::{AdminStore, AuditTable, ProfileRow, SCHEMA_VERSION, now_ms};

/// The columns [`profile_from`] reads, in its order (a macro so statements can be
/// `concat!`ed at compile time, as cache keys must be `'static`).
macro_rules! profile_columns {
    () => {
        "code_id, code_version, input_hash, user_name, version, samples, updated_at_ms, model"
    };
}

const PROFILE_COLUMNS: &str = profile_columns!();

const LOAD_PROFILE: &str = concat!(
    "SELECT ",
    profile_columns!(),
    " FROM profiles
     WHERE code_id = $1 AND code_version = $2 AND input_hash = $3 AND user_name = $4"
);

const UPSERT_PROFILE: &str = "INSERT INTO profiles
        (code_id, code_version, input_hash, user_name, version, samples, updated_at_ms, model)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (code_id, code_version, input_hash, user_name) DO UPDATE SET
        version = excluded.version, samples = excluded.samples,
        updated_at_ms = excluded.updated_at_ms, model = excluded.model";

/// How long a connection attempt may take when the URL does not say
/// (`connect_timeout=`): an agent whose database is unreachable should report it, not
/// hang its first tick on the kernel's TCP retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Profiles, executions, samples, fingerprints, decisions and alerts in a PostgreSQL
/// database shared by a fleet.
///
/// One connection per store. Every tick's writes are one transaction, as in SQLite. When
/// the connection drops (a server restart, a failover), the operation that notices fails
/// and the next one reconnects, so a long-running agent recovers without a restart.
/// Connections are plain TCP or Unix sockets: TLS (`sslmode=require`) is not built in.
pub struct PostgresStore {
    /// The URL with its password removed: what messages and [`AdminStore::describe`] show.
    shown: String,
    config: postgres::Config,
    client: Client,
    /// Statements of the per-tick path, prepared once per connection: a tick then costs
    /// no parse round trips.
    statements: HashMap<&'static str, Statement>,
    /// The last operation found the connection gone (or going): reconnect first.
    lost: bool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

/// Wraps a driver error with the password-free URL and what was being done.
fn pg_err(shown: &str, what: impl std::fmt::Display) -> impl FnOnce(postgres::Error) -> StoreError {
    let context = format!("{shown}: {what}");
    move |e| StoreError {
        context,
        source: Box::new(e),
    }
}

fn open_client(config: &postgres::Config, shown: &str) -> Result<Client, StoreError> {
    let mut client = config.connect(NoTls).map_err(pg_err(shown, "connecting"))?;
    schema::migrate(&mut client, shown)?;
    Ok(client)
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user:password@host:port/db`, or
    /// libpq's `key=value` form) and brings its schema up to [`SCHEMA_VERSION`]; refuses a
    /// database whose schema is newer. Errors name the URL without its password.
    pub fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let shown = conninfo::redact(url);
        let mut config: postgres::Config = url
            .parse()
            .map_err(pg_err(&shown, "parsing the connection URL"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Lets a DBA tell agents apart from other clients in pg_stat_activity.
        if config.get_application_name().is_none() {
            config.application_name("presage");
        }
        let client = open_client(&config, &shown)?;
        Ok(PostgresStore {
            shown,
            config,
            client,
            statements: HashMap::new(),
            lost: false,
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Runs one store operation: on a fresh connection when the previous operation lost
    /// its own, noting whether this one loses it.
    fn run<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.lost || self.client.is_closed() {
            self.client = open_client(&self.config, &self.shown)?;
            self.statements.clear();
            self.lost = false;
        }
        let out = op(self);
        if let Err(e) = &out {
            self.lost = connection_lost(e);
        }
        out
    }

    /// `sql`, prepared on this connection once.
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self
            .client
            .prepare(sql)
            .map_err(pg_err(&self.shown, "preparing a statement"))?;
        self.statements.insert(sql, stmt.clone());
        Ok(stmt)
    }

    /// Runs `f` in one transaction; `f` gets the password-free URL for its messages.
    /// Statements it uses are prepared before, outside the transaction borrow.
    fn in_tx<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut postgres::Transaction<'_>, &str) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let shown = self.shown.as_str();
        let mut tx = self.client.transaction().map_err(pg_err(shown, what))?;
        let out = f(&mut tx, shown)?;
        tx.commit()
            .map_err(pg_err(shown, format_args!("committing ({what})")))?;
        Ok(out)
    }

    fn count(&mut self, what: &str, sql: &str) -> Result<u64, StoreError> {
        self.client
            .query_one(sql, &[])
            .and_then(|row| row.try_get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(pg_err(&self.shown, format_args!("counting {what}")))
    }
}

/// Whether `e` means this connection is unusable: the server ended the session (FATAL,
/// e.g. an administrator's terminate or a shutdown), the socket failed or closed. The
/// blocking client notices a closed socket only on its next call, so without this the
/// operation after a restart would fail too.
fn connection_lost(e: &StoreError) -> bool {
    let Some(pg) = e.source.downcast_ref::<postgres::Error>() else {
        return false;
    };
    match pg.as_db_error() {
        Some(db) => matches!(db.severity(), "FATAL" | "PANIC"),
        None => {
            pg.is_closed()
                || std::error::Error::source(pg).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

fn profile_from(row: &Row, shown: &str) -> Result<Profile, StoreError> {
    let get = |e: postgres::Error| StoreError {
        context: format!("{shown}: reading a row of table profiles"),
        source: Box::new(e),
    };
    ProfileRow {
        key: [
            row.try_get(0).map_err(get)?,
            row.try_get(1).map_err(get)?,
            row.try_get(2).map_err(get)?,
            row.try_get(3).map_err(get)?,
        ],
        version: row.try_get(4).map_err(get)?,
        samples: row.try_get(5).map_err(get)?,
        updated_ms: row.try_get(6).map_err(get)?,
        model: row.try_get(7).map_err(get)?,
    }
    .decode(shown)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ProfileStore for PostgresStore {
    fn load(&mut self, key: &WorkloadKey) -> Result<Option<Profile>, StoreError> {
        self.run(|s| {
            let stmt = s.prepared(LOAD_PROFILE)?;
            let row = s
                .client
                .query_opt(
                    &stmt,
                    &[
                        &key.code_id(),
                        &key.code_version(),
                        &key.input_hash(),
                        &key.user(),
                    ],
                )
                .map_err(pg_err(
                    &s.shown,
                    format_args!("loading the profile of {key}"),
                ))?;
            row.map(|r| profile_from(&r, &s.shown)).transpose()
        })
    }

    fn save(&mut self, profiles: &[Profile]) -> Result<(), StoreError> {
        if profiles.is_empty() {
            return Ok(());
        }
        self.run(|s| {
            let stmt = s.prepared(UPSERT_PROFILE)?;
            // One statement per profile, not one multi-row upsert: PostgreSQL refuses an
            // upsert that touches a row twice, and a batch may save one key twice (the
            // later wins, as in SQLite).
            s.in_tx("saving profiles", |tx, shown| {
                for p in profiles {
                    let model = p
                        .model
                        .as_ref()
                        .map(serde_json::to_string)
                        .transpose()
                        .map_err(crate::json_err(format!("the profile of {}", p.key)))?;
                    tx.execute(
                        &stmt,
                        &[
                            &p.key.code_id(),
                            &p.key.code_version(),
                            &p.key.input_hash(),
                            &p.key.user(),
                            &to_i64(p.version),
                            &to_i64(p.samples),
                            &p.updated_at.unix_ms(),
                            &model,
                        ],
                    )
                    .map_err(pg_err(
                        shown,
                        format_args!("saving the profile of {} into table profiles", p.key),
                    ))?;
                }
                Ok(())
            })
        })
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
        self.run(|s| {
            if let Some(prior) = priors::previous_version(&mut s.client, key, &s.shown)? {
                return Ok(Some(prior));
            }
            match fingerprint {
                Some(fp) => priors::neighbour(&mut s.client, key, fp, &s.shown),
                None => Ok(None),
            }
        })
    }

    fn record(&mut self, tick: TickWrite<'_>) -> Result<(), StoreError> {
        if tick.is_empty() {
            return Ok(());
        }
        self.run(|s| {
            let copy = s.prepared(history::COPY_SAMPLES)?;
            let decisions = s.prepared(history::INSERT_DECISIONS)?;
            let alerts = s.prepared(history::INSERT_ALERTS)?;
            let responses = s.prepared(history::INSERT_RESPONSE)?;
            s.in_tx("recording a tick", |tx, shown| {
                history::insert_samples(tx, &copy, tick.samples, shown)?;
                history::insert_decisions(tx, &decisions, tick.decisions, shown)?;
                history::audit(tx, &alerts, "alerts", tick.alerts, shown, |a| {
                    (a.workload.as_str(), a.at)
                })?;
                history::insert_responses(tx, &responses, tick.responses, shown)
            })
        })
    }

    fn save_fingerprint(&mut self, code_id: &str, fp: &Fingerprint) -> Result<(), StoreError> {
        self.run(|s| {
            priors::save_fingerprint(
                &mut s.client,
                code_id,
                fp,
                Timestamp::from_unix_ms(now_ms()),
                &s.shown,
            )
        })
    }

    fn record_execution(&mut self, execution: &Execution) -> Result<(), StoreError> {
        self.run(|s| history::insert_execution(&mut s.client, execution, &s.shown))
    }

    fn apply_retention(
        &mut self,
        now: Timestamp,
        retention: &Retention,
    ) -> Result<RetentionReport, StoreError> {
        self.run(|s| {
            s.in_tx("applying sample retention", |tx, shown| {
                history::retain(tx, now.unix_ms(), retention, shown)
            })
        })
    }
}

impl AdminStore for PostgresStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn profiles(&mut self) -> Result<Vec<Profile>, StoreError> {
        self.run(|s| {
            let rows = s
                .client
                .query(
                    &format!(
                        "SELECT {PROFILE_COLUMNS} FROM profiles
                         ORDER BY code_id, code_version, input_hash, user_name"
                    ),
                    &[],
                )
                .map_err(pg_err(&s.shown, "listing table profiles"))?;
            rows.iter().map(|r| profile_from(r, &s.shown)).collect()
        })
    }

    fn remove(&mut self, key: &WorkloadKey) -> Result<bool, StoreError> {
        self.run(|s| {
            s.client
                .execute(
                    "DELETE FROM profiles
                     WHERE code_id = $1 AND code_version = $2 AND input_hash = $3 AND user_name = $4",
                    &[
                        &key.code_id(),
                        &key.code_version(),
                        &key.input_hash(),
                        &key.user(),
                    ],
                )
                .map(|n| n > 0)
                .map_err(pg_err(&s.shown, format_args!("removing the profile of {key}")))
        })
    }

    fn decision_count(&mut self, workload: &str) -> Result<u64, StoreError> {
        self.run(|s| {
            s.client
                .query_one(
                    "SELECT COUNT(*) FROM decisions WHERE workload = $1",
                    &[&workload],
                )
                .and_then(|row| row.try_get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(pg_err(
                    &s.shown,
                    format_args!("counting the decisions of {workload}"),
                ))
        })
    }

    fn counts(&mut self) -> Result<crate::Counts, StoreError> {
        self.run(|s| {
            Ok(crate::Counts {
                profiles: s.count("profiles", "SELECT COUNT(*) FROM profiles")?,
                executions: s.count("executions", "SELECT COUNT(*) FROM executions")?,
                raw_samples: s.count("samples_raw", "SELECT COUNT(*) FROM samples_raw")?,
                minute_samples: s.count(
                    "samples_rollup (60 s)",
                    "SELECT COUNT(*) FROM samples_rollup WHERE resolution_s = 60",
                )?,
                five_minute_samples: s.count(
                    "samples_rollup (300 s)",
                    "SELECT COUNT(*) FROM samples_rollup WHERE resolution_s = 300",
                )?,
                fingerprints: s.count("fingerprints", "SELECT COUNT(*) FROM fingerprints")?,
                decisions: s.count("decisions", "SELECT COUNT(*) FROM decisions")?,
                responses: s.count("responses", "SELECT COUNT(*) FROM responses")?,
            })
        })
    }

    fn executions(&mut self, code_id: &str) -> Result<Vec<Execution>, StoreError> {
        self.run(|s| history::executions(&mut s.client, code_id, &s.shown))
    }

    fn audit_bodies(
        &mut self,
        table: AuditTable,
        workload: Option<&str>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.run(|s| history::audit_bodies(&mut s.client, table, workload, &s.shown))
    }

    /// PostgreSQL checks its own pages; what can go wrong at this level is a schema that
    /// is not the one this build expects, or a table dropped or made unreadable by hand.
    /// Problems are returned one per line (as SQLite's `integrity_check` does); only a
    /// failure to ask at all (a lost connection) is an error.
    fn integrity_check(&mut self) -> Result<String, StoreError> {
        self.run(|s| {
            let shown = s.shown.clone();
            let mut problems = Vec::new();
            // A server-side error (missing table, no privilege) is a finding; anything
            // else (I/O, a closed connection) means the check could not run.
            let fatal = |e: &postgres::Error| e.as_db_error().is_none();
            match schema::current_version(&mut s.client) {
                Ok(Some(SCHEMA_VERSION)) => {}
                Ok(Some(v)) => problems.push(format!(
                    "presage_schema records version {v}; this build expects {SCHEMA_VERSION}"
                )),
                Ok(None) => problems.push("table presage_schema is missing or empty".to_owned()),
                Err(e) if fatal(&e) => return Err(pg_err(&shown, "checking presage_schema")(e)),
                Err(e) => problems.push(format!("table presage_schema: {e}")),
            }
            for table in schema::TABLES {
                match s
                    .client
                    .query_opt(&format!("SELECT 1 FROM {table} LIMIT 1"), &[])
                {
                    Ok(_) => {}
                    Err(e) if fatal(&e) => {
                        return Err(pg_err(&shown, format_args!("checking table {table}"))(e));
                    }
                    Err(e) => problems.push(format!("table {table}: {e}")),
                }
            }
            Ok(if problems.is_empty() {
                "ok".to_owned()
            } else {
                problems.join("\n")
            })
        })
    }
}
