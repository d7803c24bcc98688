//! Profile stores that outlive a process (DESIGN.md "Identity and profiles").
//!
//! [`SqliteStore`] is the embedded default: one file (`<data-dir>/presage.db`), WAL
//! journal, versioned migrations run on open, every tick's writes in one transaction — a
//! crash loses at most the tick being written, never the database. [`PostgresStore`] is
//! the same schema in a PostgreSQL database that many agents on many hosts share, so a
//! profile learned on one host is the prior on every other. [`open`] picks the backend
//! from a store URL (`sqlite:PATH`, or `postgres://…` for a fleet).

// Tests fail loudly on a broken fixture; the lint guards library code, not them.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod fallback;
mod merge;
mod postgres;
mod prior;
mod rollup;
mod sqlite;
mod url;

use presage_core::{Alert, Decision, Timestamp, WorkloadId, WorkloadKey};
use presage_engine::{Execution, Profile, ProfileStore, ResponseEvent, StoreError};
use presage_forecast::ModelState;

pub use fallback::FallbackStore;
pub use merge::{merge_into, merge_profiles};
// `self::`: the module shares its name with the driver crate.
pub use self::postgres::PostgresStore;
pub use prior::{NEIGHBOUR_MIN_SIMILARITY, closest_profile, nearest};
pub use sqlite::{SCHEMA_VERSION, SqliteStore};
pub use url::{StoreUrl, open};

/// How many rows each table holds (for `presage profiles`, tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Profiles, over every key and version.
    pub profiles: u64,
    /// Recorded runs.
    pub executions: u64,
    /// Raw samples.
    pub raw_samples: u64,
    /// 1-minute roll-ups.
    pub minute_samples: u64,
    /// 5-minute roll-ups.
    pub five_minute_samples: u64,
    /// Code fingerprints.
    pub fingerprints: u64,
    /// Decisions in the audit trail.
    pub decisions: u64,
    /// Responses (record, webhook, throttle, freeze, kill) in the audit trail.
    pub responses: u64,
}

/// What operators and tools do with a store beyond the engine's needs.
pub trait AdminStore: ProfileStore {
    /// The store's URL form (`sqlite:/var/lib/presage/presage.db`), for messages.
    fn describe(&self) -> String;
    /// Every stored profile, ordered by key.
    fn profiles(&mut self) -> Result<Vec<presage_engine::Profile>, StoreError>;
    /// Deletes the profile of `key`; whether there was one.
    fn remove(&mut self, key: &WorkloadKey) -> Result<bool, StoreError>;
    /// How many decisions are recorded for `workload`.
    fn decision_count(&mut self, workload: &str) -> Result<u64, StoreError>;
    /// Rows per table.
    fn counts(&mut self) -> Result<Counts, StoreError>;
    /// The recorded runs of one code id, oldest first.
    fn executions(&mut self, code_id: &str) -> Result<Vec<Execution>, StoreError>;
    /// The backend's own consistency check: `ok` when sound.
    fn integrity_check(&mut self) -> Result<String, StoreError>;
    /// The audited responses, oldest first; only `workload`'s when given.
    fn responses(&mut self, workload: Option<&str>) -> Result<Vec<ResponseEvent>, StoreError> {
        self.audit_bodies(AuditTable::Responses, workload)?
            .into_iter()
            .map(|(id, body)| body_from(&body, "responses", id, &self.describe()))
            .collect()
    }
    /// The recorded alerts, oldest first; only `workload`'s when given.
    fn alerts(&mut self, workload: Option<&str>) -> Result<Vec<Alert>, StoreError> {
        self.audit_bodies(AuditTable::Alerts, workload)?
            .into_iter()
            .map(|(id, body)| body_from(&body, "alerts", id, &self.describe()))
            .collect()
    }
    /// The recorded decisions, oldest first; only `workload`'s when given.
    fn decisions(&mut self, workload: Option<&str>) -> Result<Vec<Decision>, StoreError> {
        self.audit_bodies(AuditTable::Decisions, workload)?
            .into_iter()
            .map(|(id, body)| body_from(&body, "decisions", id, &self.describe()))
            .collect()
    }
    /// The row ids and JSON bodies of one audit table, oldest first (the backends' part
    /// of the three listings above).
    fn audit_bodies(
        &mut self,
        table: AuditTable,
        workload: Option<&str>,
    ) -> Result<Vec<(i64, String)>, StoreError>;
}

/// The audit tables, each row a JSON body (what [`AdminStore`] lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditTable {
    /// Limit changes.
    Decisions,
    /// Alerts raised.
    Alerts,
    /// Responses to alerts.
    Responses,
}

impl AuditTable {
    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            AuditTable::Decisions => "decisions",
            AuditTable::Alerts => "alerts",
            AuditTable::Responses => "responses",
        }
    }
}

/// The query columns of one audited response (its full JSON is kept beside them, and is
/// what is read back), shared by the backends.
#[derive(Debug)]
pub(crate) struct ResponseColumns {
    pub(crate) action: &'static str,
    pub(crate) rung: i64,
    pub(crate) cpu_cores: Option<f64>,
    pub(crate) alert_kind: String,
    pub(crate) alert_severity: String,
    pub(crate) alert_score: f64,
    pub(crate) behavior_score: f64,
    pub(crate) anomaly_score: Option<f64>,
    pub(crate) outcome: &'static str,
    pub(crate) body: String,
}

impl ResponseColumns {
    pub(crate) fn of(e: &ResponseEvent) -> Result<ResponseColumns, StoreError> {
        let body =
            serde_json::to_string(e).map_err(json_err(format!("a response to {}", e.workload)))?;
        Ok(ResponseColumns {
            action: e.response.rung().as_str(),
            rung: i64::from(e.rung.level()),
            cpu_cores: match e.response {
                presage_engine::Response::Throttle { cpu_cores } => Some(cpu_cores),
                _ => None,
            },
            alert_kind: serde_name(&e.alert.kind),
            alert_severity: serde_name(&e.alert.severity),
            alert_score: e.alert.score,
            behavior_score: e.behavior_score,
            anomaly_score: e.anomaly_score,
            outcome: e.outcome.as_str(),
            body,
        })
    }
}

/// A unit enum variant's serde name (`outside_envelope`), as the JSON bodies spell it.
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

/// Reads back one audit row from its JSON body; a body that does not decode is named by
/// database (`shown`), table and row id.
fn body_from<T: serde::de::DeserializeOwned>(
    body: &str,
    table: &str,
    id: i64,
    shown: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError {
        context: format!("{shown}: {table} row {id}"),
        source: Box::new(e),
    })
}

/// A profiles row as stored (the model still JSON text), shared by the backends.
#[derive(Debug)]
pub(crate) struct ProfileRow {
    pub(crate) key: [String; 4],
    pub(crate) version: i64,
    pub(crate) samples: i64,
    pub(crate) updated_ms: i64,
    pub(crate) model: Option<String>,
}

impl ProfileRow {
    /// The profile; a row that does not decode is corrupt, named with `shown` (the
    /// database) and the code id.
    pub(crate) fn decode(self, shown: &str) -> Result<Profile, StoreError> {
        let [code_id, code_version, input_hash, user] = self.key;
        let corrupt = |what: String| StoreError {
            context: format!("{shown}: profile of code {code_id:?}"),
            source: what.into(),
        };
        let key = WorkloadKey::new(code_id.clone(), code_version, input_hash, user)
            .map_err(|e| corrupt(format!("key: {e}")))?;
        let model = self
            .model
            .map(|text| serde_json::from_str::<ModelState>(&text))
            .transpose()
            .map_err(|e| corrupt(format!("column `model`: {e}")))?;
        let (version, samples) = (self.version, self.samples);
        Ok(Profile {
            key,
            version: u64::try_from(version).map_err(|_| corrupt(format!("version {version}")))?,
            samples: u64::try_from(samples).map_err(|_| corrupt(format!("samples {samples}")))?,
            updated_at: Timestamp::from_unix_ms(self.updated_ms),
            model,
        })
    }
}

/// An executions row as stored (JSON columns still text), shared by the backends.
#[derive(Debug)]
pub(crate) struct ExecutionRow {
    pub(crate) workload: String,
    pub(crate) key: [String; 4],
    pub(crate) started_ms: i64,
    pub(crate) ended_ms: i64,
    pub(crate) exit_status: Option<i32>,
    pub(crate) samples: i64,
    pub(crate) peak: String,
    pub(crate) total: String,
    pub(crate) prior: Option<String>,
    pub(crate) prior_error: Option<f64>,
}

impl ExecutionRow {
    pub(crate) fn decode(self) -> Result<Execution, StoreError> {
        let corrupt = |what: String| StoreError {
            context: format!("execution of {}", self.workload),
            source: what.into(),
        };
        let [code_id, code_version, input_hash, user] = self.key.clone();
        let key = WorkloadKey::new(code_id, code_version, input_hash, user)
            .map_err(|e| corrupt(format!("key: {e}")))?;
        let workload =
            WorkloadId::new(&self.workload).map_err(|e| corrupt(format!("workload: {e}")))?;
        fn json<T: serde::de::DeserializeOwned>(
            workload: &str,
            col: &str,
            text: &str,
        ) -> Result<T, StoreError> {
            serde_json::from_str(text).map_err(|e| StoreError {
                context: format!("execution of {workload}"),
                source: format!("column `{col}`: {e}").into(),
            })
        }
        let w = self.workload.as_str();
        Ok(Execution {
            workload,
            key,
            started: Timestamp::from_unix_ms(self.started_ms),
            ended: Timestamp::from_unix_ms(self.ended_ms),
            exit_status: self.exit_status,
            samples: u64::try_from(self.samples).unwrap_or(0),
            peak: json(w, "peak", &self.peak)?,
            total: json(w, "total", &self.total)?,
            prior: self
                .prior
                .as_deref()
                .map(|p| json(w, "prior", p))
                .transpose()?,
            prior_error: self.prior_error,
        })
    }
}

/// Wraps a serialisation error with what was being (de)serialised.
pub(crate) fn json_err(context: impl Into<String>) -> impl FnOnce(serde_json::Error) -> StoreError {
    let context = context.into();
    move |e| StoreError {
        context: format!("serialising {context}"),
        source: Box::new(e),
    }
}

/// Wall-clock now, for rows the engine does not date (fingerprints).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
